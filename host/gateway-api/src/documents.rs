//! The gateway's discovery, health and error documents as types: what `/health`,
//! `/healthz`, `/network`, `/.well-known/d402-gateway.json` and every error answer. The
//! server builds these; the OpenAPI document's schemas for them are generated from them
//! ([`generated_schemas`]), so the two cannot drift apart.

use d402_protocol::{ExecutionMode, Payout, Refund, ValidationReceipt};
use d402_x402::SettlementResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

/// An execution mode as the documents name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One worker.
    Single,
    /// The first acceptable result of several workers.
    Race,
    /// Agreeing results of several workers.
    Quorum,
}

impl From<ExecutionMode> for Mode {
    fn from(mode: ExecutionMode) -> Self {
        match mode {
            ExecutionMode::Single => Self::Single,
            ExecutionMode::Race => Self::Race,
            ExecutionMode::Quorum => Self::Quorum,
        }
    }
}

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's machine-readable code and human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `unknown_task`.
    pub code: String,
    /// What went wrong and what to do next.
    pub message: String,
}

/// `GET /healthz`: the readiness probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Healthz {
    /// Always true while the gateway answers.
    pub ok: bool,
}

/// An accepted payment rail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RailDescription {
    /// Its `--rail` name.
    pub rail: String,
    /// How far it is from carrying real money.
    pub maturity: String,
    /// The x402 scheme of its requirements.
    pub scheme: String,
    /// Its network (CAIP-2 style).
    pub network: String,
    /// The asset paid.
    pub asset: String,
    /// Where payments go.
    pub pay_to: String,
    /// Whether its live checks passed (in `/health` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Its live checks (in `/health` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub checks: Option<Vec<Value>>,
}

/// How creator commissions are priced and paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommissionPolicy {
    /// `included`: commissions come out of the price.
    pub pricing_mode: String,
    /// What a commission is bound to (`exact-manifest`).
    pub scope: String,
    /// The highest commission rate served, basis points.
    pub max_rate_bps: u32,
    /// The rail commissions are paid on.
    pub payout_rail: String,
    /// A provider's own `payTo` needs the escrow to pay creators.
    pub requires_escrow_for_direct_provider_pay_to: bool,
}

/// `GET /health`: liveness, payment readiness and the public policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// Always true while the gateway answers.
    pub ok: bool,
    /// Every rail passed its live checks (chain reachable, chain id, gas signer funded).
    pub payment_ready: bool,
    /// The operator paused new paid tasks (`d402 ops pause`); reads, receipts,
    /// settlements and refunds continue.
    pub incident_mode: bool,
    /// `gateway:<base58 key>`.
    pub node_id: String,
    /// The default capability's policy.
    pub policy: HealthPolicy,
}

/// The policy `/health` publishes for the default capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthPolicy {
    /// Its price, `$0.01`.
    pub price: String,
    /// Its capability ID.
    pub capability_id: String,
    /// How its tasks run.
    pub mode: Mode,
    /// Workers per task.
    #[schema(minimum = 1)]
    pub fanout: u32,
    /// Agreeing results needed.
    #[schema(minimum = 1)]
    pub quorum: u32,
    /// Its deadline, milliseconds.
    pub deadline_ms: u64,
    /// `"sync": false` is taken.
    pub allow_async: bool,
    /// The preferred rail.
    pub payment_router: String,
    /// Every accepted rail, with its live checks.
    pub rails: Vec<RailDescription>,
    /// How creator commissions are paid.
    pub creator_commission: CommissionPolicy,
}

/// `GET /network`: the peer network as this gateway sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Network)]
pub struct NetworkView {
    /// Whether the node joined a peer network.
    pub enabled: bool,
    /// Its libp2p peer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// Its listen addresses.
    pub addresses: Vec<String>,
    /// The verified worker offers it heard (signed envelopes).
    #[schema(value_type = Vec<Object>)]
    pub node_offers: Vec<Value>,
    /// The verified validator offers it heard (signed envelopes).
    #[schema(value_type = Vec<Object>)]
    pub validator_offers: Vec<Value>,
}

