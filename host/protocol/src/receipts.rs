//! Validation receipts, settlement receipts and reputation events.

use serde::{Deserialize, Serialize};

use crate::content_id::ContentId;
use crate::keys::PublicKey;
use crate::manifest::ValidationModel;
use crate::money::Amount;
use crate::signed::SignedObject;
use crate::time::Timestamp;

/// Outcome of validation.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidationStatus {
    /// At least one claim was accepted.
    Accepted,
    /// No claim was accepted.
    Rejected,
}

/// A validator's decision on the claims of one task.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidationReceipt {
    /// The task.
    pub task_id: String,
    /// Accepted or rejected.
    pub status: ValidationStatus,
    /// CIDs of accepted claims.
    #[cfg_attr(feature = "schema", schema(value_type = Vec<String>))]
    pub accepted_claim_cids: Vec<ContentId>,
    /// CIDs of rejected claims.
    #[cfg_attr(feature = "schema", schema(value_type = Vec<String>))]
    pub rejected_claim_cids: Vec<ContentId>,
    /// Model applied.
    pub model: ValidationModel,
    /// The validator's key.
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub validator: PublicKey,
    /// Why, in words, when rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the decision was made.
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub issued_at: Timestamp,
}

impl SignedObject for ValidationReceipt {
    const OBJECT_TYPE: &'static str = "validation-receipt";
}

/// Why money moved.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayoutReason {
    /// A worker's accepted result.
    AcceptedResult,
    /// The capability creator's commission.
    CreatorCommission,
    /// The validator's fee.
    ValidatorFee,
}

/// One payment to one account, shaped as the spec's receipt shows it.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Payout {
    /// Receiving account.
    pub account: String,
    /// Worker node id, for worker payouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Net amount paid, dollars.
    #[cfg_attr(feature = "schema", schema(value_type = f64))]
    pub amount: Amount,
    /// The all-in price this payout is a share of, dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<f64>))]
    pub gross_amount: Option<Amount>,
    /// Why it was paid.
    pub reason: PayoutReason,
    /// Commission rate, for creator commissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bps: Option<u32>,
    /// Payment rail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rail: Option<String>,
    /// Manifest the commission is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>))]
    pub manifest_cid: Option<ContentId>,
    /// Registration declaring the commission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schema(value_type = Option<String>))]
    pub registration_cid: Option<ContentId>,
    /// Publisher of that registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Namespace of that registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The on-chain address paid, when the rail pays each payee on chain (an escrow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The transaction that paid it, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
}

/// Money returned to the buyer.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Refund {
    /// The buyer's account.
    pub account: String,
    /// Amount returned, dollars.
    #[cfg_attr(feature = "schema", schema(value_type = f64))]
    pub amount: Amount,
    /// Why, e.g. `rejected`, `deadline-missed`, `failed`.
    pub reason: String,
    /// The transaction that returned it on chain, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
}

/// Where the money of one task went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettlementReceipt {
    /// The task.
    pub task_id: String,
    /// Payouts to workers, creator and validator.
    pub payouts: Vec<Payout>,
    /// Refunds to the buyer.
    pub refunds: Vec<Refund>,
    /// Payment rail used.
    pub rail: String,
    /// When settlement happened.
    pub issued_at: Timestamp,
}

impl SignedObject for SettlementReceipt {
    const OBJECT_TYPE: &'static str = "settlement-receipt";
}

impl SettlementReceipt {
    /// Sum of payouts and refunds: must equal what the buyer paid.
    pub fn total(&self) -> Option<Amount> {
        self.payouts
            .iter()
            .map(|p| p.amount)
            .chain(self.refunds.iter().map(|r| r.amount))
            .try_fold(Amount::ZERO, Amount::checked_add)
    }
}

/// What a reputation event measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReputationKind {
    /// Delivered (or failed to deliver) on a lease.
    Reliability,
    /// Agreed (or disagreed) with the accepted output.
    Accuracy,
    /// Latency against the target.
    Latency,
    /// A dispute opened or resolved.
    Dispute,
}

/// A signed history item about a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReputationEvent {
    /// The node the event is about.
    pub subject: PublicKey,
    /// What was measured.
    pub kind: ReputationKind,
    /// Positive or negative score change.
    pub delta: i32,
    /// The task it came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// Who observed it.
    pub issuer: PublicKey,
    /// When.
    pub issued_at: Timestamp,
}

impl SignedObject for ReputationEvent {
    const OBJECT_TYPE: &'static str = "reputation-event";
}
