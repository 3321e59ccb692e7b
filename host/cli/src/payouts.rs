//! `d402 payouts list|run`: what a provider owes on the rails where the whole price lands
//! at its own wallet (x402 on Base, the Solana rails) and paying it from a payout hot key —
//! each transfer recorded signed before it is sent, so a crash or a second run never pays a
//! payout twice.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use clap::Subcommand;
use d402_payment::RailId;
use d402_rail_solana::{PayoutOutcome, SignedSolanaTransfer, SolanaPayoutSender};
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
    /// Pay every owed payout of one rail from the payout hot key, which must hold the token
    /// and the fees: on x402 on Base an EVM key (D402_PAYOUT_PRIVATE_KEY or --key-file,
    /// 0x hex, 0600); on the Solana rails a Solana keypair file (--key-file). Transfers
    /// recorded earlier are found on chain or re-sent byte for byte. Stop the node first.
    Run {
        /// Node state directory.
        #[arg(long, env = "D402_STATE", default_value = "state/node")]
        state: PathBuf,
        /// The rail whose payouts to pay: x402-base, solana-direct or x402-solana.
        #[arg(long, default_value = "x402-base")]
        rail: RailId,
        /// The EVM chain's JSON-RPC endpoint (x402-base).
        #[arg(long, env = "D402_EVM_RPC_URL", value_name = "URL")]
        evm_rpc_url: Option<String>,
        /// The Solana cluster's JSON-RPC endpoint (the Solana rails).
        #[arg(long, env = "D402_SOLANA_RPC_URL", value_name = "URL")]
        solana_rpc_url: Option<String>,
        /// The USDC mint the Solana payouts are in.
        #[arg(
            long,
            env = "D402_SOLANA_USDC_MINT",
            default_value = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
        )]
        solana_usdc_mint: String,
        /// The token the payouts are in.
        #[arg(
            long,
            env = "D402_X402_ASSET",
            default_value = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
        )]
        x402_asset: String,
        /// File holding the payout hot key (x402-base: 0x hex, else D402_PAYOUT_PRIVATE_KEY;
        /// Solana: a keypair JSON file), mode 0600.
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
            rail,
            evm_rpc_url,
            solana_rpc_url,
            solana_usdc_mint,
            x402_asset,
            key_file,
            receipt_timeout_seconds,
        } => {
            let url = |text: Option<String>, flag: &str| -> anyhow::Result<url::Url> {
                let text = text.with_context(|| format!("--rail {rail} needs {flag}"))?;
                url::Url::parse(&text).with_context(|| format!("{flag} {text:?} is not a URL"))
            };
            let chain: Box<dyn PayoutChain> = match rail {
                RailId::X402Base => {
                    let key = load_key(key_file.as_deref(), PAYOUT_KEY_ENV)?;
                    let asset: Address = x402_asset.parse().with_context(|| {
                        format!("--x402-asset {x402_asset:?} is not a 0x address")
                    })?;
                    let rpc = url(evm_rpc_url, "--evm-rpc-url")?;
                    Box::new(PayoutSender::new(key, rpc, asset))
                }
                RailId::SolanaDirect | RailId::X402Solana => {
                    let file = key_file.context(
                        "the Solana payout key comes from --key-file (a keypair JSON file)",
                    )?;
                    let wallet = d402_wallet::load(&file)?;
                    let key = d402_rail_solana::Keypair::try_from(
                        wallet.to_keypair_bytes().as_slice(),
                    )
                    .with_context(|| format!("{} is not a Solana keypair", file.display()))?;
                    let mint = solana_usdc_mint.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "--solana-usdc-mint {solana_usdc_mint:?} is not a Solana address"
                        )
                    })?;
                    let rpc = url(solana_rpc_url, "--solana-rpc-url")?;
                    Box::new(SolanaPayoutSender::new(
                        key,
                        rpc,
                        mint,
                        d402_rail_solana::USDC_DECIMALS,
                    ))
                }
                other => anyhow::bail!(
                    "rail {other} pays its payees itself (or owes nothing outside the node); nothing to pay"
                ),
            };
            let store = open(&state)?;
            let timeout = Duration::from_secs(receipt_timeout_seconds);
            tokio()?.block_on(pay_all(&store, rail, chain.as_ref(), timeout))
        }
    }
}

/// Where a sent payout transfer stands, on any chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Landed and paid.
    Paid,
    /// Can never pay (reverted, or expired unseen): sign a new one.
    Failed,
    /// Not landed yet.
    Pending,
}

/// A chain payouts are paid on: a signed transfer is (transaction id, raw bytes), both text,
/// as the store records them.
#[async_trait]
trait PayoutChain {
    /// Signs a transfer of `amount` to `to` (with `memo` where the chain carries one).
    async fn sign(&self, to: &str, amount: u64, memo: &str) -> anyhow::Result<(String, String)>;
    /// Sends the recorded transfer (again).
    async fn send(&self, transaction: &str, raw: &str) -> anyhow::Result<()>;
    /// Where the recorded transfer stands; waits up to `timeout` while it is pending.
    async fn wait(
        &self,
        transaction: &str,
        raw: &str,
        to: &str,
        amount: u64,
        timeout: Duration,
    ) -> anyhow::Result<Outcome>;
}

fn evm_transfer(transaction: &str, raw: &str) -> anyhow::Result<SignedTransfer> {
    Ok(SignedTransfer {
        transaction: transaction.parse().context("recorded transaction hash")?,
        raw: raw.parse().context("recorded transaction bytes")?,
    })
}

