//! `d402-agent request`: discovery (pinned key), the 402 challenge, the policy and a
//! ledger reservation before anything is signed, the payment recorded before it is sent,
//! retries that re-send exactly that payment, polling, and the checked receipt.

use std::time::Duration;

use anyhow::Context;
use d402_client::{Client, ClientError};
use d402_payment::{PayError, Payer, Purchase, request_binding};
use d402_protocol::Timestamp;
use serde_json::{Value, json};

use crate::config::{AgentConfig, Gateway, Paths};
use crate::ledger::{Entry, Ledger};
use crate::pins::KnownGateways;
use crate::policy::{Policy, Quote};

/// Times a paid request is sent when the connection fails (the same payment each time).
const SEND_ATTEMPTS: u32 = 5;

impl Order {
    /// An order for `body` from `config`'s gateways (or only `gateway`), within its policy
    /// tightened to `max_amount` atomic units.
    pub fn new(
        config: &AgentConfig,
        body: Value,
        gateway: Option<&str>,
        max_amount: Option<u64>,
    ) -> Self {
        Self {
            body,
            gateways: gateways(config, gateway),
            policy: config.policy.clone().tightened(max_amount),
            manual: false,
            accept_new_key: false,
        }
    }
}

/// What `request` is asked to do.
pub struct Order {
    /// The request body (`{"input", "capabilityId"?, "sync"?}`).
    pub body: Value,
    /// Gateways to try, in order (failing over only before paying).
    pub gateways: Vec<Gateway>,
    /// The policy, already tightened by flags.
    pub policy: Policy,
    /// Print the challenge and stop.
    pub manual: bool,
    /// Accept a gateway key that changed since it was pinned.
    pub accept_new_key: bool,
}

/// How a request ended.
pub enum Bought {
    /// Paid and decided.
    Task(Value),
    /// `--rail manual`: the challenge, nothing paid.
    Challenge(Value),
}

/// Buys one task as `order` says, paying with `payer`.
/// A `manual` order needs no payer.
pub async fn buy(paths: &Paths, order: Order, payer: Option<&dyn Payer>) -> anyhow::Result<Bought> {
    let ledger = Ledger::new(paths.ledger());
    let mut pins = KnownGateways::load(paths.known_gateways())?;
    let mut unreachable = Vec::new();
    for gateway in &order.gateways {
        let client = Client::new(&gateway.url)?;
        // Before paying, a gateway that does not answer is skipped for the next one.
        let discovery = match client.discover().await {
            Ok(discovery) => discovery,
            Err(e @ ClientError::Unreachable { .. }) => {
                unreachable.push(format!("{e}"));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let key = discovery.gateway_key()?;
        pins.check(&gateway.url, &key, order.accept_new_key)?;
        let endpoints = &discovery.endpoints;
        let now = || Timestamp::now().unix_millis();
        // A payment signed and recorded earlier whose answer never arrived (a dropped
        // connection, a crash): sent again as it is, never signed anew — unless its transfer
        // can never land (then it is released and a new one signed).
        let resumed = match unfinished(&ledger.entries()?, &gateway.url, &order.body) {
            Some(recorded) if !order.manual => {
                let landed = match &recorded.transaction {
                    Some(transaction) => {
                        let payer = payer.context("no signer is configured to pay with")?;
                        put_on_chain(&ledger, payer, &recorded.id, transaction).await?
                    }
                    None => true,
                };
                landed.then_some((recorded.id, recorded.header))
            }
            _ => None,
        };
        let (id, header) = match resumed {
            Some(recorded) => recorded,
            None => {
                let challenge = client
                    .challenge(&endpoints.create_task, &order.body)
                    .await?;
                if order.manual {
                    return Ok(Bought::Challenge(serde_json::to_value(&challenge)?));
                }
                let payer = payer.context("no signer is configured to pay with")?;
                sign(&ledger, &order, gateway, &challenge, payer).await?
            }
        };
        let release = |reason: String| {
            ledger.append(&Entry::Released {
                id: id.clone(),
                at_ms: now(),
                reason,
            })
        };
        let (task, response) = match send(&client, endpoints, &order.body, &header).await {
            Ok(answer) => answer,
            Err(ClientError::Status { status, body, what }) => {
                // The gateway answered and refused: nothing was charged.
                release(format!("refused by the gateway: HTTP {status}"))?;
                return Err(ClientError::Status { what, status, body }.into());
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "the payment was sent but its answer never arrived; it stays reserved in {} \
                     (run the same request again: the agent sends this same payment again)",
                    ledger.path().display()
                )));
            }
        };
        let (task, polled) = client.settled(endpoints, task).await?;
        let task_id = d402_client::task_id_of(&task)?;
        let receipt = client.receipt(endpoints, &task_id, &key).await?;
        let status = task["status"].as_str().unwrap_or_default().to_string();
        ledger.append(&Entry::Settled {
            id: id.clone(),
            at_ms: now(),
            task_id: task_id.clone(),
            status: status.clone(),
            gateway_key: key.to_string(),
            payment_response: polled.or(response).map(serde_json::to_value).transpose()?,
            receipt: receipt.clone(),
            result: task.get("result").cloned(),
            evidence: task.get("evidence").cloned(),
        })?;
        if status != "accepted" {
            release(format!("task {status}: refunded"))?;
        }
        return Ok(Bought::Task(json!({"task": task, "receipt": receipt})));
    }
    anyhow::bail!(
        "no gateway answered ({}); nothing was paid",
        unreachable.join("; ")
    )
}

