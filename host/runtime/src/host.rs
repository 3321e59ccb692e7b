//! Per-run host state and the host side of the `log` and `browser` imports. Every
//! privileged call is checked here, against the manifest's permission, not in the guest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use d402_protocol::{BrowserPermission, ContentId};
use serde::Serialize;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;

use crate::bindings::{browser, log};
use crate::pages::{FetchFailure, FetchSpec, PageSource, RenderMode};

/// Most log lines kept per run; later ones are counted, not stored.
const MAX_LOG_LINES: usize = 256;
/// Longest log line kept (bytes); longer lines are cut.
const MAX_LOG_LINE_BYTES: usize = 4096;

/// One line the capability logged.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: &'static str,
    /// The message (cut at 4 KiB).
    pub message: String,
}

/// Tracks memory growth against the run's cap and remembers when the cap was hit.
pub struct MemoryLimiter {
    cap: usize,
    pub(crate) hit: Option<usize>,
}

impl MemoryLimiter {
    fn new(cap: usize) -> Self {
        Self { cap, hit: None }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The privileged browser import's policy and bookkeeping for one run.
pub struct BrowserGate {
    permission: BrowserPermission,
    source: Option<Arc<dyn PageSource>>,
    deadline: Instant,
    requests: u32,
    /// Snapshots handed to the capability, in order.
    pub(crate) snapshots: Vec<ContentId>,
}

/// Everything a store holds for one run.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) dropped_logs: u32,
    pub(crate) browser: Option<BrowserGate>,
}

impl HostState {
    /// State for a run with `memory_cap` bytes of linear memory.
    pub fn new(
        wasi: WasiCtx,
        memory_cap: usize,
        permission: Option<&BrowserPermission>,
        source: Option<Arc<dyn PageSource>>,
        deadline: Instant,
    ) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_cap),
            logs: Vec::new(),
            dropped_logs: 0,
            browser: permission.map(|permission| BrowserGate {
                permission: permission.clone(),
                source,
                deadline,
                requests: 0,
                snapshots: Vec::new(),
            }),
        }
    }

    /// Snapshots handed to the capability.
    pub fn snapshots(&self) -> &[ContentId] {
        self.browser.as_ref().map_or(&[], |gate| &gate.snapshots)
    }
}

impl crate::bindings::types::Host for HostState {}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        tracing::debug!(target: "d402::capability", level, "{message}");
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped_logs = self.dropped_logs.saturating_add(1);
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.logs.push(LogLine { level, message });
    }
}

impl browser::Host for HostState {
    async fn fetch(
        &mut self,
        request: browser::FetchRequest,
    ) -> Result<browser::Page, browser::FetchError> {
        let gate = self.browser.as_mut().ok_or_else(|| {
            browser::FetchError::Denied("the manifest grants no browser permission".into())
        })?;
        let spec = gate.check(&request)?;
        let source = gate.source.clone().ok_or_else(|| {
            browser::FetchError::Denied("this node has no page source configured".into())
        })?;
        let timeout = spec.timeout;
        let page = match tokio::time::timeout(timeout, source.fetch(spec)).await {
            Ok(result) => result.map_err(into_wit_error)?,
            Err(_) => {
                return Err(browser::FetchError::Timeout(format!(
                    "no page within {} ms",
                    timeout.as_millis()
                )));
            }
        };
        if page.body.len() as u64 > gate.permission.max_response_bytes {
            return Err(browser::FetchError::TooLarge(format!(
                "{} bytes is over the permitted {} bytes",
                page.body.len(),
                gate.permission.max_response_bytes
            )));
        }
        gate.snapshots.push(page.snapshot_cid);
        Ok(browser::Page {
            final_url: page.final_url,
            status: page.status,
            content_type: page.content_type,
            body: page.body,
            rendered: page.rendered,
            snapshot_cid: page.snapshot_cid.to_string(),
            snapshotter_version: page.snapshotter_version,
            fetched_at: page.fetched_at.to_string(),
        })
    }
}

impl BrowserGate {
    /// Checks one request against the permission; returns what to ask the source for.
    fn check(&mut self, request: &browser::FetchRequest) -> Result<FetchSpec, browser::FetchError> {
        use browser::FetchError::{Denied, InvalidUrl};
        if self.requests >= self.permission.max_requests {
            return Err(Denied(format!(
                "request budget of {} pages used up",
                self.permission.max_requests
            )));
        }
        let host = http_host(&request.url).map_err(InvalidUrl)?;
        if !self
            .permission
            .allowed_hosts
            .iter()
            .any(|pattern| host_matches(pattern, &host))
        {
            return Err(Denied(format!(
                "host {host} is not in the manifest's allowedHosts"
            )));
        }
        let render = match request.render {
            browser::RenderMode::Never => RenderMode::Never,
            browser::RenderMode::Auto if self.permission.render => RenderMode::Auto,
            browser::RenderMode::Auto => RenderMode::Never,
            browser::RenderMode::Always if self.permission.render => RenderMode::Always,
            browser::RenderMode::Always => {
                return Err(Denied(
                    "rendering needs the browser.render permission".into(),
                ));
            }
        };
        if render == RenderMode::Never && !self.permission.fetch {
            return Err(Denied(
                "plain fetches need the browser.fetch permission".into(),
            ));
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(browser::FetchError::Timeout(
                "the run's deadline has passed".into(),
            ));
        }
        self.requests += 1;
        Ok(FetchSpec {
            url: request.url.clone(),
            render,
            timeout: remaining.min(Duration::from_millis(u64::from(request.timeout_ms.max(1)))),
            max_bytes: self.permission.max_response_bytes,
        })
    }
}

fn into_wit_error(failure: FetchFailure) -> browser::FetchError {
    match failure {
        FetchFailure::Denied(m) => browser::FetchError::Denied(m),
        FetchFailure::InvalidUrl(m) => browser::FetchError::InvalidUrl(m),
        FetchFailure::Timeout(m) => browser::FetchError::Timeout(m),
        FetchFailure::TooLarge(m) => browser::FetchError::TooLarge(m),
        FetchFailure::Upstream(m) => browser::FetchError::Upstream(m),
    }
}

/// The lowercase host of an absolute http(s) URL.
fn http_host(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?}: only http and https URLs can be fetched"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{url:?}: URLs with credentials are refused"));
    }
    parsed
        .host_str()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{url:?}: no host"))
}

/// `*` matches any host, `*.example.com` any subdomain of example.com, otherwise exact.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        _ if pattern == "*" => true,
        Some(suffix) => {
            host.len() > suffix.len()
                && host.ends_with(suffix)
                && host[..host.len() - suffix.len()].ends_with('.')
        }
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert!(host_matches("*", "anything.org"));
        assert!(host_matches("example.com", "example.com"));
        assert!(!host_matches("example.com", "www.example.com"));
        assert!(host_matches("*.example.com", "www.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
    }

    #[test]
    fn only_http_urls_with_hosts() {
        assert_eq!(http_host("https://Example.COM./a").unwrap(), "example.com");
        assert!(http_host("file:///etc/passwd").is_err());
        assert!(http_host("ftp://example.com/").is_err());
        assert!(http_host("https://user:pw@example.com/").is_err());
        assert!(http_host("not a url").is_err());
    }
}
