//! `x402-base-escrow`: x402 `exact` paid into a per-task escrow. The challenge's `payTo` is
//! the escrow address of fresh terms the gateway issues (shown in `extra.d402Escrow`); a
//! payment is verified as for x402 and then **moved into the escrow before any work** (the
//! factory's `fund`, the payer recorded on chain); an accepted task is settled by the
//! contract straight to its payees, a failed one refunded. Every step reads the escrow's
//! stage and the factory's events first, so repeating it after a crash moves nothing twice.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use d402_payment::x402::{PaymentPayload, PaymentRequirements};
use d402_payment::{
    Account, Authorization, Completion, Expectation, PaymentError, PaymentKey, PaymentRail,
    RailError, RailId, ReadinessCheck,
};
use d402_protocol::{Amount, Payout, PayoutReason, Refund, Timestamp};
use serde::{Deserialize, Serialize};

use super::bindings::TaskEscrowFactory;
use super::operator::{Closing, EscrowOperator, Stage};
use super::{ESCROW_EXTRA, EscrowTerms, TermsError, TermsIssuer};
use crate::chain::ChainError;
use crate::eip3009::ExactEvmPayload;
use crate::exact::{ExactVerifier, MIN_SETTLEMENT_WINDOW_SECS, TokenConfig};
use crate::network::EvmNetwork;

/// What the escrow rail is configured with.
#[derive(Debug, Clone)]
pub struct EscrowConfig {
    /// The chain (CAIP-2 `eip155:<id>`).
    pub network: EvmNetwork,
    /// The token and its EIP-712 domain.
    pub token: TokenConfig,
    /// The deployed `TaskEscrowFactory`.
    pub factory: Address,
    /// Seconds the gateway has to settle after the buyer's authorization window closes;
    /// after that anyone may reclaim the funds for the buyer.
    pub settle_window_secs: u64,
    /// The commission cap written into every escrow's terms, basis points.
    pub max_commission_bps: u16,
    /// The longest wait for a transaction's receipt before the step is retried later.
    pub receipt_timeout: Duration,
}

/// What the rail keeps with the task (the authorization's proof): the terms and the
/// payment that funded the escrow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Funding {
    terms: EscrowTerms,
    payment: PaymentPayload,
}

/// The Base task escrow rail.
pub struct EscrowRail {
    config: EscrowConfig,
    verifier: ExactVerifier,
    asset: String,
    factory: Account,
    issuer: TermsIssuer,
    operator: Arc<EscrowOperator>,
    /// Fundings in progress, by escrow: the same payment presented again meanwhile waits
    /// for the first funding to be mined and finds it, instead of racing it.
    funding: std::sync::Mutex<std::collections::HashMap<Address, Arc<tokio::sync::Mutex<()>>>>,
}

impl EscrowRail {
    /// The rail on the chain behind `rpc_url`; `operator_key` settles and refunds (and pays
    /// the gas) and keys the terms' salts (nothing is contacted yet).
    pub fn connect(
        config: EscrowConfig,
        rpc_url: url::Url,
        operator_key: PrivateKeySigner,
    ) -> Self {
        // The salt key is derived from the operator key: stateless, stable across restarts,
        // and never the key itself.
        let secret = keccak256(
            [
                b"d402 escrow terms v1".as_slice(),
                operator_key.credential().to_bytes().as_slice(),
            ]
            .concat(),
        );
        let operator = Arc::new(EscrowOperator::new(
            operator_key,
            rpc_url,
            config.factory,
            config.token.asset,
        ));
        Self {
            verifier: ExactVerifier::new(config.network, &config.token),
            asset: config.token.asset.to_checksum(None),
            factory: Account::Evm(config.factory.into_array()),
            issuer: TermsIssuer::new(
                secret,
                config.factory,
                config.token.asset,
                operator.address(),
                config.max_commission_bps,
            ),
            operator,
            funding: Default::default(),
            config,
        }
    }

    /// The operator (to drive escrows directly, e.g. in the finalizer's tests).
    pub fn operator(&self) -> &Arc<EscrowOperator> {
        &self.operator
    }

    /// The terms a payment offers back, if this gateway issued them.
    fn terms_of(&self, payment: &PaymentPayload) -> Result<EscrowTerms, PaymentError> {
        let offer = TermsIssuer::read_offer(&payment.accepted.extra)
            .map_err(|e| PaymentError::Malformed(e.to_string()))?;
        self.issuer.recognize(&offer).map_err(|e| match e {
            TermsError::Forged => PaymentError::WrongPayee(e.to_string()),
            TermsError::Missing(_) => PaymentError::Malformed(e.to_string()),
        })
    }

