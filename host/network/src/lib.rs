//! The d402 peer network on rust-libp2p.
//!
//! - Identity: the node's ed25519 wallet key is its libp2p identity, so a node's base58
//!   address and its `PeerId` name the same key ([`peer_id_of`], [`libp2p_keypair`]).
//! - Transport: TCP with noise and yamux.
//! - Behaviours: identify, ping, Kademlia (server mode; peer discovery from the bootstrap
//!   peers, and provider records for the CIDs a node serves), gossipsub with signed messages
//!   and explicit validation of node offers, validator offers and reputation events
//!   ([`gossip`]), and request-response for leases and blob transfer ([`wire`]).
//! - Peer store: with [`NetworkConfig::peer_store`], the addresses of peers that identified
//!   themselves are kept in a JSON file; a restarted node dials them, so it rejoins without
//!   bootstrap peers.
//!
//! A node's own offers are re-published whenever a peer subscribes to their topic, and the
//! node refreshes them periodically ([`Network::announce`]).

pub mod gossip;
mod peers;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use d402_blobstore::BlobStore;
use d402_protocol::{
    CapabilityRegistration, ContentId, Keypair, NodeOffer, PublicKey, ReputationEvent, ResultClaim,
    SettlementReceipt, Signed, TaskIntent, Timestamp, ValidationReceipt, ValidatorOffer,
};
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
pub use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
pub use libp2p::{Multiaddr, PeerId};
use libp2p::{StreamProtocol, Swarm, identify, identity, kad, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, oneshot, watch};

pub use gossip::{
    CLAIMS_TOPIC, Gossiped, NODE_OFFERS_TOPIC, REGISTRATIONS_TOPIC, REPUTATION_TOPIC,
    SETTLEMENT_RECEIPTS_TOPIC, TASKS_TOPIC, VALIDATION_RECEIPTS_TOPIC, VALIDATOR_OFFERS_TOPIC,
};
use peers::{PeerStore, read_peer_store};
pub use wire::{BlobRequest, BlobResponse, LeaseRequest, LeaseResponse};

/// The identify protocol version d402 nodes announce.
pub const PROTOCOL_VERSION: &str = "/d402/1.0.0";
/// The Kademlia protocol of the d402 DHT.
pub const KAD_PROTOCOL: &str = "/d402/kad/1.0.0";
/// Largest blob a node transfers (the response size cap of the blob protocol).
pub const MAX_BLOB_BYTES: u64 = 64 * 1024 * 1024;
/// How many recent reputation events and receipts a node keeps in memory (of each kind).
const RECENT_MEMORY: usize = 1024;

/// The DHT key under which nodes serving capabilities of hash shard `shard` (two hex digits)
/// announce themselves.
pub fn shard_key(shard: &str) -> String {
    format!("d402/capability-shard/{shard}")
}

/// The libp2p identity of a d402 key (the same ed25519 secret).
pub fn libp2p_keypair(key: &Keypair) -> anyhow::Result<identity::Keypair> {
    let mut secret = key.to_keypair_bytes()[..32].to_vec();
    identity::Keypair::ed25519_from_bytes(&mut secret)
        .context("the wallet key is not a valid ed25519 secret")
}

/// The `PeerId` of a d402 public key.
pub fn peer_id_of(key: &PublicKey) -> PeerId {
    let public = identity::ed25519::PublicKey::try_from_bytes(&key.to_bytes())
        .expect("a d402 key is a valid ed25519 key");
    identity::PublicKey::from(public).to_peer_id()
}

/// The composed libp2p behaviour of a d402 node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    lease: request_response::json::Behaviour<LeaseRequest, LeaseResponse>,
    blob: request_response::json::Behaviour<BlobRequest, BlobResponse>,
}

