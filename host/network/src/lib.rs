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

mod behaviour;
mod event_loop;
pub mod gossip;
mod handle;
mod peers;
pub mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use d402_blobstore::BlobStore;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};

pub use gossip::{
    CLAIMS_TOPIC, Gossiped, NODE_OFFERS_TOPIC, REGISTRATIONS_TOPIC, REPUTATION_TOPIC,
    SETTLEMENT_RECEIPTS_TOPIC, TASKS_TOPIC, VALIDATION_RECEIPTS_TOPIC, VALIDATOR_OFFERS_TOPIC,
};
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

pub use behaviour::{Behaviour, libp2p_keypair, peer_id_of};
pub use handle::Network;
