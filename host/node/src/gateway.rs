//! The gateway: the parts it is assembled from, the capabilities it serves, execution of
//! admitted tasks, validation receipts and settlement through the task's rail. Admission of
//! paid requests (policy, 402 challenge, authorization) is [`admission`]'s; the HTTP surface
//! over it is [`crate::http`]'s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::Digest as _;

use anyhow::{Context, bail};
use d402_blobstore::BlobStore;
use d402_network::Network;
use d402_protocol::{
    Amount, ContentId, Keypair, Refund, SettlementReceipt, Signed, TaskError, TaskErrorKind,
    Timestamp, ValidationReceipt, ValidationStatus,
};
use d402_runtime::{PageSource, Runtime, RuntimeConfig};

use crate::catalog::{Catalog, ServedCapability};
use crate::config::{NodeConfig, Role};
use crate::engine::{Engine, Execution, PeerPolicy, worker_id};
use crate::installed::{Installed, list_installed};
use crate::settlement::{EarningWorker, Split, payouts};
use crate::validator::ReceiptTerms;
use d402_payment::x402::SettlementResponse;
use d402_payment::{Account, Authorization, LedgerChange, PaymentRail, RailError, Rails};
use d402_rail_simulated::{SIMULATED_NETWORK, SimulatedRail};
use d402_rail_solana::{SolanaDirectRail, X402SolanaRail};
use d402_rail_x402_evm::{EscrowRail, X402EvmRail};
use d402_store::StateDir;
use d402_store::{
    NodeStore, OwedPayout, PayoutState, Receipts, StoreError, TaskRecord, TaskStatus,
};

mod admission;

/// The environment variable holding the x402 built-in facilitator's gas key (when no
/// `--x402-facilitator-key-file` is given).
pub const X402_FACILITATOR_KEY_ENV: &str = "D402_X402_FACILITATOR_PRIVATE_KEY";
/// The environment variable holding the escrow operator's key (when no key file is set).
pub const ESCROW_TX_KEY_ENV: &str = "D402_ESCROW_TX_PRIVATE_KEY";
/// Seconds between attempts to settle tasks whose settlement did not complete.
const SETTLEMENT_RETRY_SECONDS: u64 = 10;

pub use admission::{Admission, ExecutionPolicy, MppProof, Refusal, TaskRequest};

/// A decided task, signed and ready to be stored: the final record, its receipts and the
/// rail's ledger changes (payouts or the refund).
struct Settled {
    record: TaskRecord,
    receipts: Receipts,
    ledger: Vec<LedgerChange>,
}

/// What the roles of one node process share: the installed capabilities, the sandbox, the
/// blob store and the page fetcher.
#[derive(Clone)]
pub struct NodeParts {
    /// The node's wallet (`<state>/wallet.json`, created if missing): its identity.
    pub key: Keypair,
    /// Installed capabilities (see [`list_installed`]).
    pub installed: Vec<Installed>,
    /// The sandbox.
    pub runtime: Arc<Runtime>,
    /// Artifacts and snapshots by CID (`<state>/blobs`).
    pub blobs: BlobStore,
    /// The live page fetcher, when an installed capability may fetch pages.
    pub pages: Option<Arc<dyn PageSource>>,
}

impl NodeParts {
    /// Prepares the parts for `config`'s state directory. A gateway on a state with nothing
    /// installed first installs the built-in capabilities; a node that is not a gateway may
    /// have nothing installed.
    pub fn prepare(config: &NodeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.node.state)
            .with_context(|| format!("cannot create {}", config.node.state.display()))?;
        let key = d402_wallet::load_or_create(&StateDir::new(&config.node.state).wallet())?;
        if config.has(Role::Gateway) && !crate::installed::any_installed(&config.node.state) {
            crate::installed::install_builtins(&config.node.state, &key)?;
        }
        let installed = match list_installed(&config.node.state) {
            Err(e) if !config.has(Role::Gateway) => {
                tracing::warn!("{e:#}");
                Vec::new()
            }
            listed => listed?,
        };
        let runtime = Runtime::new(RuntimeConfig {
            compile_cache_dir: Some(StateDir::new(&config.node.state).compile_cache()),
            fuel_metering: installed.iter().any(|i| i.manifest.limits.fuel.is_some()),
            ..RuntimeConfig::default()
        })?;
        let blobs = BlobStore::open(StateDir::new(&config.node.state).blobs())?;
        let pages: Option<Arc<dyn PageSource>> = if installed
            .iter()
            .any(|i| i.manifest.permissions.browser.is_some())
        {
            let live = d402_browser::LiveSource::new(config.browser_config(), blobs.clone())
                .map_err(|e| anyhow::anyhow!("cannot start the page fetcher: {e:?}"))?;
            Some(Arc::new(live))
        } else {
            None
        };
        Ok(Self {
            key,
            installed,
            runtime: Arc::new(runtime),
            blobs,
            pages,
        })
    }
}

