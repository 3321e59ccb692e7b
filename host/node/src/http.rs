//! The gateway's HTTP API (axum): discovery, health, capability search, the 402 flow on
//! `POST /tasks` and on each capability's own route (`/v1/web/page-to-markdown`), and task,
//! result and receipt reads. Every
//! error is JSON `{"error": {"code", "message"}}` and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use d402_protocol::Price;
use serde_json::{Value, json};

use crate::catalog::{CapabilityQuery, ServedCapability};
use crate::gateway::{Admission, Gateway, MppProof, Refusal, TaskRequest};
use d402_gateway_api::{IDEMPOTENT_REPLAY_HEADERS, documents};
use d402_payment::PaymentError;
use d402_payment::x402::{PaymentHeader, PaymentRequired, encode_header, headers as x402_headers};
use d402_store::{Receipts, StoreError, TaskRecord, TaskStatus};

/// The fixed operations, documented where they are handled.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    health,
    healthz,
    discovery,
    discovery_legacy,
    capabilities,
    openapi,
    network,
    create_task,
    get_task,
    get_result,
    get_receipt
))]
struct Operations;

/// The documented operations of the fixed routes, as JSON path items by path.
pub fn operations() -> serde_json::Map<String, Value> {
    let paths = <Operations as utoipa::OpenApi>::openapi().paths;
    match serde_json::to_value(paths.paths) {
        Ok(Value::Object(paths)) => paths,
        _ => unreachable!("path items serialize to a JSON object"),
    }
}

/// The HTTP API over `gateway`.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let capabilities: Vec<String> = gateway
        .catalog()
        .all()
        .iter()
        .map(|served| served.capability_id.clone())
        .collect();
    routes(&capabilities)
        .router
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .with_state(gateway)
}

/// Every route the API of a gateway selling `sold` (capability IDs) serves, as `(method, path)` in
/// OpenAPI's spelling (`get`, `/tasks/{taskId}`): what the OpenAPI document must describe.
pub fn route_table(sold: &[String]) -> Vec<(&'static str, String)> {
    routes(sold).listed
}

/// The API's routes for a gateway selling `sold`: the router and the list of what
/// was added to it, built together so that the list cannot miss a route.
fn routes(sold: &[String]) -> Routes {
    let fixed = Routes::default()
        .get("/health", health)
        .get("/healthz", healthz)
        .get("/.well-known/d402-gateway.json", discovery)
        .get("/.well-known/dnc-gateway.json", discovery_legacy)
        .get("/capabilities", capabilities)
        .get("/openapi.json", openapi)
        .get("/network", network)
        .post("/tasks", create_task)
        .get("/tasks/{taskId}", get_task)
        .get("/tasks/{taskId}/result", get_result)
        .get("/tasks/{taskId}/receipt", get_receipt);
    // Each capability's own paid route: one price, one `x-payment-info`, per operation.
    sold.iter().fold(fixed, |routes, capability| {
        let route = PaidRoute::Capability {
            path: d402_gateway_api::capability_path(capability),
            capability: capability.clone(),
        };
        let path = route.path().to_string();
        let handler = move |State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Body| {
            let route = route.clone();
            async move { handle_task(g, &route, headers, body).await }
        };
        routes.add("post", path, post(handler))
    })
}

/// The paid route a task request came in on.
#[derive(Debug, Clone)]
enum PaidRoute {
    /// `POST /tasks`: the capability the body names, or the default.
    Tasks,
    /// A capability's own route: that capability, the body the task request or the bare
    /// input.
    Capability {
        /// Its path.
        path: String,
        /// The capability it sells.
        capability: String,
    },
}

impl PaidRoute {
    /// Its path.
    fn path(&self) -> &str {
        match self {
            Self::Tasks => "/tasks",
            Self::Capability { path, .. } => path,
        }
    }
}

/// A router under construction and the `(method, path)` of each route added to it.
#[derive(Default)]
struct Routes {
    router: Router<Arc<Gateway>>,
    listed: Vec<(&'static str, String)>,
}

impl Routes {
    fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, Arc<Gateway>>,
        T: 'static,
    {
        self.add("get", path.into(), get(handler))
    }

    fn post<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, Arc<Gateway>>,
        T: 'static,
    {
        self.add("post", path.into(), post(handler))
    }

    fn add(
        mut self,
        method: &'static str,
        path: String,
        route: axum::routing::MethodRouter<Arc<Gateway>>,
    ) -> Self {
        self.router = self.router.route(&path, route);
        self.listed.push((method, path));
        self
    }
}

/// Binds the configured address and serves until the process ends. Prints the bound
/// address (`d402 node listening on http://…`) on stdout once listening.
pub async fn serve(gateway: Arc<Gateway>) -> anyhow::Result<()> {
    let listener = bind(&gateway).await?;
    announce(&gateway, listener.local_addr()?);
    serve_on(listener, gateway).await?;
    Ok(())
}

/// Binds the configured address and records it as the gateway's own.
pub async fn bind(gateway: &Gateway) -> anyhow::Result<tokio::net::TcpListener> {
    let config = gateway.config();
    let address = (config.http.host, config.http.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {}:{}", address.0, address.1))?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "gateway listening");
    gateway.set_bound(bound);
    Ok(listener)
}

/// Prints `d402 node listening on http://…` (what scripts and tests wait for) once
/// everything the node offers is up.
pub fn announce(gateway: &Gateway, bound: std::net::SocketAddr) {
    let default = gateway.catalog().default_capability();
    println!(
        "d402 node listening on http://{bound} (node {}, {} capabilities, default {} at {})",
        gateway.node_id(),
        gateway.catalog().all().len(),
        default.capability_id,
        Price(default.price)
    );
}

/// Serves the API over `gateway` on an already bound `listener` until the process ends,
/// with the configured connection cap and header timeout ([`crate::server`]).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
) -> std::io::Result<()> {
    gateway.set_bound(listener.local_addr()?);
    let config = gateway.config();
    let limits = crate::server::ConnectionLimits {
        max_connections: config.http.max_connections,
        header_timeout: Duration::from_secs(config.http.header_timeout_seconds),
    };
    crate::server::serve(listener, router(gateway), limits).await;
    Ok(())
}

/// Every error the API answers with: a status and the one JSON shape
/// `{"error": {"code", "message"}}`, with a fresh 402 challenge (`PAYMENT-REQUIRED`) when
/// the buyer may pay again.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    challenge: Option<Box<PaymentRequired>>,
    /// MPP `Payment` challenges offered beside the x402 one.
    mpp: Vec<d402_mpp::Challenge>,
    /// Answered as an RFC 9457 problem document (to an MPP credential).
    problem: Option<d402_mpp::Problem>,
}

