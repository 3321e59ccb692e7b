//! `d402 bench gateway`: paid tasks per second through the whole gateway path (HTTP, 402
//! payment verification, durable admission, sandboxed run, signed claim, validation,
//! settlement with durable receipts) against 127.0.0.1, with `GET /healthz` on the same
//! server and client as the baseline, and the cost of each stage measured alone.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use d402_node::{Gateway, NodeConfig};
use d402_payment::Purchase;
use d402_payment::x402::{PaymentPayload, encode_header, headers};
use d402_protocol::{Amount, ContentId, Keypair, Signed, Timestamp};
use d402_rail_simulated::sign_payment;
use d402_runtime::{Runtime, RuntimeConfig, TaskInfo};
use d402_store::NodeStore;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::bench::{micros, millis, percentiles};
use crate::files::{read_bytes, read_manifest};

/// What `d402 bench gateway` measures.
pub struct GatewayBench<'a> {
    /// The trivial capability's manifest.
    pub manifest: &'a Path,
    /// Its component.
    pub wasm: &'a Path,
    /// Paid tasks sent (and as many baseline requests).
    pub tasks: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// Runs the benchmark and prints its figures.
pub fn run(bench: &GatewayBench<'_>) -> anyhow::Result<()> {
    let state = std::env::temp_dir().join(format!("d402-bench-gateway-{}", std::process::id()));
    let (manifest, bytes) = install_bench_capability(bench.manifest, bench.wasm, &state)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let measured = tokio.block_on(async {
        let (baseline, paid, settled) = measure(bench, &state).await?;
        let stages = stage_costs(&manifest, &bytes, &state, &settled).await?;
        anyhow::Ok((baseline, paid, stages))
    });
    let _ = std::fs::remove_dir_all(&state);
    let (baseline, paid, stages) = measured?;
    let rate = |s: &Sample| bench.tasks as f64 / s.wall.as_secs_f64();
    println!(
        "d402 bench gateway: {} requests per path, {} in flight, client and server share this machine",
        bench.tasks, bench.concurrency
    );
    for (name, sample) in [
        ("GET /healthz (baseline)", &baseline),
        ("paid POST /tasks, durable", &paid),
    ] {
        let (p50, p99) = percentiles(sample.latencies.clone());
        println!(
            "  {name:<28} {:>8.0} /s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            rate(sample),
            millis(p50),
            millis(p99)
        );
    }
    println!(
        "  paid throughput / baseline throughput: {:.3}",
        rate(&paid) / rate(&baseline)
    );
    println!("  where a paid task's time goes (each stage alone, per task):");
    for (stage, cost) in stages {
        println!("    {stage:<44} {:>8.1} µs", micros(cost));
    }
    Ok(())
}

/// Installs the capability at `manifest` + `wasm` into a fresh node state `state`, packaged
/// by a throwaway publisher; returns the manifest (its artifact CID set) and the component.
pub(crate) fn install_bench_capability(
    manifest: &Path,
    wasm: &Path,
    state: &Path,
) -> anyhow::Result<(d402_protocol::CapabilityManifest, Vec<u8>)> {
    let bytes =
        read_bytes(wasm).context("build the components first: scripts/build-capabilities.sh")?;
    let mut manifest = read_manifest(manifest)?;
    manifest.runtime.artifact_cid = Some(ContentId::of_bytes(&bytes));
    let publisher = Keypair::from_seed(&rand::random());
    let package =
        d402_node::installed::create_package(&manifest, &bytes, &publisher, Timestamp::now())?;
    d402_node::installed::install_package(state, &package, &manifest, &bytes, &[])?;
    Ok((manifest, bytes))
}

/// The wall time of a batch of requests and each one's latency.
pub(crate) struct Sample {
    /// From the first request sent to the last answer.
    pub wall: Duration,
    /// Each request's latency.
    pub latencies: Vec<Duration>,
}

/// One settled task as the store holds it: the task record and its receipts.
struct SettledTask {
    record: d402_store::TaskRecord,
    receipts: d402_store::Receipts,
}

