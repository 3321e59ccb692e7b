//! The gateway: HTTP API, 402 flow, local single-mode execution, validation and settlement.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use axum::body::{Body, to_bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use d402_blobstore::BlobStore;
use d402_protocol::{
    Amount, CapabilityManifest, CompiledSchemas, ContentHash, ContentId, ExecutionMode, Keypair, Payout,
    PayoutReason, Refund, ResultClaim, SettlementReceipt, Signed, TaskIntent, Timestamp, ValidationReceipt,
    ValidationStatus,
};
use d402_runtime::{LoadedCapability, PageSource, Runtime, RuntimeConfig, TaskInfo};
use serde_json::{Value, json};

use crate::config::{NodeConfig, Role};
use crate::payment::{
    Expectation, PaymentError, PaymentRail, PaymentRequired, PaymentResponse, Resource, SimulatedRail, X402_VERSION,
    encode_header, task_binding,
};
use crate::store::{Accepted, NodeStore, Receipts, StoreError, TaskRecord, TaskStatus};

/// A running gateway's shared state.
pub struct Gateway {
    config: NodeConfig,
    key: Keypair,
    node_id: String,
    store: NodeStore,
    runtime: Runtime,
    capability: Arc<LoadedCapability>,
    schemas: CompiledSchemas,
    pages: Option<Arc<dyn PageSource>>,
    rail: Box<dyn PaymentRail>,
    price: Amount,
}

impl Gateway {
    /// Opens the node described by `config`: wallet (`<state>/wallet.json`, created if
    /// missing), store, the installed capability it serves, and the page fetcher if the
    /// capability needs one. Must run inside a tokio runtime.
    pub fn open(config: NodeConfig) -> anyhow::Result<Arc<Self>> {
        let reference = config.accepted_manifest_cids.first().cloned().unwrap_or_else(|| config.capability.clone());
        let manifest = crate::installed::find_installed(&config.state, &reference)?;
        let runtime = new_runtime(&config, &manifest)?;
        let blobs = BlobStore::open(config.state.join("blobs"))?;
        let capability = runtime.load_from_store(&manifest, &blobs)?;
        Self::with_capability(config, runtime, capability)
    }

    /// Opens a node serving `manifest` with the component `bytes` (tests, development).
    pub fn open_with(config: NodeConfig, manifest: &CapabilityManifest, bytes: &[u8]) -> anyhow::Result<Arc<Self>> {
        let runtime = new_runtime(&config, manifest)?;
        let capability = runtime.load(manifest, bytes)?;
        Self::with_capability(config, runtime, capability)
    }

    fn with_capability(config: NodeConfig, runtime: Runtime, capability: Arc<LoadedCapability>) -> anyhow::Result<Arc<Self>> {
        if config.rail != "simulated" {
            bail!("payment rail {:?} is not available yet; use --rail simulated", config.rail);
        }
        if config.require_capability_registration
            || config.require_signed_capability_registration
            || config.require_capability_namespace_proof
        {
            tracing::warn!("registration and namespace-proof requirements are accepted but not enforced yet");
        }
        let manifest = capability.manifest();
        let cid = capability.manifest_cid().to_string();
        if !config.accepted_manifest_cids.is_empty() && !config.accepted_manifest_cids.iter().any(|c| *c == cid) {
            bail!("manifest {cid} is not among --accepted-manifest-cid");
        }
        if !config.trusted_capability_namespaces.is_empty()
            && !config.trusted_capability_namespaces.iter().any(|n| n == manifest.namespace())
        {
            bail!("namespace {:?} is not a --trusted-capability-namespace", manifest.namespace());
        }
        let price = config.price.map_or(manifest.pricing.price.0, |p| p.0);
        if let Some(cap) = config.safety_max_task_budget
            && price > cap
        {
            bail!("price {} is above D402_SAFETY_MAX_TASK_BUDGET {}", d402_protocol::Price(price), d402_protocol::Price(cap));
        }
        std::fs::create_dir_all(&config.state).with_context(|| format!("cannot create {}", config.state.display()))?;
        let key = d402_wallet::load_or_create(&config.state.join("wallet.json"))?;
        let store = NodeStore::open(&config.state.join("node.redb"))?;
        let pages: Option<Arc<dyn PageSource>> = if manifest.permissions.browser.is_some() {
            let browser = d402_browser::BrowserConfig {
                allow_private_addresses: config.allow_private_addresses,
                ..d402_browser::BrowserConfig::default()
            };
            let live = d402_browser::LiveSource::new(browser, BlobStore::open(config.state.join("blobs"))?)
                .map_err(|e| anyhow::anyhow!("cannot start the page fetcher: {e:?}"))?;
            Some(Arc::new(live))
        } else {
            None
        };
        let schemas = manifest.compile_schemas()?;
        let node_id = format!("gateway:{}", key.public());
        let gateway = Arc::new(Self {
            config,
            key,
            node_id,
            store,
            runtime,
            capability,
            schemas,
            pages,
            rail: Box::new(SimulatedRail),
            price,
        });
        gateway.recover()?;
        Ok(gateway)
    }

