//! Durable node state in one redb file (`<state>/node.redb`): tasks, payments seen,
//! receipts with the signed claims they decided on, reputation scores and the simulated
//! ledger. Every state change that involves money is one
//! write transaction, committed (fsync'd) before the caller acts on it.

use std::path::Path;
use std::sync::{Arc, mpsc};

use crate::payouts::OwedPayout;
use d402_payment::x402::SettlementResponse;
use d402_payment::{Authorization, LedgerChange, PaymentKey};
use d402_protocol::{
    Amount, ContentId, FailedRun, ReputationEvent, ResultClaim, SettlementReceipt, Signed,
    TaskError, TaskIntent, Timestamp, ValidationReceipt, Verdict,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Task ID → JSON [`TaskRecord`].
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// Payment key (see [`PaymentKey`]) → task ID. A key is consumed exactly once.
const PAYMENTS: TableDefinition<&str, &str> = TableDefinition::new("payments");
/// Client `payment-identifier` → task ID.
const PAYMENT_IDS: TableDefinition<&str, &str> = TableDefinition::new("payment-ids");
/// Task ID → JSON [`Receipts`].
const RECEIPTS: TableDefinition<&str, &[u8]> = TableDefinition::new("receipts");
/// Account (base58) → balance in micro-dollars, the simulated rail's ledger.
const LEDGER: TableDefinition<&str, u64> = TableDefinition::new("ledger");
/// IDs of tasks paid but not settled: what a restart refunds, without scanning all tasks.
const RUNNING: TableDefinition<&str, ()> = TableDefinition::new("running");
/// IDs of tasks decided but whose payment is still being settled on an external rail: what
/// a restart settles again.
const SETTLING: TableDefinition<&str, ()> = TableDefinition::new("settling");
/// `<task id>/<index>` → JSON [`OwedPayout`]: what a provider owes on an external rail.
const PAYOUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("payouts");
/// Account (base58) → reputation score, the sum of the deltas of its reputation events.
const REPUTATION: TableDefinition<&str, i64> = TableDefinition::new("reputation");
/// SKU → JSON [`Pricing`]: the price a paid operation was last listed at, and its version.
const PRICING: TableDefinition<&str, &[u8]> = TableDefinition::new("pricing");

/// The price a SKU was last listed at and the version of that price.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pricing {
    price_micros: u64,
    unit: String,
    version: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database itself failed.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// A stored record does not parse.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The payer's ledger balance is below the amount.
    #[error("insufficient funds: balance {balance} micro-dollars, need {needed}")]
    InsufficientFunds {
        /// Current balance.
        balance: u64,
        /// Amount needed.
        needed: u64,
    },
    /// The payment was already used for a different request.
    #[error("payment already used for task {0} with a different request or payload")]
    PaymentReused(String),
    /// The `payment-identifier` was already used with a different payment.
    #[error("payment identifier already used for task {0} with a different payment")]
    PaymentIdReused(String),
    /// A balance would overflow.
    #[error("ledger overflow")]
    Overflow,
    /// The batch this change was committed with failed; nothing of it was written.
    #[error("store commit failed: {0}")]
    Commit(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// The task was decided and settled already: a second decision would move money twice.
    #[error("task {0} is decided and settled already; a second decision is refused")]
    AlreadyDecided(String),
    /// Another process has the store open.
    #[error("the store is open in another process; stop it first")]
    InUse,
    /// A running node uses the state directory.
    #[error("state {state} is used by a running node{}; use the admin API (this command does when the node wrote {state}/admin.json) or stop it", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    StateInUse {
        /// The state directory.
        state: String,
        /// The node's pid, when it recorded one.
        pid: Option<u32>,
    },
}

fn db<E: Into<redb::Error>>(error: E) -> StoreError {
    StoreError::Db(error.into())
}