impl ApiError {
    /// An error with `status`, a stable machine-readable `code` and a message for people.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: None,
            mpp: Vec::new(),
            problem: None,
        }
    }

    /// The same error carrying `challenge` in `PAYMENT-REQUIRED` and the `mpp` challenges in
    /// `WWW-Authenticate`.
    fn with_challenge(mut self, challenge: PaymentRequired, mpp: Vec<d402_mpp::Challenge>) -> Self {
        self.challenge = Some(Box::new(challenge));
        self.mpp = mpp;
        self
    }

    /// The same error answered as the RFC 9457 document of `problem`.
    fn answered_as(mut self, problem: d402_mpp::Problem) -> Self {
        self.problem = Some(problem);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let response = match self.problem {
            Some(problem) => {
                let mut document = problem.document(self.status.as_u16(), &self.message);
                document["code"] = json!(self.code);
                let mut response = (self.status, Json(document)).into_response();
                response.headers_mut().insert(
                    axum::http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                response
            }
            None => {
                let body = documents::ErrorBody {
                    error: documents::ErrorDetail {
                        code: self.code.to_string(),
                        message: self.message,
                    },
                };
                (self.status, Json(body)).into_response()
            }
        };
        match &self.challenge {
            Some(challenge) => with_challenge(response, challenge, &self.mpp),
            None => response,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::from(&e)
    }
}

impl From<&StoreError> for ApiError {
    fn from(e: &StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failure",
            e.to_string(),
        )
    }
}

fn commission_policy(g: &Gateway) -> documents::CommissionPolicy {
    documents::CommissionPolicy {
        pricing_mode: "included".into(),
        scope: "exact-manifest".into(),
        max_rate_bps: g.config().capabilities.max_creator_commission_bps,
        payout_rail: g.rails().first().id().as_str().into(),
        requires_escrow_for_direct_provider_pay_to: true,
    }
}

/// Longest wait for one rail's live readiness checks in `/health`.
pub(crate) const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `GET /health`.
#[utoipa::path(get, path = "/health", operation_id = "health",
    summary = "Gateway liveness and public policy.",
    responses((status = 200, description = "Liveness, payment readiness and the policy.", body = documents::Health)))]
async fn health(State(g): State<Arc<Gateway>>) -> Json<documents::Health> {
    let served = g.catalog().default_capability();
    let policy = g.policy(served);
    let mut rails = rail_descriptions(&g);
    let mut ready = true;
    for (described, rail) in rails.iter_mut().zip(g.rails().all()) {
        let checks = tokio::time::timeout(READINESS_TIMEOUT, rail.readiness())
            .await
            .unwrap_or_else(|_| {
                vec![d402_payment::ReadinessCheck::new(
                    "rpc",
                    false,
                    format!("no answer within {READINESS_TIMEOUT:?}"),
                )]
            });
        let rail_ready = checks.iter().all(|c| c.ok);
        ready &= rail_ready;
        described.ready = Some(rail_ready);
        described.checks = Some(as_values(&checks));
    }
    Json(documents::Health {
        ok: true,
        payment_ready: ready,
        incident_mode: g.paused().is_some(),
        node_id: g.node_id().to_string(),
        policy: documents::HealthPolicy {
            price: Price(served.price).to_string(),
            capability_id: served.capability_id.clone(),
            mode: policy.mode.into(),
            fanout: policy.fanout,
            quorum: policy.quorum,
            deadline_ms: served.loaded.manifest().limits.deadline_ms,
            allow_async: true,
            payment_router: g.rails().first().id().as_str().into(),
            rails,
            creator_commission: commission_policy(&g),
        },
    })
}

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", summary = "Readiness probe.",
    responses((status = 200, description = "Ready.", body = documents::Healthz)))]
async fn healthz() -> Json<documents::Healthz> {
    Json(documents::Healthz { ok: true })
}

/// `GET /network`.
#[utoipa::path(get, path = "/network", operation_id = "network",
    summary = "The peer network as this gateway sees it: its addresses and the verified offers it heard.",
    responses((status = 200, description = "The peer network.", body = documents::NetworkView)))]
async fn network(State(g): State<Arc<Gateway>>) -> Json<documents::NetworkView> {
    let Some(network) = g.network() else {
        return Json(documents::NetworkView {
            enabled: false,
            peer_id: None,
            addresses: Vec::new(),
            node_offers: Vec::new(),
            validator_offers: Vec::new(),
        });
    };
    let addresses: Vec<String> = network.listen_address_texts().await;
    let mut offers: Vec<_> = network.offers().into_values().collect();
    offers.sort_by_key(|o| o.payload.node_id.to_string());
    Json(documents::NetworkView {
        enabled: true,
        peer_id: Some(network.peer_id().to_string()),
        addresses,
        node_offers: as_values(&offers),
        validator_offers: as_values(&network.validator_offers()),
    })
}

/// `GET /.well-known/d402-gateway.json`.
#[utoipa::path(get, path = "/.well-known/d402-gateway.json", operation_id = "discovery",
    summary = "Discovery document: capabilities, prices, payment rails, endpoints.",
    responses((status = 200, description = "The discovery document.", body = documents::Discovery)))]