    /// The gateway wallet (receives payments; base58).
    pub fn account(&self) -> String {
        self.key.public().to_string()
    }

    /// The durable store (tests and the faucet read balances through it).
    pub fn store(&self) -> &NodeStore {
        &self.store
    }

    /// The price of one task.
    pub fn price(&self) -> Amount {
        self.price
    }

    /// Refunds every task that was paid but never settled (the node stopped mid-run).
    fn recover(&self) -> anyhow::Result<()> {
        for record in self.store.running()? {
            tracing::warn!(task = %record.task_id, "refunding a task interrupted by a restart");
            self.settle_rejected(record, json!({"kind": "interrupted", "message": "the node stopped before the task finished"}), Vec::new())?;
        }
        Ok(())
    }

    fn base_url(&self) -> String {
        self.config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", self.config.http_host, self.config.http_port))
    }

    fn capability_id(&self) -> String {
        self.capability.manifest().capability_id()
    }

    fn commission_policy(&self) -> Value {
        json!({
            "pricingMode": "included",
            "scope": "exact-manifest",
            "maxRateBps": self.config.max_creator_commission_bps,
            "payoutRail": self.rail.name(),
            "requiresEscrowForDirectProviderPayTo": true
        })
    }

    fn challenge(&self, path: &str, error: Option<String>) -> PaymentRequired {
        PaymentRequired {
            x402_version: X402_VERSION,
            error,
            resource: Resource {
                url: format!("{}{path}", self.base_url()),
                description: Some(format!("{} task", self.capability_id())),
                mime_type: Some("application/json".into()),
            },
            accepts: vec![self.rail.requirements(self.price, &self.account(), self.config.payment_timeout_seconds)],
        }
    }
}

fn new_runtime(config: &NodeConfig, manifest: &CapabilityManifest) -> anyhow::Result<Runtime> {
    Ok(Runtime::new(RuntimeConfig {
        compile_cache_dir: Some(config.state.join("compile-cache")),
        fuel_metering: manifest.limits.fuel.is_some(),
        ..RuntimeConfig::default()
    })?)
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// A JSON error response: `{"error": {"code", "message"}}`.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

fn store_error(e: StoreError) -> Response {
    tracing::error!(error = %e, "store failure");
    error(StatusCode::INTERNAL_SERVER_ERROR, "store_failure", e.to_string())
}

/// The HTTP API over `gateway`.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/healthz", get(healthz))
        .route("/.well-known/d402-gateway.json", get(discovery))
        .route("/.well-known/dnc-gateway.json", get(discovery))
        .route("/capabilities", get(capabilities))
        .route("/tasks", post(create_task))
        .route("/v1/web/page-to-markdown", post(create_page_task))
        .route("/tasks/{id}", get(get_task))
        .route("/tasks/{id}/result", get(get_result))
        .route("/tasks/{id}/receipt", get(get_receipt))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(gateway)
}

