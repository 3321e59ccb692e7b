//! USDC transfers with a memo: signed and sent (a buyer's payment, a gateway's refund or
//! payout), and read back from a confirmed transaction (what the gateway verifies).

use std::time::Duration;

use solana_address::Address;
use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction::versioned::VersionedTransaction;

use crate::rpc::{ConfirmedTransaction, RpcError, SolanaRpc};
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

/// The transaction `from` signs for `order` with `blockhash`: the recipient's token account
/// created if missing (paid by `from`), the `TransferChecked`, the memo.
pub fn sign(from: &Keypair, order: &TransferOrder<'_>, blockhash: Hash) -> VersionedTransaction {
    let payer = from.pubkey();
    let mut instructions = vec![
        token::create_associated_token_account_idempotent(payer, order.recipient, order.mint),
        token::transfer_checked(
            token::associated_token_address(&payer, &order.mint),
            order.mint,
            token::associated_token_address(&order.recipient, &order.mint),
            payer,
            order.amount,
            order.decimals,
        ),
    ];
    if let Some(memo) = order.memo {
        instructions.push(token::memo(memo));
    }
    Transaction::new_signed_with_payer(&instructions, Some(&payer), &[from], blockhash).into()
}

/// Signs `order` from `from` with a fresh blockhash, sends it and waits (up to `timeout`)
/// until it is confirmed; its signature. A transaction that landed with an error is an
/// error.
pub async fn send(
    rpc: &SolanaRpc,
    from: &Keypair,
    order: &TransferOrder<'_>,
    timeout: Duration,
) -> Result<Signature, RpcError> {
    let transaction = sign(from, order, rpc.latest_blockhash().await?);
    let signature = rpc.send_transaction(&transaction).await?;
    let status = rpc.wait_confirmed(&signature, timeout).await?;
    match status.err {
        None => Ok(signature),
        Some(err) => Err(RpcError::Refused {
            method: "sendTransaction",
            code: 0,
            message: format!("{signature} failed on chain: {err}"),
        }),
    }
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