/// `GET /.well-known/d402-gateway.json`: capabilities, prices, rails, endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    /// Version of this document.
    pub d402_gateway_version: u32,
    /// The same, under its legacy name.
    pub dnc_gateway_version: u32,
    /// `gateway:<base58 key>`: the key its receipts are signed with.
    pub node_id: String,
    /// Roles the node holds.
    pub roles: Vec<String>,
    /// The protocols it speaks.
    pub protocol: Protocol,
    /// Where to call.
    pub endpoints: Endpoints,
    /// What it sells.
    pub capabilities: Vec<DiscoveredCapability>,
    /// How it is paid.
    pub payment: PaymentSummary,
}

/// The protocols a gateway speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    /// `http` or `https`.
    pub transport: String,
    /// `d402-http-task-v1`.
    pub task_api: String,
    /// `dnc-http-task-v1`.
    pub legacy_task_api: String,
    /// `x402`.
    pub payment_challenge: String,
}

/// A gateway's endpoints, absolute (`{taskId}` to fill in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// `GET`: liveness and policy.
    pub health: String,
    /// `POST`: create a task.
    pub create_task: String,
    /// `GET`: a task.
    pub task: String,
    /// `GET`: a task's result.
    pub result: String,
    /// `GET`: a task's receipts.
    pub receipt: String,
    /// `GET`: capability search.
    pub capabilities: String,
    /// `GET`: the OpenAPI document.
    pub openapi: String,
}

/// A capability in the discovery document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredCapability {
    /// Its capability ID.
    pub capability_id: String,
    /// Its manifest CID.
    pub manifest_cid: String,
    /// Its price, `$0.01`.
    pub price: String,
    /// How its tasks run.
    pub mode: Mode,
    /// Workers per task.
    pub fanout: u32,
    /// Agreeing results needed.
    pub quorum: u32,
}

/// How a gateway is paid: its preferred rail, every rail, the default price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSummary {
    /// The preferred rail's name.
    pub rail: String,
    /// Its network.
    pub network: String,
    /// Its asset.
    pub asset: String,
    /// Where it pays.
    pub pay_to: String,
    /// Every accepted rail.
    pub rails: Vec<RailDescription>,
    /// The default capability's price.
    pub price: String,
    /// How creator commissions are paid.
    pub creator_commission: CommissionPolicy,
}

/// The body of `POST /tasks` (and of a capability's own route, which also takes the bare
/// input). Server-owned policy fields a client may send (mode, fanout, quorum, maxBudget,
/// price, payTo) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TaskRequest)]
pub struct TaskRequestBody {
    /// The capability's input (its input schema).
    #[schema(value_type = Object, required = true)]
    pub input: Option<Value>,
    /// false: answer 202 at once and run in the background. Default (and null): true.
    #[serde(default)]
    pub sync: Option<bool>,
    /// One of the capabilities this gateway serves (default: the first); any other value
    /// is refused with 400 `unknown_capability`. A capability's own route always runs that
    /// capability.
    #[serde(default)]
    pub capability_id: Option<String>,
}

/// `GET /capabilities`: the capabilities served that match the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Capabilities {
    /// Each, with its manifest's description, schemas, price and policy.
    pub capabilities: Vec<CapabilityListing>,
}

