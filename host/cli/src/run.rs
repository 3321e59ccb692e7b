//! `d402 capability run`: run one capability locally in the sandbox and print the output
//! with its run evidence. Pages come from the live fetcher (public addresses only; snapshots
//! recorded in the node's store), or with `--snapshot URL=FILE` from files (replay mode), as
//! validators do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use d402_blobstore::BlobStore;
use d402_node::find_installed;
use d402_protocol::{CapabilityManifest, ContentId};
use d402_runtime::{PageSource, ReplaySource, Runtime, RuntimeConfig, TaskInfo};
use serde_json::{Value, json};

use crate::files::{read_bytes, read_manifest};
use d402_store::StateDir;

/// Arguments of `capability run`.
#[derive(Args)]
pub struct RunArgs {
    /// Manifest file (with --wasm), instead of --capability.
    #[arg(long, requires = "wasm", conflicts_with = "capability")]
    manifest: Option<PathBuf>,
    /// The WASM component for --manifest.
    #[arg(long, requires = "manifest")]
    wasm: Option<PathBuf>,
    /// Capability ID (`web.page_to_markdown@1`) or manifest CID installed in --state.
    #[arg(long)]
    capability: Option<String>,
    /// The task input as JSON text.
    #[arg(long)]
    input: String,
    /// Serve the browser import from a file: URL=FILE (repeatable). Replay mode.
    #[arg(long = "snapshot", value_name = "URL=FILE")]
    snapshots: Vec<String>,
    /// Node state directory: installed capabilities, compile cache, page snapshots. Used
    /// only when it exists (nothing is written elsewhere; without it pages are recorded in
    /// a temporary directory removed afterwards).
    #[arg(long, env = "D402_STATE", default_value = "state/node")]
    state: PathBuf,
    /// Task ID handed to the capability.
    #[arg(long, default_value = "task:local")]
    task_id: String,
    /// DEVELOPMENT ONLY: let live fetches reach private, loopback and link-local addresses
    /// (for pages served on 127.0.0.1). Off by default; never use it on a public node.
    #[arg(long)]
    allow_private_addresses: bool,
}

/// Runs the capability; prints `{"result", "evidence"}` (exit 0) or `{"error", "evidence"}`
/// (exit 2) as JSON on stdout.
pub fn run(args: RunArgs) -> anyhow::Result<std::process::ExitCode> {
    let input: Value = serde_json::from_str(&args.input).context("--input is not valid JSON")?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // An existing node state lends its compile cache and blob store; otherwise nothing is
    // written into the working directory (often the capability's own crate).
    let state = args.state.is_dir().then(|| StateDir::new(&args.state));
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let blobs = state
        .as_ref()
        .map_or_else(|| scratch.path().join("blobs"), StateDir::blobs);
    let runtime = Runtime::new(RuntimeConfig {
        compile_cache_dir: state.as_ref().map(StateDir::compile_cache),
        ..RuntimeConfig::default()
    })?;
    let loaded = match (&args.manifest, &args.wasm, &args.capability) {
        (Some(manifest), Some(wasm), None) => {
            let bytes = read_bytes(wasm)?;
            let manifest = pin_artifact(read_manifest(manifest)?, &bytes, wasm)?;
            runtime.load(&manifest, &bytes)?
        }
        (None, None, Some(reference)) => match find_installed(&args.state, reference) {
            Ok(installed) => runtime.load_from_store(
                &installed.manifest,
                installed.package.artifact_cid,
                &BlobStore::open(&blobs)?,
            )?,
            Err(not_installed) => {
                let Some((manifest, bytes)) = source_tree_build(reference)? else {
                    return Err(not_installed);
                };
                eprintln!(
                    "note: {reference} is not installed in {}; using this source tree's build",
                    args.state.display()
                );
                runtime.load(&manifest, &bytes)?
            }
        },
        _ => bail!("pass either --manifest with --wasm, or --capability"),
    };
    // Without snapshots, pages come from the live fetcher (recording snapshots in the store),
    // started only for capabilities that may fetch.
    let pages: Option<Arc<dyn PageSource>> = match replay_source(&args.snapshots)? {
        Some(replay) => Some(replay),
        None if loaded.manifest().permissions.browser.is_some() => {
            let store = BlobStore::open(&blobs)?;
            let _guard = tokio.enter();
            let live = d402_browser::LiveSource::with_defaults(args.allow_private_addresses, store)
                .map_err(|e| anyhow::anyhow!("cannot start the page fetcher: {e:?}"))?;
            Some(Arc::new(live))
        }
        None => None,
    };
    let task = TaskInfo {
        task_id: args.task_id,
    };
    let outcome = tokio.block_on(runtime.run(&loaded, &task, &input, pages));
    let (document, code) = match outcome {
        Ok(report) => (
            json!({"result": report.output, "evidence": report.evidence}),
            0,
        ),
        Err(failure) => (
            json!({"error": failure.error, "evidence": failure.evidence}),
            2,
        ),
    };
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(std::process::ExitCode::from(code))
}

