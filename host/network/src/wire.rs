//! The request-response messages of the d402 protocols: leases (`/d402/lease/1`) and
//! content-addressed blob transfer (`/d402/blob/1`). Both are JSON over libp2p streams.

use d402_protocol::{ContentId, Lease, ResultClaim, Signed, TaskError, TaskIntent};
use serde::{Deserialize, Serialize};

/// The lease protocol: a gateway asks a worker to run one task.
pub const LEASE_PROTOCOL: &str = "/d402/lease/1";
/// The blob protocol: a node asks a provider for the bytes of a CID (artifacts, snapshots).
pub const BLOB_PROTOCOL: &str = "/d402/blob/1";

/// A gateway's lease of one task to one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseRequest {
    /// The lease, signed by the gateway.
    pub lease: Signed<Lease>,
    /// The task intent the lease is for, signed by the same gateway (it carries the input).
    pub intent: Signed<TaskIntent>,
}

/// A worker's answer to a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", deny_unknown_fields)]
pub enum LeaseResponse {
    /// The worker ran the task: its signed result claim.
    Claim {
        /// The claim.
        claim: Box<Signed<ResultClaim>>,
    },
    /// The worker refused the lease or the run failed.
    Failed {
        /// The error.
        error: TaskError,
    },
}

/// A request for the bytes of one blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlobRequest {
    /// The blob wanted.
    pub cid: ContentId,
}

/// A provider's answer to a blob request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type", deny_unknown_fields)]
pub enum BlobResponse {
    /// The bytes, base64 (the receiver checks they hash to the CID).
    Found {
        /// Standard base64 of the blob.
        base64: String,
    },
    /// The provider does not hold a good copy.
    NotFound,
}