/// Binds the configured address and serves until the process ends. Prints the bound
/// address (`d402 node listening on http://…`) on stdout once listening.
pub async fn serve(gateway: Arc<Gateway>) -> anyhow::Result<()> {
    let address = (gateway.config.http_host, gateway.config.http_port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {}:{}", address.0, address.1))?;
    let bound = listener.local_addr()?;
    println!("d402 node listening on http://{bound} (node {}, {} at {})", gateway.node_id, gateway.capability_id(), d402_protocol::Price(gateway.price));
    tracing::info!(%bound, "gateway listening");
    axum::serve(listener, router(gateway)).await?;
    Ok(())
}

async fn health(State(g): State<Arc<Gateway>>) -> Json<Value> {
    Json(json!({
        "ok": true,
        "nodeId": g.node_id,
        "policy": {
            "price": d402_protocol::Price(g.price).to_string(),
            "capabilityId": g.capability_id(),
            "mode": "single",
            "fanout": 1,
            "quorum": 1,
            "deadlineMs": g.capability.manifest().limits.deadline_ms,
            "allowAsync": true,
            "paymentRouter": g.rail.name(),
            "creatorCommission": g.commission_policy()
        }
    }))
}

async fn healthz() -> Json<Value> {
    Json(json!({"ok": true}))
}

async fn discovery(State(g): State<Arc<Gateway>>) -> Json<Value> {
    let base = g.base_url();
    let roles: Vec<&str> = g
        .config
        .roles
        .iter()
        .map(|r| match r {
            Role::Gateway => "gateway",
            Role::Worker => "worker",
            Role::Validator => "validator",
        })
        .collect();
    let price = d402_protocol::Price(g.price).to_string();
    Json(json!({
        "d402GatewayVersion": 1,
        "dncGatewayVersion": 1,
        "nodeId": g.node_id,
        "roles": roles,
        "protocol": {
            "transport": if base.starts_with("https") { "https" } else { "http" },
            "taskApi": "d402-http-task-v1",
            "legacyTaskApi": "dnc-http-task-v1",
            "paymentChallenge": "x402"
        },
        "endpoints": {
            "health": format!("{base}/health"),
            "createTask": format!("{base}/tasks"),
            "task": format!("{base}/tasks/{{taskId}}"),
            "result": format!("{base}/tasks/{{taskId}}/result"),
            "receipt": format!("{base}/tasks/{{taskId}}/receipt")
        },
        "capabilities": [{
            "capabilityId": g.capability_id(),
            "manifestCid": g.capability.manifest_cid().to_string(),
            "price": price,
            "mode": "single",
            "fanout": 1,
            "quorum": 1
        }],
        "payment": {
            "rail": g.rail.name(),
            "network": g.rail.network(),
            "asset": crate::payment::SIMULATED_ASSET,
            "payTo": g.account(),
            "price": price,
            "creatorCommission": g.commission_policy()
        }
    }))
}

async fn capabilities(State(g): State<Arc<Gateway>>) -> Json<Value> {
    let manifest = g.capability.manifest();
    Json(json!({
        "capabilities": [{
            "capabilityId": g.capability_id(),
            "manifestCid": g.capability.manifest_cid().to_string(),
            "artifactCid": g.capability.artifact_cid().to_string(),
            "namespace": manifest.namespace(),
            "description": manifest.description,
            "tags": manifest.tags,
            "determinism": manifest.determinism,
            "validator": manifest.validator,
            "price": d402_protocol::Price(g.price).to_string(),
            "executionModes": ["single"],
            "accepted": true,
            "registration": null
        }]
    }))
}

async fn create_task(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    handle_task(g, "/tasks", headers, body).await
}

async fn create_page_task(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    if g.capability.manifest().id != "web.page_to_markdown" {
        return error(StatusCode::NOT_FOUND, "unknown_capability", "this gateway does not serve web.page_to_markdown@1");
    }
    handle_task(g, "/v1/web/page-to-markdown", headers, body).await
}

/// The request fields the gateway honours; everything else a client sends (capabilityId,
/// mode, fanout, quorum, maxBudget, price, payTo) is server-owned policy and ignored.
struct TaskRequest {
    input: Value,
    sync: bool,
    body: Value,
}

/// Parses a task request. On the page-to-markdown alias (`bare_input_ok`) a body without
/// `input` is the input itself, as in the spec's `{"url": "https://example.com"}` example.
fn parse_request(g: &Gateway, bytes: &[u8], bare_input_ok: bool) -> Result<TaskRequest, Response> {
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "malformed_json", format!("request body is not JSON: {e}")))?;
    let Some(object) = body.as_object() else {
        return Err(error(StatusCode::BAD_REQUEST, "malformed_request", "request body must be a JSON object"));
    };
    let input = match object.get("input") {
        Some(input) => input.clone(),
        None if bare_input_ok => body.clone(),
        None => return Err(error(StatusCode::BAD_REQUEST, "missing_input", "the request has no \"input\"")),
    };
    let sync = match object.get("sync") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(error(StatusCode::BAD_REQUEST, "malformed_request", "\"sync\" must be a boolean")),
    };
    for ignored in ["capabilityId", "mode", "fanout", "quorum", "maxBudget", "price", "payTo"] {
        if object.contains_key(ignored) {
            tracing::debug!(field = ignored, "ignoring client-supplied policy field");
        }
    }
    if let Some(url) = input.get("url") {
        let ok = url.as_str().and_then(|u| url::Url::parse(u).ok()).is_some_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some()
        });
        if !ok {
            return Err(error(StatusCode::BAD_REQUEST, "bad_url", "input.url must be an absolute http(s) URL"));
        }
    }
    g.schemas
        .validate_input(&input)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_input", e.to_string()))?;
    Ok(TaskRequest { input, sync, body })
}

