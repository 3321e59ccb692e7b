//! Test support: tiny HTTP/1.1 servers on loopback addresses that count their requests.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use d402_blobstore::BlobStore;
use d402_browser::{BrowserConfig, LiveSource};
use d402_runtime::{FetchFailure, FetchSpec, FetchedPage, PageSource, RenderMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a test server answers.
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Reads the request and never answers.
    Hang,
    /// 200 with a chunked body that never ends.
    Endless,
}

impl Reply {
    /// 200 text/html.
    pub fn html(body: impl Into<String>) -> Self {
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }

    /// A redirect to `location`.
    pub fn redirect(location: impl Into<String>) -> Self {
        Reply::Full {
            status: 302,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
        }
    }
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A running server; it stops with the test's runtime.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server on `ip` (e.g. 127.0.0.1 or 127.0.0.2), port chosen by the OS.
    pub async fn start(
        ip: &str,
        handler: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let ip: IpAddr = ip.parse().unwrap();
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                    log.lock().unwrap().push(path.clone());
                    match handler(&path) {
                        Reply::Full {
                            status,
                            headers,
                            body,
                        } => {
                            let mut out = format!(
                                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                                body.len()
                            );
                            for (k, v) in headers {
                                out.push_str(&format!("{k}: {v}\r\n"));
                            }
                            out.push_str("\r\n");
                            let _ = stream.write_all(out.as_bytes()).await;
                            let _ = stream.write_all(&body).await;
                            let _ = stream.shutdown().await;
                        }
                        Reply::Hang => {
                            let _ = stream.read(&mut buf).await;
                            std::future::pending::<()>().await;
                        }
                        Reply::Endless => {
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n").await;
                            let chunk = format!("{:x}\r\n{}\r\n", 1024, "a".repeat(1024));
                            while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                        }
                    }
                });
            }
        });
        Server { addr, requests }
    }

    /// Port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://ip:port<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Paths requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// Number of requests so far.
    pub fn hits(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Strict config (no private addresses) with `public` treated as public. Chromium may take
/// longer than the production 20 s to start when several tests launch it at once on a loaded
/// 2-core CI machine (seen once): tests allow 50 s, inside the 55 s fetch budget of [`spec`].
pub fn strict_config(public: &[&str]) -> BrowserConfig {
    BrowserConfig {
        public_test_addresses: public.iter().map(|ip| ip.parse().unwrap()).collect(),
        launch_timeout: Duration::from_secs(50),
        ..BrowserConfig::default()
    }
}

/// A source over a fresh blob store; the temp dir lives as long as the returned guard.
pub fn live_source(config: BrowserConfig) -> (LiveSource, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    (LiveSource::new(config, store).unwrap(), dir)
}

/// A fetch spec with generous limits.
pub fn spec(url: &str, render: RenderMode) -> FetchSpec {
    FetchSpec {
        url: url.to_string(),
        render,
        timeout: Duration::from_secs(55),
        max_bytes: 1 << 20,
    }
}

/// Fetches through the `PageSource` trait, as the runtime does.
pub async fn fetch(
    source: &LiveSource,
    url: &str,
    render: RenderMode,
) -> Result<FetchedPage, FetchFailure> {
    PageSource::fetch(source, spec(url, render)).await
}

/// Asserts a denial whose message mentions `needle`.
#[track_caller]
pub fn assert_denied(result: Result<FetchedPage, FetchFailure>, needle: &str) {
    match result {
        Err(FetchFailure::Denied(reason)) => assert!(
            reason.contains(needle),
            "denial {reason:?} should mention {needle:?}"
        ),
        other => panic!("expected a denial mentioning {needle:?}, got {other:?}"),
    }
}

/// Installs a test log subscriber (once).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("d402_browser=debug")
        .with_test_writer()
        .try_init();
}
