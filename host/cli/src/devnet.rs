//! `d402 devnet`: a local multi-process peer network on 127.0.0.1 — a bootstrap node, a
//! gateway, N workers and M validators, each a separate `d402 node` process with its own
//! state directory under `--dir` (kept between runs, so wallets and ledgers persist). Every
//! node gets the capabilities installed in `--from-state`. The buyer key `<dir>/buyer.json`
//! is funded on the gateway's ledger. Ctrl-C (or SIGTERM) stops every process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use d402_protocol::Amount;

/// Arguments of `d402 devnet`.
#[derive(Args)]
pub struct DevnetArgs {
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: u32,
    /// Validator processes (they announce validator offers; the gateway validates its tasks).
    #[arg(long, default_value_t = 1)]
    validators: u32,
    /// Directory holding every node's state, logs and the buyer key.
    #[arg(long, default_value = "state/devnet")]
    dir: PathBuf,
    /// State directory whose installed capabilities every node gets (scripts/main.sh fills
    /// state/node).
    #[arg(long, default_value = "state/node")]
    from_state: PathBuf,
    /// The gateway's HTTP port (0: any free port).
    #[arg(long, default_value_t = 8402)]
    http_port: u16,
    /// Execution mode of the gateway: single, race or quorum (fanout up to 3 workers, quorum 2).
    #[arg(long, default_value = "quorum", value_parser = d402_node::config::parse_mode)]
    mode: d402_protocol::ExecutionMode,
    /// DEVELOPMENT ONLY: let page fetches reach private/loopback addresses.
    #[arg(long)]
    allow_private_addresses: bool,
}

/// A started node process.
struct Node {
    name: String,
    child: Child,
}