/// Reserves the spend for `challenge`, signs the payment and records it before it is
/// sent: the ledger id and the payment header `(name, value)`.
async fn sign(
    ledger: &Ledger,
    order: &Order,
    gateway: &Gateway,
    challenge: &d402_payment::x402::PaymentRequired,
    payer: &dyn Payer,
) -> anyhow::Result<(String, (String, String))> {
    let requirements = d402_client::payable(challenge, payer)?;
    let amount: u64 = requirements.amount.parse().with_context(|| {
        format!(
            "the challenge's amount {:?} is not atomic units",
            requirements.amount
        )
    })?;
    let id = format!("req:{}", hex_id());
    let quote = Quote::of(&gateway.url, amount, requirements);
    let now = || Timestamp::now().unix_millis();
    ledger.reserve(&order.policy, &id, &quote, now())??;
    let purchase = Purchase {
        resource: Some(&challenge.resource),
        body: &order.body,
        now: Timestamp::now(),
    };
    let prepared = match payer.prepare(requirements, &purchase).await {
        Ok(prepared) => prepared,
        Err(e) => {
            ledger.append(&Entry::Released {
                id,
                at_ms: now(),
                reason: format!("not signed: {e}"),
            })?;
            return Err(e.into());
        }
    };
    let mut payment = prepared.payment;
    // The gateway's idempotency key for this payment: a resend is the same request.
    let payment_id = format!("d402-agent-{}", id.trim_start_matches("req:"));
    d402_payment::x402::payment_identifier::append(&mut payment.extensions, &payment_id);
    let (name, value) = payer.header(&payment);
    ledger.append(&Entry::Paid {
        id: id.clone(),
        at_ms: now(),
        body: order.body.clone(),
        binding: request_binding(&order.body),
        payment_id,
        pid: std::process::id(),
        header: name.to_string(),
        payment: value.clone(),
        transaction: prepared.transaction.clone(),
    })?;
    if let Some(transaction) = &prepared.transaction
        && !put_on_chain(ledger, payer, &id, transaction).await?
    {
        anyhow::bail!("the payment's transfer failed on chain; nothing was paid");
    }
    Ok((id, (name.to_string(), value)))
}

/// Puts the recorded payment `id`'s `transaction` on chain (sent unless it landed already)
/// before the payment is presented: `true` once confirmed, `false` when it never will land
/// (the payment is released: nothing was paid). An error leaves it reserved.
async fn put_on_chain(
    ledger: &Ledger,
    payer: &dyn Payer,
    id: &str,
    transaction: &str,
) -> anyhow::Result<bool> {
    match payer.broadcast(transaction).await {
        Ok(()) => Ok(true),
        Err(PayError::NotLanded {
            reason,
            settled_unpaid: true,
        }) => {
            ledger.append(&Entry::Released {
                id: id.to_string(),
                at_ms: Timestamp::now().unix_millis(),
                reason: format!("its transfer did not land: {reason}"),
            })?;
            Ok(false)
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "the payment's transfer is recorded but not confirmed; it stays reserved in {} \
             (run the same request again: the agent puts this same transfer on chain, once)",
            ledger.path().display()
        ))),
    }
}

