//! `d402 devnet`: a local multi-process peer network on 127.0.0.1 — a bootstrap node, a
//! gateway, N workers and M validators, each a separate `d402 node` process with its own
//! state directory under `--dir` (kept between runs, so wallets and ledgers persist). Every
//! node gets the capabilities installed in `--from-state`. The buyer key `<dir>/buyer.json`
//! is funded on the gateway's ledger. With `--rail x402-base` the gateway is paid with x402
//! on a local anvil chain instead (test USDC at the Base USDC address; the buyer's EVM key
//! `<dir>/buyer-evm.key` is funded); with `--rail x402-base-escrow` the task escrow factory
//! is deployed there too, each task is paid into its own escrow and split on chain to
//! every worker's and validator's EVM payout wallet (printed). With `--rail solana-direct`
//! or `x402-solana` a local SVM network holds USDC at its real mint and the buyer's Solana
//! keypair `<dir>/buyer-solana.json` is funded. Ctrl-C (or SIGTERM) stops every process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use d402_payment::RailId;
use d402_protocol::ExecutionMode;
use d402_rail_solana::Address as SolanaAddress;
use d402_rail_x402_evm::devchain::DevChain;
use d402_solana_devnet::SolanaDevnet;

/// One SOL, in lamports.
const LAMPORTS_PER_SOL: u64 = 1_000_000_000;
use d402_rail_x402_evm::{BASE_USDC, EvmNetwork, PrivateKeySigner, read_key_file, write_key};

use crate::processes::{Nodes, Started, copy_installed, fund_buyer, wait_for_workers};

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
    mode: ExecutionMode,
    /// DEVELOPMENT ONLY: let page fetches reach private/loopback addresses.
    #[arg(long)]
    allow_private_addresses: bool,
    /// Payment rail of the gateway: simulated (its own ledger), x402-base (a local anvil
    /// chain with a USDC-like token at the Base USDC address, a funded buyer key and the
    /// gateway's gas key under --dir), x402-base-escrow (the same chain with the task
    /// escrow factory deployed; every node gets an EVM payout wallet), solana-direct or
    /// x402-solana (a local SVM network with USDC at its real mint address and a funded
    /// buyer keypair).
    #[arg(long, default_value = "simulated")]
    rail: RailId,
    /// Port of the local chain's JSON-RPC with an x402 rail (0: any free port).
    #[arg(long, default_value_t = 8545)]
    evm_port: u16,
    /// Port of the local Solana network's JSON-RPC with a Solana rail (0: any free port).
    #[arg(long, default_value_t = 8899)]
    solana_port: u16,
}

/// Test USDC (atomic units) the devnet buyer gets on the local chain: $10.
const DEVNET_BUYER_USDC: u64 = 10_000_000;

/// A local chain: anvil, or the SVM network behind its JSON-RPC endpoint.
enum Backend {
    Evm { _anvil: DevChain },
    Solana { network: SolanaDevnet, rail: RailId },
}

/// The local chain of a devnet paid on chain, and what the gateway and buyer need.
struct LocalChain {
    /// Keeps the chain running until the devnet stops.
    backend: Backend,
    gateway_flags: Vec<String>,
    buyer_key: PathBuf,
    /// Whether every node gets its own EVM payout wallet (the escrow pays each on chain).
    pays_nodes: bool,
}

impl LocalChain {
    /// Starts anvil (chain id 8453) with the test token at the Base USDC address, creates
    /// the buyer's key (funded) and the gas key under `dir`, and the gateway's flags for
    /// `rail` (x402-base, or x402-base-escrow with the factory deployed).
    async fn start(dir: &Path, port: u16, rail: RailId) -> anyhow::Result<Self> {
        let anvil = DevChain::anvil_path(&std::env::current_dir()?)?;
        let chain = DevChain::start(&anvil, EvmNetwork::BASE.chain_id(), port)?;
        chain.install_test_usdc(BASE_USDC).await?;
        std::fs::create_dir_all(dir)?;
        let buyer_key = dir.join("buyer-evm.key");
        if !buyer_key.exists() {
            write_key(&buyer_key, &PrivateKeySigner::random())
                .with_context(|| format!("cannot write {}", buyer_key.display()))?;
        }
        let buyer = read_key_file(&buyer_key)?;
        chain
            .mint(BASE_USDC, buyer.address(), DEVNET_BUYER_USDC)
            .await?;
        let gas_key = dir.join("gas-evm.key");
        let _ = std::fs::remove_file(&gas_key);
        write_key(&gas_key, &chain.account(1))?;
        let gas_key = std::fs::canonicalize(&gas_key)?;
        let mut gateway_flags = vec![
            "--rail".into(),
            rail.as_str().into(),
            "--evm-rpc-url".into(),
            chain.rpc_url().to_string(),
            "--provider-payout-wallet".into(),
            chain.account(2).address().to_string(),
        ];
        if rail == RailId::X402BaseEscrow {
            let factory = chain.deploy_escrow_factory().await?;
            println!("task escrow factory {factory}");
            gateway_flags.extend([
                "--escrow-factory-address".into(),
                factory.to_string(),
                "--escrow-tx-key-file".into(),
                gas_key.display().to_string(),
            ]);
        } else {
            gateway_flags.extend([
                "--x402-facilitator-key-file".into(),
                gas_key.display().to_string(),
            ]);
        }
        println!(
            "local chain {} (chain id 8453): buyer {} holds $10 of test USDC",
            chain.rpc_url(),
            buyer.address()
        );
        Ok(Self {
            backend: Backend::Evm { _anvil: chain },
            gateway_flags,
            buyer_key,
            pays_nodes: rail == RailId::X402BaseEscrow,
        })
    }