/// Lifecycle state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    /// Paid and running.
    Running,
    /// A validated result was accepted; the payment is being settled on the rail (a chain).
    /// The result is released once settlement succeeded.
    Settling,
    /// A validated result was accepted and paid out.
    Accepted,
    /// No acceptable result; the refund is being returned on the rail (a chain).
    Refunding,
    /// No acceptable result: the buyer was refunded.
    Rejected,
    /// The result was accepted but the payment could never be settled (e.g. the
    /// authorization expired first): the buyer was not charged and the result is withheld.
    SettlementFailed,
}

impl TaskStatus {
    /// Whether the task's money still has to move on its rail (settling or refunding):
    /// such tasks are listed by [`NodeStore::settling`] until it did.
    pub fn is_settling(self) -> bool {
        matches!(self, Self::Settling | Self::Refunding)
    }

    /// The spec's word for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Settling => "settling",
            Self::Accepted => "accepted",
            Self::Refunding => "refunding",
            Self::Rejected => "rejected",
            Self::SettlementFailed => "settlement-failed",
        }
    }
}

/// Everything the gateway keeps about one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// Task ID (`task:<hex>`).
    pub task_id: String,
    /// Where it is.
    pub status: TaskStatus,
    /// The signed task intent.
    pub intent: Signed<TaskIntent>,
    /// The payment that pays for it: rail, payer, once-only key, amount, the rail's proof.
    pub payment: Authorization,
    /// The client's `payment-identifier` (an idempotency key), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// `sha256:<hex>` of the canonical payment payload: a `payment-identifier` reused with
    /// another payload is refused.
    pub payment_digest: String,
    /// Worker ids leased (known once the task settled).
    #[serde(default)]
    pub workers: Vec<String>,
    /// `sha256:<hex>` of the canonical request body the payment is bound to.
    pub binding: String,
    /// The `PAYMENT-RESPONSE` document.
    pub payment_response: SettlementResponse,
    /// The accepted output.
    #[serde(default)]
    pub result: Option<Value>,
    /// Run evidence.
    #[serde(default)]
    pub evidence: Option<Value>,
    /// Why the task was rejected.
    #[serde(default)]
    pub error: Option<TaskError>,
    /// Why the last settlement attempt did not complete (settling or settlement-failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_error: Option<String>,
    /// When it was paid.
    pub created_at: Timestamp,
    /// When it settled.
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
}

/// The signed receipts of a settled task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipts {
    /// The validator's decision.
    pub validation_receipt: Signed<ValidationReceipt>,
    /// Where the money went.
    pub settlement_receipt: Signed<SettlementReceipt>,
    /// CIDs of the signed result claims considered.
    #[serde(default)]
    pub claim_cids: Vec<ContentId>,
    /// The signed result claims themselves.
    #[serde(default)]
    pub claims: Vec<Signed<ResultClaim>>,
    /// The validator's verdict on each claim (`{status, reason?}`), in claim order.
    #[serde(default)]
    pub verdicts: Vec<Verdict>,
    /// Leased runs that produced no claim.
    #[serde(default)]
    pub failures: Vec<FailedRun>,
    /// Reputation events issued for the task.
    #[serde(default)]
    pub reputation: Vec<Signed<ReputationEvent>>,
}

/// Which tasks [`NodeStore::tasks`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFilter {
    /// Only tasks in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    /// Only tasks of this capability ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// Only tasks paid at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// At most this many (the newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

impl TaskFilter {
    fn matches(&self, record: &TaskRecord) -> bool {
        self.status.is_none_or(|s| s == record.status)
            && self
                .capability
                .as_ref()
                .is_none_or(|c| *c == record.intent.payload.capability_id)
            && self.since.is_none_or(|t| record.created_at >= t)
    }
}

/// What [`NodeStore::accept_payment`] did.
#[derive(Debug)]
pub enum Accepted {
    /// A fresh payment: debited and recorded with the new task.
    New,
    /// The same payment for the same request: the existing task.
    Replay(Box<TaskRecord>),
}

