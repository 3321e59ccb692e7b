//! The engine, loading capabilities, and running them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use d402_protocol::{CapabilityManifest, CompiledSchemas, ContentHash, ContentId, canonical};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use crate::bindings::{WebPre, browser, log, types};
use crate::cache::{CompileCache, CompileSource};
use crate::error::{LoadError, RunError, RunFailure};
use crate::host::{HostState, LogLine};
use crate::pages::PageSource;
use crate::{imports, wasi};

/// Node-level limits and settings of the sandbox.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Runs executing at once; more wait for a slot. Also sizes the instance pool.
    pub max_concurrent_runs: u32,
    /// Largest linear memory any capability may have (manifests asking for more are refused).
    pub max_memory_bytes: u64,
    /// Meter fuel (instructions executed). Off by default: metering slows guest code (see
    /// decision 0004 and `d402 bench extract --fuel`), and the deadline already bounds every run.
    /// When on, runs get the manifest's `limits.fuel` (or an unlimited budget) and report
    /// the fuel used; when off, manifests that set `limits.fuel` are refused at load.
    pub fuel_metering: bool,
    /// Epoch tick: deadline precision, and how often a running guest yields.
    pub epoch_tick: Duration,
    /// Cap on captured stdout and stderr, each.
    pub stdio_cap_bytes: usize,
    /// Where compiled components are cached; `None` disables the disk cache.
    pub compile_cache_dir: Option<PathBuf>,
    /// Bytes at the start of each pooled linear memory that stay mapped between runs and are
    /// zeroed with a memset, instead of being handed back to the kernel and faulted in again
    /// page by page by the next run (decision 0010). Beyond this, memory is released as usual.
    pub resident_memory_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_concurrent_runs: 128,
            max_memory_bytes: 1 << 30,
            fuel_metering: false,
            epoch_tick: Duration::from_millis(10),
            stdio_cap_bytes: 64 * 1024,
            compile_cache_dir: None,
            resident_memory_bytes: 16 << 20,
        }
    }
}

/// Fuel budget of metered runs whose manifest sets no `limits.fuel`.
const UNLIMITED_FUEL: u64 = u64::MAX / 2;

/// The sandbox: one wasmtime engine, its linkers, and the capabilities loaded into it.
pub struct Runtime {
    engine: Engine,
    pure_linker: Linker<HostState>,
    web_linker: Linker<HostState>,
    cache: CompileCache,
    config: RuntimeConfig,
    slots: Semaphore,
    loaded: Mutex<HashMap<(ContentId, ContentId), Arc<LoadedCapability>>>,
}

/// A verified, compiled capability ready to run.
pub struct LoadedCapability {
    manifest: CapabilityManifest,
    manifest_cid: ContentId,
    artifact_cid: ContentId,
    schemas: CompiledSchemas,
    pre: WebPre<HostState>,
    compile_source: CompileSource,
}

impl LoadedCapability {
    /// The manifest.
    pub fn manifest(&self) -> &CapabilityManifest {
        &self.manifest
    }
    /// CID of the manifest.
    pub fn manifest_cid(&self) -> ContentId {
        self.manifest_cid
    }
    /// CID of the WASM artifact.
    pub fn artifact_cid(&self) -> ContentId {
        self.artifact_cid
    }
    /// The manifest's compiled input and output schemas.
    pub fn schemas(&self) -> &CompiledSchemas {
        &self.schemas
    }
    /// True when the compiled code came from the disk cache.
    pub fn from_compile_cache(&self) -> bool {
        self.compile_source == CompileSource::Cache
    }
}

/// Who the run is for.
#[derive(Debug, Clone, Default)]
pub struct TaskInfo {
    /// The task ID handed to the capability.
    pub task_id: String,
}

/// What a run did, for result claims and validators.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunEvidence {
    /// CID of the artifact run.
    pub artifact_cid: Option<ContentId>,
    /// CID of the manifest run.
    pub manifest_cid: Option<ContentId>,
    /// sha256 of the canonical input.
    pub input_hash: Option<ContentHash>,
    /// sha256 of the canonical output (successful runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<ContentHash>,
    /// Fuel consumed, when metering is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// Wall-clock time of the run in microseconds.
    pub elapsed_us: u64,
    /// Snapshots the run read through the browser import.
    pub snapshot_cids: Vec<ContentId>,
    /// Lines the capability logged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
    /// Log lines dropped over the cap.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped_logs: u32,
    /// Captured stdout (capped, lossy UTF-8).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// Captured stderr (capped, lossy UTF-8).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A successful run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The output JSON (valid against the output schema).
    pub output: Value,
    /// Run evidence.
    pub evidence: RunEvidence,
}

