//! `d402 bench x402`: what paying with x402 on Base costs, on a local anvil chain, against
//! the simulated rail measured in the same run:
//! - verification per payment: the simulated rail's `authorize` (the baseline), the EIP-712
//!   signer recovery alone, and the x402 rail's `authorize` (recovery plus balance, nonce
//!   state and a simulated transfer read over JSON-RPC);
//! - paid tasks per second through a gateway over HTTP: `--rail x402-base` (each accepted
//!   task settled by an on-chain transaction before it answers) and `--rail
//!   x402-base-escrow` (each payment moved into its own escrow before the work, the split
//!   paid by the contract after it: two transactions per task) against `--rail simulated`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use d402_node::{Gateway, NodeConfig};
use d402_payment::x402::{PaymentPayload, PaymentRequirements};
use d402_payment::{Expectation, Payer, PaymentRail, Purchase, RailId};
use d402_protocol::{Amount, Keypair, Timestamp};
use d402_rail_simulated::{SIMULATED_NETWORK, SimulatedPayer, SimulatedRail};
use d402_rail_x402_evm::devchain::DevChain;
use d402_rail_x402_evm::{
    BASE_USDC, EvmNetwork, EvmPayer, ExactEvmPayload, PrivateKeySigner, RailConfig, TokenDomain,
    USDC_DOMAIN_NAME, USDC_DOMAIN_VERSION, X402EvmRail, write_key,
};
use serde_json::{Value, json};

use crate::bench::{micros, millis, percentiles};
use crate::bench_gateway::{Sample, drive, install_bench_capability, paid_posts};

/// What `d402 bench x402` measures.
pub struct X402Bench<'a> {
    /// The trivial capability's manifest.
    pub manifest: &'a Path,
    /// Its component.
    pub wasm: &'a Path,
    /// Payments verified per rail.
    pub verifications: u32,
    /// Paid tasks sent per gateway.
    pub tasks: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// Runs the benchmark and prints its figures.
pub fn run(bench: &X402Bench<'_>) -> anyhow::Result<()> {
    let anvil = DevChain::anvil_path(&std::env::current_dir()?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let chain = DevChain::start(&anvil, EvmNetwork::BASE.chain_id(), 0)?;
        chain.install_test_usdc(BASE_USDC).await?;
        let buyer = PrivateKeySigner::random();
        chain.mint(BASE_USDC, buyer.address(), 1_000_000_000).await?;
        let (simulated, recover, x402) = verification(bench, &chain, &buyer).await?;
        println!(
            "d402 bench x402: anvil on 127.0.0.1 (chain id 8453), client, gateway and chain share this machine"
        );
        println!("  verification per payment, mean of {}:", bench.verifications);
        for (name, cost) in [
            ("simulated rail authorize (baseline)", simulated),
            ("EIP-712 signer recovery alone", recover),
            ("x402 rail authorize (recovery + 3 RPC reads)", x402),
        ] {
            println!("    {name:<46} {:>9.1} µs", micros(cost));
        }
        println!(
            "    x402 / simulated: {:.1}",
            x402.as_secs_f64() / simulated.as_secs_f64()
        );
        let simulated = tasks_per_second(bench, &chain, &buyer, RailId::Simulated).await?;
        let x402 = tasks_per_second(bench, &chain, &buyer, RailId::X402Base).await?;
        let escrow = tasks_per_second(bench, &chain, &buyer, RailId::X402BaseEscrow).await?;
        println!(
            "  paid tasks through a gateway: {} per rail, {} in flight",
            bench.tasks, bench.concurrency
        );
        let rate = |s: &Sample| bench.tasks as f64 / s.wall.as_secs_f64();
        for (name, sample) in [
            ("--rail simulated (baseline)", &simulated),
            ("--rail x402-base, settled on chain", &x402),
            ("--rail x402-base-escrow, fund + split", &escrow),
        ] {
            let (p50, p99) = percentiles(sample.latencies.clone());
            println!(
                "    {name:<36} {:>8.0} /s   p50 {:>7.2} ms   p99 {:>7.2} ms",
                rate(sample),
                millis(p50),
                millis(p99)
            );
        }
        println!(
            "    x402 throughput / simulated throughput: {:.3}; escrow / simulated: {:.3}",
            rate(&x402) / rate(&simulated),
            rate(&escrow) / rate(&simulated)
        );
        anyhow::Ok(())
    })
}

