//! A local EVM chain for development and tests: anvil (from the npm package
//! `@foundry-rs/anvil`, never downloaded at run time) with the repository's EIP-3009 test
//! token (`contracts/src/TestUsdc.sol`, its committed artifact) installed at any address —
//! normally Base USDC's, so that stock x402 clients accept it.

use std::path::{Path, PathBuf};

use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use url::Url;

/// Bindings of the committed test token artifact (generated).
#[allow(clippy::too_many_arguments)]
mod bindings {
    alloy::sol!(
        #[sol(rpc)]
        TestUsdc,
        "../../../contracts/artifacts/TestUsdc.json"
    );
}
use bindings::TestUsdc;

/// Where `scripts/lib/setup.sh` installs anvil, relative to the repository root.
pub const ANVIL_IN_REPOSITORY: &str =
    "contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// Why the local chain could not be started or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DevChainError {
    /// No anvil binary.
    #[error(
        "anvil not found at {0}; install it with `cd contracts && npm ci` (scripts/test.sh does) or point D402_ANVIL at an anvil binary"
    )]
    NoAnvil(PathBuf),
    /// anvil did not start.
    #[error("cannot start anvil: {0}")]
    Start(String),
    /// A call to the chain failed.
    #[error("local chain: {0}")]
    Rpc(String),
}

fn rpc<E: std::fmt::Display>(e: E) -> DevChainError {
    DevChainError::Rpc(e.to_string())
}

/// A running anvil; stopped when dropped.
pub struct DevChain {
    anvil: AnvilInstance,
    provider: DynProvider,
}

impl DevChain {
    /// The anvil binary: `$D402_ANVIL`, else [`ANVIL_IN_REPOSITORY`] under `root`.
    pub fn anvil_path(root: &Path) -> Result<PathBuf, DevChainError> {
        let path = std::env::var_os("D402_ANVIL")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(ANVIL_IN_REPOSITORY));
        if path.is_file() {
            Ok(path)
        } else {
            Err(DevChainError::NoAnvil(path))
        }
    }

    /// Starts `anvil` on a free 127.0.0.1 port with `chain_id`, automining, its clock
    /// following the wall clock.
    pub fn start(anvil: &Path, chain_id: u64, port: u16) -> Result<Self, DevChainError> {
        let anvil = Anvil::at(anvil)
            .chain_id(chain_id)
            .port(port)
            .try_spawn()
            .map_err(|e| DevChainError::Start(e.to_string()))?;
        let deployer = PrivateKeySigner::from(anvil.keys()[0].clone());
        let provider = alloy::providers::ProviderBuilder::new()
            .wallet(EthereumWallet::from(deployer))
            .connect_client(crate::chain::rpc_client(anvil.endpoint_url()))
            .erased();
        Ok(Self { anvil, provider })
    }

    /// The JSON-RPC endpoint.
    pub fn rpc_url(&self) -> Url {
        self.anvil.endpoint_url()
    }

    /// anvil's `index`th pre-funded account (10 000 ETH each; index 0 deploys and mints).
    pub fn account(&self, index: usize) -> PrivateKeySigner {
        PrivateKeySigner::from(self.anvil.keys()[index].clone())
    }

    /// Installs the test token's code at `at` (`anvil_setCode`).
    pub async fn install_test_usdc(&self, at: Address) -> Result<(), DevChainError> {
        let code = TestUsdc::DEPLOYED_BYTECODE.to_string();
        self.provider
            .raw_request::<_, ()>("anvil_setCode".into(), (at, code))
            .await
            .map_err(rpc)
    }

    /// Mints `amount` atomic units of the test token at `token` to `to`.
    pub async fn mint(
        &self,
        token: Address,
        to: Address,
        amount: u64,
    ) -> Result<(), DevChainError> {
        let receipt = TestUsdc::new(token, &self.provider)
            .mint(to, U256::from(amount))
            .send()
            .await
            .map_err(rpc)?
            .get_receipt()
            .await
            .map_err(rpc)?;
        if receipt.status() {
            Ok(())
        } else {
            Err(DevChainError::Rpc(format!(
                "mint reverted: {}",
                receipt.transaction_hash
            )))
        }
    }

    /// The token balance of `account` at `token`.
    pub async fn balance(&self, token: Address, account: Address) -> Result<u64, DevChainError> {
        let balance = TestUsdc::new(token, &self.provider)
            .balanceOf(account)
            .call()
            .await
            .map_err(rpc)?;
        u64::try_from(balance).map_err(rpc)
    }

    /// Deploys the task escrow factory (`contracts/src/TaskEscrow.sol`); its address.
    pub async fn deploy_escrow_factory(&self) -> Result<Address, DevChainError> {
        crate::escrow::deploy_factory(self.account(0), self.rpc_url())
            .await
            .map_err(rpc)
    }

    /// Moves the chain's clock `seconds` forward and mines a block at the new time.
    pub async fn advance_time(&self, seconds: u64) -> Result<(), DevChainError> {
        self.call("evm_increaseTime", (seconds,)).await?;
        self.mine().await
    }

    /// Mines one block with the pending transactions.
    pub async fn mine(&self) -> Result<(), DevChainError> {
        self.call("evm_mine", ()).await.map(drop)
    }

    /// Turns mining each transaction as it arrives on (the default) or off: then
    /// transactions wait, pending, for [`DevChain::mine`].
    pub async fn set_automine(&self, on: bool) -> Result<(), DevChainError> {
        self.call("evm_setAutomine", (on,)).await.map(drop)
    }

    /// How many transactions are waiting to be mined.
    pub async fn pending(&self) -> Result<u64, DevChainError> {
        let status = self.call("txpool_status", ()).await?;
        let pending = status["pending"].as_str().unwrap_or("0x0");
        u64::from_str_radix(pending.trim_start_matches("0x"), 16).map_err(rpc)
    }

    /// Drops every transaction waiting to be mined (as if it never reached the chain).
    pub async fn drop_pending(&self) -> Result<(), DevChainError> {
        self.call("anvil_dropAllTransactions", ()).await.map(drop)
    }

    async fn call<P: serde::Serialize + Clone + Send + Sync + Unpin + std::fmt::Debug + 'static>(
        &self,
        method: &'static str,
        params: P,
    ) -> Result<serde_json::Value, DevChainError> {
        self.provider
            .raw_request::<_, serde_json::Value>(method.into(), params)
            .await
            .map_err(rpc)
    }

    /// How many transactions `account` has sent.
    pub async fn nonce(&self, account: Address) -> Result<u64, DevChainError> {
        self.provider
            .get_transaction_count(account)
            .await
            .map_err(rpc)
    }
}