impl Runtime {
    /// Creates the engine (pooling allocator, epoch interruption, optional fuel), the
    /// linkers, and the background epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        let slots = config.max_concurrent_runs.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 4)
            .total_memories(slots * 2)
            .total_tables(slots * 4)
            .total_stacks(slots)
            .max_memory_size(config.max_memory_bytes as usize)
            .linear_memory_keep_resident(config.resident_memory_bytes);
        let mut engine_config = Config::new();
        engine_config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .consume_fuel(config.fuel_metering)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&engine_config)
            .map_err(|e| LoadError::Invalid(format!("engine: {e:#}")))?;
        spawn_epoch_ticker(&engine, config.epoch_tick);

        let link = |with_browser: bool| -> wasmtime::Result<Linker<HostState>> {
            let mut linker = Linker::new(&engine);
            wasi::add_to_linker(&mut linker)?;
            types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
            log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
            if with_browser {
                browser::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
            }
            Ok(linker)
        };
        let linker_error = |e: wasmtime::Error| LoadError::Invalid(format!("linker: {e:#}"));
        Ok(Self {
            pure_linker: link(false).map_err(linker_error)?,
            web_linker: link(true).map_err(linker_error)?,
            cache: CompileCache::new(&engine, config.compile_cache_dir.clone()),
            slots: Semaphore::new(slots as usize),
            loaded: Mutex::new(HashMap::new()),
            engine,
            config,
        })
    }

    /// The wasmtime engine (for benchmarks comparing against bare wasmtime).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads the capability `manifest` with the artifact `bytes`: checks the digest against
    /// `manifest.runtime.artifactCid`, the imports against the permissions, compiles (or
    /// reads the compile cache) and pre-instantiates. Loading the same pair again is free.
    pub fn load(
        &self,
        manifest: &CapabilityManifest,
        bytes: &[u8],
    ) -> Result<Arc<LoadedCapability>, LoadError> {
        let expected = manifest.runtime.artifact_cid.ok_or(LoadError::NoArtifact)?;
        let actual = ContentId::of_bytes(bytes);
        if actual != expected {
            return Err(LoadError::DigestMismatch { expected, actual });
        }
        self.load_verified(manifest, manifest.cid()?, expected, bytes)
    }

    /// Loads `manifest` with the artifact `artifact_cid` (which a signed implementation
    /// package names) from a content-addressed blob store, re-hashing it. A manifest that
    /// pins another artifact is refused.
    pub fn load_from_store(
        &self,
        manifest: &CapabilityManifest,
        artifact_cid: ContentId,
        blobs: &d402_blobstore::BlobStore,
    ) -> Result<Arc<LoadedCapability>, LoadError> {
        let cid = artifact_cid;
        if let Some(pinned) = manifest.runtime.artifact_cid
            && pinned != cid
        {
            return Err(LoadError::DigestMismatch {
                expected: pinned,
                actual: cid,
            });
        }
        let manifest_cid = manifest.cid()?;
        if let Some(loaded) = self.cached(manifest_cid, cid) {
            return Ok(loaded);
        }
        let bytes = blobs.get(&cid).map_err(|e| match e {
            d402_blobstore::BlobError::DigestMismatch { expected, actual } => {
                LoadError::DigestMismatch { expected, actual }
            }
            other => LoadError::Storage(other.to_string()),
        })?;
        self.load_verified(manifest, manifest_cid, cid, &bytes)
    }

    fn cached(
        &self,
        manifest_cid: ContentId,
        artifact: ContentId,
    ) -> Option<Arc<LoadedCapability>> {
        self.loaded
            .lock()
            .expect("load map poisoned")
            .get(&(manifest_cid, artifact))
            .cloned()
    }

    fn load_verified(
        &self,
        manifest: &CapabilityManifest,
        manifest_cid: ContentId,
        artifact_cid: ContentId,
        bytes: &[u8],
    ) -> Result<Arc<LoadedCapability>, LoadError> {
        if let Some(loaded) = self.cached(manifest_cid, artifact_cid) {
            return Ok(loaded);
        }
        manifest.validate()?;
        if manifest.limits.memory_bytes > self.config.max_memory_bytes {
            return Err(LoadError::Policy(format!(
                "limits.memoryBytes {} is above this node's cap of {}",
                manifest.limits.memory_bytes, self.config.max_memory_bytes
            )));
        }
        if manifest.limits.fuel.is_some() && !self.config.fuel_metering {
            return Err(LoadError::Policy(
                "limits.fuel is set but this node runs without fuel metering".into(),
            ));
        }
        let (component, compile_source) = self.cache.load(&self.engine, &artifact_cid, bytes)?;
        imports::check(&component, &self.engine, manifest)?;
        let linker = if manifest.permissions.browser.is_some() {
            &self.web_linker
        } else {
            &self.pure_linker
        };
        let pre = linker
            .instantiate_pre(&component)
            .and_then(WebPre::new)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let loaded = Arc::new(LoadedCapability {
            manifest_cid,
            schemas: manifest.compile_schemas()?,
            manifest: manifest.clone(),
            artifact_cid,
            pre,
            compile_source,
        });
        tracing::info!(capability = %manifest.capability_id(), artifact = %artifact_cid, ?compile_source, "capability loaded");
        self.loaded
            .lock()
            .expect("load map poisoned")
            .insert((loaded.manifest_cid, artifact_cid), loaded.clone());
        Ok(loaded)
    }

    /// Runs `capability` on `input`. Pages for the `browser` import come from `pages`.
    /// Every failure is contained: the host and other runs are unaffected.
    pub async fn run(
        &self,
        capability: &LoadedCapability,
        task: &TaskInfo,
        input: &Value,
        pages: Option<Arc<dyn PageSource>>,
    ) -> Result<RunReport, RunFailure> {
        let started = Instant::now();
        let mut evidence = RunEvidence {
            artifact_cid: Some(capability.artifact_cid),
            manifest_cid: Some(capability.manifest_cid),
            ..RunEvidence::default()
        };
        let fail = |error: RunError, mut evidence: RunEvidence| {
            evidence.elapsed_us = started.elapsed().as_micros() as u64;
            RunFailure { error, evidence }
        };
        let input_bytes = match canonical::to_vec(input) {
            Ok(bytes) => bytes,
            Err(e) => return Err(fail(RunError::InvalidInput(e.to_string()), evidence)),
        };
        let input_hash = ContentHash::of(&input_bytes);
        evidence.input_hash = Some(input_hash);
        if let Err(e) = capability.schemas.validate_input(input) {
            return Err(fail(RunError::InvalidInput(e.to_string()), evidence));
        }
        let _slot = self.slots.acquire().await.expect("semaphore never closed");
        let outcome = self
            .execute(
                capability,
                task,
                &input_bytes,
                input_hash,
                pages,
                &mut evidence,
            )
            .await;
        match outcome.and_then(|output| self.check_output(capability, output)) {
            Ok((output, content_hash)) => {
                evidence.content_hash = Some(content_hash);
                evidence.elapsed_us = started.elapsed().as_micros() as u64;
                Ok(RunReport { output, evidence })
            }
            Err(error) => Err(fail(error, evidence)),
        }
    }

    async fn execute(
        &self,
        capability: &LoadedCapability,
        task: &TaskInfo,
        input_bytes: &[u8],
        input_hash: ContentHash,
        pages: Option<Arc<dyn PageSource>>,
        evidence: &mut RunEvidence,
    ) -> Result<String, RunError> {
        let manifest = &capability.manifest;
        let deadline_ms = manifest.limits.deadline_ms;
        let deadline = Instant::now() + Duration::from_millis(deadline_ms);
        let (wasi_ctx, stdio) = wasi::context(
            manifest.determinism,
            input_hash.0,
            self.config.stdio_cap_bytes,
        );
        let state = HostState::new(
            wasi_ctx,
            manifest.limits.memory_bytes as usize,
            manifest.permissions.browser.as_ref(),
            pages,
            deadline,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let fuel = self
            .config
            .fuel_metering
            .then(|| manifest.limits.fuel.unwrap_or(UNLIMITED_FUEL));
        if let Some(fuel) = fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| RunError::Host(format!("{e:#}")))?;
        }
        // Each epoch tick the guest yields to the scheduler; past the deadline it traps.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        let context = types::TaskContext {
            task_id: task.task_id.clone(),
            capability_id: manifest.capability_id(),
            manifest_cid: capability.manifest_cid.to_string(),
            deadline_ms,
        };
        let input_text = std::str::from_utf8(input_bytes).expect("canonical JSON is UTF-8");
        // Host calls (page fetches) do not see epochs; the outer timeout bounds them too.
        let grace = self.config.epoch_tick * 5;
        let call = async {
            let instance = capability.pre.instantiate_async(&mut store).await?;
            instance
                .d402_capability_capability()
                .call_run(&mut store, &context, input_text)
                .await
        };
        let result = tokio::time::timeout(Duration::from_millis(deadline_ms) + grace, call).await;

        if fuel.is_some() {
            evidence.fuel_used = store
                .get_fuel()
                .ok()
                .and_then(|left| fuel.map(|f| f.saturating_sub(left)));
        }
        let state = store.data();
        evidence.snapshot_cids = state.snapshots().to_vec();
        evidence.logs = state.logs.clone();
        evidence.dropped_logs = state.dropped_logs;
        evidence.stdout = String::from_utf8_lossy(&stdio.stdout.contents()).into_owned();
        evidence.stderr = String::from_utf8_lossy(&stdio.stderr.contents()).into_owned();
        let memory_hit = state.limiter.hit;

        match result {
            Err(_) => Err(RunError::DeadlineExceeded(format!(
                "no result within {deadline_ms} ms"
            ))),
            Ok(Ok(Ok(output))) => Ok(output),
            Ok(Ok(Err(guest_error))) => Err(from_guest(guest_error)),
            Ok(Err(trap)) => Err(classify_trap(
                &trap,
                memory_hit,
                deadline_ms,
                &evidence.stderr,
            )),
        }
    }

    fn check_output(
        &self,
        capability: &LoadedCapability,
        output: String,
    ) -> Result<(Value, ContentHash), RunError> {
        let cap = capability.manifest.limits.output_bytes;
        if output.len() as u64 > cap {
            return Err(RunError::OutputTooLarge(format!(
                "{} bytes is over the manifest's {cap} byte cap",
                output.len()
            )));
        }
        let value: Value = serde_json::from_str(&output)
            .map_err(|e| RunError::InvalidOutput(format!("not JSON: {e}")))?;
        capability
            .schemas
            .validate_output(&value)
            .map_err(|e| RunError::InvalidOutput(e.to_string()))?;
        let canonical =
            canonical::to_vec(&value).map_err(|e| RunError::InvalidOutput(e.to_string()))?;
        Ok((value, ContentHash::of(&canonical)))
    }
}

