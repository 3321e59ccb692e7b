//! The address policy: which URLs, ports and IP addresses the provider may connect to.
//!
//! Pure functions, no I/O. Everything not plainly a public unicast address is refused:
//! private, loopback, link-local, CGNAT, multicast, unspecified, broadcast, documentation,
//! benchmarking and reserved ranges, cloud metadata endpoints, IPv6 ULA/link-local/site-local,
//! and IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4), which are
//! judged by the embedded IPv4 address. IPv6 outside global unicast (2000::/3) is refused.
//!
//! Ports: 80, 443 and every port from 1024 up are allowed; other ports below 1024 (ssh,
//! smtp, ...) are refused, because a web page has no business there and they are where
//! internal services that trust their network listen.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a connection target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which addresses count as public beyond the built-in rules (development and tests only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Development switch: allow private and loopback addresses (never in production).
    pub allow_private_addresses: bool,
    /// Exact addresses treated as public (development and tests only).
    pub public_test_addresses: Vec<IpAddr>,
}

impl AddressPolicy {
    /// Checks one IP address; `Err` names the address and the reason.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.public_test_addresses.contains(&ip) {
            return Ok(());
        }
        let Some(reason) = non_public_reason(ip) else {
            return Ok(());
        };
        if self.allow_private_addresses && !always_refused(ip) {
            return Ok(());
        }
        Err(Refusal(format!("address {ip} is refused: {reason}")))
    }
}

/// True for addresses refused even in development mode: nothing can be fetched from them.
fn always_refused(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

/// Maps IPv4-mapped IPv6 addresses to IPv4; others are unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why `ip` is not a public unicast address, or `None` when it is one.
pub fn non_public_reason(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4).map(str::to_string),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// Why an IPv4 address is not public, or `None`.
fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata endpoint",
        _ if ip == Ipv4Addr::new(100, 100, 100, 200) => "cloud metadata endpoint",
        _ if ip.is_broadcast() => "broadcast",
        (0, _, _) => "unspecified / \"this network\" (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "carrier-grade NAT (100.64.0.0/10)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) => "documentation (192.0.2.0/24)",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (198, 51, 100) => "documentation (198.51.100.0/24)",
        (203, 0, 113) => "documentation (203.0.113.0/24)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    };
    Some(reason)
}

/// The IPv4 address in the last 32 bits of `ip`.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    let s = ip.segments();
    Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]))
}

/// Why an IPv6 address is not public, or `None`.
fn v6_reason(ip: Ipv6Addr) -> Option<String> {
    let s = ip.segments();
    let embedded =
        |form: &str, v4: Ipv4Addr| v4_reason(v4).map(|r| format!("{form} of {v4}, which is {r}"));
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return Some("cloud metadata endpoint".into());
    }
    if ip.is_unspecified() {
        return Some("unspecified (::)".into());
    }
    if ip.is_loopback() {
        return Some("loopback (::1)".into());
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedded("IPv4-mapped form", v4);
    }
    // IPv4-compatible (deprecated) ::a.b.c.d: judged by the embedded address.
    if s[..6] == [0; 6] {
        return embedded("IPv4-compatible form", low_v4(ip))
            .or_else(|| Some("IPv4-compatible form (deprecated, ::/96)".into()));
    }
    // NAT64 well-known prefix 64:ff9b::/96 reaches the embedded IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return embedded("NAT64 form", low_v4(ip));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some("local-use NAT64 (64:ff9b:1::/48)".into());
    }
    // 6to4 2002:V4ADDR::/48: judged by the embedded address.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2]));
        return embedded("6to4 form", v4);
    }
    let reason = match s[0] {
        0xff00..=0xffff => "multicast (ff00::/8)",
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10, deprecated)",
        0xfc00..=0xfdff => "unique local (fc00::/7)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x2001 if s[1] == 0 => "Teredo (2001::/32)",
        0x2001 if s[1] < 0x0200 => "IETF protocol assignments (2001::/23)",
        0x3fff if s[1] < 0x1000 => "documentation (3fff::/20)",
        0x2000..=0x3fff => return None,
        _ => "not global unicast (outside 2000::/3)",
    };
    Some(reason.into())
}

/// True when a port may be connected to: 80, 443, or any port from 1024 up.
pub fn port_allowed(port: u16) -> bool {
    port == 80 || port == 443 || port >= 1024
}

/// A URL's connection target after the URL-level checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IP literal (already checked against the policy).
    Ip(IpAddr, u16),
    /// A domain name still to resolve (and check) before connecting.
    Domain(String, u16),
}

/// Why a URL was refused before any connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlRefusal {
    /// Not an acceptable absolute http(s) URL.
    Invalid(String),
    /// Refused by policy.
    Denied(String),
}

/// Checks a URL's scheme, credentials, port and (for IP literals) address.
pub fn check_url(url: &Url, policy: &AddressPolicy) -> Result<Target, UrlRefusal> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefusal::Invalid(format!(
            "{url}: only http and https URLs can be fetched"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::Denied(format!(
            "{url}: URLs with credentials are refused"
        )));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| UrlRefusal::Invalid(format!("{url}: no port")))?;
    check_host(url.host(), port, policy).map_err(|e| match e {
        HostRefusal::Missing => UrlRefusal::Invalid(format!("{url}: no host")),
        HostRefusal::Denied(r) => UrlRefusal::Denied(format!("{url}: {r}")),
    })
}

