//! One shared headless Chromium, launched lazily, relaunched after a crash, with a bounded
//! number of tabs.
//!
//! The process is started here (not by chromiumoxide) so the pool owns the child: a watcher
//! task notices its exit at once, and deletes the fresh profile directory only after the
//! process is gone. Chromium is started with `--proxy-server` pointing at a [`PolicyProxy`]
//! (loopback not bypassed, QUIC and WebRTC's non-proxied UDP off), so even requests outside
//! a render's own browser context pass the address policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chromiumoxide::Browser;
use chromiumoxide::error::CdpError;
use chromiumoxide::handler::HandlerConfig;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::BrowserConfig;
use crate::proxy::PolicyProxy;
use crate::resolve::CheckedResolver;

/// Chromium switches; the profile directory, proxy and debugging port are added per launch.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
    "--no-service-autorun",
    "--password-store=basic",
    "--use-mock-keychain",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,NetworkTimeServiceQuerying,AutofillServerCommunication,CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
    "--disable-quic",
    "--dns-prefetch-disable",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--proxy-bypass-list=<-loopback>",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

/// A running Chromium.
pub(crate) struct Instance {
    /// The DevTools connection.
    pub(crate) browser: Browser,
    /// `HeadlessChrome/156.0…` → `156.0…`.
    pub(crate) version: String,
    pid: Option<u32>,
    dead: watch::Receiver<bool>,
    handler: JoinHandle<()>,
    /// Dropping it kills Chromium and then deletes its profile.
    _stop: oneshot::Sender<()>,
    _backstop: PolicyProxy,
}

impl Instance {
    /// True once the process exited or the DevTools connection broke.
    pub(crate) fn is_dead(&self) -> bool {
        *self.dead.borrow()
    }

    /// Resolves when the instance dies.
    pub(crate) async fn died(&self) {
        let mut dead = self.dead.clone();
        let _ = dead.wait_for(|d| *d).await;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.handler.abort();
    }
}

/// A lazily launched, shared Chromium with at most `max_tabs` pages open at once.
pub struct BrowserPool {
    config: Arc<BrowserConfig>,
    resolver: CheckedResolver,
    tabs: Arc<Semaphore>,
    current: Mutex<Option<Arc<Instance>>>,
    launches: AtomicU64,
}

impl std::fmt::Debug for BrowserPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserPool")
            .field("chromium", &self.config.chromium_path)
            .field("launches", &self.launches())
            .finish_non_exhaustive()
    }
}

impl BrowserPool {
    /// A pool that launches `config.chromium_path` on first use; every request its pages
    /// make is checked by `resolver`.
    pub fn new(config: Arc<BrowserConfig>, resolver: CheckedResolver) -> Self {
        let tabs = Arc::new(Semaphore::new(config.max_tabs.max(1)));
        Self {
            config,
            resolver,
            tabs,
            current: Mutex::new(None),
            launches: AtomicU64::new(0),
        }
    }

    /// How many times Chromium was launched.
    pub fn launches(&self) -> u64 {
        self.launches.load(Ordering::SeqCst)
    }

    /// Process id of the running Chromium, if one is running.
    pub async fn chromium_pid(&self) -> Option<u32> {
        let current = self.current.lock().await;
        current
            .as_ref()
            .filter(|i| !i.is_dead())
            .and_then(|i| i.pid)
    }

    /// The checker every rendered request goes through.
    pub(crate) fn resolver(&self) -> &CheckedResolver {
        &self.resolver
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &BrowserConfig {
        &self.config
    }

    /// Waits for a free tab slot.
    pub(crate) async fn tab_permit(&self) -> OwnedSemaphorePermit {
        self.tabs
            .clone()
            .acquire_owned()
            .await
            .expect("the tab semaphore is never closed")
    }

    /// The running instance, launching (or relaunching after a crash) as needed.
    pub(crate) async fn instance(&self) -> Result<Arc<Instance>, String> {
        let mut current = self.current.lock().await;
        if let Some(instance) = current.as_ref() {
            if !instance.is_dead() {
                return Ok(instance.clone());
            }
            tracing::warn!("Chromium died; relaunching");
        }
        *current = None;
        let instance = Arc::new(launch(&self.config, &self.resolver).await?);
        self.launches.fetch_add(1, Ordering::SeqCst);
        *current = Some(instance.clone());
        Ok(instance)
    }

    /// Forgets `instance` if it is still the current one (after it was found broken).
    pub(crate) async fn discard(&self, instance: &Arc<Instance>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, instance)) {
            *current = None;
        }
    }
}

