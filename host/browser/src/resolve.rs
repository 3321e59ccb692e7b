//! Name resolution under the address policy: every address a name resolves to is checked,
//! and callers connect only to the addresses returned here (DNS pinning), so a second,
//! different DNS answer (rebinding) is never used.

use std::net::{IpAddr, SocketAddr};

use url::Host;

use crate::policy::{AddressPolicy, HostRefusal, Refusal, Target, check_host};

/// Why a host could not be turned into connectable addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// Refused by the address policy (names the address and reason).
    Denied(String),
    /// The name did not resolve.
    NotFound(String),
}

/// Resolves and checks hosts; shared by the plain fetcher and the rendering proxy.
#[derive(Debug, Clone, Default)]
pub struct CheckedResolver {
    policy: AddressPolicy,
    overrides: Vec<(String, Vec<IpAddr>)>,
}

impl CheckedResolver {
    /// A resolver applying `policy`, with `overrides` (name → addresses) consulted before DNS.
    pub fn new(policy: AddressPolicy, overrides: Vec<(String, Vec<IpAddr>)>) -> Self {
        let overrides = overrides
            .into_iter()
            .map(|(name, ips)| (normalise(&name), ips))
            .collect();
        Self { policy, overrides }
    }

    /// The policy applied.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Resolves a checked [`Target`] to socket addresses, all of which pass the policy.
    /// Any refused address refuses the whole name (a mixed answer is suspicious).
    pub async fn resolve(&self, target: &Target) -> Result<Vec<SocketAddr>, ResolveError> {
        match target {
            Target::Ip(ip, port) => {
                // Already checked by `check_host`; checked again so this function stands alone.
                self.policy
                    .check_ip(*ip)
                    .map_err(|r| ResolveError::Denied(r.0))?;
                Ok(vec![SocketAddr::new(*ip, *port)])
            }
            Target::Domain(name, port) => self.resolve_name(name, *port).await,
        }
    }

    /// Checks a `host:port` (as in a CONNECT request or Host header) and resolves it.
    pub async fn resolve_host_port(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        let parsed = Host::parse(host)
            .map_err(|e| ResolveError::Denied(format!("host {host:?} is invalid: {e}")))?;
        let borrowed = match &parsed {
            Host::Domain(d) => Host::Domain(d.as_str()),
            Host::Ipv4(v4) => Host::Ipv4(*v4),
            Host::Ipv6(v6) => Host::Ipv6(*v6),
        };
        let target = check_host(Some(borrowed), port, &self.policy).map_err(|e| match e {
            HostRefusal::Missing => ResolveError::Denied("no host".into()),
            HostRefusal::Denied(Refusal(reason)) => {
                ResolveError::Denied(format!("{host}:{port}: {reason}"))
            }
        })?;
        self.resolve(&target).await
    }

    async fn resolve_name(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let key = normalise(name);
        let addrs: Vec<SocketAddr> = match self.overrides.iter().find(|(n, _)| *n == key) {
            Some((_, ips)) => ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
            None => tokio::net::lookup_host((key.as_str(), port))
                .await
                .map_err(|e| ResolveError::NotFound(format!("cannot resolve {name}: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(ResolveError::NotFound(format!(
                "{name} resolved to no address"
            )));
        }
        for addr in &addrs {
            if let Err(Refusal(reason)) = self.policy.check_ip(addr.ip()) {
                tracing::warn!(%name, %reason, "refused a name resolving to a non-public address");
                return Err(ResolveError::Denied(format!(
                    "{name} resolves to a refused address: {reason}"
                )));
            }
        }
        Ok(addrs)
    }
}

/// Lowercase, without a trailing dot.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overrides_are_checked_too() {
        let resolver = CheckedResolver::new(
            AddressPolicy::default(),
            vec![
                ("Evil.Example.".into(), vec!["10.0.0.1".parse().unwrap()]),
                ("ok.example".into(), vec!["8.8.8.8".parse().unwrap()]),
            ],
        );
        let denied = resolver
            .resolve(&Target::Domain("evil.example".into(), 80))
            .await
            .unwrap_err();
        assert!(
            matches!(&denied, ResolveError::Denied(r) if r.contains("10.0.0.1")),
            "{denied:?}"
        );
        let ok = resolver
            .resolve(&Target::Domain("ok.example.".into(), 8080))
            .await
            .unwrap();
        assert_eq!(ok, vec!["8.8.8.8:8080".parse().unwrap()]);
    }

    #[tokio::test]
    async fn localhost_is_refused_after_resolution() {
        let resolver = CheckedResolver::default();
        let denied = resolver
            .resolve(&Target::Domain("localhost".into(), 8080))
            .await
            .unwrap_err();
        assert!(
            matches!(&denied, ResolveError::Denied(r) if r.contains("loopback")),
            "{denied:?}"
        );
    }

    #[tokio::test]
    async fn connect_targets_are_checked() {
        let resolver = CheckedResolver::default();
        for (host, port) in [
            ("127.0.0.1", 443),
            ("[::1]", 443),
            ("169.254.169.254", 80),
            ("example.com", 22),
        ] {
            assert!(
                matches!(
                    resolver.resolve_host_port(host, port).await,
                    Err(ResolveError::Denied(_))
                ),
                "{host}:{port}"
            );
        }
    }
}