    /// Moves the payment into its escrow (or finds it already there, funded by this
    /// payment): the funding transaction. Concurrent retries of one payment race to fund
    /// it; the chain decides, so every one of them finds the same funding.
    async fn fund(
        &self,
        terms: &EscrowTerms,
        payment: &ExactEvmPayload,
    ) -> Result<B256, PaymentError> {
        let escrow = terms.escrow_address(self.config.factory);
        let lock = self
            .funding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(escrow)
            .or_default()
            .clone();
        let funded = {
            let _one_at_a_time = lock.lock().await;
            self.fund_once(terms, payment).await
        };
        let mut funding = self.funding.lock().unwrap_or_else(|e| e.into_inner());
        // The map's entry and this one: nobody else waits for this escrow.
        if Arc::strong_count(&lock) == 2 {
            funding.remove(&escrow);
        }
        funded
    }

    /// [`Self::fund`] for one caller at a time per escrow.
    async fn fund_once(
        &self,
        terms: &EscrowTerms,
        payment: &ExactEvmPayload,
    ) -> Result<B256, PaymentError> {
        let unavailable = |e: ChainError| PaymentError::Unavailable(e.to_string());
        let attempt = match self.operator.stage(terms).await.map_err(unavailable)? {
            Stage::Unfunded => self.send_funding(terms, payment).await,
            Stage::Funded | Stage::Closed => Ok(()),
        };
        if let Some(transaction) = self.funded_by(terms, payment).await? {
            return Ok(transaction);
        }
        attempt?;
        Err(PaymentError::AlreadyUsed)
    }

    /// Checks the payer's balance and nonce and a simulated funding, then sends it and
    /// waits for it to be mined.
    async fn send_funding(
        &self,
        terms: &EscrowTerms,
        payment: &ExactEvmPayload,
    ) -> Result<(), PaymentError> {
        let unavailable = |e: ChainError| PaymentError::Unavailable(e.to_string());
        let from = payment.authorization.from;
        let chain = self.operator.chain();
        let (balance, used, simulated) = tokio::join!(
            chain.balance(from),
            chain.authorization_used(from, payment.authorization.nonce),
            self.operator.simulate_fund(terms, payment),
        );
        if used.map_err(unavailable)? {
            return Err(PaymentError::AlreadyUsed);
        }
        let balance = balance.map_err(unavailable)?;
        if balance < payment.authorization.value {
            return Err(PaymentError::InsufficientFunds(format!(
                "{from} holds {balance} atomic units, the payment needs {}",
                payment.authorization.value
            )));
        }
        simulated
            .map_err(unavailable)?
            .map_err(PaymentError::WouldFail)?;
        let transaction = self
            .operator
            .fund(terms, payment)
            .await
            .map_err(unavailable)?;
        tracing::info!(%transaction, "escrow funding submitted");
        chain
            .wait_receipt(transaction, self.config.receipt_timeout)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The transaction that funded `terms`' escrow with `payment`, if one did: the escrow
    /// is funded, its payer is the payment's, and the payment's nonce is used.
    async fn funded_by(
        &self,
        terms: &EscrowTerms,
        payment: &ExactEvmPayload,
    ) -> Result<Option<B256>, PaymentError> {
        let unavailable = |e: ChainError| PaymentError::Unavailable(e.to_string());
        let authorization = &payment.authorization;
        let (stage, payer, used) = tokio::join!(
            self.operator.stage(terms),
            self.operator.payer(terms),
            self.operator
                .chain()
                .authorization_used(authorization.from, authorization.nonce),
        );
        let ours = stage.map_err(unavailable)? != Stage::Unfunded
            && payer.map_err(unavailable)? == authorization.from
            && used.map_err(unavailable)?;
        if !ours {
            return Ok(None);
        }
        self.operator.funding(terms).await.map_err(unavailable)
    }

    fn funding_of(authorization: &Authorization) -> Result<Funding, RailError> {
        serde_json::from_value(authorization.proof.clone())
            .map_err(|e| RailError::Failed(format!("stored escrow funding unreadable: {e}")))
    }

    /// Sends `step` and waits for it: `Retry` unless it was mined successfully.
    async fn confirm(&self, step: Result<B256, ChainError>, what: &str) -> Result<B256, RailError> {
        let retry = |e: ChainError| RailError::Retry(format!("{what}: {e}"));
        let transaction = step.map_err(retry)?;
        tracing::info!(%transaction, "escrow {what} submitted");
        let receipt = self
            .operator
            .chain()
            .wait_receipt(transaction, self.config.receipt_timeout)
            .await
            .map_err(retry)?;
        if receipt.status() {
            Ok(transaction)
        } else {
            // Closed by someone else first (a reclaim, a concurrent call): the next
            // attempt reads how.
            Err(RailError::Retry(format!("{what} {transaction} reverted")))
        }
    }
}

/// The contract payouts of `payouts`, each to the EVM address it names; refused (as the
/// contract would refuse them) when they pay more than the escrow holds or a commission
/// above the terms' cap.
fn contract_payouts(
    terms: &EscrowTerms,
    payouts: &[Payout],
) -> Result<Vec<TaskEscrowFactory::Payout>, RailError> {
    let total: u128 = payouts.iter().map(|p| u128::from(p.amount.micros())).sum();
    let commission: u128 = payouts
        .iter()
        .filter(|p| p.reason == PayoutReason::CreatorCommission)
        .map(|p| u128::from(p.amount.micros()))
        .sum();
    let cap = u128::from(terms.amount) * u128::from(terms.max_commission_bps) / 10_000;
    if total > u128::from(terms.amount) || commission > cap {
        return Err(RailError::Failed(format!(
            "the payouts ({total} atomic units, {commission} of it commission) exceed the escrow's {} or its commission cap of {cap}",
            terms.amount
        )));
    }
    payouts
        .iter()
        .map(|payout| {
            let address: Address = payout
                .address
                .as_deref()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| {
                    RailError::Failed(format!(
                        "payout to {} has no EVM address to pay on chain",
                        payout.account
                    ))
                })?;
            Ok(TaskEscrowFactory::Payout {
                payee: address,
                amount: U256::from(payout.amount.micros()),
                commission: payout.reason == PayoutReason::CreatorCommission,
            })
        })
        .collect()
}

