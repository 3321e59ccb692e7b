//! `d402-agent update check|apply`: threshold-signed releases (`d402 release`). A manifest
//! is accepted only with k distinct trusted signatures, before its expiry, for this
//! component and channel, with a sequence above the last one accepted (persisted: no
//! rollback), and with every artifact's size and SHA-256 as signed. `apply` then stages
//! each artifact beside the installed one and swaps it in with a rename, keeping the
//! previous version; `--force true` overrides the local policy, never verification.
//!
//! Of what TUF protects against, this keeps: threshold of distinct keys, rollback
//! (sequence), freeze (expiry), mix-and-match (one manifest lists every artifact of a
//! release, by hash), endless data (sizes are signed and reads are capped). Deferred:
//! key rotation through a signed root, and delegations (see decision 0018).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use d402_protocol::{
    ContentHash, ContentId, PublicKey, ReleaseManifest, ThresholdSigned, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::config::Paths;

/// Largest artifact accepted, bytes.
const MAX_ARTIFACT_BYTES: u64 = 512 * 1024 * 1024;

/// What the local policy lets `update` do with a verified release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum UpdatePolicy {
    /// Say a release exists; apply only with --force.
    #[default]
    Notify,
    /// Stage any release whose rollout policy allows it.
    StagePatch,
    /// Stage releases of the security channel only.
    StageSecurity,
    /// Never stage without --force.
    Manual,
}

/// What to verify a manifest against.
pub struct Trust {
    /// Trusted release keys.
    pub keys: Vec<PublicKey>,
    /// Distinct trusted signatures required.
    pub threshold: usize,
    /// The component this agent updates.
    pub component: String,
    /// The channel it follows.
    pub channel: String,
}

/// A verified release: the manifest, its CID, and each artifact's bytes.
pub struct Verified {
    /// The manifest.
    pub manifest: ReleaseManifest,
    /// Its content ID.
    pub cid: ContentId,
    /// `(name, bytes)` of each artifact, checked.
    pub artifacts: Vec<(String, Vec<u8>)>,
}

/// Reads the public key files (`{"publicKey": "<base58>"}`).
pub fn trusted_keys(files: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    files
        .iter()
        .map(|path| {
            let document: serde_json::Value = serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
            .with_context(|| format!("{} is not JSON", path.display()))?;
            document["publicKey"]
                .as_str()
                .context("no \"publicKey\"")
                .and_then(|k| k.parse().context("not a base58 ed25519 key"))
                .with_context(|| format!("{} is not a release public key", path.display()))
        })
        .collect()
}

/// Verifies the manifest at `path` and fetches its artifacts from `source` (a directory
/// or an http(s) base URL; default: the manifest's directory).
pub async fn verify(
    paths: &Paths,
    path: &Path,
    trust: &Trust,
    source: Option<&str>,
) -> anyhow::Result<Verified> {
    let envelope: ThresholdSigned<ReleaseManifest> = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a release manifest", path.display()))?;
    let manifest = envelope
        .verify_threshold(&trust.keys, trust.threshold)
        .context("refused: not enough trusted signatures")?
        .clone();
    let cid = ContentId::of_json(&manifest)?;
    anyhow::ensure!(
        manifest.expires_at > Timestamp::now(),
        "refused: the manifest expired at {}",
        manifest.expires_at
    );
    anyhow::ensure!(
        manifest.component == trust.component,
        "refused: the manifest is for component {:?}, not {:?}",
        manifest.component,
        trust.component
    );
    anyhow::ensure!(
        manifest.channel == trust.channel,
        "refused: the manifest is for channel {:?}, this agent follows {:?}",
        manifest.channel,
        trust.channel
    );
    let last = Sequences::load(paths)?.last(&manifest.component);
    anyhow::ensure!(
        last.is_none_or(|last| manifest.sequence > last),
        "refused: sequence {} is not above {} already accepted for {} (rollback or replay)",
        manifest.sequence,
        last.unwrap_or_default(),
        manifest.component
    );
    let default_source = path
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();
    let source = source.unwrap_or(&default_source);
    let mut artifacts = Vec::new();
    for artifact in &manifest.artifacts {
        anyhow::ensure!(
            artifact.bytes <= MAX_ARTIFACT_BYTES,
            "refused: {} claims {} bytes, above the {MAX_ARTIFACT_BYTES}-byte cap",
            artifact.name,
            artifact.bytes
        );
        anyhow::ensure!(
            !artifact.name.contains('/') && artifact.name != ".." && !artifact.name.is_empty(),
            "refused: artifact name {:?} is not a plain file name",
            artifact.name
        );
        let bytes = fetch(source, &artifact.name, artifact.bytes).await?;
        anyhow::ensure!(
            bytes.len() as u64 == artifact.bytes,
            "refused: {} is {} bytes, the manifest says {}",
            artifact.name,
            bytes.len(),
            artifact.bytes
        );
        anyhow::ensure!(
            ContentHash::of(&bytes) == artifact.sha256,
            "refused: {}'s SHA-256 is not the signed {}",
            artifact.name,
            artifact.sha256
        );
        artifacts.push((artifact.name.clone(), bytes));
    }
    Ok(Verified {
        manifest,
        cid,
        artifacts,
    })
}

