//! The buyer's side of Solana USDC. On `solana-direct` it pays a trusted
//! `d402-solana-transfer` requirement first — a USDC transfer to the gateway with the memo
//! naming the buyer's own request body — waits for it to be confirmed, and proves it with
//! `Authorization: Payment`. On `x402-solana` (x402 `exact` on SVM) it sends nothing: it
//! signs the transfer (with the same memo) as a transaction whose fees the gateway's
//! `extra.feePayer` pays, and hands it over in `PAYMENT-SIGNATURE` for the gateway to
//! co-sign and submit.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use d402_payment::x402::{PaymentPayload, PaymentRequirements, TransferProof, X402_VERSION};
use d402_payment::{PayError, Payer, Prepared, Purchase, request_binding};
use solana_address::Address;
use solana_keypair::Keypair;
use solana_signer::Signer;

use crate::direct::{MEMO_PREFIX, SCHEME};
use crate::exact;
use crate::network::SolanaNetwork;
use crate::rpc::SolanaRpc;
use crate::token;
use crate::transfer::{self, LandError, TransferOrder};

/// How a [`SolanaPayer`] pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolanaScheme {
    /// `solana-direct`: the buyer sends the transfer and proves it.
    Direct,
    /// `x402-solana`: x402 `exact` on SVM, the transfer signed for the gateway to submit.
    X402Exact,
}

impl SolanaScheme {
    /// The x402 scheme name of its requirements.
    fn name(self) -> &'static str {
        match self {
            Self::Direct => SCHEME,
            Self::X402Exact => "exact",
        }
    }
}

/// How long a direct transfer is waited for until confirmed.
const LAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Compute units an `exact` payment asks for: the transfer and memo use about a third.
const EXACT_COMPUTE_UNITS: u32 = 40_000;
/// Priority fee of an `exact` payment, micro-lamports per compute unit (the gateway pays).
const EXACT_COMPUTE_UNIT_PRICE: u64 = 1;

/// Pays Solana USDC requirements from a Solana keypair.
pub struct SolanaPayer {
    key: Keypair,
    rpc: SolanaRpc,
    network: SolanaNetwork,
    mint: Address,
    decimals: u8,
    max_amount: u64,
    scheme: SolanaScheme,
}

impl SolanaPayer {
    /// Pays `d402-solana-transfer` requirements from `key` through `rpc` on `network`, in
    /// `mint` (with `decimals`) only, at most `max_amount` atomic units per payment.
    pub fn new(
        key: Keypair,
        rpc: SolanaRpc,
        network: SolanaNetwork,
        mint: Address,
        decimals: u8,
        max_amount: u64,
    ) -> Self {
        Self {
            key,
            rpc,
            network,
            mint,
            decimals,
            max_amount,
            scheme: SolanaScheme::Direct,
        }
    }

    /// The same payer paying `scheme` requirements instead.
    pub fn paying(self, scheme: SolanaScheme) -> Self {
        Self { scheme, ..self }
    }

    /// The `exact` payment of `order`: its transaction, signed by the buyer, the fees left
    /// to `requirements`' `extra.feePayer`.
    async fn sign_exact(
        &self,
        requirements: &PaymentRequirements,
        order: &TransferOrder<'_>,
    ) -> Result<serde_json::Value, PayError> {
        let refuse = |why: String| PayError::Signing(why);
        let fee_payer: Address = requirements
            .extra
            .get("feePayer")
            .and_then(|f| f.as_str())
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| refuse("the challenge names no extra.feePayer".into()))?;
        if fee_payer == self.key.pubkey() {
            return Err(refuse("the fee payer must not be the buyer".into()));
        }
        let mut instructions = vec![
            exact::compute_unit_limit(EXACT_COMPUTE_UNITS),
            exact::compute_unit_price(EXACT_COMPUTE_UNIT_PRICE),
            order.transfer_from(self.key.pubkey()),
        ];
        instructions.extend(order.memo.map(token::memo));
        let blockhash = self
            .rpc
            .latest_blockhash()
            .await
            .map_err(|e| refuse(e.to_string()))?;
        let transaction = exact::partially_signed(&fee_payer, &self.key, &instructions, blockhash)
            .map_err(|e| refuse(e.to_string()))?;
        Ok(exact::payload(&transaction))
    }
}