fn payment_refused(g: &Gateway, path: &str, status: StatusCode, code: &str, message: String) -> Response {
    let challenge = g.challenge(path, Some(message.clone()));
    let mut response = error(status, code, message);
    if let Ok(value) = HeaderValue::from_str(&encode_header(&challenge)) {
        response.headers_mut().insert("payment-required", value);
    }
    response
}

async fn handle_task(g: Arc<Gateway>, path: &str, headers: HeaderMap, body: Body) -> Response {
    let limit = g.config.max_body_bytes;
    let bytes = match to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("request body is over {limit} bytes")),
    };
    let request = match parse_request(&g, &bytes, path == "/v1/web/page-to-markdown") {
        Ok(request) => request,
        Err(response) => return response,
    };
    let header = headers.get("payment-signature").or_else(|| headers.get("x-payment"));
    let Some(header) = header else {
        let challenge = g.challenge(path, None);
        let mut response = (StatusCode::PAYMENT_REQUIRED, Json(&challenge)).into_response();
        response
            .headers_mut()
            .insert("payment-required", HeaderValue::from_str(&encode_header(&challenge)).expect("base64 is a header value"));
        return response;
    };
    let Ok(header) = header.to_str() else {
        return payment_refused(&g, path, StatusCode::BAD_REQUEST, "malformed_payment", "payment header is not text".into());
    };
    let binding = task_binding(&request.body);
    let account = g.account();
    let expectation = Expectation {
        price: g.price,
        pay_to: &account,
        binding: &binding,
        now: now(),
        max_timeout_seconds: g.config.payment_timeout_seconds,
    };
    let verified = match g.rail.verify(header, &expectation) {
        Ok(verified) => verified,
        Err(e) => {
            let status = match e {
                PaymentError::Malformed(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::PAYMENT_REQUIRED,
            };
            return payment_refused(&g, path, status, e.code(), e.to_string());
        }
    };
    let task_id = format!("task:{}", &hex::encode(sha2_digest(verified.payment_key.as_bytes()))[..32]);
    let manifest = g.capability.manifest();
    let intent = TaskIntent {
        task_id: task_id.clone(),
        capability_id: g.capability_id(),
        manifest_cid: g.capability.manifest_cid(),
        input: request.input,
        mode: ExecutionMode::Single,
        fanout: 1,
        quorum: 1,
        deadline_ms: manifest.limits.deadline_ms,
        budget: g.price,
        validation: manifest.validator.model,
        gateway: g.key.public(),
        created_at: now(),
    };
    let intent = match Signed::sign(intent, &g.key) {
        Ok(intent) => intent,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    let payment_response = PaymentResponse {
        success: true,
        error_reason: None,
        payer: Some(verified.payer.clone()),
        transaction: verified.transaction.clone(),
        network: g.rail.network().into(),
        amount: Some(g.price.micros().to_string()),
    };
    let record = TaskRecord {
        task_id: task_id.clone(),
        status: TaskStatus::Running,
        intent,
        payer: verified.payer,
        payment_key: verified.payment_key,
        binding,
        amount: g.price,
        payment_response: serde_json::to_value(&payment_response).expect("serialisable"),
        result: None,
        evidence: None,
        error: None,
        created_at: now(),
        completed_at: None,
    };
    // The payment is consumed durably (and the buyer debited) before any work runs.
    let store = g.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let result = store.store.accept_payment(&record);
        (result, record)
    })
    .await;
    let (accepted, record) = match outcome {
        Ok(pair) => pair,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    match accepted {
        Ok(Accepted::Replay(existing)) => {
            tracing::info!(task = %existing.task_id, "idempotent replay");
            let mut response = task_response(&g, &existing);
            let headers = response.headers_mut();
            headers.insert("x-d402-idempotent-replay", HeaderValue::from_static("true"));
            headers.insert("x-dnc-idempotent-replay", HeaderValue::from_static("true"));
            response
        }
        Err(StoreError::PaymentReused(task)) => error(
            StatusCode::CONFLICT,
            "payment_already_used",
            format!("this payment was already used for task {task} with a different request"),
        ),
        Err(StoreError::InsufficientFunds { balance, needed }) => payment_refused(
            &g,
            path,
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_funds",
            format!("the payer's simulated balance is {balance} atomic units, the price is {needed}"),
        ),
        Err(e) => store_error(e),
        Ok(Accepted::New) => {
            tracing::info!(task = %task_id, payer = %record.payer, "payment accepted");
            if request.sync {
                let record = g.clone().execute(record).await;
                task_response(&g, &record)
            } else {
                let running = record.clone();
                tokio::spawn(g.clone().execute(record));
                let mut response = task_response(&g, &running);
                *response.status_mut() = StatusCode::ACCEPTED;
                response
            }
        }
    }
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

impl Gateway {
    /// Runs a paid task locally (single mode), validates and settles it. Returns the
    /// settled record (or the running one if the store failed; a restart refunds it).
    async fn execute(self: Arc<Self>, record: TaskRecord) -> TaskRecord {
        let info = TaskInfo { task_id: record.task_id.clone() };
        let input = record.intent.payload.input.clone();
        let outcome = self.runtime.run(&self.capability, &info, &input, self.pages.clone()).await;
        let this = self.clone();
        let settled = tokio::task::spawn_blocking(move || match outcome {
            Ok(report) => this.settle_accepted(record, report),
            Err(failure) => {
                let error = json!(failure.error);
                let evidence = serde_json::to_value(&failure.evidence).unwrap_or(Value::Null);
                this.settle_rejected(record, error, vec![]).map(|mut r| {
                    r.evidence = Some(evidence);
                    r
                })
            }
        })
        .await;
        match settled {
            Ok(Ok(record)) => record,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "settlement failed; the task is refunded on restart");
                self.store.task(&info.task_id).ok().flatten().expect("the task was stored")
            }
            Err(e) => panic!("settlement task panicked: {e}"),
        }
    }

    fn settle_accepted(&self, mut record: TaskRecord, report: d402_runtime::RunReport) -> anyhow::Result<TaskRecord> {
        let evidence = serde_json::to_value(&report.evidence)?;
        let output_hash = report
            .evidence
            .content_hash
            .unwrap_or_else(|| ContentHash::of(&d402_protocol::canonical::to_vec(&report.output).unwrap_or_default()));
        let claim = ResultClaim {
            task_id: record.task_id.clone(),
            lease_id: format!("lease:{}", &record.task_id["task:".len()..]),
            worker: self.key.public(),
            manifest_cid: self.capability.manifest_cid(),
            artifact_cid: self.capability.artifact_cid(),
            input_hash: report.evidence.input_hash.unwrap_or_else(|| ContentHash::of(b"")),
            output: report.output.clone(),
            output_hash,
            snapshot_cids: report.evidence.snapshot_cids.clone(),
            evidence: evidence.clone(),
            completed_at: now(),
        };
        let claim = Signed::sign(claim, &self.key)?;
        let claim_cid: ContentId = claim.cid()?;
        // The runtime already checked the output against the manifest's output schema; in
        // single mode with a local worker that is the whole validation.
        let validation = Signed::sign(
            ValidationReceipt {
                task_id: record.task_id.clone(),
                status: ValidationStatus::Accepted,
                accepted_claim_cids: vec![claim_cid],
                rejected_claim_cids: vec![],
                model: self.capability.manifest().validator.model,
                validator: self.key.public(),
                reason: None,
                issued_at: now(),
            },
            &self.key,
        )?;
        let worker = self.account();
        let payouts = vec![Payout {
            account: worker.clone(),
            worker_id: Some(format!("node:{worker}")),
            amount: record.amount,
            gross_amount: Some(record.amount),
            reason: PayoutReason::AcceptedResult,
            rate_bps: None,
            rail: Some(self.rail.name().into()),
            manifest_cid: None,
            registration_cid: None,
            publisher: None,
            namespace: None,
        }];
        let credits: Vec<(String, Amount)> = payouts.iter().map(|p| (p.account.clone(), p.amount)).collect();
        let settlement = Signed::sign(
            SettlementReceipt {
                task_id: record.task_id.clone(),
                payouts,
                refunds: vec![],
                rail: self.rail.name().into(),
                issued_at: now(),
            },
            &self.key,
        )?;
        if settlement.payload.total() != Some(record.amount) {
            bail!("payouts do not add up to the price");
        }
        record.status = TaskStatus::Accepted;
        record.result = Some(report.output);
        record.evidence = Some(evidence);
        record.completed_at = Some(now());
        let receipts = Receipts { validation_receipt: validation, settlement_receipt: settlement, claim_cids: vec![claim_cid] };
        self.store.settle(&record, &receipts, &credits)?;
        tracing::info!(task = %record.task_id, "task accepted and settled");
        Ok(record)
    }

    fn settle_rejected(&self, mut record: TaskRecord, error: Value, rejected: Vec<ContentId>) -> anyhow::Result<TaskRecord> {
        let reason = error.get("kind").and_then(Value::as_str).unwrap_or("failed").to_string();
        let validation = Signed::sign(
            ValidationReceipt {
                task_id: record.task_id.clone(),
                status: ValidationStatus::Rejected,
                accepted_claim_cids: vec![],
                rejected_claim_cids: rejected,
                model: self.capability.manifest().validator.model,
                validator: self.key.public(),
                reason: Some(error.to_string()),
                issued_at: now(),
            },
            &self.key,
        )?;
        let refund = Refund { account: record.payer.clone(), amount: record.amount, reason };
        let credits = vec![(refund.account.clone(), refund.amount)];
        let settlement = Signed::sign(
            SettlementReceipt {
                task_id: record.task_id.clone(),
                payouts: vec![],
                refunds: vec![refund],
                rail: self.rail.name().into(),
                issued_at: now(),
            },
            &self.key,
        )?;
        record.status = TaskStatus::Rejected;
        record.error = Some(error);
        record.completed_at = Some(now());
        let receipts = Receipts { validation_receipt: validation, settlement_receipt: settlement, claim_cids: vec![] };
        self.store.settle(&record, &receipts, &credits)?;
        tracing::info!(task = %record.task_id, "task rejected and refunded");
        Ok(record)
    }
}

