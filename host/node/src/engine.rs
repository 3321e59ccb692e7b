//! Task execution: the gateway leases the task to `fanout` workers — its local pool and, with
//! the peer network, remote workers chosen from their signed offers — each runs the
//! capability in the sandbox and signs a result claim, the validator
//! checks every claim (integrity, the manifest's model, replay on the claim's snapshots for
//! snapshot-deterministic capabilities) and the mode decides:
//!
//! - `single`: one worker; its claim is accepted when valid;
//! - `race`: `fanout` workers; the first valid claim wins and the other runs are cancelled;
//! - `quorum`: `fanout` workers; the first group of `quorum` agreeing valid claims is
//!   accepted (agreement is the validation, so quorum claims are not replayed).
//!
//! Remote workers are chosen from unexpired offers that pin the task's exact manifest CID,
//! ask no more than the budget and meet the gateway's minimum protocol and software
//! versions, best reputation first. A remote worker that cannot be reached or disappears
//! mid-task is replaced by the next candidate while the deadline allows. Remote claims of
//! snapshot-deterministic capabilities are replayed on snapshots fetched from the worker by
//! CID.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use d402_blobstore::BlobStore;
use d402_network::{LeaseRequest, LeaseResponse, Network, peer_id_of};
use d402_protocol::{
    Amount, ContentId, FailedRun, Keypair, Lease, NodeOffer, PublicKey, ReputationEvent,
    ReputationKind, ResultClaim, Signed, TaskError, TaskErrorKind, TaskIntent, Verdict,
};
use d402_runtime::{PageSource, Runtime};
use tokio::task::JoinSet;

use crate::catalog::ServedCapability;
use crate::config::Role;
use crate::decision::Tally;
use crate::validator::ClaimValidator;
use crate::worker::{internal, run_lease};
use d402_store::StateDir;

/// A worker of the node's local pool: its own wallet, paid for accepted claims.
pub struct LocalWorker {
    key: Keypair,
    account: String,
}

impl LocalWorker {
    fn new(key: Keypair) -> Self {
        Self {
            account: key.public().to_string(),
            key,
        }
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

/// The outcome of a task's execution.
pub struct Execution {
    /// Worker ids leased, in lease order.
    pub workers: Vec<String>,
    /// Signed claims received, with the validator's verdict on each.
    pub claims: Vec<(Signed<ResultClaim>, Verdict)>,
    /// Runs that produced no claim.
    pub failures: Vec<FailedRun>,
    /// `Ok(indices into claims)` of accepted claims, or `Err(error)` for the buyer.
    pub decision: Result<Vec<usize>, TaskError>,
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
            .filter(|(_, v)| matches!(v, Verdict::Rejected { .. }))
            .filter_map(|(c, _)| c.cid().ok())
            .collect()
    }
}

/// Which remote workers a gateway accepts, besides the exact manifest CID and the price.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Lowest protocol version accepted.
    pub min_protocol_version: u32,
    /// Lowest software version accepted (semantic versioning: pre-releases rank below
    /// their release).
    pub min_software_version: Option<semver::Version>,
}

impl PeerPolicy {
    /// Why the worker making `offer` cannot be leased a task of manifest `manifest_cid`
    /// within `budget`, if it cannot.
    pub fn refuses(
        &self,
        offer: &NodeOffer,
        manifest_cid: &ContentId,
        budget: Amount,
    ) -> Option<String> {
        if !offer.roles.iter().any(|r| r == Role::Worker.as_str()) {
            return Some("not a worker".into());
        }
        if offer.protocol_version < self.min_protocol_version {
            return Some(format!(
                "protocol version {} is below {}",
                offer.protocol_version, self.min_protocol_version
            ));
        }
        if let Some(minimum) = &self.min_software_version {
            match semver::Version::parse(&offer.software_version) {
                Err(_) => {
                    return Some(format!(
                        "software version {:?} is not a semantic version",
                        offer.software_version
                    ));
                }
                Ok(version) if version < *minimum => {
                    return Some(format!("software version {version} is below {minimum}"));
                }
                Ok(_) => {}
            }
        }
        match offer
            .capabilities
            .iter()
            .find(|c| c.manifest_cid == *manifest_cid)
        {
            None => Some("does not offer this exact manifest".into()),
            Some(c) if c.price.0 > budget => Some(format!("asks {} above the budget", c.price)),
            Some(_) => None,
        }
    }
}

/// A worker a task can be leased to.
#[derive(Clone)]
enum Assignee {
    /// Index into the local pool.
    Local(usize),
    /// A worker known from its signed offer.
    Remote(PublicKey),
}