#[async_trait]
impl Payer for SolanaPayer {
    fn can_pay(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme == self.scheme.name()
            && requirements.network.parse::<SolanaNetwork>() == Ok(self.network)
            && requirements.asset.parse::<Address>() == Ok(self.mint)
            && requirements
                .amount
                .parse::<u64>()
                .is_ok_and(|amount| amount <= self.max_amount)
    }

    async fn prepare(
        &self,
        requirements: &PaymentRequirements,
        purchase: &Purchase<'_>,
    ) -> Result<Prepared, PayError> {
        let refuse = |why: String| PayError::Signing(why);
        let recipient: Address = requirements.pay_to.parse().map_err(|_| {
            refuse(format!(
                "payTo {} is not a Solana address",
                requirements.pay_to
            ))
        })?;
        let amount: u64 = requirements
            .amount
            .parse()
            .map_err(|_| refuse(format!("amount {} is not an integer", requirements.amount)))?;
        // The memo names this buyer's own request body, whatever the challenge says.
        let memo = format!("{MEMO_PREFIX}{}", request_binding(purchase.body));
        if requirements.extra.get("memo").and_then(|m| m.as_str()) != Some(memo.as_str()) {
            return Err(refuse(
                "the challenge's memo does not name this request body".into(),
            ));
        }
        let order = TransferOrder {
            mint: self.mint,
            decimals: self.decimals,
            recipient,
            amount,
            memo: Some(&memo),
        };
        let (payload, transaction) = match self.scheme {
            SolanaScheme::X402Exact => (self.sign_exact(requirements, &order).await?, None),
            SolanaScheme::Direct => {
                let blockhash = self
                    .rpc
                    .latest_blockhash()
                    .await
                    .map_err(|e| refuse(e.to_string()))?;
                let transaction = transfer::sign(&self.key, &order, blockhash);
                let proof = TransferProof {
                    scheme: SCHEME.into(),
                    network: requirements.network.clone(),
                    transaction: transaction.signatures[0].to_string(),
                    payer: self.key.pubkey().to_string(),
                };
                (
                    serde_json::to_value(proof).map_err(|e| refuse(e.to_string()))?,
                    Some(transfer::to_base64(&transaction)),
                )
            }
        };
        Ok(Prepared {
            payment: PaymentPayload {
                x402_version: X402_VERSION,
                resource: purchase.resource.cloned(),
                accepted: requirements.clone(),
                payload,
                extensions: Default::default(),
            },
            transaction,
        })
    }

    /// On `solana-direct`: signs the transfer, sends it and waits until it is confirmed.
    /// A buyer that must not lose a payment uses [`Payer::prepare`] and records the
    /// transfer before [`Payer::broadcast`]ing it instead.
    async fn pay(
        &self,
        requirements: &PaymentRequirements,
        purchase: &Purchase<'_>,
    ) -> Result<PaymentPayload, PayError> {
        let prepared = self.prepare(requirements, purchase).await?;
        if let Some(transaction) = &prepared.transaction {
            self.broadcast(transaction).await?;
        }
        Ok(prepared.payment)
    }

    async fn broadcast(&self, transaction: &str) -> Result<(), PayError> {
        let transaction = transfer::from_base64(transaction)
            .ok_or_else(|| PayError::Signing("the recorded transfer does not decode".into()))?;
        transfer::land(&self.rpc, &transaction, LAND_TIMEOUT)
            .await
            .map_err(|error| PayError::NotLanded {
                settled_unpaid: matches!(error, LandError::Expired | LandError::Failed { .. }),
                reason: error.to_string(),
            })
    }

    fn header(&self, payment: &PaymentPayload) -> (&'static str, String) {
        if self.scheme == SolanaScheme::X402Exact {
            return d402_payment::payment_signature(payment);
        }
        let proof = serde_json::to_vec(&payment.payload).expect("a proof serializes");
        (
            "authorization",
            format!("Payment {}", URL_SAFE_NO_PAD.encode(proof)),
        )
    }
}
