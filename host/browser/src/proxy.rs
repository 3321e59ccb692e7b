//! The policy proxy Chromium must use for every request of a rendered page.
//!
//! A small HTTP/1.1 forward proxy on 127.0.0.1: `CONNECT host:port` is tunnelled (https,
//! wss), absolute-form `http://` requests are forwarded one per connection
//! (`Connection: close`). Each target is checked and resolved by the [`CheckedResolver`] and
//! the proxy connects to the checked address itself, so DNS is pinned and a page can never
//! reach an address the policy refuses. Refusals are answered `403` with an
//! `X-D402-Denied` header and recorded, so the renderer can attribute them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

use crate::policy::{UrlRefusal, check_url};
use crate::resolve::{CheckedResolver, ResolveError};

/// Header naming why the proxy refused a request.
pub const DENIED_HEADER: &str = "x-d402-denied";

/// Largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most header lines a proxied request or response head may carry.
const MAX_HEADERS: usize = 128;

/// What the proxy saw, for attribution and tests.
#[derive(Debug, Default)]
pub struct ProxyLog {
    denied: Mutex<Vec<String>>,
}

impl ProxyLog {
    /// Reasons of every refused request, in order.
    pub fn denied(&self) -> Vec<String> {
        self.denied.lock().expect("proxy log").clone()
    }
}

/// A running policy proxy; stops (with all its connections) when dropped.
#[derive(Debug)]
pub struct PolicyProxy {
    addr: SocketAddr,
    log: Arc<ProxyLog>,
    task: JoinHandle<()>,
}

impl PolicyProxy {
    /// Starts a proxy on an ephemeral 127.0.0.1 port.
    pub async fn start(
        resolver: CheckedResolver,
        connect_timeout: Duration,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(ProxyLog::default());
        let shared = Arc::new(Shared {
            resolver,
            connect_timeout,
            log: log.clone(),
        });
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let shared = shared.clone();
                            connections.spawn(async move { shared.serve(stream).await });
                        }
                        Err(e) => tracing::warn!(error = %e, "policy proxy accept failed"),
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        tracing::debug!(%addr, "policy proxy listening");
        Ok(Self { addr, log, task })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, for Chromium's proxy setting.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the proxy refused.
    pub fn log(&self) -> &Arc<ProxyLog> {
        &self.log
    }
}

impl Drop for PolicyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    resolver: CheckedResolver,
    connect_timeout: Duration,
    log: Arc<ProxyLog>,
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Shared {
    async fn serve(&self, mut client: TcpStream) {
        let (raw, rest) = match read_head(&mut client).await {
            Ok(Some(parts)) => parts,
            Ok(None) => return,
            Err(e) => {
                let _ = respond(&mut client, 400, "Bad Request", &e, None).await;
                return;
            }
        };
        let Some(head) = parse_request(&raw) else {
            let _ = respond(
                &mut client,
                400,
                "Bad Request",
                "malformed request head",
                None,
            )
            .await;
            return;
        };
        let result = if head.method.eq_ignore_ascii_case("CONNECT") {
            self.tunnel(&mut client, &head, rest).await
        } else {
            self.forward(&mut client, &head, rest).await
        };
        if let Err(failure) = result {
            match failure {
                Failure::Denied(reason) => {
                    tracing::warn!(target = %head.target, %reason, "policy proxy refused a request");
                    self.log
                        .denied
                        .lock()
                        .expect("proxy log")
                        .push(reason.clone());
                    let _ = respond(&mut client, 403, "Forbidden", &reason, Some(&reason)).await;
                }
                Failure::Upstream(reason) => {
                    tracing::debug!(target = %head.target, %reason, "policy proxy upstream failure");
                    let _ = respond(&mut client, 502, "Bad Gateway", &reason, None).await;
                }
                Failure::Done => {}
            }
        }
    }

    /// Resolves, checks and connects to `host:port`.
    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Failure> {
        let addrs = self
            .resolver
            .resolve_host_port(host, port)
            .await
            .map_err(|e| match e {
                ResolveError::Denied(m) => Failure::Denied(m),
                ResolveError::NotFound(m) => Failure::Upstream(m),
            })?;
        let mut last = String::from("no address");
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: connect timed out"),
            }
        }
        Err(Failure::Upstream(format!(
            "cannot connect to {host}:{port}: {last}"
        )))
    }

    async fn tunnel(
        &self,
        client: &mut TcpStream,
        head: &Head,
        rest: Vec<u8>,
    ) -> Result<(), Failure> {
        let (host, port) = split_authority(&head.target)
            .ok_or_else(|| Failure::Denied(format!("bad CONNECT target {:?}", head.target)))?;
        let mut upstream = self.connect(&host, port).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .map_err(|_| Failure::Done)?;
        if !rest.is_empty() {
            upstream.write_all(&rest).await.map_err(|_| Failure::Done)?;
        }
        let _ = tokio::io::copy_bidirectional(client, &mut upstream).await;
        Ok(())
    }

    async fn forward(
        &self,
        client: &mut TcpStream,
        head: &Head,
        rest: Vec<u8>,
    ) -> Result<(), Failure> {
        let url = Url::parse(&head.target)
            .map_err(|_| Failure::Denied(format!("not an absolute URL: {:?}", head.target)))?;
        if url.scheme() != "http" {
            return Err(Failure::Denied(format!(
                "{url}: only http is forwarded (https goes through CONNECT)"
            )));
        }
        check_url(&url, self.resolver.policy()).map_err(|e| match e {
            UrlRefusal::Invalid(m) | UrlRefusal::Denied(m) => Failure::Denied(m),
        })?;
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let upstream = self.connect(&host, port).await?;
        let mut path = url.path().to_string();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        let mut out = format!("{} {} {}\r\n", head.method, path, head.version);
        for (name, value) in &head.headers {
            if !is_hop_header(name) {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        let (mut up_read, mut up_write) = upstream.into_split();
        let (mut client_read, mut client_write) = client.split();
        up_write
            .write_all(out.as_bytes())
            .await
            .map_err(|e| Failure::Upstream(e.to_string()))?;
        up_write
            .write_all(&rest)
            .await
            .map_err(|e| Failure::Upstream(e.to_string()))?;
        // The request body (if any) flows on while the response is relayed.
        let body = async move {
            let _ = tokio::io::copy(&mut client_read, &mut up_write).await;
            std::future::pending::<()>().await
        };
        let response = async {
            let (raw, rest) = match read_head(&mut up_read).await {
                Ok(Some(parts)) => parts,
                Ok(None) => {
                    return Err(Failure::Upstream(
                        "upstream closed without a response".into(),
                    ));
                }
                Err(e) => return Err(Failure::Upstream(e)),
            };
            let head = rewrite_response_head(&raw)
                .ok_or_else(|| Failure::Upstream("malformed response head".into()))?;
            client_write
                .write_all(head.as_bytes())
                .await
                .map_err(|_| Failure::Done)?;
            client_write
                .write_all(&rest)
                .await
                .map_err(|_| Failure::Done)?;
            let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
            Ok(())
        };
        tokio::select! {
            result = response => result,
            () = body => Ok(()),
        }
    }
}

/// Why a proxied request ended early.
enum Failure {
    Denied(String),
    Upstream(String),
    /// The client went away; nothing to answer.
    Done,
}

/// Reads until the end of an HTTP head; returns the head and any bytes read past it.
async fn read_head<R: AsyncReadExt + Unpin>(
    stream: &mut R,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, String> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("connection closed inside the head".into())
            };
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let end = searched_from + end + 4;
            let rest = buf.split_off(end);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > MAX_HEAD {
            return Err("head too large".into());
        }
    }
}

