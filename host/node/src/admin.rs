//! The admin API: a separate listener (loopback by default) for the node's operator,
//! behind a bearer token kept in `<state>/admin-token` (0600). While the node runs,
//! `<state>/admin.json` (0600) says where it listens and carries the token, so the CLI
//! (`d402 faucet`, `d402 balances`, `d402 tasks`, `d402 payouts list`, `d402 ops-status`,
//! `d402 ops-monitor`) reads and acts on the running node instead of its locked store.
//! Nothing here is on the public router or in the public OpenAPI document.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use d402_gateway_api::admin::{
    self, AccountBalance, AccountRole, AdminEndpoint, FaucetRequest, FaucetResponse, TaskSummary,
};
use d402_payment::RailId;
use d402_protocol::Amount;
use d402_store::{NodeStore, StateDir, StoreError, TaskFilter, TaskRecord};
use subtle::ConstantTimeEq;

use crate::gateway::Gateway;
use crate::http::ApiError;

/// The admin API's state: the gateway and the token requests must carry.
#[derive(Clone)]
struct Admin {
    gateway: Arc<Gateway>,
    token: Arc<String>,
    /// The listener's address: requests must name it (or `localhost`) as their Host, so a
    /// web page cannot reach the API through DNS rebinding.
    bound: SocketAddr,
}

/// Binds the admin listener, writes `<state>/admin.json` and serves in the background
/// until the process ends. The file is removed by [`remove_endpoint`] when the node stops.
pub async fn start(gateway: Arc<Gateway>) -> anyhow::Result<()> {
    let config = gateway.config();
    let state = StateDir::new(&config.node.state);
    let address = (config.admin.host, config.admin.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!(
                "cannot listen for the admin API on {}:{}",
                address.0, address.1
            )
        })?;
    let bound = listener.local_addr()?;
    let token = d402_wallet::token(&state.admin_token())?;
    let endpoint = AdminEndpoint {
        url: format!("http://{bound}"),
        token: token.clone(),
        public_url: gateway.base_url(),
        pid: std::process::id(),
    };
    d402_wallet::write_private(
        &state.admin_file(),
        &serde_json::to_vec_pretty(&endpoint).expect("the endpoint serializes"),
    )
    .with_context(|| format!("cannot write {}", state.admin_file().display()))?;
    tracing::info!(%bound, "admin API listening");
    let limits = crate::server::ConnectionLimits {
        max_connections: 64,
        header_timeout: Duration::from_secs(config.http.header_timeout_seconds),
    };
    let admin = Admin {
        gateway,
        token: Arc::new(token),
        bound,
    };
    tokio::spawn(crate::server::serve(listener, router(admin), limits));
    Ok(())
}

/// Removes `<state>/admin.json` (the node is stopping).
pub fn remove_endpoint(state: &StateDir) {
    let _ = std::fs::remove_file(state.admin_file());
}

fn router(admin: Admin) -> Router {
    Router::new()
        .route(admin::STATUS, get(status))
        .route(admin::BALANCES, get(balances))
        .route(admin::TASKS, get(tasks))
        .route(admin::PAYOUTS, get(payouts))
        .route(admin::FAUCET, post(faucet))
        .route(admin::METRICS, get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
        })
        .layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            authorize,
        ))
        .with_state(admin)
}

/// Lets a request through only with the right Host and bearer token.
async fn authorize(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    if !host_allowed(request.headers(), admin.bound) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "the admin API answers only requests addressed to its own listener address",
        )
        .into_response();
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(presented.as_bytes().ct_eq(admin.token.as_bytes())) {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs `Authorization: Bearer <token>`; the token is in <state>/admin-token",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("a header value"),
        );
        return response;
    }
    next.run(request).await
}

/// Whether the Host header names the listener (by its address, or `localhost` on a
/// loopback listener).
fn host_allowed(headers: &HeaderMap, bound: SocketAddr) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let port = bound.port();
    host == bound.to_string() || (bound.ip().is_loopback() && host == format!("localhost:{port}"))
}

async fn status(State(admin): State<Admin>) -> Result<Json<d402_ops::Snapshot>, ApiError> {
    Ok(Json(crate::safety::live_snapshot(&admin.gateway).await?))
}

