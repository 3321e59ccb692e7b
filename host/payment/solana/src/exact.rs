//! `x402-solana`: x402 `exact` on SVM, what `@x402/svm` clients send. The requirement names
//! the gateway's wallet as `extra.feePayer` (and, for d402, `extra.memo` naming the
//! request); the client sends a partially-signed versioned transaction: compute budget,
//! one `TransferChecked` to the gateway's token account, a memo. The gateway checks the
//! layout as the scheme requires — exactly one matching transfer, the fee payer in no
//! instruction, the compute price capped, nothing else — co-signs as fee payer and submits
//! it **before any work** (decision 0016: its blockhash expires in about a minute, sooner
//! than a task and its validation may take), then refunds a failed task by a transfer back.

use async_trait::async_trait;
use d402_payment::x402::{PaymentPayload, PaymentRequirements};
use d402_payment::{
    Account, Authorization, Completion, Expectation, PaymentError, PaymentKey, PaymentRail,
    RailError, RailId, ReadinessCheck,
};
use d402_protocol::{Amount, Payout, Refund};
use serde::{Deserialize, Serialize};
use serde_json::json;
use solana_address::Address;
use solana_hash::Hash;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_message::{CompileError, VersionedMessage};
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;

use crate::direct::{MEMO_PREFIX, names_request};
use crate::token::{self, TransferChecked};
use crate::transfer::{self, LandError};
use crate::wallet::{DirectConfig, GatewayWallet, Paid, kept, key_of};

/// The Compute Budget program.
pub const COMPUTE_BUDGET_PROGRAM: Address =
    Address::from_str_const("ComputeBudget111111111111111111111111111111");
/// The highest compute unit price accepted: 5 lamports per unit, in micro-lamports.
pub const MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS: u64 = 5_000_000;
/// Most instructions a payment transaction may have.
const MAX_INSTRUCTIONS: usize = 7;

/// The x402 `exact` SVM payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExactSvmPayload {
    /// base64 of the partially-signed versioned transaction.
    transaction: String,
}

/// Compute Budget `SetComputeUnitLimit`.
pub fn compute_unit_limit(units: u32) -> Instruction {
    compute_budget(2, &units.to_le_bytes())
}

/// Compute Budget `SetComputeUnitPrice`, in micro-lamports per unit.
pub fn compute_unit_price(micro_lamports: u64) -> Instruction {
    compute_budget(3, &micro_lamports.to_le_bytes())
}

/// A Compute Budget instruction: its tag, then its little-endian argument.
fn compute_budget(tag: u8, argument: &[u8]) -> Instruction {
    let mut data = vec![tag];
    data.extend_from_slice(argument);
    Instruction {
        program_id: COMPUTE_BUDGET_PROGRAM,
        accounts: Vec::new(),
        data,
    }
}

/// The v0 transaction of `instructions` whose fees `fee_payer` pays, signed by `signer`
/// where the message requires it; every other signature (the fee payer's, the gateway's to
/// add) is left empty.
pub fn partially_signed(
    fee_payer: &Address,
    signer: &Keypair,
    instructions: &[Instruction],
    blockhash: Hash,
) -> Result<VersionedTransaction, CompileError> {
    let message = VersionedMessage::V0(solana_message::v0::Message::try_compile(
        fee_payer,
        instructions,
        &[],
        blockhash,
    )?);
    let required = usize::from(message.header().num_required_signatures);
    let mut signatures = vec![Signature::default(); required];
    if let Some(position) = message.static_account_keys()[..required]
        .iter()
        .position(|k| *k == signer.pubkey())
    {
        signatures[position] = signer.sign_message(&message.serialize());
    }
    Ok(VersionedTransaction {
        signatures,
        message,
    })
}

/// The x402 `exact` SVM payload carrying `transaction`: `{"transaction": base64}`.
pub fn payload(transaction: &VersionedTransaction) -> serde_json::Value {
    serde_json::to_value(ExactSvmPayload {
        transaction: transfer::to_base64(transaction),
    })
    .expect("the payload serializes")
}

