//! A local Solana network for development and tests: litesvm (a real SVM, with the SPL
//! Token, Token-2022, Memo and Associated Token Account programs) behind a Solana JSON-RPC
//! endpoint on 127.0.0.1 that speaks the real wire format — so the RPC client that ships is
//! the one tested. A USDC-like mint (6 decimals) sits at the real USDC mint address, so
//! clients' defaults accept it; [`SolanaDevnet::fund_usdc`] credits wallets.
//!
//! Every transaction lands in a block of its own, at once, and is reported `finalized`.
//! Blockhashes stay valid for the last 150 blocks, as on a cluster; a signature is
//! processed once.

mod rpc;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use d402_rail_solana::token;
use d402_rail_solana::{Address, USDC_DECIMALS, USDC_MINT};
use litesvm::LiteSVM;
use serde_json::Value;
use solana_account::Account;
use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_signature::Signature;
use solana_signer::Signer;
use url::Url;

/// How many recent blockhashes a transaction may be signed with.
const BLOCKHASH_WINDOW: usize = 150;

/// The local network could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// The JSON-RPC port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {message}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// Why.
        message: String,
    },
    /// An account could not be written into the SVM.
    #[error("cannot write account {0}: {1}")]
    Account(Address, String),
}

/// A transaction the chain recorded.
struct Landed {
    slot: u64,
    block_time: i64,
    /// Its wire bytes (bincode), or none for the network's own airdrops.
    bytes: Option<Vec<u8>>,
    err: Option<Value>,
    fee: u64,
    logs: Vec<String>,
    /// Its memos as `getSignaturesForAddress` shows them (`[length] text`, joined by `; `).
    memo: Option<String>,
}

/// The SVM and what a cluster would remember besides: slots, recent blockhashes, landed
/// transactions.
struct Chain {
    svm: LiteSVM,
    slot: u64,
    recent: VecDeque<Hash>,
    landed: HashMap<Signature, Landed>,
    /// Whether `sendTransaction` is refused (see [`SolanaDevnet::refuse_transactions`]).
    refusing: bool,
    /// The signatures of the transactions each account took part in, oldest first.
    touched: HashMap<Address, Vec<Signature>>,
    /// The mint authority written into every mint the network holds.
    mint_authority: Address,
}

impl Chain {
    fn new() -> Self {
        let svm = LiteSVM::new().with_blockhash_check(false);
        let mut recent = VecDeque::with_capacity(BLOCKHASH_WINDOW);
        recent.push_back(svm.latest_blockhash());
        Self {
            svm,
            slot: 1,
            recent,
            landed: HashMap::new(),
            touched: HashMap::new(),
            refusing: false,
            mint_authority: Keypair::new().pubkey(),
        }
    }

    /// Closes the current block: the next slot, a fresh blockhash (the oldest leaves the
    /// window).
    fn next_block(&mut self) -> (u64, i64) {
        let landed_in = (self.slot, unix_now());
        self.slot += 1;
        self.svm.warp_to_slot(self.slot);
        self.svm.expire_blockhash();
        if self.recent.len() == BLOCKHASH_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(self.svm.latest_blockhash());
        landed_in
    }

    fn set_account(
        &mut self,
        address: Address,
        owner: Address,
        data: Vec<u8>,
    ) -> Result<(), DevnetError> {
        let lamports = self.svm.minimum_balance_for_rent_exemption(data.len());
        let account = solana_account(lamports, data, owner);
        self.svm
            .set_account(address, account)
            .map_err(|e| DevnetError::Account(address, e.to_string()))
    }

    /// The balance of `owner`'s associated token account for `mint` (0 if it has none).
    fn balance_of(&self, mint: &Address, owner: &Address) -> u64 {
        let account = token::associated_token_address(owner, mint);
        self.svm
            .get_account(&account)
            .and_then(|a| token::read_token_account(&a.data))
            .map_or(0, |(_, _, amount)| amount)
    }

