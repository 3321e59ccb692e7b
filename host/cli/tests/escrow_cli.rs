//! The Base task escrow from the command line, on a local anvil chain:
//! - `d402 devnet --rail x402-base-escrow` deploys the factory and a quorum network whose
//!   workers each announce an EVM payout wallet; the printed `d402 x402-task` command pays
//!   into the task's escrow and the contract pays the two agreeing workers on chain;
//! - a node killed (SIGKILL) after its settlement decision is stored but before the
//!   settlement transaction is mined is finished by `d402 escrow-finalizer`: exactly one
//!   `Settled` event, every payee paid once;
//! - a gateway killed for good never settles: after the deadline anyone reclaims the escrow
//!   for the buyer, with the terms the buyer's 402 challenge showed.
//!
//! The "sent but not mined" window is made reproducible by turning anvil's automatic
//! mining off: transactions wait in its pool until the test mines or drops them.

mod common;

use std::path::Path;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use common::{NodeProcess, install};
use d402_payment::x402::PaymentRequired;
use d402_rail_x402_evm::devchain::DevChain;
use d402_rail_x402_evm::escrow::bindings::TaskEscrowFactory;
use d402_rail_x402_evm::escrow::{ESCROW_EXTRA, EscrowOffer, EscrowOperator, EscrowTerms};
use d402_rail_x402_evm::{BASE_USDC, PrivateKeySigner};
use serde_json::{Value, json};

const PRICE: u64 = 100;
const FUNDS: u64 = 1_000_000;

/// anvil (chain id 8453) with the test token at the Base USDC address, the escrow factory
/// and a buyer holding [`FUNDS`].
struct Chain {
    dev: DevChain,
    factory: Address,
    buyer: PrivateKeySigner,
}

impl Chain {
    /// The factory is deployed by `d402 escrow deploy`, its key from the environment.
    fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let dev = DevChain::start(&common::anvil(), 8453, 0).unwrap();
        let buyer = PrivateKeySigner::random();
        runtime.block_on(async {
            dev.install_test_usdc(BASE_USDC).await.unwrap();
            dev.mint(BASE_USDC, buyer.address(), FUNDS).await.unwrap();
        });
        let deploy = |key: Option<String>| {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_d402"));
            command.args(["escrow", "deploy", "--rpc-url", dev.rpc_url().as_str()]);
            command.env_remove("D402_ESCROW_TX_PRIVATE_KEY");
            if let Some(key) = key {
                command.env("D402_ESCROW_TX_PRIVATE_KEY", key);
            }
            command.output().unwrap()
        };
        let keyless = deploy(None);
        assert!(!keyless.status.success());
        let error = String::from_utf8_lossy(&keyless.stderr);
        assert!(error.contains("D402_ESCROW_TX_PRIVATE_KEY"), "{error}");
        let deployed = deploy(Some(dev.account(0).to_bytes().to_string()));
        assert!(deployed.status.success(), "{deployed:?}");
        let factory: Address = String::from_utf8_lossy(&deployed.stdout)
            .trim()
            .parse()
            .unwrap();
        let reader = d402_rail_x402_evm::Chain::connect(dev.rpc_url(), BASE_USDC);
        assert!(
            runtime.block_on(reader.has_code(factory)).unwrap(),
            "deployed"
        );
        Self {
            dev,
            factory,
            buyer,
        }
    }

    /// A runtime, a fresh chain, and json-transform installed in `dir`; a wallet for the
    /// node's own earnings.
    fn with_node_state(dir: &Path) -> (tokio::runtime::Runtime, Self, Address) {
        install(dir, "json-transform", "json_transform.wasm");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let chain = Self::start(&runtime);
        (runtime, chain, PrivateKeySigner::random().address())
    }

    /// `d402 node` flags for the escrow rail on this chain (operator key in `op.key`).
    fn node_args(&self, dir: &Path, wallet: Address, extra: &[&str]) -> Vec<String> {
        d402_rail_x402_evm::write_key(&dir.join("op.key"), &self.dev.account(1)).unwrap();
        let mut args: Vec<String> = [
            "--capability",
            "util.json_transform@1",
            "--rail",
            "x402-base-escrow",
            "--evm-rpc-url",
            self.dev.rpc_url().as_str(),
            "--escrow-factory-address",
            &self.factory.to_string(),
            "--escrow-tx-key-file",
            "op.key",
            "--evm-payout-wallet",
            &wallet.to_string(),
        ]
        .map(str::to_string)
        .into();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }

    async fn balance(&self, account: Address) -> u64 {
        self.dev.balance(BASE_USDC, account).await.unwrap()
    }

    /// Waits until `count` transactions wait in the pool.
    async fn wait_pending(&self, count: u64) {
        for _ in 0..600 {
            if self.dev.pending().await.unwrap() == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never {count} pending transactions");
    }

    /// How many `Settled` events the factory emitted.
    async fn settled_events(&self) -> usize {
        let provider = ProviderBuilder::new().connect_http(self.dev.rpc_url());
        let filter = Filter::new()
            .address(self.factory)
            .event_signature(TaskEscrowFactory::Settled::SIGNATURE_HASH)
            .from_block(0);
        provider.get_logs(&filter).await.unwrap().len()
    }
}