/// Runs tasks on the local worker pool and on remote workers.
pub struct Engine {
    runtime: Arc<Runtime>,
    workers: Vec<LocalWorker>,
    next: AtomicUsize,
    gateway: Keypair,
    pages: Option<Arc<dyn PageSource>>,
    validator: ClaimValidator,
    network: Option<Arc<Network>>,
    peer_policy: PeerPolicy,
}

/// A finished run of one lease: the assignee's index, the lease and the claim or error.
type RunOutcome = (usize, Signed<Lease>, Result<Signed<ResultClaim>, TaskError>);

/// The leases of one task so far and the runs they started.
struct Leasing<'a> {
    candidates: std::vec::IntoIter<Assignee>,
    assignees: Vec<Assignee>,
    runs: JoinSet<RunOutcome>,
    intent: &'a Signed<TaskIntent>,
    served: &'a Arc<ServedCapability>,
}

impl Engine {
    /// An engine with `count` local workers whose wallets live in `<state>/workers/`
    /// (created on first start). `pages` serves the `browser` import; `blobs` holds the
    /// snapshots replay validation reads.
    pub fn open(
        state: &Path,
        count: usize,
        runtime: Arc<Runtime>,
        gateway: Keypair,
        pages: Option<Arc<dyn PageSource>>,
        blobs: BlobStore,
    ) -> anyhow::Result<Self> {
        let workers = (0..count)
            .map(|i| {
                let path = StateDir::new(state).worker_key(i);
                let key = d402_wallet::load_or_create(&path)
                    .with_context(|| format!("worker wallet {}", path.display()))?;
                Ok(LocalWorker::new(key))
            })
            .collect::<anyhow::Result<_>>()?;
        let next = AtomicUsize::new(0);
        Ok(Self {
            validator: ClaimValidator::new(gateway.clone(), runtime.clone(), blobs),
            runtime,
            workers,
            next,
            gateway,
            pages,
            network: None,
            peer_policy: PeerPolicy::default(),
        })
    }

    /// Also leases tasks to remote workers heard on `network`, as `policy` allows.
    pub fn with_network(mut self, network: Arc<Network>, policy: PeerPolicy) -> Self {
        self.validator = self.validator.with_network(network.clone());
        self.network = Some(network);
        self.peer_policy = policy;
        self
    }

    /// The peer network, when remote workers are used.
    pub fn network(&self) -> Option<&Arc<Network>> {
        self.network.as_ref()
    }

    /// The local workers.
    pub fn workers(&self) -> &[LocalWorker] {
        &self.workers
    }

    /// The validator that checks this engine's claims.
    pub fn validator(&self) -> &ClaimValidator {
        &self.validator
    }

    /// The sandbox runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Everyone who could run `intent` on `served`, in the order they are asked: the local
    /// pool (rotating), then remote workers by reputation (rotating among equals).
    fn candidates(
        &self,
        intent: &TaskIntent,
        served: &ServedCapability,
        reputation: &dyn Fn(&str) -> i64,
    ) -> Vec<Assignee> {
        let rotation = self
            .next
            .fetch_add(intent.fanout as usize, Ordering::Relaxed);
        let local = self.workers.len();
        let mut candidates: Vec<Assignee> = (0..local)
            .map(|i| Assignee::Local((rotation + i) % local))
            .collect();
        let Some(network) = &self.network else {
            return candidates;
        };
        let mut remote: Vec<(i64, PublicKey)> = Vec::new();
        for (key, offer) in network.offers() {
            if key == self.gateway.public() {
                continue;
            }
            match self
                .peer_policy
                .refuses(&offer.payload, &served.manifest_cid, intent.budget)
            {
                Some(reason) => tracing::debug!(worker = %key, %reason, "offer not used"),
                None => remote.push((reputation(&key.to_string()), key)),
            }
        }
        remote.sort_by_key(|(score, key)| (std::cmp::Reverse(*score), key.to_string()));
        if let Some((best, _)) = remote.first() {
            let ties = remote.iter().take_while(|(score, _)| score == best).count();
            remote[..ties].rotate_left(rotation % ties);
        }
        candidates.extend(remote.into_iter().map(|(_, key)| Assignee::Remote(key)));
        candidates
    }

    fn public_key(&self, assignee: &Assignee) -> PublicKey {
        match assignee {
            Assignee::Local(i) => self.workers[*i].key.public(),
            Assignee::Remote(key) => *key,
        }
    }

