//! The buyer side of a d402 gateway (`d402 http-task`, the benchmarks, the agent): read
//! the discovery document, send the request, read the 402 challenge, pay it with a
//! [`Payer`], retry, poll an async task, fetch the receipt and check its signatures.

use std::time::Duration;

use d402_payment::x402::{
    PaymentPayload, PaymentRequired, PaymentRequirements, SettlementResponse, decode_header,
    headers,
};
use d402_payment::{PayError, Payer, Purchase};
use d402_protocol::{
    PublicKey, SettlementReceipt, Signed, TaskIntent, Timestamp, ValidationReceipt,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long [`Client::run_task`] polls an async task before giving up.
const POLL_LIMIT: Duration = Duration::from_secs(60);
/// Time before the first poll; each later wait doubles, up to [`MAX_POLL_INTERVAL`].
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait between polls.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What went wrong talking to a gateway.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway could not be reached or answered garbage at the transport level.
    #[error("cannot reach the gateway at {url}; is a node running there? (d402 node starts one)")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The gateway answered with an unexpected status.
    #[error("{what}: the gateway answered HTTP {status}: {body}")]
    Status {
        /// What was asked.
        what: &'static str,
        /// The status.
        status: u16,
        /// The answer's body.
        body: String,
    },
    /// A document is not what the protocol says it is.
    #[error("{0}")]
    Protocol(String),
    /// The payment could not be made.
    #[error(transparent)]
    Pay(#[from] PayError),
    /// A receipt's signature does not verify, or is not the gateway's.
    #[error("receipt check failed: {0}")]
    Receipt(String),
    /// An async task did not finish in time.
    #[error("task {0} still running after {1:?}")]
    Timeout(String, Duration),
}

/// The gateway's `/.well-known/d402-gateway.json` endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// `POST` here to create a task.
    pub create_task: String,
    /// A task, with `{taskId}` to fill in.
    pub task: String,
    /// A task's receipt, with `{taskId}` to fill in.
    pub receipt: String,
}

/// The parts of the discovery document a buyer uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    /// `gateway:<base58 key>`.
    pub node_id: String,
    /// Where to call.
    pub endpoints: Endpoints,
}

impl Discovery {
    /// The gateway's signing key, from its node id.
    pub fn gateway_key(&self) -> Result<PublicKey, ClientError> {
        self.node_id
            .strip_prefix("gateway:")
            .and_then(|k| k.parse().ok())
            .ok_or_else(|| {
                ClientError::Protocol(format!("node id {:?} names no key", self.node_id))
            })
    }
}

/// What a completed buyer round trip produced.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// The decoded 402 challenge.
    pub challenge: PaymentRequired,
    /// The task document (final state).
    pub task: Value,
    /// The decoded `PAYMENT-RESPONSE`.
    pub payment_response: Option<SettlementResponse>,
    /// The receipt document, its signatures checked against the gateway's key.
    pub receipt: Value,
}

/// What paying a plain x402 resource (not a d402 gateway) produced.
#[derive(Debug, Clone)]
pub struct PaidResource {
    /// The decoded 402 challenge.
    pub challenge: PaymentRequired,
    /// The paid response's HTTP status.
    pub status: u16,
    /// Its body (JSON, or the text as a JSON string).
    pub body: Value,
    /// The decoded `PAYMENT-RESPONSE`.
    pub payment_response: Option<SettlementResponse>,
}