fn links(task_id: &str) -> Value {
    json!({
        "task": format!("/tasks/{task_id}"),
        "result": format!("/tasks/{task_id}/result"),
        "receipt": format!("/tasks/{task_id}/receipt")
    })
}

/// The task document (the spec's accepted response shape), with `PAYMENT-RESPONSE`.
fn task_response(g: &Gateway, record: &TaskRecord) -> Response {
    let receipts = match g.store.receipts(&record.task_id) {
        Ok(receipts) => receipts,
        Err(e) => return store_error(e),
    };
    let mut document = json!({
        "taskId": record.task_id,
        "status": record.status.as_str(),
        "capabilityId": record.intent.payload.capability_id,
        "manifestCid": record.intent.payload.manifest_cid,
        "links": links(&record.task_id),
    });
    if let Some(result) = &record.result {
        document["result"] = result.clone();
    }
    if let Some(evidence) = &record.evidence {
        document["evidence"] = evidence.clone();
    }
    if let Some(error) = &record.error {
        document["error"] = error.clone();
    }
    if let Some(receipts) = receipts {
        document["validationReceipt"] = json!(receipts.validation_receipt.payload);
        document["settlement"] = json!({
            "payouts": receipts.settlement_receipt.payload.payouts,
            "refunds": receipts.settlement_receipt.payload.refunds
        });
    }
    let mut response = (StatusCode::OK, Json(document)).into_response();
    if let Ok(value) = HeaderValue::from_str(&encode_header(&record.payment_response)) {
        response.headers_mut().insert("payment-response", value);
    }
    response
}

