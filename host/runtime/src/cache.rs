//! On-disk cache of compiled components, keyed by the engine's compatibility hash and the
//! artifact CID, so a restarted node never recompiles an artifact it has compiled before.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use d402_protocol::ContentId;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// A directory of precompiled components (`<engine-hash>-<artifact-cid>.cwasm`).
pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    /// Loaded from the on-disk cache.
    Cache,
    /// Compiled now (and written to the cache, if there is one).
    Compiled,
}

impl CompileCache {
    /// A cache in `dir` (no caching when `None`).
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path(&self, artifact: &ContentId) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{artifact}.cwasm", self.engine_key)))
    }

    /// The compiled component for `bytes` (whose CID the caller has verified).
    pub fn load(
        &self,
        engine: &Engine,
        artifact: &ContentId,
        bytes: &[u8],
    ) -> Result<(Component, CompileSource), LoadError> {
        if let Some(path) = self.path(artifact)
            && path.is_file()
        {
            // SAFETY: the cache directory belongs to this node and is written only by
            // `store` below with wasmtime's own serialisation for this engine's exact
            // configuration (the file name carries the compatibility hash); wasmtime also
            // checks the header and refuses an incompatible file.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CompileSource::Cache)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "discarding unusable compile cache entry")
                }
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        if let Some(path) = self.path(artifact) {
            store(&path, &compiled);
        }
        // SAFETY: `compiled` was produced by this engine a moment ago.
        let component = unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        Ok((component, CompileSource::Compiled))
    }
}

/// Writes a cache entry atomically; a failure only costs a recompile later.
fn store(path: &Path, bytes: &[u8]) {
    if let Err(error) = d402_blobstore::write_atomic(path, bytes) {
        tracing::warn!(path = %path.display(), %error, "cannot write compile cache entry");
    }
}