#[async_trait]
impl PayoutChain for PayoutSender {
    async fn sign(&self, to: &str, amount: u64, _memo: &str) -> anyhow::Result<(String, String)> {
        let to: Address = to.parse().context("payout address")?;
        let signed = PayoutSender::sign(self, to, amount).await?;
        Ok((signed.transaction.to_string(), signed.raw.to_string()))
    }

    async fn send(&self, transaction: &str, raw: &str) -> anyhow::Result<()> {
        Ok(PayoutSender::send(self, &evm_transfer(transaction, raw)?).await?)
    }

    async fn wait(
        &self,
        transaction: &str,
        raw: &str,
        to: &str,
        amount: u64,
        timeout: Duration,
    ) -> anyhow::Result<Outcome> {
        let signed = evm_transfer(transaction, raw)?;
        let to: Address = to.parse().context("payout address")?;
        Ok(
            match PayoutSender::wait(self, signed.transaction, to, amount, timeout).await? {
                TransferOutcome::Paid => Outcome::Paid,
                TransferOutcome::Failed => Outcome::Failed,
                TransferOutcome::Pending => Outcome::Pending,
            },
        )
    }
}

fn solana_transfer(transaction: &str, raw: &str) -> anyhow::Result<SignedSolanaTransfer> {
    Ok(SignedSolanaTransfer {
        signature: transaction.parse().context("recorded signature")?,
        raw: raw.to_string(),
    })
}

#[async_trait]
impl PayoutChain for SolanaPayoutSender {
    async fn sign(&self, to: &str, amount: u64, memo: &str) -> anyhow::Result<(String, String)> {
        let to = to
            .parse()
            .map_err(|_| anyhow::anyhow!("payout address {to:?} is not a Solana address"))?;
        let signed = SolanaPayoutSender::sign(self, to, amount, memo).await?;
        Ok((signed.signature.to_string(), signed.raw))
    }

    async fn send(&self, transaction: &str, raw: &str) -> anyhow::Result<()> {
        Ok(SolanaPayoutSender::send(self, &solana_transfer(transaction, raw)?).await?)
    }

    async fn wait(
        &self,
        transaction: &str,
        raw: &str,
        _to: &str,
        _amount: u64,
        timeout: Duration,
    ) -> anyhow::Result<Outcome> {
        let signed = solana_transfer(transaction, raw)?;
        Ok(
            match SolanaPayoutSender::wait(self, &signed, timeout).await? {
                PayoutOutcome::Paid => Outcome::Paid,
                PayoutOutcome::Failed => Outcome::Failed,
                PayoutOutcome::Pending => Outcome::Pending,
            },
        )
    }
}

fn open(state: &std::path::Path) -> anyhow::Result<NodeStore> {
    StateDir::new(state)
        .open_store()
        .with_context(|| format!("cannot open the store of {}", state.display()))
}

fn list(state: &std::path::Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let payouts: Vec<d402_store::OwedPayout> = match crate::admin::AdminClient::find(state)? {
        Some(admin) => {
            crate::node::tokio()?.block_on(admin.get(d402_gateway_api::admin::PAYOUTS))?
        }
        None => open(state)?.payouts()?,
    };
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

/// Pays or reconciles every payout owed on `rail`; exit 0 when nothing is left owed.
async fn pay_all(
    store: &NodeStore,
    rail: RailId,
    chain: &dyn PayoutChain,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let mut unfinished = 0;
    let mut paid = 0;
    for mut payout in store.payouts()? {
        if payout.rail != rail
            || !matches!(
                payout.state,
                PayoutState::Owed | PayoutState::Sending { .. }
            )
        {
            continue;
        }
        let done = settle_one(store, chain, &mut payout, timeout).await?;
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
    chain: &dyn PayoutChain,
    payout: &mut OwedPayout,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let to = payout
        .address
        .clone()
        .context("an owed payout has an address")?;
    let amount = payout.amount.micros();
    let recorded = match &payout.state {
        PayoutState::Sending { transaction, raw } => {
            match chain
                .wait(transaction, raw, &to, amount, Duration::ZERO)
                .await?
            {
                Outcome::Paid => return record(store, payout, paid(transaction)),
                // Never paid and never will: a new transfer is signed below.
                Outcome::Failed => None,
                Outcome::Pending => Some((transaction.clone(), raw.clone())),
            }
        }
        _ => None,
    };
    let (transaction, raw) = match recorded {
        Some(signed) => signed,
        None => {
            let memo = format!("d402-payout:{}", payout.key());
            let (transaction, raw) = chain.sign(&to, amount, &memo).await?;
            // Durable before it is sent: a crash after this point finds or re-sends it.
            payout.state = PayoutState::Sending {
                transaction: transaction.clone(),
                raw: raw.clone(),
            };
            store.record_payout(payout)?;
            (transaction, raw)
        }
    };
    chain.send(&transaction, &raw).await?;
    match chain.wait(&transaction, &raw, &to, amount, timeout).await? {
        Outcome::Paid => record(store, payout, paid(&transaction)),
        Outcome::Failed => record(store, payout, PayoutState::Owed).map(|_| false),
        Outcome::Pending => Ok(false),
    }
}

fn paid(transaction: &str) -> PayoutState {
    PayoutState::Paid {
        transaction: transaction.to_string(),
    }
}

fn record(store: &NodeStore, payout: &mut OwedPayout, state: PayoutState) -> anyhow::Result<bool> {
    let done = matches!(state, PayoutState::Paid { .. });
    payout.state = state;
    store.record_payout(payout)?;
    Ok(done)
}
