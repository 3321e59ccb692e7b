//! Resolving a capability installed in a node's state directory.
//!
//! Layout: `<state>/implementations/*.json` (signed implementation packages),
//! `<state>/manifests/<cid>.json`, `<state>/blobs/` (artifacts by CID).

use std::path::Path;

use anyhow::{Context, bail};
use d402_protocol::{CapabilityManifest, ContentId, ImplementationPackage, Signed, parse_json};

/// Finds an installed capability by manifest CID or capability ID (`web.page_to_markdown@1`);
/// the newest verifying package wins. The returned manifest is validated, hashes to the
/// package's manifest CID, and has its artifact CID pinned.
pub fn find_installed(state: &Path, reference: &str) -> anyhow::Result<CapabilityManifest> {
    let by_cid = reference.parse::<ContentId>().ok();
    let dir = state.join("implementations");
    let mut best: Option<ImplementationPackage> = None;
    let entries = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "no capabilities installed in {} (see `d402 capability implementation install`)",
            state.display()
        )
    })?;
    for entry in entries {
        let path = entry?.path();
        let envelope: Signed<ImplementationPackage> = read_json(&path)?;
        let package = envelope
            .verify()
            .with_context(|| format!("{} does not verify", path.display()))?
            .clone();
        let matches = by_cid.map_or(package.capability_id == reference, |cid| package.manifest_cid == cid);
        if matches && best.as_ref().is_none_or(|b| b.created_at < package.created_at) {
            best = Some(package);
        }
    }
    let package =
        best.with_context(|| format!("capability {reference} is not installed in {}", state.display()))?;
    let manifest_path = state.join("manifests").join(format!("{}.json", package.manifest_cid));
    let mut manifest: CapabilityManifest = read_json(&manifest_path)?;
    manifest
        .validate()
        .with_context(|| format!("{} is not a valid capability manifest", manifest_path.display()))?;
    if manifest.cid()? != package.manifest_cid {
        bail!("{} does not hash to its name", manifest_path.display());
    }
    manifest.runtime.artifact_cid.get_or_insert(package.artifact_cid);
    Ok(manifest)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_json(&text).with_context(|| format!("{} is not valid", path.display()))
}
