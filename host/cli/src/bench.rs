//! `d402 bench`: benchmarks that print figures as ratios against a baseline measured in the
//! same run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use d402_protocol::ContentId;
use d402_runtime::{Runtime, RuntimeConfig, TaskInfo};
use serde_json::json;

use crate::files::{read_bytes, read_manifest};

/// Benchmark subcommands.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Sandbox overhead: bare wasmtime instantiate+call vs the full d402 run path, and cold
    /// load from the compile cache vs a fresh compile.
    Sandbox {
        /// Manifest of the trivial capability.
        #[arg(long, default_value = "capabilities/json-transform/manifest.json")]
        manifest: PathBuf,
        /// Its WASM component.
        #[arg(long, default_value = "target/wasm32-wasip2/wasm/json_transform.wasm")]
        wasm: PathBuf,
        /// Calls measured per path (after warm-up).
        #[arg(long, default_value_t = 20_000)]
        iterations: u32,
        /// Loads measured per cold-load variant.
        #[arg(long, default_value_t = 5)]
        loads: u32,
    },
    /// web.page_to_markdown@1 on a corpus of saved pages: the WASM component through the
    /// full sandbox path vs the same extraction code compiled natively.
    Extract {
        /// Directory of pages: `*.html` files, or folders holding `source.html`.
        #[arg(long, default_value = "../shared/extraction-dev/readability")]
        pages: PathBuf,
        /// The capability's manifest.
        #[arg(long, default_value = "capabilities/page-to-markdown/manifest.json")]
        manifest: PathBuf,
        /// Its WASM component.
        #[arg(
            long,
            default_value = "target/wasm32-wasip2/wasm/page_to_markdown.wasm"
        )]
        wasm: PathBuf,
        /// Passes over the corpus per path.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
        /// Run the sandbox with fuel metering on (to measure what metering costs).
        #[arg(long)]
        fuel: bool,
    },
    /// Paid tasks per second through the gateway (HTTP, payment, durable receipts) on
    /// 127.0.0.1 against GET /healthz on the same server, and each stage's cost alone.
    Gateway {
        /// Manifest of the trivial capability.
        #[arg(long, default_value = "capabilities/json-transform/manifest.json")]
        manifest: PathBuf,
        /// Its WASM component.
        #[arg(long, default_value = "target/wasm32-wasip2/wasm/json_transform.wasm")]
        wasm: PathBuf,
        /// Paid tasks sent (and as many baseline requests).
        #[arg(long, default_value_t = 5_000)]
        tasks: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// x402 on Base on a local anvil chain against the simulated rail in the same run:
    /// verification cost per payment, and paid tasks per second through a gateway that
    /// settles each task on chain.
    X402 {
        /// Manifest of the trivial capability.
        #[arg(long, default_value = "capabilities/json-transform/manifest.json")]
        manifest: PathBuf,
        /// Its WASM component.
        #[arg(long, default_value = "target/wasm32-wasip2/wasm/json_transform.wasm")]
        wasm: PathBuf,
        /// Payments verified per rail.
        #[arg(long, default_value_t = 500)]
        verifications: u32,
        /// Paid tasks sent per gateway.
        #[arg(long, default_value_t = 500)]
        tasks: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// The peer network's costs on 127.0.0.1: time from starting a worker process to its
    /// offer being visible at the gateway, and per-task latency with a remote worker process
    /// against a local worker (the baseline), in one run.
    Network {
        /// State whose installed capabilities the nodes get (scripts/main.sh fills state/node).
        #[arg(long, default_value = "state/node")]
        from_state: PathBuf,
        /// The capability the tasks run.
        #[arg(long, default_value = "util.json_transform@1")]
        capability: String,
        /// Sequential paid tasks per gateway.
        #[arg(long, default_value_t = 200)]
        tasks: usize,
    },
}

/// Runs one benchmark.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Sandbox {
            manifest,
            wasm,
            iterations,
            loads,
        } => sandbox(&manifest, &wasm, iterations, loads),
        BenchCommand::Extract {
            pages,
            manifest,
            wasm,
            rounds,
            fuel,
        } => {
            let config = RuntimeConfig {
                fuel_metering: fuel,
                ..RuntimeConfig::default()
            };
            extract(&pages, &manifest, &wasm, rounds, config)
        }
        BenchCommand::Gateway {
            manifest,
            wasm,
            tasks,
            concurrency,
        } => crate::bench_gateway::run(&crate::bench_gateway::GatewayBench {
            manifest: &manifest,
            wasm: &wasm,
            tasks,
            concurrency,
        }),
        BenchCommand::X402 {
            manifest,
            wasm,
            verifications,
            tasks,
            concurrency,
        } => crate::bench_x402::run(&crate::bench_x402::X402Bench {
            manifest: &manifest,
            wasm: &wasm,
            verifications,
            tasks,
            concurrency,
        }),
        BenchCommand::Network {
            from_state,
            capability,
            tasks,
        } => crate::bench_network::run(&crate::bench_network::NetworkBench {
            from_state: &from_state,
            capability: &capability,
            tasks,
        }),
    }
}

