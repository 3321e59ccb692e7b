//! Capabilities installed in a node's state directory, and installing them.
//!
//! Layout: `<state>/implementations/<package-cid>.json` (signed implementation packages),
//! `<state>/manifests/<manifest-cid>.json`, `<state>/registrations/<registration-cid>.json`
//! (signed registration envelopes) and `<state>/blobs/` (artifacts by CID). Files are
//! written atomically (temporary file, then rename), after everything verified.

use std::path::Path;

use anyhow::{Context, bail};
use d402_blobstore::BlobStore;
use d402_protocol::{
    CapabilityManifest, CapabilityRegistration, ContentId, ImplementationPackage, Keypair,
    PublicKey, Signed, Timestamp, parse_json,
};
use d402_store::StateDir;

/// An installed capability: the newest verifying package for a manifest and the manifest
/// exactly as published (its CID is the package's manifest CID; the package names the
/// artifact).
#[derive(Debug, Clone)]
pub struct Installed {
    /// The implementation package.
    pub package: ImplementationPackage,
    /// The validated manifest.
    pub manifest: CapabilityManifest,
}

/// Every installed capability of `state`, one per manifest CID (the newest package wins),
/// newest first.
pub fn list_installed(state: &Path) -> anyhow::Result<Vec<Installed>> {
    let dir = StateDir::new(state).implementations();
    let entries = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "no capabilities installed in {} (see `d402 capability implementation install`)",
            state.display()
        )
    })?;
    let mut packages: Vec<ImplementationPackage> = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let envelope: Signed<ImplementationPackage> = read_json(&path)?;
        let package = envelope
            .verify()
            .with_context(|| format!("{} does not verify", path.display()))?
            .clone();
        match packages
            .iter_mut()
            .find(|p| p.manifest_cid == package.manifest_cid)
        {
            Some(existing) if existing.created_at < package.created_at => *existing = package,
            Some(_) => {}
            None => packages.push(package),
        }
    }
    packages.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    packages
        .into_iter()
        .map(|package| {
            let manifest_path = StateDir::new(state).manifest(&package.manifest_cid);
            let manifest: CapabilityManifest = read_json(&manifest_path)?;
            manifest.validate().with_context(|| {
                format!(
                    "{} is not a valid capability manifest",
                    manifest_path.display()
                )
            })?;
            if manifest.cid()? != package.manifest_cid {
                bail!("{} does not hash to its name", manifest_path.display());
            }
            Ok(Installed { package, manifest })
        })
        .collect()
}

/// Whether `state` has any implementation package installed.
pub fn any_installed(state: &Path) -> bool {
    std::fs::read_dir(StateDir::new(state).implementations()).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "json"))
    })
}

/// Installs the built-in capabilities ([`d402_builtins::BUILTINS`]) into `state`, each
/// packaged and signed by `key` and digest-checked like any install.
pub fn install_builtins(state: &Path, key: &Keypair) -> anyhow::Result<()> {
    for builtin in d402_builtins::BUILTINS {
        let manifest = CapabilityManifest::from_json(builtin.manifest)
            .with_context(|| format!("the built-in {} manifest", builtin.name))?;
        let package = create_package(&manifest, builtin.wasm, key, Timestamp::now())?;
        install_package(state, &package, &manifest, builtin.wasm, &[])?;
        tracing::info!(capability = %manifest.capability_id(), "installed the built-in capability");
    }
    Ok(())
}

/// Finds an installed capability by manifest CID or capability ID (`web.page_to_markdown@1`);
/// for an ID the newest package wins.
pub fn find_installed(state: &Path, reference: &str) -> anyhow::Result<Installed> {
    let by_cid = reference.parse::<ContentId>().ok();
    list_installed(state)?
        .into_iter()
        .find(|i| {
            by_cid.map_or(i.package.capability_id == reference, |cid| {
                i.package.manifest_cid == cid
            })
        })
        .with_context(|| {
            format!(
                "capability {reference} is not installed in {}",
                state.display()
            )
        })
}

/// Signs an implementation package for `manifest` and `artifact` with `key`, verified
/// before it is returned.
pub fn create_package(
    manifest: &CapabilityManifest,
    artifact: &[u8],
    key: &Keypair,
    now: Timestamp,
) -> anyhow::Result<Signed<ImplementationPackage>> {
    let package = ImplementationPackage {
        capability_id: manifest.capability_id(),
        manifest_cid: manifest.cid()?,
        artifact_cid: ContentId::of_bytes(artifact),
        artifact_bytes: artifact.len() as u64,
        world: manifest.runtime.world.clone(),
        publisher: key.public(),
        created_at: now,
    };
    let envelope = Signed::sign(package, key)?;
    envelope
        .verify_package(artifact, Some(manifest))
        .context("refusing to create the package")?;
    Ok(envelope)
}

/// Verifies `envelope` against `artifact` and `manifest` (and, when `trusted` is not empty,
/// that one of those publishers signed it), then installs all three into `state`. Nothing
/// is written unless everything verifies. Older packages for the same manifest are removed:
/// only the newest is ever served, and a node reads every package at start.
pub fn install_package(
    state: &Path,
    envelope: &Signed<ImplementationPackage>,
    manifest: &CapabilityManifest,
    artifact: &[u8],
    trusted: &[PublicKey],
) -> anyhow::Result<ImplementationPackage> {
    manifest.validate().context("the manifest is not valid")?;
    let package = envelope.verify_package(artifact, Some(manifest))?.clone();
    if !trusted.is_empty() && !trusted.contains(&package.publisher) {
        bail!(
            "publisher {} is not one of the trusted publishers",
            package.publisher
        );
    }
    BlobStore::open(StateDir::new(state).blobs())?.put_verified(artifact, &package.artifact_cid)?;
    write_json(
        &StateDir::new(state).manifest(&package.manifest_cid),
        manifest,
    )?;
    let path = StateDir::new(state)
        .implementations()
        .join(format!("{}.json", envelope.cid()?));
    write_json(&path, envelope)?;
    for entry in std::fs::read_dir(StateDir::new(state).implementations())? {
        let other = entry?.path();
        let superseded = other != path
            && read_json::<Signed<ImplementationPackage>>(&other).is_ok_and(|o| {
                o.payload.manifest_cid == package.manifest_cid
                    && o.payload.created_at < package.created_at
            });
        if superseded {
            std::fs::remove_file(&other)
                .with_context(|| format!("cannot remove {}", other.display()))?;
        }
    }
    Ok(package)
}

/// Verifies a signed registration of `manifest` (signature, rules, commission within
/// `max_commission_bps`, namespace proof if present) and installs it into `state`, where
/// the gateway reads it for its acceptance policy and creator commissions.
pub fn install_registration(
    state: &Path,
    envelope: &Signed<CapabilityRegistration>,
    manifest: &CapabilityManifest,
    max_commission_bps: u32,
    now: Timestamp,
) -> anyhow::Result<ContentId> {
    envelope.verify_registration(Some(manifest), max_commission_bps, now)?;
    let cid = envelope.cid()?;
    write_json(&StateDir::new(state).registration(&cid), envelope)?;
    Ok(cid)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_json(&text).with_context(|| format!("{} is not valid", path.display()))
}

/// Writes pretty JSON to `path` atomically ([`d402_blobstore::write_atomic`]).
fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    d402_blobstore::write_atomic(path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}
