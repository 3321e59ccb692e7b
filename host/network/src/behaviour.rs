//! The composed libp2p behaviour of a d402 node, its identity, and building the swarm.

use std::time::Duration;

use anyhow::Context;
use d402_protocol::{Keypair, PublicKey};
use libp2p::gossipsub::{self};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, PeerId};
use libp2p::{StreamProtocol, Swarm, identify, identity, kad, noise, ping, tcp, yamux};

use crate::wire::{BlobRequest, BlobResponse, LeaseRequest, LeaseResponse};
use crate::{KAD_PROTOCOL, MAX_BLOB_BYTES, PROTOCOL_VERSION, wire};

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
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) lease: request_response::json::Behaviour<LeaseRequest, LeaseResponse>,
    pub(crate) blob: request_response::json::Behaviour<BlobRequest, BlobResponse>,
}

pub(crate) fn build_swarm(identity: identity::Keypair) -> anyhow::Result<Swarm<Behaviour>> {
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

pub(crate) fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}