/// A running gateway's shared state.
pub struct Gateway {
    config: NodeConfig,
    key: Keypair,
    account: String,
    node_id: String,
    store: NodeStore,
    catalog: Catalog,
    engine: Arc<Engine>,
    rails: Rails,
    /// Each served capability's pricing version (by capability ID), from the store.
    pricing_versions: HashMap<String, u64>,
    bound: std::sync::OnceLock<std::net::SocketAddr>,
    /// Tasks whose settlement is being completed right now.
    settling_now: std::sync::Mutex<HashSet<String>>,
    /// Counters for `/metrics`.
    metrics: crate::metrics::Metrics,
    /// Set when the node is stopping: new paid tasks are refused.
    draining: std::sync::atomic::AtomicBool,
    /// Issues and recognizes MPP `Payment` challenges.
    mpp: d402_mpp::ChallengeIssuer,
}

impl Gateway {
    /// Opens the gateway described by `config` without the peer network (see
    /// [`Gateway::open_with`]).
    pub async fn open(config: NodeConfig) -> anyhow::Result<Arc<Self>> {
        let parts = NodeParts::prepare(&config)?;
        Self::open_with(config, parts, None).await
    }

    /// The rails `config` enables, paying to `account`.
    fn rails_for(config: &NodeConfig, key: &Keypair) -> anyhow::Result<Rails> {
        let account = Account::from(key.public());
        let rails = config
            .rails
            .accepted
            .iter()
            .map(|rail| match rail {
                d402_payment::RailId::Simulated => {
                    Ok(Arc::new(SimulatedRail::new(SIMULATED_NETWORK, account))
                        as Arc<dyn PaymentRail>)
                }
                d402_payment::RailId::X402Base => {
                    let settings = &config.x402;
                    let (rail, rpc_url) = settings.rail_config()?;
                    if let Some(url) = &settings.facilitator_url {
                        let url = url::Url::parse(url).with_context(|| {
                            format!("x402-facilitator-url {url:?} is not a URL")
                        })?;
                        return Ok(
                            Arc::new(X402EvmRail::with_remote_facilitator(rail, rpc_url, url)) as _,
                        );
                    }
                    let gas_key = d402_rail_x402_evm::load_key(
                        settings.facilitator_key_file.as_deref(),
                        X402_FACILITATOR_KEY_ENV,
                    )
                    .context("the x402 rail's built-in facilitator needs a gas key")?;
                    Ok(Arc::new(X402EvmRail::connect(rail, rpc_url, gas_key)) as _)
                }
                d402_payment::RailId::X402BaseEscrow => {
                    let settings = &config.x402;
                    let (escrow, rpc_url) =
                        settings.escrow_config(config.capabilities.max_creator_commission_bps)?;
                    let operator = d402_rail_x402_evm::load_key(
                        settings.escrow_tx_key_file.as_deref(),
                        ESCROW_TX_KEY_ENV,
                    )
                    .context("the escrow rail needs its operator key")?;
                    Ok(Arc::new(EscrowRail::connect(escrow, rpc_url, operator)) as _)
                }
                rail @ (d402_payment::RailId::SolanaDirect | d402_payment::RailId::X402Solana) => {
                    let (solana, rpc_url) = config.solana.direct_config()?;
                    // The gateway's Solana wallet is its node key.
                    let wallet =
                        d402_rail_solana::Keypair::try_from(key.to_keypair_bytes().as_slice())
                            .context("the node key is not a Solana keypair")?;
                    Ok(if *rail == d402_payment::RailId::SolanaDirect {
                        Arc::new(SolanaDirectRail::new(solana, rpc_url, wallet))
                            as Arc<dyn PaymentRail>
                    } else {
                        Arc::new(X402SolanaRail::new(solana, rpc_url, wallet)) as _
                    })
                }
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Rails::new(rails)?)
    }

    /// Opens the gateway described by `config` on shared `parts`: its wallet
    /// (`<state>/wallet.json`, created if missing), the store, every installed capability
    /// that passes the policy, the local worker pool and, with `network`, remote workers.
    /// Tasks a previous run left unsettled are refunded.
    pub async fn open_with(
        config: NodeConfig,
        parts: NodeParts,
        network: Option<Arc<Network>>,
    ) -> anyhow::Result<Arc<Self>> {
        let rails = Self::rails_for(&config, &parts.key)?;
        Self::open_with_rails(config, parts, network, rails).await
    }

    /// [`Gateway::open_with`] on rails the caller built (tests: several rails at once).
    pub async fn open_with_rails(
        config: NodeConfig,
        parts: NodeParts,
        network: Option<Arc<Network>>,
        rails: Rails,
    ) -> anyhow::Result<Arc<Self>> {
        let catalog = Catalog::load(&config, &parts.runtime, parts.installed)?;
        let key = parts.key;
        let store = StateDir::new(&config.node.state).open_store()?;
        let listings: Vec<(&str, Amount, &str)> = catalog
            .all()
            .iter()
            .map(|served| {
                let unit = served.loaded.manifest().pricing.unit.as_str();
                (served.capability_id.as_str(), served.price, unit)
            })
            .collect();
        let versions = store.pricing_versions(&listings)?;
        let pricing_versions = listings
            .iter()
            .zip(versions)
            .map(|(&(sku, _, _), version)| (sku.to_string(), version))
            .collect();
        let mut engine = Engine::open(
            &config.node.state,
            config.local_pool(),
            parts.runtime,
            key.clone(),
            parts.pages,
            parts.blobs,
        )?;
        if let Some(network) = network {
            let policy = PeerPolicy {
                min_protocol_version: config.network.min_protocol_version,
                min_software_version: config.network.min_software_version.clone(),
            };
            engine = engine.with_network(network, policy);
        }
        // MPP challenges are bound with a secret derived from the node key: stateless and
        // stable across restarts, never the key itself.
        let mpp = d402_mpp::ChallengeIssuer::new(
            sha2::Sha256::digest(
                [
                    b"d402 mpp challenge v1".as_slice(),
                    &key.to_keypair_bytes()[..32],
                ]
                .concat(),
            )
            .to_vec(),
            format!("gateway:{}", key.public()),
        );
        let gateway = Arc::new(Self {
            node_id: format!("gateway:{}", key.public()),
            account: key.public().to_string(),
            config,
            key,
            store,
            catalog,
            engine: Arc::new(engine),
            rails,
            pricing_versions,
            bound: std::sync::OnceLock::new(),
            settling_now: std::sync::Mutex::new(HashSet::new()),
            mpp,
            metrics: crate::metrics::Metrics::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        gateway.recover().await?;
        if gateway.rails.all().iter().any(|r| r.settles_externally()) {
            tokio::spawn(retry_settlements_while_open(Arc::downgrade(&gateway)));
        }
        Ok(gateway)
    }

    /// Why the operator paused new paid tasks (incident mode: `<state>/PAUSE` exists), or
    /// `None` while the gateway takes them.
    pub fn paused(&self) -> Option<String> {
        let file = StateDir::new(&self.config.node.state).pause_file();
        std::fs::read_to_string(file)
            .ok()
            .map(|reason| reason.trim().to_string())
    }

    /// Stops taking new paid tasks (the node is shutting down); everything else goes on.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the node is shutting down ([`Gateway::start_draining`]).
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The node's counters (`/metrics`).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The gateway wallet: receives payments, signs intents, leases and receipts (base58).
    pub fn account(&self) -> String {
        self.account.clone()
    }

    /// The node id (`gateway:<account>`).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The durable store (tests and the faucet read balances through it).
    pub fn store(&self) -> &NodeStore {
        &self.store
    }

    /// The served capabilities.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The local worker pool's payout accounts.
    pub fn worker_accounts(&self) -> Vec<String> {
        self.engine
            .workers()
            .iter()
            .map(|w| w.account().to_string())
            .collect()
    }

    /// The peer network, when the node joined one.
    pub fn network(&self) -> Option<&Arc<Network>> {
        self.engine.network()
    }

    /// The pricing version of `capability_id` (see [`NodeStore::pricing_versions`]; 0 for a
    /// capability this gateway does not serve).
    pub fn pricing_version(&self, capability_id: &str) -> u64 {
        self.pricing_versions
            .get(capability_id)
            .copied()
            .unwrap_or_default()
    }

    /// The payment rails accepted, in preference order.
    pub fn rails(&self) -> &Rails {
        &self.rails
    }

    /// Records the address the HTTP server is bound to (it differs from the configuration
    /// when the port is 0). The first call wins.
    pub fn set_bound(&self, address: std::net::SocketAddr) {
        let _ = self.bound.set(address);
    }

    /// The base URL announced in discovery and challenges: `--public-url`, else the bound
    /// address, else the configured one.
    pub fn base_url(&self) -> String {
        if let Some(url) = &self.config.http.public_url {
            return url.clone();
        }
        match self.bound.get() {
            Some(address) => format!("http://{address}"),
            None => format!("http://{}:{}", self.config.http.host, self.config.http.port),
        }
    }

    /// Executes an admitted task, validates and settles it. Returns the settled record with
    /// its receipts, or the running record if settlement could not be stored (a restart
    /// refunds it).
    pub async fn execute(self: Arc<Self>, record: TaskRecord) -> (TaskRecord, Option<Receipts>) {
        let task_id = record.task_id.clone();
        let prepared = match self
            .catalog
            .get(&record.intent.payload.manifest_cid.to_string())
            .cloned()
        {
            None => {
                let error = TaskError::new(
                    TaskErrorKind::Unavailable,
                    "the capability is no longer served",
                );
                self.prepare_rejected(record, error, None).await
            }
            Some(served) => {
                let this = self.clone();
                let reputation = move |account: &str| this.store.reputation(account).unwrap_or(0);
                let execution = self
                    .engine
                    .execute(&record.intent, &served, reputation)
                    .await;
                self.metrics
                    .runs(execution.claims.len(), execution.failures.len());
                match execution.decision.clone() {
                    Ok(_) => self.prepare_accepted(record, &served, execution).await,
                    Err(error) => self.prepare_rejected(record, error, Some(execution)).await,
                }
            }
        };
        let stored = match prepared {
            Ok(settled) => self
                .store
                .settle_async(&settled.record, &settled.receipts, &settled.ledger, &[])
                .await
                .map(|()| settled)
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match stored {
            Ok(Settled {
                record, receipts, ..
            }) => {
                tracing::info!(task = %task_id, status = record.status.as_str(), "task decided");
                let (record, receipts) = if record.status.is_settling() {
                    self.complete_settlement(record, receipts).await
                } else {
                    (record, receipts)
                };
                if let Some(network) = self.network() {
                    gossip_settled(network, &receipts, self.config.network.gossip_tasks).await;
                }
                let intent = &record.intent.payload;
                let seconds = Timestamp::now()
                    .unix_millis()
                    .saturating_sub(record.created_at.unix_millis())
                    as f64
                    / 1000.0;
                self.metrics.task(
                    &intent.capability_id,
                    intent.mode.as_str(),
                    record.status.as_str(),
                    seconds,
                );
                (record, Some(receipts))
            }
            Err(e) => {
                tracing::error!(task = %task_id, error = %e, "settlement failed; the task is refunded on restart");
                (
                    self.store
                        .task(&task_id)
                        .ok()
                        .flatten()
                        .expect("an admitted task is stored"),
                    None,
                )
            }
        }
    }

    /// Moves a decided task's money on its external rail, durably recording the outcome:
    /// an accepted task's capture (accepted with the transaction, still settling — retried
    /// later — or failed for good: the buyer was not charged and the result stays withheld),
    /// or a rejected task's refund. Safe to call again for the same task: the rail's capture
    /// and void are idempotent, and a task already being settled by another caller is left
    /// to it.
    async fn complete_settlement(
        &self,
        mut record: TaskRecord,
        mut receipts: Receipts,
    ) -> (TaskRecord, Receipts) {
        let Some(_claim) = InFlight::claim(&self.settling_now, &record.task_id) else {
            return (record, receipts);
        };
        let rail = match self.rail_of(&record) {
            Ok(rail) => rail.clone(),
            Err(e) => {
                tracing::warn!(task = %record.task_id, error = %e, "cannot settle");
                return (record, receipts);
            }
        };
        let (ledger, owed) = if record.status == TaskStatus::Refunding {
            self.refund_on_rail(&rail, &mut record, &mut receipts).await
        } else {
            self.capture_on_rail(&rail, &mut record, &mut receipts)
                .await
        };
        if record.status.is_settling() || record.status == TaskStatus::SettlementFailed {
            self.metrics.settlement_failure(rail.id().as_str());
        }
        match self
            .store
            .settle_async(&record, &receipts, &ledger, &owed)
            .await
        {
            Ok(()) => {}
            // An earlier attempt recorded it (this one read the task before): it stands.
            Err(StoreError::AlreadyDecided(_)) => {
                tracing::debug!(task = %record.task_id, "settled already by an earlier attempt")
            }
            Err(e) => {
                tracing::error!(task = %record.task_id, error = %e, "cannot record the settlement; it is reconciled with the rail on the next attempt")
            }
        }
        (record, receipts)
    }

    /// Captures an accepted task's payment: what to apply to the ledger and the payouts
    /// owed by the provider.
    async fn capture_on_rail(
        &self,
        rail: &Arc<dyn PaymentRail>,
        record: &mut TaskRecord,
        receipts: &mut Receipts,
    ) -> (Vec<LedgerChange>, Vec<OwedPayout>) {
        let payouts = &receipts.settlement_receipt.payload.payouts;
        match rail.capture(&record.payment, payouts).await {
            Ok(done) => {
                let transaction = done.reference.unwrap_or_default();
                record.status = TaskStatus::Accepted;
                record.settlement_error = None;
                record.payment_response = payment_response(&record.payment, Ok(&transaction));
                if !rail.pays_payees() {
                    let owed = self.owed_payouts(record, payouts, rail.pay_to());
                    return (done.ledger, owed);
                }
                // Each payee was paid on chain by this transaction: the receipt says so.
                let mut paid = receipts.settlement_receipt.payload.payouts.clone();
                for payout in &mut paid {
                    payout.transaction = Some(transaction.clone());
                }
                self.resign_settlement(record, receipts, paid, Vec::new());
                (done.ledger, Vec::new())
            }
            Err(RailError::Retry(message)) => {
                tracing::warn!(task = %record.task_id, error = %message, "settlement not complete; retrying later");
                record.settlement_error = Some(message);
                (Vec::new(), Vec::new())
            }
            Err(RailError::Failed(message)) => {
                tracing::error!(task = %record.task_id, error = %message, "settlement failed for good");
                record.status = TaskStatus::SettlementFailed;
                record.payment_response = payment_response(&record.payment, Err(&message));
                record.settlement_error = Some(message);
                self.resign_settlement(record, receipts, Vec::new(), Vec::new());
                (Vec::new(), Vec::new())
            }
        }
    }

    /// Returns a rejected task's payment on its rail; the refund's transaction goes into
    /// the settlement receipt.
    async fn refund_on_rail(
        &self,
        rail: &Arc<dyn PaymentRail>,
        record: &mut TaskRecord,
        receipts: &mut Receipts,
    ) -> (Vec<LedgerChange>, Vec<OwedPayout>) {
        let refunds = receipts.settlement_receipt.payload.refunds.clone();
        let Some(refund) = refunds.first() else {
            tracing::error!(task = %record.task_id, "a refunding task has no refund");
            return (Vec::new(), Vec::new());
        };
        match rail.void(&record.payment, refund).await {
            Ok(done) => {
                record.status = TaskStatus::Rejected;
                record.settlement_error = None;
                let returned: Vec<Refund> = refunds
                    .iter()
                    .map(|r| Refund {
                        transaction: done.reference.clone(),
                        ..r.clone()
                    })
                    .collect();
                self.resign_settlement(record, receipts, Vec::new(), returned);
                (done.ledger, Vec::new())
            }
            Err(RailError::Retry(message)) => {
                tracing::warn!(task = %record.task_id, error = %message, "refund not complete; retrying later");
                record.settlement_error = Some(message);
                (Vec::new(), Vec::new())
            }
            Err(RailError::Failed(message)) => {
                tracing::error!(task = %record.task_id, error = %message, "the refund cannot be made");
                record.status = TaskStatus::Rejected;
                record.settlement_error = Some(message);
                (Vec::new(), Vec::new())
            }
        }
    }

    /// Replaces the task's settlement receipt by a newly signed one with `payouts` and
    /// `refunds` (keeping the old one if signing fails).
    fn resign_settlement(
        &self,
        record: &TaskRecord,
        receipts: &mut Receipts,
        payouts: Vec<d402_protocol::Payout>,
        refunds: Vec<Refund>,
    ) {
        match self.sign_settlement(record, payouts, refunds) {
            Ok(signed) => receipts.settlement_receipt = signed,
            Err(e) => tracing::error!(error = %e, "cannot sign the settlement receipt"),
        }
    }

    /// What the provider owes of `payouts` after the whole price landed at `pay_to`: the
    /// local pool's worker nets and this node's validator fee go to `--evm-payout-wallet`
    /// (kept at `pay_to` when it is unset or the same), a remote worker's or validator's to
    /// the EVM payout wallet its signed offer announces (or its account, when that is an EVM
    /// address); the rest cannot be paid on this rail.
    fn owed_payouts(
        &self,
        record: &TaskRecord,
        payouts: &[d402_protocol::Payout],
        pay_to: &Account,
    ) -> Vec<OwedPayout> {
        let local = self.worker_accounts();
        payouts
            .iter()
            .zip(0u32..)
            .map(|(payout, index)| {
                let (ours, address) =
                    self.payee_address(record.payment.rail, &payout.account, &local);
                let state = match address {
                    Some(address) if &address != pay_to => PayoutState::Owed,
                    Some(_) => PayoutState::Kept,
                    None if ours => PayoutState::Kept,
                    None => PayoutState::Unpayable {
                        reason: format!("no EVM payout address is known for {}", payout.account),
                    },
                };
                OwedPayout {
                    task_id: record.task_id.clone(),
                    index,
                    rail: record.payment.rail,
                    network: record.payment.network.clone(),
                    reason: payout.reason,
                    account: payout.account.clone(),
                    address: address.map(|a| a.to_string()),
                    amount: payout.amount,
                    state,
                }
            })
            .collect()
    }

    /// Whether `account` is this node's own, and the address it is paid at on `rail`: on a
    /// Solana rail a d402 account is a Solana address, paid where it is (this node's own
    /// earnings stay in its wallet, where the price landed); on EVM rails see
    /// [`Gateway::evm_address_of`].
    fn payee_address(
        &self,
        rail: d402_payment::RailId,
        account: &str,
        local: &[String],
    ) -> (bool, Option<Account>) {
        use d402_payment::RailId;
        match rail {
            RailId::SolanaDirect | RailId::X402Solana => {
                let ours = local.iter().any(|a| a == account) || account == self.account;
                let address = account.parse().ok().filter(|_| !ours);
                (ours, address.filter(|a| matches!(a, Account::Ed25519(_))))
            }
            _ => self.evm_address_of(account, local),
        }
    }

    /// Whether `account` is this node's own (among the `local` pool's workers, or the node
    /// itself), and the EVM address it is paid at: its own at `--evm-payout-wallet`;
    /// another's at the EVM payout wallet its signed offer announced, or at its account
    /// when that is an EVM address (a creator's registration wallet).
    fn evm_address_of(&self, account: &str, local: &[String]) -> (bool, Option<Account>) {
        let ours = local.iter().any(|a| a == account) || account == self.account;
        let address = if ours {
            let own = self.config.x402.evm_payout_wallet.as_deref();
            own.and_then(|w| w.parse::<Account>().ok())
        } else {
            self.announced_evm_wallet(account)
                .or_else(|| account.parse().ok())
                .filter(|a| matches!(a, Account::Evm(_)))
        };
        (ours, address)
    }

    /// `payouts` with the EVM address each is paid at on a rail that pays payees on chain;
    /// what has no address of its own goes to this node's EVM wallet (`--evm-payout-wallet`,
    /// else `--provider-payout-wallet`), which then holds it for the payee.
    fn with_payee_addresses(
        &self,
        mut payouts: Vec<d402_protocol::Payout>,
    ) -> Vec<d402_protocol::Payout> {
        let local = self.worker_accounts();
        let fallback = self.config.x402.own_evm_wallet();
        for payout in &mut payouts {
            let (ours, address) = self.evm_address_of(&payout.account, &local);
            if address.is_none() && !ours {
                tracing::warn!(account = %payout.account, "no EVM address known for a payee; its payout goes to this node's wallet");
            }
            payout.address = address
                .map(|a| a.to_string())
                .or_else(|| fallback.map(str::to_ascii_lowercase));
        }
        payouts
    }

    /// The EVM payout wallet the node or validator `account` announced in its signed offer,
    /// if this gateway heard one.
    fn announced_evm_wallet(&self, account: &str) -> Option<Account> {
        let network = self.network()?;
        let announced = network
            .offers()
            .into_values()
            .find(|o| o.payload.node_id.to_string() == account)
            .and_then(|o| o.payload.evm_payout_wallet)
            .or_else(|| {
                network
                    .validator_offers()
                    .into_iter()
                    .find(|o| o.payload.validator_id.to_string() == account)
                    .and_then(|o| o.payload.evm_payout_wallet)
            })?;
        announced.parse().ok()
    }

    /// Settles (or refunds) again every decided task whose money has not moved on its rail
    /// yet — what the node does at start and every [`SETTLEMENT_RETRY_SECONDS`] — and
    /// returns the tasks still pending afterwards.
    pub async fn finalize_pending(&self) -> anyhow::Result<Vec<TaskRecord>> {
        self.retry_settlements().await;
        Ok(self.store.settling()?)
    }

    /// Tries again to settle every task whose settlement did not complete.
    async fn retry_settlements(&self) {
        let settling = match self.store.settling() {
            Ok(settling) => settling,
            Err(e) => {
                tracing::error!(error = %e, "cannot list settling tasks");
                return;
            }
        };
        for record in settling {
            match self.store.receipts(&record.task_id) {
                Ok(Some(receipts)) => {
                    self.complete_settlement(record, receipts).await;
                }
                Ok(None) => {
                    tracing::error!(task = %record.task_id, "a settling task has no receipts")
                }
                Err(e) => {
                    tracing::error!(task = %record.task_id, error = %e, "cannot read receipts")
                }
            }
        }
    }

    /// Refunds every task that was paid but never decided (the node stopped mid-run), and
    /// settles again every decided task whose settlement was not recorded: the rail finds a
    /// transfer already on chain instead of sending another.
    async fn recover(&self) -> anyhow::Result<()> {
        for record in self.store.running()? {
            tracing::warn!(task = %record.task_id, "refunding a task interrupted by a restart");
            let error = TaskError::new(
                TaskErrorKind::Interrupted,
                "the node stopped before the task finished",
            );
            let settled = self.prepare_rejected(record, error, None).await?;
            self.store
                .settle_async(&settled.record, &settled.receipts, &settled.ledger, &[])
                .await?;
        }
        self.retry_settlements().await;
        Ok(())
    }

    /// The rail a stored task was paid on (it must still be enabled to settle the task).
    fn rail_of(&self, record: &TaskRecord) -> anyhow::Result<&Arc<dyn PaymentRail>> {
        let payment = &record.payment;
        self.rails
            .get(payment.rail, &payment.network)
            .with_context(|| {
                format!(
                    "task {} was paid on rail {} ({}), which this node no longer accepts; \
                 enable it again with --rail {} to settle the task",
                    record.task_id, payment.rail, payment.network, payment.rail
                )
            })
    }

    fn validation_receipt(
        &self,
        record: &TaskRecord,
        status: ValidationStatus,
        execution: Option<&Execution>,
        reason: Option<String>,
    ) -> anyhow::Result<Signed<ValidationReceipt>> {
        let accepted = execution.map_or_else(Vec::new, |e| {
            e.accepted().iter().filter_map(|c| c.cid().ok()).collect()
        });
        Ok(self.engine.validator().receipt(ReceiptTerms {
            task_id: record.task_id.clone(),
            status,
            model: record.intent.payload.validation,
            accepted,
            rejected: execution.map_or_else(Vec::new, Execution::rejected_cids),
            reason,
        })?)
    }

    async fn prepare_accepted(
        &self,
        mut record: TaskRecord,
        served: &ServedCapability,
        execution: Execution,
    ) -> anyhow::Result<Settled> {
        let accepted = execution.accepted();
        let first = accepted.first().context("an accepted task has a claim")?;
        let workers: Vec<EarningWorker> = accepted
            .iter()
            .map(|c| {
                let account = c.payload.worker.to_string();
                EarningWorker {
                    worker_id: worker_id(&account),
                    account,
                }
            })
            .collect();
        let commission = served.commission();
        let validator = self.account();
        let split = Split {
            price: record.payment.amount,
            workers: &workers,
            commission: commission.as_ref(),
            validator: Some((validator.as_str(), self.config.node.validator_fee_bps)),
            rail: record.payment.rail.as_str(),
        };
        let rail = self.rail_of(&record)?.clone();
        let mut payouts = payouts(&split);
        if rail.pays_payees() {
            payouts = self.with_payee_addresses(payouts);
        }
        if payouts
            .iter()
            .try_fold(Amount::from_micros(0), |sum, p| sum.checked_add(p.amount))
            != Some(record.payment.amount)
        {
            bail!("payouts do not add up to the price");
        }
        // A rail that settles on chain is called once the decision is durable
        // (complete_settlement); a local one settles in the same store transaction.
        let ledger = if rail.settles_externally() {
            record.status = TaskStatus::Settling;
            Vec::new()
        } else {
            record.status = TaskStatus::Accepted;
            rail.capture(&record.payment, &payouts).await?.ledger
        };
        let settlement = self.sign_settlement(&record, payouts, Vec::new())?;
        let validation =
            self.validation_receipt(&record, ValidationStatus::Accepted, Some(&execution), None)?;
        record.result = Some(first.payload.output.clone());
        record.evidence = Some(first.payload.evidence.clone());
        record.workers = execution.workers.clone();
        record.completed_at = Some(Timestamp::now());
        Ok(Settled {
            record,
            receipts: receipts(validation, settlement, execution),
            ledger,
        })
    }

    async fn prepare_rejected(
        &self,
        mut record: TaskRecord,
        error: TaskError,
        execution: Option<Execution>,
    ) -> anyhow::Result<Settled> {
        let reason = error.kind.to_string();
        let validation = self.validation_receipt(
            &record,
            ValidationStatus::Rejected,
            execution.as_ref(),
            Some(serde_json::to_string(&error)?),
        )?;
        let refund = Refund {
            account: record.payment.payer.to_string(),
            amount: record.payment.amount,
            reason,
            transaction: None,
        };
        // A rail that refunds on chain is called once the decision is durable
        // (complete_settlement); a local one refunds in the same store transaction.
        let rail = self.rail_of(&record)?;
        let ledger = if rail.settles_externally() {
            record.status = TaskStatus::Refunding;
            Vec::new()
        } else {
            record.status = TaskStatus::Rejected;
            rail.void(&record.payment, &refund).await?.ledger
        };
        let settlement = self.sign_settlement(&record, Vec::new(), vec![refund])?;
        if let Some(execution) = &execution {
            record.workers = execution.workers.clone();
            if let Some((claim, _)) = execution.claims.first() {
                record.evidence = Some(claim.payload.evidence.clone());
            }
        }
        record.error = Some(error);
        record.completed_at = Some(Timestamp::now());
        let receipts = match execution {
            Some(execution) => receipts(validation, settlement, execution),
            None => Receipts {
                validation_receipt: validation,
                settlement_receipt: settlement,
                claim_cids: Vec::new(),
                claims: Vec::new(),
                verdicts: Vec::new(),
                failures: Vec::new(),
                reputation: Vec::new(),
            },
        };
        Ok(Settled {
            record,
            receipts,
            ledger,
        })
    }

    fn sign_settlement(
        &self,
        record: &TaskRecord,
        payouts: Vec<d402_protocol::Payout>,
        refunds: Vec<Refund>,
    ) -> anyhow::Result<Signed<SettlementReceipt>> {
        let receipt = SettlementReceipt {
            task_id: record.task_id.clone(),
            payouts,
            refunds,
            rail: record.payment.rail.as_str().into(),
            issued_at: Timestamp::now(),
        };
        Ok(Signed::sign(receipt, &self.key)?)
    }
}

/// Retries unfinished settlements every [`SETTLEMENT_RETRY_SECONDS`] while the gateway is open.
async fn retry_settlements_while_open(gateway: std::sync::Weak<Gateway>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(SETTLEMENT_RETRY_SECONDS));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        gateway.retry_settlements().await;
    }
}

/// A task claimed for settlement by one caller; released when dropped.
struct InFlight<'a> {
    set: &'a std::sync::Mutex<HashSet<String>>,
    task_id: String,
}

impl<'a> InFlight<'a> {
    fn claim(set: &'a std::sync::Mutex<HashSet<String>>, task_id: &str) -> Option<Self> {
        let fresh = set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.to_string());
        fresh.then(|| Self {
            set,
            task_id: task_id.to_string(),
        })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.task_id);
    }
}

