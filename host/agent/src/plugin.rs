//! Signer plugins: an external program holds the key and signs, speaking a small versioned
//! JSON protocol — one request on its stdin, one reply on its stdout, then it exits.
//!
//! ```text
//! → {"version": 1, "kind": "address"}
//! ← {"version": 1, "address": "<base58 ed25519 public key>"}
//!
//! → {"version": 1, "kind": "sign", "scheme": "ed25519",
//!    "payment": {"gateway", "amount", "asset", "network", "payTo", "requestHash"},
//!    "message": "<base64 of the exact bytes to sign>"}
//! ← {"version": 1, "signature": "<base58 ed25519 signature>"}
//! ```
//!
//! The agent asks for the address once (`init --signer plugin:PROGRAM`) and pins it; every
//! signature is checked against that address before it is used. A plugin that answers
//! something else, signs with another key, fails or takes longer than
//! [`PLUGIN_TIMEOUT`] is refused, and nothing is sent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine as _;
use d402_payment::x402::{PaymentPayload, PaymentRequirements};
use d402_payment::{PayError, Payer, Purchase, request_binding};
use d402_protocol::{PublicKey, Signature, Signed, SignedObject, signing_message};
use d402_rail_simulated::SimulatedAuthorization;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The protocol version spoken.
pub const PROTOCOL_VERSION: u64 = 1;
/// Longest a plugin may take to answer.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest reply read from a plugin.
const MAX_REPLY_BYTES: u64 = 64 * 1024;

/// A signer plugin program and the address pinned for it.
pub struct PluginPayer {
    program: PathBuf,
    address: PublicKey,
}

impl PluginPayer {
    /// Signs through `program`, whose signatures must verify under `address`.
    pub fn new(program: PathBuf, address: PublicKey) -> Self {
        Self { program, address }
    }
}

/// Asks `program` for its address (at `init`).
pub async fn address(program: &Path) -> anyhow::Result<PublicKey> {
    let reply = call(
        program,
        &json!({"version": PROTOCOL_VERSION, "kind": "address"}),
    )
    .await?;
    reply["address"]
        .as_str()
        .context("the plugin's reply has no \"address\"")?
        .parse()
        .context("the plugin's address is not a base58 ed25519 public key")
}

/// Runs `program` with `request` on its stdin and reads one JSON reply of the protocol's
/// version from its stdout, within [`PLUGIN_TIMEOUT`].
async fn call(program: &Path, request: &Value) -> anyhow::Result<Value> {
    let mut child = tokio::process::Command::new(program)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the signer plugin {}", program.display()))?;
    let exchange = async {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(&serde_json::to_vec(request)?).await?;
        stdin.write_all(b"\n").await?;
        drop(stdin);
        let mut reply = Vec::new();
        child
            .stdout
            .take()
            .expect("stdout is piped")
            .take(MAX_REPLY_BYTES)
            .read_to_end(&mut reply)
            .await?;
        let status = child.wait().await?;
        anyhow::Ok((status, reply))
    };
    let (status, reply) = tokio::time::timeout(PLUGIN_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the signer plugin {} did not answer within {PLUGIN_TIMEOUT:?}",
                program.display()
            )
        })??;
    anyhow::ensure!(
        status.success(),
        "the signer plugin {} failed ({status})",
        program.display()
    );
    let reply: Value = serde_json::from_slice(&reply).with_context(|| {
        format!(
            "the signer plugin {} did not answer JSON",
            program.display()
        )
    })?;
    anyhow::ensure!(
        reply["version"] == PROTOCOL_VERSION,
        "the signer plugin speaks version {}, not {PROTOCOL_VERSION}",
        reply["version"]
    );
    Ok(reply)
}

#[async_trait]
impl Payer for PluginPayer {
    fn can_pay(&self, requirements: &PaymentRequirements) -> bool {
        d402_rail_simulated::is_simulated(requirements)
    }

    async fn pay(
        &self,
        requirements: &PaymentRequirements,
        purchase: &Purchase<'_>,
    ) -> Result<PaymentPayload, PayError> {
        let refused = |e: anyhow::Error| PayError::Signing(format!("{e:#}"));
        let authorization = d402_rail_simulated::authorization(requirements, purchase);
        let message = signing_message(SimulatedAuthorization::OBJECT_TYPE, &authorization)
            .map_err(|e| PayError::Signing(e.to_string()))?;
        let request = json!({
            "version": PROTOCOL_VERSION,
            "kind": "sign",
            "scheme": "ed25519",
            "payment": {
                "gateway": purchase.resource.map(|r| r.url.as_str()),
                "amount": requirements.amount,
                "asset": requirements.asset,
                "network": requirements.network,
                "payTo": requirements.pay_to,
                "requestHash": request_binding(purchase.body),
            },
            "message": base64::engine::general_purpose::STANDARD.encode(&message),
        });
        let reply = call(&self.program, &request).await.map_err(refused)?;
        let signature: Signature = reply["signature"]
            .as_str()
            .context("the plugin's reply has no \"signature\"")
            .and_then(|s| {
                s.parse()
                    .context("the plugin's signature is not base58 ed25519")
            })
            .map_err(refused)?;
        self.address.verify(&message, &signature).map_err(|_| {
            PayError::Signing(format!(
                "the signer plugin's signature does not verify under the pinned address {}; nothing was sent",
                self.address
            ))
        })?;
        let signed = Signed {
            object_type: SimulatedAuthorization::OBJECT_TYPE.to_string(),
            payload: authorization,
            signer: self.address,
            signature,
        };
        Ok(d402_rail_simulated::payment(requirements, purchase, signed).erased())
    }
}
