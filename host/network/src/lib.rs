//! The d402 peer network on rust-libp2p (first slice of the peer-network issue).
//!
//! - Identity: the node's ed25519 wallet key is its libp2p identity, so a node's base58
//!   address and its `PeerId` name the same key ([`peer_id_of`], [`libp2p_keypair`]).
//! - Transport: TCP with noise and yamux.
//! - Behaviours: identify, ping, Kademlia (peer routing, provider records later) and
//!   gossipsub with signed messages and explicit validation: a gossiped node offer is
//!   stored and relayed only when its d402 signature verifies, it was published by the node
//!   it describes, and it has not expired; anything else is rejected, which lowers the
//!   sender's gossipsub score.
//!
//! - Peer store: with [`NetworkConfig::peer_store`], the addresses of peers that identified
//!   themselves are kept in a JSON file; a restarted node dials them, so it rejoins without
//!   bootstrap peers.
//!
//! Not yet here (named in the README): validator offers, task/claim/receipt topics,
//! request-response leases, artifact transfer, `d402 devnet`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use d402_protocol::{Keypair, NodeOffer, PublicKey, Signed, Timestamp};
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, identity, kad, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, watch};

/// The gossipsub topic of signed node offers.
pub const OFFERS_TOPIC: &str = "d402/node-offers/1";
/// The identify protocol version d402 nodes announce.
pub const PROTOCOL_VERSION: &str = "/d402/1.0.0";

/// The libp2p identity of a d402 key (the same ed25519 secret).
pub fn libp2p_keypair(key: &Keypair) -> anyhow::Result<identity::Keypair> {
    let mut secret = key.to_keypair_bytes()[..32].to_vec();
    identity::Keypair::ed25519_from_bytes(&mut secret).context("the wallet key is not a valid ed25519 secret")
}

/// The `PeerId` of a d402 public key.
pub fn peer_id_of(key: &PublicKey) -> PeerId {
    let public = identity::ed25519::PublicKey::try_from_bytes(&key.to_bytes()).expect("a d402 key is a valid ed25519 key");
    identity::PublicKey::from(public).to_peer_id()
}

/// The composed libp2p behaviour of a d402 node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
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
}

/// Known peers' addresses (`PeerId` → multiaddrs with `/p2p/`), as kept on disk.
type PeerBook = BTreeMap<String, Vec<String>>;

fn read_peer_store(path: &Path) -> PeerBook {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable peer store");
            PeerBook::new()
        }),
        Err(_) => PeerBook::new(),
    }
}

fn write_peer_store(path: &Path, book: &PeerBook) {
    let written = serde_json::to_vec_pretty(book)
        .map_err(std::io::Error::other)
        .and_then(|bytes| d402_blobstore::write_atomic(path, &bytes));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), error = %e, "cannot save the peer store");
    }
}

enum Command {
    Publish(Vec<u8>),
}

/// A running node's handle to the network: its identity and addresses, the verified offers
/// it has heard, and publishing.
pub struct Network {
    peer_id: PeerId,
    listening: watch::Receiver<Vec<Multiaddr>>,
    offers: Arc<Mutex<HashMap<PublicKey, Signed<NodeOffer>>>>,
    commands: mpsc::Sender<Command>,
}

impl Network {
    /// Starts the swarm for `key` on the tokio runtime: listens, dials the bootstrap peers
    /// and keeps running until the handle is dropped.
    pub fn start(key: &Keypair, config: NetworkConfig) -> anyhow::Result<Self> {
        let identity = libp2p_keypair(key)?;
        let mut swarm = build_swarm(identity)?;
        swarm.listen_on(config.listen.clone()).context("cannot listen")?;
        let book = config.peer_store.as_deref().map(read_peer_store).unwrap_or_default();
        let remembered = book.values().flatten().filter_map(|a| a.parse::<Multiaddr>().ok());
        let dial: Vec<Multiaddr> = config.bootstrap.iter().cloned().chain(remembered).collect();
        for address in &dial {
            if let Err(e) = swarm.dial(address.clone()) {
                tracing::warn!(%address, error = %e, "cannot dial");
            }
            if let Some(peer) = peer_of(address) {
                swarm.behaviour_mut().kad.add_address(&peer, address.clone());
            }
        }
        swarm.behaviour_mut().gossipsub.subscribe(&IdentTopic::new(OFFERS_TOPIC))?;
        let peer_id = *swarm.local_peer_id();
        let (listening_tx, listening) = watch::channel(Vec::new());
        let offers = Arc::new(Mutex::new(HashMap::new()));
        let (commands, receiver) = mpsc::channel(64);
        let peers = PeerStore { path: config.peer_store, book };
        tokio::spawn(run(swarm, receiver, listening_tx, offers.clone(), peers));
        Ok(Self { peer_id, listening, offers, commands })
    }

