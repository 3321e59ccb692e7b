//! The gateway's x402 `exact` EVM rail: verifies an EIP-3009 authorization fully before any
//! work (terms, window, EIP-712 signer, balance, nonce state, a simulated transfer),
//! submits it after acceptance through the built-in facilitator and waits for the receipt,
//! and finds a transfer already on chain instead of sending a second one.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use async_trait::async_trait;
use d402_payment::x402::{PaymentPayload, PaymentRequirements};
use d402_payment::{
    Account, Authorization, Completion, Expectation, PaymentError, PaymentKey, PaymentRail,
    RailError, RailId, ReadinessCheck,
};
use d402_protocol::{Amount, Payout, Refund};

use crate::chain::{Chain, ChainError, GasSigner, UsedAuthorization};
use crate::eip3009::ExactEvmPayload;
use crate::exact::{ExactVerifier, TokenConfig};
use crate::facilitator::{Facilitator, RemoteFacilitator};
use crate::network::EvmNetwork;

/// What the rail is configured with.
#[derive(Clone)]
pub struct RailConfig {
    /// The chain (CAIP-2 `eip155:<id>`).
    pub network: EvmNetwork,
    /// The token and its EIP-712 domain.
    pub token: TokenConfig,
    /// Where payments go (`payTo`).
    pub pay_to: Address,
    /// The longest wait for a settlement transaction's receipt before it is retried later.
    pub receipt_timeout: Duration,
}

impl RailConfig {
    /// Base USDC on Base (`eip155:8453`, domain "USD Coin" / "2"), paid to `pay_to`, with a
    /// 60 s receipt wait.
    pub fn base_usdc(pay_to: Address) -> Self {
        Self {
            network: EvmNetwork::BASE,
            token: TokenConfig::base_usdc(),
            pay_to,
            receipt_timeout: Duration::from_secs(60),
        }
    }
}

/// The x402 `exact` rail on one EVM chain, settling through its own gas key.
pub struct X402EvmRail {
    config: RailConfig,
    verifier: ExactVerifier,
    asset: String,
    pay_to: Account,
    chain: Chain,
    facilitator: Facilitator,
}

impl X402EvmRail {
    /// The rail reading `chain` and settling with `facilitator`.
    pub fn new(config: RailConfig, chain: Chain, facilitator: Facilitator) -> Self {
        Self {
            verifier: ExactVerifier::new(config.network, &config.token),
            asset: config.token.asset.to_checksum(None),
            pay_to: Account::Evm(config.pay_to.into_array()),
            chain,
            facilitator,
            config,
        }
    }

    /// The rail on the chain behind `rpc_url`, settling with the built-in facilitator's
    /// `gas_key` (nothing is contacted yet).
    pub fn connect(config: RailConfig, rpc_url: url::Url, gas_key: PrivateKeySigner) -> Self {
        let chain = Chain::connect(rpc_url.clone(), config.token.asset);
        let signer = Arc::new(GasSigner::new(gas_key, rpc_url, config.token.asset));
        Self::new(config, chain, Facilitator::Builtin(signer))
    }

    /// The rail on the chain behind `rpc_url` (read to verify payments and reconcile),
    /// settling through the remote x402 facilitator at `facilitator`.
    pub fn with_remote_facilitator(
        config: RailConfig,
        rpc_url: url::Url,
        facilitator: url::Url,
    ) -> Self {
        let chain = Chain::connect(rpc_url, config.token.asset);
        Self::new(
            config,
            chain,
            Facilitator::Remote(RemoteFacilitator::new(facilitator)),
        )
    }

    /// Balance, nonce state, a simulated transfer and (with a remote facilitator) its
    /// verdict, read concurrently.
    async fn check_on_chain(
        &self,
        document: &PaymentPayload,
        payment: &ExactEvmPayload,
    ) -> Result<(), PaymentError> {
        let terms = &payment.authorization;
        let unavailable = |e: ChainError| PaymentError::Unavailable(e.to_string());
        let (balance, used, simulated, verdict) = tokio::join!(
            self.chain.balance(terms.from),
            self.chain.authorization_used(terms.from, terms.nonce),
            self.chain
                .simulate(payment, self.facilitator.sender(self.config.pay_to)),
            self.facilitator.verify(document),
        );
        if used.map_err(unavailable)? {
            return Err(PaymentError::AlreadyUsed);
        }
        let balance = balance.map_err(unavailable)?;
        if balance < terms.value {
            return Err(PaymentError::InsufficientFunds(format!(
                "{} holds {balance} atomic units, the payment needs {}",
                terms.from, terms.value
            )));
        }
        simulated
            .map_err(unavailable)?
            .map_err(PaymentError::WouldFail)?;
        verdict.map_err(unavailable)?.map_err(|reason| {
            PaymentError::WouldFail(format!("the facilitator refused it: {reason}"))
        })
    }

