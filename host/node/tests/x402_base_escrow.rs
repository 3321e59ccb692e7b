//! A gateway accepting the Base task escrow (`--rail x402-base-escrow`), paid over real
//! HTTP on 127.0.0.1 — by the official x402 client too — on a real local chain: anvil with
//! the EIP-3009 test token at the Base USDC address and the committed escrow factory. The
//! money is in the task's escrow before any work; the contract pays each payee of the
//! settlement receipt, or returns everything to the buyer.

mod common;

use std::path::Path;

use common::{install, json_transform, serve};
use d402_payment::x402::{PaymentPayload, encode_header, headers};
use d402_payment::{Payer, Purchase, RailId};
use d402_protocol::Timestamp;
use d402_rail_x402_evm::devchain::DevChain;
use d402_rail_x402_evm::escrow::EscrowTerms;
use d402_rail_x402_evm::{Address, BASE_USDC, EvmNetwork, EvmPayer, PrivateKeySigner};
use serde_json::{Value, json};

/// json-transform's price in atomic units ($0.0001).
const PRICE: u64 = 100;
const FUNDS: u64 = 1_000_000;
const MATURITY: &str =
    "Base task escrow: implemented, tested on a local chain; not audited — cap balances";

struct Chain {
    dev: DevChain,
    buyer: PrivateKeySigner,
    factory: Address,
    /// The gateway's own EVM wallet (its local workers' nets and its validator fee).
    own: Address,
}

impl Chain {
    async fn start() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dev = DevChain::start(&DevChain::anvil_path(&root).unwrap(), 8453, 0).unwrap();
        dev.install_test_usdc(BASE_USDC).await.unwrap();
        let factory = dev.deploy_escrow_factory().await.unwrap();
        let buyer = PrivateKeySigner::random();
        dev.mint(BASE_USDC, buyer.address(), FUNDS).await.unwrap();
        Self {
            dev,
            buyer,
            factory,
            own: PrivateKeySigner::random().address(),
        }
    }

    fn payer(&self) -> EvmPayer {
        EvmPayer::new(
            self.buyer.clone(),
            vec![(EvmNetwork::BASE, BASE_USDC)],
            1_000_000,
        )
    }

    async fn balance(&self, account: Address) -> u64 {
        self.dev.balance(BASE_USDC, account).await.unwrap()
    }

    /// Configures `config` for `--rail x402-base-escrow` on this chain, the operator key in
    /// a 0600 file, a 5% validator fee.
    fn configure(&self, config: &mut d402_node::NodeConfig, state: &Path) {
        let key_file = state.join("escrow-operator.key");
        let _ = std::fs::remove_file(&key_file);
        d402_rail_x402_evm::write_key(&key_file, &self.dev.account(1)).unwrap();
        config.rails.accepted = vec![RailId::X402BaseEscrow];
        config.x402.evm_rpc_url = Some(self.dev.rpc_url().to_string());
        config.x402.escrow_factory_address = Some(self.factory.to_string());
        config.x402.escrow_tx_key_file = Some(key_file);
        config.x402.evm_payout_wallet = Some(self.own.to_string());
        config.node.validator_fee_bps = 500;
    }
}

fn body(key: &str) -> Value {
    json!({"input": {"value": {"k": key}, "select": ["k"]}})
}

/// The escrow terms of a stored task.
fn terms_of(node: &common::Node, task_id: &str) -> EscrowTerms {
    let record = node.gateway.store().task(task_id).unwrap().unwrap();
    serde_json::from_value(record.payment.proof["terms"].clone()).unwrap()
}

/// A signed `PAYMENT-SIGNATURE` header for `body` from a fresh challenge of `node`.
async fn pay(node: &common::Node, chain: &Chain, body: &Value) -> String {
    let challenge = node.challenge(body).await;
    let purchase = Purchase {
        resource: Some(&challenge.resource),
        body,
        now: Timestamp::now(),
    };
    let payment: PaymentPayload = chain
        .payer()
        .pay(&challenge.accepts[0], &purchase)
        .await
        .unwrap();
    encode_header(&payment)
}