/// The hash the `Settled` event binds: keccak256 of the RFC 8785 form of the payouts as
/// decided (before any transaction is recorded on them).
pub fn receipt_hash(payouts: &[Payout]) -> B256 {
    let decided: Vec<Payout> = payouts
        .iter()
        .map(|p| Payout {
            transaction: None,
            ..p.clone()
        })
        .collect();
    let value = serde_json::to_value(decided).expect("payouts serialize");
    keccak256(d402_protocol::canonical::to_vec(&value).expect("payouts are canonical JSON"))
}

#[async_trait]
impl PaymentRail for EscrowRail {
    fn id(&self) -> RailId {
        RailId::X402BaseEscrow
    }

    fn scheme(&self) -> &str {
        "exact"
    }

    fn network(&self) -> &str {
        &self.verifier.network
    }

    fn asset(&self) -> &str {
        &self.asset
    }

    /// The factory: each task's `payTo` is an escrow it deploys.
    fn pay_to(&self) -> &Account {
        &self.factory
    }

    fn claims(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme == self.scheme()
            && requirements.network == self.verifier.network
            && requirements.extra.get(ESCROW_EXTRA).is_some()
    }

    fn requirements(&self, price: Amount, max_timeout_seconds: u64) -> PaymentRequirements {
        let now = Timestamp::now().unix_millis() / 1000;
        let deadline = now + max_timeout_seconds + self.config.settle_window_secs;
        let (terms, offer) = self.issuer.issue(price.micros(), deadline);
        let mut extra = self.verifier.domain_extra();
        extra.insert(
            ESCROW_EXTRA.into(),
            serde_json::to_value(offer).expect("offers serialize"),
        );
        PaymentRequirements {
            scheme: self.scheme().into(),
            network: self.verifier.network.clone(),
            amount: price.micros().to_string(),
            asset: self.asset.clone(),
            pay_to: terms.escrow_address(self.config.factory).to_checksum(None),
            max_timeout_seconds,
            extra: extra.into(),
        }
    }

    fn identify(&self, payment: &PaymentPayload) -> Result<PaymentKey, PaymentError> {
        Ok(self.verifier.key_of(&self.verifier.read(payment)?))
    }

    async fn authorize(
        &self,
        payment: &PaymentPayload,
        expected: &Expectation<'_>,
    ) -> Result<Authorization, PaymentError> {
        let evm = self.verifier.read(payment)?;
        let terms = self.terms_of(payment)?;
        let escrow = terms.escrow_address(self.config.factory);
        let amount = self.verifier.check(&evm, expected, escrow)?;
        if evm.authorization.value != U256::from(terms.amount) {
            return Err(PaymentError::Malformed(format!(
                "the authorization pays {} atomic units; the escrow takes exactly {}",
                evm.authorization.value, terms.amount
            )));
        }
        let now = expected.now.unix_millis() / 1000;
        if terms.deadline < now + MIN_SETTLEMENT_WINDOW_SECS {
            return Err(PaymentError::Expired);
        }
        let transaction = self.fund(&terms, &evm).await?;
        Ok(Authorization {
            rail: RailId::X402BaseEscrow,
            network: self.verifier.network.clone(),
            payer: Account::Evm(evm.authorization.from.into_array()),
            payment_key: self.verifier.key_of(&evm),
            amount,
            reference: transaction.to_string(),
            holds: Vec::new(),
            proof: serde_json::to_value(Funding {
                terms,
                payment: payment.clone(),
            })
            .map_err(|e| PaymentError::Malformed(e.to_string()))?,
        })
    }

