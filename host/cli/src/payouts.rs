//! `d402 payouts list|run`: what a provider owes on x402 on Base (the whole price lands at
//! its `payTo`) and paying it from a payout hot key — each transfer recorded signed before
//! it is sent, so a crash or a second run never pays a payout twice.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use d402_payment::RailId;
use d402_rail_x402_evm::{Address, PayoutSender, SignedTransfer, TransferOutcome, load_key};
use d402_store::{NodeStore, OwedPayout, PayoutState, StateDir};
use serde_json::json;

use crate::node::tokio;

/// The environment variable holding the payout hot key (when no `--key-file` is given).
pub const PAYOUT_KEY_ENV: &str = "D402_PAYOUT_PRIVATE_KEY";

/// `d402 payouts` commands.
#[derive(Subcommand)]
pub enum PayoutsCommand {
    /// List the payouts owed on external rails and where each stands (kept, unpayable,
    /// owed, sending, paid). Stop the node first: its store is locked while it runs.
    List {
        /// Node state directory.
        #[arg(long, env = "D402_STATE", default_value = "state/node")]
        state: PathBuf,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pay every owed payout on x402 on Base from the payout hot key (D402_PAYOUT_PRIVATE_KEY
    /// or --key-file, 0600), which must hold the token and gas; transfers recorded earlier
    /// are found on chain or re-sent byte for byte. Stop the node first.
    Run {
        /// Node state directory.
        #[arg(long, env = "D402_STATE", default_value = "state/node")]
        state: PathBuf,
        /// The chain's JSON-RPC endpoint.
        #[arg(long, env = "D402_EVM_RPC_URL", value_name = "URL")]
        evm_rpc_url: String,
        /// The token the payouts are in.
        #[arg(
            long,
            env = "D402_X402_ASSET",
            default_value = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
        )]
        x402_asset: String,
        /// File holding the payout hot key (0x hex, mode 0600); else D402_PAYOUT_PRIVATE_KEY.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// Longest wait for each transfer to be mined before moving on (a later run
        /// finds it).
        #[arg(long, default_value_t = 60)]
        receipt_timeout_seconds: u64,
    },
}

/// Runs a `d402 payouts` command.
pub fn run(command: PayoutsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PayoutsCommand::List { state, json } => list(&state, json),
        PayoutsCommand::Run {
            state,
            evm_rpc_url,
            x402_asset,
            key_file,
            receipt_timeout_seconds,
        } => {
            let key = load_key(key_file.as_deref(), PAYOUT_KEY_ENV)?;
            let rpc = url::Url::parse(&evm_rpc_url)
                .with_context(|| format!("--evm-rpc-url {evm_rpc_url:?} is not a URL"))?;
            let asset: Address = x402_asset
                .parse()
                .with_context(|| format!("--x402-asset {x402_asset:?} is not a 0x address"))?;
            let store = open(&state)?;
            let sender = PayoutSender::new(key, rpc, asset);
            let timeout = Duration::from_secs(receipt_timeout_seconds);
            tokio()?.block_on(pay_all(&store, &sender, timeout))
        }
    }
}

fn open(state: &std::path::Path) -> anyhow::Result<NodeStore> {
    NodeStore::open(&StateDir::new(state).store()).with_context(|| {
        format!(
            "cannot open the store of {} (stop the node first)",
            state.display()
        )
    })
}

fn list(state: &std::path::Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let payouts = open(state)?.payouts()?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&payouts)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<10} {:<12} {:>12}  {:<44} task",
        "state", "reason", "amount", "to"
    );
    for payout in &payouts {
        let to = payout.address.as_deref().unwrap_or(&payout.account);
        println!(
            "{:<10} {:<12} {:>12}  {:<44} {}/{}",
            payout.state.as_str(),
            serde_json::to_value(payout.reason)?
                .as_str()
                .unwrap_or_default(),
            payout.amount.micros(),
            to,
            payout.task_id,
            payout.index
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Pays or reconciles every payout on x402 on Base; exit 0 when nothing is left owed.
async fn pay_all(
    store: &NodeStore,
    sender: &PayoutSender,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let mut unfinished = 0;
    let mut paid = 0;
    for mut payout in store.payouts()? {
        if payout.rail != RailId::X402Base
            || !matches!(
                payout.state,
                PayoutState::Owed | PayoutState::Sending { .. }
            )
        {
            continue;
        }
        let done = settle_one(store, sender, &mut payout, timeout).await?;
        eprintln!(
            "payout {} of {} to {}: {}",
            payout.key(),
            payout.amount.micros(),
            payout.address.as_deref().unwrap_or_default(),
            payout.state.as_str()
        );
        if done {
            paid += 1;
        } else {
            unfinished += 1;
        }
    }
    println!("{}", json!({"paid": paid, "unfinished": unfinished}));
    Ok(if unfinished == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Pays `payout` (or finds its recorded transfer); `true` once it is paid.
async fn settle_one(
    store: &NodeStore,
    sender: &PayoutSender,
    payout: &mut OwedPayout,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let to: Address = payout
        .address
        .as_deref()
        .context("an owed payout has an address")?
        .parse()
        .context("payout address")?;
    let amount = payout.amount.micros();
    let signed = match &payout.state {
        PayoutState::Sending { transaction, raw } => {
            let signed = SignedTransfer {
                transaction: transaction.parse().context("recorded transaction hash")?,
                raw: raw.parse().context("recorded transaction bytes")?,
            };
            match sender.outcome(signed.transaction, to, amount).await? {
                TransferOutcome::Paid => return record(store, payout, paid(&signed)),
                // Reverted: nothing moved; a new transfer is signed below.
                TransferOutcome::Failed => None,
                TransferOutcome::Pending => Some(signed),
            }
        }
        _ => None,
    };
    let signed = match signed {
        Some(signed) => signed,
        None => {
            let signed = sender.sign(to, amount).await?;
            // Durable before it is sent: a crash after this point finds or re-sends it.
            payout.state = PayoutState::Sending {
                transaction: signed.transaction.to_string(),
                raw: signed.raw.to_string(),
            };
            store.record_payout(payout)?;
            signed
        }
    };
    sender.send(&signed).await?;
    match sender.wait(signed.transaction, to, amount, timeout).await? {
        TransferOutcome::Paid => record(store, payout, paid(&signed)),
        TransferOutcome::Failed => record(store, payout, PayoutState::Owed).map(|_| false),
        TransferOutcome::Pending => Ok(false),
    }
}

fn paid(signed: &SignedTransfer) -> PayoutState {
    PayoutState::Paid {
        transaction: signed.transaction.to_string(),
    }
}

fn record(store: &NodeStore, payout: &mut OwedPayout, state: PayoutState) -> anyhow::Result<bool> {
    let done = matches!(state, PayoutState::Paid { .. });
    payout.state = state;
    store.record_payout(payout)?;
    Ok(done)
}
