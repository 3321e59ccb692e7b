//! The worker role: running a leased task in the sandbox and signing the result claim, for
//! the node's local pool ([`run_lease`]) and for leases other gateways send over the peer
//! network ([`WorkerService`]).
//!
//! A remote lease is run only when the lease and the task intent are signed by the gateway
//! that sent them, the lease names this worker and has not expired, and the manifest is
//! installed here, and while the worker runs fewer than its `max-leases` (otherwise it answers
//! `busy` and the gateway asks another worker). A missing or damaged artifact is fetched by CID from the gateway (which
//! runs the same manifest) and stored only if it hashes to the CID.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use d402_blobstore::BlobStore;
use d402_network::{LeaseHandler, LeaseRequest, LeaseResponse, Network, PeerId, peer_id_of};
use d402_protocol::{
    ContentHash, ContentId, Keypair, Lease, ResultClaim, Signed, TaskError, TaskErrorKind,
    Timestamp, canonical,
};
use d402_runtime::{LoadError, LoadedCapability, PageSource, Runtime, TaskInfo};
use serde_json::Value;

use crate::gateway::NodeParts;
use crate::installed::Installed;

/// Runs `loaded` on `input` for `lease` and signs the claim with the worker's `key`; the
/// run error as `{kind, message}` otherwise.
pub async fn run_lease(
    runtime: &Runtime,
    loaded: &LoadedCapability,
    key: &Keypair,
    lease: &Lease,
    input: &Value,
    pages: Option<Arc<dyn PageSource>>,
) -> Result<Signed<ResultClaim>, TaskError> {
    let info = TaskInfo {
        task_id: lease.task_id.clone(),
    };
    let report = runtime
        .run(loaded, &info, input, pages)
        .await
        .map_err(|failure| TaskError::from(&failure.error))?;
    let output_hash =
        ContentHash::of(&canonical::to_vec(&report.output).map_err(|e| internal(&e))?);
    let claim = ResultClaim {
        task_id: lease.task_id.clone(),
        lease_id: lease.lease_id.clone(),
        worker: key.public(),
        manifest_cid: loaded.manifest_cid(),
        artifact_cid: loaded.artifact_cid(),
        input_hash: report
            .evidence
            .input_hash
            .unwrap_or_else(|| ContentHash::of(b"")),
        snapshot_cids: report.evidence.snapshot_cids.clone(),
        evidence: serde_json::to_value(&report.evidence).unwrap_or(Value::Null),
        output: report.output,
        output_hash,
        completed_at: Timestamp::now(),
    };
    Signed::sign(claim, key).map_err(|e| internal(&e))
}

/// An `internal` task error.
pub fn internal(error: &dyn std::fmt::Display) -> TaskError {
    TaskError::new(TaskErrorKind::Internal, error.to_string())
}

fn refused(message: impl Into<String>) -> TaskError {
    TaskError::new(TaskErrorKind::LeaseRefused, message)
}

/// Runs the leases gateways send over the peer network.
pub struct WorkerService(Arc<Worker>);

struct Worker {
    key: Keypair,
    runtime: Arc<Runtime>,
    manifests: HashMap<ContentId, Installed>,
    blobs: BlobStore,
    pages: Option<Arc<dyn PageSource>>,
    network: Weak<Network>,
    slots: tokio::sync::Semaphore,
}

impl WorkerService {
    /// A worker signing with `key` that runs the capabilities installed in `parts`, at
    /// most `max_leases` at once (more are refused as `busy`).
    pub fn new(key: Keypair, parts: &NodeParts, network: &Arc<Network>, max_leases: u32) -> Self {
        let manifests = parts
            .installed
            .iter()
            .map(|i| (i.package.manifest_cid, i.clone()))
            .collect();
        Self(Arc::new(Worker {
            key,
            runtime: parts.runtime.clone(),
            manifests,
            blobs: parts.blobs.clone(),
            pages: parts.pages.clone(),
            network: Arc::downgrade(network),
            slots: tokio::sync::Semaphore::new(max_leases as usize),
        }))
    }
}

