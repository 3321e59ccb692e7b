//! d402 protocol objects: typed, serde-mapped exactly as the spec writes them, with RFC 8785
//! canonical JSON, CIDv1 content IDs and domain-separated ed25519 signatures.
//!
//! This crate does no I/O: no files, no network, no clock, no global randomness.

/// Implements `Serialize` and `Deserialize` through `Display` and `FromStr`: the type travels
/// as its text form, and a text that does not parse is refused with the parser's message.
macro_rules! serde_via_text {
    ($($ty:ty),+ $(,)?) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                // Inside a document the deserializer names the field: only the reason.
                text.parse().map_err(|e: $crate::ProtocolError| match e {
                    $crate::ProtocolError::Malformed { reason, .. } => serde::de::Error::custom(reason),
                    other => serde::de::Error::custom(other),
                })
            }
        }
    )+};
}

pub mod canonical;
mod content_id;
mod error;
mod implementation;
mod keys;
mod manifest;
mod market;
mod money;
mod receipts;
mod registration;
mod release;
mod signed;
mod task_error;
mod time;

pub use content_id::{ContentHash, ContentId, Sha256Digest};
pub use error::{Defect, Defects, ProtocolError, from_value, parse_json};
pub use implementation::ImplementationPackage;
pub use keys::{Keypair, PublicKey, Signature};
pub use manifest::*;
pub use market::{
    Bid, Lease, NodeOffer, OfferedCapability, ResultClaim, TaskIntent, ValidatorOffer,
};
pub use money::{Amount, BPS_DENOMINATOR, MICROS_PER_DOLLAR, Price};
pub use receipts::{
    Payout, PayoutReason, Refund, ReputationEvent, ReputationKind, SettlementReceipt,
    ValidationReceipt, ValidationStatus,
};
pub use registration::{
    CREATOR_COMMISSION_SCHEMA, CapabilityRegistration, CreatorCommission,
    DEFAULT_MAX_CREATOR_COMMISSION_BPS, NamespaceProof, PROOF_TYPE_WALLET, is_payout_account,
};
pub use release::{ProtocolCompatibility, ReleaseArtifact, ReleaseManifest};
pub use signed::{SignatureEntry, Signed, SignedObject, ThresholdSigned, signing_message};
pub use task_error::{FailedRun, TaskError, TaskErrorKind, Verdict};
pub use time::Timestamp;
