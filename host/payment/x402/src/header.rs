//! Base64 JSON header values, and which payment header a request carries.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{PaymentPayload, PaymentPayloadV1, PaymentRequirements, headers};

/// Why a header value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not base64.
    #[error("not base64: {0}")]
    Base64(String),
    /// Base64, but not JSON of the expected shape.
    #[error("not the expected JSON: {0}")]
    Shape(String),
    /// A version this side does not speak.
    #[error("x402Version {0} is not supported (1 or 2)")]
    Version(u32),
}

/// Base64 (standard, padded) of the JSON form of `value`: a header value.
pub fn encode_header<T: Serialize>(value: &T) -> String {
    STANDARD.encode(serde_json::to_vec(value).expect("x402 documents serialise to JSON"))
}

/// Parses a base64 JSON header value.
pub fn decode_header<T: DeserializeOwned>(header: &str) -> Result<T, HeaderError> {
    let bytes = STANDARD
        .decode(header.trim())
        .map_err(|e| HeaderError::Base64(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| HeaderError::Shape(e.to_string()))
}

/// Decodes base64 in any of its dialects (standard or URL-safe alphabet, padded or not).
pub fn decode_any_base64(text: &str) -> Result<Vec<u8>, HeaderError> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .map_err(|e| HeaderError::Base64(e.to_string()))
}

/// The d402 direct-transfer proof of `Authorization: Payment <base64 JSON>`: the buyer paid
/// first (e.g. a Solana USDC transfer) and names the transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferProof {
    /// The requirement's scheme (`d402-solana-transfer`).
    pub scheme: String,
    /// Its network.
    pub network: String,
    /// The transaction that paid (a signature).
    pub transaction: String,
    /// The paying account.
    pub payer: String,
}

