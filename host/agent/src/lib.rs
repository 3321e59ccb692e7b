//! `d402-agent`: the buyer's reference client. Gateways in preference order, their keys
//! pinned on first use, capability search, a spend policy checked (and spend reserved in
//! an append-only ledger) before anything is signed, payment-aware retries that never sign
//! twice, and receipts cached and verifiable offline. It links neither wasmtime, Chromium,
//! libp2p nor redb.

mod config;
mod daemon;
mod ledger;
mod mcp;
mod pins;
mod plugin;
mod policy;
mod request;
mod search;
mod signer;
mod update;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use d402_payment::RailId;
use d402_protocol::{Price, Timestamp};
use serde_json::{Value, json};

use config::{AgentConfig, Gateway, Paths, PayRail, SignerSource};
use ledger::{Entry, Ledger};
use policy::Policy;

/// d402-agent: buy d402 work within a spend policy, with receipts.
#[derive(Parser)]
#[command(name = "d402-agent", version, about)]
struct Cli {
    /// Configuration file [default: $XDG_CONFIG_HOME/d402-agent/config.toml]; the ledger
    /// and pinned gateway keys live next to it.
    #[arg(long, global = true, env = "D402_AGENT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the configuration: gateways (in preference order), rail, signer, policy.
    Init {
        /// Gateway base URL (repeatable, in preference order).
        #[arg(long = "gateway", required = true, value_name = "URL")]
        gateways: Vec<String>,
        /// Rail to pay on: simulated, x402-base, x402-base-escrow, solana-direct or
        /// x402-solana; or manual (show each challenge, pay nothing).
        #[arg(long, default_value = "simulated")]
        rail: PayRail,
        /// Buyer key file, mode 0600: a Solana keypair JSON (simulated and Solana rails) or
        /// a 0x hex EVM key (x402 rails on Base).
        #[arg(long, value_name = "FILE", conflicts_with = "key_env")]
        key_file: Option<PathBuf>,
        /// Environment variable holding the buyer key [default: D402_BUYER_KEYPAIR, or
        /// D402_BUYER_PRIVATE_KEY on x402 rails].
        #[arg(long, value_name = "VARIABLE")]
        key_env: Option<String>,
        /// Only pay on this network (repeatable, CAIP-2; x402 default: eip155:8453).
        #[arg(long = "allowed-network", value_name = "CAIP2")]
        allowed_networks: Vec<String>,
        /// Only pay in this asset (repeatable; x402 default: USDC on Base).
        #[arg(long = "allowed-asset", value_name = "ADDRESS")]
        allowed_assets: Vec<String>,
        /// EVM JSON-RPC endpoint `verify-receipt` checks x402 payments on.
        #[arg(long, value_name = "URL")]
        evm_rpc_url: Option<String>,
        /// Solana JSON-RPC endpoint the transfers go through (required with --rail
        /// solana-direct and x402-solana).
        #[arg(long, value_name = "URL")]
        solana_rpc_url: Option<String>,
        /// Solana network (CAIP-2, or solana:mainnet-beta / solana:devnet / solana:localnet).
        #[arg(long, default_value = "solana:mainnet-beta")]
        solana_network: String,
        /// The USDC mint paid in.
        #[arg(long, default_value = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")]
        solana_usdc_mint: String,
        /// `plugin:PROGRAM` (a signer plugin, asked for its address now, which every later
        /// signature must match) or `keychain:SERVICE:USER` (the OS keychain).
        #[arg(long, value_name = "SPEC", conflicts_with = "key_file")]
        signer: Option<String>,
        /// Most one request may cost, atomic units (USDC micro-units).
        #[arg(long)]
        max_per_request: Option<u64>,
        /// Most spent in 24 hours, atomic units.
        #[arg(long)]
        max_per_day: Option<u64>,
        /// Most spent in 24 hours at one gateway, atomic units.
        #[arg(long)]
        max_per_gateway_per_day: Option<u64>,
        /// Most ever spent, atomic units.
        #[arg(long)]
        max_lifetime: Option<u64>,
        /// Replace an existing configuration.
        #[arg(long)]
        force: bool,
    },
    /// Read each gateway's discovery document and health; pin its key on first use.
    Discover {
        /// Accept a gateway key that changed since it was pinned.
        #[arg(long)]
        accept_new_key: bool,
    },
    /// Search the gateways' capabilities.
    Capabilities {
        /// Only capabilities with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this capability ID.
        #[arg(long)]
        id: Option<String>,
        /// Only this manifest CID.
        #[arg(long)]
        cid: Option<String>,
    },
    /// Buy one task: policy and ledger first, then pay, retry, poll, check the receipt.
    Request {
        /// Page to convert (web.page_to_markdown@1).
        #[arg(long, conflicts_with_all = ["input", "capability"])]
        url: Option<String>,
        /// Capability ID.
        #[arg(long, requires = "input")]
        capability: Option<String>,
        /// The task input, JSON.
        #[arg(long)]
        input: Option<String>,
        /// Only this configured gateway.
        #[arg(long, value_name = "URL")]
        gateway: Option<String>,
        /// `manual`: print the challenge and exit 2 without paying.
        #[arg(long)]
        rail: Option<String>,
        /// Submit asynchronously and poll.
        #[arg(long = "async")]
        asynchronous: bool,
        /// Most to pay for this request, dollars ($0.01 or 0.01); only tightens the policy.
        #[arg(long, value_parser = Price::parse_dollars)]
        max_amount: Option<Price>,
        /// Accept a gateway key that changed since it was pinned.
        #[arg(long)]
        accept_new_key: bool,
    },
    /// The ledger's latest entries.
    Ledger {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Serve applications on loopback: they send the plain task request, the daemon applies
    /// the policy, pays, retries and answers with result and receipts.
    Daemon {
        /// Listen address (loopback only).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port.
        #[arg(long, default_value_t = 7402)]
        port: u16,
    },
    /// A local EVM hot wallet for small, capped tests: a fresh key in a 0600 file.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// Store a key file's key in the OS keychain (then `init --signer keychain:SERVICE:USER`).
    KeychainImport {
        /// The key file (Solana keypair JSON, 0600).
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// Keychain service name.
        #[arg(long, default_value = "d402-agent")]
        service: String,
        /// Keychain user name.
        #[arg(long, default_value = "buyer")]
        user: String,
    },
    /// Threshold-signed releases: verify a manifest (check) and install it (apply).
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Serve the Model Context Protocol on stdio: tools discover, search_capabilities,
    /// quote, request, get_receipt, ledger — within the configured policy.
    Mcp,
    /// Check a cached receipt again: signatures (pinned key), request, amounts.
    VerifyReceipt {
        /// The task.
        #[arg(long)]
        task_id: String,
    },
}

/// `d402-agent wallet` commands.
#[derive(Subcommand)]
enum WalletCommand {
    /// Create an EVM key file (0x hex, 0600) and print its address. Test networks only
    /// unless --allow-mainnet: fund it with little, and cap the policy.
    Create {
        /// Where to write the key (refuses to overwrite).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The network it is for (CAIP-2).
        #[arg(long, default_value = "eip155:84532")]
        network: String,
        /// Allow a mainnet network (real money in a key on disk).
        #[arg(long)]
        allow_mainnet: bool,
    },
}

/// EVM chains whose money is real.
const MAINNETS: [u64; 2] = [1, 8453];

/// `d402-agent update` commands.
#[derive(Subcommand)]
enum UpdateCommand {
    /// Verify a release manifest and its artifacts; print the local policy's decision.
    Check(UpdateArgs),
    /// Verify, then stage and swap the artifacts in (keeping the previous version).
    Apply {
        #[command(flatten)]
        args: UpdateArgs,
        /// Where the artifacts are installed [default: the directory of this program].
        #[arg(long, value_name = "DIR")]
        install_dir: Option<PathBuf>,
        /// Apply even when the local policy would only notify (never skips verification).
        #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
        force: bool,
    },
}

/// What an update is checked against.
#[derive(clap::Args)]
struct UpdateArgs {
    /// The release manifest (`d402 release manifest` + `sign`).
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// A trusted release public key (repeatable).
    #[arg(long = "trusted-key-file", value_name = "FILE", required = true)]
    trusted_key_files: Vec<PathBuf>,
    /// Distinct trusted signatures required [default: all trusted keys].
    #[arg(long)]
    threshold: Option<usize>,
    /// The component updated.
    #[arg(long, default_value = "agent")]
    component: String,
    /// The channel followed.
    #[arg(long, default_value = "stable")]
    channel: String,
    /// Where the artifacts are: a directory or an http(s) base URL [default: the
    /// manifest's directory].
    #[arg(long, value_name = "DIR|URL")]
    from: Option<String>,
}

/// Runs the command line; errors go to stderr with exit 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let paths = Paths::resolve(cli.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Init {
            gateways,
            rail,
            key_file,
            key_env,
            allowed_networks,
            allowed_assets,
            evm_rpc_url,
            solana_rpc_url,
            solana_network,
            solana_usdc_mint,
            signer,
            max_per_request,
            max_per_day,
            max_per_gateway_per_day,
            max_lifetime,
            force,
        } => {
            anyhow::ensure!(
                force || !paths.config.exists(),
                "{} exists; pass --force to replace it",
                paths.config.display()
            );
            let signer = match (key_file, signer) {
                (Some(path), _) => SignerSource::KeyFile {
                    path: std::path::absolute(&path)?,
                },
                (None, Some(spec)) => match spec.split_once(':') {
                    Some(("plugin", program)) => {
                        let program = std::path::absolute(program)?;
                        let address = runtime.block_on(plugin::address(&program))?;
                        SignerSource::Plugin {
                            program,
                            address: address.to_string(),
                        }
                    }
                    Some(("keychain", entry)) => {
                        let (service, user) = entry.split_once(':').with_context(|| {
                            format!("--signer {spec:?}: use keychain:SERVICE:USER")
                        })?;
                        SignerSource::Keychain {
                            service: service.into(),
                            user: user.into(),
                        }
                    }
                    _ => anyhow::bail!(
                        "--signer {spec:?}: use plugin:PROGRAM or keychain:SERVICE:USER"
                    ),
                },
                (None, None) => SignerSource::Env {
                    variable: key_env.unwrap_or_else(|| {
                        if matches!(
                            rail,
                            PayRail::Pay(RailId::X402Base | RailId::X402BaseEscrow)
                        ) {
                            signer::EVM_KEY_ENV.into()
                        } else {
                            signer::KEYPAIR_ENV.into()
                        }
                    }),
                },
            };
            let config = AgentConfig {
                gateways: gateways
                    .into_iter()
                    .map(|url| Gateway {
                        url: url.trim_end_matches('/').to_string(),
                        rail,
                    })
                    .collect(),
                signer,
                policy: Policy {
                    max_per_request,
                    max_per_day,
                    max_per_gateway_per_day,
                    max_lifetime,
                    allowed_networks,
                    allowed_assets,
                    ..Policy::default()
                },
                update_policy: update::UpdatePolicy::default(),
                evm_rpc_url,
                solana: solana_rpc_url.map(|rpc_url| config::SolanaSettings {
                    rpc_url,
                    network: solana_network,
                    mint: solana_usdc_mint,
                }),
            };
            if let PayRail::Pay(paid @ (RailId::SolanaDirect | RailId::X402Solana)) = rail {
                anyhow::ensure!(
                    config.solana.is_some(),
                    "--rail {paid} needs --solana-rpc-url URL"
                );
            }
            config.save(&paths)?;
            print(
                cli.json,
                &json!({"config": paths.config}),
                &format!("wrote {}", paths.config.display()),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Discover { accept_new_key } => {
            let config = AgentConfig::load(&paths)?;
            let found = runtime.block_on(search::discover(&paths, &config, accept_new_key))?;
            let text = found
                .iter()
                .map(|g| {
                    format!(
                        "{}  {}",
                        g["gateway"].as_str().unwrap_or(""),
                        g.get("error").or(g.get("key")).unwrap_or(&Value::Null)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(cli.json, &Value::Array(found), &text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Capabilities {
            tag,
            namespace,
            id,
            cid,
        } => {
            let config = AgentConfig::load(&paths)?;
            let filter = search::Filter {
                tag,
                namespace,
                id,
                cid,
            };
            let listed = runtime.block_on(search::capabilities(&config, &filter))?;
            let text = listed
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{:<32} {:>10}  {}",
                        c["capabilityId"].as_str().unwrap_or(""),
                        c["price"].as_str().unwrap_or(""),
                        c["gateway"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(cli.json, &listed, &text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Request {
            url,
            capability,
            input,
            gateway,
            rail,
            asynchronous,
            max_amount,
            accept_new_key,
        } => {
            let config = AgentConfig::load(&paths)?;
            let input = input
                .map(|text| serde_json::from_str::<Value>(&text).context("--input is not JSON"))
                .transpose()?;
            let body = request::task_body(url, capability, input, asynchronous)?;
            let mut order = request::Order::new(
                &config,
                body,
                gateway.as_deref(),
                max_amount.map(|p| p.0.micros()),
            );
            anyhow::ensure!(
                !order.gateways.is_empty(),
                "no such gateway in {}",
                paths.config.display()
            );
            order.accept_new_key = accept_new_key;
            let rail = match rail.as_deref() {
                None => config.rail(),
                Some(named) => named.parse()?,
            };
            anyhow::ensure!(
                rail == PayRail::Manual || rail == config.rail(),
                "the configured gateways pay on {}, not {rail}",
                config.rail()
            );
            order.manual = rail == PayRail::Manual;
            let payer = match rail {
                PayRail::Manual => None,
                PayRail::Pay(_) => Some(signer::payer(&config)?),
            };
            match runtime.block_on(request::buy(&paths, order, payer.as_deref()))? {
                request::Bought::Challenge(challenge) => {
                    println!("{}", serde_json::to_string_pretty(&challenge)?);
                    Ok(ExitCode::from(2))
                }
                request::Bought::Task(document) => {
                    let accepted = document["task"]["status"] == "accepted";
                    println!("{}", serde_json::to_string_pretty(&document)?);
                    Ok(if accepted {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(2)
                    })
                }
            }
        }
        Command::Ledger { limit } => {
            let entries = Ledger::new(paths.ledger()).entries()?;
            let start = entries.len().saturating_sub(limit);
            let recent = &entries[start..];
            let text = recent.iter().map(summary).collect::<Vec<_>>().join("\n");
            print(cli.json, &serde_json::to_value(recent)?, &text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon { host, port } => {
            runtime.block_on(daemon::serve(paths, host, port))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Wallet(WalletCommand::Create {
            out,
            network,
            allow_mainnet,
        }) => {
            let network: d402_rail_x402_evm::EvmNetwork = network.parse()?;
            anyhow::ensure!(
                allow_mainnet || !MAINNETS.contains(&network.chain_id()),
                "{network} is a mainnet: a hot wallet there holds real money in a file; \
                 pass --allow-mainnet if that is what you want"
            );
            let key = d402_rail_x402_evm::PrivateKeySigner::random();
            d402_rail_x402_evm::write_key(&out, &key).with_context(|| {
                format!("cannot write {} (it must not exist yet)", out.display())
            })?;
            let address = key.address().to_string();
            print(
                cli.json,
                &json!({"address": address, "network": network.to_string(), "keyFile": out}),
                &format!(
                    "{address} (key in {}; fund it with a little, and set --max-per-request)",
                    out.display()
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::KeychainImport {
            key_file,
            service,
            user,
        } => {
            let key = signer::payer_key(&key_file)?;
            signer::import(&key, &service, &user)?;
            print(
                cli.json,
                &json!({"address": key.public().to_string(), "service": service, "user": user}),
                &format!(
                    "stored {} in the keychain as {service}/{user}",
                    key.public()
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Update(command) => {
            let (args, apply) = match command {
                UpdateCommand::Check(args) => (args, None),
                UpdateCommand::Apply {
                    args,
                    install_dir,
                    force,
                } => (args, Some((install_dir, force))),
            };
            let keys = update::trusted_keys(&args.trusted_key_files)?;
            let trust = update::Trust {
                threshold: args.threshold.unwrap_or(keys.len()),
                keys,
                component: args.component,
                channel: args.channel,
            };
            let verified = runtime.block_on(update::verify(
                &paths,
                &args.manifest,
                &trust,
                args.from.as_deref(),
            ))?;
            let policy = AgentConfig::load(&paths)
                .map(|c| c.update_policy)
                .unwrap_or_default();
            let decision = update::decide(policy, &verified.manifest);
            let mut report = json!({
                "component": verified.manifest.component,
                "version": verified.manifest.version,
                "sequence": verified.manifest.sequence,
                "manifestCid": verified.cid.to_string(),
                "decision": decision.as_str(),
            });
            let Some((install_dir, force)) = apply else {
                print(
                    cli.json,
                    &report,
                    &format!(
                        "verified {} {} ({}): {}",
                        verified.manifest.component,
                        verified.manifest.version,
                        verified.cid,
                        decision.as_str()
                    ),
                );
                return Ok(ExitCode::SUCCESS);
            };
            if decision != update::Decision::Stage && !force {
                print(
                    cli.json,
                    &report,
                    &format!(
                        "verified, not applied: the local policy says {}; --force true applies it",
                        decision.as_str()
                    ),
                );
                return Ok(ExitCode::from(2));
            }
            let dir = match install_dir {
                Some(dir) => dir,
                None => std::env::current_exe()?
                    .parent()
                    .context("this program has no directory")?
                    .to_path_buf(),
            };
            let installed = update::apply(&paths, &verified, &dir)?;
            report["installed"] = json!(installed);
            print(
                cli.json,
                &report,
                &format!(
                    "installed {} {}",
                    verified.manifest.component, verified.manifest.version
                ),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Mcp => {
            runtime.block_on(mcp::serve(paths))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyReceipt { task_id } => {
            let checked = runtime.block_on(verify::verify(&paths, &task_id))?;
            print(
                cli.json,
                &json!({"taskId": task_id, "verified": checked}),
                &format!("{task_id}: verified\n  {}", checked.join("\n  ")),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line per ledger entry.
fn summary(entry: &Entry) -> String {
    let at = |ms: &u64| Timestamp::from_unix_millis(*ms).to_string();
    match entry {
        Entry::Reserved {
            id,
            at_ms,
            gateway,
            amount,
            ..
        } => format!("{} reserved {amount} {id} at {gateway}", at(at_ms)),
        Entry::Paid {
            id, at_ms, binding, ..
        } => format!("{} paid     {id} for {binding}", at(at_ms)),
        Entry::Settled {
            id,
            at_ms,
            task_id,
            status,
            ..
        } => format!("{} {status:<8} {id} {task_id}", at(at_ms)),
        Entry::Released { id, at_ms, reason } => format!("{} released {id}: {reason}", at(at_ms)),
    }
}

fn print(as_json: bool, value: &Value, text: &str) {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON prints")
        );
    } else {
        println!("{text}");
    }
}