    /// Starts the local SVM network with its JSON-RPC endpoint on `port`, USDC at its real
    /// mint address, and the buyer's Solana keypair under `dir` (1 SOL and $10 of USDC), for
    /// a gateway paid on `rail` (solana-direct or x402-solana).
    async fn start_solana(dir: &Path, port: u16, rail: RailId) -> anyhow::Result<Self> {
        let network = SolanaDevnet::start(port).await?;
        std::fs::create_dir_all(dir)?;
        let buyer_key = dir.join("buyer-solana.json");
        if !buyer_key.exists() {
            d402_wallet::save(&buyer_key, &d402_wallet::generate(), false)?;
        }
        let buyer: SolanaAddress = d402_wallet::load(&buyer_key)?
            .public()
            .to_string()
            .parse()?;
        network.fund_sol(&buyer, LAMPORTS_PER_SOL)?;
        network.fund_usdc(&buyer, DEVNET_BUYER_USDC)?;
        let rpc = network.rpc_url().to_string();
        println!(
            "local Solana network {rpc} (solana:localnet): buyer {buyer} holds $10 of test USDC"
        );
        Ok(Self {
            backend: Backend::Solana { network, rail },
            gateway_flags: vec![
                "--rail".into(),
                rail.as_str().into(),
                "--solana-network".into(),
                "solana:localnet".into(),
                "--solana-rpc-url".into(),
                rpc,
            ],
            buyer_key,
            pays_nodes: false,
        })
    }

    /// What to do once the gateway whose state is `state` is up: on Solana its wallet (its
    /// node key) gets SOL for the fees it pays (refunds; x402 `exact` payments) and its USDC
    /// account (an `exact` payment does not create it).
    fn gateway_started(&self, state: &Path) -> anyhow::Result<()> {
        if let Backend::Solana { network, .. } = &self.backend {
            let wallet: SolanaAddress = d402_wallet::load(&state.join("wallet.json"))?
                .public()
                .to_string()
                .parse()?;
            network.fund_sol(&wallet, LAMPORTS_PER_SOL)?;
            network.fund_usdc(&wallet, 0)?;
        }
        Ok(())
    }

    /// The buyer command paying `gateway` on this chain.
    fn buyer_command(&self, gateway: &str) -> String {
        let key = self.buyer_key.display();
        match &self.backend {
            Backend::Evm { .. } => format!(
                "d402 x402-task --gateway {gateway} --url https://example.com/ --key-file {key}"
            ),
            Backend::Solana {
                network,
                rail: RailId::X402Solana,
            } => format!(
                "d402-agent init --gateway {gateway} --rail x402-solana --key-file {key} --solana-rpc-url {} --solana-network solana:localnet, then d402-agent request --url https://example.com/",
                network.rpc_url()
            ),
            Backend::Solana { network, .. } => format!(
                "d402 solana-task --gateway {gateway} --url https://example.com/ --key {key} --rpc-url {} --network solana:localnet",
                network.rpc_url()
            ),
        }
    }

    /// The flags giving node `name` an EVM payout wallet of its own (a fresh address,
    /// printed), when the escrow pays nodes on chain.
    fn payout_wallet_flags(&self, name: &str) -> Vec<String> {
        if !self.pays_nodes {
            return Vec::new();
        }
        let wallet = PrivateKeySigner::random().address().to_string();
        println!("{name} is paid at {wallet}");
        vec!["--evm-payout-wallet".into(), wallet]
    }
}