async fn discovery(State(g): State<Arc<Gateway>>) -> Json<documents::Discovery> {
    let base = g.base_url();
    let capabilities = g
        .catalog()
        .all()
        .iter()
        .map(|served| {
            let policy = g.policy(served);
            documents::DiscoveredCapability {
                capability_id: served.capability_id.clone(),
                manifest_cid: served.manifest_cid.to_string(),
                price: Price(served.price).to_string(),
                mode: policy.mode.into(),
                fanout: policy.fanout,
                quorum: policy.quorum,
            }
        })
        .collect();
    let default = g.catalog().default_capability();
    let preferred = g.rails().first();
    let transport = if base.starts_with("https") {
        "https"
    } else {
        "http"
    };
    Json(documents::Discovery {
        d402_gateway_version: 1,
        dnc_gateway_version: 1,
        node_id: g.node_id().to_string(),
        roles: g
            .config()
            .node
            .roles
            .iter()
            .map(|r| r.as_str().into())
            .collect(),
        protocol: documents::Protocol {
            transport: transport.into(),
            task_api: "d402-http-task-v1".into(),
            legacy_task_api: "dnc-http-task-v1".into(),
            payment_challenge: "x402".into(),
        },
        endpoints: documents::Endpoints {
            health: format!("{base}/health"),
            create_task: format!("{base}/tasks"),
            task: format!("{base}/tasks/{{taskId}}"),
            result: format!("{base}/tasks/{{taskId}}/result"),
            receipt: format!("{base}/tasks/{{taskId}}/receipt"),
            capabilities: format!("{base}/capabilities"),
            openapi: format!("{base}/openapi.json"),
        },
        capabilities,
        payment: documents::PaymentSummary {
            rail: preferred.id().as_str().into(),
            network: preferred.network().into(),
            asset: preferred.asset().into(),
            pay_to: preferred.pay_to().to_string(),
            rails: rail_descriptions(&g),
            price: Price(default.price).to_string(),
            creator_commission: commission_policy(&g),
        },
    })
}

/// `GET /.well-known/dnc-gateway.json`.
#[utoipa::path(get, path = "/.well-known/dnc-gateway.json", operation_id = "discoveryLegacy",
    summary = "Legacy alias of /.well-known/d402-gateway.json.",
    responses((status = 200, description = "The discovery document.", body = documents::Discovery)))]
async fn discovery_legacy(state: State<Arc<Gateway>>) -> Json<documents::Discovery> {
    discovery(state).await
}

/// Each accepted rail: its name, network, asset and receiving account.
fn rail_descriptions(g: &Gateway) -> Vec<documents::RailDescription> {
    g.rails()
        .all()
        .iter()
        .map(|rail| documents::RailDescription {
            rail: rail.id().as_str().into(),
            maturity: rail.id().maturity().into(),
            scheme: rail.scheme().into(),
            network: rail.network().into(),
            asset: rail.asset().into(),
            pay_to: rail.pay_to().to_string(),
            ready: None,
            checks: None,
        })
        .collect()
}

fn describe(g: &Gateway, served: &ServedCapability) -> documents::CapabilityListing {
    let manifest = served.loaded.manifest();
    let policy = g.policy(served);
    let registration = served
        .registration
        .as_ref()
        .map(|r| documents::RegistrationView {
            registration_cid: r.cid.to_string(),
            publisher: r.registration.publisher.to_string(),
            namespace: r.registration.namespace.clone(),
            signed: true,
            namespace_proof: r.registration.namespace_proof.is_some(),
            deprecated: r.registration.deprecated,
            creator_commission: r.registration.creator_commission.as_ref().map(|c| json!(c)),
        });
    documents::CapabilityListing {
        capability_id: served.capability_id.clone(),
        manifest_cid: served.manifest_cid.to_string(),
        artifact_cid: served.loaded.artifact_cid().to_string(),
        namespace: manifest.namespace().into(),
        description: manifest.description.clone(),
        tags: manifest.tags.clone(),
        shard: served.shard.clone(),
        determinism: json!(manifest.determinism),
        validator: json!(manifest.validator),
        price: Price(served.price).to_string(),
        execution_modes: as_values(&manifest.execution_modes),
        mode: policy.mode.into(),
        fanout: policy.fanout,
        quorum: policy.quorum,
        input_schema: manifest.input_schema.clone(),
        output_schema: manifest.output_schema.clone(),
        accepted: true,
        registration,
    }
}

/// `GET /capabilities`.
#[utoipa::path(get, path = "/capabilities", operation_id = "listCapabilities",
    summary = "Capabilities this gateway serves that match every search parameter given.",
    params(
        ("q" = Option<String>, Query, description = "Free-text query."),
        ("namespace" = Option<String>, Query, description = "Publisher namespace."),
        ("tag" = Option<String>, Query, description = "Tag."),
        ("shard" = Option<String>, Query, description = "Hash shard."),
        ("capabilityId" = Option<String>, Query, description = "Capability ID, e.g. web.page_to_markdown@1."),
        ("manifestCid" = Option<String>, Query, description = "Manifest CID."),
    ),
    responses(
        (status = 200, description = "The capabilities.", body = documents::Capabilities),
        (status = 400, description = "A malformed query (`malformed_query`).", body = documents::ErrorBody),
    ))]
async fn capabilities(
    State(g): State<Arc<Gateway>>,
    query: Result<Query<CapabilityQuery>, QueryRejection>,
) -> Result<Json<documents::Capabilities>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_query",
            rejection.body_text(),
        )
    })?;
    let capabilities = g
        .catalog()
        .search(&query)
        .into_iter()
        .map(|served| describe(&g, served))
        .collect();
    Ok(Json(documents::Capabilities { capabilities }))
}

/// `GET /openapi.json`: every served capability as a paid operation. The servers entry is
/// the gateway's own base URL (`--public-url`, else the bound address), never a client's
/// `Host` header.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi",
    summary = "This OpenAPI 3.1 document.",
    responses((status = 200, description = "This OpenAPI 3.1 document.", body = serde_json::Value)))]
