//! The local network both rail tests start: a buyer with SOL and USDC, and the gateway's
//! wallet with SOL for fees.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use d402_rail_solana::{
    Address, DirectConfig, Keypair, Signer, SolanaNetwork, SolanaRpc, USDC_DECIMALS, USDC_MINT,
};
use d402_solana_devnet::SolanaDevnet;

/// The USDC the buyer starts with.
pub const FUNDS: u64 = 1_000_000;

/// A local network, its RPC client, a funded buyer, and the gateway's wallet.
pub struct Network {
    pub devnet: SolanaDevnet,
    pub rpc: SolanaRpc,
    pub buyer: Keypair,
    /// The gateway's wallet key (handed to the rail).
    pub wallet: Keypair,
    pub gateway: Address,
}

/// Starts the network: the buyer holds 1 SOL and [`FUNDS`] of USDC, the gateway 1 SOL.
pub async fn network() -> Network {
    let devnet = SolanaDevnet::start(0).await.unwrap();
    let buyer = Keypair::new();
    let wallet = Keypair::new();
    let gateway = wallet.pubkey();
    for owner in [buyer.pubkey(), gateway] {
        devnet.fund_sol(&owner, 1_000_000_000).unwrap();
    }
    devnet.fund_usdc(&buyer.pubkey(), FUNDS).unwrap();
    Network {
        rpc: SolanaRpc::new(devnet.rpc_url()),
        devnet,
        buyer,
        wallet,
        gateway,
    }
}

/// USDC on the local network.
pub fn config() -> DirectConfig {
    DirectConfig {
        network: SolanaNetwork::Localnet,
        mint: USDC_MINT,
        decimals: USDC_DECIMALS,
        confirm_timeout: Duration::from_secs(10),
    }
}
