//! `d402 node`, `d402 faucet` and `d402 http-task`: the gateway node and its buyer side.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use d402_node::{Gateway, NodeArgs, NodeStore};
use d402_protocol::{Amount, PublicKey};
use serde_json::json;

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

/// Arguments of `d402 http-task`.
#[derive(Args)]
pub struct HttpTaskArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8402")]
    gateway: String,
    /// Page to convert (builds `{"input": {"url"}}`).
    #[arg(long, conflicts_with = "input")]
    url: Option<String>,
    /// The task input as JSON text (for other capabilities).
    #[arg(long)]
    input: Option<String>,
    /// Payment rail.
    #[arg(long, default_value = "simulated")]
    rail: String,
    /// Buyer key file (ed25519, Solana keypair JSON).
    #[arg(long)]
    key: PathBuf,
    /// Submit asynchronously (202) and poll for the result.
    #[arg(long = "async")]
    asynchronous: bool,
}

fn tokio() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// Runs the node in the foreground until killed.
pub fn node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio()?;
    runtime.block_on(async {
        let gateway = Gateway::open(args.resolve()?)?;
        d402_node::serve(gateway).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Credits an account on the simulated ledger.
pub fn faucet(args: FaucetArgs) -> anyhow::Result<ExitCode> {
    let amount = Amount::from_dollars(args.amount)?;
    let store = NodeStore::open(&args.state.join("node.redb"))?;
    let balance = store.credit(&args.account.to_string(), amount)?;
    println!("{}", json!({"account": args.account.to_string(), "credited": amount, "balance": balance}));
    Ok(ExitCode::SUCCESS)
}

/// Discovery → 402 → signed payment → result and receipt, printed as JSON.
pub fn http_task(args: HttpTaskArgs) -> anyhow::Result<ExitCode> {
    if args.rail != "simulated" {
        anyhow::bail!("rail {:?} is not available yet; use --rail simulated", args.rail);
    }
    let key = d402_wallet::load(&args.key)?;
    let mut body = match (&args.url, &args.input) {
        (Some(url), None) => d402_node::client::page_request(url, false),
        (None, Some(input)) => json!({"input": serde_json::from_str::<serde_json::Value>(input).context("--input is not JSON")?}),
        _ => anyhow::bail!("pass --url or --input"),
    };
    if args.asynchronous {
        body["sync"] = json!(false);
    }
    let outcome = tokio()?.block_on(d402_node::client::http_task(&args.gateway, &body, &key))?;
    let accepted = outcome.task["status"] == "accepted";
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "challenge": outcome.challenge,
            "paymentResponse": outcome.payment_response,
            "task": outcome.task,
            "receipt": outcome.receipt
        }))?
    );
    Ok(if accepted { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