/// A served capability as the search lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityListing {
    /// Its capability ID.
    pub capability_id: String,
    /// Its manifest CID.
    pub manifest_cid: String,
    /// Its component's CID.
    pub artifact_cid: String,
    /// Its publisher namespace.
    pub namespace: String,
    /// What it does.
    pub description: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The hash shard it belongs to.
    pub shard: String,
    /// How deterministic its output is.
    #[schema(value_type = String)]
    pub determinism: Value,
    /// How its claims are validated.
    #[schema(value_type = Object)]
    pub validator: Value,
    /// Its price, `$0.01`.
    pub price: String,
    /// The execution modes it allows.
    #[schema(value_type = Vec<String>)]
    pub execution_modes: Vec<Value>,
    /// How this gateway runs it.
    pub mode: Mode,
    /// Workers per task.
    pub fanout: u32,
    /// Agreeing results needed.
    pub quorum: u32,
    /// Its input JSON Schema.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// Its output JSON Schema.
    #[schema(value_type = Object)]
    pub output_schema: Value,
    /// Served by this gateway's acceptance policy.
    pub accepted: bool,
    /// Its signed registration, if any.
    pub registration: Option<RegistrationView>,
}

/// A capability's signed registration as the search lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationView {
    /// The registration's CID.
    pub registration_cid: String,
    /// Its publisher's key.
    pub publisher: String,
    /// The namespace it claims.
    pub namespace: String,
    /// Registrations are always signed envelopes.
    pub signed: bool,
    /// It carries a namespace proof.
    pub namespace_proof: bool,
    /// Its publisher deprecated it.
    pub deprecated: bool,
    /// The creator commission it declares.
    #[schema(value_type = Option<Object>)]
    pub creator_commission: Option<Value>,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    /// Paid; running.
    Running,
    /// Accepted; its payment is still settling on chain.
    Settling,
    /// Accepted and settled: the result is released.
    Accepted,
    /// Rejected; the refund is still being sent.
    Refunding,
    /// Rejected and refunded.
    Rejected,
    /// Its payment could never be settled: nothing was charged, the result is withheld.
    SettlementFailed,
}

/// A task's own links, relative to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Links {
    /// `GET`: the task.
    pub task: String,
    /// `GET`: its result.
    pub result: String,
    /// `GET`: its receipts.
    pub receipt: String,
}

impl Links {
    /// The links of task `task_id`.
    pub fn of(task_id: &str) -> Self {
        Self {
            task: format!("/tasks/{task_id}"),
            result: format!("/tasks/{task_id}/result"),
            receipt: format!("/tasks/{task_id}/receipt"),
        }
    }
}

/// A task that is not finished: running, or settling its payment (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    /// The task.
    pub task_id: String,
    /// `running` or `settling`.
    pub status: TaskState,
    /// Where to look again.
    pub links: Links,
}

/// A task that ended without a result: rejected (422, `task_rejected`) or whose payment
/// could never be settled (402, `settlement_failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Rejected)]
pub struct TaskFailure {
    /// Why.
    pub error: ErrorDetail,
    /// The task.
    pub task_id: String,
    /// Where it stands.
    pub status: TaskState,
}

/// The task document (`POST /tasks`, `GET /tasks/{taskId}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Task)]
pub struct TaskDocument {
    /// The task.
    pub task_id: String,
    /// Where it stands.
    pub status: TaskState,
    /// Its capability.
    pub capability_id: String,
    /// Its capability's manifest CID.
    pub manifest_cid: String,
    /// How it runs.
    pub mode: Mode,
    /// Workers leased.
    pub fanout: u32,
    /// Agreeing results needed.
    pub quorum: u32,
    /// The workers that ran it.
    pub workers: Vec<String>,
    /// Its links.
    pub links: Links,
    /// The accepted output, once its payment settled (the capability's output schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The run's evidence, once its payment settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<Value>,
    /// Why the run failed (kind, message); the buyer was refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Why the last attempt to settle the payment on chain did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_error: Option<String>,
    /// The validation receipt, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_receipt: Option<ValidationReceipt>,
    /// Payouts and refunds, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Settlement>,
}

/// Where a task's money went: its settlement receipt's payouts and refunds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Settlement {
    /// Payouts to workers, creator and validator.
    pub payouts: Vec<Payout>,
    /// Refunds to the buyer.
    pub refunds: Vec<Refund>,
}

