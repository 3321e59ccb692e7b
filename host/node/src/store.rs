//! Durable node state in one redb file (`<state>/node.redb`): tasks, payments seen,
//! receipts with the signed claims they decided on, reputation scores and the simulated
//! ledger. Every state change that involves money is one
//! write transaction, committed (fsync'd) before the caller acts on it.

use std::path::Path;

use d402_protocol::{
    Amount, ContentId, ReputationEvent, ResultClaim, SettlementReceipt, Signed, TaskIntent, Timestamp, ValidationReceipt,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Task ID → JSON [`TaskRecord`].
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// Payment key (`<payer>:<nonce>`) → task ID. A key is consumed exactly once.
const PAYMENTS: TableDefinition<&str, &str> = TableDefinition::new("payments");
/// Task ID → JSON [`Receipts`].
const RECEIPTS: TableDefinition<&str, &[u8]> = TableDefinition::new("receipts");
/// Account (base58) → balance in micro-dollars, the simulated rail's ledger.
const LEDGER: TableDefinition<&str, u64> = TableDefinition::new("ledger");
/// Account (base58) → reputation score, the sum of the deltas of its reputation events.
const REPUTATION: TableDefinition<&str, i64> = TableDefinition::new("reputation");

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
    #[error("payment already used for task {0} with a different request")]
    PaymentReused(String),
    /// A balance would overflow.
    #[error("ledger overflow")]
    Overflow,
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
    /// A validated result was accepted and paid out.
    Accepted,
    /// No acceptable result: the buyer was refunded.
    Rejected,
}

impl TaskStatus {
    /// The spec's word for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
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
    /// The paying account.
    pub payer: String,
    /// The consumed payment key.
    pub payment_key: String,
    /// Worker ids leased (known once the task settled).
    #[serde(default)]
    pub workers: Vec<String>,
    /// `sha256:<hex>` of the canonical request body the payment is bound to.
    pub binding: String,
    /// Amount charged.
    pub amount: Amount,
    /// The `PAYMENT-RESPONSE` document.
    pub payment_response: Value,
    /// The accepted output.
    #[serde(default)]
    pub result: Option<Value>,
    /// Run evidence.
    #[serde(default)]
    pub evidence: Option<Value>,
    /// Why the task was rejected.
    #[serde(default)]
    pub error: Option<Value>,
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
    pub verdicts: Vec<Value>,
    /// Leased runs that produced no claim (`{workerId, error}`).
    #[serde(default)]
    pub failures: Vec<Value>,
    /// Reputation events issued for the task.
    #[serde(default)]
    pub reputation: Vec<Signed<ReputationEvent>>,
}

/// What [`NodeStore::accept_payment`] did.
#[derive(Debug)]
pub enum Accepted {
    /// A fresh payment: debited and recorded with the new task.
    New,
    /// The same payment for the same request: the existing task.
    Replay(Box<TaskRecord>),
}

/// The node's durable store.
pub struct NodeStore {
    db: Database,
}

