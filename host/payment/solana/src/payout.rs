//! Paying what a provider owes on Solana (`d402 payouts run`): a USDC transfer from the
//! payout hot key, signed and recorded (signature and bytes) before it is sent, so a crash
//! or a second run finds it on chain or sends exactly the same bytes again — and re-signs
//! only once the recorded transaction can no longer land (its blockhash expired unseen).

use std::time::Duration;

use solana_address::Address;
use solana_keypair::Keypair;
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;

use crate::rpc::{RpcError, SolanaRpc};
use crate::transfer::{self, TransferOrder};

/// A signed payout transfer: its signature and its wire bytes (base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSolanaTransfer {
    /// The transaction's signature (its id).
    pub signature: Signature,
    /// The signed transaction, base64 of its wire bytes.
    pub raw: String,
}

/// Where a sent payout transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutOutcome {
    /// It landed and moved the tokens.
    Paid,
    /// It cannot pay: it landed with an error, or it never landed and its blockhash expired.
    Failed,
    /// Not landed yet, and it still may.
    Pending,
}

/// Sends payouts in one mint from a hot key.
pub struct SolanaPayoutSender {
    rpc: SolanaRpc,
    key: Keypair,
    mint: Address,
    decimals: u8,
}

impl SolanaPayoutSender {
    /// Pays `mint` (with `decimals`) from `key` through `rpc_url`.
    pub fn new(key: Keypair, rpc_url: url::Url, mint: Address, decimals: u8) -> Self {
        Self {
            rpc: SolanaRpc::new(rpc_url),
            key,
            mint,
            decimals,
        }
    }

    /// Signs a transfer of `amount` to `to` with `memo` on a fresh blockhash; sends nothing.
    pub async fn sign(
        &self,
        to: Address,
        amount: u64,
        memo: &str,
    ) -> Result<SignedSolanaTransfer, RpcError> {
        let order = TransferOrder {
            mint: self.mint,
            decimals: self.decimals,
            recipient: to,
            amount,
            memo: Some(memo),
        };
        let transaction = transfer::sign(&self.key, &order, self.rpc.latest_blockhash().await?);
        Ok(SignedSolanaTransfer {
            signature: transaction.signatures[0],
            raw: transfer::to_base64(&transaction),
        })
    }

    fn decode(signed: &SignedSolanaTransfer) -> Result<VersionedTransaction, RpcError> {
        transfer::from_base64(&signed.raw).ok_or_else(|| RpcError::Transport {
            method: "sendTransaction",
            message: format!(
                "recorded transfer {} is not base64 of a wire transaction",
                signed.signature
            ),
        })
    }

    /// Sends `signed` (again): the same bytes, so it lands at most once.
    pub async fn send(&self, signed: &SignedSolanaTransfer) -> Result<(), RpcError> {
        match self.rpc.send_transaction(&Self::decode(signed)?).await {
            Ok(_) => Ok(()),
            Err(RpcError::Refused { message, .. })
                if message.contains("already been processed") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Where `signed` stands.
    pub async fn outcome(&self, signed: &SignedSolanaTransfer) -> Result<PayoutOutcome, RpcError> {
        if let Some(status) = self.rpc.signature_status(&signed.signature).await? {
            return Ok(if status.err.is_none() {
                PayoutOutcome::Paid
            } else {
                PayoutOutcome::Failed
            });
        }
        let transaction = Self::decode(signed)?;
        Ok(
            if self
                .rpc
                .blockhash_valid(transaction.message.recent_blockhash())
                .await?
            {
                PayoutOutcome::Pending
            } else {
                PayoutOutcome::Failed
            },
        )
    }

    /// Waits (up to `timeout`) until `signed` is no longer pending.
    pub async fn wait(
        &self,
        signed: &SignedSolanaTransfer,
        timeout: Duration,
    ) -> Result<PayoutOutcome, RpcError> {
        let start = tokio::time::Instant::now();
        loop {
            let outcome = self.outcome(signed).await?;
            if outcome != PayoutOutcome::Pending || start.elapsed() >= timeout {
                return Ok(outcome);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