/// The node's durable store. Reads run concurrently; every change goes through one writer
/// thread that applies the changes waiting at that moment in a single transaction and
/// commits them together (group commit), so many tasks share one fsync. A caller returns
/// only after its change is durable.
pub struct NodeStore {
    db: Arc<Database>,
    writer: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Most changes committed in one transaction.
const MAX_BATCH: usize = 512;

/// One durable change. Each checks its preconditions before it writes anything, so a
/// refused change leaves the shared transaction untouched.
enum Change {
    Accept {
        record: Box<TaskRecord>,
        encoded: Vec<u8>,
    },
    Settle {
        task_id: String,
        /// The record is `settling`: keep it in the settling index.
        settling: bool,
        record: Vec<u8>,
        receipts: Vec<u8>,
        ledger: Vec<LedgerChange>,
        reputation: Vec<(String, i64)>,
        /// Payouts owed, by key: written unless already recorded (a later state stands).
        owed: Vec<(String, Vec<u8>)>,
    },
    Payout {
        key: String,
        encoded: Vec<u8>,
    },
    Credit {
        account: String,
        amount: u64,
    },
}

/// What a change did.
enum Changed {
    Accepted(Accepted),
    Settled,
    Payout,
    Credited(u64),
}

/// Where the writer sends a change's outcome: a blocked thread or an awaiting task.
enum Reply {
    Blocking(mpsc::SyncSender<Result<Changed, StoreError>>),
    Async(tokio::sync::oneshot::Sender<Result<Changed, StoreError>>),
}

impl Reply {
    fn send(self, result: Result<Changed, StoreError>) {
        // A caller that went away no longer needs the answer; the change is durable anyway.
        let _ = match self {
            Reply::Blocking(reply) => reply.send(result).map_err(drop),
            Reply::Async(reply) => reply.send(result).map_err(drop),
        };
    }
}

type Job = (Change, Reply);

impl NodeStore {
    /// Opens (or creates) the store at `path`, makes sure every table exists and starts
    /// the writer.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| db(redb::Error::from(e)))?;
        }
        restrict_to_owner(path).map_err(|e| db(redb::Error::from(e)))?;
        let database = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse,
            other => db(other),
        })?;
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(TASKS).map_err(db)?;
        txn.open_table(PAYMENTS).map_err(db)?;
        txn.open_table(PAYMENT_IDS).map_err(db)?;
        txn.open_table(RECEIPTS).map_err(db)?;
        txn.open_table(LEDGER).map_err(db)?;
        txn.open_table(REPUTATION).map_err(db)?;
        txn.open_table(PRICING).map_err(db)?;
        txn.open_table(SETTLING).map_err(db)?;
        txn.open_table(PAYOUTS).map_err(db)?;
        let indexed = txn
            .list_tables()
            .map_err(db)?
            .any(|t| t.name() == RUNNING.name());
        {
            let mut running = txn.open_table(RUNNING).map_err(db)?;
            if !indexed {
                // A store from before the index: build it once from the task records.
                let tasks = txn.open_table(TASKS).map_err(db)?;
                for entry in tasks.iter().map_err(db)? {
                    let (id, value) = entry.map_err(db)?;
                    if decode::<TaskRecord>(value.value())?.status == TaskStatus::Running {
                        running.insert(id.value(), ()).map_err(db)?;
                    }
                }
            }
        }
        txn.commit().map_err(db)?;
        let database = Arc::new(database);
        let (writer, jobs) = mpsc::channel();
        let shared = database.clone();
        let thread = std::thread::Builder::new()
            .name("d402-store-writer".into())
            .spawn(move || write_batches(&shared, &jobs))
            .map_err(|e| db(redb::Error::from(e)))?;
        Ok(Self {
            db: database,
            writer: Some(writer),
            thread: Some(thread),
        })
    }

    fn submit(&self, change: Change, reply: Reply) -> Result<(), StoreError> {
        let writer = self.writer.as_ref().ok_or(StoreError::Closed)?;
        writer.send((change, reply)).map_err(|_| StoreError::Closed)
    }

    /// Applies `change` and blocks until it is durable.
    fn change(&self, change: Change) -> Result<Changed, StoreError> {
        let (reply, done) = mpsc::sync_channel(1);
        self.submit(change, Reply::Blocking(reply))?;
        done.recv().map_err(|_| StoreError::Closed)?
    }

    /// Applies `change` and waits, without blocking a thread, until it is durable.
    async fn change_async(&self, change: Change) -> Result<Changed, StoreError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.submit(change, Reply::Async(reply))?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    fn accept_change(record: &TaskRecord) -> Result<Change, StoreError> {
        Ok(Change::Accept {
            record: Box::new(record.clone()),
            encoded: encode(record)?,
        })
    }

    fn accepted(changed: Changed) -> Accepted {
        match changed {
            Changed::Accepted(accepted) => accepted,
            _ => unreachable!("an accept change answers Accepted"),
        }
    }

    /// Consumes a payment, durably: refuses a key (or `payment-identifier`) already used
    /// for another request, returns the existing task for the same request, or applies the
    /// payment's holds (the simulated debit) and stores the payment and the new task.
    /// Blocks the calling thread.
    pub fn accept_payment(&self, record: &TaskRecord) -> Result<Accepted, StoreError> {
        self.change(Self::accept_change(record)?)
            .map(Self::accepted)
    }

    /// [`Self::accept_payment`] for async callers.
    pub async fn accept_payment_async(&self, record: &TaskRecord) -> Result<Accepted, StoreError> {
        self.change_async(Self::accept_change(record)?)
            .await
            .map(Self::accepted)
    }

    fn settle_change(
        record: &TaskRecord,
        receipts: &Receipts,
        ledger: &[LedgerChange],
        owed: &[OwedPayout],
    ) -> Result<Change, StoreError> {
        Ok(Change::Settle {
            task_id: record.task_id.clone(),
            settling: record.status.is_settling(),
            record: encode(record)?,
            receipts: encode(receipts)?,
            ledger: ledger.to_vec(),
            reputation: receipts
                .reputation
                .iter()
                .map(|e| (e.payload.subject.to_string(), i64::from(e.payload.delta)))
                .collect(),
            owed: owed
                .iter()
                .map(|p| Ok((p.key(), encode(p)?)))
                .collect::<Result<_, StoreError>>()?,
        })
    }

    /// Settles a task, durably and atomically: stores the final record and its receipts,
    /// applies the rail's ledger changes and the receipts' reputation events, and records
    /// the payouts `owed` on an external rail (each once: a recorded payout keeps its state).
    /// A task already final (neither running nor settling) is refused, changing nothing.
    /// Blocks the calling thread.
    pub fn settle(
        &self,
        record: &TaskRecord,
        receipts: &Receipts,
        ledger: &[LedgerChange],
        owed: &[OwedPayout],
    ) -> Result<(), StoreError> {
        self.change(Self::settle_change(record, receipts, ledger, owed)?)
            .map(drop)
    }

    /// [`Self::settle`] for async callers.
    pub async fn settle_async(
        &self,
        record: &TaskRecord,
        receipts: &Receipts,
        ledger: &[LedgerChange],
        owed: &[OwedPayout],
    ) -> Result<(), StoreError> {
        self.change_async(Self::settle_change(record, receipts, ledger, owed)?)
            .await
            .map(drop)
    }

    /// Records where paying `payout` stands, durably (before a transfer is sent, and after).
    pub fn record_payout(&self, payout: &OwedPayout) -> Result<(), StoreError> {
        self.change(Change::Payout {
            key: payout.key(),
            encoded: encode(payout)?,
        })
        .map(drop)
    }

    /// Every payout owed on an external rail, by task and index.
    pub fn payouts(&self) -> Result<Vec<OwedPayout>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(PAYOUTS).map_err(db)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db)? {
            let (_, value) = entry.map_err(db)?;
            out.push(decode(value.value())?);
        }
        Ok(out)
    }

    /// Adds `amount` to `account` (the development faucet); returns the new balance.
    pub fn credit(&self, account: &str, amount: Amount) -> Result<Amount, StoreError> {
        match self.change(Change::Credit {
            account: account.to_string(),
            amount: amount.micros(),
        })? {
            Changed::Credited(balance) => Ok(Amount::from_micros(balance)),
            _ => unreachable!("a credit change answers Credited"),
        }
    }

    /// The task an earlier use of this payment created (a replay), `None` for a fresh
    /// payment, or an error when the payment or its identifier paid for something else.
    pub fn find_paid(&self, claim: &PaymentClaim<'_>) -> Result<Option<TaskRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        find_paid(
            &txn.open_table(PAYMENTS).map_err(db)?,
            &txn.open_table(PAYMENT_IDS).map_err(db)?,
            &txn.open_table(TASKS).map_err(db)?,
            claim,
        )
    }

    /// The pricing version of each `(sku, price, unit)` listing: 1 the first time a SKU is
    /// listed, the same while its price and unit stay, one more each time either changes.
    /// One durable transaction for all of them, committed before they are returned, so an
    /// index that saw a version never sees it again with another price.
    pub fn pricing_versions(
        &self,
        listings: &[(&str, Amount, &str)],
    ) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let versions = {
            let mut table = txn.open_table(PRICING).map_err(db)?;
            let mut versions = Vec::with_capacity(listings.len());
            for &(sku, price, unit) in listings {
                let listed: Option<Pricing> = match table.get(sku).map_err(db)? {
                    Some(stored) => Some(decode(stored.value())?),
                    None => None,
                };
                let version = match listed {
                    Some(listed)
                        if listed.price_micros == price.micros() && listed.unit == unit =>
                    {
                        versions.push(listed.version);
                        continue;
                    }
                    Some(listed) => listed.version + 1,
                    None => 1,
                };
                let pricing = Pricing {
                    price_micros: price.micros(),
                    unit: unit.to_string(),
                    version,
                };
                table
                    .insert(sku, encode(&pricing)?.as_slice())
                    .map_err(db)?;
                versions.push(version);
            }
            versions
        };
        txn.commit()
            .map_err(|e| StoreError::Commit(e.to_string()))?;
        Ok(versions)
    }

    /// The reputation score of `account` (0 when unknown).
    pub fn reputation(&self, account: &str) -> Result<i64, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(REPUTATION).map_err(db)?;
        Ok(table.get(account).map_err(db)?.map_or(0, |g| g.value()))
    }

    /// The ledger balance of `account`.
    pub fn balance(&self, account: &str) -> Result<Amount, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let ledger = txn.open_table(LEDGER).map_err(db)?;
        Ok(Amount::from_micros(
            ledger.get(account).map_err(db)?.map_or(0, |g| g.value()),
        ))
    }

    /// The task `task_id`, if known.
    pub fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let tasks = txn.open_table(TASKS).map_err(db)?;
        tasks
            .get(task_id)
            .map_err(db)?
            .map(|g| decode(g.value()))
            .transpose()
    }

    /// The receipts of `task_id`, once settled.
    pub fn receipts(&self, task_id: &str) -> Result<Option<Receipts>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let receipts = txn.open_table(RECEIPTS).map_err(db)?;
        receipts
            .get(task_id)
            .map_err(db)?
            .map(|g| decode(g.value()))
            .transpose()
    }

    /// Tasks matching `filter`, newest first. Reads every task record (the store has no
    /// index by time or capability): meant for operators, not for the request path.
    pub fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let tasks = txn.open_table(TASKS).map_err(db)?;
        let mut out = Vec::new();
        for entry in tasks.iter().map_err(db)? {
            let (_, value) = entry.map_err(db)?;
            let record: TaskRecord = decode(value.value())?;
            if filter.matches(&record) {
                out.push(record);
            }
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        if let Some(limit) = filter.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    /// Every account on the simulated ledger with its balance.
    pub fn accounts(&self) -> Result<Vec<(String, Amount)>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let ledger = txn.open_table(LEDGER).map_err(db)?;
        let mut out = Vec::new();
        for entry in ledger.iter().map_err(db)? {
            let (account, balance) = entry.map_err(db)?;
            out.push((
                account.value().to_string(),
                Amount::from_micros(balance.value()),
            ));
        }
        Ok(out)
    }

    /// Tasks paid but not decided (to refund after a restart).
    pub fn running(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.indexed(RUNNING)
    }

    /// Tasks decided whose payment is still being settled on an external rail (to settle
    /// again after a restart, and while retrying).
    pub fn settling(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.indexed(SETTLING)
    }

    /// The task records an index table names.
    fn indexed(&self, index: TableDefinition<&str, ()>) -> Result<Vec<TaskRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let (ids, tasks) = (
            txn.open_table(index).map_err(db)?,
            txn.open_table(TASKS).map_err(db)?,
        );
        let mut out = Vec::new();
        for entry in ids.iter().map_err(db)? {
            let (id, _) = entry.map_err(db)?;
            let id = id.value();
            let record = tasks.get(id).map_err(db)?.ok_or_else(|| {
                StoreError::Corrupt(format!("{} task {id} is missing", index.name()))
            })?;
            out.push(decode(record.value())?);
        }
        Ok(out)
    }
}