/// What a payment transaction pays, once its layout checked.
struct Layout {
    payer: Address,
    amount: u64,
}

/// The x402 `exact` rail on Solana, the gateway paying the fees.
pub struct X402SolanaRail {
    network: String,
    asset: String,
    wallet: GatewayWallet,
    pay_to: Account,
}

impl X402SolanaRail {
    /// The rail on the cluster behind `rpc_url`; `wallet` (the gateway's node key) is paid,
    /// co-signs as fee payer and sends refunds (nothing is contacted yet).
    pub fn new(config: DirectConfig, rpc_url: url::Url, wallet: Keypair) -> Self {
        let wallet = GatewayWallet::new(config, rpc_url, wallet);
        Self {
            network: wallet.config.network.to_string(),
            asset: wallet.config.mint.to_string(),
            pay_to: Account::Ed25519(wallet.address().to_bytes()),
            wallet,
        }
    }

    /// The transaction `payment` carries, co-signed by the gateway as fee payer.
    fn read(&self, payment: &PaymentPayload) -> Result<VersionedTransaction, PaymentError> {
        if payment.accepted.scheme != "exact" || payment.accepted.network != self.network {
            return Err(PaymentError::UnsupportedNetwork(
                payment.accepted.network.clone(),
            ));
        }
        let malformed = |what: &str| PaymentError::Malformed(what.to_string());
        let payload: ExactSvmPayload = payment
            .typed()
            .map_err(|e| PaymentError::Malformed(e.to_string()))?;
        let mut transaction = transfer::from_base64(&payload.transaction)
            .ok_or_else(|| malformed("transaction is not base64 of a wire transaction"))?;
        let keys = transaction.message.static_account_keys();
        if keys.first() != Some(&self.wallet.address()) {
            return Err(PaymentError::WrongPayee(
                "the fee payer must be the requirement's extra.feePayer".into(),
            ));
        }
        let required = usize::from(transaction.message.header().num_required_signatures);
        if transaction.signatures.len() != required || required < 2 {
            return Err(malformed("the transaction must be signed by the payer"));
        }
        transaction.signatures[0] = self
            .wallet
            .keypair
            .sign_message(&transaction.message.serialize());
        Ok(transaction)
    }

    /// Checks the transaction as the `exact` SVM scheme requires and this request expects.
    fn check(
        &self,
        transaction: &VersionedTransaction,
        expected: &Expectation<'_>,
    ) -> Result<Layout, PaymentError> {
        let malformed = |what: String| PaymentError::Malformed(what);
        let message = &transaction.message;
        if message
            .address_table_lookups()
            .is_some_and(|lookups| !lookups.is_empty())
        {
            return Err(malformed("address lookup tables are not accepted".into()));
        }
        let keys = message.static_account_keys();
        let fee_payer = keys[0];
        let instructions = message.instructions();
        if instructions.len() < 2 || instructions.len() > MAX_INSTRUCTIONS {
            return Err(malformed(format!(
                "{} instructions; a payment has 2 to {MAX_INSTRUCTIONS}",
                instructions.len()
            )));
        }
        let key = |index: u8| keys.get(usize::from(index)).copied();
        let mut transfers: Vec<TransferChecked> = Vec::new();
        let mut memos: Vec<String> = Vec::new();
        for instruction in instructions {
            let program = key(instruction.program_id_index)
                .ok_or_else(|| malformed("an instruction names no program".into()))?;
            let accounts: Vec<Address> = instruction
                .accounts
                .iter()
                .map(|i| key(*i))
                .collect::<Option<_>>()
                .ok_or_else(|| malformed("an instruction names a missing account".into()))?;
            if accounts.contains(&fee_payer) {
                return Err(malformed(
                    "the fee payer appears in an instruction: it may only pay fees".into(),
                ));
            }
            if program == COMPUTE_BUDGET_PROGRAM {
                check_compute_budget(&instruction.data)?;
            } else if let Some(transfer) =
                TransferChecked::read(&program, &accounts, &instruction.data)
            {
                transfers.push(transfer);
            } else if let Some(memo) = token::read_memo(&program, &instruction.data) {
                memos.push(memo);
            } else {
                return Err(malformed(format!(
                    "instructions of program {program} are not accepted"
                )));
            }
        }
        let [transfer] = transfers.as_slice() else {
            return Err(malformed(format!(
                "{} token transfers; a payment has exactly one",
                transfers.len()
            )));
        };
        if transfer.destination != self.wallet.token_account {
            return Err(PaymentError::WrongPayee(transfer.destination.to_string()));
        }
        if transfer.mint != self.wallet.config.mint {
            return Err(PaymentError::WrongAsset(transfer.mint.to_string()));
        }
        if transfer.amount < expected.price.micros() {
            return Err(PaymentError::Underpaid {
                offered: transfer.amount,
                price: expected.price.micros(),
            });
        }
        if !memos.iter().any(|m| names_request(m, expected.binding)) {
            return Err(PaymentError::BindingMismatch);
        }
        Ok(Layout {
            payer: transfer.authority,
            amount: transfer.amount,
        })
    }

