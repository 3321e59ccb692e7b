//! `d402-agent daemon`: the agent as a local HTTP service for applications. Loopback only;
//! every request needs `Authorization: Bearer <token>` (the token is
//! `<config dir>/daemon-token`, 0600, created on first start) and a `Host` naming the
//! listener. Applications send the plain task request; the daemon applies the policy,
//! pays, retries, records and answers with the result and the receipts.
//!
//! - `POST /v1/tasks` `{"capabilityId"?, "input"?, "url"?, "gateway"?, "maxAmount"?, "async"?}`
//! - `GET /v1/capabilities`, `GET /v1/ledger?limit=N`

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{AgentConfig, Paths};
use crate::request::{self, Bought};

/// The daemon's shared state.
#[derive(Clone)]
struct Daemon {
    paths: Arc<Paths>,
    token: Arc<String>,
    bound: SocketAddr,
}

/// A task as applications ask for it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TaskOrder {
    capability_id: Option<String>,
    input: Option<Value>,
    url: Option<String>,
    gateway: Option<String>,
    max_amount: Option<String>,
    #[serde(default, rename = "async")]
    asynchronous: bool,
}

/// An error answer: `{"error": {"code", "message"}}`.
struct Failure(StatusCode, &'static str, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error": {"code": self.1, "message": self.2}})),
        )
            .into_response()
    }
}

/// Serves on `host:port` (loopback only) until the process ends.
pub async fn serve(paths: Paths, host: IpAddr, port: u16) -> anyhow::Result<()> {
    anyhow::ensure!(
        host.is_loopback(),
        "the daemon listens on loopback only (127.0.0.1 or ::1), not {host}: it spends your money for whoever reaches it"
    );
    AgentConfig::load(&paths)?;
    let token = d402_wallet::token(&paths.daemon_token())?;
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    let bound = listener.local_addr()?;
    let daemon = Daemon {
        paths: Arc::new(paths),
        token: Arc::new(token),
        bound,
    };
    let router = Router::new()
        .route("/v1/tasks", post(create_task))
        .route("/v1/capabilities", get(capabilities))
        .route("/v1/ledger", get(ledger))
        .layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            authorize,
        ))
        .with_state(daemon);
    println!("d402-agent daemon listening on http://{bound}");
    axum::serve(listener, router).await?;
    Ok(())
}

async fn authorize(State(daemon): State<Daemon>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let port = daemon.bound.port();
    if host != daemon.bound.to_string() && host != format!("localhost:{port}") {
        return Failure(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "the daemon answers only requests addressed to its own loopback address".into(),
        )
        .into_response();
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(daemon.token.as_str()) {
        return Failure(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <token>`; the token is in the daemon-token file next to the agent's configuration".into(),
        )
        .into_response();
    }
    next.run(request).await
}

async fn create_task(
    State(daemon): State<Daemon>,
    order: Result<Json<TaskOrder>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, Failure> {
    let Json(order) =
        order.map_err(|e| Failure(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let max_amount = order
        .max_amount
        .as_deref()
        .map(d402_protocol::Price::parse_dollars)
        .transpose()
        .map_err(|e| {
            Failure(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("maxAmount: {e}"),
            )
        })?;
    let body = request::task_body(
        order.url,
        order.capability_id,
        order.input,
        order.asynchronous,
    )
    .map_err(|e| Failure(StatusCode::BAD_REQUEST, "invalid_request", format!("{e:#}")))?;
    let refused = |e: anyhow::Error| {
        Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_bought",
            format!("{e:#}"),
        )
    };
    let config = AgentConfig::load(&daemon.paths).map_err(refused)?;
    let payer = crate::signer::payer(&config).map_err(refused)?;
    let order = request::Order::new(
        &config,
        body,
        order.gateway.as_deref(),
        max_amount.map(|p| p.0.micros()),
    );
    match request::buy(&daemon.paths, order, Some(payer.as_ref()))
        .await
        .map_err(refused)?
    {
        Bought::Task(document) => Ok(Json(document)),
        Bought::Challenge(challenge) => Ok(Json(challenge)),
    }
}

async fn capabilities(State(daemon): State<Daemon>) -> Result<Json<Value>, Failure> {
    let failed =
        |e: anyhow::Error| Failure(StatusCode::BAD_GATEWAY, "gateway_failed", format!("{e:#}"));
    let config = AgentConfig::load(&daemon.paths).map_err(failed)?;
    Ok(Json(
        crate::search::capabilities(&config, &Default::default())
            .await
            .map_err(failed)?,
    ))
}

#[derive(Deserialize)]
struct LedgerQuery {
    limit: Option<usize>,
}

async fn ledger(
    State(daemon): State<Daemon>,
    Query(query): Query<LedgerQuery>,
) -> Result<Json<Value>, Failure> {
    let entries = crate::ledger::Ledger::new(daemon.paths.ledger())
        .entries()
        .map_err(|e| {
            Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ledger",
                format!("{e:#}"),
            )
        })?;
    let start = entries.len().saturating_sub(query.limit.unwrap_or(20));
    Ok(Json(
        serde_json::to_value(&entries[start..]).expect("entries serialize"),
    ))
}
