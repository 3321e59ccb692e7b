//! Market objects: offers, task intents, bids, leases and result claims.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content_id::{ContentHash, ContentId};
use crate::keys::PublicKey;
use crate::manifest::{ExecutionMode, ValidationModel};
use crate::money::{Amount, Price};
use crate::signed::SignedObject;
use crate::time::Timestamp;

/// A capability a node serves, pinned to an exact manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferedCapability {
    /// `<id>@<major>`.
    pub capability_id: String,
    /// The exact manifest the node runs.
    pub manifest_cid: ContentId,
    /// The node's price per task.
    pub price: Price,
}

/// A node's signed advertisement: who it is, where to reach it, what it runs and for how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeOffer {
    /// The node's identity key (also its libp2p identity).
    pub node_id: PublicKey,
    /// Reachable addresses (multiaddrs or URLs).
    pub addresses: Vec<String>,
    /// Where the node is paid.
    pub payout_wallet: String,
    /// Where the node is paid on EVM rails (a 0x address), if it takes EVM payouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evm_payout_wallet: Option<String>,
    /// Roles the node holds: gateway, worker, validator, bootstrap.
    pub roles: Vec<String>,
    /// Capabilities served.
    pub capabilities: Vec<OfferedCapability>,
    /// Software version of the node.
    pub software_version: String,
    /// Protocol version the node speaks.
    pub protocol_version: u32,
    /// When the offer was made.
    pub issued_at: Timestamp,
    /// When it lapses unless re-announced.
    pub expires_at: Timestamp,
}

impl SignedObject for NodeOffer {
    const OBJECT_TYPE: &'static str = "node-offer";
}

/// A validator's signed advertisement for a capability family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidatorOffer {
    /// The validator's identity key.
    pub validator_id: PublicKey,
    /// Capability ID prefix it validates, e.g. `web.` or `web.page_to_markdown@1`.
    pub capability_family: String,
    /// Validation models offered.
    pub models: Vec<ValidationModel>,
    /// Fee per validation.
    pub fee: Price,
    /// Where the validator is paid.
    pub payout_wallet: String,
    /// Where the validator is paid on EVM rails (a 0x address), if it takes EVM payouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evm_payout_wallet: Option<String>,
    /// When the offer was made.
    pub issued_at: Timestamp,
    /// When it lapses unless re-announced.
    pub expires_at: Timestamp,
}

impl SignedObject for ValidatorOffer {
    const OBJECT_TYPE: &'static str = "validator-offer";
}

/// A buyer's request as the gateway accepted it: capability, input and server-owned policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskIntent {
    /// `task:<cid-ish id>`.
    pub task_id: String,
    /// `<id>@<major>`.
    pub capability_id: String,
    /// The exact manifest to run.
    pub manifest_cid: ContentId,
    /// The task input (valid against the manifest's input schema).
    pub input: Value,
    /// Execution mode.
    pub mode: ExecutionMode,
    /// Workers leased.
    pub fanout: u32,
    /// Agreeing workers required (quorum mode); 1 otherwise.
    pub quorum: u32,
    /// Deadline for the whole task.
    pub deadline_ms: u64,
    /// All-in price the buyer paid.
    pub budget: Amount,
    /// Validation model applied.
    pub validation: ValidationModel,
    /// The gateway that owns the task.
    pub gateway: PublicKey,
    /// When the task was created.
    pub created_at: Timestamp,
}

impl SignedObject for TaskIntent {
    const OBJECT_TYPE: &'static str = "task-intent";
}

/// A worker's offer to run a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bid {
    /// The task.
    pub task_id: String,
    /// The bidding worker.
    pub worker: PublicKey,
    /// The manifest the worker will run.
    pub manifest_cid: ContentId,
    /// The worker's asking price.
    pub price: Amount,
    /// Expected completion time.
    pub eta_ms: u64,
    /// When the bid lapses.
    pub expires_at: Timestamp,
}

impl SignedObject for Bid {
    const OBJECT_TYPE: &'static str = "bid";
}

/// The gateway's assignment of a task to one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lease {
    /// Unique lease id.
    pub lease_id: String,
    /// The task.
    pub task_id: String,
    /// The leasing gateway.
    pub gateway: PublicKey,
    /// The worker.
    pub worker: PublicKey,
    /// The exact manifest to run.
    pub manifest_cid: ContentId,
    /// The artifact to run.
    pub artifact_cid: ContentId,
    /// Gross amount the worker may earn.
    pub price: Amount,
    /// Result must arrive before this.
    pub expires_at: Timestamp,
}

impl SignedObject for Lease {
    const OBJECT_TYPE: &'static str = "lease";
}

/// A worker's signed result: output, hashes and evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResultClaim {
    /// The task.
    pub task_id: String,
    /// The lease it answers.
    pub lease_id: String,
    /// The worker.
    pub worker: PublicKey,
    /// Manifest run.
    pub manifest_cid: ContentId,
    /// Artifact run.
    pub artifact_cid: ContentId,
    /// sha256 of the canonical input.
    pub input_hash: ContentHash,
    /// The output JSON.
    pub output: Value,
    /// sha256 of the canonical output.
    pub output_hash: ContentHash,
    /// Snapshots the run read (snapshot-deterministic capabilities).
    #[serde(default)]
    pub snapshot_cids: Vec<ContentId>,
    /// Run evidence: fuel, time, logs digest.
    #[serde(default)]
    pub evidence: Value,
    /// When the run finished.
    pub completed_at: Timestamp,
}

impl SignedObject for ResultClaim {
    const OBJECT_TYPE: &'static str = "result-claim";
}