impl NodeStore {
    /// Opens (or creates) the store at `path` and makes sure every table exists.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| db(redb::Error::from(e)))?;
        }
        let db_ = Database::create(path).map_err(db)?;
        let txn = db_.begin_write().map_err(db)?;
        txn.open_table(TASKS).map_err(db)?;
        txn.open_table(PAYMENTS).map_err(db)?;
        txn.open_table(RECEIPTS).map_err(db)?;
        txn.open_table(LEDGER).map_err(db)?;
        txn.open_table(REPUTATION).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(Self { db: db_ })
    }

    /// Consumes a payment: in one transaction, refuses a key already used for another
    /// request, returns the existing task for the same request, or debits `record.payer`
    /// by `record.amount` and stores the payment and the new task.
    pub fn accept_payment(&self, record: &TaskRecord) -> Result<Accepted, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut payments = txn.open_table(PAYMENTS).map_err(db)?;
            let mut tasks = txn.open_table(TASKS).map_err(db)?;
            let existing = payments.get(record.payment_key.as_str()).map_err(db)?.map(|g| g.value().to_string());
            if let Some(task_id) = existing {
                let bytes = tasks
                    .get(task_id.as_str())
                    .map_err(db)?
                    .ok_or_else(|| StoreError::Corrupt(format!("payment names missing task {task_id}")))?
                    .value()
                    .to_vec();
                let task: TaskRecord = decode(&bytes)?;
                if task.binding != record.binding {
                    return Err(StoreError::PaymentReused(task_id));
                }
                return Ok(Accepted::Replay(Box::new(task)));
            }
            let mut ledger = txn.open_table(LEDGER).map_err(db)?;
            let balance = ledger.get(record.payer.as_str()).map_err(db)?.map_or(0, |g| g.value());
            let needed = record.amount.micros();
            if balance < needed {
                return Err(StoreError::InsufficientFunds { balance, needed });
            }
            ledger.insert(record.payer.as_str(), balance - needed).map_err(db)?;
            payments.insert(record.payment_key.as_str(), record.task_id.as_str()).map_err(db)?;
            tasks.insert(record.task_id.as_str(), encode(record)?.as_slice()).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(Accepted::New)
    }

    /// Settles a task in one transaction: stores the final record and its receipts, credits
    /// every `(account, amount)` and applies the receipts' reputation events.
    pub fn settle(&self, record: &TaskRecord, receipts: &Receipts, credits: &[(String, Amount)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut tasks = txn.open_table(TASKS).map_err(db)?;
            let mut stored = txn.open_table(RECEIPTS).map_err(db)?;
            let mut ledger = txn.open_table(LEDGER).map_err(db)?;
            tasks.insert(record.task_id.as_str(), encode(record)?.as_slice()).map_err(db)?;
            stored.insert(record.task_id.as_str(), encode(receipts)?.as_slice()).map_err(db)?;
            for (account, amount) in credits {
                let balance = ledger.get(account.as_str()).map_err(db)?.map_or(0, |g| g.value());
                let next = balance.checked_add(amount.micros()).ok_or(StoreError::Overflow)?;
                ledger.insert(account.as_str(), next).map_err(db)?;
            }
            let mut reputation = txn.open_table(REPUTATION).map_err(db)?;
            for event in &receipts.reputation {
                let subject = event.payload.subject.to_string();
                let score = reputation.get(subject.as_str()).map_err(db)?.map_or(0, |g| g.value());
                reputation.insert(subject.as_str(), score.saturating_add(i64::from(event.payload.delta))).map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    /// The reputation score of `account` (0 when unknown).
    pub fn reputation(&self, account: &str) -> Result<i64, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(REPUTATION).map_err(db)?;
        Ok(table.get(account).map_err(db)?.map_or(0, |g| g.value()))
    }

    /// Adds `amount` to `account` (the development faucet); returns the new balance.
    pub fn credit(&self, account: &str, amount: Amount) -> Result<Amount, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let next = {
            let mut ledger = txn.open_table(LEDGER).map_err(db)?;
            let balance = ledger.get(account).map_err(db)?.map_or(0, |g| g.value());
            let next = balance.checked_add(amount.micros()).ok_or(StoreError::Overflow)?;
            ledger.insert(account, next).map_err(db)?;
            next
        };
        txn.commit().map_err(db)?;
        Ok(Amount::from_micros(next))
    }

    /// The ledger balance of `account`.
    pub fn balance(&self, account: &str) -> Result<Amount, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let ledger = txn.open_table(LEDGER).map_err(db)?;
        Ok(Amount::from_micros(ledger.get(account).map_err(db)?.map_or(0, |g| g.value())))
    }

    /// The task `task_id`, if known.
    pub fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let tasks = txn.open_table(TASKS).map_err(db)?;
        tasks.get(task_id).map_err(db)?.map(|g| decode(g.value())).transpose()
    }

    /// The receipts of `task_id`, once settled.
    pub fn receipts(&self, task_id: &str) -> Result<Option<Receipts>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let receipts = txn.open_table(RECEIPTS).map_err(db)?;
        receipts.get(task_id).map_err(db)?.map(|g| decode(g.value())).transpose()
    }

    /// Tasks paid but not settled (to refund after a restart).
    pub fn running(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let tasks = txn.open_table(TASKS).map_err(db)?;
        let mut out = Vec::new();
        for entry in tasks.iter().map_err(db)? {
            let (_, value) = entry.map_err(db)?;
            let task: TaskRecord = decode(value.value())?;
            if task.status == TaskStatus::Running {
                out.push(task);
            }
        }
        Ok(out)
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}