    /// Submits the co-signed transaction (or finds it already landed, from a retry) and
    /// waits for it.
    async fn submit(&self, transaction: &VersionedTransaction) -> Result<(), PaymentError> {
        transfer::land(
            &self.wallet.rpc,
            transaction,
            self.wallet.config.confirm_timeout,
        )
        .await
        .map_err(|error| match error {
            LandError::Refused(message) => PaymentError::WouldFail(message),
            failed @ LandError::Failed { .. } => PaymentError::WouldFail(failed.to_string()),
            LandError::Expired => PaymentError::Expired,
            LandError::Unknown(error) => PaymentError::Unavailable(error.to_string()),
        })
    }
}

/// A Compute Budget instruction a payment may carry: a unit limit, or a unit price up to
/// [`MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS`].
fn check_compute_budget(data: &[u8]) -> Result<(), PaymentError> {
    match data {
        [2, limit @ ..] if limit.len() == 4 => Ok(()),
        [3, price @ ..] if price.len() == 8 => {
            let price = u64::from_le_bytes(price.try_into().expect("8 bytes"));
            if price > MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS {
                return Err(PaymentError::Malformed(format!(
                    "compute unit price {price} micro-lamports is above {MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS}"
                )));
            }
            Ok(())
        }
        _ => Err(PaymentError::Malformed(
            "only compute unit limit and price instructions are accepted".into(),
        )),
    }
}

#[async_trait]
impl PaymentRail for X402SolanaRail {
    fn id(&self) -> RailId {
        RailId::X402Solana
    }

    fn scheme(&self) -> &str {
        "exact"
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
            scheme: "exact".into(),
            network: self.network.clone(),
            amount: price.micros().to_string(),
            asset: self.asset.clone(),
            pay_to: self.wallet.address().to_string(),
            max_timeout_seconds,
            extra: json!({"feePayer": self.wallet.address().to_string()}),
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

    fn identify(&self, payment: &PaymentPayload) -> Result<PaymentKey, PaymentError> {
        Ok(key_of(&self.network, &self.read(payment)?.signatures[0]))
    }

    async fn authorize(
        &self,
        payment: &PaymentPayload,
        expected: &Expectation<'_>,
    ) -> Result<Authorization, PaymentError> {
        let transaction = self.read(payment)?;
        let layout = self.check(&transaction, expected)?;
        self.submit(&transaction).await?;
        let signature = transaction.signatures[0];
        Paid::authorization(
            RailId::X402Solana,
            &self.network,
            signature,
            layout.payer,
            layout.amount,
        )
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
        // Submitted before the work: the gateway already holds the payment.
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