impl Drop for NodeStore {
    /// Stops the writer after the changes already sent, so the file is closed on return.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer loop: takes every change waiting (up to [`MAX_BATCH`]), applies them in one
/// transaction, commits, then answers each caller. A failed commit fails the whole batch.
fn write_batches(db: &Database, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (changes, replies): (Vec<Change>, Vec<_>) = batch.into_iter().unzip();
        match apply(db, changes) {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                for reply in replies {
                    reply.send(Err(StoreError::Commit(e.to_string())));
                }
            }
        }
    }
}

fn apply(
    database: &Database,
    changes: Vec<Change>,
) -> Result<Vec<Result<Changed, StoreError>>, StoreError> {
    let txn = database.begin_write().map_err(db)?;
    let mut results = Vec::with_capacity(changes.len());
    {
        let mut tables = Tables {
            tasks: txn.open_table(TASKS).map_err(db)?,
            payments: txn.open_table(PAYMENTS).map_err(db)?,
            payment_ids: txn.open_table(PAYMENT_IDS).map_err(db)?,
            receipts: txn.open_table(RECEIPTS).map_err(db)?,
            ledger: txn.open_table(LEDGER).map_err(db)?,
            reputation: txn.open_table(REPUTATION).map_err(db)?,
            running: txn.open_table(RUNNING).map_err(db)?,
            settling: txn.open_table(SETTLING).map_err(db)?,
            payouts: txn.open_table(PAYOUTS).map_err(db)?,
        };
        for change in changes {
            match tables.apply(change) {
                // A database failure may have left a change half-written: abort the batch.
                Err(e @ StoreError::Db(_)) => return Err(e),
                result => results.push(result),
            }
        }
    }
    txn.commit().map_err(db)?;
    Ok(results)
}

