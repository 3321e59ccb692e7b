//! Reading protocol documents from files with errors that name the file.

use std::path::Path;

use anyhow::Context;
use d402_protocol::{CapabilityManifest, parse_json};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads and parses a JSON document into `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_json(&text).with_context(|| format!("{} is not valid", path.display()))
}

/// Reads, parses and validates a capability manifest.
pub fn read_manifest(path: &Path) -> anyhow::Result<CapabilityManifest> {
    let manifest: CapabilityManifest = read_json(path)?;
    manifest
        .validate()
        .with_context(|| format!("{} is not a valid capability manifest", path.display()))?;
    Ok(manifest)
}

/// Reads a whole file.
pub fn read_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes `value` as pretty JSON (with a trailing newline) atomically, creating parent
/// directories.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    d402_blobstore::write_atomic(path, pretty(value)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Pretty JSON text with a trailing newline.
pub fn pretty<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}