    /// Leases the task to the next candidate and starts its run; false when none is left.
    fn lease_next(self: &Arc<Self>, leasing: &mut Leasing<'_>, execution: &mut Execution) -> bool {
        let Some(assignee) = leasing.candidates.next() else {
            return false;
        };
        let index = leasing.assignees.len();
        let worker = self.public_key(&assignee);
        let task = &leasing.intent.payload;
        let lease = Lease {
            lease_id: format!("lease:{}:{index}", task.task_id.trim_start_matches("task:")),
            task_id: task.task_id.clone(),
            gateway: self.gateway.public(),
            worker,
            manifest_cid: leasing.served.manifest_cid,
            artifact_cid: leasing.served.loaded.artifact_cid(),
            price: task.budget,
            expires_at: task.created_at.plus_millis(task.deadline_ms),
        };
        let lease = match Signed::sign(lease, &self.gateway) {
            Ok(lease) => lease,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a lease");
                return false;
            }
        };
        execution.workers.push(worker_id(&worker.to_string()));
        leasing.assignees.push(assignee.clone());
        let engine = self.clone();
        let (intent, served) = (leasing.intent.clone(), leasing.served.clone());
        leasing.runs.spawn(async move {
            let outcome = engine
                .run_assignee(&assignee, &lease, &intent, &served)
                .await;
            (index, lease, outcome)
        });
        true
    }

    /// Executes `intent` on `served`: leases, runs, validation and the mode's decision, all
    /// before `intent.deadline_ms` has passed since now. `reputation` gives a worker's score.
    pub async fn execute(
        self: &Arc<Self>,
        signed_intent: &Signed<TaskIntent>,
        served: &Arc<ServedCapability>,
        reputation: impl Fn(&str) -> i64,
    ) -> Execution {
        let intent = &signed_intent.payload;
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(intent.deadline_ms);
        let mut leasing = Leasing {
            candidates: self.candidates(intent, served, &reputation).into_iter(),
            assignees: Vec::new(),
            runs: JoinSet::new(),
            intent: signed_intent,
            served,
        };
        let mut execution = Execution {
            workers: Vec::new(),
            claims: Vec::new(),
            failures: Vec::new(),
            decision: Err(TaskError::new(
                TaskErrorKind::NoWorkers,
                "no worker serves this exact manifest",
            )),
            reputation: Vec::new(),
        };
        let fanout = intent.fanout.max(1) as usize;
        while leasing.assignees.len() < fanout && self.lease_next(&mut leasing, &mut execution) {}
        if leasing.assignees.is_empty() {
            return execution;
        }
        let mut tally = Tally::new(intent.mode, intent.fanout, intent.quorum, &served.validator);
        loop {
            let (index, lease, claim) =
                match tokio::time::timeout_at(deadline, leasing.runs.join_next()).await {
                    Err(_) => {
                        tally.deadline_passed();
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(join))) => {
                        tracing::error!(error = %join, "a worker run panicked");
                        continue;
                    }
                    Ok(Some(Ok(outcome))) => outcome,
                };
            let subject = self.public_key(&leasing.assignees[index]);
            tracing::debug!(task = %intent.task_id, worker = %subject, claimed = claim.is_ok(), "a leased run ended");
            let claim = match claim {
                Ok(claim) => claim,
                Err(error) => {
                    let kind = error.kind;
                    let after = tally.run_failed(worker_id(&subject.to_string()), error);
                    if after.penalize {
                        self.observe(
                            &mut execution,
                            subject,
                            intent,
                            ReputationKind::Reliability,
                            -1,
                            "the run failed",
                        );
                    }
                    if after.replace && self.lease_next(&mut leasing, &mut execution) {
                        tracing::warn!(worker = %subject, %kind, "the task is leased to another worker");
                    }
                    continue;
                }
            };
            let from = match leasing.assignees[index] {
                Assignee::Remote(key) => Some(key),
                Assignee::Local(_) => None,
            };
            let verdict = self
                .validator
                .verdict(
                    &claim,
                    &lease.payload,
                    intent,
                    served,
                    reputation(&subject.to_string()),
                    from,
                )
                .await;
            if let Verdict::Rejected { reason } = &verdict {
                self.observe(
                    &mut execution,
                    subject,
                    intent,
                    ReputationKind::Accuracy,
                    -1,
                    reason,
                );
            }
            if tally.claimed(claim, verdict) {
                break;
            }
        }
        leasing.runs.abort_all();
        let outcome = tally.conclude(intent.deadline_ms);
        for earned in &outcome.earned {
            let subject = outcome.claims[earned.claim].0.payload.worker;
            self.observe(
                &mut execution,
                subject,
                intent,
                ReputationKind::Accuracy,
                earned.delta,
                &earned.reason,
            );
        }
        execution.claims = outcome.claims;
        execution.failures = outcome.failures;
        execution.decision = outcome.decision;
        execution
    }

    /// Adds the validator's signed reputation event about `subject` to `execution`.
    fn observe(
        &self,
        execution: &mut Execution,
        subject: PublicKey,
        intent: &TaskIntent,
        kind: ReputationKind,
        delta: i32,
        reason: &str,
    ) {
        if let Some(event) =
            self.validator
                .reputation_event(subject, &intent.task_id, kind, delta, reason)
        {
            execution.reputation.push(event);
        }
    }

    /// Runs `lease` on `assignee`: in the local sandbox, or on the remote worker over the
    /// lease protocol. A remote worker that did not answer is `unreachable`.
    async fn run_assignee(
        &self,
        assignee: &Assignee,
        lease: &Signed<Lease>,
        intent: &Signed<TaskIntent>,
        served: &ServedCapability,
    ) -> Result<Signed<ResultClaim>, TaskError> {
        match assignee {
            Assignee::Local(i) => {
                let pages = if served.loaded.manifest().permissions.browser.is_some() {
                    self.pages.clone()
                } else {
                    None
                };
                let key = &self.workers[*i].key;
                run_lease(
                    &self.runtime,
                    &served.loaded,
                    key,
                    &lease.payload,
                    &intent.payload.input,
                    pages,
                )
                .await
            }
            Assignee::Remote(key) => {
                let network = self
                    .network
                    .as_ref()
                    .ok_or_else(|| internal(&"no peer network"))?;
                let request = LeaseRequest {
                    lease: lease.clone(),
                    intent: intent.clone(),
                };
                match network.lease(peer_id_of(key), request).await {
                    Ok(LeaseResponse::Claim { claim }) => Ok(*claim),
                    Ok(LeaseResponse::Failed { error }) => Err(error),
                    Err(e) => Err(TaskError::new(TaskErrorKind::Unreachable, e.to_string())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use d402_protocol::{OfferedCapability, Price, Timestamp};

    use super::*;

    fn offer(
        roles: &[&str],
        protocol: u32,
        software: &str,
        manifest: ContentId,
        price: u64,
    ) -> NodeOffer {
        let key = Keypair::from_seed(&[7; 32]);
        NodeOffer {
            node_id: key.public(),
            addresses: vec![],
            payout_wallet: key.public().to_string(),
            evm_payout_wallet: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            capabilities: vec![OfferedCapability {
                capability_id: "util.json_transform@1".into(),
                manifest_cid: manifest,
                price: Price(Amount::from_micros(price)),
            }],
            software_version: software.into(),
            protocol_version: protocol,
            issued_at: Timestamp::now(),
            expires_at: Timestamp::now(),
        }
    }

    #[test]
    fn gateways_lease_only_to_workers_that_meet_their_policy() {
        let manifest = ContentId::of_bytes(b"manifest");
        let budget = Amount::from_micros(100);
        let policy = PeerPolicy {
            min_protocol_version: 2,
            min_software_version: Some("0.10.0".parse().unwrap()),
        };
        let refusal = |o: NodeOffer| policy.refuses(&o, &manifest, budget);
        assert_eq!(
            refusal(offer(&["worker"], 2, "0.10.0", manifest, 100)),
            None
        );
        assert_eq!(
            refusal(offer(&["worker", "gateway"], 3, "1.0.0", manifest, 50)),
            None
        );
        assert_eq!(
            refusal(offer(&["validator"], 2, "0.10.0", manifest, 100)).as_deref(),
            Some("not a worker")
        );
        assert!(
            refusal(offer(&["worker"], 1, "0.10.0", manifest, 100))
                .unwrap()
                .contains("protocol version 1 is below 2")
        );
        // Versions compare as numbers, not text: 0.9.5 < 0.10.0.
        assert!(
            refusal(offer(&["worker"], 2, "0.9.5", manifest, 100))
                .unwrap()
                .contains("software version 0.9.5 is below 0.10.0")
        );
        // A pre-release ranks below its release; text that is no version is refused.
        assert!(
            refusal(offer(&["worker"], 2, "0.10.0-rc.1", manifest, 100))
                .unwrap()
                .contains("below 0.10.0")
        );
        assert!(
            refusal(offer(&["worker"], 2, "0.10", manifest, 100))
                .unwrap()
                .contains("not a semantic version")
        );
        let other = ContentId::of_bytes(b"another manifest");
        assert!(
            refusal(offer(&["worker"], 2, "0.10.0", other, 100))
                .unwrap()
                .contains("exact manifest")
        );
        assert!(
            refusal(offer(&["worker"], 2, "0.10.0", manifest, 101))
                .unwrap()
                .contains("above the budget")
        );
        assert_eq!(
            PeerPolicy::default().refuses(
                &offer(&["worker"], 0, "x", manifest, 1),
                &manifest,
                budget
            ),
            None
        );
    }
}