struct Tables<'t> {
    tasks: redb::Table<'t, &'static str, &'static [u8]>,
    payments: redb::Table<'t, &'static str, &'static str>,
    payment_ids: redb::Table<'t, &'static str, &'static str>,
    receipts: redb::Table<'t, &'static str, &'static [u8]>,
    ledger: redb::Table<'t, &'static str, u64>,
    reputation: redb::Table<'t, &'static str, i64>,
    running: redb::Table<'t, &'static str, ()>,
    settling: redb::Table<'t, &'static str, ()>,
    payouts: redb::Table<'t, &'static str, &'static [u8]>,
}

impl Tables<'_> {
    fn apply(&mut self, change: Change) -> Result<Changed, StoreError> {
        match change {
            Change::Accept { record, encoded } => {
                self.accept(&record, &encoded).map(Changed::Accepted)
            }
            Change::Settle {
                task_id,
                settling,
                record,
                receipts,
                ledger,
                reputation,
                owed,
            } => {
                self.settle(&task_id, settling, &record, &receipts, &ledger, &reputation)?;
                for (key, encoded) in owed {
                    if self.payouts.get(key.as_str()).map_err(db)?.is_none() {
                        self.payouts
                            .insert(key.as_str(), encoded.as_slice())
                            .map_err(db)?;
                    }
                }
                Ok(Changed::Settled)
            }
            Change::Payout { key, encoded } => {
                self.payouts
                    .insert(key.as_str(), encoded.as_slice())
                    .map_err(db)?;
                Ok(Changed::Payout)
            }
            Change::Credit { account, amount } => self
                .apply_ledger(&[LedgerChange::Credit {
                    account,
                    amount: Amount::from_micros(amount),
                }])
                .map(|balances| Changed::Credited(balances[0])),
        }
    }

    fn accept(&mut self, record: &TaskRecord, encoded: &[u8]) -> Result<Accepted, StoreError> {
        let claim = PaymentClaim::of(record);
        if let Some(existing) = find_paid(&self.payments, &self.payment_ids, &self.tasks, &claim)? {
            return Ok(Accepted::Replay(Box::new(existing)));
        }
        self.apply_ledger(&record.payment.holds)?;
        self.payments
            .insert(
                record.payment.payment_key.0.as_str(),
                record.task_id.as_str(),
            )
            .map_err(db)?;
        if let Some(id) = &record.payment_id {
            self.payment_ids
                .insert(id.as_str(), record.task_id.as_str())
                .map_err(db)?;
        }
        self.tasks
            .insert(record.task_id.as_str(), encoded)
            .map_err(db)?;
        self.running
            .insert(record.task_id.as_str(), ())
            .map_err(db)?;
        Ok(Accepted::New)
    }

    fn settle(
        &mut self,
        task_id: &str,
        settling: bool,
        record: &[u8],
        receipts: &[u8],
        ledger: &[LedgerChange],
        reputation: &[(String, i64)],
    ) -> Result<(), StoreError> {
        // Only a running task (its decision) or a settling one (its settlement completing,
        // or a retry) is settled: a final one stays as it was.
        if self.running.get(task_id).map_err(db)?.is_none()
            && self.settling.get(task_id).map_err(db)?.is_none()
        {
            return Err(StoreError::AlreadyDecided(task_id.to_string()));
        }
        self.apply_ledger(ledger)?;
        self.tasks.insert(task_id, record).map_err(db)?;
        self.receipts.insert(task_id, receipts).map_err(db)?;
        if settling {
            self.settling.insert(task_id, ()).map_err(db)?;
        } else {
            self.settling.remove(task_id).map_err(db)?;
        }
        // The decision's reputation events count once: when the task leaves `running`
        // (a settling task is stored again when its settlement completes).
        let decided_now = self.running.remove(task_id).map_err(db)?.is_some();
        for (subject, delta) in reputation.iter().filter(|_| decided_now) {
            let score = self
                .reputation
                .get(subject.as_str())
                .map_err(db)?
                .map_or(0, |g| g.value());
            self.reputation
                .insert(subject.as_str(), score.saturating_add(*delta))
                .map_err(db)?;
        }
        Ok(())
    }

    /// Applies every ledger change in order; refuses them all, writing nothing, if a debit
    /// finds too little or a credit would overflow. Returns the new balances, in order.
    fn apply_ledger(&mut self, changes: &[LedgerChange]) -> Result<Vec<u64>, StoreError> {
        let mut next: Vec<(&str, u64)> = Vec::with_capacity(changes.len());
        for change in changes {
            let (account, amount) = match change {
                LedgerChange::Debit { account, amount }
                | LedgerChange::Credit { account, amount } => (account.as_str(), amount.micros()),
            };
            let current = match next.iter().rev().find(|(a, _)| *a == account) {
                Some((_, balance)) => *balance,
                None => self
                    .ledger
                    .get(account)
                    .map_err(db)?
                    .map_or(0, |g| g.value()),
            };
            let balance = match change {
                LedgerChange::Debit { .. } => {
                    current
                        .checked_sub(amount)
                        .ok_or(StoreError::InsufficientFunds {
                            balance: current,
                            needed: amount,
                        })?
                }
                LedgerChange::Credit { .. } => {
                    current.checked_add(amount).ok_or(StoreError::Overflow)?
                }
            };
            next.push((account, balance));
        }
        for (account, balance) in &next {
            self.ledger.insert(*account, *balance).map_err(db)?;
        }
        Ok(next.into_iter().map(|(_, b)| b).collect())
    }
}