/// Mean cost of authorizing one fresh payment on each rail (sequential, nothing settled).
async fn verification(
    bench: &X402Bench<'_>,
    chain: &DevChain,
    buyer: &PrivateKeySigner,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let price = Amount::from_micros(100);
    let expected = |binding| Expectation {
        price,
        binding,
        now: Timestamp::now(),
        max_timeout_seconds: 300,
    };
    let body = json!({"input": {}});
    let binding = d402_payment::request_binding(&body);
    let purchase = Purchase {
        resource: None,
        body: &body,
        now: Timestamp::now(),
    };
    let n = bench.verifications;

    let key = Keypair::from_seed(&rand::random());
    let simulated = SimulatedRail::new(SIMULATED_NETWORK, key.public().into());
    let payer = SimulatedPayer::new(Keypair::from_seed(&rand::random()));
    let requirements = simulated.requirements(price, 300);
    let payments = sign_all(&payer, &requirements, &purchase, n).await?;
    let started = Instant::now();
    for payment in &payments {
        simulated.authorize(payment, &expected(&binding)).await?;
    }
    let simulated_cost = started.elapsed() / n;

    let rail = x402_rail(chain, PrivateKeySigner::random().address());
    let payer = EvmPayer::new(buyer.clone(), vec![(EvmNetwork::BASE, BASE_USDC)], u64::MAX);
    let requirements = rail.requirements(price, 300);
    let payments = sign_all(&payer, &requirements, &purchase, n).await?;
    let domain = TokenDomain {
        name: USDC_DOMAIN_NAME.into(),
        version: USDC_DOMAIN_VERSION.into(),
        chain_id: EvmNetwork::BASE.chain_id(),
        token: BASE_USDC,
    };
    let decoded: Vec<ExactEvmPayload> = payments
        .iter()
        .map(|p| p.typed())
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    for payment in &decoded {
        payment.verify_signer(&domain)?;
    }
    let recover = started.elapsed() / n;
    let started = Instant::now();
    for payment in &payments {
        rail.authorize(payment, &expected(&binding)).await?;
    }
    let x402 = started.elapsed() / n;
    Ok((simulated_cost, recover, x402))
}

async fn sign_all(
    payer: &dyn Payer,
    requirements: &PaymentRequirements,
    purchase: &Purchase<'_>,
    n: u32,
) -> anyhow::Result<Vec<PaymentPayload>> {
    let mut payments = Vec::with_capacity(n as usize);
    for _ in 0..n {
        payments.push(payer.pay(requirements, purchase).await?);
    }
    Ok(payments)
}

fn x402_rail(chain: &DevChain, pay_to: d402_rail_x402_evm::Address) -> X402EvmRail {
    X402EvmRail::connect(
        RailConfig::base_usdc(pay_to),
        chain.rpc_url(),
        chain.account(1),
    )
}

/// Paid tasks through a gateway on `rail` over HTTP, payments signed beforehand.
async fn tasks_per_second(
    bench: &X402Bench<'_>,
    chain: &DevChain,
    buyer: &PrivateKeySigner,
    rail: RailId,
) -> anyhow::Result<Sample> {
    let state = std::env::temp_dir().join(format!("d402-bench-x402-{rail}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    install_bench_capability(bench.manifest, bench.wasm, &state)?;
    let mut config = NodeConfig::default();
    config.node.state = state.clone();
    config.node.capability = "util.json_transform@1".into();
    config.http.port = 0;
    config.rails.accepted = vec![rail];
    if rail != RailId::Simulated {
        let key_file = state.join("gas.key");
        write_key(&key_file, &chain.account(1))?;
        config.x402.evm_rpc_url = Some(chain.rpc_url().to_string());
        config.x402.provider_payout_wallet = Some(chain.account(2).address().to_string());
        if rail == RailId::X402BaseEscrow {
            config.x402.escrow_factory_address =
                Some(chain.deploy_escrow_factory().await?.to_string());
            config.x402.escrow_tx_key_file = Some(key_file);
        } else {
            config.x402.facilitator_key_file = Some(key_file);
        }
    }
    let gateway = Gateway::open(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(d402_node::http::serve_on(listener, gateway.clone()));
    let create = format!("{base}/tasks");
    let probe = json!({"input": {"value": {}, "select": []}});
    let client = d402_client::Client::new(&base)?;
    let mut challenge = client.challenge(&create, &probe).await?;
    let simulated_buyer = Keypair::from_seed(&rand::random());
    let price = gateway.catalog().default_capability().price;
    gateway.store().credit(
        &simulated_buyer.public().to_string(),
        Amount::from_micros(price.micros() * bench.tasks as u64),
    )?;
    let payer: Box<dyn Payer> = match rail {
        RailId::Simulated => Box::new(SimulatedPayer::new(simulated_buyer)),
        _ => Box::new(EvmPayer::new(
            buyer.clone(),
            vec![(EvmNetwork::BASE, BASE_USDC)],
            u64::MAX,
        )),
    };
    eprintln!(
        "bench x402: signing {} payments for --rail {rail}",
        bench.tasks
    );
    let mut requests: Vec<(Value, PaymentPayload)> = Vec::with_capacity(bench.tasks);
    for i in 0..bench.tasks {
        if rail == RailId::X402BaseEscrow {
            // An escrow per task: each payment answers a challenge of its own.
            challenge = client.challenge(&create, &probe).await?;
        }
        let body = json!({"input": {"value": {"k": i}, "select": ["k"]}});
        let purchase = Purchase {
            resource: None,
            body: &body,
            now: Timestamp::now(),
        };
        let payment = payer.pay(&challenge.accepts[0], &purchase).await?;
        requests.push((body, payment));
    }
    eprintln!("bench x402: paid tasks on --rail {rail}");
    let posts = paid_posts(&d402_client::http_client(), &create, &requests);
    let sample = drive(bench.concurrency, posts)
        .await
        .with_context(|| format!("paid tasks on --rail {rail}"))?;
    let _ = std::fs::remove_dir_all(&state);
    Ok(sample)
}