fn sandbox(
    manifest: &std::path::Path,
    wasm: &std::path::Path,
    iterations: u32,
    loads: u32,
) -> anyhow::Result<()> {
    let bytes =
        read_bytes(wasm).context("build the components first: scripts/build-capabilities.sh")?;
    let mut manifest = read_manifest(manifest)?;
    manifest.runtime.artifact_cid = Some(ContentId::of_bytes(&bytes));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
    let capability = runtime.load(&manifest, &bytes)?;
    let input = json!({"value": {"a": 1}, "select": ["a"]});
    let input_text = input.to_string();
    let task = TaskInfo {
        task_id: "task:bench".into(),
    };

    eprintln!(
        "bench sandbox: {iterations} calls per path, {} warm-up",
        iterations / 10
    );
    let (bare, full) = tokio.block_on(async {
        for _ in 0..iterations / 10 {
            runtime
                .bare_call(&capability, &input_text)
                .await
                .expect("bare call");
            runtime
                .run(&capability, &task, &input, None)
                .await
                .expect("full run");
        }
        // Interleave the two paths so drift (thermal, other load) hits both alike.
        let mut bare = Vec::with_capacity(iterations as usize);
        let mut full = Vec::with_capacity(iterations as usize);
        for _ in 0..iterations {
            let t = Instant::now();
            runtime
                .bare_call(&capability, &input_text)
                .await
                .expect("bare call");
            bare.push(t.elapsed());
            let t = Instant::now();
            runtime
                .run(&capability, &task, &input, None)
                .await
                .expect("full run");
            full.push(t.elapsed());
        }
        (bare, full)
    });
    let (bare50, bare99) = percentiles(bare);
    let (full50, full99) = percentiles(full);
    println!(
        "warm call ({}, {} bytes of input)",
        manifest.capability_id(),
        input_text.len()
    );
    println!(
        "  bare wasmtime instantiate+call   p50 {:>8.1} µs   p99 {:>8.1} µs   (baseline)",
        micros(bare50),
        micros(bare99)
    );
    println!(
        "  full d402 run path               p50 {:>8.1} µs   p99 {:>8.1} µs   ratio p50 {:.2}x  p99 {:.2}x",
        micros(full50),
        micros(full99),
        micros(full50) / micros(bare50),
        micros(full99) / micros(bare99)
    );

    let cache_dir = tempfile_dir()?;
    let config = RuntimeConfig {
        compile_cache_dir: Some(cache_dir.clone()),
        ..RuntimeConfig::default()
    };
    let mut fresh = Vec::new();
    let mut cached = Vec::new();
    for i in 0..loads {
        let _ = std::fs::remove_dir_all(&cache_dir);
        let t = Instant::now();
        let loaded = Runtime::new(config.clone())?.load(&manifest, &bytes)?;
        fresh.push(t.elapsed());
        assert!(!loaded.from_compile_cache());
        let t = Instant::now();
        let loaded = Runtime::new(config.clone())?.load(&manifest, &bytes)?;
        cached.push(t.elapsed());
        assert!(loaded.from_compile_cache(), "load {i} missed the cache");
    }
    let _ = std::fs::remove_dir_all(&cache_dir);
    let (fresh50, _) = percentiles(fresh);
    let (cached50, _) = percentiles(cached);
    println!(
        "cold load ({} KiB component, new engine each time)",
        bytes.len() / 1024
    );
    println!(
        "  fresh compile                    p50 {:>8.1} ms   (baseline)",
        millis(fresh50)
    );
    println!(
        "  from compile cache               p50 {:>8.1} ms   ratio {:.3}x ({:.0}x faster)",
        millis(cached50),
        millis(cached50) / millis(fresh50),
        millis(fresh50) / millis(cached50)
    );
    Ok(())
}

fn load_corpus(dir: &std::path::Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let file = if path.is_dir() {
            path.join("source.html")
        } else {
            path.clone()
        };
        if file.extension().is_some_and(|e| e == "html") && file.is_file() {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            pages.push((
                format!("https://bench.example/{name}"),
                std::fs::read(&file)?,
            ));
        }
    }
    pages.sort();
    anyhow::ensure!(!pages.is_empty(), "no pages in {}", dir.display());
    Ok(pages)
}