/// Why a host/port pair was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRefusal {
    /// There is no host.
    Missing,
    /// Refused by policy.
    Denied(Refusal),
}

/// Checks a host and port (URL or CONNECT target); IP literals are checked at once.
pub fn check_host(
    host: Option<Host<&str>>,
    port: u16,
    policy: &AddressPolicy,
) -> Result<Target, HostRefusal> {
    if !port_allowed(port) {
        return Err(HostRefusal::Denied(Refusal(format!(
            "port {port} is refused (only 80, 443 and ports from 1024 up)"
        ))));
    }
    match host {
        None => Err(HostRefusal::Missing),
        Some(Host::Ipv4(v4)) => policy
            .check_ip(IpAddr::V4(v4))
            .map(|()| Target::Ip(IpAddr::V4(v4), port))
            .map_err(HostRefusal::Denied),
        Some(Host::Ipv6(v6)) => policy
            .check_ip(IpAddr::V6(v6))
            .map(|()| Target::Ip(IpAddr::V6(v6), port))
            .map_err(HostRefusal::Denied),
        Some(Host::Domain("")) => Err(HostRefusal::Missing),
        Some(Host::Domain(d)) => Ok(Target::Domain(d.to_ascii_lowercase(), port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        non_public_reason(text.parse().unwrap()).is_some()
    }

    #[test]
    fn refuses_non_public_ipv4() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "100.100.100.200",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn accepts_public_ipv4() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.255",
        ] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn names_metadata_endpoints() {
        for ip in ["169.254.169.254", "100.100.100.200", "fd00:ec2::254"] {
            let reason = non_public_reason(ip.parse().unwrap()).unwrap();
            assert!(reason.contains("metadata"), "{ip}: {reason}");
        }
    }

    #[test]
    fn refuses_non_public_ipv6() {
        for ip in [
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456::1",
            "fd00:ec2::254",
            "ff02::1",
            "ff05::2",
            "2001:db8::1",
            "2001::1",
            "2001:10::1",
            "3fff::1",
            "100::1",
            "64:ff9b:1::1",
            "4000::1",
            "::ffff:0:1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn judges_embedded_ipv4_forms() {
        // Mapped, compatible, NAT64 and 6to4 forms of private addresses are refused...
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::10.1.2.3",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2002:a9fe:a9fe::",
        ] {
            let reason = non_public_reason(ip.parse().unwrap());
            assert!(reason.is_some(), "{ip} should be refused");
        }
        // ...and forms of public addresses are judged as those addresses.
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
        let reason = non_public_reason("::ffff:127.0.0.1".parse().unwrap()).unwrap();
        assert!(
            reason.contains("127.0.0.1") && reason.contains("loopback"),
            "{reason}"
        );
    }

    #[test]
    fn accepts_global_ipv6() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
        ] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn dev_switch_and_test_addresses() {
        let strict = AddressPolicy::default();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(
            strict
                .check_ip(loopback)
                .unwrap_err()
                .0
                .contains("loopback")
        );
        let dev = AddressPolicy {
            allow_private_addresses: true,
            ..AddressPolicy::default()
        };
        assert!(dev.check_ip(loopback).is_ok());
        assert!(dev.check_ip("10.0.0.1".parse().unwrap()).is_ok());
        // Still refused in development: nothing is served from these.
        for ip in [
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "::ffff:0.0.0.0",
        ] {
            assert!(dev.check_ip(ip.parse().unwrap()).is_err(), "{ip}");
        }
        let test = AddressPolicy {
            public_test_addresses: vec![loopback],
            ..AddressPolicy::default()
        };
        assert!(test.check_ip(loopback).is_ok());
        assert!(test.check_ip("127.0.0.2".parse().unwrap()).is_err());
    }

    #[test]
    fn ports() {
        for port in [80, 443, 1024, 8080, 8443, 65535] {
            assert!(port_allowed(port), "{port}");
        }
        for port in [0, 1, 22, 25, 53, 110, 389, 1023] {
            assert!(!port_allowed(port), "{port}");
        }
    }

    fn url_check(text: &str) -> Result<Target, UrlRefusal> {
        check_url(&Url::parse(text).unwrap(), &AddressPolicy::default())
    }

    #[test]
    fn url_checks() {
        assert_eq!(
            url_check("https://example.com/a").unwrap(),
            Target::Domain("example.com".into(), 443)
        );
        assert_eq!(
            url_check("http://8.8.8.8:8080/").unwrap(),
            Target::Ip("8.8.8.8".parse().unwrap(), 8080)
        );
        assert!(matches!(
            url_check("ftp://example.com/"),
            Err(UrlRefusal::Invalid(_))
        ));
        assert!(matches!(
            url_check("file:///etc/passwd"),
            Err(UrlRefusal::Invalid(_))
        ));
        assert!(matches!(
            url_check("http://user:pw@example.com/"),
            Err(UrlRefusal::Denied(_))
        ));
        assert!(matches!(
            url_check("http://user@example.com/"),
            Err(UrlRefusal::Denied(_))
        ));
        assert!(matches!(
            url_check("http://example.com:22/"),
            Err(UrlRefusal::Denied(_))
        ));
        // Every spelling of loopback the URL parser accepts is an IP literal, checked directly.
        for text in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0/",
        ] {
            match url_check(text) {
                Err(UrlRefusal::Denied(reason)) => {
                    assert!(reason.contains("refused"), "{text}: {reason}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