/// Starts Chromium with a fresh profile and connects to it.
async fn launch(config: &BrowserConfig, resolver: &CheckedResolver) -> Result<Instance, String> {
    let profile = tempfile::Builder::new()
        .prefix("d402-chromium-")
        .tempdir()
        .map_err(|e| format!("cannot create a Chromium profile directory: {e}"))?;
    let backstop = PolicyProxy::start(resolver.clone(), config.connect_timeout)
        .await
        .map_err(|e| format!("cannot start the policy proxy: {e}"))?;
    let mut command = tokio::process::Command::new(&config.chromium_path);
    command
        .args(CHROMIUM_ARGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--proxy-server={}", backstop.url()))
        .arg("about:blank")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start Chromium at {}: {e}",
            config.chromium_path.display()
        )
    })?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let ws_url = tokio::time::timeout(config.launch_timeout, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(start) = line.find("ws://") {
                return Some(line[start..].trim().to_string());
            }
            tracing::trace!(target: "chromium", "{line}");
        }
        None
    })
    .await
    .map_err(|_| format!("Chromium did not start within {:?}", config.launch_timeout))?
    .ok_or_else(|| "Chromium exited before it was ready".to_string())?;

    let (dead_tx, dead) = watch::channel(false);
    let dead_tx = Arc::new(dead_tx);
    let (stop, stopped) = oneshot::channel::<()>();
    let watcher_dead = dead_tx.clone();
    let mut process = Process {
        child,
        profile: Some(profile),
    };
    tokio::spawn(async move {
        let drain = async {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::trace!(target: "chromium", "{line}");
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            status = process.child.wait() => tracing::warn!(?status, pid, "Chromium exited"),
            _ = stopped => {
                let _ = process.child.start_kill();
                let _ = process.child.wait().await;
                tracing::debug!(pid, "Chromium stopped");
            }
            () = drain => {}
        }
        watcher_dead.send_replace(true);
        // `process` drops here: the profile is deleted now that Chromium is gone.
    });

    let handler_config = HandlerConfig {
        ignore_https_errors: false,
        request_timeout: config.launch_timeout,
        ..HandlerConfig::default()
    };
    let (browser, mut handler) = Browser::connect_with_config(ws_url, handler_config)
        .await
        .map_err(|e| format!("cannot connect to Chromium: {e}"))?;
    let handler_dead = dead_tx.clone();
    let handler = tokio::spawn(async move {
        while let Some(event) = handler.next().await {
            match event {
                Ok(()) | Err(CdpError::InvalidMessage(..)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Chromium DevTools connection failed");
                    break;
                }
            }
        }
        handler_dead.send_replace(true);
    });
    let product = browser
        .version()
        .await
        .map_err(|e| format!("cannot ask Chromium its version: {e}"))?
        .product;
    let version = product
        .split_once('/')
        .map_or(product.as_str(), |(_, v)| v)
        .to_string();
    tracing::info!(pid, %version, "Chromium launched");
    Ok(Instance {
        browser,
        version,
        pid,
        dead,
        handler,
        _stop: stop,
        _backstop: backstop,
    })
}

/// The Chromium child and its profile directory. Dropping it (also when the runtime shuts
/// down and cancels the watcher) kills the process, waits briefly for it to exit, and only
/// then deletes the profile, so Chromium cannot recreate files in a half-deleted directory.
struct Process {
    child: tokio::process::Child,
    profile: Option<tempfile::TempDir>,
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.start_kill();
            for _ in 0..200 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        drop(self.profile.take());
    }
}
