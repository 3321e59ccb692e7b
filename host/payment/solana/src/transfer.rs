//! USDC transfers with a memo: signed and sent (a buyer's payment, a gateway's refund or
//! payout), and read back from a confirmed transaction (what the gateway verifies).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use solana_address::Address;
use solana_hash::Hash;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction::versioned::VersionedTransaction;

use crate::rpc::{ConfirmedTransaction, RpcError, SolanaRpc};

/// A signed transaction's wire form as JSON-RPC, x402 payloads and durable records carry
/// it: base64 of its bytes.
pub fn to_base64(transaction: &VersionedTransaction) -> String {
    BASE64.encode(bincode::serialize(transaction).expect("a transaction serializes"))
}

/// The transaction `text` (base64 of its wire bytes) carries, if it is one.
pub fn from_base64(text: &str) -> Option<VersionedTransaction> {
    let bytes = BASE64.decode(text.trim()).ok()?;
    bincode::deserialize(&bytes).ok()
}

/// Why a signed transaction did not land.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LandError {
    /// The RPC refused it (preflight failed) and it is not on chain.
    #[error("the transaction was refused: {0}")]
    Refused(String),
    /// It is not on chain and its blockhash has expired: it never will be.
    #[error("the transaction never landed and its blockhash has expired: it never will")]
    Expired,
    /// It landed, with an error: nothing moved.
    #[error("{signature} failed on chain: {error}")]
    Failed {
        /// Its signature.
        signature: Signature,
        /// The chain's error.
        error: String,
    },
    /// The RPC could not say (unreachable, or not confirmed in time): it may still land.
    #[error(transparent)]
    Unknown(RpcError),
}

/// Puts the signed `transaction` on chain: sent unless it landed already (a resend, a
/// concurrent retry), then waited for (up to `timeout`) until confirmed. Sending the same
/// bytes again is harmless: a transaction lands at most once.
pub async fn land(
    rpc: &SolanaRpc,
    transaction: &VersionedTransaction,
    timeout: Duration,
) -> Result<(), LandError> {
    let signature = transaction.signatures[0];
    let status = match rpc
        .signature_status(&signature)
        .await
        .map_err(LandError::Unknown)?
    {
        Some(status) => status,
        None => match rpc.send_transaction(transaction).await {
            Ok(_) => rpc
                .wait_confirmed(&signature, timeout)
                .await
                .map_err(LandError::Unknown)?,
            Err(error) => match rpc
                .signature_status(&signature)
                .await
                .map_err(LandError::Unknown)?
            {
                // A concurrent retry sent the same bytes first.
                Some(status) => status,
                None => {
                    let blockhash = transaction.message.recent_blockhash();
                    if !rpc
                        .blockhash_valid(blockhash)
                        .await
                        .map_err(LandError::Unknown)?
                    {
                        return Err(LandError::Expired);
                    }
                    return Err(match error {
                        RpcError::Refused { message, .. } => LandError::Refused(message),
                        other => LandError::Unknown(other),
                    });
                }
            },
        },
    };
    match status.err {
        None => Ok(()),
        Some(error) => Err(LandError::Failed {
            signature,
            error: error.to_string(),
        }),
    }
}
use crate::token::{self, TransferChecked};

/// A token transfer to make: `amount` atomic units of `mint` to `recipient`'s associated
/// token account, with an optional memo.
#[derive(Debug, Clone)]
pub struct TransferOrder<'a> {
    /// The mint.
    pub mint: Address,
    /// Its decimals.
    pub decimals: u8,
    /// The wallet paid (its associated token account receives).
    pub recipient: Address,
    /// Atomic units.
    pub amount: u64,
    /// The memo, if any.
    pub memo: Option<&'a str>,
}

impl TransferOrder<'_> {
    /// The `TransferChecked` of this order from `payer`'s token account, signed by `payer`.
    pub fn transfer_from(&self, payer: Address) -> Instruction {
        token::transfer_checked(
            token::associated_token_address(&payer, &self.mint),
            self.mint,
            token::associated_token_address(&self.recipient, &self.mint),
            payer,
            self.amount,
            self.decimals,
        )
    }
}

/// The transaction `from` signs for `order` with `blockhash`: the recipient's token account
/// created if missing (paid by `from`), the `TransferChecked`, the memo.
pub fn sign(from: &Keypair, order: &TransferOrder<'_>, blockhash: Hash) -> VersionedTransaction {
    let payer = from.pubkey();
    let mut instructions = vec![
        token::create_associated_token_account_idempotent(payer, order.recipient, order.mint),
        order.transfer_from(payer),
    ];
    if let Some(memo) = order.memo {
        instructions.push(token::memo(memo));
    }
    Transaction::new_signed_with_payer(&instructions, Some(&payer), &[from], blockhash).into()
}

/// Signs `order` from `from` with a fresh blockhash and [`land`]s it; its signature.
pub async fn send(
    rpc: &SolanaRpc,
    from: &Keypair,
    order: &TransferOrder<'_>,
    timeout: Duration,
) -> Result<Signature, LandError> {
    let blockhash = rpc.latest_blockhash().await.map_err(LandError::Unknown)?;
    let transaction = sign(from, order, blockhash);
    land(rpc, &transaction, timeout).await?;
    Ok(transaction.signatures[0])
}

/// The token transfers and memos of a confirmed transaction, as its instructions state them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionContent {
    /// Every SPL Token `TransferChecked` at the top level.
    pub transfers: Vec<TransferChecked>,
    /// Every memo at the top level.
    pub memos: Vec<String>,
}

impl TransactionContent {
    /// What `confirmed` does at the top level.
    pub fn of(confirmed: &ConfirmedTransaction) -> Self {
        let keys = confirmed.account_keys();
        let key = |index: u8| keys.get(usize::from(index)).copied();
        let mut content = Self {
            transfers: Vec::new(),
            memos: Vec::new(),
        };
        for instruction in confirmed.transaction.message.instructions() {
            let Some(program) = key(instruction.program_id_index) else {
                continue;
            };
            let accounts: Option<Vec<Address>> =
                instruction.accounts.iter().map(|i| key(*i)).collect();
            let Some(accounts) = accounts else {
                continue;
            };
            if let Some(transfer) = TransferChecked::read(&program, &accounts, &instruction.data) {
                content.transfers.push(transfer);
            } else if let Some(memo) = token::read_memo(&program, &instruction.data) {
                content.memos.push(memo);
            }
        }
        content
    }
}
