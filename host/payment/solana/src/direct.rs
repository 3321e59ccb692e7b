//! `solana-direct`: the buyer pays first — a USDC `TransferChecked` to the gateway's token
//! account with a `d402:` memo naming the request — and proves it with the transaction's
//! signature (`Authorization: Payment`). The gateway reads the transaction over JSON-RPC
//! before any work: confirmed, no error, the right mint and recipient, at least the price,
//! signed by the payer, the memo of this request, landed within the payment window; the
//! signature is consumed once, atomically with the task. A failed task is refunded by a
//! transfer back from the gateway's wallet, found again by its memo after a crash.

use std::time::Duration;

use async_trait::async_trait;
use d402_payment::x402::{PaymentPayload, PaymentRequirements, TransferProof};
use d402_payment::{
    Account, Authorization, Completion, Expectation, PaymentError, PaymentKey, PaymentRail,
    RailError, RailId, ReadinessCheck,
};
use d402_protocol::{Amount, Payout, Refund};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use solana_address::Address;
use solana_keypair::Keypair;
use solana_signature::Signature;
use solana_signer::Signer;

use crate::network::SolanaNetwork;
use crate::rpc::{RpcError, SolanaRpc};
use crate::token::associated_token_address;
use crate::transfer::{self, TransactionContent, TransferOrder};

/// The x402 scheme name of a direct transfer.
pub const SCHEME: &str = "d402-solana-transfer";
/// The memo prefix naming a request (`d402:` + the request binding).
pub const MEMO_PREFIX: &str = "d402:";
/// The legacy memo prefix, still accepted.
pub const LEGACY_MEMO_PREFIX: &str = "dnc:";
/// The memo prefix of a refund (`d402-refund:` + the payment's signature).
pub const REFUND_MEMO_PREFIX: &str = "d402-refund:";
/// Seconds of clock difference tolerated on a payment's block time.
const CLOCK_MARGIN_SECS: i64 = 60;

/// What the rail is configured with.
#[derive(Debug, Clone)]
pub struct DirectConfig {
    /// The cluster.
    pub network: SolanaNetwork,
    /// The token prices are paid in (USDC by default).
    pub mint: Address,
    /// Its decimals.
    pub decimals: u8,
    /// The longest wait for a refund to be confirmed before it is retried later.
    pub confirm_timeout: Duration,
}

/// What the rail keeps with the task: the payment's signature and who paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Paid {
    signature: String,
    payer: String,
}

/// The Solana direct USDC rail.
pub struct SolanaDirectRail {
    config: DirectConfig,
    network: String,
    asset: String,
    rpc: SolanaRpc,
    wallet: Keypair,
    pay_to: Account,
    token_account: Address,
}

impl SolanaDirectRail {
    /// The rail on the cluster behind `rpc_url`, paid to `wallet` (the gateway's node key),
    /// which also sends refunds (nothing is contacted yet).
    pub fn new(config: DirectConfig, rpc_url: url::Url, wallet: Keypair) -> Self {
        let owner = wallet.pubkey();
        Self {
            network: config.network.to_string(),
            asset: config.mint.to_string(),
            rpc: SolanaRpc::new(rpc_url),
            pay_to: Account::Ed25519(owner.to_bytes()),
            token_account: associated_token_address(&owner, &config.mint),
            wallet,
            config,
        }
    }

    /// The token account payments must reach.
    pub fn token_account(&self) -> Address {
        self.token_account
    }

    /// The proof `payment` carries.
    fn proof(payment: &PaymentPayload) -> Result<TransferProof, PaymentError> {
        payment
            .typed()
            .map_err(|e| PaymentError::Malformed(e.to_string()))
    }

    /// The signature a payment names and its payer (none: the transfer's signer, as an MPP
    /// credential without a source leaves it).
    fn read(&self, payment: &PaymentPayload) -> Result<(Signature, Option<Address>), PaymentError> {
        if payment.accepted.scheme != SCHEME || payment.accepted.network != self.network {
            return Err(PaymentError::UnsupportedNetwork(
                payment.accepted.network.clone(),
            ));
        }
        let proof = Self::proof(payment)?;
        let signature = proof
            .transaction
            .parse()
            .map_err(|_| PaymentError::Malformed("transaction is not a signature".into()))?;
        let payer = match proof.payer.as_str() {
            "" => None,
            text => Some(
                text.parse()
                    .map_err(|_| PaymentError::Malformed("payer is not a Solana address".into()))?,
            ),
        };
        Ok((signature, payer))
    }

