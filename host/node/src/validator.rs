//! The gateway's validator in one place: each claim checked on its own (signature, lease,
//! integrity, the validation model's claim checks, a replay on the claim's snapshots), the
//! reputation events it issues and the validation receipt it signs. The models, comparators
//! and checks it applies are [`crate::validation`]'s; which claims win is
//! [`crate::decision`]'s.

use std::sync::Arc;

use d402_blobstore::{BlobError, BlobStore};
use d402_browser::snapshot::SnapshotError;
use d402_network::{Network, peer_id_of};
use d402_protocol::{
    ContentId, ExecutionMode, Keypair, Lease, PublicKey, ReputationEvent, ReputationKind,
    ResultClaim, Signed, TaskIntent, Timestamp, ValidationModel, ValidationReceipt,
    ValidationStatus, Verdict,
};
use d402_runtime::{Runtime, TaskInfo};
use serde_json::Value;

use crate::catalog::ServedCapability;
use crate::validation::{check_integrity, check_lease};

/// What a validation receipt says about one task.
pub struct ReceiptTerms {
    /// The task.
    pub task_id: String,
    /// Accepted or rejected.
    pub status: ValidationStatus,
    /// The model the task was validated under.
    pub model: ValidationModel,
    /// CIDs of the accepted claims.
    pub accepted: Vec<ContentId>,
    /// CIDs of the rejected claims.
    pub rejected: Vec<ContentId>,
    /// Why the task was rejected.
    pub reason: Option<String>,
}

/// Checks claims, issues reputation events and signs validation receipts with the gateway's
/// key (each gateway validates its own tasks).
pub struct ClaimValidator {
    key: Keypair,
    runtime: Arc<Runtime>,
    blobs: BlobStore,
    network: Option<Arc<Network>>,
}

impl ClaimValidator {
    /// A validator signing with `key` that replays on `runtime` from the snapshots in `blobs`.
    pub fn new(key: Keypair, runtime: Arc<Runtime>, blobs: BlobStore) -> Self {
        Self {
            key,
            runtime,
            blobs,
            network: None,
        }
    }

    /// Also fetches missing snapshot blobs from remote workers over `network`.
    pub fn with_network(mut self, network: Arc<Network>) -> Self {
        self.network = Some(network);
        self
    }

    /// A signed reputation event about `subject` for `task_id` (none if signing failed,
    /// which is logged).
    pub fn reputation_event(
        &self,
        subject: PublicKey,
        task_id: &str,
        kind: ReputationKind,
        delta: i32,
        reason: &str,
    ) -> Option<Signed<ReputationEvent>> {
        let event = ReputationEvent {
            subject,
            kind,
            delta,
            task_id: Some(task_id.to_string()),
            reason: reason.to_string(),
            issuer: self.key.public(),
            issued_at: Timestamp::now(),
        };
        Signed::sign(event, &self.key)
            .inspect_err(|e| tracing::error!(error = %e, "cannot sign a reputation event"))
            .ok()
    }

    /// The signed validation receipt of `terms`.
    pub fn receipt(
        &self,
        terms: ReceiptTerms,
    ) -> Result<Signed<ValidationReceipt>, d402_protocol::ProtocolError> {
        Signed::sign(
            ValidationReceipt {
                task_id: terms.task_id,
                status: terms.status,
                accepted_claim_cids: terms.accepted,
                rejected_claim_cids: terms.rejected,
                model: terms.model,
                validator: self.key.public(),
                reason: terms.reason,
                issued_at: Timestamp::now(),
            },
            &self.key,
        )
    }

    /// The validator's verdict on one claim on its own. `from` is the remote worker that
    /// holds the claim's snapshots (none: a local worker, whose snapshots are here).
    pub async fn verdict(
        &self,
        claim: &Signed<ResultClaim>,
        lease: &Lease,
        intent: &TaskIntent,
        served: &ServedCapability,
        reputation: i64,
        from: Option<PublicKey>,
    ) -> Verdict {
        let checked = claim
            .verify()
            .map_err(|e| format!("the claim's signature does not verify: {e}"))
            .and_then(|payload| check_lease(payload, &claim.signer, lease).map(|()| payload))
            .and_then(|claim| check_integrity(claim, intent, &served.manifest_cid).map(|()| claim))
            .and_then(|claim| {
                served
                    .validator
                    .check_claim(claim, reputation)
                    .map(|()| claim)
            });
        let claim = match checked {
            Ok(claim) => claim,
            Err(reason) => return Verdict::Rejected { reason },
        };
        if served.validator.replays()
            && intent.mode != ExecutionMode::Quorum
            && let Err(reason) = self.replay(claim, &intent.input, served, from).await
        {
            return Verdict::Rejected { reason };
        }
        Verdict::Accepted
    }

    /// Loads snapshots `cids` for a replay. Blobs missing here (records and the bodies they
    /// name) are fetched by CID from the worker `from` and kept only if they hash to their CID.
    async fn load_snapshots(
        &self,
        cids: &[ContentId],
        from: Option<PublicKey>,
    ) -> Result<d402_runtime::ReplaySource, String> {
        // Each snapshot is a record and a body: at most two fetches per snapshot.
        for _ in 0..=2 * cids.len() {
            let missing = match d402_browser::SnapshotSource::load(&self.blobs, cids) {
                Ok(source) => return Ok(source),
                Err(SnapshotError::Blob(BlobError::Missing(cid))) => cid,
                Err(e) => return Err(format!("cannot load the claim's snapshots: {e}")),
            };
            let (Some(worker), Some(network)) = (from, &self.network) else {
                return Err(format!("the claim's snapshot blob {missing} is not here"));
            };
            let bytes = network
                .fetch_blob(peer_id_of(&worker), missing)
                .await
                .map_err(|e| {
                    format!("cannot fetch the claim's snapshot blob {missing} from the worker: {e}")
                })?;
            self.blobs
                .put_verified(&bytes, &missing)
                .map_err(|e| format!("cannot keep snapshot blob {missing}: {e}"))?;
        }
        Err("the claim's snapshots name more blobs than they should".into())
    }

    /// Re-runs the claim's task on the claim's snapshots (see [`Self::load_snapshots`])
    /// and compares the outputs.
    async fn replay(
        &self,
        claim: &ResultClaim,
        input: &Value,
        served: &ServedCapability,
        from: Option<PublicKey>,
    ) -> Result<(), String> {
        let source = self.load_snapshots(&claim.snapshot_cids, from).await?;
        let info = TaskInfo {
            task_id: claim.task_id.clone(),
        };
        let replayed = self
            .runtime
            .run(&served.loaded, &info, input, Some(Arc::new(source)))
            .await
            .map_err(|f| format!("the replay failed: {}", f.error))?;
        if served
            .validator
            .replay_agrees(&claim.output, &replayed.output)
        {
            Ok(())
        } else {
            Err("the replay on the claim's snapshots produced a different result".into())
        }
    }
}
