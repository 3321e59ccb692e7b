//! The EVM chain as the rail sees it, over JSON-RPC: token reads (balance, authorization
//! state), a simulated transfer (`eth_call`), the on-chain record of a used authorization,
//! and the built-in facilitator's submission of `transferWithAuthorization` from its gas key.

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{Filter, TransactionReceipt};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use url::Url;

use crate::eip3009::ExactEvmPayload;
use d402_payment::ReadinessCheck;

/// Longest wait for one JSON-RPC answer: a stalled endpoint fails the call (and the rail
/// retries later) instead of holding a payment or a restart forever.
const RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A JSON-RPC client for `url` that can reach `https` endpoints (installs the ring TLS
/// provider first if the process has none) and gives up after [`RPC_TIMEOUT`].
pub(crate) fn rpc_client(url: Url) -> RpcClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(RPC_TIMEOUT)
        .build()
        .expect("the TLS provider is installed");
    RpcClient::new_http_with_client(http, url)
}

/// A provider that signs and sends transactions from `key` through `rpc_url`. The nonce
/// is read from the node (pending count) for every transaction, never reserved locally:
/// a transaction that fails before it is sent (its gas estimate reverts) leaves no gap
/// that would hold every later one back. Callers send one transaction at a time per key.
pub(crate) fn signing_provider(key: PrivateKeySigner, rpc_url: Url) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(key))
        .connect_client(rpc_client(rpc_url))
        .erased()
}