async fn openapi(State(g): State<Arc<Gateway>>) -> Json<Value> {
    let operations: Vec<d402_gateway_api::PaidOperation> = g
        .catalog()
        .all()
        .iter()
        .map(|served| {
            let manifest = served.loaded.manifest();
            d402_gateway_api::PaidOperation {
                capability_id: served.capability_id.clone(),
                pricing_version: g.pricing_version(&served.capability_id),
                price: served.price,
                offers: g
                    .rails_selling(served)
                    .map(|rail| {
                        let requirement = rail
                            .requirements(served.price, g.config().rails.payment_timeout_seconds);
                        d402_gateway_api::Offer {
                            rail: rail.id().as_str().into(),
                            maturity: rail.id().maturity().into(),
                            network: requirement.network,
                            pay_to: requirement.pay_to,
                            amount: requirement.amount,
                            currency: requirement.asset,
                        }
                    })
                    .collect(),
                input_schema: manifest.input_schema.clone(),
                output_schema: manifest.output_schema.clone(),
            }
        })
        .collect();
    Json(d402_gateway_api::document(
        &g.base_url(),
        &operations,
        self::operations(),
    ))
}

/// `POST /tasks`, the paid operation each capability's own route repeats.
#[utoipa::path(post, path = "/tasks", operation_id = "createTask",
    summary = "Create a paid task. Unpaid: 402 with the x402 challenge; paid: 200 with the settled task (sync) or 202 while it runs (`\"sync\": false`). Without `capabilityId` it buys the default capability at the price documented here; each capability's own route documents its price.",
    request_body = documents::TaskRequestBody,
    security((), ("x402" = []), ("x402Legacy" = [])),
    responses(
        (status = 200, description = "Paid and settled (sync), or an idempotent replay of a paid request.",
            body = documents::TaskDocument,
            headers(("PAYMENT-RESPONSE" = String, description = "Base64 of the JSON settlement response (the PaymentResponse schema), once there is a settlement to report."),
                ("x-d402-idempotent-replay" = String, description = "`true` when a paid request was replayed with the same proof and body (same task, charged once)."),
                ("x-dnc-idempotent-replay" = String, description = "Legacy name of x-d402-idempotent-replay."))),
        (status = 202, description = "Paid; the task runs (`\"sync\": false`). Poll /tasks/{taskId}.",
            body = documents::TaskDocument, headers(("PAYMENT-RESPONSE" = String, description = "Base64 of the JSON settlement response (the PaymentResponse schema), once there is a settlement to report."))),
        (status = 400, description = "Malformed request (`malformed_json`, `malformed_request`, `missing_input`, `unknown_capability`, `bad_url`, `url_refused`, `invalid_input`) or malformed payment header (`malformed_payment`, with a fresh PAYMENT-REQUIRED challenge).",
            body = documents::ErrorBody,
            headers(("PAYMENT-REQUIRED" = String, description = "Present when the payment header was refused: base64 of the JSON challenge."))),
        (status = 402, description = "Payment required: without a payment, the x402 v2 challenge; with a refused payment (`invalid_signature`, `underpaid`, `payment_expired`, `wrong_payee`, `unsupported_network`, `insufficient_funds`, `wrong_asset`, `payment_already_used`, `transfer_would_fail`, `rail_not_offered`), the error. Either way PAYMENT-REQUIRED carries the challenge.",
            body = documents::PaymentRefusal,
            headers(("PAYMENT-REQUIRED" = String, description = "Base64 of the JSON x402 v2 challenge (the PaymentRequired schema)."))),
        (status = 409, description = "This payment proof is for another request (`binding_mismatch`), was already used for another request (`payment_already_used`), or its payment-identifier was used with another payment (`payment_identifier_reused`).", body = documents::ErrorBody),
        (status = 413, description = "The request body is over the gateway's limit (`body_too_large`).", body = documents::ErrorBody),
        (status = 500, description = "Store or signing failure (`store_failure`, `internal`).", body = documents::ErrorBody),
        (status = 503, description = "A payment rail cannot verify payments now (`rail_unavailable`), no enabled rail can pay out the capability's creator commission (`no_rail_sells_capability`), the operator paused new paid tasks (`incident_mode`), or the node is stopping (`draining`).", body = documents::ErrorBody),
    ))]
async fn create_task(
    State(g): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    handle_task(g, &PaidRoute::Tasks, headers, body).await
}

/// Parses a task request body. The capability is the route's own, or the one named by
/// `capabilityId` among those served (never one outside the gateway's policy; anything else
/// is a 400), or the default. Everything else a client sends about policy (mode, fanout, quorum, maxBudget,
/// price, payTo) is server-owned and ignored. On a capability's own route a body without
/// `input` is the input itself, as in the spec's `{"url": "https://example.com"}` example.
fn parse_request(
    g: &Gateway,
    bytes: &[u8],
    route: &PaidRoute,
) -> Result<(TaskRequest, bool), ApiError> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("request body is not JSON: {e}"),
        )
    })?;
    if !body.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "request body must be a JSON object",
        ));
    }
    // Read in place: only the input is copied out of the body.
    let request =
        <documents::TaskRequestBody as serde::Deserialize>::deserialize(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_request",
                format!("the task request is malformed: {e}"),
            )
        })?;
    let input = match (request.input, route) {
        (Some(input), _) => input,
        // On a capability's own route the body may be the bare input.
        (None, PaidRoute::Capability { .. }) => body.clone(),
        (None, PaidRoute::Tasks) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_input",
                "the request has no \"input\"",
            ));
        }
    };
    let sync = request.sync.unwrap_or(true);
    // A named capability must be served, on any route.
    let named = match request.capability_id {
        Some(id) => Some(g.catalog().get(&id).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_capability",
                format!("this gateway does not serve {id:?}"),
            )
        })?),
        None => None,
    };
    let capability = match (route, named) {
        (PaidRoute::Capability { capability, .. }, _) => g
            .catalog()
            .get(capability)
            .cloned()
            .expect("a capability's route is made from the catalog"),
        (PaidRoute::Tasks, Some(named)) => named,
        (PaidRoute::Tasks, None) => g.catalog().default_capability().clone(),
    };
    if let Some(url) = input.get("url") {
        let ok = url
            .as_str()
            .filter(|u| is_rfc3986(u))
            .and_then(|u| url::Url::parse(u).ok())
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !ok {
            let message = "input.url must be an absolute http(s) URL (RFC 3986: ASCII, %-encoded)";
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_url", message));
        }
        if capability.loaded.manifest().permissions.browser.is_some()
            && let Some(url) = url.as_str().and_then(|u| url::Url::parse(u).ok())
        {
            refuse_unfetchable(&url, g.config().browser.allow_private_addresses)?;
        }
    }
    capability
        .loaded
        .schemas()
        .validate_input(&input)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", e.to_string()))?;
    Ok((
        TaskRequest {
            capability,
            input,
            body,
        },
        sync,
    ))
}