impl Worker {
    /// Checks the lease, loads its capability and runs it.
    async fn run(
        &self,
        from: PeerId,
        request: LeaseRequest,
    ) -> Result<Signed<ResultClaim>, TaskError> {
        let lease = request
            .lease
            .verify()
            .map_err(|e| refused(format!("the lease does not verify: {e}")))?;
        let intent = request
            .intent
            .verify()
            .map_err(|e| refused(format!("the task intent does not verify: {e}")))?;
        if request.lease.signer != lease.gateway
            || request.intent.signer != lease.gateway
            || intent.gateway != lease.gateway
        {
            return Err(refused(
                "the lease and the task intent are not signed by the leasing gateway",
            ));
        }
        if peer_id_of(&lease.gateway) != from {
            return Err(refused(
                "the lease was sent by another peer than the gateway that signed it",
            ));
        }
        if lease.worker != self.key.public() {
            return Err(refused("the lease names another worker"));
        }
        if lease.task_id != intent.task_id || lease.manifest_cid != intent.manifest_cid {
            return Err(refused("the lease does not match the task intent"));
        }
        if lease.expires_at <= Timestamp::now() {
            return Err(refused("the lease has expired"));
        }
        let Ok(_slot) = self.slots.try_acquire() else {
            return Err(TaskError::new(
                TaskErrorKind::Busy,
                "the worker runs as many leases as it takes; ask another",
            ));
        };
        let installed = self.manifests.get(&lease.manifest_cid).ok_or_else(|| {
            refused(format!(
                "manifest {} is not installed on this worker",
                lease.manifest_cid
            ))
        })?;
        let loaded = self.load(installed, lease.artifact_cid, from).await?;
        tracing::info!(task = %lease.task_id, lease = %lease.lease_id, gateway = %lease.gateway, "running a lease");
        let pages = if loaded.manifest().permissions.browser.is_some() {
            self.pages.clone()
        } else {
            None
        };
        run_lease(
            &self.runtime,
            &loaded,
            &self.key,
            lease,
            &intent.input,
            pages,
        )
        .await
    }

    /// Loads the capability; a missing or damaged artifact is fetched from `provider` first.
    async fn load(
        &self,
        installed: &Installed,
        artifact: ContentId,
        provider: PeerId,
    ) -> Result<Arc<LoadedCapability>, TaskError> {
        if artifact != installed.package.artifact_cid {
            return Err(refused(format!(
                "the lease names artifact {artifact}, the installed package {}",
                installed.package.artifact_cid
            )));
        }
        match self
            .runtime
            .load_from_store(&installed.manifest, artifact, &self.blobs)
        {
            Ok(loaded) => return Ok(loaded),
            Err(LoadError::DigestMismatch { .. } | LoadError::Storage(_)) => {
                tracing::warn!(%artifact, "the artifact is missing or damaged here; fetching it by CID from the gateway");
            }
            Err(e) => return Err(TaskError::new(TaskErrorKind::LoadFailed, e.to_string())),
        }
        let network = self
            .network
            .upgrade()
            .ok_or_else(|| internal(&"the network stopped"))?;
        let bytes = network.fetch_blob(provider, artifact).await.map_err(|e| {
            TaskError::new(
                TaskErrorKind::ArtifactUnavailable,
                format!("cannot fetch artifact {artifact}: {e}"),
            )
        })?;
        self.blobs
            .put_verified(&bytes, &artifact)
            .map_err(|e| internal(&e))?;
        tracing::info!(%artifact, bytes = bytes.len(), "artifact fetched and verified");
        self.runtime
            .load_from_store(&installed.manifest, artifact, &self.blobs)
            .map_err(|e| TaskError::new(TaskErrorKind::LoadFailed, e.to_string()))
    }
}

impl LeaseHandler for WorkerService {
    fn handle(
        &self,
        from: PeerId,
        request: LeaseRequest,
    ) -> Pin<Box<dyn Future<Output = LeaseResponse> + Send>> {
        let inner = self.0.clone();
        Box::pin(async move {
            match inner.run(from, request).await {
                Ok(claim) => {
                    tracing::info!(task = %claim.payload.task_id, lease = %claim.payload.lease_id, "lease answered with a claim");
                    LeaseResponse::Claim {
                        claim: Box::new(claim),
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "lease not run");
                    LeaseResponse::Failed { error }
                }
            }
        })
    }
}