/// What an `eth_call` simulation says: `Ok(Ok(()))` it would succeed, `Ok(Err(reason))`
/// the contract would revert, `Err` the endpoint did not answer.
pub(crate) fn simulation<T>(
    outcome: Result<T, alloy::contract::Error>,
) -> Result<Result<(), String>, ChainError> {
    match outcome {
        Ok(_) => Ok(Ok(())),
        Err(alloy::contract::Error::TransportError(e)) if e.as_error_resp().is_none() => {
            Err(ChainError(format!("eth_call: {e}")))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Contract bindings (generated; EIP-3009 calls take more than seven arguments).
#[allow(clippy::too_many_arguments)]
mod bindings {
    alloy::sol! {
        /// The EIP-3009 token surface the rail uses (Base USDC, FiatToken v2.2, has all of it).
        #[sol(rpc)]
        interface Eip3009Token {
            function balanceOf(address account) external view returns (uint256);
            function transfer(address to, uint256 value) external returns (bool);
            function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
            function transferWithAuthorization(
                address from,
                address to,
                uint256 value,
                uint256 validAfter,
                uint256 validBefore,
                bytes32 nonce,
                bytes signature
            ) external;
            event Transfer(address indexed from, address indexed to, uint256 value);
            event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
        }
    }
}
pub(crate) use bindings::Eip3009Token;

/// A JSON-RPC call failed or answered something unexpected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EVM RPC: {0}")]
pub struct ChainError(pub String);

pub(crate) fn rpc<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> ChainError {
    move |e| ChainError(format!("{what}: {e}"))
}

/// How a transfer that used an authorization ended up on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsedAuthorization {
    /// A transaction that moved the value from the payer to the payee.
    Paid(B256),
    /// The nonce is used, but not by the expected transfer (cancelled, or signed again for
    /// another payee): this payment can never be collected.
    Elsewhere,
}

/// The token on one chain, read over JSON-RPC.
#[derive(Clone)]
pub struct Chain {
    provider: DynProvider,
    token: Token,
}

type Token = Eip3009Token::Eip3009TokenInstance<DynProvider>;

impl Chain {
    /// The token at `token` on the chain behind `rpc_url` (nothing is contacted yet).
    pub fn connect(rpc_url: Url, token: Address) -> Self {
        let provider = ProviderBuilder::new()
            .connect_client(rpc_client(rpc_url))
            .erased();
        Self {
            token: Eip3009Token::new(token, provider.clone()),
            provider,
        }
    }

    /// The chain id the RPC endpoint reports.
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        self.provider
            .get_chain_id()
            .await
            .map_err(rpc("eth_chainId"))
    }

    /// The chain's readiness and `then`'s: the RPC answers (if not, nothing else is
    /// checked) with the `expected` chain id.
    pub(crate) async fn readiness(
        &self,
        expected: u64,
        then: impl std::future::Future<Output = Vec<ReadinessCheck>>,
    ) -> Vec<ReadinessCheck> {
        let chain_id = match self.chain_id().await {
            Ok(id) => id,
            Err(e) => return vec![ReadinessCheck::new("rpc", false, e.to_string())],
        };
        let mut checks = vec![
            ReadinessCheck::new("rpc", true, "reachable"),
            ReadinessCheck::new(
                "chainId",
                chain_id == expected,
                format!("the RPC reports chain id {chain_id}, the rail expects {expected}"),
            ),
        ];
        checks.extend(then.await);
        checks
    }

    /// The check `name` that `account` holds gas to send transactions.
    pub(crate) async fn gas_check(&self, name: &str, account: Address) -> ReadinessCheck {
        match self.gas_balance(account).await {
            Ok(wei) => {
                ReadinessCheck::new(name, !wei.is_zero(), format!("{account} holds {wei} wei"))
                    .with_balance("ETH", u128::try_from(wei).unwrap_or(u128::MAX), 18)
            }
            Err(e) => ReadinessCheck::new(name, false, e.to_string()),
        }
    }

    /// The native (gas) balance of `account`, in wei.
    pub async fn gas_balance(&self, account: Address) -> Result<U256, ChainError> {
        self.provider
            .get_balance(account)
            .await
            .map_err(rpc("eth_getBalance"))
    }

    /// The token balance of `account`, in atomic units.
    pub async fn balance(&self, account: Address) -> Result<U256, ChainError> {
        self.token
            .balanceOf(account)
            .call()
            .await
            .map_err(rpc("balanceOf"))
    }

    /// Whether `authorizer` has used (or cancelled) `nonce`.
    pub async fn authorization_used(
        &self,
        authorizer: Address,
        nonce: B256,
    ) -> Result<bool, ChainError> {
        self.token
            .authorizationState(authorizer, nonce)
            .call()
            .await
            .map_err(rpc("authorizationState"))
    }

    /// Runs the transfer without sending it (`eth_call` from `sender`): `Ok(Err(reason))`
    /// when the token would revert it.
    pub async fn simulate(
        &self,
        payment: &ExactEvmPayload,
        sender: Address,
    ) -> Result<Result<(), String>, ChainError> {
        simulation(
            transfer_call(&self.token, payment)
                .from(sender)
                .call()
                .await,
        )
    }

    /// How `payment`'s authorization was used on chain, if it was: the transaction whose
    /// `AuthorizationUsed(from, nonce)` log also moved the value to the payee.
    pub async fn find_use(
        &self,
        payment: &ExactEvmPayload,
    ) -> Result<Option<UsedAuthorization>, ChainError> {
        let terms = &payment.authorization;
        if !self.authorization_used(terms.from, terms.nonce).await? {
            return Ok(None);
        }
        let filter = Filter::new()
            .address(*self.token.address())
            .event_signature(Eip3009Token::AuthorizationUsed::SIGNATURE_HASH)
            .topic1(terms.from.into_word())
            .topic2(terms.nonce)
            .from_block(0);
        let logs = self.logs(&filter).await?;
        let Some(transaction) = logs.iter().find_map(|log| log.transaction_hash) else {
            return Ok(Some(UsedAuthorization::Elsewhere));
        };
        let receipt = self.receipt(transaction).await?.ok_or_else(|| {
            ChainError(format!("no receipt for logged transaction {transaction}"))
        })?;
        Ok(Some(if self.pays(&receipt, payment) {
            UsedAuthorization::Paid(transaction)
        } else {
            UsedAuthorization::Elsewhere
        }))
    }

    /// Whether `receipt` holds the token's `Transfer(from, to, value)` of `payment`.
    fn pays(&self, receipt: &TransactionReceipt, payment: &ExactEvmPayload) -> bool {
        let terms = &payment.authorization;
        self.transfers(receipt, terms.from, terms.to, terms.value)
    }

    /// Whether `receipt` succeeded and holds the token's `Transfer(from, to, value)`.
    pub(crate) fn transfers(
        &self,
        receipt: &TransactionReceipt,
        from: Address,
        to: Address,
        value: U256,
    ) -> bool {
        receipt.status()
            && receipt.logs().iter().any(|log| {
                log.address() == *self.token.address()
                    && log.log_decode::<Eip3009Token::Transfer>().is_ok_and(|t| {
                        t.inner.from == from && t.inner.to == to && t.inner.value == value
                    })
            })
    }

    pub(crate) async fn receipt(
        &self,
        transaction: B256,
    ) -> Result<Option<TransactionReceipt>, ChainError> {
        self.provider
            .get_transaction_receipt(transaction)
            .await
            .map_err(rpc("eth_getTransactionReceipt"))
    }

    /// Waits for `transaction`'s receipt (polling, up to `timeout`): whether it paid.
    pub async fn wait_paid(
        &self,
        transaction: B256,
        payment: &ExactEvmPayload,
        timeout: Duration,
    ) -> Result<bool, ChainError> {
        let receipt = self.wait_receipt(transaction, timeout).await?;
        Ok(self.pays(&receipt, payment))
    }

    /// Waits for `transaction`'s receipt, polling with backoff, up to `timeout`.
    pub async fn wait_receipt(
        &self,
        transaction: B256,
        timeout: Duration,
    ) -> Result<TransactionReceipt, ChainError> {
        let start = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(receipt) = self.receipt(transaction).await? {
                return Ok(receipt);
            }
            if start.elapsed() >= timeout {
                return Err(ChainError(format!(
                    "transaction {transaction} not mined within {timeout:?}"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// The chain's latest block timestamp, in unix seconds (what contract deadlines are
    /// compared with).
    pub async fn now(&self) -> Result<u64, ChainError> {
        let block = self
            .provider
            .get_block_by_number(alloy::rpc::types::BlockNumberOrTag::Latest)
            .await
            .map_err(rpc("eth_getBlockByNumber"))?
            .ok_or_else(|| ChainError("the chain has no latest block".into()))?;
        Ok(block.header.timestamp)
    }

    /// The logs of `filter`.
    pub(crate) async fn logs(
        &self,
        filter: &Filter,
    ) -> Result<Vec<alloy::rpc::types::Log>, ChainError> {
        self.provider
            .get_logs(filter)
            .await
            .map_err(rpc("eth_getLogs"))
    }

    /// Whether `account` holds contract code.
    pub async fn has_code(&self, account: Address) -> Result<bool, ChainError> {
        let code = self
            .provider
            .get_code_at(account)
            .await
            .map_err(rpc("eth_getCode"))?;
        Ok(!code.is_empty())
    }
}

/// The built-in facilitator: submits transfers from its own gas key, one at a time so that
/// concurrent settlements never take the same account nonce.
pub struct GasSigner {
    address: Address,
    token: Token,
    sending: tokio::sync::Mutex<()>,
}

impl GasSigner {
    /// The gas key `key` submitting transfers of `token` through `rpc_url`.
    pub fn new(key: PrivateKeySigner, rpc_url: Url, token: Address) -> Self {
        let address = key.address();
        Self {
            token: Eip3009Token::new(token, signing_provider(key, rpc_url)),
            address,
            sending: tokio::sync::Mutex::new(()),
        }
    }

    /// The gas key's address (it pays for settlement transactions).
    pub fn address(&self) -> Address {
        self.address
    }

    /// Sends `transferWithAuthorization` for `payment`; returns its hash once the node took
    /// it (not yet mined).
    pub async fn submit(&self, payment: &ExactEvmPayload) -> Result<B256, ChainError> {
        let _one_at_a_time = self.sending.lock().await;
        let pending = transfer_call(&self.token, payment)
            .send()
            .await
            .map_err(rpc("eth_sendRawTransaction"))?;
        Ok(*pending.tx_hash())
    }
}

/// The token's `transferWithAuthorization` call for `payment`.
fn transfer_call<'a>(
    token: &'a Token,
    payment: &ExactEvmPayload,
) -> alloy::contract::SolCallBuilder<&'a DynProvider, Eip3009Token::transferWithAuthorizationCall> {
    let terms = &payment.authorization;
    token.transferWithAuthorization(
        terms.from,
        terms.to,
        terms.value,
        terms.valid_after,
        terms.valid_before,
        terms.nonce,
        payment.signature.clone(),
    )
}