/// Refuses, before any payment, a page URL the fetcher would refuse anyway: a private,
/// loopback or otherwise non-public address literal, `localhost`, a refused port.
fn refuse_unfetchable(url: &url::Url, allow_private_addresses: bool) -> Result<(), ApiError> {
    let policy = d402_browser::policy::AddressPolicy {
        allow_private_addresses,
        public_test_addresses: Vec::new(),
    };
    let local_name = url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost") || h.to_ascii_lowercase().ends_with(".localhost")
    });
    let refusal = match d402_browser::policy::check_url(url, &policy) {
        Err(
            d402_browser::policy::UrlRefusal::Invalid(reason)
            | d402_browser::policy::UrlRefusal::Denied(reason),
        ) => reason,
        Ok(_) if local_name && !allow_private_addresses => {
            format!("{url}: localhost is not a public address")
        }
        Ok(_) => return Ok(()),
    };
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "url_refused",
        format!(
            "{refusal}; this gateway fetches only public http(s) pages, so nothing was charged"
        ),
    ))
}

/// Whether `text` uses only the characters RFC 3986 allows in a URI, with well-formed
/// percent-encodings (`url::Url` also takes what browsers take: spaces, non-ASCII).
fn is_rfc3986(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'%' => bytes
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
        _ => b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b),
    })
}

/// Adds `challenge` to `response` as the `PAYMENT-REQUIRED` header.
/// `response` with the x402 `challenge` in `PAYMENT-REQUIRED` and each MPP challenge in a
/// `WWW-Authenticate: Payment` header (then not cacheable).
fn with_challenge(
    mut response: Response,
    challenge: &PaymentRequired,
    mpp: &[d402_mpp::Challenge],
) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&encode_header(challenge)) {
        headers.insert(x402_headers::PAYMENT_REQUIRED, value);
    }
    for offer in mpp {
        if let Ok(value) = HeaderValue::from_str(&offer.header()) {
            headers.append(axum::http::header::WWW_AUTHENTICATE, value);
        }
    }
    if !mpp.is_empty() {
        headers.insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
    response
}

/// Reads a request body: refused at once (413) when its declared length is over the limit,
/// and refused when it is larger than declared or arrives slower than the body timeout.
async fn read_body(g: &Gateway, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = g.config().http.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is over {limit} bytes"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let timeout = Duration::from_secs(g.config().http.body_timeout_seconds);
    match tokio::time::timeout(timeout, to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
    }
}

async fn handle_task(
    g: Arc<Gateway>,
    route: &PaidRoute,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if g.draining() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the node is shutting down and takes no new paid tasks; running tasks finish and settle — try again later or on another gateway",
        ));
    }
    if let Some(reason) = g.paused() {
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "incident_mode",
            format!(
                "the operator paused new paid tasks{why}; task reads, receipts, settlements and refunds continue — try again later"
            ),
        ));
    }
    let bytes = read_body(&g, &headers, body).await?;
    let (request, sync) = parse_request(&g, &bytes, route)?;
    let path = route.path();
    let served = request.capability.clone();
    let binding = d402_payment::request_binding(&request.body);
    let present = |name: &str| headers.contains_key(name);
    let header = PaymentHeader::find(|name| headers.get(name).and_then(|v| v.to_str().ok()));
    if header.is_none()
        && !present(x402_headers::PAYMENT_SIGNATURE)
        && !present(x402_headers::X_PAYMENT)
    {
        let challenge = g.challenge(&served, path, &binding, None);
        if challenge.accepts.is_empty() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_rail_sells_capability",
                format!(
                    "{} carries a creator commission that none of this gateway's rails can pay out (requiresEscrowForDirectProviderPayTo); the operator can enable --rail x402-base-escrow (or --rail simulated)",
                    served.capability_id
                ),
            ));
        }
        return Ok(with_challenge(
            (StatusCode::PAYMENT_REQUIRED, Json(&challenge)).into_response(),
            &challenge,
            &g.mpp_challenges(&served, &binding),
        ));
    }
    let refusal_context = RefusalContext {
        served: &served,
        path,
        binding: &binding,
        mpp: false,
    };
    let Some(header) = header else {
        return Err(refused(&g, &refusal_context, &Refusal::NotText));
    };
    // An MPP credential stands for a direct-transfer proof once its challenge is ours.
    let mpp_proof: Option<MppProof>;
    let (header, refusal_context) = match header {
        PaymentHeader::Authorization(token) if d402_mpp::Credential::is_credential(token) => {
            let context = RefusalContext {
                mpp: true,
                ..refusal_context
            };
            let proof = g
                .mpp_proof(token)
                .map_err(|e| mpp_refused(&g, &context, &e))?;
            mpp_proof = Some(proof);
            let token = &mpp_proof.as_ref().expect("just set").token;
            (PaymentHeader::Authorization(token), context)
        }
        other => {
            mpp_proof = None;
            (other, refusal_context)
        }
    };
    let mut response = match g.admit(request, header).await {
        Ok(Admission::Replay(existing)) => {
            let mut response = task_response(&g, &existing, None)?;
            let headers = response.headers_mut();
            for name in IDEMPOTENT_REPLAY_HEADERS {
                headers.insert(name, HeaderValue::from_static("true"));
            }
            response
        }
        Ok(Admission::New(record)) if sync => {
            // The execution belongs to the node, not to this connection: a client that
            // disconnects drops this handler, not the task, which settles or is refunded.
            let running = record.clone();
            match tokio::spawn(g.clone().execute(record)).await {
                Ok((record, receipts)) => task_response(&g, &record, receipts.as_ref())?,
                Err(e) => {
                    tracing::error!(task = %running.task_id, error = %e, "task execution panicked");
                    task_response(&g, &running, None)?
                }
            }
        }
        Ok(Admission::New(record)) => {
            let running = record.clone();
            tokio::spawn(g.clone().execute(record));
            let mut response = task_response(&g, &running, None)?;
            *response.status_mut() = StatusCode::ACCEPTED;
            response
        }
        Err(refusal) => return Err(refused(&g, &refusal_context, &refusal)),
    };
    if let Some(proof) = &mpp_proof
        && let Ok(value) = HeaderValue::from_str(&d402_mpp::receipt(
            &proof.method,
            &proof.transaction,
            d402_protocol::Timestamp::now().unix_millis() / 1000,
        ))
    {
        response
            .headers_mut()
            .insert(d402_mpp::RECEIPT_HEADER, value);
    }
    // A v1 payment gets its settlement in the v1 header.
    let response_header = header.response_header();
    if response_header != x402_headers::PAYMENT_RESPONSE
        && let Some(value) = response
            .headers_mut()
            .remove(x402_headers::PAYMENT_RESPONSE)
    {
        response.headers_mut().insert(response_header, value);
    }
    Ok(response)
}

