//! A task's execution decision as plain state, apart from leasing, sandboxes and the
//! network: the engine feeds a [`Tally`] what happened (a run failed, a claim was
//! validated, the deadline passed) and it decides which claims are accepted, when another
//! worker should be leased, what the buyer is told and which reputation each claim earns.

use d402_protocol::{
    ExecutionMode, FailedRun, ResultClaim, Signed, TaskError, TaskErrorKind, Verdict,
};
use serde_json::Value;

use crate::validation::{Validator, quorum_group};

/// Something that carries a result output: a signed claim in the engine, a bare output in
/// tests.
pub trait Claimed {
    /// The claimed output.
    fn output(&self) -> &Value;
}

impl Claimed for Signed<ResultClaim> {
    fn output(&self) -> &Value {
        &self.payload.output
    }
}

impl Claimed for Value {
    fn output(&self) -> &Value {
        self
    }
}

/// What the engine does after a leased run failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterFailure {
    /// The failure costs the worker reliability.
    pub penalize: bool,
    /// The worker did not run the task: lease it to another, while the deadline allows.
    pub replace: bool,
}

/// An accuracy reputation change the decision earned a claim's worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earned {
    /// Index of the claim (arrival order).
    pub claim: usize,
    /// +1 for an accepted result, -1 for an out-voted one.
    pub delta: i32,
    /// Why.
    pub reason: String,
}

/// The decided outcome: every claim with its final verdict, the failed runs, the decision
/// and the reputation earned.
#[derive(Debug)]
pub struct Outcome<C> {
    /// Claims in arrival order, each with its verdict.
    pub claims: Vec<(C, Verdict)>,
    /// Leased runs that produced no claim.
    pub failures: Vec<FailedRun>,
    /// Indices of the accepted claims, or the error the buyer gets.
    pub decision: Result<Vec<usize>, TaskError>,
    /// Reputation earned by the decision (beyond rejections at validation).
    pub earned: Vec<Earned>,
}

/// The running decision of one task.
pub struct Tally<'v, C> {
    mode: ExecutionMode,
    quorum: usize,
    validator: &'v Validator,
    claims: Vec<(C, Verdict)>,
    valid: Vec<usize>,
    failures: Vec<FailedRun>,
    accepted: Option<Vec<usize>>,
    missed_deadline: bool,
}

impl<'v, C: Claimed> Tally<'v, C> {
    /// A task in `mode` leased to `fanout` workers, needing `quorum` agreeing claims (quorum
    /// mode; the quorum is clamped to 1..=fanout), compared by `validator`.
    pub fn new(mode: ExecutionMode, fanout: u32, quorum: u32, validator: &'v Validator) -> Self {
        let fanout = fanout.max(1) as usize;
        let quorum = match mode {
            ExecutionMode::Quorum => (quorum as usize).clamp(1, fanout),
            _ => 1,
        };
        Self {
            mode,
            quorum,
            validator,
            claims: Vec::new(),
            valid: Vec::new(),
            failures: Vec::new(),
            accepted: None,
            missed_deadline: false,
        }
    }

    /// Whether the task is decided (enough agreeing valid claims).
    pub fn is_decided(&self) -> bool {
        self.accepted.is_some()
    }

    /// A leased run of `worker_id` produced no claim.
    pub fn run_failed(&mut self, worker_id: String, error: TaskError) -> AfterFailure {
        let after = AfterFailure {
            penalize: error.kind.held_against_worker(),
            replace: error.kind.worker_did_not_run(),
        };
        self.failures.push(FailedRun { worker_id, error });
        after
    }

    /// A claim arrived and was validated on its own (`Accepted` here means valid). Returns
    /// whether the task is now decided.
    pub fn claimed(&mut self, claim: C, verdict: Verdict) -> bool {
        let valid = verdict == Verdict::Accepted;
        if valid && self.is_decided() {
            // A late valid claim of a decided task is not needed.
            self.claims.push((claim, Verdict::Unused));
            return true;
        }
        self.claims.push((claim, verdict));
        if !valid {
            return self.is_decided();
        }
        self.valid.push(self.claims.len() - 1);
        let outputs: Vec<&Value> = self
            .valid
            .iter()
            .map(|&i| self.claims[i].0.output())
            .collect();
        if let Some(group) = quorum_group(self.validator, &outputs, self.quorum) {
            self.accepted = Some(group.iter().map(|&g| self.valid[g]).collect());
        }
        self.is_decided()
    }

    /// The deadline passed before a decision: that is the reason, whatever else happened.
    pub fn deadline_passed(&mut self) {
        if !self.is_decided() {
            self.missed_deadline = true;
        }
    }

