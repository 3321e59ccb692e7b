//! Task execution on the node's local worker pool: the gateway leases the task to `fanout`
//! workers, each runs the capability in the sandbox and signs a result claim, the validator
//! checks every claim (integrity, the manifest's model, replay on the claim's snapshots for
//! snapshot-deterministic capabilities) and the mode decides:
//!
//! - `single`: one worker; its claim is accepted when valid;
//! - `race`: `fanout` workers; the first valid claim wins and the other runs are cancelled;
//! - `quorum`: `fanout` workers; the first group of `quorum` agreeing valid claims is
//!   accepted (agreement is the validation, so quorum claims are not replayed).
//!
//! Remote workers (the peer network) plug in behind the same lease → claim exchange.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use d402_blobstore::BlobStore;
use d402_protocol::{
    ContentHash, ContentId, ExecutionMode, Keypair, Lease, ReputationEvent, ReputationKind, ResultClaim, Signed,
    TaskIntent, Timestamp, canonical,
};
use d402_runtime::{PageSource, Runtime, TaskInfo};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::catalog::ServedCapability;
use crate::validation::{check_integrity, quorum_group};

/// A worker of the node's local pool: its own wallet, paid for accepted claims.
pub struct LocalWorker {
    key: Keypair,
    account: String,
}

impl LocalWorker {
    fn new(key: Keypair) -> Self {
        Self { account: key.public().to_string(), key }
    }

    /// The worker's payout account (base58).
    pub fn account(&self) -> &str {
        &self.account
    }
}

/// The node id receipts show for a worker account.
pub fn worker_id(account: &str) -> String {
    format!("node:{account}")
}

/// How one leased run ended.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The claim passed validation and was accepted.
    Accepted,
    /// The claim was refused (invalid, failed replay, out-voted); the reason.
    Rejected(String),
    /// The claim was valid but not needed (a quorum or race was already decided).
    Unused,
}

/// The outcome of a task's execution.
pub struct Execution {
    /// Worker ids leased, in lease order.
    pub workers: Vec<String>,
    /// Signed claims received, with the validator's verdict on each.
    pub claims: Vec<(Signed<ResultClaim>, Verdict)>,
    /// Runs that produced no claim: worker id and the run error (`{kind, message}`).
    pub failures: Vec<(String, Value)>,
    /// `Ok(indices into claims)` of accepted claims, or `Err(error)` for the buyer.
    pub decision: Result<Vec<usize>, Value>,
    /// Signed reputation events the validator issued for this task.
    pub reputation: Vec<Signed<ReputationEvent>>,
}

impl Execution {
    /// The accepted claims.
    pub fn accepted(&self) -> Vec<&Signed<ResultClaim>> {
        match &self.decision {
            Ok(indices) => indices.iter().map(|&i| &self.claims[i].0).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// CIDs of claims with a `Rejected` verdict.
    pub fn rejected_cids(&self) -> Vec<ContentId> {
        self.claims
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Rejected(_)))
            .filter_map(|(c, _)| c.cid().ok())
            .collect()
    }
}

/// Runs tasks on the local worker pool.
pub struct Engine {
    runtime: Runtime,
    workers: Vec<LocalWorker>,
    next: AtomicUsize,
    gateway: Keypair,
    pages: Option<Arc<dyn PageSource>>,
    blobs: BlobStore,
}

/// A finished run of one lease.
type RunOutcome = (usize, Result<Signed<ResultClaim>, Value>);

