//! `d402 node` child processes on 127.0.0.1, for `d402 devnet` and `d402 bench network`:
//! preparing their state from installed capabilities, starting them, waiting for the
//! gateway to hear workers, funding a buyer, and stopping them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use d402_node::Role;
use d402_protocol::{Amount, MICROS_PER_DOLLAR};
use d402_store::StateDir;

/// Node processes, stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
#[derive(Default)]
pub struct Nodes(Vec<(String, Child)>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, child) in &self.0 {
            // SAFETY: kill(2) on a child's pid has no memory effects.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (name, child) in &mut self.0 {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("stopped {name}");
        }
    }
}

/// What a node printed when it came up.
pub struct Started {
    /// Its process id.
    pub pid: u32,
    /// Its peer-network addresses.
    pub p2p: Vec<String>,
    /// A gateway's base URL.
    pub http: Option<String>,
}

impl Nodes {
    /// Starts `d402 node --state <state> <flags>` as `name`, its log in `log`, and waits until
    /// it printed its addresses.
    pub fn start(
        &mut self,
        name: &str,
        state: &Path,
        log: &Path,
        flags: &[&str],
    ) -> anyhow::Result<Started> {
        let exe = std::env::current_exe().context("cannot find the d402 executable")?;
        let mut child = Command::new(exe)
            .arg("node")
            .arg("--state")
            .arg(state)
            .args(flags)
            .env(
                "D402_LOG",
                std::env::var("D402_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(log)
                    .with_context(|| format!("cannot create {}", log.display()))?,
            )
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let pid = child.id();
        self.0.push((name.to_string(), child));
        let mut started = Started {
            pid,
            p2p: Vec::new(),
            http: None,
        };
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if let Some(address) = line.strip_prefix("d402 node p2p address ") {
                started.p2p.push(address.to_string());
            } else if let Some(rest) = line.strip_prefix("d402 node listening on ") {
                started.http = rest.split_whitespace().next().map(str::to_string);
                return Ok(started);
            } else if line.starts_with("d402 node running") {
                return Ok(started);
            }
        }
        bail!("{name} stopped before it was up; see {}", log.display())
    }
}

/// Copies the installed capabilities of `from_state` (implementations, manifests,
/// registrations, blobs) into `state`, keeping files `state` already has.
pub fn copy_installed(from_state: &Path, state: &Path) -> anyhow::Result<()> {
    let (from_state, state) = (StateDir::new(from_state), StateDir::new(state));
    if !from_state.implementations().is_dir() {
        bail!(
            "no capabilities installed in {} (scripts/main.sh installs them)",
            from_state.root().display()
        );
    }
    for (from, to) in from_state
        .installed_dirs()
        .into_iter()
        .zip(state.installed_dirs())
    {
        if !from.is_dir() {
            continue;
        }
        std::fs::create_dir_all(&to)?;
        for entry in std::fs::read_dir(&from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_file() && !target.exists() {
                std::fs::copy(entry.path(), &target)
                    .with_context(|| format!("cannot copy {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

/// The buyer key at `path` (created if missing), topped up to $1 on the ledger of the
/// (stopped) node at `state`.
pub fn fund_buyer(path: &Path, state: &Path) -> anyhow::Result<PathBuf> {
    let key = d402_wallet::load_or_create(path)?;
    std::fs::create_dir_all(state)?;
    let store = StateDir::new(state).open_store()?;
    let account = key.public().to_string();
    let balance = store.balance(&account)?.micros();
    if balance < MICROS_PER_DOLLAR {
        store.credit(&account, Amount::from_micros(MICROS_PER_DOLLAR - balance))?;
    }
    Ok(path.to_path_buf())
}

/// The node ids of the workers whose offers `gateway` has verified.
pub async fn offered_workers(
    client: &reqwest::Client,
    gateway: &str,
) -> anyhow::Result<Vec<String>> {
    let network: serde_json::Value = client
        .get(format!("{gateway}/network"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let offers = network["nodeOffers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(offers
        .iter()
        .filter(|o| {
            o["payload"]["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == Role::Worker.as_str()))
        })
        .filter_map(|o| o["payload"]["nodeId"].as_str().map(str::to_string))
        .collect())
}

/// Waits (polling every 10 ms, up to a minute) until `gateway` has verified at least
/// `count` worker offers.
pub async fn wait_for_workers(gateway: &str, count: usize) -> anyhow::Result<Duration> {
    let client = d402_client::http_client();
    let started = Instant::now();
    loop {
        let workers = offered_workers(&client, gateway).await?.len();
        if workers >= count {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the gateway sees {workers} of {count} worker offers after a minute; see the node logs"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