    /// The final verdicts, decision and earned reputation. `deadline_ms` names the deadline
    /// in the error of a task that missed it.
    pub fn conclude(mut self, deadline_ms: u64) -> Outcome<C> {
        let mut earned = Vec::new();
        let decision = match self.accepted.take() {
            Some(accepted) => {
                for &i in &self.valid {
                    if accepted.contains(&i) {
                        self.claims[i].1 = Verdict::Accepted;
                        earned.push(Earned {
                            claim: i,
                            delta: 1,
                            reason: "accepted result".into(),
                        });
                    } else if self.mode == ExecutionMode::Quorum {
                        let reason = "out-voted: the output disagrees with the accepted quorum";
                        self.claims[i].1 = Verdict::Rejected {
                            reason: reason.into(),
                        };
                        earned.push(Earned {
                            claim: i,
                            delta: -1,
                            reason: reason.into(),
                        });
                    } else {
                        self.claims[i].1 = Verdict::Unused;
                    }
                }
                Ok(accepted)
            }
            None => {
                // Valid claims of an undecided task were neither accepted nor proven wrong.
                for &i in &self.valid {
                    self.claims[i].1 = Verdict::Unused;
                }
                Err(self.undecided_error(deadline_ms))
            }
        };
        Outcome {
            claims: self.claims,
            failures: self.failures,
            decision,
            earned,
        }
    }

    fn undecided_error(&self, deadline_ms: u64) -> TaskError {
        if self.missed_deadline {
            return TaskError::new(
                TaskErrorKind::DeadlineMissed,
                format!("no acceptable result within {deadline_ms} ms"),
            );
        }
        if !self.valid.is_empty() && self.mode == ExecutionMode::Quorum {
            return TaskError::new(
                TaskErrorKind::QuorumNotReached,
                format!(
                    "{} valid claims, no {} of them agree",
                    self.valid.len(),
                    self.quorum
                ),
            );
        }
        if self.claims.is_empty()
            && let Some(failure) = self.failures.first()
        {
            // Single (or all-failed) tasks report the run's own error to the buyer.
            return failure.error.clone();
        }
        if let Some((_, Verdict::Rejected { reason })) = self.claims.first() {
            return TaskError::new(TaskErrorKind::ClaimRejected, reason.clone());
        }
        TaskError::new(TaskErrorKind::NoClaims, "no worker returned a result")
    }
}

#[cfg(test)]
mod tests {
    use d402_protocol::CapabilityManifest;
    use serde_json::json;

    use super::*;

    fn exact() -> Validator {
        let mut manifest = CapabilityManifest::template("example.thing", "1");
        manifest.validator = serde_json::from_value(json!({"model": "exact"})).unwrap();
        Validator::for_manifest(&manifest)
    }

    fn rejected(reason: &str) -> Verdict {
        Verdict::Rejected {
            reason: reason.into(),
        }
    }

    fn error(kind: TaskErrorKind) -> TaskError {
        TaskError::new(kind, "it went wrong")
    }

    #[test]
    fn a_race_takes_the_first_valid_claim_and_leaves_later_ones_unused() {
        let v = exact();
        let mut tally = Tally::new(ExecutionMode::Race, 3, 1, &v);
        assert!(!tally.claimed(json!({"x": 0}), rejected("bad signature")));
        assert!(tally.claimed(json!({"x": 1}), Verdict::Accepted));
        assert!(
            tally.claimed(json!({"x": 2}), Verdict::Accepted),
            "stays decided"
        );
        let outcome = tally.conclude(1000);
        assert_eq!(outcome.decision.unwrap(), vec![1]);
        let verdicts: Vec<_> = outcome.claims.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(
            verdicts,
            [
                rejected("bad signature"),
                Verdict::Accepted,
                Verdict::Unused
            ]
        );
        assert_eq!(outcome.earned.len(), 1);
        assert_eq!((outcome.earned[0].claim, outcome.earned[0].delta), (1, 1));
    }

    #[test]
    fn a_quorum_accepts_the_agreeing_group_and_out_votes_the_rest() {
        let v = exact();
        let mut tally = Tally::new(ExecutionMode::Quorum, 3, 2, &v);
        assert!(!tally.claimed(json!({"x": 1}), Verdict::Accepted));
        assert!(
            !tally.claimed(json!({"x": 2}), Verdict::Accepted),
            "1 vs 2: no quorum yet"
        );
        assert!(tally.claimed(json!({"x": 1}), Verdict::Accepted));
        let outcome = tally.conclude(1000);
        assert_eq!(outcome.decision.unwrap(), vec![0, 2]);
        assert!(matches!(outcome.claims[1].1, Verdict::Rejected { .. }));
        let earned: Vec<_> = outcome.earned.iter().map(|e| (e.claim, e.delta)).collect();
        assert_eq!(earned, [(0, 1), (1, -1), (2, 1)]);
    }

