//! The operator's side of the escrow factory over JSON-RPC: reading an escrow's stage,
//! funding it with the buyer's authorization, settling, refunding and reclaiming it (one
//! transaction at a time from the operator's key), and finding how an escrow was closed
//! from the factory's events — so every call can be repeated after a crash without moving
//! money twice.

use alloy::primitives::{Address, B256};
use alloy::providers::DynProvider;
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use url::Url;

use super::EscrowTerms;
use super::bindings::TaskEscrowFactory::{self, Funded, Payout, Refunded, Settled};
use crate::chain::{Chain, ChainError, rpc, signing_provider, simulation};
use crate::eip3009::ExactEvmPayload;

/// Where an escrow is in its life (the contract's `Stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nothing deposited yet.
    Unfunded,
    /// The payer's funds are held.
    Funded,
    /// Settled, refunded or reclaimed.
    Closed,
}

/// Deploys a `TaskEscrowFactory` from `key` (which pays the gas) through `rpc_url`; its
/// address once mined.
pub async fn deploy_factory(key: PrivateKeySigner, rpc_url: Url) -> Result<Address, ChainError> {
    let provider = signing_provider(key, rpc_url);
    let factory = TaskEscrowFactory::deploy(&provider)
        .await
        .map_err(rpc("deploying TaskEscrowFactory"))?;
    Ok(*factory.address())
}

/// How a closed escrow was closed, and by which transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Paid out to the payees (`Settled`).
    Settled(B256),
    /// Returned to the payer (`Refunded`: a refund or a reclaim).
    Refunded(B256),
}

type Factory = TaskEscrowFactory::TaskEscrowFactoryInstance<DynProvider>;

/// The escrow factory as its operator drives it.
pub struct EscrowOperator {
    address: Address,
    factory: Factory,
    chain: Chain,
    sending: tokio::sync::Mutex<()>,
}

impl EscrowOperator {
    /// The operator `key` (it also pays the gas) driving `factory` of `token` escrows
    /// through `rpc_url` (nothing is contacted yet).
    pub fn new(key: PrivateKeySigner, rpc_url: Url, factory: Address, token: Address) -> Self {
        let address = key.address();
        let provider = signing_provider(key, rpc_url.clone());
        Self {
            address,
            factory: TaskEscrowFactory::new(factory, provider),
            chain: Chain::connect(rpc_url, token),
            sending: tokio::sync::Mutex::new(()),
        }
    }

    /// The operator's address (the terms' `operator`; it pays for the transactions).
    pub fn address(&self) -> Address {
        self.address
    }

    /// The factory's address.
    pub fn factory(&self) -> Address {
        *self.factory.address()
    }

    /// The chain the factory is on.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The stage of `terms`' escrow.
    pub async fn stage(&self, terms: &EscrowTerms) -> Result<Stage, ChainError> {
        let stage = self
            .factory
            .stageOf(terms.escrow_address(self.factory()))
            .call()
            .await
            .map_err(rpc("stageOf"))?;
        Ok(match stage {
            0 => Stage::Unfunded,
            1 => Stage::Funded,
            _ => Stage::Closed,
        })
    }

    /// Who funded `terms`' escrow (zero before it was).
    pub async fn payer(&self, terms: &EscrowTerms) -> Result<Address, ChainError> {
        self.factory
            .payerOf(terms.escrow_address(self.factory()))
            .call()
            .await
            .map_err(rpc("payerOf"))
    }

    /// Runs the funding without sending it (`eth_call`): `Ok(Err(reason))` when the
    /// factory or the token would revert it.
    pub async fn simulate_fund(
        &self,
        terms: &EscrowTerms,
        payment: &ExactEvmPayload,
    ) -> Result<Result<(), String>, ChainError> {
        simulation(self.fund_call(terms, payment).call().await)
    }

    fn fund_call<'a>(
        &'a self,
        terms: &EscrowTerms,
        payment: &ExactEvmPayload,
    ) -> alloy::contract::SolCallBuilder<&'a DynProvider, TaskEscrowFactory::fundCall> {
        let authorization = &payment.authorization;
        self.factory.fund(
            terms.to_sol(),
            authorization.from,
            authorization.valid_after,
            authorization.valid_before,
            authorization.nonce,
            payment.signature.clone(),
        )
    }

    /// Sends the funding of `terms`' escrow with the buyer's `payment`.
    pub async fn fund(
        &self,
        terms: &EscrowTerms,
        payment: &ExactEvmPayload,
    ) -> Result<B256, ChainError> {
        self.send(self.fund_call(terms, payment)).await
    }

    /// Sends the settlement of `terms`' escrow: `payouts`, the rest to the payer, the
    /// event carrying `receipt_hash`.
    pub async fn settle(
        &self,
        terms: &EscrowTerms,
        payouts: Vec<Payout>,
        receipt_hash: B256,
    ) -> Result<B256, ChainError> {
        self.send(self.factory.settle(terms.to_sol(), payouts, receipt_hash))
            .await
    }

    /// Sends the refund of `terms`' escrow to its payer: the operator's `refund` before the
    /// deadline, `reclaim` (anyone's) once the chain's clock passed it.
    pub async fn refund(&self, terms: &EscrowTerms) -> Result<B256, ChainError> {
        if self.chain.now().await? >= terms.deadline {
            self.send(self.factory.reclaim(terms.to_sol())).await
        } else {
            self.send(self.factory.refund(terms.to_sol())).await
        }
    }

    async fn send<C: SolCall>(
        &self,
        call: alloy::contract::SolCallBuilder<&DynProvider, C>,
    ) -> Result<B256, ChainError> {
        let _one_at_a_time = self.sending.lock().await;
        let pending = call.send().await.map_err(rpc("eth_sendRawTransaction"))?;
        Ok(*pending.tx_hash())
    }

    /// The transaction that funded `terms`' escrow, if one did.
    pub async fn funding(&self, terms: &EscrowTerms) -> Result<Option<B256>, ChainError> {
        Ok(self
            .events(terms, Funded::SIGNATURE_HASH)
            .await?
            .first()
            .copied())
    }

    /// How `terms`' escrow was closed, if it was.
    pub async fn closing(&self, terms: &EscrowTerms) -> Result<Option<Closing>, ChainError> {
        if let Some(settled) = self.events(terms, Settled::SIGNATURE_HASH).await?.first() {
            return Ok(Some(Closing::Settled(*settled)));
        }
        let refunded = self.events(terms, Refunded::SIGNATURE_HASH).await?;
        Ok(refunded.first().map(|t| Closing::Refunded(*t)))
    }

    /// The transactions of the factory's `event` logs for `terms`' salt.
    async fn events(&self, terms: &EscrowTerms, event: B256) -> Result<Vec<B256>, ChainError> {
        let filter = Filter::new()
            .address(self.factory())
            .event_signature(event)
            .topic1(terms.salt)
            .topic2(terms.escrow_address(self.factory()).into_word())
            .from_block(0);
        let logs = self.chain.logs(&filter).await?;
        Ok(logs.iter().filter_map(|log| log.transaction_hash).collect())
    }
}
