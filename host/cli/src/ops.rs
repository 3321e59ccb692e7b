//! The operator's safety tools: `d402 ops pause|resume` (incident mode), `d402 ops-status`
//! (each safety check with a Nagios-style exit code) and `d402 ops-monitor` (the same
//! checks on an interval, as deduplicated alerts to stdout, a webhook or a command, with
//! optional automatic incident mode).
//!
//! Incident mode: while `<state>/PAUSE` exists the node answers new paid tasks with 503
//! (`incident_mode`); task reads, receipts, settlements and refunds go on. It works on a
//! running node (it reads the file per request).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use d402_ops::{Level, Monitor, Notification, Rules, Snapshot};
use d402_store::StateDir;

use crate::admin::AdminClient;
use crate::node::tokio;

/// `d402 ops` commands.
#[derive(Subcommand)]
pub enum OpsCommand {
    /// Stop taking new paid tasks (incident mode); reads, receipts, settlements and
    /// refunds continue.
    Pause {
        /// Node state directory.
        #[arg(long, env = "D402_STATE", default_value = "state/node")]
        state: PathBuf,
        /// Why, shown to buyers in the 503.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take new paid tasks again.
    Resume {
        /// Node state directory.
        #[arg(long, env = "D402_STATE", default_value = "state/node")]
        state: PathBuf,
    },
}

/// Runs a `d402 ops` command.
pub fn run(command: OpsCommand) -> anyhow::Result<ExitCode> {
    match command {
        OpsCommand::Pause { state, reason } => {
            pause(&state, &reason)?;
            eprintln!(
                "paused: {} answers new paid tasks with 503 until `d402 ops resume`",
                state.display()
            );
        }
        OpsCommand::Resume { state } => {
            let file = StateDir::new(&state).pause_file();
            match std::fs::remove_file(&file) {
                Ok(()) => eprintln!("resumed: {} takes new paid tasks", state.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("{} was not paused", state.display());
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", file.display()));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Puts the node on `state` in incident mode, saying why.
fn pause(state: &Path, reason: &str) -> anyhow::Result<()> {
    let file = StateDir::new(state).pause_file();
    std::fs::create_dir_all(state)?;
    std::fs::write(&file, reason.trim()).with_context(|| format!("cannot write {}", file.display()))
}

/// What `ops-status` and `ops-monitor` check, and on which node.
#[derive(Args)]
pub struct Checked {
    /// Node state directory (a running node is asked through its admin API; a stopped
    /// node's store is read).
    #[arg(long, env = "D402_STATE", default_value = "state/node")]
    state: PathBuf,
    /// Rules file (TOML `[[rule]]` tables) replacing the built-in rules.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
}

impl Checked {
    fn rules(&self) -> anyhow::Result<Rules> {
        match &self.rules {
            None => Ok(Rules::builtin()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Rules::parse(&text)
                    .with_context(|| format!("{} is not a rules file", path.display()))
            }
        }
    }

    /// The node's snapshot: from its admin API while it runs, from its store otherwise.
    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        match AdminClient::find(&self.state)? {
            Some(client) => tokio()?.block_on(client.get(d402_gateway_api::admin::STATUS)),
            None => Ok(d402_node::safety::offline_snapshot(
                &crate::admin::existing(&self.state)?,
            )?),
        }
    }
}

/// Arguments of `d402 ops-status`.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    checked: Checked,
    /// Print JSON (the snapshot, each check and the overall level).
    #[arg(long)]
    json: bool,
}

/// Prints every safety check; exits 0 ok, 1 warn, 2 critical, 3 unknown (the state could
/// not be read).
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rules = args.checked.rules()?;
    let snapshot = match args.checked.snapshot() {
        Ok(snapshot) => snapshot,
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"level": Level::Unknown, "error": format!("{e:#}")})
                );
            } else {
                println!("UNKNOWN: {e:#}");
            }
            return Ok(ExitCode::from(Level::Unknown.exit_code()));
        }
    };
    let checks = rules.evaluate(&snapshot);
    let level = Rules::worst(&checks);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "level": level,
                "checks": checks,
                "snapshot": snapshot,
            }))?
        );
    } else {
        println!(
            "{}: node {} ({})",
            level.as_str().to_uppercase(),
            snapshot.node_id.as_deref().unwrap_or("?"),
            if snapshot.live {
                "running"
            } else {
                "not running: read from its store"
            }
        );
        println!(
            "{:<9} {:<24} {:>14} {:>12}  on",
            "level", "check", "value", "cap"
        );
        for check in &checks {
            let labels: Vec<String> = check
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!(
                "{:<9} {:<24} {:>14} {:>12}  {}",
                check.level.as_str(),
                check.rule,
                check.value.map_or("?".into(), |v| format!("{v:.4}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()),
                check.limit.map_or("-".into(), |v| v.to_string()),
                labels.join(",")
            );
        }
        for check in checks.iter().filter(|c| c.level > Level::Ok) {
            if let Some(summary) = &check.summary {
                println!("{}: {} — {summary}", check.level.as_str(), check.rule);
            }
        }
    }
    Ok(ExitCode::from(level.exit_code()))
}

/// Arguments of `d402 ops-monitor`.
#[derive(Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    checked: Checked,
    /// Time between evaluations, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// A firing alert is notified again after this long, e.g. 4h.
    #[arg(long, default_value = "4h", value_parser = humantime::parse_duration)]
    repeat_interval: Duration,
    /// POST each notification (JSON) to this URL.
    #[arg(long, value_name = "URL")]
    webhook: Option<url::Url>,
    /// Run this program for each notification, the notification (JSON) on its stdin.
    #[arg(long, value_name = "PROGRAM")]
    command: Option<PathBuf>,
    /// Enter incident mode (`d402 ops pause`) when an alert of this level fires: critical
    /// or warn.
    #[arg(long, value_name = "LEVEL", value_parser = parse_pause_level)]
    auto_pause_on: Option<Level>,
    /// Where alerts are kept across restarts [default: <state>/ops-monitor.json].
    #[arg(long, value_name = "FILE")]
    monitor_state: Option<PathBuf>,
    /// Evaluate once and exit (for cron or a test).
    #[arg(long)]
    once: bool,
}

