//! Provider configuration. `Default` is the production-safe setting.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::policy::AddressPolicy;

/// Environment variable that overrides [`BrowserConfig::chromium_path`].
pub const CHROMIUM_ENV: &str = "D402_CHROMIUM";

/// Default Chromium executable.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How the provider fetches and renders pages.
#[derive(Debug, Clone)]
pub struct BrowserConfig {
    /// Time allowed to establish one TCP (+TLS) connection.
    pub connect_timeout: Duration,
    /// Upper bound for one whole fetch, whatever the request's own budget says.
    pub max_fetch_time: Duration,
    /// Most redirects followed (each hop is re-checked against the address policy).
    pub max_redirects: usize,
    /// Largest body accepted; the request's own cap applies too (the smaller wins).
    pub max_body_bytes: u64,
    /// User-Agent header of plain fetches.
    pub user_agent: String,
    /// Chromium executable ([`CHROMIUM_ENV`] overrides the default).
    pub chromium_path: PathBuf,
    /// Most tabs open at once (rendering requests beyond that wait).
    pub max_tabs: usize,
    /// Time Chromium may take to start.
    pub launch_timeout: Duration,
    /// How long a rendered page must see no network activity to count as settled.
    pub network_idle: Duration,
    /// Most time spent waiting for a rendered page to settle after load.
    pub max_settle_time: Duration,
    /// DEVELOPMENT ONLY: allow private, loopback and link-local addresses. Never set this
    /// on a node that takes work from others: it opens the provider to SSRF.
    pub allow_private_addresses: bool,
    /// DEVELOPMENT AND TESTS ONLY: exact addresses treated as public (e.g. a test server's
    /// 127.0.0.1), so tests can exercise the strict policy against local servers.
    pub public_test_addresses: Vec<IpAddr>,
    /// DEVELOPMENT AND TESTS ONLY: names resolved to fixed addresses instead of DNS, like
    /// curl's `--resolve` (the addresses are still checked against the policy).
    pub dns_overrides: Vec<(String, Vec<IpAddr>)>,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_fetch_time: Duration::from_secs(60),
            max_redirects: 5,
            max_body_bytes: 10 * 1024 * 1024,
            user_agent: concat!(
                "Mozilla/5.0 (compatible; d402/",
                env!("CARGO_PKG_VERSION"),
                ")"
            )
            .to_string(),
            chromium_path: std::env::var_os(CHROMIUM_ENV)
                .filter(|p| !p.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from),
            max_tabs: 4,
            launch_timeout: Duration::from_secs(20),
            network_idle: Duration::from_millis(500),
            max_settle_time: Duration::from_secs(5),
            allow_private_addresses: false,
            public_test_addresses: Vec::new(),
            dns_overrides: Vec::new(),
        }
    }
}

impl BrowserConfig {
    /// The address policy this configuration implies. Logs a loud warning when the
    /// development switch is on.
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy {
            allow_private_addresses: self.allow_private_addresses,
            public_test_addresses: self.public_test_addresses.clone(),
        }
    }

    /// Logs warnings for development-only settings; called when a provider is built.
    pub(crate) fn warn_if_unsafe(&self) {
        if self.allow_private_addresses {
            tracing::warn!(
                "!!! allow_private_addresses is ON: pages may reach private, loopback and link-local \
                 addresses (SSRF). Development only — never on a node that serves others. !!!"
            );
        }
        if !self.public_test_addresses.is_empty() {
            tracing::warn!(addresses = ?self.public_test_addresses, "treating test addresses as public (development only)");
        }
        if !self.dns_overrides.is_empty() {
            tracing::warn!(overrides = ?self.dns_overrides, "DNS overrides in effect (development only)");
        }
    }
}
