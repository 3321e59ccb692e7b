//! The `Payment` HTTP authentication scheme of the Machine Payments Protocol (MPP, an IETF
//! draft) on the server's side:
//!
//! - [`ChallengeIssuer`] issues `WWW-Authenticate: Payment id=…, realm=…, method=…,
//!   intent=…, request=…, expires=…` challenges whose `id` is an HMAC over the other
//!   parameters, so the server remembers nothing and recognizes its own challenges;
//! - [`Credential`] is what a client sends back in `Authorization: Payment <base64url
//!   JSON>`: the challenge it answers, an optional source and the payment payload;
//! - [`receipt`] makes the `Payment-Receipt` header, [`Problem`] the RFC 9457 error
//!   documents with the draft's problem types.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use d402_protocol::Timestamp;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

/// The `WWW-Authenticate` / `Authorization` scheme name.
pub const SCHEME: &str = "Payment";
/// The success header.
pub const RECEIPT_HEADER: &str = "payment-receipt";

/// A challenge: what to pay and the parameters the client echoes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// HMAC of the other parameters (base64url).
    pub id: String,
    /// The protection space (the gateway's base URL).
    pub realm: String,
    /// The payment method (`solana`).
    pub method: String,
    /// The intent (`charge`).
    pub intent: String,
    /// base64url (no padding) of the RFC 8785 JSON of the method's request.
    pub request: String,
    /// RFC 3339 time after which the challenge is void.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl Challenge {
    /// The `WWW-Authenticate` header value.
    pub fn header(&self) -> String {
        let mut value = format!(
            "{SCHEME} id=\"{}\", realm=\"{}\", method=\"{}\", intent=\"{}\", request=\"{}\"",
            self.id, self.realm, self.method, self.intent, self.request
        );
        if let Some(expires) = &self.expires {
            value.push_str(&format!(", expires=\"{expires}\""));
        }
        value
    }

    /// The method's request, decoded.
    pub fn request_json(&self) -> Result<Value, MppError> {
        let bytes = decode_base64(&self.request)?;
        serde_json::from_slice(&bytes).map_err(|e| MppError::Malformed(e.to_string()))
    }
}

/// What a client sends in `Authorization: Payment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The challenge answered, echoed.
    pub challenge: Challenge,
    /// Who pays (e.g. a DID), when the client says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The method's payment payload (Solana push mode: `{type: "signature", signature}`).
    pub payload: Value,
}

impl Credential {
    /// The credential in an `Authorization: Payment` value's token (base64url or base64,
    /// padded or not), if it is one (a JSON object with a `challenge`).
    pub fn parse(token: &str) -> Result<Self, MppError> {
        let bytes = decode_base64(token)?;
        serde_json::from_slice(&bytes).map_err(|e| MppError::Malformed(e.to_string()))
    }

