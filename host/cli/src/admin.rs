//! The CLI side of a node's admin API: finding a running node's endpoint in
//! `<state>/admin.json`, calling it, and `d402 balances` / `d402 tasks`, which read a
//! running node through it and a stopped node's store directly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use d402_gateway_api::admin::{self, AccountBalance, AdminEndpoint, TaskSummary};
use d402_protocol::{Amount, Price, Timestamp};
use d402_store::{StateDir, TaskFilter, TaskStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::node::tokio;

/// A running node's admin API.
pub struct AdminClient {
    endpoint: AdminEndpoint,
    http: reqwest::Client,
}

impl AdminClient {
    /// The admin API of the node running on `state`, or `None` when no node runs there
    /// (no `admin.json`, or its process is gone).
    pub fn find(state: &Path) -> anyhow::Result<Option<Self>> {
        let dir = StateDir::new(state);
        let path = dir.admin_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let endpoint: AdminEndpoint = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a node's admin endpoint", path.display()))?;
        if !Path::new(&format!("/proc/{}", endpoint.pid)).exists() {
            return Ok(None);
        }
        Ok(Some(Self {
            endpoint,
            http: d402_client::http_client(),
        }))
    }

    /// The running node's public API base URL.
    pub fn public_url(&self) -> &str {
        &self.endpoint.public_url
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let request = self.http.get(format!("{}{path}", self.endpoint.url));
        self.send(request).await
    }

    /// `POST path` with a JSON body, decoded.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let request = self
            .http
            .post(format!("{}{path}", self.endpoint.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body)?);
        self.send(request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .bearer_auth(&self.endpoint.token)
            .send()
            .await
            .with_context(|| {
                format!(
                    "the node's admin API at {} does not answer; is the node (pid {}) still running?",
                    self.endpoint.url, self.endpoint.pid
                )
            })?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            anyhow::bail!("the node's admin API answered {status}: {message}");
        }
        serde_json::from_slice(&bytes).context("the node's admin API answered something unexpected")
    }
}

/// Arguments of `d402 balances`.
#[derive(Args)]
pub struct BalancesArgs {
    /// Node state directory (a running node is asked through its admin API).
    #[arg(long, env = "D402_STATE", default_value = "state/node")]
    state: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Prints balances and earnings by account.
pub fn balances(args: BalancesArgs) -> anyhow::Result<ExitCode> {
    let accounts: Vec<AccountBalance> = match AdminClient::find(&args.state)? {
        Some(client) => tokio()?.block_on(client.get(admin::BALANCES))?,
        None => {
            let dir = existing(&args.state)?;
            let store = dir.open_store()?;
            let node = d402_wallet::load(&dir.wallet())
                .map(|k| k.public().to_string())
                .unwrap_or_default();
            let workers: Vec<String> = (0..)
                .map(|i| dir.worker_key(i))
                .take_while(|path| path.exists())
                .filter_map(|path| d402_wallet::load(&path).ok())
                .map(|key| key.public().to_string())
                .collect();
            d402_node::admin::balances_of(&store, &node, &workers)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&accounts)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<13} {:>12} {:>12}  account", "role", "balance", "earned");
    for account in &accounts {
        println!(
            "{:<13} {:>12} {:>12}  {}",
            serde_json::to_value(account.role)?
                .as_str()
                .unwrap_or_default(),
            Price(Amount::from_micros(account.balance_micros)).to_string(),
            Price(Amount::from_micros(account.earned_micros)).to_string(),
            account.account
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `d402 tasks`.
#[derive(Args)]
pub struct TasksArgs {
    /// Node state directory (a running node is asked through its admin API).
    #[arg(long, env = "D402_STATE", default_value = "state/node")]
    state: PathBuf,
    /// Only tasks in this status: running, settling, accepted, refunding, rejected,
    /// settlement-failed.
    #[arg(long, value_parser = parse_status)]
    status: Option<TaskStatus>,
    /// Only tasks of this capability ID.
    #[arg(long)]
    capability: Option<String>,
    /// Only tasks paid in this last period, e.g. 1h, 30m, 7d.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_status(text: &str) -> Result<TaskStatus, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|_| {
        format!(
            "{text:?} is not a status: use running, settling, accepted, refunding, rejected or settlement-failed"
        )
    })
}

/// Lists tasks, newest first.
pub fn tasks(args: TasksArgs) -> anyhow::Result<ExitCode> {
    let filter = TaskFilter {
        status: args.status,
        capability: args.capability,
        since: args.since.map(|ago| {
            Timestamp::from_unix_millis(
                Timestamp::now()
                    .unix_millis()
                    .saturating_sub(ago.as_millis() as u64),
            )
        }),
        limit: Some(args.limit),
    };
    let tasks: Vec<TaskSummary> = match AdminClient::find(&args.state)? {
        Some(client) => {
            let query = serde_urlencoded(&filter)?;
            tokio()?.block_on(client.get(&format!("{}?{query}", admin::TASKS)))?
        }
        None => existing(&args.state)?
            .open_store()?
            .tasks(&filter)?
            .iter()
            .map(d402_node::admin::summary)
            .collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tasks)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<17} {:<26} {:<8} {:>10} {:<16} {:<24} task",
        "status", "capability", "mode", "price", "rail", "paid at"
    );
    for task in &tasks {
        println!(
            "{:<17} {:<26} {:<8} {:>10} {:<16} {:<24} {}",
            task.status,
            task.capability_id,
            task.mode,
            Price(Amount::from_micros(task.price_micros)).to_string(),
            task.rail,
            task.created_at,
            task.task_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The filter as a query string (`status=accepted&since=…`).
fn serde_urlencoded(filter: &TaskFilter) -> anyhow::Result<String> {
    let value = serde_json::to_value(filter)?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in value.as_object().into_iter().flatten() {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        query.append_pair(key, &text);
    }
    Ok(query.finish())
}

/// The state directory at `path`, refused when it does not exist (rather than creating an
/// empty store there).
pub fn existing(path: &Path) -> anyhow::Result<StateDir> {
    anyhow::ensure!(
        path.is_dir(),
        "state directory {} does not exist; pass --state DIR of a node (d402 node --state DIR created it)",
        path.display()
    );
    Ok(StateDir::new(path))
}