/// The bare wasmtime path, for benchmarks: a fresh store with an empty WASI context,
/// instantiate from the same `InstancePre`, call `run`. No limits, schema checks, hashing or
/// evidence — what d402 adds on top is exactly the difference to [`Runtime::run`].
impl Runtime {
    #[doc(hidden)]
    pub async fn bare_call(
        &self,
        capability: &LoadedCapability,
        input_json: &str,
    ) -> Result<String, RunError> {
        let wasi = wasmtime_wasi::WasiCtxBuilder::new().build();
        let far = Instant::now() + Duration::from_secs(3600);
        let mut store = Store::new(
            &self.engine,
            HostState::new(wasi, usize::MAX, None, None, far),
        );
        if self.config.fuel_metering {
            store
                .set_fuel(UNLIMITED_FUEL)
                .map_err(|e| RunError::Host(format!("{e:#}")))?;
        }
        store.set_epoch_deadline(u64::MAX / 2);
        let context = types::TaskContext {
            task_id: String::new(),
            capability_id: String::new(),
            manifest_cid: String::new(),
            deadline_ms: 0,
        };
        let instance = capability
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| RunError::Host(format!("{e:#}")))?;
        instance
            .d402_capability_capability()
            .call_run(&mut store, &context, input_json)
            .await
            .map_err(|e| RunError::Host(format!("{e:#}")))?
            .map_err(from_guest)
    }
}

