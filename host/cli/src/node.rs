//! `d402 node`, `d402 faucet` and `d402 task`: the node and its local ledger.

use d402_payment::Purchase;
use d402_payment::x402::{PaymentHeader, encode_header};
use d402_rail_simulated::sign_payment;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use d402_node::gateway::{Admission, TaskRequest};
use d402_node::{Gateway, NodeArgs};
use d402_protocol::{Amount, PublicKey};
use d402_store::StateDir;
use d402_store::TaskStatus;
use serde_json::json;

/// Arguments of `d402 task`.
#[derive(Args)]
pub struct TaskArgs {
    /// Node state directory (its store is opened here, so the node must be stopped).
    #[arg(long, env = "D402_STATE", default_value = "state/node")]
    state: PathBuf,
    /// Capability to run, ID or manifest CID (default: the node's default capability).
    #[arg(long)]
    capability: Option<String>,
    /// The task input, JSON.
    #[arg(long)]
    input: String,
    /// Execution mode: single, race or quorum.
    #[arg(long, default_value = "single", value_parser = d402_node::config::parse_mode)]
    mode: d402_protocol::ExecutionMode,
    /// Workers leased (race, quorum).
    #[arg(long, default_value_t = 1)]
    fanout: u32,
    /// Agreeing workers required (quorum).
    #[arg(long, default_value_t = 1)]
    quorum: u32,
    /// Buyer key file (ed25519); the buyer pays from its balance on the node's ledger.
    #[arg(long)]
    key: PathBuf,
    /// DEVELOPMENT ONLY: let page fetches reach private/loopback addresses.
    #[arg(long)]
    allow_private_addresses: bool,
}

/// Arguments of `d402 faucet`.
#[derive(Args)]
pub struct FaucetArgs {
    /// Node state directory (the ledger is `<state>/node.redb`; stop the node first).
    #[arg(long, env = "D402_STATE", default_value = "state/node")]
    state: PathBuf,
    /// Account to fund (base58 public key).
    #[arg(long)]
    account: PublicKey,
    /// Amount in dollars, e.g. 1.00.
    #[arg(long)]
    amount: f64,
}

/// A multi-threaded async runtime for one command.
pub(crate) fn tokio() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the node in the foreground until killed.
pub fn node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio()?;
    runtime.block_on(d402_node::run::run(args.resolve()?))?;
    Ok(ExitCode::SUCCESS)
}

/// Submits one paid task to the node's own worker pool (the peer network comes later):
/// signs a simulated-rail payment with the buyer's key, runs the task in the chosen mode,
/// and prints the task with its validation and settlement receipts. Exit 0 when accepted,
/// 2 when rejected (and refunded).
pub fn task(args: TaskArgs) -> anyhow::Result<ExitCode> {
    let input: serde_json::Value =
        serde_json::from_str(&args.input).context("--input is not JSON")?;
    let key = d402_wallet::load(&args.key)?;
    let config = d402_node::NodeConfig {
        state: args.state,
        mode: args.mode,
        fanout: args.fanout,
        quorum: args.quorum,
        local_workers: args
            .fanout
            .max(d402_node::NodeConfig::default().local_workers),
        allow_private_addresses: args.allow_private_addresses,
        ..d402_node::NodeConfig::default()
    };
    config.validate()?;
    tokio()?.block_on(async move {
        let gateway = Gateway::open(config).await?;
        let served = match &args.capability {
            Some(reference) => gateway
                .catalog()
                .get(reference)
                .cloned()
                .with_context(|| format!("the node does not serve {reference}"))?,
            None => gateway.catalog().default_capability().clone(),
        };
        served
            .loaded
            .schemas()
            .validate_input(&input)
            .context("invalid input")?;
        let body = json!({"capabilityId": served.capability_id, "input": input});
        let binding = d402_payment::request_binding(&body);
        let challenge = gateway.challenge(&served, "/tasks", &binding, None);
        let purchase = Purchase {
            resource: None,
            body: &body,
            now: d402_protocol::Timestamp::now(),
        };
        let payment = encode_header(&sign_payment(&challenge.accepts[0], &purchase, &key)?);
        let request = TaskRequest {
            capability: served,
            input: body["input"].clone(),
            body,
        };
        let Admission::New(record) = gateway.admit(request, PaymentHeader::V2(&payment)).await?
        else {
            anyhow::bail!("this fresh payment was taken for a replay");
        };
        let (record, receipts) = gateway.clone().execute(record).await;
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"task": record, "receipts": receipts}))?
        );
        Ok(if record.status == TaskStatus::Accepted {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
    })
}

/// Credits an account on the simulated ledger.
pub fn faucet(args: FaucetArgs) -> anyhow::Result<ExitCode> {
    let amount = Amount::from_dollars(args.amount)?;
    let store = StateDir::new(&args.state).open_store()?;
    let balance = store.credit(&args.account.to_string(), amount)?;
    println!(
        "{}",
        json!({"account": args.account.to_string(), "credited": amount, "balance": balance})
    );
    Ok(ExitCode::SUCCESS)
}