    fn key_of(&self, signature: &Signature) -> PaymentKey {
        PaymentKey(format!("{}:{signature}", self.network))
    }

    /// The memo of the refund of the payment `signature`.
    fn refund_memo(signature: &str) -> String {
        format!("{REFUND_MEMO_PREFIX}{signature}")
    }
}

/// Whether `memo` names the request `binding` (`d402:` or legacy `dnc:`).
fn names_request(memo: &str, binding: &str) -> bool {
    [MEMO_PREFIX, LEGACY_MEMO_PREFIX]
        .iter()
        .any(|prefix| memo.strip_prefix(prefix) == Some(binding))
}

fn unavailable(e: RpcError) -> PaymentError {
    PaymentError::Unavailable(e.to_string())
}

#[async_trait]
impl PaymentRail for SolanaDirectRail {
    fn id(&self) -> RailId {
        RailId::SolanaDirect
    }

    fn scheme(&self) -> &str {
        SCHEME
    }

    fn network(&self) -> &str {
        &self.network
    }

    fn asset(&self) -> &str {
        &self.asset
    }

    fn pay_to(&self) -> &Account {
        &self.pay_to
    }

    fn requirements(&self, price: Amount, max_timeout_seconds: u64) -> PaymentRequirements {
        PaymentRequirements {
            scheme: SCHEME.into(),
            network: self.network.clone(),
            amount: price.micros().to_string(),
            asset: self.asset.clone(),
            pay_to: self.wallet.pubkey().to_string(),
            max_timeout_seconds,
            extra: json!({
                "recipientTokenAccount": self.token_account.to_string(),
                "decimals": self.config.decimals,
                "memoPrefix": MEMO_PREFIX,
            }),
        }
    }

    fn requirements_for(
        &self,
        price: Amount,
        max_timeout_seconds: u64,
        binding: &str,
    ) -> PaymentRequirements {
        let mut requirements = self.requirements(price, max_timeout_seconds);
        requirements.extra["memo"] = json!(format!("{MEMO_PREFIX}{binding}"));
        requirements
    }

