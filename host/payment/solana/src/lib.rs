//! Solana USDC for d402.
//!
//! - [`SolanaRpc`] is a small JSON-RPC client (the calls the rail and the payer make), on
//!   the workspace's reqwest.
//! - [`transfer`] builds a USDC `TransferChecked` with a memo (the buyer's payment, the
//!   gateway's refund) and reads one back out of a confirmed transaction.
//! - [`SolanaDirectRail`] is the `solana-direct` rail (the buyer pays first, the gateway
//!   verifies the transaction before any work, refunds on chain).
//! - [`X402SolanaRail`] is x402 `exact` on SVM (the client's partially-signed transaction,
//!   checked, co-signed as fee payer and submitted before any work).
//! - [`SolanaPayer`] is the buyer's side of both ([`SolanaScheme`]).
//! - [`SolanaNetwork`] names clusters the CAIP-2 way (and accepts the spec's
//!   `solana:mainnet-beta`).

pub mod direct;
pub mod exact;
mod network;
mod payer;
mod payout;
mod rpc;
pub mod token;
pub mod transfer;
mod wallet;

pub use direct::SolanaDirectRail;
pub use exact::X402SolanaRail;
pub use network::{NetworkError, SolanaNetwork};
pub use payer::{SolanaPayer, SolanaScheme};
pub use payout::{PayoutOutcome, SignedSolanaTransfer, SolanaPayoutSender};
pub use rpc::{ConfirmedTransaction, RpcError, SignatureStatus, SolanaRpc};
pub use solana_address::Address;
pub use solana_keypair::Keypair;
pub use solana_signature::Signature;
pub use solana_signer::Signer;
pub use wallet::{DirectConfig, REFUND_MEMO_PREFIX};

/// USDC's mint on Solana mainnet (the default asset).
pub const USDC_MINT: Address =
    Address::from_str_const("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");
/// USDC's decimals.
pub const USDC_DECIMALS: u8 = 6;