/// Pays `body` at the gateway `base` in the background (the POST returns once the escrow is
/// funded); the challenge it paid and the paid response.
async fn pay_task(
    base: &str,
    body: &Value,
    buyer: &PrivateKeySigner,
) -> (PaymentRequired, tokio::task::JoinHandle<reqwest::Response>) {
    let client = d402_client::http_client();
    let url = format!("{base}/tasks");
    let (challenge, payment) = common::x402_payment(&client, base, body, buyer).await;
    let body = body.clone();
    let paid = tokio::spawn(async move {
        client
            .post(&url)
            .header("payment-signature", payment)
            .json(&body)
            .send()
            .await
            .unwrap()
    });
    (challenge, paid)
}

/// The escrow terms a challenge offered.
fn terms_of(challenge: &PaymentRequired) -> EscrowTerms {
    let requirement = &challenge.accepts[0];
    let offer: EscrowOffer =
        serde_json::from_value(requirement.extra[ESCROW_EXTRA].clone()).unwrap();
    offer.terms(BASE_USDC).unwrap()
}

/// Starts the node, pays one task with mining off: the funding is mined, the task runs and
/// its settlement transaction is left waiting in the pool. Returns the node, the challenge
/// and the task id.
fn settle_pending(
    runtime: &tokio::runtime::Runtime,
    chain: &Chain,
    dir: &Path,
    args: &[String],
) -> (NodeProcess, PaymentRequired, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = NodeProcess::start(dir, &args);
    let body = json!({"sync": false, "input": {"value": {"k": "escrow"}, "select": ["k"]}});
    let (challenge, task_id) = runtime.block_on(async {
        chain.dev.set_automine(false).await.unwrap();
        let (challenge, paid) = pay_task(&node.base, &body, &chain.buyer).await;
        chain.wait_pending(1).await;
        chain.dev.mine().await.unwrap();
        let paid = paid.await.unwrap();
        assert_eq!(paid.status(), 202, "funded, then accepted for work");
        let task: Value = paid.json().await.unwrap();
        // The task ran and its settlement was decided and sent: it waits to be mined.
        chain.wait_pending(1).await;
        let task_id = task["taskId"].as_str().unwrap().to_string();
        let stored: Value = d402_client::http_client()
            .get(format!("{}/tasks/{task_id}", node.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stored["status"], "settling", "{stored}");
        (challenge, task_id)
    });
    (node, challenge, task_id)
}

#[test]
fn a_node_killed_before_its_settlement_is_mined_is_finished_once_by_the_finalizer() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (runtime, chain, wallet) = Chain::with_node_state(dir);
    let args = chain.node_args(dir, wallet, &[]);
    let (mut node, challenge, task_id) = settle_pending(&runtime, &chain, dir, &args);
    node.kill();

    // The pending settlement may still be mined; the finalizer must not pay twice either way.
    runtime.block_on(chain.dev.set_automine(true)).unwrap();
    let mut finalizer = vec![
        "escrow-finalizer",
        "--state",
        "state",
        "--timeout-seconds",
        "60",
    ];
    finalizer.extend(args.iter().map(String::as_str));
    let (code, out, err) = common::d402(dir, &finalizer);
    assert_eq!(code, 0, "{out} {err}");
    assert!(err.contains("confirmed on chain"), "{err}");
    let escrow = terms_of(&challenge).escrow_address(chain.factory);
    runtime.block_on(async {
        assert_eq!(chain.settled_events().await, 1, "settled exactly once");
        assert_eq!(
            chain.balance(wallet).await,
            PRICE,
            "the worker's net, paid once"
        );
        assert_eq!(chain.balance(chain.buyer.address()).await, FUNDS - PRICE);
        assert_eq!(chain.balance(escrow).await, 0);
    });
    let store = d402_store::NodeStore::open(&dir.join("state/node.redb")).unwrap();
    let record = store.task(&task_id).unwrap().unwrap();
    assert_eq!(record.status.as_str(), "accepted");
    let receipts = store.receipts(&task_id).unwrap().unwrap();
    let payout = &receipts.settlement_receipt.payload.payouts[0];
    assert_eq!(payout.transaction.as_deref().map(str::len), Some(66));
    // Run again: nothing left to do, nothing sent.
    drop(store);
    let (code, _, err) = common::d402(dir, &finalizer);
    assert_eq!(code, 0, "{err}");
    assert_eq!(runtime.block_on(chain.settled_events()), 1);
}

