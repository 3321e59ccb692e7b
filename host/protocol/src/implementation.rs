//! Implementation packages: a signed pointer from a manifest to the WASM artifact that runs it.

use serde::{Deserialize, Serialize};

use crate::content_id::ContentId;
use crate::error::{Defects, ProtocolError};
use crate::keys::PublicKey;
use crate::manifest::CapabilityManifest;
use crate::signed::{Signed, SignedObject};
use crate::time::Timestamp;

/// What a worker installs: the artifact CID and size for an exact manifest CID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImplementationPackage {
    /// `<id>@<major>` of the capability.
    pub capability_id: String,
    /// CID of the manifest this implements.
    pub manifest_cid: ContentId,
    /// CID of the WASM component.
    pub artifact_cid: ContentId,
    /// Size of the WASM component in bytes.
    pub artifact_bytes: u64,
    /// WIT world the component targets.
    pub world: String,
    /// The publisher's key, which signs the package.
    pub publisher: PublicKey,
    /// When the package was created.
    pub created_at: Timestamp,
}

impl SignedObject for ImplementationPackage {
    const OBJECT_TYPE: &'static str = "implementation-package";
}

impl Signed<ImplementationPackage> {
    /// Verifies the signature, that the publisher signed it, and — given the artifact
    /// bytes and optionally the manifest — that they are exactly what the package names.
    pub fn verify_package(
        &self,
        artifact: &[u8],
        manifest: Option<&CapabilityManifest>,
    ) -> Result<&ImplementationPackage, ProtocolError> {
        let package = self.verify()?;
        let mut defects = Defects::default();
        defects.check(
            package.publisher == self.signer,
            "publisher",
            format!(
                "{} did not sign this package ({} did)",
                package.publisher, self.signer
            ),
        );
        let actual = ContentId::of_bytes(artifact);
        defects.check(
            actual == package.artifact_cid,
            "artifactCid",
            format!(
                "the artifact's digest is {actual}, the package names {}",
                package.artifact_cid
            ),
        );
        defects.check(
            artifact.len() as u64 == package.artifact_bytes,
            "artifactBytes",
            format!(
                "the artifact has {} bytes, the package says {}",
                artifact.len(),
                package.artifact_bytes
            ),
        );
        if let Some(manifest) = manifest {
            let cid = manifest.cid()?;
            defects.check(
                cid == package.manifest_cid,
                "manifestCid",
                format!(
                    "the manifest's CID is {cid}, the package names {}",
                    package.manifest_cid
                ),
            );
            defects.check(
                manifest
                    .runtime
                    .artifact_cid
                    .is_none_or(|pinned| pinned == package.artifact_cid),
                "artifactCid",
                "differs from the manifest's runtime.artifactCid",
            );
            defects.check(
                manifest.runtime.world == package.world,
                "world",
                format!("the manifest targets {:?}", manifest.runtime.world),
            );
        }
        defects.into_result()?;
        Ok(package)
    }
}