/// Uses `wasm` as the manifest's artifact: refuses a different pinned artifact, pins an
/// unpinned manifest in memory (the manifest CID then covers the artifact).
fn pin_artifact(
    mut manifest: CapabilityManifest,
    bytes: &[u8],
    wasm: &Path,
) -> anyhow::Result<CapabilityManifest> {
    let actual = ContentId::of_bytes(bytes);
    match manifest.runtime.artifact_cid {
        Some(pinned) if pinned != actual => bail!(
            "artifact digest mismatch: the manifest pins {pinned}, but {} is {actual}",
            wasm.display()
        ),
        Some(_) => {}
        None => manifest.runtime.artifact_cid = Some(actual),
    }
    Ok(manifest)
}

/// Run from a d402 checkout (after scripts/build-capabilities.sh), a capability that is not
/// installed is taken from `capabilities/<crate>/manifest.json` and its built component in
/// the cargo target directory (`CARGO_TARGET_DIR`, else `target/`).
fn source_tree_build(reference: &str) -> anyhow::Result<Option<(CapabilityManifest, Vec<u8>)>> {
    let Ok(entries) = std::fs::read_dir("capabilities") else {
        return Ok(None);
    };
    let components = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("wasm32-wasip2/wasm");
    for entry in entries {
        let dir = entry?.path();
        let manifest_path = dir.join("manifest.json");
        let crate_name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .replace('-', "_");
        let wasm = components.join(format!("{crate_name}.wasm"));
        if !manifest_path.is_file() || !wasm.is_file() {
            continue;
        }
        let manifest = read_manifest(&manifest_path)?;
        let by_cid = reference
            .parse::<ContentId>()
            .is_ok_and(|cid| manifest.cid().is_ok_and(|own| own == cid));
        if manifest.capability_id() == reference || by_cid {
            let bytes = read_bytes(&wasm)?;
            return Ok(Some((pin_artifact(manifest, &bytes, &wasm)?, bytes)));
        }
    }
    Ok(None)
}

/// Splits `URL=FILE` where the URL may hold `=` itself (query strings): the split is at the
/// last `=` whose right side is an existing file, or at the last `=` when none is (so the
/// error names the file that is missing).
fn split_snapshot_spec(spec: &str) -> anyhow::Result<(&str, &Path)> {
    let splits = || {
        spec.rmatch_indices('=')
            .map(|(i, _)| (&spec[..i], Path::new(&spec[i + 1..])))
    };
    splits()
        .find(|(_, file)| file.is_file())
        .or_else(|| splits().next())
        .with_context(|| format!("--snapshot {spec:?}: expected URL=FILE"))
}

/// The replay source for `--snapshot URL=FILE` arguments, or `None` when there are none.
fn replay_source(snapshots: &[String]) -> anyhow::Result<Option<Arc<dyn PageSource>>> {
    if snapshots.is_empty() {
        return Ok(None);
    }
    let mut source = ReplaySource::new();
    for spec in snapshots {
        let (url, file) = split_snapshot_spec(spec)?;
        source.insert_html(url, read_bytes(file)?);
    }
    Ok(Some(Arc::new(source)))
}
