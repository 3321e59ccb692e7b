//! Why a task, or one leased run of it, produced no accepted result: `{"kind", "message"}`
//! on the wire, in the store and in answers to buyers; and the validator's verdict on each
//! claim, as receipts list it.

use serde::{Deserialize, Serialize};

/// What kind of failure a [`TaskError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskErrorKind {
    /// The input failed the input schema, or the capability rejected it.
    InvalidInput,
    /// The capability detected a blocked page or interstitial.
    Blocked,
    /// An upstream fetch failed.
    UpstreamFailure,
    /// Something inside the node or the capability failed.
    Internal,
    /// A sandboxed run hit its deadline.
    DeadlineExceeded,
    /// A sandboxed run hit its memory cap.
    MemoryLimit,
    /// A sandboxed run used up its fuel.
    FuelExhausted,
    /// The output is larger than the manifest allows.
    OutputTooLarge,
    /// The output is not JSON or fails the output schema.
    InvalidOutput,
    /// The guest trapped.
    Trap,
    /// The host failed to run the component.
    Host,
    /// The worker refused the lease (bad signature, wrong artifact, not offered…).
    LeaseRefused,
    /// The worker runs as many leases as it takes.
    Busy,
    /// The worker could not load the capability.
    LoadFailed,
    /// The worker could not fetch the artifact.
    ArtifactUnavailable,
    /// A remote worker did not answer.
    Unreachable,
    /// No worker serves the exact manifest.
    NoWorkers,
    /// No leased worker returned a result.
    NoClaims,
    /// No acceptable result before the task's deadline.
    DeadlineMissed,
    /// Valid claims, but not enough of them agree.
    QuorumNotReached,
    /// The validator rejected the claim.
    ClaimRejected,
    /// The capability is no longer served.
    Unavailable,
    /// The node stopped before the task finished.
    Interrupted,
}

impl TaskErrorKind {
    /// The kind's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid-input",
            Self::Blocked => "blocked",
            Self::UpstreamFailure => "upstream-failure",
            Self::Internal => "internal",
            Self::DeadlineExceeded => "deadline-exceeded",
            Self::MemoryLimit => "memory-limit",
            Self::FuelExhausted => "fuel-exhausted",
            Self::OutputTooLarge => "output-too-large",
            Self::InvalidOutput => "invalid-output",
            Self::Trap => "trap",
            Self::Host => "host",
            Self::LeaseRefused => "lease-refused",
            Self::Busy => "busy",
            Self::LoadFailed => "load-failed",
            Self::ArtifactUnavailable => "artifact-unavailable",
            Self::Unreachable => "unreachable",
            Self::NoWorkers => "no-workers",
            Self::NoClaims => "no-claims",
            Self::DeadlineMissed => "deadline-missed",
            Self::QuorumNotReached => "quorum-not-reached",
            Self::ClaimRejected => "claim-rejected",
            Self::Unavailable => "unavailable",
            Self::Interrupted => "interrupted",
        }
    }

    /// Whether a run failing this way counts against the worker's reliability: not when the
    /// request itself was at fault (bad input, a blocked page) or the worker was only busy.
    pub fn held_against_worker(self) -> bool {
        !matches!(self, Self::InvalidInput | Self::Blocked | Self::Busy)
    }

    /// Whether the worker did not run the task at all, so another worker may.
    pub fn worker_did_not_run(self) -> bool {
        matches!(self, Self::Unreachable | Self::Busy)
    }
}

impl std::fmt::Display for TaskErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task or run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(deny_unknown_fields)]
#[error("{kind}: {message}")]
pub struct TaskError {
    /// What kind of failure.
    pub kind: TaskErrorKind,
    /// What happened, for people.
    pub message: String,
}

impl TaskError {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: TaskErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The validator's verdict on one claim: `{"status": "accepted" | "rejected" | "unused"}`,
/// with the `reason` of a rejection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Verdict {
    /// The claim passed validation and was accepted.
    Accepted,
    /// The claim was refused (invalid, failed replay, out-voted).
    Rejected {
        /// Why.
        reason: String,
    },
    /// The claim was valid but not needed (a quorum or race was already decided).
    Unused,
}

/// A leased run that produced no claim: `{"workerId", "error"}` in the receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailedRun {
    /// The worker that was leased the run.
    pub worker_id: String,
    /// Why it produced no claim.
    pub error: TaskError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_travel_as_kind_and_message() {
        let error = TaskError::new(TaskErrorKind::QuorumNotReached, "2 valid claims");
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "quorum-not-reached", "message": "2 valid claims"})
        );
        assert_eq!(serde_json::from_value::<TaskError>(json).unwrap(), error);
        assert_eq!(error.to_string(), "quorum-not-reached: 2 valid claims");
        assert!(
            serde_json::from_value::<TaskError>(serde_json::json!({"kind": "nope", "message": ""}))
                .is_err()
        );
        assert!(!TaskErrorKind::Busy.held_against_worker());
        assert!(TaskErrorKind::Trap.held_against_worker());
        assert!(TaskErrorKind::Unreachable.worker_did_not_run());
    }

    #[test]
    fn verdicts_and_failures_have_their_receipt_shape() {
        let rejected = Verdict::Rejected {
            reason: "out-voted".into(),
        };
        assert_eq!(
            serde_json::to_value(&rejected).unwrap(),
            serde_json::json!({"status": "rejected", "reason": "out-voted"})
        );
        assert_eq!(
            serde_json::to_value(Verdict::Unused).unwrap(),
            serde_json::json!({"status": "unused"})
        );
        let failure = FailedRun {
            worker_id: "node:abc".into(),
            error: TaskError::new(TaskErrorKind::Busy, "full"),
        };
        let json = serde_json::to_value(&failure).unwrap();
        assert_eq!(json["workerId"], "node:abc");
        assert_eq!(json["error"]["kind"], "busy");
        assert_eq!(serde_json::from_value::<FailedRun>(json).unwrap(), failure);
    }
}
