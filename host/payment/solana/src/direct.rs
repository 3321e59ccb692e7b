//! `solana-direct`: the buyer pays first — a USDC `TransferChecked` to the gateway's token
//! account with a `d402:` memo naming the request — and proves it with the transaction's
//! signature (`Authorization: Payment`). The gateway reads the transaction over JSON-RPC
//! before any work: confirmed, no error, the right mint and recipient, at least the price,
//! signed by the payer, the memo of this request, landed within the payment window; the
//! signature is consumed once, atomically with the task. A failed task is refunded by a
//! transfer back from the gateway's wallet, found again by its memo after a crash.

use async_trait::async_trait;
use d402_payment::x402::{PaymentPayload, PaymentRequirements, TransferProof};
use d402_payment::{
    Account, Authorization, Completion, Expectation, PaymentError, PaymentKey, PaymentRail,
    RailError, RailId, ReadinessCheck,
};
use d402_protocol::{Amount, Payout, Refund};
use serde_json::{Value, json};
use solana_address::Address;
use solana_keypair::Keypair;
use solana_signature::Signature;

use crate::rpc::RpcError;
use crate::transfer::TransactionContent;
use crate::wallet::{DirectConfig, GatewayWallet, Paid, kept, key_of};

/// The x402 scheme name of a direct transfer.
pub const SCHEME: &str = "d402-solana-transfer";
/// The memo prefix naming a request (`d402:` + the request binding).
pub const MEMO_PREFIX: &str = "d402:";
/// The legacy memo prefix, still accepted.
pub const LEGACY_MEMO_PREFIX: &str = "dnc:";
/// Seconds of clock difference tolerated on a payment's block time.
const CLOCK_MARGIN_SECS: i64 = 60;

/// The Solana direct USDC rail.
pub struct SolanaDirectRail {
    network: String,
    asset: String,
    wallet: GatewayWallet,
    pay_to: Account,
}

impl SolanaDirectRail {
    /// The rail on the cluster behind `rpc_url`, paid to `wallet` (the gateway's node key),
    /// which also sends refunds (nothing is contacted yet).
    pub fn new(config: DirectConfig, rpc_url: url::Url, wallet: Keypair) -> Self {
        let wallet = GatewayWallet::new(config, rpc_url, wallet);
        Self {
            network: wallet.config.network.to_string(),
            asset: wallet.config.mint.to_string(),
            pay_to: Account::Ed25519(wallet.address().to_bytes()),
            wallet,
        }
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
}

/// Whether `memo` names the request `binding` (`d402:` or legacy `dnc:`).
pub(crate) fn names_request(memo: &str, binding: &str) -> bool {
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
            pay_to: self.wallet.address().to_string(),
            max_timeout_seconds,
            extra: json!({
                "recipientTokenAccount": self.wallet.token_account.to_string(),
                "decimals": self.wallet.config.decimals,
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
                "recipient": self.wallet.address().to_string(),
                "externalId": format!("{MEMO_PREFIX}{binding}"),
                "methodDetails": {
                    "network": self.wallet.config.network.cluster(),
                    "decimals": self.wallet.config.decimals,
                },
        }))
    }

    fn identify(&self, payment: &PaymentPayload) -> Result<PaymentKey, PaymentError> {
        Ok(key_of(&self.network, &self.read(payment)?.0))
    }

    async fn authorize(
        &self,
        payment: &PaymentPayload,
        expected: &Expectation<'_>,
    ) -> Result<Authorization, PaymentError> {
        let (signature, payer) = self.read(payment)?;
        let landed = self
            .wallet
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
            .filter(|t| t.destination == self.wallet.token_account)
            .collect();
        if ours.is_empty() {
            return Err(PaymentError::WrongPayee(format!(
                "{signature} pays no USDC to {}",
                self.wallet.token_account
            )));
        }
        let payer = payer.unwrap_or(ours[0].authority);
        if ours.iter().any(|t| t.mint != self.wallet.config.mint) {
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
        Paid::authorization(RailId::SolanaDirect, &self.network, signature, payer, paid)
    }

    async fn readiness(&self) -> Vec<ReadinessCheck> {
        self.wallet.readiness().await
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
        Ok(kept(authorization))
    }

    async fn void(
        &self,
        authorization: &Authorization,
        refund: &Refund,
    ) -> Result<Completion, RailError> {
        self.wallet.refund(authorization, refund).await
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
