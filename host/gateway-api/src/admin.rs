//! The admin API's data: served on a node's separate admin listener (never on the public
//! router or in the public OpenAPI document), behind a bearer token.

use serde::{Deserialize, Serialize};

/// `<state>/admin.json` (mode 0600), written while the node runs: where its admin API
/// listens and the token it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminEndpoint {
    /// The admin API's base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The bearer token (`Authorization: Bearer <token>`).
    pub token: String,
    /// The node's public API base URL.
    pub public_url: String,
    /// The node process.
    pub pid: u32,
}

/// Admin route: the ops snapshot.
pub const STATUS: &str = "/admin/status";
/// Admin route: ledger balances by account.
pub const BALANCES: &str = "/admin/balances";
/// Admin route: the task list (filters as query parameters).
pub const TASKS: &str = "/admin/tasks";
/// Admin route: payouts owed and paid on external rails.
pub const PAYOUTS: &str = "/admin/payouts";
/// Admin route: credit an account on the simulated rail's ledger.
pub const FAUCET: &str = "/admin/faucet";
/// Admin route: Prometheus metrics.
pub const METRICS: &str = "/metrics";

/// Whose an account on the node's ledger is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountRole {
    /// The node's own wallet (the gateway: receives payments, keeps its earnings).
    Node,
    /// One of the node's local workers.
    LocalWorker,
    /// Anyone else: buyers, creators, validators and remote workers paid here.
    Other,
}

/// One account's balance on the simulated rail's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountBalance {
    /// The account (base58).
    pub account: String,
    /// Whose it is.
    pub role: AccountRole,
    /// Balance in micro-dollars.
    pub balance_micros: u64,
    /// What it earned from settled tasks (payouts in settlement receipts), micro-dollars.
    pub earned_micros: u64,
}

/// One task as the admin task list shows it (no input or output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummary {
    /// Task ID.
    pub task_id: String,
    /// Status (`running`, `settling`, `accepted`, `refunding`, `rejected`,
    /// `settlement-failed`).
    pub status: String,
    /// Capability ID.
    pub capability_id: String,
    /// Execution mode.
    pub mode: String,
    /// The price paid, micro-dollars.
    pub price_micros: u64,
    /// The rail it was paid on.
    pub rail: String,
    /// When it was paid (RFC 3339).
    pub created_at: String,
    /// When it was decided (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /admin/faucet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaucetRequest {
    /// The account to credit (base58).
    pub account: String,
    /// Micro-dollars to credit.
    pub amount_micros: u64,
}

/// The answer to `POST /admin/faucet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaucetResponse {
    /// The account credited.
    pub account: String,
    /// Micro-dollars credited.
    pub credited_micros: u64,
    /// The new balance, micro-dollars.
    pub balance_micros: u64,
}