impl Engine {
    /// An engine with `count` local workers whose wallets live in `<state>/workers/`
    /// (created on first start). `pages` serves the `browser` import; `blobs` holds the
    /// snapshots replay validation reads.
    pub fn open(
        state: &Path,
        count: usize,
        runtime: Runtime,
        gateway: Keypair,
        pages: Option<Arc<dyn PageSource>>,
        blobs: BlobStore,
    ) -> anyhow::Result<Self> {
        let workers = (0..count.max(1))
            .map(|i| {
                let path = state.join("workers").join(format!("worker-{i}.json"));
                let key = d402_wallet::load_or_create(&path).with_context(|| format!("worker wallet {}", path.display()))?;
                Ok(LocalWorker::new(key))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { runtime, workers, next: AtomicUsize::new(0), gateway, pages, blobs })
    }

    /// The local workers.
    pub fn workers(&self) -> &[LocalWorker] {
        &self.workers
    }

    /// The sandbox runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Executes `intent` on `served`: leases, runs, validation and the mode's decision, all
    /// before `intent.deadline_ms` has passed since now. `reputation` gives a worker's score.
    pub async fn execute(
        self: &Arc<Self>,
        intent: &TaskIntent,
        served: &Arc<ServedCapability>,
        reputation: impl Fn(&str) -> i64,
    ) -> Execution {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(intent.deadline_ms);
        let fanout = (intent.fanout as usize).clamp(1, self.workers.len());
        let start = self.next.fetch_add(fanout, Ordering::Relaxed);
        let leased: Vec<usize> = (0..fanout).map(|i| (start + i) % self.workers.len()).collect();
        let mut execution = Execution {
            workers: leased.iter().map(|&w| worker_id(self.workers[w].account())).collect(),
            claims: Vec::new(),
            failures: Vec::new(),
            decision: Err(json!({"kind": "no-claims", "message": "no worker returned a result"})),
            reputation: Vec::new(),
        };
        let mut runs: JoinSet<RunOutcome> = JoinSet::new();
        for &worker in &leased {
            let engine = self.clone();
            let (intent, served) = (intent.clone(), served.clone());
            runs.spawn(async move { (worker, engine.lease_and_run(worker, &intent, &served).await) });
        }
        let quorum = match intent.mode {
            ExecutionMode::Quorum => (intent.quorum as usize).clamp(1, fanout),
            _ => 1,
        };
        let mut valid: Vec<usize> = Vec::new();
        let mut missed_deadline = false;
        loop {
            let next = match tokio::time::timeout_at(deadline, runs.join_next()).await {
                Err(_) => {
                    missed_deadline = true;
                    execution.decision = Err(json!({"kind": "deadline-missed", "message": format!("no acceptable result within {} ms", intent.deadline_ms)}));
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(join))) => {
                    tracing::error!(error = %join, "a worker run panicked");
                    continue;
                }
                Ok(Some(Ok(outcome))) => outcome,
            };
            let (worker, claim) = match next {
                (worker, Ok(claim)) => (worker, claim),
                (worker, Err(error)) => {
                    let worker = &self.workers[worker];
                    if !is_buyer_fault(&error) {
                        self.observe(&mut execution, worker.key.public(), intent, ReputationKind::Reliability, -1, "the run failed");
                    }
                    execution.failures.push((worker_id(worker.account()), error));
                    continue;
                }
            };
            let worker = &self.workers[worker];
            let verdict = self.validate(&claim, intent, served, reputation(worker.account()), intent.mode).await;
            execution.claims.push((claim, verdict.clone()));
            if let Verdict::Rejected(reason) = verdict {
                self.observe(&mut execution, worker.key.public(), intent, ReputationKind::Accuracy, -1, &reason);
                continue;
            }
            valid.push(execution.claims.len() - 1);
            let outputs: Vec<&Value> = valid.iter().map(|&i| &execution.claims[i].0.payload.output).collect();
            if let Some(group) = quorum_group(&served.validator, &outputs, quorum) {
                let accepted: Vec<usize> = group.iter().map(|&g| valid[g]).collect();
                execution.decision = Ok(accepted);
                break;
            }
        }
        runs.abort_all();
        self.conclude(&mut execution, intent, quorum, &valid, missed_deadline);
        execution
    }

    /// Marks verdicts and issues reputation events once the decision is made.
    fn conclude(&self, execution: &mut Execution, intent: &TaskIntent, quorum: usize, valid: &[usize], missed_deadline: bool) {
        let accepted = execution.decision.clone();
        match accepted {
            Ok(accepted) => {
                for &i in valid {
                    let subject = execution.claims[i].0.payload.worker;
                    if accepted.contains(&i) {
                        execution.claims[i].1 = Verdict::Accepted;
                        self.observe(execution, subject, intent, ReputationKind::Accuracy, 1, "accepted result");
                    } else if intent.mode == ExecutionMode::Quorum {
                        let reason = "out-voted: the output disagrees with the accepted quorum".to_string();
                        execution.claims[i].1 = Verdict::Rejected(reason.clone());
                        self.observe(execution, subject, intent, ReputationKind::Accuracy, -1, &reason);
                    } else {
                        execution.claims[i].1 = Verdict::Unused;
                    }
                }
            }
            Err(_) => {
                // Valid claims of an undecided task were neither accepted nor proven wrong.
                for &i in valid {
                    execution.claims[i].1 = Verdict::Unused;
                }
                if missed_deadline {
                    // The deadline is the reason, whatever else happened.
                } else if !valid.is_empty() && intent.mode == ExecutionMode::Quorum {
                    execution.decision = Err(json!({
                        "kind": "quorum-not-reached",
                        "message": format!("{} valid claims, no {quorum} of them agree", valid.len())
                    }));
                } else if execution.claims.is_empty()
                    && let Some((_, error)) = execution.failures.first()
                {
                    // Single (or all-failed) tasks report the run's own error to the buyer.
                    execution.decision = Err(error.clone());
                } else if let Some((_, Verdict::Rejected(reason))) = execution.claims.first() {
                    execution.decision = Err(json!({"kind": "claim-rejected", "message": reason}));
                }
            }
        }
    }

