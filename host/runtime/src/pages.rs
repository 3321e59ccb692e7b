//! Where the `browser` import gets its pages: a live fetcher (the browser crate) or a
//! replay source serving recorded snapshots, which validators use to re-run a claim.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use d402_protocol::{ContentId, Timestamp};

/// How a page should be obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderMode {
    /// Plain HTTP fetch.
    Never,
    /// Render only when the fetched HTML looks like a script-only shell.
    Auto,
    /// Always render in headless Chromium.
    Always,
}

/// A checked page request, as the host hands it to a [`PageSource`].
#[derive(Debug, Clone)]
pub struct FetchSpec {
    /// Absolute http(s) URL (already checked against the allowed hosts).
    pub url: String,
    /// Rendering policy (already reduced to what the permission grants).
    pub render: RenderMode,
    /// Time budget.
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_bytes: u64,
}

/// A fetched page and its snapshot record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPage {
    /// URL after redirects.
    pub final_url: String,
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Whether Chromium rendered it.
    pub rendered: bool,
    /// CID of the snapshot.
    pub snapshot_cid: ContentId,
    /// What produced the snapshot, with version.
    pub snapshotter_version: String,
    /// When it was fetched.
    pub fetched_at: Timestamp,
}

/// Why a page could not be provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    /// Refused by policy.
    Denied(String),
    /// Not an absolute http(s) URL.
    InvalidUrl(String),
    /// Out of time.
    Timeout(String),
    /// Body over the cap.
    TooLarge(String),
    /// Network or HTTP failure.
    Upstream(String),
}

/// A boxed future returned by [`PageSource::fetch`].
pub type SourceFuture<'a> =
    Pin<Box<dyn Future<Output = Result<FetchedPage, FetchFailure>> + Send + 'a>>;

/// Provides pages to the `browser` import.
pub trait PageSource: Send + Sync {
    /// Fetches (or replays) one page.
    fn fetch(&self, spec: FetchSpec) -> SourceFuture<'_>;
}

/// Serves pages from recorded snapshots, keyed by URL; any other URL is an upstream failure.
#[derive(Debug, Default, Clone)]
pub struct ReplaySource {
    pages: HashMap<String, FetchedPage>,
}

/// Snapshotter name reported for pages replayed from plain files.
pub const FILE_SNAPSHOTTER: &str = "d402-file-snapshot/1";

impl ReplaySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves a recorded page at `url`.
    pub fn insert(&mut self, url: &str, page: FetchedPage) {
        self.pages.insert(url.to_string(), page);
    }

    /// Serves raw HTML bytes (e.g. a saved file) at `url` as a 200 `text/html` response with
    /// no charset claimed (the capability sniffs it). Metadata that a plain file cannot carry
    /// is fixed (fetched at the Unix epoch), so replays are exact.
    pub fn insert_html(&mut self, url: &str, body: Vec<u8>) {
        let page = FetchedPage {
            final_url: url.to_string(),
            status: 200,
            content_type: "text/html".to_string(),
            snapshot_cid: ContentId::of_bytes(&body),
            body,
            rendered: false,
            snapshotter_version: FILE_SNAPSHOTTER.to_string(),
            fetched_at: Timestamp::from_unix_millis(0),
        };
        self.insert(url, page);
    }
}

impl PageSource for ReplaySource {
    fn fetch(&self, spec: FetchSpec) -> SourceFuture<'_> {
        let page = self.pages.get(&spec.url).cloned();
        Box::pin(async move {
            let page = page.ok_or_else(|| {
                FetchFailure::Upstream(format!("no snapshot recorded for {}", spec.url))
            })?;
            if page.body.len() as u64 > spec.max_bytes {
                return Err(FetchFailure::TooLarge(format!(
                    "{} bytes is over the {} byte cap",
                    page.body.len(),
                    spec.max_bytes
                )));
            }
            Ok(page)
        })
    }
}