fn extract(
    pages_dir: &std::path::Path,
    manifest: &std::path::Path,
    wasm: &std::path::Path,
    rounds: u32,
    config: RuntimeConfig,
) -> anyhow::Result<()> {
    let pages = load_corpus(pages_dir)?;
    let total_bytes: usize = pages.iter().map(|(_, body)| body.len()).sum();
    let bytes =
        read_bytes(wasm).context("build the components first: scripts/build-capabilities.sh")?;
    let mut manifest = read_manifest(manifest)?;
    manifest.runtime.artifact_cid = Some(ContentId::of_bytes(&bytes));
    let runtime = Runtime::new(config)?;
    let capability = runtime.load(&manifest, &bytes)?;
    let mut replay = d402_runtime::ReplaySource::new();
    for (url, body) in &pages {
        replay.insert_html(url, body.clone());
    }
    let replay: Arc<dyn d402_runtime::PageSource> = Arc::new(replay);
    let native_pages: Vec<page_to_markdown::Page> = pages
        .iter()
        .map(|(url, body)| page_to_markdown::Page {
            final_url: url.clone(),
            status: 200,
            content_type: "text/html".into(),
            body: body.clone(),
            rendered: false,
            snapshot_cid: ContentId::of_bytes(body).to_string(),
            snapshotter_version: "bench".into(),
            fetched_at: "1970-01-01T00:00:00.000Z".into(),
        })
        .collect();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let task = TaskInfo {
        task_id: "task:bench".into(),
    };
    eprintln!(
        "bench extract: {} pages ({:.1} MB), {rounds} rounds per path",
        pages.len(),
        total_bytes as f64 / 1e6
    );
    // The component on one page, through the full run path.
    let run_wasm = |url: &str| {
        let input = json!({"url": url});
        let replay = replay.clone();
        let (runtime, capability, task) = (&runtime, &capability, &task);
        async move { runtime.run(capability, task, &input, Some(replay)).await }
    };
    // Per round: [native, WASM]. Each round's two passes run back to back, so their ratio is
    // immune to the machine's speed drifting between rounds; the median of those is reported.
    let mut round_times = Vec::new();
    let mut differing = Vec::new();
    for round in 0..rounds {
        let mut round_time = [Duration::ZERO; 2];
        // Alternate which path runs first, so caches and drift favour neither.
        for path in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let started = Instant::now();
            if path == 0 {
                // The component's `run` also serialises its result (the SDK's `run_json`).
                for page in &native_pages {
                    let output = page_to_markdown::convert(page).map(|o| serde_json::to_string(&o));
                    let _ = std::hint::black_box(output);
                }
                round_time[0] = started.elapsed();
            } else {
                tokio.block_on(async {
                    for (url, _) in &pages {
                        let _ = run_wasm(url).await;
                    }
                });
                round_time[1] = started.elapsed();
            }
        }
        round_times.push(round_time);
    }
    // Both paths must produce the same markdown, or the comparison means nothing.
    tokio.block_on(async {
        for ((url, _), page) in pages.iter().zip(&native_pages) {
            let wasm_out = run_wasm(url).await;
            let native_out = page_to_markdown::convert(page);
            let same = match (&wasm_out, &native_out) {
                (Ok(w), Ok(n)) => w.output["markdown"] == json!(n.markdown),
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if !same {
                let wasm_error = wasm_out.as_ref().err().map(|f| f.error.to_string());
                differing.push(format!(
                    "{url} ({})",
                    wasm_error.unwrap_or_else(|| "different markdown".into())
                ));
            }
        }
    });
    let per_path = |path: usize| {
        let total: Duration = round_times.iter().map(|t| t[path]).sum();
        let secs = total.as_secs_f64() / f64::from(rounds);
        (pages.len() as f64 / secs, total_bytes as f64 / 1e6 / secs)
    };
    let (native_pps, native_mbs) = per_path(0);
    let (wasm_pps, wasm_mbs) = per_path(1);
    let mut round_ratios: Vec<f64> = round_times
        .iter()
        .map(|[native, wasm]| wasm.as_secs_f64() / native.as_secs_f64())
        .collect();
    round_ratios.sort_by(f64::total_cmp);
    println!(
        "page-to-markdown on {} pages ({} identical outputs native vs WASM)",
        pages.len(),
        pages.len() - differing.len()
    );
    for page in &differing {
        println!("  differs: {page}");
    }
    println!(
        "  native (same code, x86_64)      {native_pps:>8.1} pages/s  {native_mbs:>6.2} MB/s   (baseline)"
    );
    println!(
        "  WASM component, full run path   {wasm_pps:>8.1} pages/s  {wasm_mbs:>6.2} MB/s   time ratio {:.2}x (median of {rounds} rounds; {:.2}-{:.2}x)",
        round_ratios[round_ratios.len() / 2],
        round_ratios[0],
        round_ratios[round_ratios.len() - 1]
    );
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("d402-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(crate) fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
