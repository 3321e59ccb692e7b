//! `d402 http-task` and `d402 x402-task`: a buyer calling a gateway over HTTP — discovery,
//! the 402 challenge, a signed payment, polling, result and receipt, printed as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use d402_client::{Client, TaskOutcome};
use d402_payment::{Payer, RailId};
use d402_protocol::Price;
use d402_rail_simulated::SimulatedPayer;
use d402_rail_x402_evm::{Address, EvmNetwork, EvmPayer};
use serde_json::{Value, json};

use crate::node::tokio;

/// The environment variable holding the buyer's EVM key (when no `--key-file` is given).
pub const BUYER_KEY_ENV: &str = "D402_BUYER_PRIVATE_KEY";

/// What to buy and from whom (shared by the buyer commands).
#[derive(Args)]
pub struct TaskBody {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8402")]
    gateway: String,
    /// Page to convert (builds `{"input": {"url"}}`).
    #[arg(long, conflicts_with = "input")]
    url: Option<String>,
    /// The task input as JSON text (for other capabilities).
    #[arg(long)]
    input: Option<String>,
    /// Capability to run (default: the gateway's default capability).
    #[arg(long)]
    capability: Option<String>,
    /// Submit asynchronously (202) and poll for the result.
    #[arg(long = "async")]
    asynchronous: bool,
    /// Print only the task's result (JSON) instead of challenge, task and receipt.
    #[arg(long)]
    result_only: bool,
}

impl TaskBody {
    /// The request body.
    fn body(&self) -> anyhow::Result<Value> {
        let mut body = match (&self.url, &self.input) {
            (Some(url), None) => d402_client::page_request(url),
            (None, Some(input)) => json!({
                "input": serde_json::from_str::<Value>(input).context("--input is not JSON")?
            }),
            _ => anyhow::bail!("pass --url or --input"),
        };
        if let Some(capability) = &self.capability {
            body["capabilityId"] = json!(capability);
        }
        if self.asynchronous {
            body["sync"] = json!(false);
        }
        Ok(body)
    }

    /// Runs the task, paying with `payer`; prints challenge, settlement, task and receipt
    /// (or only the result). Exit 0 when accepted, 2 otherwise, with the reason in one
    /// line on stderr.
    fn buy(&self, payer: &dyn Payer) -> anyhow::Result<ExitCode> {
        let body = self.body()?;
        let client = Client::new(&self.gateway)?;
        let outcome: TaskOutcome = tokio()?
            .block_on(client.run_task(&body, payer))
            .map_err(with_hint)?;
        let accepted = outcome.task["status"] == "accepted";
        if !accepted {
            eprintln!("{}", failure_line(&outcome.task));
        }
        if self.result_only {
            if accepted {
                println!("{}", serde_json::to_string_pretty(&outcome.task["result"])?);
            }
            return Ok(if accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "challenge": outcome.challenge,
                "paymentResponse": outcome.payment_response,
                "task": outcome.task,
                "receipt": outcome.receipt
            }))?
        );
        Ok(if accepted {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
    }
}

/// One human line saying why a task did not succeed: `task <id> rejected (<kind>): <message>`.
pub fn failure_line(task: &Value) -> String {
    let id = task["taskId"].as_str().unwrap_or("?");
    let status = task["status"].as_str().unwrap_or("not accepted");
    let error = &task["error"];
    match (error["kind"].as_str(), error["message"].as_str()) {
        (Some(kind), Some(message)) => format!("task {id} {status} ({kind}): {message}"),
        _ => format!("task {id} {status}"),
    }
}

/// Adds what to do next to the gateway refusals a buyer can fix.
fn with_hint(error: d402_client::ClientError) -> anyhow::Error {
    let hint = match &error {
        d402_client::ClientError::Status { body, .. }
            if body.contains("\"insufficient_funds\"") =>
        {
            Some(
                "the buyer has too little on the gateway's simulated ledger; fund it with \
             `d402 faucet --state DIR --account ADDRESS --amount 1.00`",
            )
        }
        _ => None,
    };
    match hint {
        Some(hint) => anyhow::Error::new(error).context(hint),
        None => error.into(),
    }
}

/// Arguments of `d402 http-task`.
#[derive(Args)]
pub struct HttpTaskArgs {
    #[command(flatten)]
    task: TaskBody,
    /// Payment rail to pay on (simulated; for x402 on Base use `d402 x402-task`).
    #[arg(long, default_value = "simulated")]
    rail: RailId,
    /// Buyer key file (ed25519, Solana keypair JSON).
    #[arg(long)]
    key: PathBuf,
}

/// Discovery → 402 → signed simulated-rail payment → result and receipt.
pub fn http_task(args: HttpTaskArgs) -> anyhow::Result<ExitCode> {
    match args.rail {
        RailId::Simulated => {}
        RailId::X402Base | RailId::X402BaseEscrow => anyhow::bail!(
            "to pay with x402 on Base (directly or into a task escrow), use d402 x402-task"
        ),
        RailId::SolanaDirect => anyhow::bail!("to pay with Solana USDC, use d402 solana-task"),
        other => anyhow::bail!(
            "rail {other} is not available to buyers yet; use --rail simulated, or d402 x402-task"
        ),
    }
    let key = d402_wallet::load(&args.key)?;
    args.task.buy(&SimulatedPayer::new(key))
}