/// A buyer's connection to one gateway.
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:8402`).
    pub fn new(base: &str) -> Result<Self, ClientError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Protocol(format!(
                "gateway {base:?} has no scheme; use http://{base} or https://{base}"
            )));
        }
        Ok(Self {
            http: http_client(),
            base: base.trim_end_matches('/').to_string(),
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.to_string(),
                source,
            })
    }

    async fn get_json(&self, what: &'static str, url: &str) -> Result<Value, ClientError> {
        let response = self.send(self.http.get(url), url).await?;
        json_of(what, response).await
    }

    /// Reads the discovery document.
    pub async fn discover(&self) -> Result<Discovery, ClientError> {
        let url = format!("{}/.well-known/d402-gateway.json", self.base);
        let document = self.get_json("discovery", &url).await?;
        serde_json::from_value(document)
            .map_err(|e| ClientError::Protocol(format!("discovery document: {e}")))
    }

    /// Sends `body` unpaid and returns the 402 challenge.
    pub async fn challenge(&self, url: &str, body: &Value) -> Result<PaymentRequired, ClientError> {
        let first = self.send(self.http.post(url).json(body), url).await?;
        if first.status().as_u16() != 402 {
            let status = first.status().as_u16();
            return Err(ClientError::Status {
                what: "the unpaid request",
                status,
                body: first.text().await.unwrap_or_default(),
            });
        }
        let header = first
            .headers()
            .get(headers::PAYMENT_REQUIRED)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| ClientError::Protocol("402 without a PAYMENT-REQUIRED header".into()))?;
        decode_header(header).map_err(|e| ClientError::Protocol(format!("PAYMENT-REQUIRED: {e}")))
    }

    /// Pays any x402 resource: POSTs `body` to `url`, answers its 402 challenge with the
    /// first requirement `payer` can pay, and retries once with the payment.
    pub async fn pay_resource(
        &self,
        url: &str,
        body: &Value,
        payer: &dyn Payer,
    ) -> Result<PaidResource, ClientError> {
        let challenge = self.challenge(url, body).await?;
        let payment = pay(&challenge, body, payer).await?;
        let (name, value) = payer.header(&payment);
        let paid = self
            .send(self.http.post(url).header(name, value).json(body), url)
            .await?;
        let status = paid.status().as_u16();
        let payment_response = settlement_of(&paid);
        let text = paid.text().await.unwrap_or_default();
        Ok(PaidResource {
            challenge,
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            payment_response,
        })
    }

    /// Runs one paid task: challenge, pay with the first requirement `payer` can pay, retry,
    /// poll until settled, fetch the receipt and check its signatures.
    pub async fn run_task(
        &self,
        body: &Value,
        payer: &dyn Payer,
    ) -> Result<TaskOutcome, ClientError> {
        let discovery = self.discover().await?;
        let gateway_key = discovery.gateway_key()?;
        let endpoints = &discovery.endpoints;
        let challenge = self.challenge(&endpoints.create_task, body).await?;
        let payment = pay(&challenge, body, payer).await?;
        let header = payer.header(&payment);
        let (task, payment_response) = self.submit(endpoints, body, (header.0, &header.1)).await?;
        let (task, polled_response) = self.settled(endpoints, task).await?;
        let task_id = task_id_of(&task)?;
        let receipt = self.receipt(endpoints, &task_id, &gateway_key).await?;
        Ok(TaskOutcome {
            challenge,
            task,
            payment_response: polled_response.or(payment_response),
            receipt,
        })
    }

    /// Sends `body` with the payment `header` (name, value): the task document the gateway
    /// answered (running, or decided for a synchronous request) and its `PAYMENT-RESPONSE`.
    /// Sending the same payment again is safe: the gateway answers with the same task.
    pub async fn submit(
        &self,
        endpoints: &Endpoints,
        body: &Value,
        header: (&str, &str),
    ) -> Result<(Value, Option<SettlementResponse>), ClientError> {
        let url = &endpoints.create_task;
        let paid = self
            .send(
                self.http.post(url).header(header.0, header.1).json(body),
                url,
            )
            .await?;
        let payment_response = settlement_of(&paid);
        let task = json_of("the paid request", paid).await?;
        Ok((task, payment_response))
    }

    /// Polls `task` until it is decided and its payment settled; returns the final task
    /// document and the last `PAYMENT-RESPONSE` seen.
    pub async fn settled(
        &self,
        endpoints: &Endpoints,
        mut task: Value,
    ) -> Result<(Value, Option<SettlementResponse>), ClientError> {
        let task_id = task_id_of(&task)?;
        let task_url = endpoints.task.replace("{taskId}", &task_id);
        let deadline = tokio::time::Instant::now() + POLL_LIMIT;
        let mut pause = POLL_INTERVAL;
        let mut payment_response = None;
        // Running, or settling its payment on chain: the result comes once settled.
        while task["status"] == "running" || task["status"] == "settling" {
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::Timeout(task_id, POLL_LIMIT));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL_INTERVAL);
            let polled = self.send(self.http.get(&task_url), &task_url).await?;
            payment_response = settlement_of(&polled).or(payment_response);
            task = json_of("the task", polled).await?;
        }
        Ok((task, payment_response))
    }

    /// The receipt document of `task_id`, its signatures checked against `gateway`.
    pub async fn receipt(
        &self,
        endpoints: &Endpoints,
        task_id: &str,
        gateway: &PublicKey,
    ) -> Result<Value, ClientError> {
        let receipt_url = endpoints.receipt.replace("{taskId}", task_id);
        let receipt = self.get_json("the receipt", &receipt_url).await?;
        check_receipt(&receipt, gateway, task_id)?;
        Ok(receipt)
    }
}

/// The `taskId` of a task document.
pub fn task_id_of(task: &Value) -> Result<String, ClientError> {
    task["taskId"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| ClientError::Protocol("no taskId in the gateway's answer".into()))
}

/// The first requirement of `challenge` that `payer` can pay.
pub fn payable<'a>(
    challenge: &'a PaymentRequired,
    payer: &dyn Payer,
) -> Result<&'a PaymentRequirements, PayError> {
    challenge
        .accepts
        .iter()
        .find(|r| payer.can_pay(r))
        .ok_or_else(|| {
            let offered: Vec<String> = challenge
                .accepts
                .iter()
                .map(|r| format!("{} {} on {}", r.amount, r.asset, r.network))
                .collect();
            PayError::NoMatchingRequirement(offered.join(", "))
        })
}

/// Pays `challenge` for `body` with the first requirement `payer` can pay.
async fn pay(
    challenge: &PaymentRequired,
    body: &Value,
    payer: &dyn Payer,
) -> Result<PaymentPayload, PayError> {
    let requirements = payable(challenge, payer)?;
    let purchase = Purchase {
        resource: Some(&challenge.resource),
        body,
        now: Timestamp::now(),
    };
    payer.pay(requirements, &purchase).await
}

/// The decoded `PAYMENT-RESPONSE` of `response`, if it carries one.
fn settlement_of(response: &reqwest::Response) -> Option<SettlementResponse> {
    response
        .headers()
        .get(headers::PAYMENT_RESPONSE)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| decode_header::<SettlementResponse>(h).ok())
}

async fn json_of(what: &'static str, response: reqwest::Response) -> Result<Value, ClientError> {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(ClientError::Status {
            what,
            status,
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|e| ClientError::Protocol(format!("{what}: not JSON: {e}")))
}

/// Checks a receipt document's signed objects: each verifies, each is signed by `gateway`,
/// and each is for `task_id`.
pub fn check_receipt(
    receipt: &Value,
    gateway: &PublicKey,
    task_id: &str,
) -> Result<(), ClientError> {
    fn signed<T: d402_protocol::SignedObject + serde::de::DeserializeOwned>(
        receipt: &Value,
        field: &str,
        gateway: &PublicKey,
    ) -> Result<T, ClientError> {
        let envelope: Signed<T> = serde_json::from_value(receipt["signed"][field].clone())
            .map_err(|e| ClientError::Receipt(format!("signed.{field}: {e}")))?;
        envelope
            .verify()
            .map_err(|e| ClientError::Receipt(format!("signed.{field}: {e}")))?;
        if envelope.signer != *gateway {
            return Err(ClientError::Receipt(format!(
                "signed.{field} is signed by {}, not by the gateway {gateway}",
                envelope.signer
            )));
        }
        Ok(envelope.payload)
    }
    let intent: TaskIntent = signed(receipt, "taskIntent", gateway)?;
    let validation: ValidationReceipt = signed(receipt, "validationReceipt", gateway)?;
    let settlement: SettlementReceipt = signed(receipt, "settlementReceipt", gateway)?;
    for (what, id) in [
        ("task intent", &intent.task_id),
        ("validation receipt", &validation.task_id),
        ("settlement receipt", &settlement.task_id),
    ] {
        if id != task_id {
            return Err(ClientError::Receipt(format!(
                "the {what} is for {id}, not {task_id}"
            )));
        }
    }
    Ok(())
}

/// The request body for a page: `{"input": {"url"}}`.
pub fn page_request(url: &str) -> Value {
    json!({"input": {"url": url}})
}

/// An HTTP client for talking to gateways (installs the ring TLS provider if none is).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("the TLS provider is installed")
}
