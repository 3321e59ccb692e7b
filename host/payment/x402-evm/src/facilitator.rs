//! Who submits an accepted payment's transfer: the built-in facilitator (the gateway's own
//! gas key, [`GasSigner`]) or a remote x402 facilitator speaking the standard wire format
//! (`GET /supported`, `POST /verify`, `POST /settle`).

use std::sync::Arc;

use alloy::primitives::{Address, B256};
use d402_payment::ReadinessCheck;
use d402_payment::x402::{PaymentPayload, X402_VERSION};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use crate::chain::{Chain, ChainError, GasSigner};
use crate::eip3009::ExactEvmPayload;

/// Settles payments for the rail.
#[derive(Clone)]
pub enum Facilitator {
    /// The gateway's own gas key submits `transferWithAuthorization`.
    Builtin(Arc<GasSigner>),
    /// A remote x402 facilitator at this base URL.
    Remote(RemoteFacilitator),
}

/// A remote x402 facilitator.
#[derive(Clone)]
pub struct RemoteFacilitator {
    base: Url,
    http: reqwest::Client,
}

/// A facilitator's `/settle` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettleAnswer {
    success: bool,
    #[serde(default)]
    error_reason: Option<String>,
    #[serde(default)]
    transaction: String,
}

/// A facilitator's `/verify` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyAnswer {
    is_valid: bool,
    #[serde(default)]
    invalid_reason: Option<String>,
}

/// A facilitator's `/supported` answer.
#[derive(Debug, Deserialize)]
struct Supported {
    kinds: Vec<SupportedKind>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SupportedKind {
    x402_version: u32,
    scheme: String,
    network: String,
}

impl RemoteFacilitator {
    /// The facilitator at `base` (e.g. `https://facilitator.example/`).
    pub fn new(base: Url) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("the TLS provider is installed");
        Self { base, http }
    }

    fn url(&self, path: &str) -> Result<Url, ChainError> {
        self.base
            .join(path)
            .map_err(|e| ChainError(format!("facilitator URL: {e}")))
    }

    /// POSTs `payment` to the facilitator's `step` (`verify` or `settle`) in the standard
    /// request shape and reads its answer.
    async fn call<A: serde::de::DeserializeOwned>(
        &self,
        step: &str,
        payment: &PaymentPayload,
    ) -> Result<A, ChainError> {
        let url = self.url(step)?;
        let request = json!({
            "x402Version": X402_VERSION,
            "paymentPayload": payment,
            "paymentRequirements": payment.accepted,
        });
        let failed = |e: reqwest::Error| ChainError(format!("facilitator {url}: {e}"));
        self.http
            .post(url.clone())
            .json(&request)
            .send()
            .await
            .map_err(failed)?
            .error_for_status()
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)
    }

    /// The facilitator's own verdict on `payment`: `Ok(Err(reason))` when it refuses it.
    async fn verify(&self, payment: &PaymentPayload) -> Result<Result<(), String>, ChainError> {
        let answer: VerifyAnswer = self.call("verify", payment).await?;
        Ok(if answer.is_valid {
            Ok(())
        } else {
            Err(answer.invalid_reason.unwrap_or_else(|| "refused".into()))
        })
    }

    async fn settle(&self, payment: &PaymentPayload) -> Result<B256, ChainError> {
        let answer: SettleAnswer = self.call("settle", payment).await?;
        if !answer.success {
            return Err(ChainError(format!(
                "facilitator refused to settle: {}",
                answer.error_reason.unwrap_or_default()
            )));
        }
        answer.transaction.parse().map_err(|_| {
            ChainError(format!(
                "facilitator answered transaction {:?}",
                answer.transaction
            ))
        })
    }

    async fn supports(&self, network: &str) -> ReadinessCheck {
        let check = |ok: bool, detail: String| ReadinessCheck::new("facilitator", ok, detail);
        let Ok(url) = self.url("supported") else {
            return check(false, "bad facilitator URL".into());
        };
        let answer = async {
            self.http
                .get(url.clone())
                .send()
                .await?
                .json::<Supported>()
                .await
        };
        match answer.await {
            Ok(supported) => {
                let ok = supported.kinds.iter().any(|k| {
                    k.x402_version == X402_VERSION && k.scheme == "exact" && k.network == network
                });
                check(ok, format!("{url} supports exact on {network}: {ok}"))
            }
            Err(e) => check(false, format!("{url}: {e}")),
        }
    }
}

impl Facilitator {
    /// Submits the transfer of `payment` (whose payload is `evm`); returns its transaction
    /// hash once submitted (not yet known to be mined).
    pub(crate) async fn submit(
        &self,
        payment: &PaymentPayload,
        evm: &ExactEvmPayload,
    ) -> Result<B256, ChainError> {
        match self {
            Self::Builtin(signer) => signer.submit(evm).await,
            Self::Remote(remote) => remote.settle(payment).await,
        }
    }

    /// A remote facilitator's verdict on `payment` before any work (`Ok(Ok(()))` for the
    /// built-in one, whose checks are the rail's own).
    pub(crate) async fn verify(
        &self,
        payment: &PaymentPayload,
    ) -> Result<Result<(), String>, ChainError> {
        match self {
            Self::Builtin(_) => Ok(Ok(())),
            Self::Remote(remote) => remote.verify(payment).await,
        }
    }

    /// The account `eth_call` simulates the transfer from (anyone may submit it).
    pub(crate) fn sender(&self, pay_to: Address) -> Address {
        match self {
            Self::Builtin(signer) => signer.address(),
            Self::Remote(_) => pay_to,
        }
    }

    /// Whether the facilitator can settle on `network` now.
    pub(crate) async fn readiness(&self, chain: &Chain, network: &str) -> ReadinessCheck {
        match self {
            Self::Builtin(signer) => chain.gas_check("gasSigner", signer.address()).await,
            Self::Remote(remote) => remote.supports(network).await,
        }
    }
}