/// Every node of the devnet; stopped (SIGTERM, then SIGKILL) when dropped.
struct Nodes(Vec<Node>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for node in &self.0 {
            // SAFETY: kill(2) on a child's pid has no memory effects.
            unsafe { libc::kill(node.child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for node in &mut self.0 {
            while node.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = node.child.kill();
            let _ = node.child.wait();
            eprintln!("stopped {}", node.name);
        }
    }
}

/// What a node printed when it came up.
struct Started {
    p2p: Vec<String>,
    http: Option<String>,
}

/// Runs the devnet until Ctrl-C.
pub fn devnet(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    if !args.from_state.join("implementations").is_dir() {
        bail!(
            "no capabilities installed in {} (scripts/main.sh installs them; or pass --from-state)",
            args.from_state.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the d402 executable")?;
    let buyer = fund_buyer(&args)?;
    let mut nodes = Nodes(Vec::new());

    let bootstrap = start(
        &exe,
        &args,
        &mut nodes,
        "bootstrap",
        &["--roles", "bootstrap"],
        None,
    )?;
    let bootstrap_address = bootstrap
        .p2p
        .first()
        .context("the bootstrap node printed no address")?
        .clone();
    let fanout = args.workers.clamp(1, 3);
    let mode = match args.mode {
        d402_protocol::ExecutionMode::Single => vec!["--mode".to_string(), "single".into()],
        d402_protocol::ExecutionMode::Race => vec![
            "--mode".into(),
            "race".into(),
            "--fanout".into(),
            fanout.to_string(),
        ],
        d402_protocol::ExecutionMode::Quorum => vec![
            "--mode".into(),
            "quorum".into(),
            "--fanout".into(),
            fanout.to_string(),
            "--quorum".into(),
            fanout.min(2).to_string(),
        ],
    };
    let port = args.http_port.to_string();
    let mut gateway_flags = vec!["--roles", "gateway,validator", "--http-port", &port];
    gateway_flags.extend(mode.iter().map(String::as_str));
    let gateway = start(
        &exe,
        &args,
        &mut nodes,
        "gateway",
        &gateway_flags,
        Some(&bootstrap_address),
    )?;
    let gateway_url = gateway
        .http
        .context("the gateway printed no HTTP address")?;
    for i in 0..args.workers {
        start(
            &exe,
            &args,
            &mut nodes,
            &format!("worker-{i}"),
            &["--roles", "worker"],
            Some(&bootstrap_address),
        )?;
    }
    for i in 0..args.validators {
        start(
            &exe,
            &args,
            &mut nodes,
            &format!("validator-{i}"),
            &["--roles", "validator"],
            Some(&bootstrap_address),
        )?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        wait_for_workers(&gateway_url, args.workers as usize).await?;
        let buyer = buyer.display();
        println!(
            "d402 devnet ready: gateway {gateway_url}, {} workers, {} validators",
            args.workers, args.validators
        );
        println!(
            "buyer: d402 http-task --gateway {gateway_url} --url https://example.com/ --key {buyer}"
        );
        println!("press Ctrl-C to stop");
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        anyhow::Ok(())
    })?;
    drop(nodes);
    Ok(ExitCode::SUCCESS)
}

/// The buyer key `<dir>/buyer.json` (created if missing), topped up to $1 on the gateway's
/// ledger before the gateway starts.
fn fund_buyer(args: &DevnetArgs) -> anyhow::Result<PathBuf> {
    let path = args.dir.join("buyer.json");
    let key = d402_wallet::load_or_create(&path)?;
    let state = node_state(args, "gateway")?;
    let store = d402_node::NodeStore::open(&state.join("node.redb"))?;
    let account = key.public().to_string();
    let dollar = Amount::from_micros(d402_protocol::MICROS_PER_DOLLAR);
    let balance = store.balance(&account)?;
    if balance < dollar {
        store.credit(
            &account,
            Amount::from_micros(dollar.micros() - balance.micros()),
        )?;
    }
    Ok(path)
}

/// `<dir>/<name>/state`, with the installed capabilities of `--from-state` copied in.
fn node_state(args: &DevnetArgs, name: &str) -> anyhow::Result<PathBuf> {
    let state = args.dir.join(name).join("state");
    for part in ["implementations", "manifests", "registrations", "blobs"] {
        let from = args.from_state.join(part);
        if from.is_dir() {
            copy_missing(&from, &state.join(part))?;
        }
    }
    Ok(state)
}

/// Copies the files of `from` that `to` lacks (one level: these directories are flat).
fn copy_missing(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_file() && !target.exists() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Starts node `name` with `roles_and_flags` and waits until it printed its addresses.
fn start(
    exe: &Path,
    args: &DevnetArgs,
    nodes: &mut Nodes,
    name: &str,
    flags: &[&str],
    bootstrap: Option<&str>,
) -> anyhow::Result<Started> {
    let state = node_state(args, name)?;
    let log = args.dir.join(format!("{name}.log"));
    let mut command = Command::new(exe);
    command
        .arg("node")
        .arg("--state")
        .arg(&state)
        .args([
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--offer-interval-seconds",
            "10",
        ])
        .args(flags)
        .env(
            "D402_LOG",
            std::env::var("D402_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::piped())
        .stderr(
            std::fs::File::create(&log)
                .with_context(|| format!("cannot create {}", log.display()))?,
        );
    if let Some(bootstrap) = bootstrap {
        command.args(["--bootstrap", bootstrap]);
    }
    if args.allow_private_addresses {
        command.arg("--allow-private-addresses");
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    nodes.0.push(Node {
        name: name.to_string(),
        child,
    });
    let mut started = Started {
        p2p: Vec::new(),
        http: None,
    };
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(address) = line.strip_prefix("d402 node p2p address ") {
            started.p2p.push(address.to_string());
        } else if let Some(rest) = line.strip_prefix("d402 node listening on ") {
            started.http = rest.split_whitespace().next().map(str::to_string);
            break;
        } else if line.starts_with("d402 node running") {
            break;
        }
    }
    let pid = nodes.0.last().map(|n| n.child.id()).unwrap_or_default();
    if started.p2p.is_empty() {
        bail!("{name} did not start; see {}", log.display());
    }
    println!(
        "started {name} (pid {pid}) at {} — log {}",
        started.p2p[0],
        log.display()
    );
    Ok(started)
}

/// Waits (up to a minute) until the gateway has verified `count` worker offers.
async fn wait_for_workers(gateway: &str, count: usize) -> anyhow::Result<()> {
    let client = d402_node::client::http_client()?;
    let started = Instant::now();
    loop {
        let network: serde_json::Value = client
            .get(format!("{gateway}/network"))
            .send()
            .await?
            .json()
            .await?;
        let workers = network["nodeOffers"]
            .as_array()
            .map(|offers| {
                offers
                    .iter()
                    .filter(|o| {
                        o["payload"]["roles"]
                            .as_array()
                            .is_some_and(|r| r.iter().any(|r| r == "worker"))
                    })
                    .count()
            })
            .unwrap_or(0);
        if workers >= count {
            eprintln!(
                "gateway sees {workers} worker offers after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the gateway sees {workers} of {count} worker offers after a minute; see the logs in the devnet dir"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