/// The `PAYMENT-RESPONSE` of `payment`: settled in `Ok(transaction)` (empty while a rail
/// that settles externally has not settled yet), or failed for the `Err` reason.
pub(crate) fn payment_response(
    payment: &Authorization,
    outcome: Result<&str, &str>,
) -> SettlementResponse {
    SettlementResponse {
        success: outcome.is_ok(),
        error_reason: outcome.err().map(str::to_string),
        payer: Some(payment.payer.to_string()),
        transaction: outcome.unwrap_or_default().to_string(),
        network: payment.network.clone(),
        amount: Some(payment.amount.micros().to_string()),
    }
}

/// Gossips what a settled task produced for the rest of the network: the validation and
/// settlement receipts, the reputation events and, with `with_claims`, the accepted claims
/// (once settled, never before).
async fn gossip_settled(network: &Network, receipts: &Receipts, with_claims: bool) {
    let mut published = vec![
        network.publish(&receipts.validation_receipt).await,
        network.publish(&receipts.settlement_receipt).await,
    ];
    if with_claims {
        let accepted = &receipts.validation_receipt.payload.accepted_claim_cids;
        for claim in receipts
            .claims
            .iter()
            .filter(|c| c.cid().is_ok_and(|cid| accepted.contains(&cid)))
        {
            published.push(network.publish(claim).await);
        }
    }
    for event in &receipts.reputation {
        published.push(network.publish(event).await);
    }
    if let Some(Err(e)) = published.into_iter().find(Result::is_err) {
        tracing::warn!(error = %e, "cannot gossip a settled task's receipts");
    }
}

fn receipts(
    validation: Signed<ValidationReceipt>,
    settlement: Signed<SettlementReceipt>,
    execution: Execution,
) -> Receipts {
    let claim_cids: Vec<ContentId> = execution
        .claims
        .iter()
        .filter_map(|(c, _)| c.cid().ok())
        .collect();
    Receipts {
        validation_receipt: validation,
        settlement_receipt: settlement,
        claim_cids,
        verdicts: execution.claims.iter().map(|(_, v)| v.clone()).collect(),
        claims: execution.claims.into_iter().map(|(c, _)| c).collect(),
        failures: execution.failures,
        reputation: execution.reputation,
    }
}