#[test]
fn a_gateway_gone_for_good_lets_anyone_reclaim_the_escrow_for_the_buyer() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (runtime, chain, wallet) = Chain::with_node_state(dir);
    let args = chain.node_args(dir, wallet, &["--escrow-settle-window-seconds", "120"]);
    let (mut node, challenge, _) = settle_pending(&runtime, &chain, dir, &args);
    // The gateway dies and its settlement never reaches a block.
    node.kill();
    let terms = terms_of(&challenge);
    let escrow = terms.escrow_address(chain.factory);
    runtime.block_on(async {
        chain.dev.drop_pending().await.unwrap();
        chain.dev.set_automine(true).await.unwrap();
        assert_eq!(chain.balance(escrow).await, PRICE, "held, not settled");
        // Before the deadline, a stranger cannot take it back.
        let stranger = EscrowOperator::new(
            chain.dev.account(7),
            chain.dev.rpc_url(),
            chain.factory,
            BASE_USDC,
        );
        assert!(stranger.refund(&terms).await.is_err());
        chain.dev.advance_time(300 + 120 + 60).await.unwrap();
        let transaction = stranger.refund(&terms).await.unwrap();
        stranger
            .chain()
            .wait_receipt(transaction, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(chain.balance(escrow).await, 0);
        assert_eq!(
            chain.balance(chain.buyer.address()).await,
            FUNDS,
            "the buyer is whole"
        );
        assert_eq!(chain.balance(wallet).await, 0);
        assert_eq!(chain.settled_events().await, 0);
    });
}

#[test]
fn devnet_with_the_escrow_pays_the_two_agreeing_workers_on_chain() {
    let root = tempfile::tempdir().unwrap();
    let devnet = common::Devnet::start(
        root.path(),
        &common::anvil(),
        &[
            "--rail",
            "x402-base-escrow",
            "--workers",
            "3",
            "--validators",
            "0",
            "--mode",
            "quorum",
        ],
    );
    let wallets: Vec<Address> = devnet
        .lines
        .iter()
        .filter_map(|l| l.split_once(" is paid at "))
        .map(|(_, wallet)| wallet.parse().unwrap())
        .collect();
    assert_eq!(wallets.len(), 3, "every worker has a payout wallet");
    let args: Vec<&str> = devnet.buyer.iter().map(String::as_str).collect();
    let (code, out, err) = common::d402(root.path(), &args);
    let log = std::fs::read_to_string(root.path().join("devnet/gateway.log")).unwrap_or_default();
    assert_eq!(code, 0, "{out} {err}\ngateway log:\n{log}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["task"]["status"], "accepted", "{out}");
    let payouts = out["receipt"]["settlement"]["payouts"]
        .as_array()
        .unwrap()
        .clone();
    let workers: Vec<&Value> = payouts
        .iter()
        .filter(|p| p["reason"] == "accepted-result")
        .collect();
    assert_eq!(workers.len(), 2, "two agreeing workers: {out}");
    let reader = d402_rail_x402_evm::Chain::connect(devnet.chain_url().parse().unwrap(), BASE_USDC);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for payout in workers {
        let address: Address = payout["address"].as_str().unwrap().parse().unwrap();
        assert!(
            wallets.contains(&address),
            "paid at the wallet the worker announced: {payout}"
        );
        let credited = runtime.block_on(reader.balance(address)).unwrap();
        assert_eq!(
            u64::try_from(credited).unwrap(),
            common::micros(&payout["amount"]),
            "{payout}"
        );
        assert_eq!(payout["transaction"], out["paymentResponse"]["transaction"]);
    }
    assert!(devnet.stop());
}
