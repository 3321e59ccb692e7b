//! The x402 v2 payment shapes and the simulated rail.
//!
//! Challenge: `PAYMENT-REQUIRED: base64(JSON)` ([`PaymentRequired`]). Retry:
//! `PAYMENT-SIGNATURE: base64(JSON)` ([`PaymentPayload`]) whose `payload` is, on the
//! simulated rail, a [`Signed`] [`SimulatedAuthorization`] made with the buyer's ed25519 key.
//! Result: `PAYMENT-RESPONSE: base64(JSON)` ([`PaymentResponse`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use d402_protocol::{Amount, Signed, SignedObject, Timestamp, canonical};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The simulated rail's network name.
pub const SIMULATED_NETWORK: &str = "d402:simulated";
/// The asset the simulated ledger counts (micro-dollars).
pub const SIMULATED_ASSET: &str = "USD";
/// The x402 version spoken.
pub const X402_VERSION: u32 = 2;

/// The resource a challenge is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// The URL paid for.
    pub url: String,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Media type of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// One way to pay (x402 `PaymentRequirements`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// Always `exact`.
    pub scheme: String,
    /// Rail network, e.g. `d402:simulated`.
    pub network: String,
    /// Atomic units (micro-dollars) as a decimal string.
    pub amount: String,
    /// Asset identifier.
    pub asset: String,
    /// Receiving account (the gateway wallet, base58).
    pub pay_to: String,
    /// How long an authorization may stay valid.
    pub max_timeout_seconds: u64,
    /// Rail-specific details.
    #[serde(default)]
    pub extra: Value,
}

/// The 402 challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// 2.
    pub x402_version: u32,
    /// Why a previous payment was refused, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is paid for.
    pub resource: Resource,
    /// Accepted ways to pay.
    pub accepts: Vec<PaymentRequirements>,
}

/// The buyer's signed authorization on the simulated rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimulatedAuthorization {
    /// Network, `d402:simulated`.
    pub network: String,
    /// Atomic units authorised, decimal string.
    pub amount: String,
    /// Receiving account.
    pub pay_to: String,
    /// Unique per payment (32 random bytes, hex). Consumed exactly once.
    pub nonce: String,
    /// After this the authorization is void.
    pub expires_at: Timestamp,
    /// `sha256:<hex>` of the canonical request body paid for ([`task_binding`]).
    pub task_binding: String,
}

impl SignedObject for SimulatedAuthorization {
    const OBJECT_TYPE: &'static str = "simulated-payment-authorization";
}

/// The `PAYMENT-SIGNATURE` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// 2.
    pub x402_version: u32,
    /// The resource paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// The requirements chosen from the challenge.
    pub accepted: PaymentRequirements,
    /// The signed authorization.
    pub payload: Signed<SimulatedAuthorization>,
}

/// The `PAYMENT-RESPONSE` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    /// Whether the payment settled.
    pub success: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// Paying account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Rail transaction reference.
    pub transaction: String,
    /// Network.
    pub network: String,
    /// Atomic units charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// Why a payment was refused (always before anything is charged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The header is not base64 JSON of the expected shape.
    #[error("malformed payment: {0}")]
    Malformed(String),
    /// The rail or network is not one this gateway accepts.
    #[error("unsupported payment network {0:?}")]
    UnsupportedNetwork(String),
    /// The signature does not verify.
    #[error("payment signature does not verify: {0}")]
    BadSignature(String),
    /// The authorization has expired (or lives longer than allowed).
    #[error("payment authorization expired or outside the allowed window")]
    Expired,
    /// Less than the price.
    #[error("payment of {offered} atomic units is below the price of {price}")]
    Underpaid {
        /// Authorised amount.
        offered: u64,
        /// The price.
        price: u64,
    },
    /// Paid to another account.
    #[error("payment is to {0}, not to this gateway")]
    WrongPayee(String),
    /// Bound to another request body.
    #[error("payment is bound to a different request body")]
    BindingMismatch,
}

impl PaymentError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_payment",
            Self::UnsupportedNetwork(_) => "unsupported_network",
            Self::BadSignature(_) => "invalid_signature",
            Self::Expired => "payment_expired",
            Self::Underpaid { .. } => "underpaid",
            Self::WrongPayee(_) => "wrong_payee",
            Self::BindingMismatch => "binding_mismatch",
        }
    }
}

/// A payment that verified: who pays, how much, and its once-only key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayment {
    /// Paying account (base58).
    pub payer: String,
    /// `<payer>:<nonce>`: consumed exactly once.
    pub payment_key: String,
    /// Amount authorised.
    pub authorized: Amount,
    /// The rail's transaction reference.
    pub transaction: String,
}

/// What the gateway expects of a payment for one request.
#[derive(Debug, Clone)]
pub struct Expectation<'a> {
    /// The price.
    pub price: Amount,
    /// The gateway's receiving account.
    pub pay_to: &'a str,
    /// The request body's binding.
    pub binding: &'a str,
    /// Now.
    pub now: Timestamp,
    /// Longest allowed authorization lifetime from now.
    pub max_timeout_seconds: u64,
}

/// A payment rail: makes requirements and verifies payment payloads. Charging and payouts
/// happen in the node's store (for the simulated rail) or on chain (later rails).
pub trait PaymentRail: Send + Sync {
    /// The rail's name in receipts (`simulated`).
    fn name(&self) -> &'static str;
    /// The network in x402 requirements.
    fn network(&self) -> &'static str;
    /// Requirements for `price` paid to `pay_to`.
    fn requirements(
        &self,
        price: Amount,
        pay_to: &str,
        max_timeout_seconds: u64,
    ) -> PaymentRequirements;
    /// Verifies the decoded `PAYMENT-SIGNATURE` header against `expected`.
    fn verify(
        &self,
        header: &str,
        expected: &Expectation<'_>,
    ) -> Result<VerifiedPayment, PaymentError>;
}