    /// This node's `PeerId`.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the node listens on, with `/p2p/<PeerId>`, once known.
    pub async fn listen_addresses(&self) -> Vec<Multiaddr> {
        let mut listening = self.listening.clone();
        let addresses = listening.wait_for(|a| !a.is_empty()).await.map(|a| a.clone()).unwrap_or_default();
        addresses.into_iter().map(|a| a.with_p2p(self.peer_id).unwrap_or_else(|a| a)).collect()
    }

    /// The verified, unexpired offers heard so far, by node.
    pub fn offers(&self) -> HashMap<PublicKey, Signed<NodeOffer>> {
        let now = Timestamp::now();
        let offers = self.offers.lock().expect("offers lock");
        offers.iter().filter(|(_, o)| o.payload.expires_at > now).map(|(k, o)| (*k, o.clone())).collect()
    }

    /// Gossips a signed offer (it must be this node's own).
    pub async fn publish_offer(&self, offer: &Signed<NodeOffer>) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(offer)?;
        self.commands.send(Command::Publish(bytes)).await.context("the network stopped")
    }

    /// Gossips raw bytes on the offers topic (tests use it to send forgeries).
    pub async fn publish_raw(&self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.commands.send(Command::Publish(bytes)).await.context("the network stopped")
    }
}

fn build_swarm(identity: identity::Keypair) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let gossip_config = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .build()
                .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
            let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config)
                .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
            Ok(Behaviour {
                identify: identify::Behaviour::new(identify::Config::new(PROTOCOL_VERSION.into(), key.public())),
                ping: ping::Behaviour::new(ping::Config::new()),
                kad: kad::Behaviour::new(peer_id, kad::store::MemoryStore::new(peer_id)),
                gossipsub,
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

/// The peer store of a running node.
struct PeerStore {
    path: Option<PathBuf>,
    book: PeerBook,
}

impl PeerStore {
    /// Remembers `peer`'s listen addresses (loopback kept: devnets run on 127.0.0.1).
    fn remember(&mut self, peer: PeerId, addresses: &[Multiaddr]) {
        let Some(path) = &self.path else { return };
        let entry: Vec<String> =
            addresses.iter().map(|a| a.clone().with_p2p(peer).unwrap_or_else(|a| a).to_string()).collect();
        if entry.is_empty() || self.book.get(&peer.to_string()) == Some(&entry) {
            return;
        }
        self.book.insert(peer.to_string(), entry);
        write_peer_store(path, &self.book);
    }
}

async fn run(
    mut swarm: Swarm<Behaviour>,
    mut commands: mpsc::Receiver<Command>,
    listening: watch::Sender<Vec<Multiaddr>>,
    offers: Arc<Mutex<HashMap<PublicKey, Signed<NodeOffer>>>>,
    mut peers: PeerStore,
) {
    let topic = IdentTopic::new(OFFERS_TOPIC);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Publish(bytes)) => {
                    if let Err(e) = swarm.behaviour_mut().gossipsub.publish(topic.clone(), bytes) {
                        tracing::warn!(error = %e, "cannot publish");
                    }
                }
                None => return,
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    listening.send_modify(|a| a.push(address));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    peers.remember(peer_id, &info.listen_addrs);
                    for address in info.listen_addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, address);
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                    let verdict = match check_offer(&message) {
                        Ok(offer) => {
                            offers.lock().expect("offers lock").insert(offer.payload.node_id, offer);
                            MessageAcceptance::Accept
                        }
                        Err(reason) => {
                            tracing::warn!(peer = %propagation_source, %reason, "rejected a gossiped offer");
                            MessageAcceptance::Reject
                        }
                    };
                    swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &propagation_source, verdict);
                }
                _ => {}
            }
        }
    }
}

/// A gossiped offer is accepted when it parses, its d402 signature verifies, its signer is
/// the node it describes and the gossip message's author, and it has not expired.
fn check_offer(message: &gossipsub::Message) -> Result<Signed<NodeOffer>, String> {
    let offer: Signed<NodeOffer> = serde_json::from_slice(&message.data).map_err(|e| format!("not an offer: {e}"))?;
    let payload = offer.verify().map_err(|e| e.to_string())?;
    if payload.node_id != offer.signer {
        return Err("the offer is signed by another key than the node it describes".into());
    }
    if message.source != Some(peer_id_of(&offer.signer)) {
        return Err("the offer was published by another peer than the node it describes".into());
    }
    if payload.expires_at <= Timestamp::now() {
        return Err("the offer has expired".into());
    }
    Ok(offer)
}