/// The payment header a request carried: v2 `PAYMENT-SIGNATURE`, v1 `X-PAYMENT`, or
/// `Authorization: Payment` with a direct-transfer proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentHeader<'a> {
    /// `PAYMENT-SIGNATURE`.
    V2(&'a str),
    /// `X-PAYMENT`.
    V1(&'a str),
    /// `Authorization: Payment <credential>` (the credential only).
    Authorization(&'a str),
}

impl<'a> PaymentHeader<'a> {
    /// Finds the payment header with `get` (a header lookup by lower-case name): v2, then
    /// v1, then an `Authorization` header of the `Payment` scheme.
    pub fn find(get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        get(headers::PAYMENT_SIGNATURE)
            .map(Self::V2)
            .or_else(|| get(headers::X_PAYMENT).map(Self::V1))
            .or_else(|| {
                let value = get("authorization")?;
                let (scheme, credential) = value.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("payment")
                    .then(|| Self::Authorization(credential.trim()))
            })
    }

    /// The name of the header the answer's settlement goes in (`PAYMENT-RESPONSE` or
    /// `X-PAYMENT-RESPONSE`).
    pub fn response_header(self) -> &'static str {
        match self {
            Self::V2(_) | Self::Authorization(_) => headers::PAYMENT_RESPONSE,
            Self::V1(_) => headers::X_PAYMENT_RESPONSE,
        }
    }

    /// Decodes the payment into the v2 form. A v1 payment or a transfer proof names only
    /// its scheme and network; `offered` (the server's requirements, asked for only then)
    /// supplies the rest, and one for a method not offered is refused.
    pub fn decode(
        self,
        offered: impl FnOnce() -> Vec<PaymentRequirements>,
    ) -> Result<PaymentPayload, HeaderError> {
        match self {
            Self::V2(text) => {
                let payload: PaymentPayload = decode_header(text)?;
                if payload.x402_version != 2 {
                    return Err(HeaderError::Version(payload.x402_version));
                }
                Ok(payload)
            }
            Self::V1(text) => {
                let v1: PaymentPayloadV1 = decode_header(text)?;
                if v1.x402_version != 1 {
                    return Err(HeaderError::Version(v1.x402_version));
                }
                Ok(PaymentPayload {
                    x402_version: 1,
                    resource: None,
                    accepted: offered_for(offered(), &v1.scheme, &v1.network)?,
                    payload: v1.payload,
                    extensions: Map::<String, Value>::new(),
                })
            }
            Self::Authorization(text) => {
                let proof: TransferProof = serde_json::from_slice(&decode_any_base64(text)?)
                    .map_err(|e| HeaderError::Shape(e.to_string()))?;
                Ok(PaymentPayload {
                    x402_version: crate::X402_VERSION,
                    resource: None,
                    accepted: offered_for(offered(), &proof.scheme, &proof.network)?,
                    payload: serde_json::to_value(&proof).expect("a proof serializes"),
                    extensions: Map::<String, Value>::new(),
                })
            }
        }
    }
}

/// The offered requirement of `scheme` on `network`.
fn offered_for(
    offered: Vec<PaymentRequirements>,
    scheme: &str,
    network: &str,
) -> Result<PaymentRequirements, HeaderError> {
    offered
        .into_iter()
        .find(|r| r.scheme == scheme && r.network == network)
        .ok_or_else(|| {
            HeaderError::Shape(format!(
                "no offered requirement for scheme {scheme:?} on network {network:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn requirements(network: &str) -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: network.into(),
            amount: "10000".into(),
            asset: "USD".into(),
            pay_to: "payee".into(),
            max_timeout_seconds: 60,
            extra: Value::Null,
        }
    }

    #[test]
    fn v2_round_trips_and_wins_over_v1() {
        let payload = PaymentPayload {
            x402_version: 2,
            resource: None,
            accepted: requirements("d402:simulated"),
            payload: json!({"signature": "s"}),
            extensions: Map::new(),
        };
        let v2 = encode_header(&payload);
        let v1 = "not even base64!";
        let found = PaymentHeader::find(|name| match name {
            headers::PAYMENT_SIGNATURE => Some(v2.as_str()),
            headers::X_PAYMENT => Some(v1),
            _ => None,
        })
        .unwrap();
        assert_eq!(found.response_header(), headers::PAYMENT_RESPONSE);
        assert_eq!(found.decode(Vec::new).unwrap(), payload);
    }

    #[test]
    fn v1_takes_the_offered_requirements_of_its_method() {
        let v1 = encode_header(&json!({"x402Version": 1, "scheme": "exact",
            "network": "eip155:8453", "payload": {"a": 1}}));
        let offered = [requirements("d402:simulated"), requirements("eip155:8453")];
        let decoded = PaymentHeader::V1(&v1).decode(|| offered.to_vec()).unwrap();
        assert_eq!(decoded.accepted, offered[1]);
        assert_eq!(decoded.payload, json!({"a": 1}));
        assert_eq!(
            PaymentHeader::V1(&v1).response_header(),
            headers::X_PAYMENT_RESPONSE
        );
        let unoffered = PaymentHeader::V1(&v1)
            .decode(|| offered[..1].to_vec())
            .unwrap_err();
        assert!(matches!(unoffered, HeaderError::Shape(m) if m.contains("eip155:8453")));
    }

    #[test]
    fn malformed_and_wrong_versions_are_refused() {
        assert!(matches!(
            PaymentHeader::V2("%%%").decode(Vec::new),
            Err(HeaderError::Base64(_))
        ));
        let not_payload = encode_header(&json!({"hello": 1}));
        assert!(matches!(
            PaymentHeader::V2(&not_payload).decode(Vec::new),
            Err(HeaderError::Shape(_))
        ));
        let v3 = encode_header(&json!({"x402Version": 3, "accepted": requirements("n"),
            "payload": {}}));
        assert_eq!(
            PaymentHeader::V2(&v3).decode(Vec::new),
            Err(HeaderError::Version(3))
        );
    }

    #[test]
    fn a_transfer_proof_in_authorization_payment_takes_its_offered_requirement() {
        let proof = json!({"scheme": "d402-solana-transfer", "network": "solana:localnet",
            "transaction": "5sig", "payer": "Payer111"});
        let offered = vec![
            requirements("eip155:8453"),
            PaymentRequirements {
                scheme: "d402-solana-transfer".into(),
                ..requirements("solana:localnet")
            },
        ];
        let bytes = serde_json::to_vec(&proof).unwrap();
        use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
        for credential in [
            STANDARD.encode(&bytes),
            URL_SAFE.encode(&bytes),
            URL_SAFE_NO_PAD.encode(&bytes),
        ] {
            let value = format!("Payment {credential}");
            let header =
                PaymentHeader::find(|name| (name == "authorization").then_some(value.as_str()))
                    .expect("found");
            let decoded = header.decode(|| offered.clone()).unwrap();
            assert_eq!(decoded.accepted.network, "solana:localnet");
            assert_eq!(decoded.payload["transaction"], "5sig");
            assert_eq!(header.response_header(), headers::PAYMENT_RESPONSE);
        }
        let bearer = PaymentHeader::find(|name| (name == "authorization").then_some("Bearer abc"));
        assert_eq!(bearer, None, "other authorization schemes are not payments");
        let garbage = PaymentHeader::Authorization("!!!").decode(|| offered.clone());
        assert!(matches!(garbage, Err(HeaderError::Base64(_))));
        let unoffered = json!({"scheme": "d402-solana-transfer", "network": "solana:devnet",
            "transaction": "5sig", "payer": "P"});
        let unoffered = STANDARD.encode(serde_json::to_vec(&unoffered).unwrap());
        assert!(matches!(
            PaymentHeader::Authorization(&unoffered).decode(|| offered.clone()),
            Err(HeaderError::Shape(_))
        ));
    }
}
