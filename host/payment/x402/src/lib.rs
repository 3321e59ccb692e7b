//! The x402 wire format, as a gateway and a buyer exchange it over HTTP.
//!
//! - Challenge: `402` with `PAYMENT-REQUIRED: base64(JSON)` ([`PaymentRequired`]).
//! - Retry: `PAYMENT-SIGNATURE: base64(JSON)` ([`PaymentPayload`]), or the v1 `X-PAYMENT`
//!   header ([`PaymentPayloadV1`]).
//! - Result: `PAYMENT-RESPONSE` (v1: `X-PAYMENT-RESPONSE`) ([`SettlementResponse`]).
//!
//! The scheme payload (what the buyer signed) is a type parameter: each rail reads its own
//! shape out of the generic [`serde_json::Value`] form. The optional `payment-identifier`
//! extension (an idempotency key chosen by the client) is in [`payment_identifier`].

mod header;
pub mod payment_identifier;

pub use header::{
    HeaderError, PaymentHeader, TransferProof, decode_any_base64, decode_header, encode_header,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The x402 protocol version this crate speaks by default.
pub const X402_VERSION: u32 = 2;

/// HTTP header names (lower case, as `http` stores them).
pub mod headers {
    /// v2 challenge header (base64 JSON [`crate::PaymentRequired`]).
    pub const PAYMENT_REQUIRED: &str = "payment-required";
    /// v2 payment header (base64 JSON [`crate::PaymentPayload`]).
    pub const PAYMENT_SIGNATURE: &str = "payment-signature";
    /// v2 result header (base64 JSON [`crate::SettlementResponse`]).
    pub const PAYMENT_RESPONSE: &str = "payment-response";
    /// v1 payment header (base64 JSON [`crate::PaymentPayloadV1`]).
    pub const X_PAYMENT: &str = "x-payment";
    /// v1 result header.
    pub const X_PAYMENT_RESPONSE: &str = "x-payment-response";
}

/// The resource a challenge is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// Payment scheme, e.g. `exact`.
    pub scheme: String,
    /// Network: CAIP-2 (`eip155:8453`) or a d402 name (`d402:simulated`).
    pub network: String,
    /// Atomic units as a decimal string.
    #[cfg_attr(feature = "schema", schema(pattern = "^[0-9]+$"))]
    pub amount: String,
    /// Asset identifier (token address, mint, or a ledger name).
    pub asset: String,
    /// Receiving account.
    pub pay_to: String,
    /// How long an authorization may stay valid.
    pub max_timeout_seconds: u64,
    /// Scheme-specific details.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub extra: Value,
}

/// The 402 challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// 2.
    pub x402_version: u32,
    /// Why a previous payment was refused, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is paid for.
    pub resource: Resource,
    /// Accepted ways to pay, one per enabled rail.
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions the server declares (e.g. `payment-identifier`), by name.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub extensions: Map<String, Value>,
}

/// The `PAYMENT-SIGNATURE` document, generic over the scheme payload `P`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload<P = Value> {
    /// 2.
    pub x402_version: u32,
    /// The resource paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// The requirements chosen from the challenge.
    pub accepted: PaymentRequirements,
    /// What the buyer signed, in the scheme's shape.
    pub payload: P,
    /// Extensions the client fills in (e.g. `payment-identifier`), by name.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extensions: Map<String, Value>,
}

impl<P: Serialize> PaymentPayload<P> {
    /// The same document with its scheme payload as generic JSON.
    pub fn erased(self) -> PaymentPayload {
        PaymentPayload {
            x402_version: self.x402_version,
            resource: self.resource,
            accepted: self.accepted,
            payload: serde_json::to_value(self.payload).expect("payloads serialise to JSON"),
            extensions: self.extensions,
        }
    }
}

impl PaymentPayload<Value> {
    /// Reads the scheme payload as `P`.
    pub fn typed<P: serde::de::DeserializeOwned>(&self) -> Result<P, HeaderError> {
        serde_path_to_error::deserialize(self.payload.clone())
            .map_err(|e| HeaderError::Shape(format!("payload.{}: {}", e.path(), e.inner())))
    }
}

/// The v1 `X-PAYMENT` document: scheme and network at the top, no chosen requirements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayloadV1<P = Value> {
    /// 1.
    pub x402_version: u32,
    /// Payment scheme.
    pub scheme: String,
    /// Network.
    pub network: String,
    /// What the buyer signed.
    pub payload: P,
}

/// The `PAYMENT-RESPONSE` document: how the payment was settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", schema(as = PaymentResponse))]
#[serde(rename_all = "camelCase")]
pub struct SettlementResponse {
    /// Whether the payment settled.
    pub success: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// Paying account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Rail transaction reference (a transaction hash on chain).
    pub transaction: String,
    /// Network.
    pub network: String,
    /// Atomic units charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}