async fn measure(
    bench: &GatewayBench<'_>,
    state: &Path,
) -> anyhow::Result<(Sample, Sample, SettledTask)> {
    let mut config = NodeConfig::default();
    config.node.state = state.to_path_buf();
    config.node.capability = "util.json_transform@1".into();
    config.http.port = 0;
    let gateway = Gateway::open(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = gateway.clone();
    tokio::spawn(async move {
        if let Err(e) = d402_node::http::serve_on(listener, server).await {
            tracing::error!(error = %e, "bench server stopped");
        }
    });
    let buyer = Keypair::from_seed(&rand::random());
    let price = gateway.catalog().default_capability().price;
    gateway.store().credit(
        &buyer.public().to_string(),
        Amount::from_micros(price.micros() * bench.tasks as u64),
    )?;
    let client = d402_client::http_client();
    let create = format!("{base}/tasks");

    let probe = json!({"input": {"value": {}, "select": []}});
    let challenge = d402_client::Client::new(&base)?
        .challenge(&create, &probe)
        .await?;
    eprintln!("bench gateway: signing {} payments", bench.tasks);
    let requests: Vec<(Value, PaymentPayload)> = (0..bench.tasks)
        .map(|i| {
            let body = json!({"input": {"value": {"k": i}, "select": ["k"]}});
            let purchase = Purchase {
                resource: None,
                body: &body,
                now: Timestamp::now(),
            };
            let payment = sign_payment(&challenge.accepts[0], &purchase, &buyer)?.erased();
            Ok((body, payment))
        })
        .collect::<anyhow::Result<_>>()?;

    eprintln!("bench gateway: baseline");
    let health = format!("{base}/healthz");
    let baseline = drive(
        bench.concurrency,
        (0..bench.tasks).map(|_| client.get(&health)).collect(),
    )
    .await?;
    eprintln!("bench gateway: paid tasks");
    let paid = drive(bench.concurrency, paid_posts(&client, &create, &requests)).await?;
    let spent = Amount::from_micros(price.micros() * bench.tasks as u64);
    let left = gateway.store().balance(&buyer.public().to_string())?;
    if left.micros() != 0 {
        bail!("the buyer should have spent {spent:?} exactly; {left:?} is left");
    }
    let task_id = gateway
        .rails()
        .for_payment(&requests[0].1)?
        .identify(&requests[0].1)?
        .task_id();
    let record = gateway
        .store()
        .task(&task_id)?
        .context("the first task is stored")?;
    let receipts = gateway
        .store()
        .receipts(&task_id)?
        .context("the first task has receipts")?;
    Ok((baseline, paid, SettledTask { record, receipts }))
}

/// `POST url` of each body with its payment in `PAYMENT-SIGNATURE`.
pub(crate) fn paid_posts(
    client: &reqwest::Client,
    url: &str,
    requests: &[(Value, PaymentPayload)],
) -> Vec<reqwest::RequestBuilder> {
    requests
        .iter()
        .map(|(body, payment)| {
            client
                .post(url)
                .header(headers::PAYMENT_SIGNATURE, encode_header(payment))
                .json(body)
        })
        .collect()
}

/// Sends `requests` with at most `concurrency` in flight; every response must be 200.
pub(crate) async fn drive(
    concurrency: usize,
    requests: Vec<reqwest::RequestBuilder>,
) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let mut pending = requests.into_iter();
    let mut running = JoinSet::new();
    let mut latencies = Vec::new();
    let spawn = |running: &mut JoinSet<anyhow::Result<Duration>>,
                 request: reqwest::RequestBuilder| {
        running.spawn(async move {
            let sent = Instant::now();
            let response = request.send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            if status != 200 {
                bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
            }
            Ok(sent.elapsed())
        });
    };
    for request in pending.by_ref().take(concurrency) {
        spawn(&mut running, request);
    }
    while let Some(done) = running.join_next().await {
        latencies.push(done??);
        if let Some(request) = pending.next() {
            spawn(&mut running, request);
        }
    }
    Ok(Sample {
        wall: started.elapsed(),
        latencies,
    })
}