    async fn readiness(&self) -> Vec<ReadinessCheck> {
        let chain = self.operator.chain();
        let factory = self.config.factory;
        let contract = async {
            let deployed = match chain.has_code(factory).await {
                Ok(true) => {
                    ReadinessCheck::new("escrowFactory", true, format!("{factory} deployed"))
                }
                Ok(false) => ReadinessCheck::new(
                    "escrowFactory",
                    false,
                    format!("{factory} has no code: deploy one with `d402 escrow deploy`"),
                ),
                Err(e) => ReadinessCheck::new("escrowFactory", false, e.to_string()),
            };
            let gas = chain
                .gas_check("operatorGas", self.operator.address())
                .await;
            vec![deployed, gas]
        };
        chain
            .readiness(self.config.network.chain_id(), contract)
            .await
    }

    fn settles_externally(&self) -> bool {
        true
    }

    fn pays_payees(&self) -> bool {
        true
    }

    async fn capture(
        &self,
        authorization: &Authorization,
        payouts: &[Payout],
    ) -> Result<Completion, RailError> {
        let Funding { terms, .. } = Self::funding_of(authorization)?;
        let retry = |e: ChainError| RailError::Retry(e.to_string());
        let settled = |transaction: B256| Completion {
            reference: Some(transaction.to_string()),
            ledger: Vec::new(),
        };
        match self.operator.stage(&terms).await.map_err(retry)? {
            Stage::Unfunded => Err(RailError::Failed("the escrow was never funded".into())),
            Stage::Closed => match self.operator.closing(&terms).await.map_err(retry)? {
                Some(Closing::Settled(transaction)) => Ok(settled(transaction)),
                Some(Closing::Refunded(transaction)) => Err(RailError::Failed(format!(
                    "the escrow was returned to the payer (transaction {transaction}) before it was settled"
                ))),
                None => Err(RailError::Retry(
                    "the escrow is closed but its event is not visible yet".into(),
                )),
            },
            Stage::Funded
                if self.operator.chain().now().await.map_err(retry)? >= terms.deadline =>
            {
                // Too late to settle: the money goes back to the buyer now, by anyone's
                // reclaim; the next call records how the escrow closed.
                let transaction = self
                    .confirm(self.operator.refund(&terms).await, "reclaim")
                    .await?;
                Err(RailError::Failed(format!(
                    "the escrow deadline passed before settlement; it was returned to the payer (transaction {transaction})"
                )))
            }
            Stage::Funded => {
                let contract = contract_payouts(&terms, payouts)?;
                let transaction = self
                    .confirm(
                        self.operator
                            .settle(&terms, contract, receipt_hash(payouts))
                            .await,
                        "settlement",
                    )
                    .await?;
                Ok(settled(transaction))
            }
        }
    }

    async fn void(
        &self,
        authorization: &Authorization,
        _refund: &Refund,
    ) -> Result<Completion, RailError> {
        let Funding { terms, .. } = Self::funding_of(authorization)?;
        let retry = |e: ChainError| RailError::Retry(e.to_string());
        let refunded = |transaction: B256| Completion {
            reference: Some(transaction.to_string()),
            ledger: Vec::new(),
        };
        match self.operator.stage(&terms).await.map_err(retry)? {
            // Nothing reached the escrow: nothing to return.
            Stage::Unfunded => Ok(Completion::default()),
            Stage::Closed => match self.operator.closing(&terms).await.map_err(retry)? {
                Some(Closing::Refunded(transaction)) => Ok(refunded(transaction)),
                Some(Closing::Settled(transaction)) => Err(RailError::Failed(format!(
                    "the escrow was already settled (transaction {transaction})"
                ))),
                None => Err(RailError::Retry(
                    "the escrow is closed but its event is not visible yet".into(),
                )),
            },
            Stage::Funded => {
                let transaction = self
                    .confirm(self.operator.refund(&terms).await, "refund")
                    .await?;
                Ok(refunded(transaction))
            }
        }
    }
}