/// Parses a complete request head (with `httparse`); `None` when it is not valid HTTP/1.x.
fn parse_request(raw: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if !request.parse(raw).ok()?.is_complete() {
        return None;
    }
    Some(Head {
        method: request.method?.to_string(),
        target: request.path?.to_string(),
        version: format!("HTTP/1.{}", request.version?),
        headers: request
            .headers
            .iter()
            .map(|h| Some((h.name.to_string(), header_text(h)?.to_string())))
            .collect::<Option<Vec<_>>>()?,
    })
}

/// The response head with connection management replaced by `Connection: close`.
fn rewrite_response_head(raw: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    if !response.parse(raw).ok()?.is_complete() {
        return None;
    }
    let mut out = format!(
        "HTTP/1.{} {} {}\r\n",
        response.version?,
        response.code?,
        response.reason.unwrap_or_default()
    );
    for header in response.headers.iter().filter(|h| !is_hop_header(h.name)) {
        out.push_str(&format!("{}: {}\r\n", header.name, header_text(header)?));
    }
    out.push_str("Connection: close\r\n\r\n");
    Some(out)
}

/// A header value as text (visible ASCII and spaces; anything else refuses the head).
fn header_text<'a>(header: &httparse::Header<'a>) -> Option<&'a str> {
    std::str::from_utf8(header.value).ok().map(str::trim)
}

fn is_hop_header(name: &str) -> bool {
    [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Splits `host:port` / `[v6]:port`.
fn split_authority(authority: &str) -> Option<(String, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

async fn respond(
    client: &mut TcpStream,
    code: u16,
    reason: &str,
    body: &str,
    denied: Option<&str>,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(why) = denied {
        let clean: String = why
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        head.push_str(&format!("{DENIED_HEADER}: {clean}\r\n"));
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let head = parse_request(b"GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\nProxy-Connection: keep-alive\r\n\r\n").unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("GET", "http://a.example/x?y")
        );
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.version, "HTTP/1.1");
        assert_eq!(
            head.headers[1],
            ("Proxy-Connection".into(), "keep-alive".into())
        );
        assert!(parse_request(b"GET /x\r\n\r\n").is_none());
        assert!(parse_request(b"GET /x HTTP/1.1\r\nNo-Colon\r\n\r\n").is_none());
        assert!(
            parse_request(b"GET /x HTTP/1.1\r\nHost : a\r\n\r\n").is_none(),
            "a space before the colon is refused, not read as another header"
        );
        assert!(
            parse_request(b"GET /x HTTP/1.1\r\nHost: a\r\n").is_none(),
            "incomplete"
        );
        let many = format!(
            "GET /x HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(parse_request(many.as_bytes()).is_none(), "too many headers");
        assert_eq!(split_authority("[::1]:443"), Some(("[::1]".into(), 443)));
        assert_eq!(
            split_authority("example.com:8443"),
            Some(("example.com".into(), 8443))
        );
        assert_eq!(split_authority("example.com"), None);
        let rewritten = rewrite_response_head(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n").unwrap();
        assert_eq!(
            rewritten,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
    }
}
