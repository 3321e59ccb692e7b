//! Buyer side of the HTTP gateway (`d402 http-task`): discovery, the 402 round trip on the
//! simulated rail, polling for async tasks, and fetching the receipt.

use std::time::Duration;

use anyhow::{Context, bail};
use d402_protocol::{Keypair, Timestamp};
use serde_json::{Value, json};

use crate::payment::{PaymentRequired, SIMULATED_NETWORK, decode_header, pay_simulated};

/// What a completed buyer round trip produced.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// The decoded 402 challenge.
    pub challenge: PaymentRequired,
    /// The task document (final state).
    pub task: Value,
    /// The decoded `PAYMENT-RESPONSE`.
    pub payment_response: Option<Value>,
    /// The receipt document.
    pub receipt: Value,
}

/// Runs one paid task against `gateway` (base URL) with request `body`, paying with `key`
/// on the simulated rail. With `body.sync == false`, polls the result until it is ready.
pub async fn http_task(gateway: &str, body: &Value, key: &Keypair) -> anyhow::Result<TaskOutcome> {
    let client = http_client()?;
    let base = gateway.trim_end_matches('/');
    let discovery: Value = client
        .get(format!("{base}/.well-known/d402-gateway.json"))
        .send()
        .await
        .context("discovery request failed")?
        .error_for_status()?
        .json()
        .await?;
    // The discovery document names the endpoints; `{taskId}` is filled in below.
    let endpoint = |name: &str| -> anyhow::Result<String> {
        discovery["endpoints"][name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("discovery names no {name} endpoint"))
    };
    let create = endpoint("createTask")?;
    let first = client.post(&create).json(body).send().await?;
    if first.status().as_u16() != 402 {
        bail!(
            "expected 402 Payment Required, got {}: {}",
            first.status(),
            first.text().await.unwrap_or_default()
        );
    }
    let header = first
        .headers()
        .get("payment-required")
        .context("402 without a PAYMENT-REQUIRED header")?
        .to_str()?
        .to_string();
    let challenge: PaymentRequired =
        decode_header(&header).map_err(|e| anyhow::anyhow!("PAYMENT-REQUIRED: {e}"))?;
    let requirements = challenge
        .accepts
        .iter()
        .find(|r| r.network == SIMULATED_NETWORK)
        .context("the gateway offers no simulated-rail payment")?;
    let now = Timestamp::now();
    let payment = pay_simulated(
        requirements,
        Some(challenge.resource.clone()),
        body,
        key,
        now,
    )?;
    let paid = client
        .post(&create)
        .header("payment-signature", &payment)
        .json(body)
        .send()
        .await?;
    let status = paid.status();
    let payment_response = paid
        .headers()
        .get("payment-response")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| decode_header::<Value>(h).ok());
    let mut task: Value = paid.json().await.context("the paid response is not JSON")?;
    if !(status.is_success()) {
        bail!("paid request failed with HTTP {status}: {task}");
    }
    let task_id = task["taskId"]
        .as_str()
        .context("no taskId in the response")?
        .to_string();
    let task_url = endpoint("task")?.replace("{taskId}", &task_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while task["status"] == "running" {
        if tokio::time::Instant::now() > deadline {
            bail!("task {task_id} still running after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        task = client
            .get(&task_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
    }
    let receipt_url = endpoint("receipt")?.replace("{taskId}", &task_id);
    let receipt: Value = client
        .get(&receipt_url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(TaskOutcome {
        challenge,
        task,
        payment_response,
        receipt,
    })
}

/// The request body for a page: `{"input": {"url"}}`.
pub fn page_request(url: &str) -> Value {
    json!({"input": {"url": url}})
}

/// An HTTP client for talking to gateways (installs the ring TLS provider if none is).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?)
}