/// `GET /tasks/{taskId}/result` of an accepted task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Result)]
pub struct TaskResult {
    /// The task.
    pub task_id: String,
    /// `accepted`.
    pub status: TaskState,
    /// The accepted output (the capability's output schema).
    #[schema(value_type = Object)]
    pub result: Value,
    /// The run's evidence.
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<Value>,
}

/// `GET /tasks/{taskId}/receipt`: validation and settlement receipts, the claims and their
/// verdicts, and the signed originals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Receipt)]
pub struct ReceiptDocument {
    /// The task.
    pub task_id: String,
    /// Where it stands.
    pub status: TaskState,
    /// The validation receipt.
    pub validation_receipt: ValidationReceipt,
    /// Payouts and refunds.
    pub settlement: Settlement,
    /// The `PAYMENT-RESPONSE` document.
    pub payment: SettlementResponse,
    /// Each claim and its verdict.
    pub claims: Vec<ClaimView>,
    /// Leased runs that produced no claim.
    pub failures: Vec<RunFailure>,
    /// The signed originals, to check offline.
    pub signed: SignedReceipts,
}

/// A claim as the receipt shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimView {
    /// The signed claim's CID.
    pub claim_cid: Option<String>,
    /// The worker that made it.
    pub worker_id: String,
    /// The hash of its output.
    pub output_hash: String,
    /// What validation made of it.
    pub verdict: VerdictView,
}

/// A claim's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerdictView {
    /// `accepted`, `rejected` or `unused`.
    pub status: VerdictStatus,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What validation made of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerdictStatus {
    /// Accepted.
    Accepted,
    /// Refused (invalid, failed replay, out-voted).
    Rejected,
    /// Valid but not needed.
    Unused,
}

/// A leased run that produced no claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunFailure {
    /// The worker.
    pub worker_id: String,
    /// Why (kind, message).
    #[schema(value_type = Object)]
    pub error: Value,
}

/// The signed envelopes behind a receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedReceipts {
    /// The task intent the gateway signed when it was paid.
    #[schema(schema_with = signed)]
    pub task_intent: Value,
    /// The validation receipt.
    #[schema(schema_with = signed)]
    pub validation_receipt: Value,
    /// The settlement receipt.
    #[schema(schema_with = signed)]
    pub settlement_receipt: Value,
    /// The workers' claims.
    #[schema(schema_with = signed_list)]
    pub claims: Vec<Value>,
    /// The reputation events.
    #[schema(schema_with = signed_list)]
    pub reputation_events: Vec<Value>,
}

/// What a paid route answers with 402: the challenge (no payment, or a refused one's
/// reason in `error`), or the error document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PaymentRefusal {
    /// The x402 v2 challenge.
    Challenge(d402_x402::PaymentRequired),
    /// The error.
    Error(ErrorBody),
}

/// A schema written in the document (the protocol's receipts), by name.
fn written(name: &str) -> utoipa::openapi::Ref {
    utoipa::openapi::Ref::from_schema_name(name)
}

fn signed() -> utoipa::openapi::Ref {
    written("Signed")
}

fn signed_list() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::Array::new(signed())
}

/// The documents whose schemas are generated.
#[derive(OpenApi)]
#[openapi(components(schemas(
    ErrorBody,
    Healthz,
    Health,
    Capabilities,
    TaskRequestBody,
    NetworkView,
    Discovery,
    CommissionPolicy,
    Running,
    TaskFailure,
    TaskDocument,
    TaskResult,
    ReceiptDocument,
    PaymentRefusal,
    d402_x402::PaymentRequired,
    d402_x402::SettlementResponse
)))]
struct Generated;

/// The OpenAPI schemas generated from these types (and the types they hold), by name.
pub fn generated_schemas() -> serde_json::Map<String, Value> {
    let components = Generated::openapi().components.unwrap_or_default();
    components
        .schemas
        .into_iter()
        .map(|(name, schema)| {
            let schema = serde_json::to_value(schema).expect("a schema serializes");
            (name, schema)
        })
        .collect()
}