    fn observe(
        &self,
        execution: &mut Execution,
        subject: d402_protocol::PublicKey,
        intent: &TaskIntent,
        kind: ReputationKind,
        delta: i32,
        reason: &str,
    ) {
        let event = ReputationEvent {
            subject,
            kind,
            delta,
            task_id: Some(intent.task_id.clone()),
            reason: reason.to_string(),
            issuer: self.gateway.public(),
            issued_at: Timestamp::now(),
        };
        match Signed::sign(event, &self.gateway) {
            Ok(event) => execution.reputation.push(event),
            Err(e) => tracing::error!(error = %e, "cannot sign a reputation event"),
        }
    }

    /// Leases the task to local worker `worker`, runs it and returns the worker's signed
    /// claim, or the run error as `{kind, message}`.
    async fn lease_and_run(&self, worker: usize, intent: &TaskIntent, served: &ServedCapability) -> Result<Signed<ResultClaim>, Value> {
        let key = &self.workers[worker].key;
        let lease = Lease {
            lease_id: format!("lease:{}:{worker}", intent.task_id.trim_start_matches("task:")),
            task_id: intent.task_id.clone(),
            gateway: self.gateway.public(),
            worker: key.public(),
            manifest_cid: served.manifest_cid,
            artifact_cid: served.loaded.artifact_cid(),
            price: intent.budget,
            expires_at: intent.created_at.plus_millis(intent.deadline_ms),
        };
        let lease = Signed::sign(lease, &self.gateway).map_err(|e| internal(&e))?;
        let info = TaskInfo { task_id: intent.task_id.clone() };
        let report = self
            .runtime
            .run(&served.loaded, &info, &intent.input, self.pages.clone())
            .await
            .map_err(|failure| json!(failure.error))?;
        let output_hash = ContentHash::of(&canonical::to_vec(&report.output).map_err(|e| internal(&e))?);
        let claim = ResultClaim {
            task_id: intent.task_id.clone(),
            lease_id: lease.payload.lease_id.clone(),
            worker: key.public(),
            manifest_cid: served.manifest_cid,
            artifact_cid: served.loaded.artifact_cid(),
            input_hash: report.evidence.input_hash.unwrap_or_else(|| ContentHash::of(b"")),
            snapshot_cids: report.evidence.snapshot_cids.clone(),
            evidence: serde_json::to_value(&report.evidence).unwrap_or(Value::Null),
            output: report.output,
            output_hash,
            completed_at: Timestamp::now(),
        };
        Signed::sign(claim, key).map_err(|e| internal(&e))
    }

    /// The validator's verdict on one claim on its own.
    async fn validate(
        &self,
        claim: &Signed<ResultClaim>,
        intent: &TaskIntent,
        served: &ServedCapability,
        reputation: i64,
        mode: ExecutionMode,
    ) -> Verdict {
        let checked = claim
            .verify()
            .map_err(|e| format!("the claim's signature does not verify: {e}"))
            .and_then(|claim| check_integrity(claim, intent, &served.manifest_cid).map(|()| claim))
            .and_then(|claim| served.validator.check_claim(claim, reputation).map(|()| claim));
        let claim = match checked {
            Ok(claim) => claim,
            Err(reason) => return Verdict::Rejected(reason),
        };
        if served.validator.replays()
            && mode != ExecutionMode::Quorum
            && let Err(reason) = self.replay(claim, &intent.input, served).await
        {
            return Verdict::Rejected(reason);
        }
        Verdict::Accepted
    }

    /// Re-runs the claim's task on the claim's snapshots and compares the outputs.
    async fn replay(&self, claim: &ResultClaim, input: &Value, served: &ServedCapability) -> Result<(), String> {
        let source = d402_browser::SnapshotSource::load(&self.blobs, &claim.snapshot_cids)
            .map_err(|e| format!("cannot load the claim's snapshots: {e}"))?;
        let info = TaskInfo { task_id: claim.task_id.clone() };
        let replayed = self
            .runtime
            .run(&served.loaded, &info, input, Some(Arc::new(source)))
            .await
            .map_err(|f| format!("the replay failed: {}", json!(f.error)))?;
        if served.validator.replay_agrees(&claim.output, &replayed.output) {
            Ok(())
        } else {
            Err("the replay on the claim's snapshots produced a different result".into())
        }
    }
}

/// Errors caused by the request itself: not held against the worker.
fn is_buyer_fault(error: &Value) -> bool {
    matches!(error.get("kind").and_then(Value::as_str), Some("invalid-input" | "blocked"))
}

fn internal(error: &dyn std::fmt::Display) -> Value {
    json!({"kind": "internal", "message": error.to_string()})
}