/// How a node joins the network.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Where to listen, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub listen: Multiaddr,
    /// Peers to dial at start (`/ip4/…/tcp/…/p2p/<PeerId>`).
    pub bootstrap: Vec<Multiaddr>,
    /// File that remembers peers' addresses across restarts (none: nothing is kept).
    pub peer_store: Option<PathBuf>,
    /// Blobs this node hands out by CID over the blob protocol (none: it serves none).
    pub blobs: Option<BlobStore>,
}

/// Runs leases a gateway sends to this node (the worker role).
pub trait LeaseHandler: Send + Sync + 'static {
    /// Answers `request` from peer `from`.
    fn handle(
        &self,
        from: PeerId,
        request: LeaseRequest,
    ) -> Pin<Box<dyn Future<Output = LeaseResponse> + Send>>;
}

/// Why a request to a peer got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The peer could not be reached or the connection broke before it answered.
    #[error("the peer did not answer: {0}")]
    Unreachable(String),
    /// The answer was not acceptable (e.g. a blob that does not hash to its CID).
    #[error("{0}")]
    Invalid(String),
    /// This node's network task has stopped.
    #[error("the network stopped")]
    Stopped,
}

enum Command {
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
fn lock(heard: &Mutex<Heard>) -> MutexGuard<'_, Heard> {
    heard.lock().expect("heard lock")
}

/// What the node has heard on the gossip topics (all verified).
#[derive(Default)]
struct Heard {
    node_offers: HashMap<PublicKey, Signed<NodeOffer>>,
    validator_offers: HashMap<(PublicKey, String), Signed<ValidatorOffer>>,
    registrations: HashMap<ContentId, Signed<CapabilityRegistration>>,
    reputation: VecDeque<Signed<ReputationEvent>>,
    validation_receipts: VecDeque<Signed<ValidationReceipt>>,
    settlement_receipts: VecDeque<Signed<SettlementReceipt>>,
    tasks: VecDeque<Signed<TaskIntent>>,
    claims: VecDeque<Signed<ResultClaim>>,
}