/// The simulated rail: ed25519-signed authorizations settled on the node's local ledger.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimulatedRail;

impl PaymentRail for SimulatedRail {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn network(&self) -> &'static str {
        SIMULATED_NETWORK
    }

    fn requirements(
        &self,
        price: Amount,
        pay_to: &str,
        max_timeout_seconds: u64,
    ) -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: SIMULATED_NETWORK.into(),
            amount: price.micros().to_string(),
            asset: SIMULATED_ASSET.into(),
            pay_to: pay_to.into(),
            max_timeout_seconds,
            extra: serde_json::json!({
                "authorization": SimulatedAuthorization::OBJECT_TYPE,
                "decimals": 6,
                "taskBinding": "sha256 of the RFC 8785 form of the JSON request body"
            }),
        }
    }

    fn verify(
        &self,
        header: &str,
        expected: &Expectation<'_>,
    ) -> Result<VerifiedPayment, PaymentError> {
        let payload: PaymentPayload = decode_header(header).map_err(PaymentError::Malformed)?;
        if payload.x402_version != X402_VERSION {
            return Err(PaymentError::Malformed(format!(
                "x402Version {} is not 2",
                payload.x402_version
            )));
        }
        let envelope = &payload.payload;
        let auth = envelope
            .verify()
            .map_err(|e| PaymentError::BadSignature(e.to_string()))?;
        if auth.network != SIMULATED_NETWORK || payload.accepted.network != SIMULATED_NETWORK {
            return Err(PaymentError::UnsupportedNetwork(auth.network.clone()));
        }
        if auth.pay_to != expected.pay_to {
            return Err(PaymentError::WrongPayee(auth.pay_to.clone()));
        }
        let offered: u64 = auth.amount.parse().map_err(|_| {
            PaymentError::Malformed(format!("amount {:?} is not atomic units", auth.amount))
        })?;
        if offered < expected.price.micros() {
            return Err(PaymentError::Underpaid {
                offered,
                price: expected.price.micros(),
            });
        }
        let latest = expected
            .now
            .plus_millis(expected.max_timeout_seconds.saturating_mul(1000) + 60_000);
        if auth.expires_at <= expected.now || auth.expires_at > latest {
            return Err(PaymentError::Expired);
        }
        if auth.task_binding != expected.binding {
            return Err(PaymentError::BindingMismatch);
        }
        if auth.nonce.len() < 16
            || auth.nonce.len() > 128
            || !auth.nonce.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(PaymentError::Malformed(
                "nonce must be 16 to 128 hex digits".into(),
            ));
        }
        let payer = envelope.signer.to_string();
        let payment_key = payment_key(&payer, &auth.nonce);
        let transaction = format!(
            "sim:{}",
            hex::encode(Sha256::digest(payment_key.as_bytes()))
        );
        Ok(VerifiedPayment {
            payer,
            payment_key,
            authorized: Amount::from_micros(offered),
            transaction,
        })
    }
}

/// The task a payment pays for: `task:` and 32 hex digits of sha256 of its once-only
/// payment key (`<payer>:<nonce>`), so a replayed payment always names the same task.
pub fn task_id_for(payment_key: &str) -> String {
    format!(
        "task:{}",
        &hex::encode(Sha256::digest(payment_key.as_bytes()))[..32]
    )
}

/// The task a `PAYMENT-SIGNATURE` payload would pay for (see [`task_id_for`]).
pub fn task_id_of(payload: &PaymentPayload) -> String {
    task_id_for(&payment_key(
        &payload.payload.signer.to_string(),
        &payload.payload.payload.nonce,
    ))
}

fn payment_key(payer: &str, nonce: &str) -> String {
    format!("{payer}:{}", nonce.to_ascii_lowercase())
}

/// `sha256:<hex>` of the RFC 8785 form of a request body: what a payment is bound to.
pub fn task_binding(body: &Value) -> String {
    let bytes =
        canonical::to_vec(body).unwrap_or_else(|_| serde_json::to_vec(body).unwrap_or_default());
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// Base64 (standard) of the JSON form of `value`: a header value.
pub fn encode_header<T: Serialize>(value: &T) -> String {
    STANDARD.encode(serde_json::to_vec(value).expect("payment documents serialise"))
}

/// Parses a base64 JSON header value.
pub fn decode_header<T: DeserializeOwned>(header: &str) -> Result<T, String> {
    let bytes = STANDARD
        .decode(header.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not the expected JSON: {e}"))
}

/// Signs a simulated-rail payment for `requirements`, bound to `body`, with the buyer's key.
pub fn pay_simulated(
    requirements: &PaymentRequirements,
    resource: Option<Resource>,
    body: &Value,
    key: &d402_protocol::Keypair,
    now: Timestamp,
) -> Result<String, d402_protocol::ProtocolError> {
    let nonce: [u8; 32] = rand::random();
    let lifetime = requirements.max_timeout_seconds.clamp(1, 3600) * 1000;
    let auth = SimulatedAuthorization {
        network: requirements.network.clone(),
        amount: requirements.amount.clone(),
        pay_to: requirements.pay_to.clone(),
        nonce: hex::encode(nonce),
        expires_at: now.plus_millis(lifetime),
        task_binding: task_binding(body),
    };
    let payload = PaymentPayload {
        x402_version: X402_VERSION,
        resource,
        accepted: requirements.clone(),
        payload: Signed::sign(auth, key)?,
    };
    Ok(encode_header(&payload))
}
