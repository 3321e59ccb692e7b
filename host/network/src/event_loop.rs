//! The task that owns the swarm: it runs the handle's commands and reacts to swarm events.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use d402_blobstore::BlobStore;
use d402_protocol::{
    CapabilityRegistration, NodeOffer, ReputationEvent, ResultClaim, SettlementReceipt, TaskIntent,
    ValidationReceipt, ValidatorOffer,
};
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use libp2p::{Swarm, identify, kad};
use tokio::sync::{mpsc, oneshot, watch};

use crate::behaviour::{Behaviour, BehaviourEvent, peer_id_of};
use crate::gossip::{
    CLAIMS_TOPIC, NODE_OFFERS_TOPIC, REGISTRATIONS_TOPIC, REPUTATION_TOPIC,
    SETTLEMENT_RECEIPTS_TOPIC, TASKS_TOPIC, VALIDATION_RECEIPTS_TOPIC, VALIDATOR_OFFERS_TOPIC,
};
use crate::handle::{Command, Heard, lock, remember};
use crate::peers::PeerStore;
use crate::wire::{BlobRequest, BlobResponse, LeaseRequest, LeaseResponse};
use crate::{LeaseHandler, MAX_BLOB_BYTES, RequestError, gossip};

/// The task that owns the swarm: it runs commands from the handle and reacts to events.
pub(crate) struct SwarmTask {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) commands: mpsc::Receiver<Command>,
    /// For answers computed off the swarm task (leases run, blobs read).
    pub(crate) respond: mpsc::WeakSender<Command>,
    pub(crate) listening: watch::Sender<Vec<Multiaddr>>,
    pub(crate) heard: Arc<Mutex<Heard>>,
    pub(crate) peers: PeerStore,
    pub(crate) blobs: Option<BlobStore>,
    pub(crate) lease_handler: Arc<OnceLock<Arc<dyn LeaseHandler>>>,
    /// This node's own announced objects: key → (topic, bytes).
    pub(crate) own: HashMap<String, (&'static str, Vec<u8>)>,
    pub(crate) pending_leases:
        HashMap<OutboundRequestId, oneshot::Sender<Result<LeaseResponse, RequestError>>>,
    pub(crate) pending_blobs:
        HashMap<OutboundRequestId, oneshot::Sender<Result<BlobResponse, RequestError>>>,
}

impl SwarmTask {
    pub(crate) async fn run(mut self) {
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
                    error: d402_protocol::TaskError::new(
                        d402_protocol::TaskErrorKind::LeaseRefused,
                        "this node does not run leases",
                    ),
                },
            };
            Command::RespondLease {
                channel,
                response: Box::new(response),
            }
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
