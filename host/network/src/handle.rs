//! The handle a running node holds: what it has heard, publishing, requests to peers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use anyhow::Context;
use base64::Engine as _;
use d402_protocol::{
    CapabilityRegistration, ContentId, Keypair, NodeOffer, PublicKey, ReputationEvent, ResultClaim,
    SettlementReceipt, Signed, TaskIntent, Timestamp, ValidationReceipt, ValidatorOffer,
};
use libp2p::gossipsub::IdentTopic;
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot, watch};

use crate::behaviour::{build_swarm, libp2p_keypair, peer_of};
use crate::event_loop::SwarmTask;
use crate::gossip::Gossiped;
use crate::peers::{PeerStore, read_peer_store};
use crate::wire::{BlobResponse, LeaseRequest, LeaseResponse};
use crate::{LeaseHandler, NetworkConfig, RECENT_MEMORY, RequestError, gossip};

/// What the handle asks the swarm task to do.
pub(crate) enum Command {
    Publish {
        topic: &'static str,
        bytes: Vec<u8>,
    },
    Announce {
        topic: &'static str,
        key: String,
        bytes: Vec<u8>,
    },
    Lease {
        peer: PeerId,
        request: Box<LeaseRequest>,
        reply: oneshot::Sender<Result<LeaseResponse, RequestError>>,
    },
    Blob {
        peer: PeerId,
        cid: ContentId,
        reply: oneshot::Sender<Result<BlobResponse, RequestError>>,
    },
    RespondLease {
        channel: ResponseChannel<LeaseResponse>,
        response: Box<LeaseResponse>,
    },
    RespondBlob {
        channel: ResponseChannel<BlobResponse>,
        response: BlobResponse,
    },
    Provide(String),
}

/// Locks what the node has heard (shared by the handle and the swarm task).
pub(crate) fn lock(heard: &Mutex<Heard>) -> MutexGuard<'_, Heard> {
    heard.lock().expect("heard lock")
}

/// What the node has heard on the gossip topics (all verified).
#[derive(Default)]
pub(crate) struct Heard {
    pub(crate) node_offers: HashMap<PublicKey, Signed<NodeOffer>>,
    pub(crate) validator_offers: HashMap<(PublicKey, String), Signed<ValidatorOffer>>,
    pub(crate) registrations: HashMap<ContentId, Signed<CapabilityRegistration>>,
    pub(crate) reputation: VecDeque<Signed<ReputationEvent>>,
    pub(crate) validation_receipts: VecDeque<Signed<ValidationReceipt>>,
    pub(crate) settlement_receipts: VecDeque<Signed<SettlementReceipt>>,
    pub(crate) tasks: VecDeque<Signed<TaskIntent>>,
    pub(crate) claims: VecDeque<Signed<ResultClaim>>,
}

/// Keeps `item` among the most recent ones.
pub(crate) fn remember<T>(recent: &mut VecDeque<T>, item: T) {
    if recent.len() == RECENT_MEMORY {
        recent.pop_front();
    }
    recent.push_back(item);
}

/// A running node's handle to the network: its identity and addresses, what it has heard,
/// publishing, and requests to other nodes.
pub struct Network {
    peer_id: PeerId,
    listening: watch::Receiver<Vec<Multiaddr>>,
    heard: Arc<Mutex<Heard>>,
    commands: mpsc::Sender<Command>,
    lease_handler: Arc<OnceLock<Arc<dyn LeaseHandler>>>,
}