/// What a refusal answers: the capability and route asked for, the request body's binding,
/// and whether the payment came as an MPP credential (then the answer is a problem document).
#[derive(Clone, Copy)]
struct RefusalContext<'a> {
    served: &'a ServedCapability,
    path: &'a str,
    binding: &'a str,
    mpp: bool,
}

/// The response to an MPP credential whose challenge is not this gateway's, has expired or
/// cannot be read.
fn mpp_refused(g: &Gateway, context: &RefusalContext<'_>, error: &d402_mpp::MppError) -> ApiError {
    use d402_mpp::{MppError, Problem};
    let (status, code, problem) = match error {
        MppError::Malformed(_) => (
            StatusCode::BAD_REQUEST,
            "malformed_credential",
            Problem::MalformedCredential,
        ),
        MppError::InvalidChallenge => (
            StatusCode::PAYMENT_REQUIRED,
            "invalid_challenge",
            Problem::InvalidChallenge,
        ),
        MppError::Expired(_) => (
            StatusCode::PAYMENT_REQUIRED,
            "payment_expired",
            Problem::PaymentExpired,
        ),
    };
    let message = error.to_string();
    let challenge = g.challenge(
        context.served,
        context.path,
        context.binding,
        Some(message.clone()),
    );
    ApiError::new(status, code, message)
        .with_challenge(challenge, g.mpp_challenges(context.served, context.binding))
        .answered_as(problem)
}

/// The MPP problem type of a refusal's `code`.
fn problem_of(code: &str) -> d402_mpp::Problem {
    use d402_mpp::Problem;
    match code {
        "malformed_payment" => Problem::MalformedCredential,
        "underpaid" | "insufficient_funds" => Problem::PaymentInsufficient,
        "payment_expired" => Problem::PaymentExpired,
        "unsupported_network" | "rail_not_offered" => Problem::MethodUnsupported,
        _ => Problem::VerificationFailed,
    }
}

/// The response to a refused payment: 400 for an unreadable one, 409 for a proof already
/// used for another request, 402 with a fresh challenge otherwise; an RFC 9457 problem
/// document when the payment came as an MPP credential.
fn refused(g: &Gateway, context: &RefusalContext<'_>, refusal: &Refusal) -> ApiError {
    let error = refusal_error(g, context, refusal);
    if context.mpp {
        let problem = problem_of(error.code);
        error.answered_as(problem)
    } else {
        error
    }
}

fn refusal_error(g: &Gateway, context: &RefusalContext<'_>, refusal: &Refusal) -> ApiError {
    let (status, code, message) = match refusal {
        Refusal::NotText => (
            StatusCode::BAD_REQUEST,
            "malformed_payment",
            refusal.to_string(),
        ),
        Refusal::Payment(e @ PaymentError::Malformed(_)) => {
            (StatusCode::BAD_REQUEST, e.code(), e.to_string())
        }
        Refusal::Payment(e @ PaymentError::BindingMismatch) => {
            (StatusCode::CONFLICT, e.code(), e.to_string())
        }
        Refusal::Payment(e @ PaymentError::Unavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
        }
        Refusal::Payment(e) => (StatusCode::PAYMENT_REQUIRED, e.code(), e.to_string()),
        Refusal::Store(StoreError::PaymentReused(task)) => {
            let message = format!(
                "this payment was already used for task {task} with a different request or payload"
            );
            return ApiError::new(StatusCode::CONFLICT, "payment_already_used", message);
        }
        Refusal::Store(StoreError::PaymentIdReused(task)) => {
            let message = format!(
                "this payment-identifier was already used for task {task} with a different payment"
            );
            return ApiError::new(StatusCode::CONFLICT, "payment_identifier_reused", message);
        }
        Refusal::Store(StoreError::InsufficientFunds { balance, needed }) => (
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_funds",
            format!(
                "the payer's simulated balance is {balance} atomic units, the price is {needed}"
            ),
        ),
        Refusal::Store(e) => return ApiError::from(e),
        Refusal::NotOffered { .. } => (
            StatusCode::PAYMENT_REQUIRED,
            "rail_not_offered",
            refusal.to_string(),
        ),
        Refusal::Internal(message) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                message.clone(),
            );
        }
    };
    let (served, binding) = (context.served, context.binding);
    let challenge = g.challenge(served, context.path, binding, Some(message.clone()));
    ApiError::new(status, code, message)
        .with_challenge(challenge, g.mpp_challenges(served, binding))
}

/// A stored status as the documents name it.
fn state(status: TaskStatus) -> documents::TaskState {
    match status {
        TaskStatus::Running => documents::TaskState::Running,
        TaskStatus::Settling => documents::TaskState::Settling,
        TaskStatus::Accepted => documents::TaskState::Accepted,
        TaskStatus::Refunding => documents::TaskState::Refunding,
        TaskStatus::Rejected => documents::TaskState::Rejected,
        TaskStatus::SettlementFailed => documents::TaskState::SettlementFailed,
    }
}

