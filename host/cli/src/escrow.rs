//! `d402 escrow deploy` (the Base task escrow factory) and `d402 escrow-finalizer` (settles
//! and refunds every escrow a stopped node decided but did not finish, each exactly once).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use d402_node::gateway::ESCROW_TX_KEY_ENV;
use d402_node::{Gateway, NodeArgs};

use crate::node::tokio;

/// `d402 escrow` commands.
#[derive(Subcommand)]
pub enum EscrowCommand {
    /// Deploy the task escrow factory (contracts/src/TaskEscrow.sol) and print its address,
    /// for D402_ESCROW_FACTORY_ADDRESS. The deployer key (it pays the gas) is read from
    /// --key-file (0600) or D402_ESCROW_TX_PRIVATE_KEY.
    Deploy {
        /// The chain's JSON-RPC endpoint.
        #[arg(long, env = "D402_EVM_RPC_URL", value_name = "URL")]
        rpc_url: String,
        /// File holding the deployer key (0x hex, mode 0600); else D402_ESCROW_TX_PRIVATE_KEY.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
}

/// Arguments of `d402 escrow-finalizer`: the node's own configuration (the same flags,
/// environment and `--config` file), and how long to keep trying.
#[derive(Args)]
pub struct FinalizerArgs {
    /// The node whose decided settlements and refunds to finish (stop it first: its store
    /// is locked while it runs, and it finishes them itself at start).
    #[command(flatten)]
    node: Box<NodeArgs>,
    /// Give up after this many seconds with tasks still pending (exit 1; run it again).
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
}

/// Runs a `d402 escrow` command.
pub fn run(command: EscrowCommand) -> anyhow::Result<ExitCode> {
    let EscrowCommand::Deploy { rpc_url, key_file } = command;
    let key = d402_rail_x402_evm::load_key(key_file.as_deref(), ESCROW_TX_KEY_ENV)?;
    let rpc =
        url::Url::parse(&rpc_url).with_context(|| format!("--rpc-url {rpc_url:?} is not a URL"))?;
    eprintln!("deploying TaskEscrowFactory from {} …", key.address());
    let factory = tokio()?
        .block_on(d402_rail_x402_evm::escrow::deploy_factory(key, rpc))
        .context(
            "the factory was not deployed; check the RPC endpoint and that the key holds gas",
        )?;
    println!("{factory}");
    Ok(ExitCode::SUCCESS)
}

/// Replays every settlement and refund the node decided but did not see confirmed on
/// chain, until none is pending (exit 0) or the time is up (exit 1).
pub fn finalizer(args: FinalizerArgs) -> anyhow::Result<ExitCode> {
    let config = args.node.resolve()?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    tokio()?.block_on(async {
        // Opening the gateway already replays pending settlements once.
        let gateway = Gateway::open(config).await?;
        loop {
            let pending = gateway.finalize_pending().await?;
            if pending.is_empty() {
                eprintln!("every decided settlement and refund is confirmed on chain");
                return Ok(ExitCode::SUCCESS);
            }
            for task in &pending {
                eprintln!(
                    "{} {}: {}",
                    task.task_id,
                    task.status.as_str(),
                    task.settlement_error.as_deref().unwrap_or("pending")
                );
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "{} task(s) still pending after {} s; run `d402 escrow-finalizer` again",
                    pending.len(),
                    args.timeout_seconds
                );
                return Ok(ExitCode::FAILURE);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}