/// Runs `interop/x402/pay-d402.mjs` (the official `@x402/fetch` + `@x402/evm` client with a
/// viem local account) against `url` with `body`; the JSON it prints.
async fn official_pay(url: &str, body: &Value, key: &PrivateKeySigner) -> Value {
    let env = [("BUYER_KEY", key.to_bytes().to_string())];
    common::official_client("x402/pay-d402.mjs", url, body, &env).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stock_x402_client_funds_the_escrow_and_the_contract_pays_each_payee() {
    let chain = Chain::start().await;
    let creator = PrivateKeySigner::random().address();
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    common::register(dir.path(), &manifest, |r| {
        r.creator_commission = Some(d402_protocol::CreatorCommission::new(
            1000,
            creator.to_string(),
            "base".into(),
        ));
    });
    let state = dir.path().to_path_buf();
    let node = serve(dir, |c| {
        chain.configure(c, &state);
        c.capabilities.require_registration = true;
    })
    .await
    .unwrap();

    // The challenge: an ordinary x402 `exact` requirement whose payTo is a fresh escrow;
    // discovery says what the rail is and how far to trust it.
    let request = body("escrow");
    let first = node.challenge(&request).await;
    let second = node.challenge(&request).await;
    let offer = &first.accepts[0];
    assert_eq!(
        (offer.scheme.as_str(), offer.network.as_str()),
        ("exact", "eip155:8453")
    );
    assert_eq!(offer.amount, PRICE.to_string());
    assert_eq!(offer.extra["name"], "USD Coin");
    assert_eq!(offer.extra["d402Escrow"]["maxCommissionBps"], 2000);
    assert_ne!(
        offer.pay_to, second.accepts[0].pay_to,
        "an escrow per challenge"
    );
    let discovery = node.get("/.well-known/d402-gateway.json").await.1;
    assert_eq!(discovery["payment"]["rails"][0]["rail"], "x402-base-escrow");
    assert_eq!(discovery["payment"]["rails"][0]["maturity"], MATURITY);
    let health = node.get("/health").await.1;
    assert_eq!(health["paymentReady"], true, "{health}");

    let report = official_pay(&format!("{}/tasks", node.base), &request, &chain.buyer).await;
    assert_eq!(report["status"], 200, "{report}");
    let task = &report["body"];
    assert_eq!(task["status"], "accepted", "{report}");
    assert_eq!(task["result"]["result"], json!({"k": "escrow"}));
    let settled = &report["paymentResponse"];
    assert_eq!(settled["success"], true, "{report}");
    let transaction = settled["transaction"].as_str().unwrap();
    assert_eq!(transaction.len(), 66);

    // Each payout of the settlement receipt was credited on chain to its address by the
    // settlement transaction: worker net and validator fee to the gateway's wallet, the
    // creator's commission (from its signed registration) to the creator.
    let task_id = task["taskId"].as_str().unwrap();
    let receipt = node.get(&format!("/tasks/{task_id}/receipt")).await.1;
    let payouts = receipt["settlement"]["payouts"].as_array().unwrap().clone();
    let reasons: Vec<&str> = payouts
        .iter()
        .map(|p| p["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["accepted-result", "creator-commission", "validator-fee"],
        "{receipt}"
    );
    let amount = |i: usize| (payouts[i]["amount"].as_f64().unwrap() * 1e6).round() as u64;
    assert_eq!((amount(0), amount(1), amount(2)), (85, 10, 5));
    for payout in &payouts {
        assert_eq!(payout["transaction"], transaction, "{payout}");
    }
    let address = |i: usize| {
        payouts[i]["address"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap()
    };
    assert_eq!(
        (address(0), address(1), address(2)),
        (chain.own, creator, chain.own)
    );
    assert_eq!(chain.balance(creator).await, 10);
    assert_eq!(chain.balance(chain.own).await, 85 + 5);
    assert_eq!(
        chain.balance(chain.buyer.address()).await,
        FUNDS - PRICE,
        "down by exactly the price"
    );
    let escrow = terms_of(&node, task_id).escrow_address(chain.factory);
    assert_eq!(chain.balance(escrow).await, 0, "the escrow is empty");
}

#[tokio::test]
async fn a_rejected_task_is_refunded_from_the_escrow_on_chain() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    common::install_hostile(dir.path(), 5_000);
    let state = dir.path().to_path_buf();
    let node = serve(dir, |c| {
        chain.configure(c, &state);
        c.node.capability = "test.hostile@1".into();
    })
    .await
    .unwrap();
    let request = json!({"input": {"behaviour": "panic"}});
    let payment = pay(&node, &chain, &request).await;
    let response = node.post(&request, Some(&payment)).await;
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.unwrap();
    assert_eq!(task["status"], "rejected", "{task}");
    let task_id = task["taskId"].as_str().unwrap();
    let record = node.gateway.store().task(task_id).unwrap().unwrap();
    assert_eq!(
        record.payment.reference.len(),
        66,
        "the escrow was funded before the work"
    );
    let refund = &task["settlement"]["refunds"][0];
    assert_eq!(refund["transaction"].as_str().unwrap().len(), 66, "{task}");
    assert_ne!(refund["transaction"], json!(record.payment.reference));
    assert_eq!(
        chain.balance(chain.buyer.address()).await,
        FUNDS,
        "the buyer is whole"
    );
    let escrow = terms_of(&node, task_id).escrow_address(chain.factory);
    assert_eq!(chain.balance(escrow).await, 0);
}

#[tokio::test]
async fn forged_or_misdirected_escrow_payments_and_replays_move_nothing_twice() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    let state = dir.path().to_path_buf();
    let node = serve(dir, |c| chain.configure(c, &state)).await.unwrap();
    let request = body("attacks");
    let refused = async |payment: &PaymentPayload| {
        let response = node.post(&request, Some(&encode_header(payment))).await;
        assert_eq!(response.status(), 402);
        response.json::<Value>().await.unwrap()["error"]["code"].clone()
    };
    let signed =
        |header: &str| d402_payment::x402::decode_header::<PaymentPayload>(header).unwrap();

    // A payTo for terms the gateway never issued (the buyer's own salt).
    let mut invented = signed(&pay(&node, &chain, &request).await);
    invented.accepted.extra["d402Escrow"]["salt"] = json!(format!("0x{}", "07".repeat(32)));
    assert_eq!(refused(&invented).await, "wrong_payee");
    // A funding authorization for another challenge's escrow.
    let mut misdirected = signed(&pay(&node, &chain, &request).await);
    misdirected.accepted = node.challenge(&request).await.accepts[0].clone();
    assert_eq!(refused(&misdirected).await, "wrong_payee");
    assert_eq!(
        chain.balance(chain.buyer.address()).await,
        FUNDS,
        "nothing moved"
    );

    // Concurrent and later replays of one payment: one escrow funded, one task.
    let payment = pay(&node, &chain, &request).await;
    let responses =
        futures_util::future::join_all((0..8).map(|_| node.post(&request, Some(&payment)))).await;
    let mut task_ids = Vec::new();
    for response in responses {
        let status = response.status();
        let task: Value = response.json().await.unwrap();
        assert!([200, 202].contains(&status.as_u16()), "{status}: {task}");
        task_ids.push(task["taskId"].as_str().unwrap().to_string());
    }
    task_ids.dedup();
    assert_eq!(task_ids.len(), 1, "one task");
    let replay = node.post(&request, Some(&payment)).await;
    assert_eq!(replay.headers()["x-d402-idempotent-replay"], "true");
    assert!(replay.headers().contains_key(headers::PAYMENT_RESPONSE));
    assert_eq!(
        chain.balance(chain.buyer.address()).await,
        FUNDS - PRICE,
        "charged once"
    );
    assert_eq!(chain.balance(chain.own).await, PRICE, "paid out once");
}