fn parse_pause_level(text: &str) -> Result<Level, String> {
    match text {
        "critical" => Ok(Level::Critical),
        "warn" => Ok(Level::Warn),
        _ => Err(format!("{text:?}: use critical or warn")),
    }
}

/// Evaluates the rules every interval and notifies alerts as they fire, repeat and resolve.
pub fn monitor(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let rules = args.checked.rules()?;
    let state = StateDir::new(&args.checked.state);
    let path = args
        .monitor_state
        .clone()
        .unwrap_or_else(|| state.monitor_state());
    let mut monitor = Monitor::open(path, args.repeat_interval)?;
    let runtime = tokio()?;
    let http = d402_client::http_client();
    loop {
        let snapshot = match args.checked.snapshot() {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the node's state; nothing is decided this round");
                Snapshot {
                    node_id: None,
                    live: false,
                    taken_at_ms: d402_protocol::Timestamp::now().unix_millis(),
                    measures: Vec::new(),
                }
            }
        };
        let checks = if snapshot.measures.is_empty() {
            // Unknown state: keep every alert as it is.
            Vec::new()
        } else {
            rules.evaluate(&snapshot)
        };
        let notifications = if snapshot.measures.is_empty() {
            Vec::new()
        } else {
            monitor.observe(&checks, snapshot.taken_at_ms)?
        };
        for notification in &notifications {
            runtime.block_on(notify(&args, &http, notification));
            if let Some(threshold) = args.auto_pause_on
                && notification.level >= threshold
                && notification.status == d402_ops::NotificationKind::Firing
                && !state.pause_file().exists()
            {
                let reason = format!(
                    "ops-monitor: {} is {}",
                    notification.rule,
                    notification.level.as_str()
                );
                pause(&args.checked.state, &reason)?;
                tracing::warn!(rule = %notification.rule, "incident mode entered automatically");
                eprintln!("paused: {reason} (d402 ops resume to take paid tasks again)");
            }
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(args.interval);
    }
}

/// Sends one notification to every configured sink; a failing sink is reported and the
/// others still get it.
async fn notify(args: &MonitorArgs, http: &reqwest::Client, notification: &Notification) {
    let line = serde_json::to_string(notification).expect("a notification serializes");
    println!("{line}");
    if let Some(url) = &args.webhook {
        let sent = http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(line.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(|r| r.error_for_status());
        if let Err(e) = sent {
            eprintln!("warning: webhook {url} did not take the notification: {e}");
        }
    }
    if let Some(program) = &args.command
        && let Err(e) = run_sink(program, &line)
    {
        eprintln!(
            "warning: notification command {} failed: {e:#}",
            program.display()
        );
    }
}

/// Runs `program` with `line` on its stdin and waits for it.
fn run_sink(program: &Path, line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(format!("{line}\n").as_bytes())?;
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "exited with {status}");
    Ok(())
}