    /// Whether `token` looks like an MPP credential (decodes to JSON with a `challenge`).
    pub fn is_credential(token: &str) -> bool {
        decode_base64(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .is_some_and(|v| v.get("challenge").is_some())
    }

    /// The `Authorization` header value carrying this credential.
    pub fn header(&self) -> String {
        let json = serde_json::to_vec(self).expect("a credential serializes");
        format!("{SCHEME} {}", URL_SAFE_NO_PAD.encode(json))
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, MppError> {
    d402_x402::decode_any_base64(text).map_err(|e| MppError::Malformed(e.to_string()))
}

/// Why a credential is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MppError {
    /// Not a credential of the expected shape.
    #[error("malformed credential: {0}")]
    Malformed(String),
    /// The challenge was not issued by this server (or was altered).
    #[error("the challenge was not issued by this server")]
    InvalidChallenge,
    /// The challenge expired.
    #[error("the challenge expired at {0}")]
    Expired(String),
}

/// Issues and recognizes challenges, statelessly.
pub struct ChallengeIssuer {
    secret: Vec<u8>,
    realm: String,
}

impl ChallengeIssuer {
    /// Challenges for `realm`, bound with `secret`.
    pub fn new(secret: Vec<u8>, realm: String) -> Self {
        Self { secret, realm }
    }

    fn id(&self, method: &str, intent: &str, request: &str, expires: Option<&str>) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        for part in [
            self.realm.as_str(),
            method,
            intent,
            request,
            expires.unwrap_or(""),
            "",
            "",
        ] {
            mac.update(part.as_bytes());
            mac.update(b"|");
        }
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A challenge to pay `request` with `method`/`intent`, void after `expires` (unix
    /// seconds).
    pub fn issue(&self, method: &str, intent: &str, request: &Value, expires: u64) -> Challenge {
        let canonical =
            d402_protocol::canonical::to_vec(request).expect("a method request is canonical JSON");
        let request = URL_SAFE_NO_PAD.encode(canonical);
        let expires = rfc3339(expires);
        Challenge {
            id: self.id(method, intent, &request, Some(&expires)),
            realm: self.realm.clone(),
            method: method.into(),
            intent: intent.into(),
            request,
            expires: Some(expires),
        }
    }

    /// Checks that `challenge` is one this issuer made and that it is not expired at `now`
    /// (unix seconds).
    pub fn recognize(&self, challenge: &Challenge, now: u64) -> Result<(), MppError> {
        let id = self.id(
            &challenge.method,
            &challenge.intent,
            &challenge.request,
            challenge.expires.as_deref(),
        );
        if challenge.realm != self.realm || !constant_eq(id.as_bytes(), challenge.id.as_bytes()) {
            return Err(MppError::InvalidChallenge);
        }
        if let Some(expires) = &challenge.expires
            && parse_rfc3339(expires).is_none_or(|at| at <= now)
        {
            return Err(MppError::Expired(expires.clone()));
        }
        Ok(())
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Payment-Receipt` header value: base64url of `{status: "success", method,
/// timestamp, reference}`.
pub fn receipt(method: &str, reference: &str, now: u64) -> String {
    let body = json!({"status": "success", "method": method, "timestamp": rfc3339(now), "reference": reference});
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).expect("a receipt serializes"))
}

/// The draft's problem types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// No (acceptable) payment: pay the challenge.
    PaymentRequired,
    /// Paid less than the price.
    PaymentInsufficient,
    /// The challenge or the payment is too old.
    PaymentExpired,
    /// The payment does not verify.
    VerificationFailed,
    /// The method is not accepted.
    MethodUnsupported,
    /// The credential cannot be read.
    MalformedCredential,
    /// The challenge was not issued here.
    InvalidChallenge,
}

impl Problem {
    /// The problem type URI.
    pub fn type_uri(self) -> &'static str {
        match self {
            Self::PaymentRequired => "https://paymentauth.org/problems/payment-required",
            Self::PaymentInsufficient => "https://paymentauth.org/problems/payment-insufficient",
            Self::PaymentExpired => "https://paymentauth.org/problems/payment-expired",
            Self::VerificationFailed => "https://paymentauth.org/problems/verification-failed",
            Self::MethodUnsupported => "https://paymentauth.org/problems/method-unsupported",
            Self::MalformedCredential => "https://paymentauth.org/problems/malformed-credential",
            Self::InvalidChallenge => "https://paymentauth.org/problems/invalid-challenge",
        }
    }

    /// The RFC 9457 document for this problem with HTTP `status` and `detail`.
    pub fn document(self, status: u16, detail: &str) -> Value {
        let title = self
            .type_uri()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .replace('-', " ");
        json!({"type": self.type_uri(), "title": title, "status": status, "detail": detail})
    }
}

/// `unix` seconds as RFC 3339 UTC.
fn rfc3339(unix: u64) -> String {
    Timestamp::from_unix_millis(unix * 1000).to_string()
}

/// Unix seconds of an RFC 3339 time.
fn parse_rfc3339(text: &str) -> Option<u64> {
    text.parse::<Timestamp>()
        .ok()
        .map(|t| t.unix_millis() / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> ChallengeIssuer {
        ChallengeIssuer::new(b"secret".to_vec(), "http://127.0.0.1:8402".into())
    }

    #[test]
    fn challenges_are_recognized_until_they_expire_and_any_change_is_refused() {
        let request = json!({"amount": "100", "currency": "mint", "recipient": "me"});
        let challenge = issuer().issue("solana", "charge", &request, 2_000);
        assert_eq!(challenge.request_json().unwrap(), request);
        assert_eq!(issuer().recognize(&challenge, 1_999), Ok(()));
        assert!(matches!(
            issuer().recognize(&challenge, 2_000),
            Err(MppError::Expired(_))
        ));
        let other = issuer().issue("solana", "charge", &json!({"amount": "1"}), 2_000);
        let changes: [Challenge; 4] = [
            Challenge {
                request: other.request.clone(),
                ..challenge.clone()
            },
            Challenge {
                method: "tempo".into(),
                ..challenge.clone()
            },
            Challenge {
                expires: Some(rfc3339(9_999)),
                ..challenge.clone()
            },
            Challenge {
                realm: "elsewhere".into(),
                ..challenge.clone()
            },
        ];
        for changed in changes {
            assert_eq!(
                issuer().recognize(&changed, 1_000),
                Err(MppError::InvalidChallenge)
            );
        }
        let stranger = ChallengeIssuer::new(b"other".to_vec(), "http://127.0.0.1:8402".into());
        assert_eq!(
            stranger.recognize(&challenge, 1_000),
            Err(MppError::InvalidChallenge)
        );
    }

    #[test]
    fn credentials_round_trip_through_the_authorization_header() {
        let challenge = issuer().issue("solana", "charge", &json!({"amount": "100"}), 2_000);
        let credential = Credential {
            challenge,
            source: None,
            payload: json!({"type": "signature", "signature": "5abc"}),
        };
        let header = credential.header();
        let token = header.strip_prefix("Payment ").unwrap();
        assert!(Credential::is_credential(token));
        assert_eq!(Credential::parse(token).unwrap(), credential);
        assert!(
            !Credential::is_credential("e30"),
            "{{}} is not a credential"
        );
        assert!(matches!(
            Credential::parse("!!"),
            Err(MppError::Malformed(_))
        ));
        let www = credential.challenge.header();
        assert!(
            www.starts_with("Payment id=\"") && www.contains("method=\"solana\""),
            "{www}"
        );
    }
}