    fn supply(&self, mint: &Address) -> u64 {
        self.svm.get_account(mint).map_or(0, |a| {
            u64::from_le_bytes(a.data[36..44].try_into().unwrap_or([0; 8]))
        })
    }
}

fn solana_account(lamports: u64, data: Vec<u8>, owner: Address) -> Account {
    Account {
        lamports,
        data,
        owner,
        executable: false,
        rent_epoch: 0,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A running local Solana network; stopped when dropped.
pub struct SolanaDevnet {
    url: Url,
    chain: Arc<Mutex<Chain>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl SolanaDevnet {
    /// Starts the network with its JSON-RPC endpoint on `127.0.0.1:port` (0: any free
    /// port) and USDC's mint in place. Call from a tokio runtime.
    pub async fn start(port: u16) -> Result<Self, DevnetError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| DevnetError::Bind {
                port,
                message: e.to_string(),
            })?;
        let address = listener.local_addr().map_err(|e| DevnetError::Bind {
            port,
            message: e.to_string(),
        })?;
        let mut chain = Chain::new();
        let authority = chain.mint_authority;
        chain.set_account(
            USDC_MINT,
            token::TOKEN_PROGRAM,
            token::mint_data(&authority, 0, USDC_DECIMALS),
        )?;
        let chain = Arc::new(Mutex::new(chain));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = rpc::router(chain.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            url: format!("http://{address}/").parse().expect("a URL"),
            chain,
            _stop: stop,
        })
    }

    /// The JSON-RPC endpoint.
    pub fn rpc_url(&self) -> Url {
        self.url.clone()
    }

    /// Gives `owner` `lamports` of SOL (for fees and rent).
    pub fn fund_sol(&self, owner: &Address, lamports: u64) -> Result<(), DevnetError> {
        let mut chain = self.chain.lock().expect("the chain lock");
        let held = chain.svm.get_balance(owner).unwrap_or(0);
        let account = solana_account(held + lamports, Vec::new(), token::SYSTEM_PROGRAM);
        chain
            .svm
            .set_account(*owner, account)
            .map_err(|e| DevnetError::Account(*owner, e.to_string()))
    }

    /// Credits `amount` atomic units of USDC to `owner`'s associated token account
    /// (created if missing), minting them.
    pub fn fund_usdc(&self, owner: &Address, amount: u64) -> Result<(), DevnetError> {
        self.fund_token(&USDC_MINT, owner, amount)
    }

    /// Credits `amount` atomic units of `mint` (a mint of 6 decimals, created if missing)
    /// to `owner`'s associated token account (created if missing), minting them.
    pub fn fund_token(
        &self,
        mint: &Address,
        owner: &Address,
        amount: u64,
    ) -> Result<(), DevnetError> {
        let mut chain = self.chain.lock().expect("the chain lock");
        let balance = chain.balance_of(mint, owner) + amount;
        let supply = chain.supply(mint) + amount;
        let authority = chain.mint_authority;
        chain.set_account(
            token::associated_token_address(owner, mint),
            token::TOKEN_PROGRAM,
            token::token_account_data(mint, owner, balance),
        )?;
        chain.set_account(
            *mint,
            token::TOKEN_PROGRAM,
            token::mint_data(&authority, supply, USDC_DECIMALS),
        )
    }

    /// The USDC `owner` holds in its associated token account.
    pub fn usdc_balance(&self, owner: &Address) -> u64 {
        self.chain
            .lock()
            .expect("the chain lock")
            .balance_of(&USDC_MINT, owner)
    }

    /// While `refuse` holds, `sendTransaction` answers as an unhealthy node does (the
    /// network is unreachable for senders; reads still work).
    pub fn refuse_transactions(&self, refuse: bool) {
        self.chain.lock().expect("the chain lock").refusing = refuse;
    }

    /// How many transactions landed (airdrops included).
    pub fn transactions(&self) -> usize {
        self.chain.lock().expect("the chain lock").landed.len()
    }
}