fn load_task(g: &Gateway, id: &str) -> Result<TaskRecord, Response> {
    match g.store.task(id) {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, "unknown_task", format!("no task {id}"))),
        Err(e) => Err(store_error(e)),
    }
}

async fn get_task(State(g): State<Arc<Gateway>>, UrlPath(id): UrlPath<String>) -> Response {
    match load_task(&g, &id) {
        Ok(record) => task_response(&g, &record),
        Err(response) => response,
    }
}

async fn get_result(State(g): State<Arc<Gateway>>, UrlPath(id): UrlPath<String>) -> Response {
    let record = match load_task(&g, &id) {
        Ok(record) => record,
        Err(response) => return response,
    };
    match record.status {
        TaskStatus::Running => (StatusCode::ACCEPTED, Json(json!({"taskId": id, "status": "running", "links": links(&id)}))).into_response(),
        TaskStatus::Accepted => Json(json!({"taskId": id, "status": "accepted", "result": record.result, "evidence": record.evidence})).into_response(),
        TaskStatus::Rejected => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": {"code": "task_rejected", "message": record.error.map(|e| e.to_string()).unwrap_or_default()}, "taskId": id, "status": "rejected"})),
        )
            .into_response(),
    }
}

async fn get_receipt(State(g): State<Arc<Gateway>>, UrlPath(id): UrlPath<String>) -> Response {
    let record = match load_task(&g, &id) {
        Ok(record) => record,
        Err(response) => return response,
    };
    match g.store.receipts(&id) {
        Ok(Some(receipts)) => Json(json!({
            "taskId": id,
            "status": record.status.as_str(),
            "validationReceipt": receipts.validation_receipt.payload,
            "settlement": {
                "payouts": receipts.settlement_receipt.payload.payouts,
                "refunds": receipts.settlement_receipt.payload.refunds
            },
            "payment": record.payment_response,
            "signed": {
                "taskIntent": record.intent,
                "validationReceipt": receipts.validation_receipt,
                "settlementReceipt": receipts.settlement_receipt,
                "claimCids": receipts.claim_cids
            }
        }))
        .into_response(),
        Ok(None) => (StatusCode::ACCEPTED, Json(json!({"taskId": id, "status": "running", "links": links(&id)}))).into_response(),
        Err(e) => store_error(e),
    }
}