impl DevnetArgs {
    /// Starts node `name` with its own state under `--dir`, on the peer network.
    fn start(
        &self,
        nodes: &mut Nodes,
        name: &str,
        flags: &[&str],
        bootstrap: Option<&str>,
    ) -> anyhow::Result<Started> {
        let state = self.dir.join(name).join("state");
        copy_installed(&self.from_state, &state)?;
        let mut all = vec![
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--offer-interval-seconds",
            "10",
        ];
        all.extend_from_slice(flags);
        if let Some(bootstrap) = bootstrap {
            all.extend(["--bootstrap", bootstrap]);
        }
        if self.allow_private_addresses {
            all.push("--allow-private-addresses");
        }
        let log = self.dir.join(format!("{name}.log"));
        let started = nodes.start(name, &state, &log, &all)?;
        let address = started
            .p2p
            .first()
            .with_context(|| format!("{name} printed no p2p address"))?;
        println!(
            "started {name} (pid {}) at {address} — log {}",
            started.pid,
            log.display()
        );
        Ok(started)
    }

    /// The gateway's execution flags.
    fn mode_flags(&self) -> Vec<String> {
        let fanout = self.workers.clamp(1, 3).to_string();
        match self.mode {
            ExecutionMode::Single => vec!["--mode".into(), "single".into()],
            ExecutionMode::Race => vec!["--mode".into(), "race".into(), "--fanout".into(), fanout],
            ExecutionMode::Quorum => {
                let quorum = self.workers.clamp(1, 2).to_string();
                vec![
                    "--mode".into(),
                    "quorum".into(),
                    "--fanout".into(),
                    fanout,
                    "--quorum".into(),
                    quorum,
                ]
            }
        }
    }
}

/// Runs the devnet until Ctrl-C.
pub fn devnet(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let chain = match args.rail {
        RailId::Simulated => None,
        RailId::X402Base | RailId::X402BaseEscrow => {
            Some(runtime.block_on(LocalChain::start(&args.dir, args.evm_port, args.rail))?)
        }
        RailId::SolanaDirect | RailId::X402Solana => Some(runtime.block_on(
            LocalChain::start_solana(&args.dir, args.solana_port, args.rail),
        )?),
    };
    let gateway_state = args.dir.join("gateway").join("state");
    let buyer = fund_buyer(&args.dir.join("buyer.json"), &gateway_state)?;
    let mut nodes = Nodes::default();
    let bootstrap = args.start(&mut nodes, "bootstrap", &["--roles", "bootstrap"], None)?;
    let bootstrap = bootstrap.p2p[0].clone();
    let port = args.http_port.to_string();
    let mode = args.mode_flags();
    let mut flags = vec!["--roles", "gateway,validator", "--http-port", &port];
    flags.extend(mode.iter().map(String::as_str));
    if let Some(chain) = &chain {
        flags.extend(chain.gateway_flags.iter().map(String::as_str));
    }
    let gateway = args.start(&mut nodes, "gateway", &flags, Some(&bootstrap))?;
    let gateway = gateway
        .http
        .context("the gateway printed no HTTP address")?;
    if let Some(chain) = &chain {
        chain.gateway_started(&gateway_state)?;
    }
    let roles = (0..args.workers)
        .map(|i| (format!("worker-{i}"), "worker"))
        .chain((0..args.validators).map(|i| (format!("validator-{i}"), "validator")));
    for (name, role) in roles {
        let wallet = chain
            .as_ref()
            .map_or_else(Vec::new, |c| c.payout_wallet_flags(&name));
        let mut flags = vec!["--roles", role];
        flags.extend(wallet.iter().map(String::as_str));
        args.start(&mut nodes, &name, &flags, Some(&bootstrap))?;
    }
    runtime.block_on(async {
        let waited = wait_for_workers(&gateway, args.workers as usize).await?;
        eprintln!(
            "the gateway verified {} worker offers {:.1} s after the last worker started",
            args.workers,
            waited.as_secs_f64()
        );
        println!(
            "d402 devnet ready: gateway {gateway}, {} workers, {} validators",
            args.workers, args.validators
        );
        match &chain {
            None => println!(
                "buyer: d402 http-task --gateway {gateway} --url https://example.com/ --key {}",
                buyer.display()
            ),
            Some(chain) => println!("buyer: {}", chain.buyer_command(&gateway)),
        }
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
    drop(chain);
    Ok(ExitCode::SUCCESS)
}
