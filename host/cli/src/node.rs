//! `d402 node`, `d402 faucet` and `d402 task`: the node and its local ledger.

use d402_payment::Purchase;
use d402_payment::x402::{PaymentHeader, encode_header};
use d402_rail_simulated::sign_payment;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::admin::AdminClient;
use anyhow::Context;
use clap::Args;
use d402_gateway_api::admin::{FaucetRequest, FaucetResponse};
use d402_node::gateway::{Admission, TaskRequest};
use d402_node::{Gateway, NodeArgs};
use d402_protocol::{Amount, Price, PublicKey};
use d402_store::TaskStatus;
use serde_json::json;

/// Arguments of `d402 task`.
#[derive(Args)]
pub struct TaskArgs {
    /// Node state directory: a running node is paid through its public API (in its own
    /// execution mode), a stopped node's store is opened here.
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
    /// Node state directory: a running node is credited through its admin API, a stopped
    /// node's ledger (`<state>/node.redb`) directly.
    #[arg(long, env = "D402_STATE", default_value = "state/node")]
    state: PathBuf,
    /// Account to fund (base58 public key).
    #[arg(long)]
    account: PublicKey,
    /// Amount in dollars, e.g. 1.00 or $1.00.
    #[arg(long, value_parser = Price::parse_dollars)]
    amount: Price,
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
    if let Some(admin) = AdminClient::find(&args.state)? {
        return task_on_running_node(&args, admin.public_url(), input, key);
    }
    let mut config = d402_node::NodeConfig::default();
    let node = &mut config.node;
    node.local_workers = args.fanout.max(node.local_workers);
    (node.state, node.mode, node.fanout, node.quorum) =
        (args.state, args.mode, args.fanout, args.quorum);
    config.browser.allow_private_addresses = args.allow_private_addresses;
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

/// Runs `d402 task` on a running node: through its public API, paying on the simulated
/// rail, in the node's own execution mode.
fn task_on_running_node(
    args: &TaskArgs,
    public_url: &str,
    input: serde_json::Value,
    key: d402_protocol::Keypair,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.mode == d402_protocol::ExecutionMode::Single && args.fanout == 1 && args.quorum == 1,
        "a running node runs tasks in its own execution mode; drop --mode/--fanout/--quorum \
         (set them on `d402 node`), or stop the node to run this task in another mode"
    );
    let mut body = json!({ "input": input });
    if let Some(capability) = &args.capability {
        body["capabilityId"] = json!(capability);
    }
    let client = d402_client::Client::new(public_url)?;
    let payer = d402_rail_simulated::SimulatedPayer::new(key);
    let outcome = tokio()?.block_on(client.run_task(&body, &payer))?;
    let accepted = outcome.task["status"] == "accepted";
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({"task": outcome.task, "receipts": outcome.receipt}))?
    );
    Ok(if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Credits an account on the simulated ledger: through the admin API of a running node,
/// or in a stopped node's store.
pub fn faucet(args: FaucetArgs) -> anyhow::Result<ExitCode> {
    let amount = args.amount.0;
    let account = args.account.to_string();
    let balance = match AdminClient::find(&args.state)? {
        Some(admin) => {
            let request = FaucetRequest {
                account: account.clone(),
                amount_micros: amount.micros(),
            };
            let response: FaucetResponse =
                tokio()?.block_on(admin.post(d402_gateway_api::admin::FAUCET, &request))?;
            Amount::from_micros(response.balance_micros)
        }
        None => crate::admin::existing(&args.state)?
            .open_store()?
            .credit(&account, amount)?,
    };
    println!(
        "{}",
        json!({"account": account, "credited": amount, "balance": balance})
    );
    Ok(ExitCode::SUCCESS)
}
