//! Paying what a provider owes from a payout hot key: token transfers signed locally, so
//! that the signed bytes and their hash can be recorded before anything is sent, and a
//! restart finds the transfer on chain or sends exactly the same bytes again.

use std::time::Duration;

use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkWallet, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use url::Url;

use crate::chain::{Chain, ChainError, Eip3009Token, rpc_client};

/// A token transfer signed but not necessarily sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransfer {
    /// Its transaction hash.
    pub transaction: B256,
    /// The signed transaction (EIP-2718 bytes).
    pub raw: Bytes,
}

/// Where a recorded transfer stands on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Mined and it moved the value to the payee.
    Paid,
    /// Mined without moving it (reverted): the payout is still owed.
    Failed,
    /// Not mined (yet).
    Pending,
}

/// The payout hot key on one token.
pub struct PayoutSender {
    provider: DynProvider,
    wallet: EthereumWallet,
    from: Address,
    token: Address,
    chain: Chain,
}

impl PayoutSender {
    /// Pays `token` from `key` through the JSON-RPC endpoint `rpc_url`.
    pub fn new(key: PrivateKeySigner, rpc_url: Url, token: Address) -> Self {
        let from = key.address();
        Self {
            provider: ProviderBuilder::new()
                .connect_client(rpc_client(rpc_url.clone()))
                .erased(),
            wallet: EthereumWallet::from(key),
            from,
            token,
            chain: Chain::connect(rpc_url, token),
        }
    }

    /// Signs a transfer of `amount` to `to` at the hot key's next nonce; sends nothing.
    pub async fn sign(&self, to: Address, amount: u64) -> Result<SignedTransfer, ChainError> {
        let rpc = |what: &'static str| {
            move |e: alloy::transports::TransportError| ChainError(format!("{what}: {e}"))
        };
        let call = Eip3009Token::transferCall {
            to,
            value: U256::from(amount),
        };
        let mut request = TransactionRequest::default()
            .with_from(self.from)
            .with_to(self.token)
            .with_input(call.abi_encode());
        let nonce = self
            .provider
            .get_transaction_count(self.from)
            .pending()
            .await
            .map_err(rpc("eth_getTransactionCount"))?;
        let chain_id = self
            .provider
            .get_chain_id()
            .await
            .map_err(rpc("eth_chainId"))?;
        let gas = self
            .provider
            .estimate_gas(request.clone())
            .await
            .map_err(rpc("eth_estimateGas"))?;
        let fees = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(rpc("fee estimate"))?;
        request = request
            .with_nonce(nonce)
            .with_chain_id(chain_id)
            .with_gas_limit(gas)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = <EthereumWallet as NetworkWallet<alloy::network::Ethereum>>::sign_request(
            &self.wallet,
            request,
        )
        .await
        .map_err(|e| ChainError(format!("signing the payout: {e}")))?;
        Ok(SignedTransfer {
            transaction: *envelope.tx_hash(),
            raw: envelope.encoded_2718().into(),
        })
    }

    /// Sends `transfer`'s bytes (again). A node that already has it is not an error.
    pub async fn send(&self, transfer: &SignedTransfer) -> Result<(), ChainError> {
        match self.provider.send_raw_transaction(&transfer.raw).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("already") => Ok(()),
            Err(e) => Err(ChainError(format!("eth_sendRawTransaction: {e}"))),
        }
    }

    /// Where `transfer` of `amount` to `to` stands.
    pub async fn outcome(
        &self,
        transaction: B256,
        to: Address,
        amount: u64,
    ) -> Result<TransferOutcome, ChainError> {
        Ok(match self.chain.receipt(transaction).await? {
            None => TransferOutcome::Pending,
            Some(receipt)
                if self
                    .chain
                    .transfers(&receipt, self.from, to, U256::from(amount)) =>
            {
                TransferOutcome::Paid
            }
            Some(_) => TransferOutcome::Failed,
        })
    }

    /// Waits up to `timeout` for `transaction` to be mined.
    pub async fn wait(
        &self,
        transaction: B256,
        to: Address,
        amount: u64,
        timeout: Duration,
    ) -> Result<TransferOutcome, ChainError> {
        let start = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let outcome = self.outcome(transaction, to, amount).await?;
            if outcome != TransferOutcome::Pending || start.elapsed() >= timeout {
                return Ok(outcome);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}