impl Network {
    /// Starts the swarm for `key` on the tokio runtime: listens, dials the bootstrap peers
    /// and the remembered ones, and keeps running until the handle is dropped.
    pub fn start(key: &Keypair, config: NetworkConfig) -> anyhow::Result<Self> {
        let identity = libp2p_keypair(key)?;
        let mut swarm = build_swarm(identity)?;
        swarm
            .listen_on(config.listen.clone())
            .context("cannot listen")?;
        let book = config
            .peer_store
            .as_deref()
            .map(read_peer_store)
            .unwrap_or_default();
        let remembered = book
            .values()
            .flatten()
            .filter_map(|a| a.parse::<Multiaddr>().ok());
        let dial: Vec<Multiaddr> = config.bootstrap.iter().cloned().chain(remembered).collect();
        for address in &dial {
            if let Some(peer) = peer_of(address) {
                swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, address.clone());
            }
            if let Err(e) = swarm.dial(address.clone()) {
                tracing::warn!(%address, error = %e, "cannot dial");
            }
        }
        for topic in gossip::TOPICS {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&IdentTopic::new(topic))?;
        }
        let peer_id = *swarm.local_peer_id();
        let (listening_tx, listening) = watch::channel(Vec::new());
        let heard = Arc::new(Mutex::new(Heard::default()));
        let (commands, receiver) = mpsc::channel(256);
        let lease_handler: Arc<OnceLock<Arc<dyn LeaseHandler>>> = Arc::new(OnceLock::new());
        let task = SwarmTask {
            swarm,
            commands: receiver,
            respond: commands.downgrade(),
            listening: listening_tx,
            heard: heard.clone(),
            peers: PeerStore {
                path: config.peer_store,
                book,
            },
            blobs: config.blobs,
            lease_handler: lease_handler.clone(),
            own: HashMap::new(),
            pending_leases: HashMap::new(),
            pending_blobs: HashMap::new(),
        };
        tokio::spawn(task.run());
        Ok(Self {
            peer_id,
            listening,
            heard,
            commands,
            lease_handler,
        })
    }

    /// This node's `PeerId`.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the node listens on, with `/p2p/<PeerId>`, once known.
    pub async fn listen_addresses(&self) -> Vec<Multiaddr> {
        let mut listening = self.listening.clone();
        let addresses = listening
            .wait_for(|a| !a.is_empty())
            .await
            .map(|a| a.clone())
            .unwrap_or_default();
        addresses
            .into_iter()
            .map(|a| a.with_p2p(self.peer_id).unwrap_or_else(|a| a))
            .collect()
    }

    /// [`Network::listen_addresses`] as text.
    pub async fn listen_address_texts(&self) -> Vec<String> {
        self.listen_addresses()
            .await
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    /// Runs the leases other nodes send with `handler` (the worker role). The first call wins.
    pub fn serve_leases(&self, handler: Arc<dyn LeaseHandler>) {
        if self.lease_handler.set(handler).is_err() {
            tracing::warn!("a lease handler is already installed");
        }
    }

    /// The verified, unexpired node offers heard so far, by node.
    pub fn offers(&self) -> HashMap<PublicKey, Signed<NodeOffer>> {
        let now = Timestamp::now();
        let heard = lock(&self.heard);
        heard
            .node_offers
            .iter()
            .filter(|(_, o)| o.payload.expires_at > now)
            .map(|(k, o)| (*k, o.clone()))
            .collect()
    }

    /// The verified, unexpired validator offers heard so far.
    pub fn validator_offers(&self) -> Vec<Signed<ValidatorOffer>> {
        let now = Timestamp::now();
        let heard = lock(&self.heard);
        heard
            .validator_offers
            .values()
            .filter(|o| o.payload.expires_at > now)
            .cloned()
            .collect()
    }

    /// The most recent verified reputation events heard (oldest first).
    pub fn reputation_events(&self) -> Vec<Signed<ReputationEvent>> {
        lock(&self.heard).reputation.iter().cloned().collect()
    }

    /// The verified capability registrations heard, by CID of the signed envelope.
    pub fn registrations(&self) -> HashMap<ContentId, Signed<CapabilityRegistration>> {
        lock(&self.heard).registrations.clone()
    }

    /// The most recent verified validation and settlement receipts heard (oldest first).
    pub fn receipts(
        &self,
    ) -> (
        Vec<Signed<ValidationReceipt>>,
        Vec<Signed<SettlementReceipt>>,
    ) {
        let heard = lock(&self.heard);
        (
            heard.validation_receipts.iter().cloned().collect(),
            heard.settlement_receipts.iter().cloned().collect(),
        )
    }

    /// The most recent verified task intents and result claims heard (oldest first).
    pub fn tasks_and_claims(&self) -> (Vec<Signed<TaskIntent>>, Vec<Signed<ResultClaim>>) {
        let heard = lock(&self.heard);
        (
            heard.tasks.iter().cloned().collect(),
            heard.claims.iter().cloned().collect(),
        )
    }

    /// Makes `object` (this node's own offer) the one re-published on its topic whenever a
    /// peer subscribes, replacing the previous one of the same author and family, and
    /// publishes it now.
    pub async fn announce<T: Gossiped>(
        &self,
        object: &Signed<T>,
        family: &str,
    ) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(object)?;
        let key = format!("{}:{family}", T::TOPIC);
        self.send(Command::Announce {
            topic: T::TOPIC,
            key,
            bytes,
        })
        .await
    }

    /// Publishes a signed object once (e.g. a reputation event).
    pub async fn publish<T: Gossiped>(&self, object: &Signed<T>) -> anyhow::Result<()> {
        self.publish_raw(T::TOPIC, serde_json::to_vec(object)?)
            .await
    }

    /// Publishes raw bytes on `topic` (tests use it to send forgeries).
    pub async fn publish_raw(&self, topic: &'static str, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.send(Command::Publish { topic, bytes }).await
    }

    /// Announces a provider record in the DHT: this node provides `key` (a manifest or
    /// artifact CID, or a capability shard, see [`shard_key`]).
    pub async fn provide(&self, key: String) -> anyhow::Result<()> {
        self.send(Command::Provide(key)).await
    }

    /// Sends a lease to `peer` and waits for its answer.
    pub async fn lease(
        &self,
        peer: PeerId,
        request: LeaseRequest,
    ) -> Result<LeaseResponse, RequestError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Lease {
            peer,
            request: Box::new(request),
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| RequestError::Stopped)?;
        answer.await.map_err(|_| RequestError::Stopped)?
    }

    /// Fetches blob `cid` from `peer`; the bytes are returned only if they hash to `cid`.
    pub async fn fetch_blob(&self, peer: PeerId, cid: ContentId) -> Result<Vec<u8>, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Blob { peer, cid, reply })
            .await
            .map_err(|_| RequestError::Stopped)?;
        match answer.await.map_err(|_| RequestError::Stopped)?? {
            BlobResponse::NotFound => Err(RequestError::Invalid(format!(
                "the peer does not hold {cid}"
            ))),
            BlobResponse::Found { base64 } => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(base64)
                    .map_err(|e| RequestError::Invalid(format!("the blob is not base64: {e}")))?;
                d402_blobstore::check(&bytes, &cid)
                    .map_err(|e| RequestError::Invalid(e.to_string()))?;
                Ok(bytes)
            }
        }
    }

    async fn send(&self, command: Command) -> anyhow::Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| anyhow::anyhow!("the network stopped"))
    }
}