/// Its payouts and refunds, as the task and receipt documents show them.
fn settlement_of(receipts: &Receipts) -> documents::Settlement {
    let settled = &receipts.settlement_receipt.payload;
    documents::Settlement {
        payouts: settled.payouts.clone(),
        refunds: settled.refunds.clone(),
    }
}

/// The task document (the spec's accepted response shape), with `PAYMENT-RESPONSE`. The
/// receipts are read from the store unless the caller has them in hand.
fn task_response(
    g: &Gateway,
    record: &TaskRecord,
    in_hand: Option<&Receipts>,
) -> Result<Response, ApiError> {
    let stored;
    let receipts = match in_hand {
        Some(receipts) => Some(receipts),
        None if record.status == TaskStatus::Running => None,
        None => match g.store().receipts(&record.task_id) {
            Ok(receipts) => {
                stored = receipts;
                stored.as_ref()
            }
            Err(e) => return Err(ApiError::from(&e)),
        },
    };
    let intent = &record.intent.payload;
    // The result is released only once its payment settled.
    let released = !matches!(
        record.status,
        TaskStatus::Settling | TaskStatus::SettlementFailed
    );
    let document = documents::TaskDocument {
        task_id: record.task_id.clone(),
        status: state(record.status),
        capability_id: intent.capability_id.clone(),
        manifest_cid: intent.manifest_cid.to_string(),
        mode: intent.mode.into(),
        fanout: intent.fanout,
        quorum: intent.quorum,
        workers: record.workers.clone(),
        links: documents::Links::of(&record.task_id),
        result: record.result.clone().filter(|_| released),
        evidence: record.evidence.clone().filter(|_| released),
        error: record.error.as_ref().map(|error| json!(error)),
        settlement_error: record.settlement_error.clone(),
        validation_receipt: receipts.map(|r| r.validation_receipt.payload.clone()),
        settlement: receipts.map(settlement_of),
    };
    let status = match record.status {
        TaskStatus::Settling => StatusCode::ACCEPTED,
        // x402: a payment that could not be settled is answered with 402.
        TaskStatus::SettlementFailed => StatusCode::PAYMENT_REQUIRED,
        _ => StatusCode::OK,
    };
    let mut response = (status, Json(document)).into_response();
    // Sent once there is a settlement to report: a transaction, or a failure.
    let payment = &record.payment_response;
    if (!payment.transaction.is_empty() || !payment.success)
        && let Ok(value) = HeaderValue::from_str(&encode_header(payment))
    {
        response
            .headers_mut()
            .insert(x402_headers::PAYMENT_RESPONSE, value);
    }
    Ok(response)
}

/// The stored task a `/tasks/{id}` path names, or the JSON error: 400 for a malformed path,
/// 404 for an unknown task.
fn load_task(
    g: &Gateway,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<TaskRecord, ApiError> {
    let UrlPath(id) = id.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_path",
            rejection.body_text(),
        )
    })?;
    match g.store().task(&id) {
        Ok(Some(record)) => Ok(record),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_task",
            format!("no task {id}"),
        )),
        Err(e) => Err(ApiError::from(&e)),
    }
}

/// 202 for a task that is not finished: running, or settling its payment.
fn still_running(id: &str, status: TaskStatus) -> Response {
    let running = documents::Running {
        task_id: id.to_string(),
        status: state(status),
        links: documents::Links::of(id),
    };
    (StatusCode::ACCEPTED, Json(running)).into_response()
}

/// `GET /tasks/{taskId}`.
#[utoipa::path(get, path = "/tasks/{taskId}", operation_id = "getTask",
    summary = "The task record: status, result when accepted, receipts, links.",
    params(("taskId" = String, Path, description = "Task ID (`task:<hex>`).")),
    responses(
        (status = 200, description = "The task.", body = documents::TaskDocument, headers(("PAYMENT-RESPONSE" = String, description = "Base64 of the JSON settlement response (the PaymentResponse schema), once there is a settlement to report."))),
        (status = 202, description = "Accepted by validation; the payment is still settling on chain (`settling`): the result follows once it settled.", body = documents::TaskDocument, headers(("PAYMENT-RESPONSE" = String, description = "Base64 of the JSON settlement response (the PaymentResponse schema), once there is a settlement to report."))),
        (status = 402, description = "The payment could never be settled (`settlement-failed`): nothing was charged and the result is withheld.", body = documents::TaskDocument, headers(("PAYMENT-RESPONSE" = String, description = "Base64 of the JSON settlement response (the PaymentResponse schema), once there is a settlement to report."))),
        (status = 404, description = "No such task (`unknown_task`).", body = documents::ErrorBody),
        (status = 500, description = "Store failure.", body = documents::ErrorBody),
    ))]
async fn get_task(
    State(g): State<Arc<Gateway>>,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    task_response(&g, &load_task(&g, id)?, None)
}

/// `GET /tasks/{taskId}/result`.
#[utoipa::path(get, path = "/tasks/{taskId}/result", operation_id = "getTaskResult",
    summary = "The accepted output, 202 while running, 422 when rejected.",
    params(("taskId" = String, Path, description = "Task ID (`task:<hex>`).")),
    responses(
        (status = 200, description = "The accepted result.", body = documents::TaskResult),
        (status = 202, description = "Still running, or settling its payment.", body = documents::Running),
        (status = 402, description = "The payment could never be settled (`settlement_failed`); nothing was charged.", body = documents::TaskFailure),
        (status = 404, description = "No such task (`unknown_task`).", body = documents::ErrorBody),
        (status = 422, description = "The task was rejected and refunded (`task_rejected`).", body = documents::TaskFailure),
        (status = 500, description = "Store failure.", body = documents::ErrorBody),
    ))]