/// Arguments of `d402 x402-task`.
#[derive(Args)]
pub struct X402TaskArgs {
    #[command(flatten)]
    task: TaskBody,
    /// File holding the buyer's EVM key (0x hex, mode 0600); else D402_BUYER_PRIVATE_KEY.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// The most to pay for the task, in dollars of the asset (USDC: 6 decimals).
    #[arg(long, default_value = "1.00", value_name = "DOLLARS", value_parser = Price::parse_dollars)]
    max_amount: Price,
    /// The network trusted for payment (CAIP-2).
    #[arg(long, env = "D402_X402_NETWORK", default_value = "eip155:8453")]
    network: String,
    /// The asset trusted for payment on that network (an EIP-3009 token).
    #[arg(
        long,
        env = "D402_X402_ASSET",
        default_value = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    )]
    asset: String,
    /// Pay a plain x402 resource at this URL instead of a d402 gateway: POST the --input
    /// JSON (default `{}`) as the body, pay its 402, print the paid response.
    #[arg(long, value_name = "URL", conflicts_with_all = ["url", "capability", "asynchronous"])]
    resource: Option<String>,
}

/// Arguments of `d402 solana-task`.
#[derive(Args)]
pub struct SolanaTaskArgs {
    #[command(flatten)]
    task: TaskBody,
    /// The buyer's Solana keypair file (JSON array of 64 bytes, as `solana-keygen` and
    /// `d402 keygen` write it; mode 0600). It pays the USDC and the fee.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The cluster's JSON-RPC endpoint the transfer is sent through.
    #[arg(long, env = "D402_SOLANA_RPC_URL", value_name = "URL")]
    rpc_url: String,
    /// The cluster trusted for payment (CAIP-2, or solana:mainnet-beta, solana:localnet).
    #[arg(
        long,
        env = "D402_SOLANA_NETWORK",
        default_value = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"
    )]
    network: String,
    /// The USDC mint trusted for payment.
    #[arg(
        long,
        env = "D402_SOLANA_USDC_MINT",
        default_value = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
    )]
    mint: String,
    /// The most to pay for the task, in dollars of USDC.
    #[arg(long, default_value = "1.00", value_name = "DOLLARS", value_parser = Price::parse_dollars)]
    max_amount: Price,
    /// Print the 402 challenge and stop, paying nothing.
    #[arg(long)]
    inspect: bool,
}

/// Discovery → 402 → a USDC transfer with the request's memo, confirmed, within
/// `--max-amount` → `Authorization: Payment` → result and receipt.
pub fn solana_task(args: SolanaTaskArgs) -> anyhow::Result<ExitCode> {
    use d402_rail_solana::{Keypair, SolanaNetwork, SolanaPayer, SolanaRpc, USDC_DECIMALS};
    let body = args.task.body()?;
    if args.inspect {
        let client = Client::new(&args.task.gateway)?;
        let challenge = tokio()?.block_on(async {
            let discovery = client.discover().await?;
            client
                .challenge(&discovery.endpoints.create_task, &body)
                .await
        })?;
        println!("{}", serde_json::to_string_pretty(&challenge)?);
        return Ok(ExitCode::SUCCESS);
    }
    let wallet = d402_wallet::load(&args.key)?;
    let key = Keypair::try_from(wallet.to_keypair_bytes().as_slice())
        .with_context(|| format!("{} is not a Solana keypair", args.key.display()))?;
    let network: SolanaNetwork = args.network.parse()?;
    let mint = args
        .mint
        .parse()
        .map_err(|_| anyhow::anyhow!("--mint {:?} is not a Solana address", args.mint))?;
    let rpc_url = url::Url::parse(&args.rpc_url)
        .with_context(|| format!("--rpc-url {:?} is not a URL", args.rpc_url))?;
    let max = args.max_amount.0;
    let payer = SolanaPayer::new(
        key,
        SolanaRpc::new(rpc_url),
        network,
        mint,
        USDC_DECIMALS,
        max.micros(),
    );
    args.task.buy(&payer)
}

/// Discovery → 402 → EIP-3009 authorization for the trusted network and asset, within
/// `--max-amount` → result, receipt and the decoded `PAYMENT-RESPONSE`.
pub fn x402_task(args: X402TaskArgs) -> anyhow::Result<ExitCode> {
    let key = d402_rail_x402_evm::load_key(args.key_file.as_deref(), BUYER_KEY_ENV)?;
    let network: EvmNetwork = args.network.parse()?;
    let asset: Address = args
        .asset
        .parse()
        .with_context(|| format!("--asset {:?} is not a 0x address", args.asset))?;
    let max = args.max_amount.0;
    let payer = EvmPayer::new(key, vec![(network, asset)], max.micros());
    let Some(resource) = &args.resource else {
        return args.task.buy(&payer);
    };
    let body: Value = match &args.task.input {
        Some(input) => serde_json::from_str(input).context("--input is not JSON")?,
        None => json!({}),
    };
    let client = Client::new(resource)?;
    let paid = tokio()?.block_on(client.pay_resource(resource, &body, &payer))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "challenge": paid.challenge,
            "status": paid.status,
            "paymentResponse": paid.payment_response,
            "body": paid.body
        }))?
    );
    let settled = paid.payment_response.is_some_and(|p| p.success);
    Ok(if (200..300).contains(&paid.status) && settled {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