fn from_guest(error: types::RunError) -> RunError {
    match error {
        types::RunError::InvalidInput(m) => RunError::InvalidInput(m),
        types::RunError::Blocked(m) => RunError::Blocked(m),
        types::RunError::UpstreamFailure(m) => RunError::UpstreamFailure(m),
        types::RunError::Internal(m) => RunError::Internal(m),
    }
}

fn classify_trap(
    error: &wasmtime::Error,
    memory_hit: Option<usize>,
    deadline_ms: u64,
    stderr: &str,
) -> RunError {
    if let Some(bytes) = memory_hit {
        return RunError::MemoryLimit(format!(
            "the guest tried to grow its memory to {bytes} bytes"
        ));
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            RunError::DeadlineExceeded(format!("stopped after {deadline_ms} ms"))
        }
        Some(Trap::OutOfFuel) => RunError::FuelExhausted("the run used all its fuel".into()),
        Some(trap) => {
            let tail: String = stderr
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join(" | ");
            RunError::Trap(if tail.is_empty() {
                trap.to_string()
            } else {
                format!("{trap}: {tail}")
            })
        }
        None => RunError::Trap(format!("{error:#}")),
    }
}

/// Increments the engine's epoch every `tick` until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("d402-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .expect("spawn epoch thread");
}