/// What identifies a payment for replay detection: its once-only key, the client's
/// `payment-identifier`, the request it is bound to and the payload's digest.
#[derive(Debug, Clone, Copy)]
pub struct PaymentClaim<'a> {
    /// The rail's once-only key.
    pub key: &'a PaymentKey,
    /// The client's idempotency key, if any.
    pub id: Option<&'a str>,
    /// The request binding.
    pub binding: &'a str,
    /// The payload digest.
    pub digest: &'a str,
}

impl<'a> PaymentClaim<'a> {
    /// The claim of a stored (or about to be stored) task.
    pub fn of(record: &'a TaskRecord) -> Self {
        Self {
            key: &record.payment.payment_key,
            id: record.payment_id.as_deref(),
            binding: &record.binding,
            digest: &record.payment_digest,
        }
    }
}

/// The task an earlier use of the same payment created, if the claim is a replay of it;
/// an error if the payment (or its identifier) was used for something else.
fn find_paid(
    payments: &impl ReadableTable<&'static str, &'static str>,
    payment_ids: &impl ReadableTable<&'static str, &'static str>,
    tasks: &impl ReadableTable<&'static str, &'static [u8]>,
    claim: &PaymentClaim<'_>,
) -> Result<Option<TaskRecord>, StoreError> {
    let task_of = |task_id: String| -> Result<TaskRecord, StoreError> {
        let stored = tasks
            .get(task_id.as_str())
            .map_err(db)?
            .ok_or_else(|| StoreError::Corrupt(format!("payment names missing task {task_id}")))?;
        decode(stored.value())
    };
    if let Some(task_id) = payments.get(claim.key.0.as_str()).map_err(db)? {
        let task = task_of(task_id.value().to_string())?;
        // Only the byte-identical payload (authenticated when first accepted) is a replay.
        if task.binding != claim.binding || task.payment_digest != claim.digest {
            return Err(StoreError::PaymentReused(task.task_id));
        }
        return Ok(Some(task));
    }
    if let Some(id) = claim.id
        && let Some(task_id) = payment_ids.get(id).map_err(db)?
    {
        let task = task_of(task_id.value().to_string())?;
        if task.payment_digest != claim.digest || task.binding != claim.binding {
            return Err(StoreError::PaymentIdReused(task.task_id));
        }
        return Ok(Some(task));
    }
    Ok(None)
}

/// Creates `path` readable and writable by its owner only (0600), or makes an existing file
/// so: the store holds buyers' inputs, results and balances.
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}