/// Each stage of a paid task measured alone, as the mean of many repetitions.
async fn stage_costs(
    manifest: &d402_protocol::CapabilityManifest,
    bytes: &[u8],
    state: &Path,
    settled: &SettledTask,
) -> anyhow::Result<Vec<(String, Duration)>> {
    const N: u32 = 2_000;
    // How often each stage ran for the first settled task, counted from what it stored: the
    // intent, one lease and one claim per claim, the validation and settlement receipts and
    // the reputation events are signed; the payment and each claim are verified.
    let claims = settled.receipts.claims.len() as u32;
    let signatures = 1 + 2 * claims + 2 + settled.receipts.reputation.len() as u32;
    let verifications = 1 + claims;
    let mean = |total: Duration, n: u32| total / n;
    let key = Keypair::from_seed(&rand::random());
    let payload = json!({"taskId": "task:x", "value": [1, 2, 3]});
    let started = Instant::now();
    let mut last = None;
    for _ in 0..N {
        last = Some(Signed::sign(
            d402_protocol::ReputationEvent {
                subject: key.public(),
                kind: d402_protocol::ReputationKind::Accuracy,
                delta: 1,
                task_id: Some(payload["taskId"].as_str().unwrap_or_default().into()),
                reason: "bench".into(),
                issuer: key.public(),
                issued_at: Timestamp::now(),
            },
            &key,
        )?);
    }
    let sign = mean(started.elapsed(), N);
    let envelope = last.context("signed")?;
    let started = Instant::now();
    for _ in 0..N {
        envelope.verify()?;
    }
    let verify = mean(started.elapsed(), N);

    let runtime = Runtime::new(RuntimeConfig::default())?;
    let capability = runtime.load(manifest, bytes)?;
    let input = json!({"value": {"k": 1}, "select": ["k"]});
    let task = TaskInfo {
        task_id: "task:bench".into(),
    };
    let started = Instant::now();
    for _ in 0..N {
        runtime
            .run(&capability, &task, &input, None)
            .await
            .map_err(|f| anyhow::anyhow!("{:?}", f.error))?;
    }
    let run = mean(started.elapsed(), N);

    let store = NodeStore::open(&state.join("stage-costs.redb"))?;
    let commits = N / 4;
    let started = Instant::now();
    for i in 0..commits {
        store.credit(&format!("account-{i}"), Amount::from_micros(1))?;
    }
    let commit = mean(started.elapsed(), commits);

    // The store encodes the record at admission and again with the receipts at settlement.
    let started = Instant::now();
    for _ in 0..N {
        std::hint::black_box(serde_json::to_vec(&settled.record)?);
        std::hint::black_box(serde_json::to_vec(&settled.record)?);
        std::hint::black_box(serde_json::to_vec(&settled.receipts)?);
    }
    let encode = mean(started.elapsed(), N);
    let (record, receipts) = (
        serde_json::to_vec(&settled.record)?,
        serde_json::to_vec(&settled.receipts)?,
    );
    let started = Instant::now();
    for _ in 0..N {
        std::hint::black_box(serde_json::from_slice::<d402_store::TaskRecord>(&record)?);
        std::hint::black_box(serde_json::from_slice::<d402_store::Receipts>(&receipts)?);
    }
    let decode = mean(started.elapsed(), N);
    Ok(vec![
        (
            "JSON encode for the store (record twice, receipts once)".into(),
            encode,
        ),
        (
            "JSON decode of a record + receipts (replays and reads only)".into(),
            decode,
        ),
        (
            format!("ed25519 sign + RFC 8785 payload, {signatures} per task"),
            sign * signatures,
        ),
        (
            format!("ed25519 verify + RFC 8785 payload, {verifications} per task"),
            verify * verifications,
        ),
        ("sandboxed run of the capability, 1 per task".into(), run),
        (
            "one durable redb commit (under load it carries a whole batch)".into(),
            commit,
        ),
    ])
}
