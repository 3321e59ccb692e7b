//! The privileged page provider behind the `browser` import.
//!
//! - [`policy`]: which URLs, ports and addresses may be reached (pure, unit-tested).
//! - [`resolve`]: DNS resolution under the policy; connections are pinned to the checked
//!   addresses, so DNS rebinding cannot slip through.
//! - [`fetch`]: plain HTTP with manual, re-checked redirects and a streaming body cap.
//! - [`proxy`]: the in-process proxy every request of a rendered page must pass.
//! - [`pool`] / [`render`]: one lazily launched, crash-relaunched headless Chromium.
//! - [`snapshot`]: content-addressed snapshot records and the replaying [`SnapshotSource`].
//! - [`LiveSource`]: the [`d402_runtime::PageSource`] tying it together.

pub mod config;
pub mod fetch;
pub mod live;
pub mod policy;
pub mod pool;
pub mod proxy;
pub mod render;
pub mod resolve;
pub mod shell;
pub mod snapshot;

pub use config::BrowserConfig;
pub use live::LiveSource;
pub use pool::BrowserPool;
pub use snapshot::{SnapshotRecord, SnapshotSource, load_snapshot, store_snapshot};
