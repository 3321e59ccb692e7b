//! Release manifests: threshold-signed, content-addressed update metadata.

use serde::{Deserialize, Serialize};

use crate::content_id::ContentHash;
use crate::signed::SignedObject;
use crate::time::Timestamp;

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseArtifact {
    /// File name.
    pub name: String,
    /// `sha256:<hex>` of the file.
    pub sha256: ContentHash,
    /// Size in bytes.
    pub bytes: u64,
}

/// Protocol versions a release can talk to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolCompatibility {
    /// Oldest protocol version spoken.
    pub min: u32,
    /// Newest protocol version spoken.
    pub max: u32,
}

/// Update metadata; wrapped in [`crate::ThresholdSigned`] for distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseManifest {
    /// Component updated, e.g. `node` or `agent`.
    pub component: String,
    /// Package name, e.g. `@d402/agent`.
    pub package_name: String,
    /// Released version.
    pub version: String,
    /// Artifact kind, e.g. `npm`, `binary`.
    pub artifact_type: String,
    /// Files and their digests.
    pub artifacts: Vec<ReleaseArtifact>,
    /// Release channel: `stable`, `beta`, `security`.
    pub channel: String,
    /// Rollout policy, e.g. `notify`, `stage-patch`, `manual`.
    pub rollout_policy: String,
    /// Protocol versions supported.
    pub protocol_compatibility: ProtocolCompatibility,
    /// Increases with every release of the component: a client refuses a sequence at or
    /// below the last one it accepted (no rollback, no replay of an old manifest).
    pub sequence: u64,
    /// When the release was cut.
    pub created_at: Timestamp,
    /// After this no client accepts the manifest (no freeze on stale metadata).
    pub expires_at: Timestamp,
}

impl SignedObject for ReleaseManifest {
    const OBJECT_TYPE: &'static str = "release-manifest";
}
