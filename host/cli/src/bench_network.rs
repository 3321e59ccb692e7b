//! `d402 bench network`: what the peer network costs, measured in one run on 127.0.0.1.
//!
//! 1. Offer visibility: a gateway process on the peer network is up; a worker process is
//!    started with the gateway as its bootstrap peer; the time from spawning the worker to
//!    its signed offer being listed by the gateway's `GET /network` (and, within that, the
//!    worker's own start-up until it printed its address).
//! 2. Per-task overhead: the same paid tasks (buyer client: discovery, 402, paid request,
//!    receipt), one at a time, against a gateway with a local worker (no peer network) and
//!    against a gateway whose only worker is the remote process. The difference of the
//!    medians is the network's cost per task; the local gateway is the baseline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::bench::{millis, percentiles};
use crate::processes::{Nodes, copy_installed, fund_buyer, wait_for_workers};

/// Settings of `d402 bench network`.
pub struct NetworkBench<'a> {
    /// State whose installed capabilities the nodes get.
    pub from_state: &'a Path,
    /// The capability run (a cheap one shows the network's cost best).
    pub capability: &'a str,
    /// Sequential paid tasks per gateway.
    pub tasks: usize,
}

/// Runs the benchmark and prints its figures.
pub fn run(bench: &NetworkBench<'_>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("d402-bench-network-{}", std::process::id()));
    let outcome = measure(bench, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn measure(bench: &NetworkBench<'_>, dir: &Path) -> anyhow::Result<()> {
    let state = |name: &str| -> anyhow::Result<PathBuf> {
        let state = dir.join(name).join("state");
        copy_installed(bench.from_state, &state)?;
        Ok(state)
    };
    let (local_state, remote_state, worker_state) =
        (state("local")?, state("remote")?, state("worker")?);
    let buyer = fund_buyer(&dir.join("buyer.json"), &local_state)?;
    fund_buyer(&buyer, &remote_state)?;
    let serve = ["--http-port", "0", "--capability", bench.capability];
    let mut nodes = Nodes::default();

    let local_flags: Vec<&str> = [
        "--roles",
        "gateway,worker,validator",
        "--local-workers",
        "1",
    ]
    .iter()
    .chain(&serve)
    .copied()
    .collect();
    let local = nodes.start(
        "local gateway",
        &local_state,
        &dir.join("local.log"),
        &local_flags,
    )?;
    let p2p = ["--p2p-listen", "/ip4/127.0.0.1/tcp/0"];
    let remote_flags: Vec<&str> = ["--roles", "gateway,validator"]
        .iter()
        .chain(&p2p)
        .chain(&serve)
        .copied()
        .collect();
    let remote = nodes.start(
        "remote gateway",
        &remote_state,
        &dir.join("remote.log"),
        &remote_flags,
    )?;
    let (local_url, remote_url) = (
        local.http.context("no local URL")?,
        remote.http.context("no remote URL")?,
    );
    let bootstrap = remote
        .p2p
        .first()
        .context("the gateway printed no p2p address")?
        .clone();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let spawned = Instant::now();
    let worker_flags: Vec<&str> = ["--roles", "worker", "--bootstrap", &bootstrap]
        .iter()
        .chain(&p2p)
        .copied()
        .collect();
    nodes.start(
        "worker",
        &worker_state,
        &dir.join("worker.log"),
        &worker_flags,
    )?;
    let up = spawned.elapsed();
    runtime.block_on(wait_for_workers(&remote_url, 1))?;
    let visible = spawned.elapsed();
    println!(
        "offer visibility: worker spawned → its offer listed by the gateway in {:.0} ms (worker start-up {:.0} ms, gossip {:.0} ms)",
        millis(visible),
        millis(up),
        millis(visible - up)
    );

    let key = d402_wallet::load(&buyer)?;
    let (local, remote) = runtime.block_on(async {
        let local = paid_tasks(&local_url, &key, bench.tasks, "local").await?;
        let remote = paid_tasks(&remote_url, &key, bench.tasks, "remote").await?;
        anyhow::Ok((local, remote))
    })?;
    let ((local_p50, local_p99), (remote_p50, remote_p99)) =
        (percentiles(local), percentiles(remote));
    println!(
        "{} sequential paid tasks of {} each (buyer client: discovery, 402, paid request, receipt):",
        bench.tasks, bench.capability
    );
    println!(
        "  local worker (baseline): p50 {:.2} ms, p99 {:.2} ms",
        millis(local_p50),
        millis(local_p99)
    );
    println!(
        "  remote worker process:   p50 {:.2} ms, p99 {:.2} ms",
        millis(remote_p50),
        millis(remote_p99)
    );
    println!(
        "  network overhead per task: {:+.2} ms at p50 (remote/local {:.2}x)",
        millis(remote_p50) - millis(local_p50),
        remote_p50.as_secs_f64() / local_p50.as_secs_f64()
    );
    Ok(())
}

/// Runs `count` paid tasks one at a time (after one warm-up) and returns their latencies.
async fn paid_tasks(
    gateway: &str,
    key: &d402_protocol::Keypair,
    count: usize,
    label: &str,
) -> anyhow::Result<Vec<Duration>> {
    let body = |i: usize| json!({"input": {"value": {"n": i, "label": label}, "select": ["n"]}});
    let client = d402_client::Client::new(gateway)?;
    let payer = d402_rail_simulated::SimulatedPayer::new(key.clone());
    let warm = client.run_task(&body(usize::MAX), &payer).await?;
    anyhow::ensure!(
        warm.task["status"] == "accepted",
        "the {label} gateway did not accept a task: {}",
        warm.task
    );
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let outcome = client.run_task(&body(i), &payer).await?;
        latencies.push(started.elapsed());
        anyhow::ensure!(
            outcome.task["status"] == "accepted",
            "{label} task {i} was not accepted: {}",
            outcome.task
        );
        if (i + 1) % 50 == 0 {
            eprintln!("{label}: {} of {count} tasks", i + 1);
        }
    }
    Ok(latencies)
}