/// A payment the ledger holds with no outcome yet.
struct Recorded {
    /// Its ledger id.
    id: String,
    /// Its header, sent again as is.
    header: (String, String),
    /// The transfer to put on chain before presenting it, if any.
    transaction: Option<String>,
}

/// The payment recorded for `body` at `gateway` that has no outcome yet (neither settled
/// nor released) and whose process is gone (an identical request running right now is not
/// abandoned).
fn unfinished(entries: &[Entry], gateway: &str, body: &Value) -> Option<Recorded> {
    let at_gateway: std::collections::HashSet<&str> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Reserved { id, gateway: g, .. } if g == gateway => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let finished: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| matches!(e, Entry::Settled { .. } | Entry::Released { .. }))
        .map(Entry::id)
        .collect();
    entries.iter().rev().find_map(|e| match e {
        Entry::Paid {
            id,
            body: b,
            header,
            payment,
            pid,
            transaction,
            ..
        } if b == body
            && at_gateway.contains(id.as_str())
            && !finished.contains(id.as_str())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists() =>
        {
            Some(Recorded {
                id: id.clone(),
                header: (header.clone(), payment.clone()),
                transaction: transaction.clone(),
            })
        }
        _ => None,
    })
}

/// What each configured gateway would charge for `body`, and whether the policy (with
/// what the ledger says was spent) would let it be paid. Signs and reserves nothing.
pub async fn quote(
    paths: &Paths,
    gateways: &[Gateway],
    body: &Value,
    policy: &Policy,
    payer: &dyn Payer,
) -> anyhow::Result<Value> {
    let entries = Ledger::new(paths.ledger()).entries()?;
    let mut quotes = Vec::new();
    for gateway in gateways {
        let client = Client::new(&gateway.url)?;
        let discovery = client.discover().await?;
        let challenge = client
            .challenge(&discovery.endpoints.create_task, body)
            .await?;
        let requirements = d402_client::payable(&challenge, payer)?;
        let amount: u64 = requirements.amount.parse().unwrap_or(u64::MAX);
        let quote = Quote::of(&gateway.url, amount, requirements);
        let now = Timestamp::now().unix_millis();
        let verdict = policy.check(&quote, crate::ledger::spent(&entries, &gateway.url, now));
        quotes.push(json!({
            "gateway": gateway.url,
            "amount": requirements.amount,
            "asset": requirements.asset,
            "network": requirements.network,
            "payTo": requirements.pay_to,
            "allowed": verdict.is_ok(),
            "refusal": verdict.err().map(|e| e.to_string()),
        }));
    }
    Ok(Value::Array(quotes))
}

/// Sends the paid request, re-sending the same payment after a connection failure.
async fn send(
    client: &Client,
    endpoints: &d402_client::Endpoints,
    body: &Value,
    header: &(String, String),
) -> Result<(Value, Option<d402_payment::x402::SettlementResponse>), ClientError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.submit(endpoints, body, (&header.0, &header.1)).await {
            Err(ClientError::Unreachable { .. }) if attempt < SEND_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
}

/// A fresh random id for a ledger request.
fn hex_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The request body for a page (`url`) or a capability's `input`, submitted asynchronously
/// when `asynchronous`.
pub fn task_body(
    url: Option<String>,
    capability: Option<String>,
    input: Option<Value>,
    asynchronous: bool,
) -> anyhow::Result<Value> {
    let mut body = match (url, input) {
        (Some(url), None) => d402_client::page_request(&url),
        (None, Some(input)) => json!({ "input": input }),
        _ => anyhow::bail!("give a page url, or a capability and its input"),
    };
    if let Some(capability) = capability {
        body["capabilityId"] = json!(capability);
    }
    if asynchronous {
        body["sync"] = json!(false);
    }
    Ok(body)
}

/// The gateways of `config`, or the one named on the command line.
pub fn gateways(config: &AgentConfig, named: Option<&str>) -> Vec<Gateway> {
    match named {
        Some(url) => config
            .gateways
            .iter()
            .find(|g| g.url == url)
            .cloned()
            .into_iter()
            .collect(),
        None => config.gateways.clone(),
    }
}
