//! [`LiveSource`]: the production [`PageSource`] — plain fetch or render under the address
//! policy, every page recorded as a snapshot.

use std::sync::Arc;

use d402_blobstore::BlobStore;
use d402_protocol::Timestamp;
use d402_runtime::{FetchFailure, FetchSpec, FetchedPage, PageSource, RenderMode, SourceFuture};

use crate::config::BrowserConfig;
use crate::fetch::{FETCH_SNAPSHOTTER, PlainFetcher, RawPage};
use crate::pool::BrowserPool;
use crate::render::{render, render_snapshotter};
use crate::resolve::CheckedResolver;
use crate::shell::looks_like_script_shell;
use crate::snapshot::store_snapshot;

/// Fetches and renders live pages and records each one in the blob store.
#[derive(Debug, Clone)]
pub struct LiveSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<BrowserConfig>,
    store: BlobStore,
    fetcher: PlainFetcher,
    pool: BrowserPool,
}

impl LiveSource {
    /// A source with the default configuration, except that `allow_private_addresses`
    /// (DEVELOPMENT ONLY) lets fetches reach private and loopback addresses.
    pub fn with_defaults(
        allow_private_addresses: bool,
        store: BlobStore,
    ) -> Result<Self, FetchFailure> {
        Self::new(
            BrowserConfig {
                allow_private_addresses,
                ..BrowserConfig::default()
            },
            store,
        )
    }

    /// A source using `config`, recording snapshots in `store`. Chromium starts on the first
    /// render. Development-only settings are logged as warnings here.
    pub fn new(config: BrowserConfig, store: BlobStore) -> Result<Self, FetchFailure> {
        config.warn_if_unsafe();
        let config = Arc::new(config);
        let resolver = CheckedResolver::new(config.address_policy(), config.dns_overrides.clone());
        let fetcher = PlainFetcher::new(config.clone(), resolver.clone())?;
        let pool = BrowserPool::new(config.clone(), resolver);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                fetcher,
                pool,
            }),
        })
    }

    /// The Chromium pool (for inspection and tests).
    pub fn pool(&self) -> &BrowserPool {
        &self.inner.pool
    }

    /// The blob store snapshots are recorded in.
    pub fn store(&self) -> &BlobStore {
        &self.inner.store
    }

    /// Fetches (and, as `spec.render` says, renders) one page and records it.
    pub async fn fetch_page(&self, spec: FetchSpec) -> Result<FetchedPage, FetchFailure> {
        let inner = &self.inner;
        let budget = spec.timeout.min(inner.config.max_fetch_time);
        let max_bytes = spec.max_bytes.min(inner.config.max_body_bytes);
        let fetched_at = Timestamp::now();
        let work = async {
            let rendered = match spec.render {
                RenderMode::Never => None,
                RenderMode::Always => Some(render(&inner.pool, &spec.url, max_bytes).await?),
                RenderMode::Auto => {
                    let plain = inner.fetcher.fetch(&spec.url, max_bytes).await?;
                    if !looks_like_script_shell(&plain.content_type, &plain.body) {
                        return Ok((plain, false, FETCH_SNAPSHOTTER.to_string()));
                    }
                    tracing::debug!(url = %spec.url, "looks like a script shell; rendering");
                    Some(render(&inner.pool, &spec.url, max_bytes).await?)
                }
            };
            Ok::<(RawPage, bool, String), FetchFailure>(match rendered {
                Some(r) => (r.page, true, render_snapshotter(&r.chromium_version)),
                None => (
                    inner.fetcher.fetch(&spec.url, max_bytes).await?,
                    false,
                    FETCH_SNAPSHOTTER.to_string(),
                ),
            })
        };
        let (page, rendered, snapshotter) =
            tokio::time::timeout(budget, work).await.map_err(|_| {
                FetchFailure::Timeout(format!(
                    "{}: no page within {} ms",
                    spec.url,
                    budget.as_millis()
                ))
            })??;
        let store = inner.store.clone();
        let url = spec.url.clone();
        tokio::task::spawn_blocking(move || {
            store_snapshot(&store, &url, page, rendered, &snapshotter, fetched_at)
        })
        .await
        .map_err(|e| FetchFailure::Upstream(format!("snapshot task failed: {e}")))?
        .map_err(|e| FetchFailure::Upstream(format!("cannot record the snapshot: {e}")))
    }
}

impl PageSource for LiveSource {
    fn fetch(&self, spec: FetchSpec) -> SourceFuture<'_> {
        Box::pin(self.fetch_page(spec))
    }
}
