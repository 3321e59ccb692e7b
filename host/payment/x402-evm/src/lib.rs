//! x402 `exact` on EVM chains: EIP-3009 `transferWithAuthorization` of a USDC-like token
//! (Base USDC by default).
//!
//! - [`X402EvmRail`] is the gateway's rail: it verifies a payment fully before any work
//!   (terms, window, EIP-712 signer, the payer's balance and nonce state, a simulated
//!   transfer), settles accepted tasks on chain through the built-in facilitator
//!   ([`GasSigner`]) and, called again after a crash, finds the transfer already on chain
//!   instead of sending another.
//! - [`EscrowRail`] is the Base task escrow rail: the same payment, paid into a per-task
//!   escrow before any work and split by the contract after acceptance (decision 0014).
//! - [`EvmPayer`] is the buyer's side: it signs the authorization for a trusted requirement.
//! - [`Chain`] reads the token over JSON-RPC; [`EvmNetwork`] names chains the CAIP-2 way.

mod chain;
pub mod devchain;
mod eip3009;
pub mod escrow;
mod exact;
mod facilitator;
mod keys;
mod network;
mod payer;
mod payout;
mod rail;

pub use alloy::primitives::Address;
pub use alloy::signers::local::PrivateKeySigner;
pub use chain::{Chain, ChainError, GasSigner, UsedAuthorization};
pub use eip3009::{AuthorizationTerms, ExactEvmPayload, SignatureError, TokenDomain};
pub use escrow::{EscrowConfig, EscrowRail};
pub use exact::{CLOCK_MARGIN_SECS, MIN_SETTLEMENT_WINDOW_SECS, TokenConfig};
pub use facilitator::{Facilitator, RemoteFacilitator};
pub use keys::{KeyError, load_key, read_key_file, write_key};
pub use network::{EvmNetwork, NetworkError};
pub use payer::EvmPayer;
pub use payout::{PayoutSender, SignedTransfer, TransferOutcome};
pub use rail::{RailConfig, X402EvmRail};

/// Base USDC, the default asset.
pub const BASE_USDC: Address =
    alloy::primitives::address!("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
/// Base USDC's EIP-712 domain name.
pub const USDC_DOMAIN_NAME: &str = "USD Coin";
/// Base USDC's EIP-712 domain version.
pub const USDC_DOMAIN_VERSION: &str = "2";
