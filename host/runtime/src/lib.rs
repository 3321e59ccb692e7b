//! The d402 component host: runs capabilities as WebAssembly components in wasmtime.
//!
//! - [`Runtime::load`] verifies an artifact against its CID, refuses components that import
//!   anything their manifest does not permit, and compiles through an on-disk cache keyed by
//!   artifact CID and engine configuration; one `InstancePre` is kept per loaded artifact.
//! - [`Runtime::run`] instantiates into a fresh store with a memory cap, fuel, an epoch
//!   deadline (the guest yields every tick, so a spinning guest never starves other runs),
//!   minimal WASI (no files, sockets or environment; captured, capped stdio; fixed clocks and
//!   seeded randomness for deterministic classes) and per-call checks on privileged imports.

mod bindings;
mod cache;
mod error;
mod host;
mod imports;
mod pages;
mod runtime;
mod wasi;

pub use error::{LoadError, RunError, RunFailure};
pub use host::LogLine;
pub use pages::{
    FetchFailure, FetchSpec, FetchedPage, PageSource, RenderMode, ReplaySource, SourceFuture,
};
pub use runtime::{LoadedCapability, RunEvidence, RunReport, Runtime, RuntimeConfig, TaskInfo};
