//! The gossiped signed objects and how each is checked before it is stored or relayed.
//!
//! Every topic carries one signed object type. A message is accepted only when it parses,
//! its d402 signature verifies, its signer is the key the object speaks for and the peer
//! that published the gossip message, and (for offers) it has not expired. Anything else
//! is rejected, which lowers the publishing peer's gossipsub score.

use d402_protocol::{
    NodeOffer, PublicKey, ReputationEvent, Signed, SignedObject, Timestamp, ValidatorOffer,
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

/// Every topic a node subscribes to.
pub const TOPICS: [&str; 3] = [NODE_OFFERS_TOPIC, VALIDATOR_OFFERS_TOPIC, REPUTATION_TOPIC];

/// A signed object that can be gossiped: the key it speaks for and, if it lapses, when.
pub trait Gossiped: SignedObject + DeserializeOwned {
    /// The topic it travels on.
    const TOPIC: &'static str;
    /// The key that must have signed and published it.
    fn author(&self) -> PublicKey;
    /// When it stops being valid, if ever.
    fn expires_at(&self) -> Option<Timestamp>;
}

impl Gossiped for NodeOffer {
    const TOPIC: &'static str = NODE_OFFERS_TOPIC;
    fn author(&self) -> PublicKey {
        self.node_id
    }
    fn expires_at(&self) -> Option<Timestamp> {
        Some(self.expires_at)
    }
}

impl Gossiped for ValidatorOffer {
    const TOPIC: &'static str = VALIDATOR_OFFERS_TOPIC;
    fn author(&self) -> PublicKey {
        self.validator_id
    }
    fn expires_at(&self) -> Option<Timestamp> {
        Some(self.expires_at)
    }
}

impl Gossiped for ReputationEvent {
    const TOPIC: &'static str = REPUTATION_TOPIC;
    fn author(&self) -> PublicKey {
        self.issuer
    }
    fn expires_at(&self) -> Option<Timestamp> {
        None
    }
}

/// Checks a gossiped `data` published by `source`; the reason when it is refused.
pub fn check<T: Gossiped>(data: &[u8], source: Option<PeerId>) -> Result<Signed<T>, String> {
    let object: Signed<T> =
        serde_json::from_slice(data).map_err(|e| format!("not a {}: {e}", T::OBJECT_TYPE))?;
    let payload = object.verify().map_err(|e| e.to_string())?;
    let author = payload.author();
    if author != object.signer {
        return Err(format!(
            "the {} is signed by another key than its author",
            T::OBJECT_TYPE
        ));
    }
    if source != Some(peer_id_of(&author)) {
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
