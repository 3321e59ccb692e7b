//! The gateway's Solana wallet as both Solana rails use it: where payments land (its USDC
//! token account), its readiness, and refunds — a transfer back with the memo
//! `d402-refund:<payment signature>`, found again by that memo instead of sent twice.

use std::time::Duration;

use d402_payment::{
    Account, Authorization, Completion, PaymentError, PaymentKey, RailError, RailId, ReadinessCheck,
};
use d402_protocol::{Amount, Refund};
use serde::{Deserialize, Serialize};
use solana_address::Address;
use solana_keypair::Keypair;
use solana_signature::Signature;
use solana_signer::Signer;

use crate::network::SolanaNetwork;
use crate::rpc::{RpcError, SolanaRpc};
use crate::token::associated_token_address;
use crate::transfer::{self, TransferOrder};

/// The memo prefix of a refund (`d402-refund:` + the payment's signature).
pub const REFUND_MEMO_PREFIX: &str = "d402-refund:";

/// What a Solana rail is configured with.
#[derive(Debug, Clone)]
pub struct DirectConfig {
    /// The cluster.
    pub network: SolanaNetwork,
    /// The token prices are paid in (USDC by default).
    pub mint: Address,
    /// Its decimals.
    pub decimals: u8,
    /// The longest wait for a transaction to be confirmed before it is retried later.
    pub confirm_timeout: Duration,
}

/// What a Solana rail keeps with the task: the paying transaction and who paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Paid {
    /// The paying transaction's signature.
    pub signature: String,
    /// The payer (refunds go back there).
    pub payer: String,
}

impl Paid {
    /// The authorization of a payment that landed in the gateway's wallet: `amount` from
    /// `payer` in the transaction `signature` on `network`, consumed once by its signature.
    pub(crate) fn authorization(
        rail: RailId,
        network: &str,
        signature: Signature,
        payer: Address,
        amount: u64,
    ) -> Result<Authorization, PaymentError> {
        Ok(Authorization {
            rail,
            network: network.to_string(),
            payer: Account::Ed25519(payer.to_bytes()),
            payment_key: key_of(network, &signature),
            amount: Amount::from_micros(amount),
            reference: signature.to_string(),
            holds: Vec::new(),
            proof: serde_json::to_value(Paid {
                signature: signature.to_string(),
                payer: payer.to_string(),
            })
            .map_err(|e| PaymentError::Malformed(e.to_string()))?,
        })
    }
}

/// The once-only key of the payment made by transaction `signature` on `network`.
pub(crate) fn key_of(network: &str, signature: &Signature) -> PaymentKey {
    PaymentKey(format!("{network}:{signature}"))
}

/// Capturing a payment the gateway already holds moves nothing: its reference stands.
pub(crate) fn kept(authorization: &Authorization) -> Completion {
    Completion {
        reference: Some(authorization.reference.clone()),
        ledger: Vec::new(),
    }
}

/// The gateway's wallet on one cluster.
pub(crate) struct GatewayWallet {
    pub config: DirectConfig,
    pub rpc: SolanaRpc,
    pub keypair: Keypair,
    /// Its associated token account for the configured mint: where payments land.
    pub token_account: Address,
}

impl GatewayWallet {
    /// `keypair`'s wallet on the cluster behind `rpc_url`.
    pub fn new(config: DirectConfig, rpc_url: url::Url, keypair: Keypair) -> Self {
        Self {
            rpc: SolanaRpc::new(rpc_url),
            token_account: associated_token_address(&keypair.pubkey(), &config.mint),
            keypair,
            config,
        }
    }

    /// The wallet's address.
    pub fn address(&self) -> Address {
        self.keypair.pubkey()
    }

    /// The RPC answers; the wallet holds SOL for fees; its token account exists.
    pub async fn readiness(&self) -> Vec<ReadinessCheck> {
        let owner = self.address();
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
                    format!("{owner} holds {lamports} lamports (for fees)"),
                )
                .with_balance("SOL", u128::from(lamports), 9),
                ReadinessCheck::new(
                    "tokenAccount",
                    account.is_some(),
                    match account {
                        Some(amount) => format!("{} holds {amount}", self.token_account),
                        None => format!("{} does not exist yet", self.token_account),
                    },
                ),
            ],
            (Err(e), _) | (_, Err(e)) => vec![ReadinessCheck::new("rpc", false, e.to_string())],
        }
    }

    /// Returns `refund` to the payer of `authorization`, once: a refund already on chain
    /// (sent before a crash) is found by its memo and not sent again.
    pub async fn refund(
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
        let memo = format!("{REFUND_MEMO_PREFIX}{}", paid.signature);
        let retry = |e: RpcError| RailError::Retry(e.to_string());
        let buyer_account = associated_token_address(&payer, &self.config.mint);
        let sent = match self
            .rpc
            .find_memo(&buyer_account, &memo)
            .await
            .map_err(retry)?
        {
            Some(sent) => sent,
            None => {
                let order = TransferOrder {
                    mint: self.config.mint,
                    decimals: self.config.decimals,
                    recipient: payer,
                    amount: refund.amount.micros(),
                    memo: Some(&memo),
                };
                let signature = transfer::send(
                    &self.rpc,
                    &self.keypair,
                    &order,
                    self.config.confirm_timeout,
                )
                .await
                .map_err(|e| RailError::Retry(e.to_string()))?;
                tracing::info!(%signature, "Solana refund confirmed");
                signature
            }
        };
        Ok(Completion {
            reference: Some(sent.to_string()),
            ledger: Vec::new(),
        })
    }
}