    /// Submits the transfer and waits for it; `Ok(None)` if it did not pay (reverted).
    async fn submit(
        &self,
        document: &PaymentPayload,
        payment: &ExactEvmPayload,
    ) -> Result<Option<B256>, ChainError> {
        let transaction = self.facilitator.submit(document, payment).await?;
        tracing::info!(%transaction, "x402 settlement submitted");
        let paid = self
            .chain
            .wait_paid(transaction, payment, self.config.receipt_timeout)
            .await?;
        Ok(paid.then_some(transaction))
    }
}

#[async_trait]
impl PaymentRail for X402EvmRail {
    fn id(&self) -> RailId {
        RailId::X402Base
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

    fn pay_to(&self) -> &Account {
        &self.pay_to
    }

    fn requirements(&self, price: Amount, max_timeout_seconds: u64) -> PaymentRequirements {
        PaymentRequirements {
            scheme: self.scheme().into(),
            network: self.verifier.network.clone(),
            amount: price.micros().to_string(),
            asset: self.asset.clone(),
            pay_to: self.config.pay_to.to_checksum(None),
            max_timeout_seconds,
            extra: self.verifier.domain_extra().into(),
        }
    }

    fn claims(&self, requirements: &PaymentRequirements) -> bool {
        requirements.scheme == self.scheme()
            && requirements.network == self.verifier.network
            && requirements
                .extra
                .get(crate::escrow::ESCROW_EXTRA)
                .is_none()
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
        let amount = self.verifier.check(&evm, expected, self.config.pay_to)?;
        self.check_on_chain(payment, &evm).await?;
        Ok(Authorization {
            rail: RailId::X402Base,
            network: self.verifier.network.clone(),
            payer: Account::Evm(evm.authorization.from.into_array()),
            payment_key: self.verifier.key_of(&evm),
            amount,
            reference: String::new(),
            holds: Vec::new(),
            // The whole document: a remote facilitator settles it as the buyer sent it.
            proof: serde_json::to_value(payment)
                .map_err(|e| PaymentError::Malformed(e.to_string()))?,
        })
    }

    async fn readiness(&self) -> Vec<ReadinessCheck> {
        let facilitator = async {
            vec![
                self.facilitator
                    .readiness(&self.chain, &self.verifier.network)
                    .await,
            ]
        };
        self.chain
            .readiness(self.config.network.chain_id(), facilitator)
            .await
    }

    fn settles_externally(&self) -> bool {
        true
    }

    fn pays_commissions(&self) -> bool {
        // The price lands at the provider's payTo; nothing pays creators onward yet.
        false
    }

    async fn capture(
        &self,
        authorization: &Authorization,
        _payouts: &[Payout],
    ) -> Result<Completion, RailError> {
        let unreadable = |e: String| RailError::Failed(format!("stored payment unreadable: {e}"));
        let document: PaymentPayload = serde_json::from_value(authorization.proof.clone())
            .map_err(|e| unreadable(e.to_string()))?;
        let payment: ExactEvmPayload = document.typed().map_err(|e| unreadable(e.to_string()))?;
        let retry = |e: ChainError| RailError::Retry(e.to_string());
        let paid = |transaction: B256| Completion {
            reference: Some(transaction.to_string()),
            ledger: Vec::new(),
        };
        // Idempotent: a transfer already on chain (sent before a crash, or by anyone else
        // holding the authorization) is recorded, never sent again.
        match self.chain.find_use(&payment).await.map_err(retry)? {
            Some(UsedAuthorization::Paid(transaction)) => return Ok(paid(transaction)),
            Some(UsedAuthorization::Elsewhere) => {
                return Err(RailError::Failed(
                    "the payer used or cancelled this authorization's nonce elsewhere".into(),
                ));
            }
            None => {}
        }
        let now = d402_protocol::Timestamp::now().unix_millis() / 1000;
        if payment.authorization.valid_before <= U256::from(now) {
            return Err(RailError::Failed(
                "the authorization expired before it could be settled; the buyer was not charged"
                    .into(),
            ));
        }
        match self.submit(&document, &payment).await.map_err(retry)? {
            Some(transaction) => Ok(paid(transaction)),
            // Reverted: someone else may have used it first; the next call finds out.
            None => Err(RailError::Retry(
                "the settlement transaction reverted".into(),
            )),
        }
    }

    async fn void(
        &self,
        _authorization: &Authorization,
        _refund: &Refund,
    ) -> Result<Completion, RailError> {
        // x402 `exact` settles only accepted tasks: nothing was submitted, nothing to undo.
        Ok(Completion::default())
    }
}