    fn mpp_method(&self) -> Option<&'static str> {
        Some("solana")
    }

    fn mpp_request(&self, price: Amount, binding: &str) -> Option<Value> {
        Some(json!({
                "amount": price.micros().to_string(),
                "currency": self.asset,
                "recipient": self.wallet.pubkey().to_string(),
                "externalId": format!("{MEMO_PREFIX}{binding}"),
                "methodDetails": {
                    "network": self.config.network.cluster(),
                    "decimals": self.config.decimals,
                },
        }))
    }

    fn identify(&self, payment: &PaymentPayload) -> Result<PaymentKey, PaymentError> {
        Ok(self.key_of(&self.read(payment)?.0))
    }

    async fn authorize(
        &self,
        payment: &PaymentPayload,
        expected: &Expectation<'_>,
    ) -> Result<Authorization, PaymentError> {
        let (signature, payer) = self.read(payment)?;
        let landed = self
            .rpc
            .transaction(&signature)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                PaymentError::Unconfirmed(format!("{signature} is not a confirmed transaction"))
            })?;
        if let Some(err) = landed.err.as_ref() {
            return Err(PaymentError::WouldFail(format!(
                "{signature} failed on chain: {err}"
            )));
        }
        let content = TransactionContent::of(&landed);
        let ours: Vec<_> = content
            .transfers
            .iter()
            .filter(|t| t.destination == self.token_account)
            .collect();
        if ours.is_empty() {
            return Err(PaymentError::WrongPayee(format!(
                "{signature} pays no USDC to {}",
                self.token_account
            )));
        }
        let payer = payer.unwrap_or(ours[0].authority);
        if ours.iter().any(|t| t.mint != self.config.mint) {
            return Err(PaymentError::WrongAsset(ours[0].mint.to_string()));
        }
        if ours.iter().any(|t| t.authority != payer) {
            return Err(PaymentError::BadSignature(format!(
                "the transfer is not signed by the payer {payer}"
            )));
        }
        let paid: u64 = ours.iter().map(|t| t.amount).sum();
        if paid < expected.price.micros() {
            return Err(PaymentError::Underpaid {
                offered: paid,
                price: expected.price.micros(),
            });
        }
        if !content
            .memos
            .iter()
            .any(|m| names_request(m, expected.binding))
        {
            return Err(PaymentError::BindingMismatch);
        }
        let now = (expected.now.unix_millis() / 1000) as i64;
        let window = i64::try_from(expected.max_timeout_seconds).unwrap_or(i64::MAX);
        let fresh = landed.block_time.is_some_and(|time| {
            time >= now.saturating_sub(window).saturating_sub(CLOCK_MARGIN_SECS)
                && time <= now + CLOCK_MARGIN_SECS
        });
        if !fresh {
            return Err(PaymentError::Expired);
        }
        Ok(Authorization {
            rail: RailId::SolanaDirect,
            network: self.network.clone(),
            payer: Account::Ed25519(payer.to_bytes()),
            payment_key: self.key_of(&signature),
            amount: Amount::from_micros(paid),
            reference: signature.to_string(),
            holds: Vec::new(),
            proof: serde_json::to_value(Paid {
                signature: signature.to_string(),
                payer: payer.to_string(),
            })
            .map_err(|e| PaymentError::Malformed(e.to_string()))?,
        })
    }

    async fn readiness(&self) -> Vec<ReadinessCheck> {
        let owner = self.wallet.pubkey();
        let (sol, usdc) = tokio::join!(
            self.rpc.balance(&owner),
            self.rpc.token_balance(&self.token_account)
        );
        match (sol, usdc) {
            (Ok(lamports), Ok(account)) => vec![
                ReadinessCheck::new("rpc", true, "reachable"),
                ReadinessCheck::new(
                    "walletSol",
                    lamports > 0,
                    format!("{owner} holds {lamports} lamports (refunds pay fees)"),
                ),
                ReadinessCheck::new(
                    "tokenAccount",
                    account.is_some(),
                    match account {
                        Some(amount) => format!("{} holds {amount}", self.token_account),
                        None => format!(
                            "{} does not exist yet: buyers' transfers create it",
                            self.token_account
                        ),
                    },
                ),
            ],
            (Err(e), _) | (_, Err(e)) => vec![ReadinessCheck::new("rpc", false, e.to_string())],
        }
    }

    fn settles_externally(&self) -> bool {
        // Refunds are transfers on chain, decided durably before they are sent.
        true
    }

    fn pays_commissions(&self) -> bool {
        // The whole price lands at the gateway's wallet; nothing pays creators onward yet.
        false
    }

    async fn capture(
        &self,
        authorization: &Authorization,
        _payouts: &[Payout],
    ) -> Result<Completion, RailError> {
        // The buyer's transfer already paid the gateway.
        Ok(Completion {
            reference: Some(authorization.reference.clone()),
            ledger: Vec::new(),
        })
    }

    async fn void(
        &self,
        authorization: &Authorization,
        refund: &Refund,
    ) -> Result<Completion, RailError> {
        let paid: Paid = serde_json::from_value(authorization.proof.clone())
            .map_err(|e| RailError::Failed(format!("stored payment unreadable: {e}")))?;
        let payer: Address = paid
            .payer
            .parse()
            .map_err(|_| RailError::Failed(format!("stored payer {} unreadable", paid.payer)))?;
        let memo = Self::refund_memo(&paid.signature);
        let retry = |e: RpcError| RailError::Retry(e.to_string());
        // Idempotent: a refund sent before a crash is found by its memo, never sent again.
        let buyer_account = associated_token_address(&payer, &self.config.mint);
        if let Some(sent) = self
            .rpc
            .find_memo(&buyer_account, &memo)
            .await
            .map_err(retry)?
        {
            return Ok(Completion {
                reference: Some(sent.to_string()),
                ledger: Vec::new(),
            });
        }
        let order = TransferOrder {
            mint: self.config.mint,
            decimals: self.config.decimals,
            recipient: payer,
            amount: refund.amount.micros(),
            memo: Some(&memo),
        };
        let signature =
            transfer::send(&self.rpc, &self.wallet, &order, self.config.confirm_timeout)
                .await
                .map_err(retry)?;
        tracing::info!(%signature, "Solana refund confirmed");
        Ok(Completion {
            reference: Some(signature.to_string()),
            ledger: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memos_name_their_request_in_both_prefixes_and_nothing_else() {
        let binding = "sha256:00ff";
        assert!(names_request("d402:sha256:00ff", binding));
        assert!(names_request("dnc:sha256:00ff", binding));
        for other in [
            "d402:sha256:00fe",
            "sha256:00ff",
            "d402:sha256:00ff ",
            "x:sha256:00ff",
        ] {
            assert!(!names_request(other, binding), "{other}");
        }
    }
}
