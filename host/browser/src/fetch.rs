//! Plain HTTP fetching under the address policy.
//!
//! Each hop is checked (URL, then every resolved address) and its connection is pinned to the
//! checked addresses: the per-hop client gets them as DNS overrides and has a resolver that
//! refuses everything else, so reqwest can never look the name up again. Redirects are
//! followed by hand, re-checking every hop; the body is capped while streaming.

use std::sync::Arc;

use d402_runtime::FetchFailure;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, USER_AGENT};
use url::Url;

use crate::config::BrowserConfig;
use crate::policy::{Target, UrlRefusal, check_url};
use crate::resolve::{CheckedResolver, ResolveError};

/// Name and version of the plain fetcher, recorded in snapshots.
pub const FETCH_SNAPSHOTTER: &str = concat!("d402-fetch/", env!("CARGO_PKG_VERSION"), " (reqwest)");

/// A fetched response, before it is recorded as a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPage {
    /// URL after redirects.
    pub final_url: String,
    /// HTTP status of the final response.
    pub status: u16,
    /// Content-Type of the final response (empty when absent).
    pub content_type: String,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Fetches pages with plain HTTP.
#[derive(Clone)]
pub struct PlainFetcher {
    config: Arc<BrowserConfig>,
    resolver: CheckedResolver,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PlainFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainFetcher")
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl PlainFetcher {
    /// A fetcher with `config`, checking addresses with `resolver`.
    pub fn new(
        config: Arc<BrowserConfig>,
        resolver: CheckedResolver,
    ) -> Result<Self, FetchFailure> {
        Ok(Self {
            config,
            resolver,
            tls: Arc::new(tls_config()?),
        })
    }

    /// Fetches `url` (GET), following at most `max_redirects` redirects; the body may be at
    /// most `max_bytes` long. The caller bounds the time.
    pub async fn fetch(&self, url: &str, max_bytes: u64) -> Result<RawPage, FetchFailure> {
        let mut current =
            Url::parse(url).map_err(|e| FetchFailure::InvalidUrl(format!("{url:?}: {e}")))?;
        let mut redirects = 0;
        loop {
            let response = self.send(&current).await?;
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response.headers().get(LOCATION)
            {
                let location = location.to_str().map_err(|_| {
                    FetchFailure::Upstream(format!("{current}: redirect Location is not text"))
                })?;
                let next = current.join(location).map_err(|e| {
                    FetchFailure::Upstream(format!(
                        "{current}: bad redirect Location {location:?}: {e}"
                    ))
                })?;
                redirects += 1;
                if redirects > self.config.max_redirects {
                    return Err(FetchFailure::Upstream(format!(
                        "{url}: more than {} redirects",
                        self.config.max_redirects
                    )));
                }
                tracing::debug!(from = %current, to = %next, "following redirect");
                current = next;
                continue;
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = read_capped(response, max_bytes).await?;
            return Ok(RawPage {
                final_url: current.to_string(),
                status: status.as_u16(),
                content_type,
                body,
            });
        }
    }

    /// Sends one GET to `url` over a connection pinned to checked addresses.
    async fn send(&self, url: &Url) -> Result<reqwest::Response, FetchFailure> {
        let target = check_url(url, self.resolver.policy()).map_err(|e| match e {
            UrlRefusal::Invalid(m) => FetchFailure::InvalidUrl(m),
            UrlRefusal::Denied(m) => FetchFailure::Denied(m),
        })?;
        let addrs = self.resolver.resolve(&target).await.map_err(|e| match e {
            ResolveError::Denied(m) => FetchFailure::Denied(format!("{url}: {m}")),
            ResolveError::NotFound(m) => FetchFailure::Upstream(m),
        })?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls).clone())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .connect_timeout(self.config.connect_timeout)
            .pool_max_idle_per_host(0)
            .dns_resolver(RefuseAll);
        if let Target::Domain(name, _) = &target {
            // The URL's host text (as reqwest will look it up), pinned to the checked addresses.
            let host = url.host_str().unwrap_or(name);
            builder = builder.resolve_to_addrs(host, &addrs);
        }
        let client = builder
            .build()
            .map_err(|e| FetchFailure::Upstream(format!("HTTP client: {e}")))?;
        tracing::debug!(%url, ?addrs, "fetching");
        client
            .get(url.clone())
            .header(USER_AGENT, &self.config.user_agent)
            .header(
                ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
            .send()
            .await
            .map_err(|e| upstream(url, &e))
    }
}

/// Reads the body, stopping as soon as it exceeds `max_bytes`.
async fn read_capped(
    mut response: reqwest::Response,
    max_bytes: u64,
) -> Result<Vec<u8>, FetchFailure> {
    let too_large = |n: &dyn std::fmt::Display| {
        FetchFailure::TooLarge(format!(
            "body of {n} bytes is over the {max_bytes} byte cap"
        ))
    };
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared.filter(|&n| n > max_bytes) {
        return Err(too_large(&length));
    }
    let url = response.url().clone();
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(max_bytes).min(1 << 20) as usize);
    while let Some(chunk) = response.chunk().await.map_err(|e| upstream(&url, &e))? {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large(&format!("more than {max_bytes}")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn upstream(url: &Url, error: &reqwest::Error) -> FetchFailure {
    let mut message = format!("{url}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    if error.is_timeout() {
        FetchFailure::Timeout(message)
    } else {
        FetchFailure::Upstream(message)
    }
}

/// rustls with the ring provider and the platform's certificate verifier.
fn tls_config() -> Result<rustls::ClientConfig, FetchFailure> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map(|b| b.with_no_client_auth())
        .map_err(|e| FetchFailure::Upstream(format!("TLS setup: {e}")))
}

/// A resolver that refuses every name: the per-hop client may connect only to the
/// addresses pinned with `resolve_to_addrs`.
struct RefuseAll;

impl reqwest::dns::Resolve for RefuseAll {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let message = format!(
            "{} was not resolved through the address policy",
            name.as_str()
        );
        Box::pin(async move { Err(message.into()) })
    }
}