    #[test]
    fn a_quorum_clamps_to_the_fanout_and_single_mode_needs_one_claim() {
        let v = exact();
        let mut quorum = Tally::new(ExecutionMode::Quorum, 2, 5, &v);
        assert!(!quorum.claimed(json!(1), Verdict::Accepted));
        assert!(
            quorum.claimed(json!(1), Verdict::Accepted),
            "quorum 5 of fanout 2 is 2"
        );
        let mut single = Tally::new(ExecutionMode::Single, 1, 9, &v);
        assert!(single.claimed(json!(1), Verdict::Accepted));
    }

    #[test]
    fn disagreeing_valid_claims_report_quorum_not_reached() {
        let v = exact();
        let mut tally = Tally::new(ExecutionMode::Quorum, 2, 2, &v);
        tally.claimed(json!(1), Verdict::Accepted);
        tally.claimed(json!(2), Verdict::Accepted);
        let outcome = tally.conclude(1000);
        let error = outcome.decision.unwrap_err();
        assert_eq!(error.kind, TaskErrorKind::QuorumNotReached);
        assert_eq!(error.message, "2 valid claims, no 2 of them agree");
        assert!(outcome.claims.iter().all(|(_, v)| *v == Verdict::Unused));
        assert!(outcome.earned.is_empty(), "no one is proven wrong");
    }

    #[test]
    fn a_missed_deadline_is_the_reason_whatever_else_happened() {
        let v = exact();
        let mut tally = Tally::new(ExecutionMode::Quorum, 3, 2, &v);
        tally.claimed(json!(1), Verdict::Accepted);
        tally.run_failed("node:a".into(), error(TaskErrorKind::Trap));
        tally.deadline_passed();
        let error = tally.conclude(250).decision.unwrap_err();
        assert_eq!(error.kind, TaskErrorKind::DeadlineMissed);
        assert_eq!(error.message, "no acceptable result within 250 ms");

        let mut decided = Tally::new(ExecutionMode::Single, 1, 1, &v);
        decided.claimed(json!(1), Verdict::Accepted);
        decided.deadline_passed();
        assert!(
            decided.conclude(250).decision.is_ok(),
            "decided in time stays decided"
        );
    }

    #[test]
    fn a_task_whose_runs_all_failed_reports_the_first_runs_error() {
        let v = exact();
        let mut tally: Tally<'_, Value> = Tally::new(ExecutionMode::Race, 2, 1, &v);
        tally.run_failed("node:a".into(), error(TaskErrorKind::InvalidInput));
        tally.run_failed("node:b".into(), error(TaskErrorKind::Trap));
        let outcome = tally.conclude(1000);
        assert_eq!(
            outcome.decision.unwrap_err().kind,
            TaskErrorKind::InvalidInput
        );
        assert_eq!(outcome.failures.len(), 2);
        assert_eq!(outcome.failures[1].worker_id, "node:b");
    }

    #[test]
    fn a_rejected_claim_is_the_reason_when_nothing_was_valid() {
        let v = exact();
        let mut tally = Tally::new(ExecutionMode::Single, 1, 1, &v);
        tally.claimed(json!(1), rejected("the replay disagrees"));
        let error = tally.conclude(1000).decision.unwrap_err();
        assert_eq!(error.kind, TaskErrorKind::ClaimRejected);
        assert_eq!(error.message, "the replay disagrees");
        let empty: Tally<'_, Value> = Tally::new(ExecutionMode::Single, 1, 1, &v);
        assert_eq!(
            empty.conclude(1000).decision.unwrap_err().kind,
            TaskErrorKind::NoClaims
        );
    }

    #[test]
    fn workers_that_did_not_run_are_replaced_and_only_their_own_faults_cost_them() {
        let v = exact();
        let mut tally: Tally<'_, Value> = Tally::new(ExecutionMode::Race, 2, 1, &v);
        let cases = [
            (TaskErrorKind::Unreachable, true, true),
            (TaskErrorKind::Busy, false, true),
            (TaskErrorKind::InvalidInput, false, false),
            (TaskErrorKind::Blocked, false, false),
            (TaskErrorKind::Trap, true, false),
            (TaskErrorKind::DeadlineExceeded, true, false),
        ];
        for (kind, penalize, replace) in cases {
            let after = tally.run_failed("node:a".into(), error(kind));
            assert_eq!(after, AfterFailure { penalize, replace }, "{kind}");
        }
    }
}