/// Reads `name` from `source`, at most `expected` bytes (one more is read to notice a
/// longer file).
async fn fetch(source: &str, name: &str, expected: u64) -> anyhow::Result<Vec<u8>> {
    let cap = expected + 1;
    if source.starts_with("http://") || source.starts_with("https://") {
        let url = format!("{}/{name}", source.trim_end_matches('/'));
        let mut response = d402_client::http_client()
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("cannot download {url}"))?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            bytes.extend_from_slice(&chunk);
            anyhow::ensure!(
                bytes.len() as u64 <= cap.min(MAX_ARTIFACT_BYTES + 1),
                "refused: {url} is longer than signed"
            );
        }
        return Ok(bytes);
    }
    let path = Path::new(source).join(name);
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, cap), &mut bytes)?;
    Ok(bytes)
}

/// What the local policy decides for `manifest`: `stage` or why not.
pub fn decide(policy: UpdatePolicy, manifest: &ReleaseManifest) -> Decision {
    if manifest.rollout_policy == "manual" || policy == UpdatePolicy::Manual {
        return Decision::Manual;
    }
    match policy {
        UpdatePolicy::StagePatch => Decision::Stage,
        UpdatePolicy::StageSecurity if manifest.channel == "security" => Decision::Stage,
        _ => Decision::Notify,
    }
}

/// What `update` does with a verified release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Stage and swap it in.
    Stage,
    /// Only report it.
    Notify,
    /// Leave it to the operator (`--force true`).
    Manual,
}

impl Decision {
    /// The decision's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stage => "stage",
            Self::Notify => "notify",
            Self::Manual => "manual",
        }
    }
}

/// Installs each artifact into `dir`: written beside it as `<name>.new` and synced, the
/// installed file renamed to `<name>.previous`, the new one renamed into place. A crash
/// at any point leaves either the old file or the new one, never a mix. Then the sequence
/// is recorded.
pub fn apply(paths: &Paths, verified: &Verified, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut installed = Vec::new();
    for (name, bytes) in &verified.artifacts {
        let target = dir.join(name);
        let staged = dir.join(format!("{name}.new"));
        let mut file = std::fs::File::create(&staged)
            .with_context(|| format!("cannot write {}", staged.display()))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if let Ok(metadata) = std::fs::metadata(&target) {
            std::fs::set_permissions(&staged, metadata.permissions())?;
            std::fs::copy(&target, dir.join(format!("{name}.previous")))?;
        }
        std::fs::rename(&staged, &target)
            .with_context(|| format!("cannot swap {} in", target.display()))?;
        installed.push(target);
    }
    let mut sequences = Sequences::load(paths)?;
    sequences.record(&verified.manifest.component, verified.manifest.sequence);
    sequences.save(paths)?;
    Ok(installed)
}

/// The last sequence accepted per component (`releases.json` next to the configuration).
#[derive(Default, Serialize, Deserialize)]
struct Sequences(BTreeMap<String, u64>);

impl Sequences {
    fn load(paths: &Paths) -> anyhow::Result<Self> {
        match std::fs::read(paths.releases()) {
            Ok(bytes) => serde_json::from_slice(&bytes).context("releases.json is corrupt"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn last(&self, component: &str) -> Option<u64> {
        self.0.get(component).copied()
    }

    fn record(&mut self, component: &str, sequence: u64) {
        self.0.insert(component.to_string(), sequence);
    }

    fn save(&self, paths: &Paths) -> anyhow::Result<()> {
        if let Some(dir) = paths.releases().parent() {
            std::fs::create_dir_all(dir)?;
        }
        d402_wallet::write_private(&paths.releases(), &serde_json::to_vec_pretty(&self.0)?)
            .context("cannot record the accepted sequence")
    }
}
