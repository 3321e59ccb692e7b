//! The gossiped signed objects and how each is checked before it is stored or relayed.
//!
//! Every topic carries one signed object type. A message is accepted only when it parses,
//! its d402 signature verifies, its signer is the key the object names as its author, and
//! (for offers) it has not expired. Offers and reputation events speak for their author, so
//! only the author may publish them; registrations and receipts are documents any node may
//! relay (a gateway relays the registrations it holds and publishes the receipts it signs).
//! Anything else is rejected, which lowers the publishing peer's gossipsub score.
//!
//! Task intents and result claims carry the buyer's input and output, so a gateway gossips
//! them only when its operator opts in (`--gossip-tasks`); otherwise they travel only
//! between the gateway and the leased workers (decision 0008), and receipts name the claims
//! by CID. An intent is published by its gateway; a claim is relayed by the gateway that
//! accepted it.

use d402_protocol::{
    CapabilityRegistration, NodeOffer, PublicKey, ReputationEvent, ResultClaim, SettlementReceipt,
    Signed, SignedObject, TaskIntent, Timestamp, ValidationReceipt, ValidatorOffer,
};
use libp2p::PeerId;
use serde::de::DeserializeOwned;

use crate::peer_id_of;

/// Signed node offers.
pub const NODE_OFFERS_TOPIC: &str = "d402/node-offers/1";
/// Signed validator offers.
pub const VALIDATOR_OFFERS_TOPIC: &str = "d402/validator-offers/1";
/// Signed reputation events.
pub const REPUTATION_TOPIC: &str = "d402/reputation/1";

/// Signed capability registrations.
pub const REGISTRATIONS_TOPIC: &str = "d402/registrations/1";
/// Signed validation receipts.
pub const VALIDATION_RECEIPTS_TOPIC: &str = "d402/validation-receipts/1";
/// Signed settlement receipts.
pub const SETTLEMENT_RECEIPTS_TOPIC: &str = "d402/settlement-receipts/1";

/// Signed task intents (gateways that opt in).
pub const TASKS_TOPIC: &str = "d402/tasks/1";
/// Signed result claims (gateways that opt in).
pub const CLAIMS_TOPIC: &str = "d402/claims/1";

/// Every topic a node subscribes to.
pub const TOPICS: [&str; 8] = [
    NODE_OFFERS_TOPIC,
    VALIDATOR_OFFERS_TOPIC,
    REPUTATION_TOPIC,
    REGISTRATIONS_TOPIC,
    VALIDATION_RECEIPTS_TOPIC,
    SETTLEMENT_RECEIPTS_TOPIC,
    TASKS_TOPIC,
    CLAIMS_TOPIC,
];

/// A signed object that can be gossiped: who must have signed it, who may publish it and,
/// if it lapses, when.
pub trait Gossiped: SignedObject + DeserializeOwned {
    /// The topic it travels on.
    const TOPIC: &'static str;
    /// Whether any node may relay it (true) or only its signer may publish it (false).
    const RELAYED: bool = false;
    /// The key that must have signed it, when the payload names one.
    fn author(&self) -> Option<PublicKey>;
    /// When it stops being valid, if ever (most objects never expire).
    fn expires_at(&self) -> Option<Timestamp> {
        None
    }
}

impl Gossiped for NodeOffer {
    const TOPIC: &'static str = NODE_OFFERS_TOPIC;
    fn author(&self) -> Option<PublicKey> {
        Some(self.node_id)
    }
    fn expires_at(&self) -> Option<Timestamp> {
        Some(self.expires_at)
    }
}

impl Gossiped for ValidatorOffer {
    const TOPIC: &'static str = VALIDATOR_OFFERS_TOPIC;
    fn author(&self) -> Option<PublicKey> {
        Some(self.validator_id)
    }
    fn expires_at(&self) -> Option<Timestamp> {
        Some(self.expires_at)
    }
}

impl Gossiped for ReputationEvent {
    const TOPIC: &'static str = REPUTATION_TOPIC;
    fn author(&self) -> Option<PublicKey> {
        Some(self.issuer)
    }
}

impl Gossiped for CapabilityRegistration {
    const TOPIC: &'static str = REGISTRATIONS_TOPIC;
    const RELAYED: bool = true;
    fn author(&self) -> Option<PublicKey> {
        Some(self.publisher)
    }
}

impl Gossiped for ValidationReceipt {
    const TOPIC: &'static str = VALIDATION_RECEIPTS_TOPIC;
    const RELAYED: bool = true;
    fn author(&self) -> Option<PublicKey> {
        Some(self.validator)
    }
}

impl Gossiped for SettlementReceipt {
    const TOPIC: &'static str = SETTLEMENT_RECEIPTS_TOPIC;
    const RELAYED: bool = true;
    fn author(&self) -> Option<PublicKey> {
        None
    }
}

impl Gossiped for TaskIntent {
    const TOPIC: &'static str = TASKS_TOPIC;
    fn author(&self) -> Option<PublicKey> {
        Some(self.gateway)
    }
}

impl Gossiped for ResultClaim {
    const TOPIC: &'static str = CLAIMS_TOPIC;
    const RELAYED: bool = true;
    fn author(&self) -> Option<PublicKey> {
        Some(self.worker)
    }
}

/// Checks a gossiped `data` published by `source`; the reason when it is refused.
pub fn check<T: Gossiped>(data: &[u8], source: Option<PeerId>) -> Result<Signed<T>, String> {
    let object: Signed<T> =
        serde_json::from_slice(data).map_err(|e| format!("not a {}: {e}", T::OBJECT_TYPE))?;
    let payload = object.verify().map_err(|e| e.to_string())?;
    if payload
        .author()
        .is_some_and(|author| author != object.signer)
    {
        return Err(format!(
            "the {} is signed by another key than its author",
            T::OBJECT_TYPE
        ));
    }
    if !T::RELAYED && source != Some(peer_id_of(&object.signer)) {
        return Err(format!(
            "the {} was published by another peer than its author",
            T::OBJECT_TYPE
        ));
    }
    if payload
        .expires_at()
        .is_some_and(|at| at <= Timestamp::now())
    {
        return Err(format!("the {} has expired", T::OBJECT_TYPE));
    }
    Ok(object)
}