async fn get_result(
    State(g): State<Arc<Gateway>>,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let record = load_task(&g, id)?;
    let id = record.task_id.clone();
    let failure = |code: &str, message: String| documents::TaskFailure {
        error: documents::ErrorDetail {
            code: code.into(),
            message,
        },
        task_id: id.clone(),
        status: state(record.status),
    };
    Ok(match record.status {
        TaskStatus::Running | TaskStatus::Settling => still_running(&id, record.status),
        TaskStatus::SettlementFailed => {
            let message = record.settlement_error.clone().unwrap_or_default();
            let body = failure("settlement_failed", message);
            (StatusCode::PAYMENT_REQUIRED, Json(body)).into_response()
        }
        TaskStatus::Accepted => Json(documents::TaskResult {
            task_id: id.clone(),
            status: documents::TaskState::Accepted,
            result: record.result.clone().unwrap_or_default(),
            evidence: record.evidence.clone(),
        })
        .into_response(),
        TaskStatus::Rejected | TaskStatus::Refunding => {
            let message = record
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            let body = failure("task_rejected", message);
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
    })
}

/// `GET /tasks/{taskId}/receipt`.
#[utoipa::path(get, path = "/tasks/{taskId}/receipt", operation_id = "getTaskReceipt",
    summary = "Validation and settlement receipts (and the signed originals).",
    params(("taskId" = String, Path, description = "Task ID (`task:<hex>`).")),
    responses(
        (status = 200, description = "The receipts.", body = documents::ReceiptDocument),
        (status = 202, description = "Still running: no receipt yet.", body = documents::Running),
        (status = 404, description = "No such task (`unknown_task`).", body = documents::ErrorBody),
        (status = 500, description = "Store failure.", body = documents::ErrorBody),
    ))]
async fn get_receipt(
    State(g): State<Arc<Gateway>>,
    id: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let record = load_task(&g, id)?;
    let id = record.task_id.clone();
    let Some(receipts) = g.store().receipts(&id)? else {
        return Ok(still_running(&id, record.status));
    };
    let claims = receipts
        .claims
        .iter()
        .zip(&receipts.verdicts)
        .map(|(claim, verdict)| documents::ClaimView {
            claim_cid: claim.cid().ok().map(|cid| cid.to_string()),
            worker_id: crate::engine::worker_id(&claim.payload.worker.to_string()),
            output_hash: claim.payload.output_hash.to_string(),
            verdict: verdict_view(verdict),
        })
        .collect();
    Ok(Json(documents::ReceiptDocument {
        task_id: id,
        status: state(record.status),
        validation_receipt: receipts.validation_receipt.payload.clone(),
        settlement: settlement_of(&receipts),
        payment: record.payment_response.clone(),
        claims,
        failures: receipts
            .failures
            .iter()
            .map(|failed| documents::RunFailure {
                worker_id: failed.worker_id.clone(),
                error: json!(failed.error),
            })
            .collect(),
        signed: documents::SignedReceipts {
            task_intent: json!(record.intent),
            validation_receipt: json!(receipts.validation_receipt),
            settlement_receipt: json!(receipts.settlement_receipt),
            claims: as_values(&receipts.claims),
            reputation_events: as_values(&receipts.reputation),
        },
    })
    .into_response())
}

/// Each of `items` as its JSON document.
fn as_values<T: serde::Serialize>(items: &[T]) -> Vec<Value> {
    items.iter().map(|item| json!(item)).collect()
}

/// A claim's verdict as the receipt shows it.
fn verdict_view(verdict: &d402_protocol::Verdict) -> documents::VerdictView {
    use d402_protocol::Verdict;
    let (status, reason) = match verdict {
        Verdict::Accepted => (documents::VerdictStatus::Accepted, None),
        Verdict::Rejected { reason } => (documents::VerdictStatus::Rejected, Some(reason.clone())),
        Verdict::Unused => (documents::VerdictStatus::Unused, None),
    };
    documents::VerdictView { status, reason }
}

#[cfg(test)]
mod tests {
    use d402_gateway_api::{PaidOperation, document};
    use d402_protocol::Amount;

    use super::*;

    #[test]
    fn every_route_the_router_serves_is_documented_and_nothing_else() {
        let sold = ["web.page_to_markdown@1", "util.json_transform@1"].map(String::from);
        let operations: Vec<PaidOperation> = sold
            .iter()
            .map(|id| PaidOperation {
                capability_id: id.clone(),
                pricing_version: 1,
                price: Amount::from_micros(10_000),
                offers: Vec::new(),
                input_schema: json!({"type": "object"}),
                output_schema: json!({"type": "object"}),
            })
            .collect();
        let doc = document("http://gw", &operations, super::operations());
        // The paid operation as its handler declares it, repeated on each capability's route.
        for path in ["/tasks", "/v1/util/json-transform"] {
            let create = &doc["paths"][path]["post"];
            assert_eq!(
                create["security"][0],
                json!({}),
                "the first request goes unpaid"
            );
            assert_eq!(create["security"][1], json!({"x402": []}));
            for status in ["200", "202", "400", "402", "409", "413", "500", "503"] {
                assert!(
                    create["responses"][status].is_object(),
                    "{path} documents {status}"
                );
            }
            assert!(create["responses"]["402"]["headers"]["PAYMENT-REQUIRED"].is_object());
            assert!(create["responses"]["200"]["headers"]["PAYMENT-RESPONSE"].is_object());
            assert!(create["x-payment-info"].is_object(), "{path}");
        }
        let refusal = &doc["components"]["schemas"]["PaymentRefusal"]["oneOf"];
        assert_eq!(
            refusal.as_array().map(Vec::len),
            Some(2),
            "challenge or error"
        );
        // Every reference the operations make resolves in the document.
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#").skip(1) {
            let pointer = &reference[..reference.find('"').unwrap()];
            assert!(
                doc.pointer(pointer).is_some(),
                "#{pointer} does not resolve"
            );
        }
        // The router's own list: a route added without documentation fails here.
        let routes = route_table(&sold);
        for (method, path) in &routes {
            assert!(
                doc["paths"][path.as_str()][method].is_object(),
                "{method} {path} is served but not documented"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, routes.len(), "a documented route is not served");
    }
}
