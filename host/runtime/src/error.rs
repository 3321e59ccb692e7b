//! Load and run errors. Run errors serialise as `{"kind", "message"}` for JSON output.

use d402_protocol::ContentId;
use serde::Serialize;
use thiserror::Error;

use crate::runtime::RunEvidence;

/// Why a capability could not be loaded. Nothing is cached or run after a load error.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The artifact bytes do not hash to the CID they were named by.
    #[error("artifact digest mismatch: expected {expected}, the bytes hash to {actual}")]
    DigestMismatch {
        /// The CID the manifest or caller named.
        expected: ContentId,
        /// The CID of the bytes.
        actual: ContentId,
    },
    /// The manifest names no artifact and none was given.
    #[error("the manifest has no runtime.artifactCid")]
    NoArtifact,
    /// The component imports something the manifest does not permit.
    #[error("component imports {import}, {reason}")]
    ForbiddenImport {
        /// The import's full name.
        import: String,
        /// Which permission is missing, or why it is never granted.
        reason: String,
    },
    /// The manifest asks for more than this node allows.
    #[error("manifest refused by this node: {0}")]
    Policy(String),
    /// The bytes are not a valid component, or lack the `capability` export.
    #[error("not a valid d402 capability component: {0}")]
    Invalid(String),
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] d402_protocol::ProtocolError),
    /// Reading the blob store or compile cache failed.
    #[error("storage: {0}")]
    Storage(String),
}

/// Why a run produced no output.
#[derive(Debug, Clone, Error, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum RunError {
    /// The input failed the input schema, or the capability rejected it.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The capability detected a blocked page or interstitial.
    #[error("blocked: {0}")]
    Blocked(String),
    /// An upstream fetch failed.
    #[error("upstream failure: {0}")]
    UpstreamFailure(String),
    /// The capability reported an internal error.
    #[error("internal error: {0}")]
    Internal(String),
    /// The run hit its deadline.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The run hit its memory cap.
    #[error("memory limit: {0}")]
    MemoryLimit(String),
    /// The run used up its fuel.
    #[error("fuel exhausted: {0}")]
    FuelExhausted(String),
    /// The output is larger than the manifest allows.
    #[error("output too large: {0}")]
    OutputTooLarge(String),
    /// The output is not JSON or fails the output schema.
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    /// The guest trapped (a panic, a bad memory access…).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The host failed to run the component.
    #[error("host error: {0}")]
    Host(String),
}

impl From<&RunError> for d402_protocol::TaskError {
    fn from(error: &RunError) -> Self {
        use d402_protocol::TaskErrorKind as Kind;
        let (kind, message) = match error {
            RunError::InvalidInput(m) => (Kind::InvalidInput, m),
            RunError::Blocked(m) => (Kind::Blocked, m),
            RunError::UpstreamFailure(m) => (Kind::UpstreamFailure, m),
            RunError::Internal(m) => (Kind::Internal, m),
            RunError::DeadlineExceeded(m) => (Kind::DeadlineExceeded, m),
            RunError::MemoryLimit(m) => (Kind::MemoryLimit, m),
            RunError::FuelExhausted(m) => (Kind::FuelExhausted, m),
            RunError::OutputTooLarge(m) => (Kind::OutputTooLarge, m),
            RunError::InvalidOutput(m) => (Kind::InvalidOutput, m),
            RunError::Trap(m) => (Kind::Trap, m),
            RunError::Host(m) => (Kind::Host, m),
        };
        Self::new(kind, message.clone())
    }
}

/// A failed run: the error and what was observed before it.
#[derive(Debug, Clone, Serialize)]
pub struct RunFailure {
    /// What went wrong.
    pub error: RunError,
    /// Evidence gathered up to the failure (no output hash).
    pub evidence: RunEvidence,
}