async fn balances(State(admin): State<Admin>) -> Result<Json<Vec<AccountBalance>>, ApiError> {
    let gateway = &admin.gateway;
    Ok(Json(balances_of(
        gateway.store(),
        &gateway.account(),
        &gateway.worker_accounts(),
    )?))
}

/// Every account on the node's ledger, and every account paid by a settlement receipt,
/// with its balance and earnings; the node's wallet first, then its local workers.
pub fn balances_of(
    store: &NodeStore,
    node: &str,
    workers: &[String],
) -> Result<Vec<AccountBalance>, StoreError> {
    let mut earned = BTreeMap::<String, u64>::new();
    for task in store.tasks(&TaskFilter::default())? {
        if let Some(receipts) = store.receipts(&task.task_id)? {
            for payout in &receipts.settlement_receipt.payload.payouts {
                *earned.entry(payout.account.clone()).or_default() += payout.amount.micros();
            }
        }
    }
    let mut balances: BTreeMap<String, u64> = store
        .accounts()?
        .into_iter()
        .map(|(account, balance)| (account, balance.micros()))
        .collect();
    for account in earned
        .keys()
        .map(String::as_str)
        .chain([node])
        .chain(workers.iter().map(String::as_str))
    {
        balances.entry(account.to_string()).or_default();
    }
    let role = |account: &str| {
        if account == node {
            AccountRole::Node
        } else if workers.iter().any(|w| w == account) {
            AccountRole::LocalWorker
        } else {
            AccountRole::Other
        }
    };
    let mut out: Vec<AccountBalance> = balances
        .into_iter()
        .map(|(account, balance_micros)| AccountBalance {
            role: role(&account),
            earned_micros: earned.get(&account).copied().unwrap_or(0),
            account,
            balance_micros,
        })
        .collect();
    out.sort_by_key(|a| {
        (
            a.role != AccountRole::Node,
            a.role != AccountRole::LocalWorker,
        )
    });
    Ok(out)
}

async fn tasks(
    State(admin): State<Admin>,
    Query(filter): Query<TaskFilter>,
) -> Result<Json<Vec<TaskSummary>>, ApiError> {
    let records = admin.gateway.store().tasks(&filter)?;
    Ok(Json(records.iter().map(summary).collect()))
}

/// A task as the admin list shows it.
pub fn summary(record: &TaskRecord) -> TaskSummary {
    let intent = &record.intent.payload;
    TaskSummary {
        task_id: record.task_id.clone(),
        status: record.status.as_str().to_string(),
        capability_id: intent.capability_id.clone(),
        mode: intent.mode.as_str().to_string(),
        price_micros: record.payment.amount.micros(),
        rail: record.payment.rail.to_string(),
        created_at: record.created_at.to_string(),
        completed_at: record.completed_at.map(|t| t.to_string()),
        error: record.error.as_ref().map(|e| e.to_string()),
    }
}

async fn payouts(
    State(admin): State<Admin>,
) -> Result<Json<Vec<d402_store::OwedPayout>>, ApiError> {
    Ok(Json(admin.gateway.store().payouts()?))
}

async fn faucet(
    State(admin): State<Admin>,
    body: Result<Json<FaucetRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<FaucetResponse>, ApiError> {
    let Json(request) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    if admin
        .gateway
        .rails()
        .all()
        .iter()
        .all(|r| r.id() != RailId::Simulated)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_simulated",
            "the faucet credits the simulated rail's ledger, which this node does not accept (--rail simulated)",
        ));
    }
    request
        .account
        .parse::<d402_protocol::PublicKey>()
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_account",
                format!("account: {e}"),
            )
        })?;
    let amount = Amount::from_micros(request.amount_micros);
    let balance = admin.gateway.store().credit(&request.account, amount)?;
    Ok(Json(FaucetResponse {
        account: request.account,
        credited_micros: amount.micros(),
        balance_micros: balance.micros(),
    }))
}

async fn metrics(State(admin): State<Admin>) -> Result<Response, ApiError> {
    let snapshot = crate::safety::live_snapshot(&admin.gateway).await?;
    let text =
        admin.gateway.metrics().encode(&snapshot).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}
