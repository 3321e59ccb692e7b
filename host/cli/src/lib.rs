//! The `d402` command line: argument parsing and one module per command group.

mod admin;
mod bench;
mod bench_gateway;
mod bench_network;
mod bench_x402;
mod buyer;
mod capability;
mod devnet;
mod escrow;
mod files;
mod node;
mod ops;
mod payouts;
mod processes;
mod release;
mod run;
mod scaffold;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// d402: a distributed execution market for paid agent work, built on HTTP 402.
#[derive(Parser)]
#[command(name = "d402", version, about)]
struct Cli {
    /// Log format on stderr: text, or json (one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "D402_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (coloured only on a terminal, never with NO_COLOR set).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create an ed25519 wallet key file and print its base58 address.
    Keygen {
        /// Where to write the key (a Solana-compatible keypair JSON file, mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Create, validate, register, verify, run and install capabilities.
    #[command(subcommand)]
    Capability(capability::CapabilityCommand),
    /// Benchmarks (figures are ratios against a baseline from the same run).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run a node (gateway, worker, validator): embedded defaults < --config FILE < environment < flags.
    Node(Box<d402_node::NodeArgs>),
    /// Fund an account on the simulated payment rail's ledger (development).
    Faucet(node::FaucetArgs),
    /// Submit a paid task to the node's worker pool (single, race or quorum), with receipts.
    Task(node::TaskArgs),
    /// Call an HTTP gateway: discovery, 402 challenge, signed payment, result and receipt.
    HttpTask(buyer::HttpTaskArgs),
    /// Pay a gateway with x402 on Base: an EIP-3009 USDC authorization signed with a real
    /// EVM key (D402_BUYER_PRIVATE_KEY or --key-file), within --max-amount.
    X402Task(buyer::X402TaskArgs),
    /// Pay a gateway with Solana USDC directly: a transfer with the request's memo, sent
    /// from a Solana keypair (--key), confirmed, then proven with `Authorization: Payment`.
    SolanaTask(buyer::SolanaTaskArgs),
    /// What the provider owes workers and validators on x402 on Base, and paying it from a
    /// payout hot key (each payout exactly once).
    #[command(subcommand)]
    Payouts(payouts::PayoutsCommand),
    /// Incident mode: pause or resume new paid tasks on a node (running or not).
    #[command(subcommand)]
    Ops(ops::OpsCommand),
    /// Inspect gateway safety state: each check against its threshold or cap; exit 0 ok,
    /// 1 warn, 2 critical, 3 unknown.
    OpsStatus(ops::StatusArgs),
    /// Run continuous safety monitoring and alert dedupe: notifies alerts as they fire,
    /// repeat and resolve (stdout JSON lines, a webhook, a command); can enter incident mode.
    OpsMonitor(ops::MonitorArgs),
    /// Balances and earnings by account (the node wallet, local workers, payees).
    Balances(admin::BalancesArgs),
    /// The node's tasks, newest first, filtered by status, capability or age.
    Tasks(admin::TasksArgs),
    /// Threshold-signed release manifests: keygen, manifest, sign.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// The Base task escrow: deploy its factory.
    #[command(subcommand)]
    Escrow(escrow::EscrowCommand),
    /// Settle and refund on chain every escrow task a stopped node decided but did not see
    /// confirmed (each exactly once); the node does the same at start.
    EscrowFinalizer(escrow::FinalizerArgs),
    /// Run a local multi-process peer network on 127.0.0.1 (bootstrap, gateway, workers,
    /// validators) until Ctrl-C.
    Devnet(devnet::DevnetArgs),
}

/// Runs the command line and maps failures to exit code 1 with the full error on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `d402 node` logs each paid task and settlement (info); other commands only warnings.
    let default_filter = if matches!(cli.command, Command::Node(_)) {
        "warn,d402=info"
    } else {
        "warn"
    };
    if let Err(error) = init_tracing(cli.log_format, default_filter) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    let outcome = match cli.command {
        Command::Keygen { out, force } => keygen(&out, force).map(|()| ExitCode::SUCCESS),
        Command::Capability(command) => capability::run(command),
        Command::Bench(command) => bench::run(command).map(|()| ExitCode::SUCCESS),
        Command::Node(args) => node::node(*args),
        Command::Faucet(args) => node::faucet(args),
        Command::Task(args) => node::task(args),
        Command::HttpTask(args) => buyer::http_task(args),
        Command::X402Task(args) => buyer::x402_task(args),
        Command::SolanaTask(args) => buyer::solana_task(args),
        Command::Payouts(command) => payouts::run(command),
        Command::Devnet(args) => devnet::devnet(args),
        Command::Escrow(command) => escrow::run(command),
        Command::Ops(command) => ops::run(command),
        Command::Release(command) => release::run(command),
        Command::OpsStatus(args) => ops::status(args),
        Command::OpsMonitor(args) => ops::monitor(args),
        Command::Balances(args) => admin::balances(args),
        Command::Tasks(args) => admin::tasks(args),
        Command::EscrowFinalizer(args) => escrow::finalizer(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `D402_LOG` (an invalid filter is an error) or
/// `default_filter`.
fn init_tracing(format: LogFormat, default_filter: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = match std::env::var("D402_LOG") {
        Ok(text) => tracing_subscriber::EnvFilter::try_new(&text).map_err(|e| {
            anyhow::anyhow!(
                "D402_LOG={text:?} is not a log filter ({e}); use a level (D402_LOG=info) or \
                 targets with levels (D402_LOG=warn,d402_node=debug)"
            )
        })?,
        Err(_) => tracing_subscriber::EnvFilter::new(default_filter),
    };
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn keygen(out: &std::path::Path, force: bool) -> anyhow::Result<()> {
    let key = d402_wallet::generate();
    d402_wallet::save(out, &key, force)?;
    println!("{}", key.public());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