/// Keeps `item` among the most recent ones.
fn remember<T>(recent: &mut VecDeque<T>, item: T) {
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

fn build_swarm(identity: identity::Keypair) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .build()
                .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad::Config::new(StreamProtocol::new(KAD_PROTOCOL)),
            );
            // Every d402 node answers DHT queries (devnets have no confirmed external address).
            kad.set_mode(Some(kad::Mode::Server));
            // Leases last as long as the task's deadline; the gateway enforces it.
            let requests =
                request_response::Config::default().with_request_timeout(Duration::from_secs(600));
            let blob_codec = request_response::json::codec::Codec::default()
                .set_response_size_maximum(MAX_BLOB_BYTES * 2);
            Ok(Behaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    PROTOCOL_VERSION.into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                kad,
                gossipsub,
                lease: request_response::json::Behaviour::new(
                    [(
                        StreamProtocol::new(wire::LEASE_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    requests.clone(),
                ),
                blob: request_response::Behaviour::with_codec(
                    blob_codec,
                    [(
                        StreamProtocol::new(wire::BLOB_PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    requests,
                ),
            })
        })
        .map_err(|e| anyhow::anyhow!("behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// The task that owns the swarm: it runs commands from the handle and reacts to events.
struct SwarmTask {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    /// For answers computed off the swarm task (leases run, blobs read).
    respond: mpsc::WeakSender<Command>,
    listening: watch::Sender<Vec<Multiaddr>>,
    heard: Arc<Mutex<Heard>>,
    peers: PeerStore,
    blobs: Option<BlobStore>,
    lease_handler: Arc<OnceLock<Arc<dyn LeaseHandler>>>,
    /// This node's own announced objects: key → (topic, bytes).
    own: HashMap<String, (&'static str, Vec<u8>)>,
    pending_leases:
        HashMap<OutboundRequestId, oneshot::Sender<Result<LeaseResponse, RequestError>>>,
    pending_blobs: HashMap<OutboundRequestId, oneshot::Sender<Result<BlobResponse, RequestError>>>,
}

impl SwarmTask {
    async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.on_event(event),
            }
        }
    }

    fn publish(&mut self, topic: &'static str, bytes: Vec<u8>) {
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(topic), bytes)
        {
            // No subscribed peer yet: the object goes out when one subscribes.
            tracing::debug!(topic, error = %e, "not published");
        }
    }

    fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::Publish { topic, bytes } => self.publish(topic, bytes),
            Command::Announce { topic, key, bytes } => {
                self.own.insert(key, (topic, bytes.clone()));
                self.publish(topic, bytes);
            }
            Command::Lease {
                peer,
                request,
                reply,
            } => {
                let id = behaviour.lease.send_request(&peer, *request);
                self.pending_leases.insert(id, reply);
            }
            Command::Blob { peer, cid, reply } => {
                let id = behaviour.blob.send_request(&peer, BlobRequest { cid });
                self.pending_blobs.insert(id, reply);
            }
            Command::RespondLease { channel, response } => {
                if behaviour.lease.send_response(channel, *response).is_err() {
                    tracing::warn!("the gateway went away before the lease was answered");
                }
            }
            Command::RespondBlob { channel, response } => {
                let _ = behaviour.blob.send_response(channel, response);
            }
            Command::Provide(key) => {
                if let Err(e) = behaviour.kad.start_providing(kad::RecordKey::new(&key)) {
                    tracing::warn!(%key, error = %e, "cannot announce a provider record");
                }
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(address = %address.clone().with_p2p(*self.swarm.local_peer_id()).unwrap_or_else(|a| a), "p2p listening");
                self.listening.send_modify(|a| a.push(address));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                self.peers.remember(peer_id, &info.listen_addrs);
                let kad = &mut self.swarm.behaviour_mut().kad;
                for address in info.listen_addrs {
                    kad.add_address(&peer_id, address);
                }
                // Look ourselves up: it connects us to the peers our peers know.
                let _ = kad.bootstrap();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Lease(event)) => self.on_lease(event),
            SwarmEvent::Behaviour(BehaviourEvent::Blob(event)) => self.on_blob(event),
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Subscribed { topic, .. } => {
                let mine: Vec<(&'static str, Vec<u8>)> = self
                    .own
                    .values()
                    .filter(|(t, _)| IdentTopic::new(*t).hash() == topic)
                    .cloned()
                    .collect();
                for (topic, bytes) in mine {
                    self.publish(topic, bytes);
                }
            }
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict = match self.accept(&message) {
                    Ok(()) => MessageAcceptance::Accept,
                    Err(reason) => {
                        tracing::warn!(peer = %propagation_source, topic = %message.topic, %reason, "rejected a gossiped object");
                        MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            _ => {}
        }
    }

    /// Checks a gossiped object and keeps it; the reason when it is refused.
    fn accept(&mut self, message: &gossipsub::Message) -> Result<(), String> {
        let (data, source) = (&message.data, message.source);
        let topic = message.topic.as_str();
        if topic == NODE_OFFERS_TOPIC {
            let offer = gossip::check::<NodeOffer>(data, source)?;
            let peer = peer_id_of(&offer.payload.node_id);
            for address in offer
                .payload
                .addresses
                .iter()
                .filter_map(|a| a.parse::<Multiaddr>().ok())
            {
                self.swarm.add_peer_address(peer, address);
            }
            lock(&self.heard)
                .node_offers
                .insert(offer.payload.node_id, offer);
        } else if topic == VALIDATOR_OFFERS_TOPIC {
            let offer = gossip::check::<ValidatorOffer>(data, source)?;
            let key = (
                offer.payload.validator_id,
                offer.payload.capability_family.clone(),
            );
            lock(&self.heard).validator_offers.insert(key, offer);
        } else if topic == REPUTATION_TOPIC {
            let event = gossip::check::<ReputationEvent>(data, source)?;
            remember(&mut lock(&self.heard).reputation, event);
        } else if topic == REGISTRATIONS_TOPIC {
            let registration = gossip::check::<CapabilityRegistration>(data, source)?;
            let cid = registration.cid().map_err(|e| e.to_string())?;
            lock(&self.heard).registrations.insert(cid, registration);
        } else if topic == VALIDATION_RECEIPTS_TOPIC {
            let receipt = gossip::check::<ValidationReceipt>(data, source)?;
            remember(&mut lock(&self.heard).validation_receipts, receipt);
        } else if topic == SETTLEMENT_RECEIPTS_TOPIC {
            let receipt = gossip::check::<SettlementReceipt>(data, source)?;
            remember(&mut lock(&self.heard).settlement_receipts, receipt);
        } else if topic == TASKS_TOPIC {
            let intent = gossip::check::<TaskIntent>(data, source)?;
            remember(&mut lock(&self.heard).tasks, intent);
        } else if topic == CLAIMS_TOPIC {
            let claim = gossip::check::<ResultClaim>(data, source)?;
            remember(&mut lock(&self.heard).claims, claim);
        } else {
            return Err(format!("unknown topic {topic}"));
        }
        Ok(())
    }

    fn on_lease(&mut self, event: request_response::Event<LeaseRequest, LeaseResponse>) {
        let Some((peer, request, channel)) = settle(event, &mut self.pending_leases) else {
            return;
        };
        let handler = self.lease_handler.get().cloned();
        self.answer(async move {
            let response = match handler {
                Some(handler) => handler.handle(peer, request).await,
                None => LeaseResponse::Failed {
                    error: serde_json::json!({"kind": "not-a-worker", "message": "this node does not run leases"}),
                },
            };
            Command::RespondLease { channel, response: Box::new(response) }
        });
    }

    fn on_blob(&mut self, event: request_response::Event<BlobRequest, BlobResponse>) {
        let Some((peer, request, channel)) = settle(event, &mut self.pending_blobs) else {
            return;
        };
        let blobs = self.blobs.clone();
        self.answer(async move {
            let cid = request.cid;
            let read = tokio::task::spawn_blocking(move || blobs.map(|b| b.get(&cid))).await;
            let response = match read {
                Ok(Some(Ok(bytes))) if bytes.len() as u64 <= MAX_BLOB_BYTES => {
                    BlobResponse::Found { base64: base64::engine::general_purpose::STANDARD.encode(bytes) }
                }
                _ => {
                    tracing::info!(%peer, %cid, "a blob was asked for that this node does not hold intact");
                    BlobResponse::NotFound
                }
            };
            Command::RespondBlob { channel, response }
        });
    }

    /// Computes an answer off the swarm task and sends it back through the command queue.
    fn answer(&self, work: impl Future<Output = Command> + Send + 'static) {
        let respond = self.respond.clone();
        tokio::spawn(async move {
            let command = work.await;
            if let Some(respond) = respond.upgrade() {
                let _ = respond.send(command).await;
            }
        });
    }
}

/// Hands a response (or the failure of an outbound request) to the caller waiting in
/// `pending`; returns an inbound request for this node to answer.
#[allow(clippy::type_complexity)]
fn settle<Req, Resp>(
    event: request_response::Event<Req, Resp>,
    pending: &mut HashMap<OutboundRequestId, oneshot::Sender<Result<Resp, RequestError>>>,
) -> Option<(PeerId, Req, ResponseChannel<Resp>)> {
    match event {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request {
                request, channel, ..
            } => Some((peer, request, channel)),
            request_response::Message::Response {
                request_id,
                response,
            } => {
                if let Some(reply) = pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
                None
            }
        },
        request_response::Event::OutboundFailure {
            request_id,
            error,
            peer,
            ..
        } => {
            tracing::warn!(%peer, %error, "a request got no answer");
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Err(RequestError::Unreachable(error.to_string())));
            }
            None
        }
        _ => None,
    }
}
