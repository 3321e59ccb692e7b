//! The gateway: the parts it is assembled from, the capabilities it serves, execution of
//! admitted tasks, validation receipts and settlement through the task's rail. Admission of
//! paid requests (policy, 402 challenge, authorization) is [`admission`]'s; the HTTP surface
//! over it is [`crate::http`]'s.

use std::collections::HashMap;
use std::sync::Arc;

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
use d402_payment::{Account, LedgerChange, PaymentRail, Rails};
use d402_rail_simulated::{SIMULATED_NETWORK, SimulatedRail};
use d402_store::StateDir;
use d402_store::{NodeStore, Receipts, TaskRecord, TaskStatus};

mod admission;

pub use admission::{Admission, ExecutionPolicy, Refusal, TaskRequest};

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
        std::fs::create_dir_all(&config.state)
            .with_context(|| format!("cannot create {}", config.state.display()))?;
        let key = d402_wallet::load_or_create(&StateDir::new(&config.state).wallet())?;
        if config.has(Role::Gateway) && !crate::installed::any_installed(&config.state) {
            crate::installed::install_builtins(&config.state, &key)?;
        }
        let installed = match list_installed(&config.state) {
            Err(e) if !config.has(Role::Gateway) => {
                tracing::warn!("{e:#}");
                Vec::new()
            }
            listed => listed?,
        };
        let runtime = Runtime::new(RuntimeConfig {
            compile_cache_dir: Some(StateDir::new(&config.state).compile_cache()),
            fuel_metering: installed.iter().any(|i| i.manifest.limits.fuel.is_some()),
            ..RuntimeConfig::default()
        })?;
        let blobs = BlobStore::open(StateDir::new(&config.state).blobs())?;
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
}

impl Gateway {
    /// Opens the gateway described by `config` without the peer network (see
    /// [`Gateway::open_with`]).
    pub async fn open(config: NodeConfig) -> anyhow::Result<Arc<Self>> {
        let parts = NodeParts::prepare(&config)?;
        Self::open_with(config, parts, None).await
    }

    /// The rails `config` enables, paying to `account`.
    fn rails_for(config: &NodeConfig, account: Account) -> anyhow::Result<Rails> {
        let rails = config
            .rails
            .iter()
            .map(|rail| match rail {
                d402_payment::RailId::Simulated => {
                    Ok(Arc::new(SimulatedRail::new(SIMULATED_NETWORK, account))
                        as Arc<dyn PaymentRail>)
                }
                other => bail!("payment rail {other} is not available yet; use --rail simulated"),
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
        let rails = Self::rails_for(&config, Account::from(parts.key.public()))?;
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
        let store = NodeStore::open(&StateDir::new(&config.state).store())?;
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
            &config.state,
            config.local_pool(),
            parts.runtime,
            key.clone(),
            parts.pages,
            parts.blobs,
        )?;
        if let Some(network) = network {
            let policy = PeerPolicy {
                min_protocol_version: config.min_protocol_version,
                min_software_version: config.min_software_version.clone(),
            };
            engine = engine.with_network(network, policy);
        }
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
        });
        gateway.recover().await?;
        Ok(gateway)
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
        if let Some(url) = &self.config.public_url {
            return url.clone();
        }
        match self.bound.get() {
            Some(address) => format!("http://{address}"),
            None => format!("http://{}:{}", self.config.http_host, self.config.http_port),
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
                match execution.decision.clone() {
                    Ok(_) => self.prepare_accepted(record, &served, execution).await,
                    Err(error) => self.prepare_rejected(record, error, Some(execution)).await,
                }
            }
        };
        let stored = match prepared {
            Ok(settled) => self
                .store
                .settle_async(&settled.record, &settled.receipts, &settled.ledger)
                .await
                .map(|()| settled)
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match stored {
            Ok(settled) => {
                tracing::info!(task = %task_id, status = settled.record.status.as_str(), "task settled");
                if let Some(network) = self.network() {
                    gossip_settled(network, &settled.receipts, self.config.gossip_tasks).await;
                }
                (settled.record, Some(settled.receipts))
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

    /// Refunds every task that was paid but never settled (the node stopped mid-run).
    async fn recover(&self) -> anyhow::Result<()> {
        for record in self.store.running()? {
            tracing::warn!(task = %record.task_id, "refunding a task interrupted by a restart");
            let error = TaskError::new(
                TaskErrorKind::Interrupted,
                "the node stopped before the task finished",
            );
            let settled = self.prepare_rejected(record, error, None).await?;
            self.store
                .settle_async(&settled.record, &settled.receipts, &settled.ledger)
                .await?;
        }
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
            validator: Some((validator.as_str(), self.config.validator_fee_bps)),
            rail: record.payment.rail.as_str(),
        };
        let payouts = payouts(&split);
        if payouts
            .iter()
            .try_fold(Amount::from_micros(0), |sum, p| sum.checked_add(p.amount))
            != Some(record.payment.amount)
        {
            bail!("payouts do not add up to the price");
        }
        let rail = self.rail_of(&record)?;
        let captured = rail.capture(&record.payment, &payouts).await?;
        let settlement = self.sign_settlement(&record, payouts, Vec::new())?;
        let validation =
            self.validation_receipt(&record, ValidationStatus::Accepted, Some(&execution), None)?;
        record.status = TaskStatus::Accepted;
        record.result = Some(first.payload.output.clone());
        record.evidence = Some(first.payload.evidence.clone());
        record.workers = execution.workers.clone();
        record.completed_at = Some(Timestamp::now());
        Ok(Settled {
            record,
            receipts: receipts(validation, settlement, execution),
            ledger: captured.ledger,
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
        };
        let voided = self
            .rail_of(&record)?
            .void(&record.payment, &refund)
            .await?;
        let settlement = self.sign_settlement(&record, Vec::new(), vec![refund])?;
        record.status = TaskStatus::Rejected;
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
            ledger: voided.ledger,
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
