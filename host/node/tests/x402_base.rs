//! A gateway accepting x402 `exact` on Base (`--rail x402-base`), paid over real HTTP on
//! 127.0.0.1 and settled on a real local chain: anvil with the EIP-3009 test token at the
//! Base USDC address.

mod common;

use std::path::Path;

use common::{install, json_transform, serve};
use d402_client::Client;
use d402_payment::x402::{PaymentPayload, decode_header, encode_header, headers};
use d402_payment::{Payer, Purchase, RailId};
use d402_protocol::Timestamp;
use d402_rail_x402_evm::devchain::DevChain;
use d402_rail_x402_evm::{Address, BASE_USDC, EvmNetwork, EvmPayer, PrivateKeySigner};
use serde_json::{Value, json};

/// json-transform's price in atomic units ($0.0001).
const PRICE: u64 = 100;
const FUNDS: u64 = 1_000_000;

struct Chain {
    dev: DevChain,
    buyer: PrivateKeySigner,
    pay_to: Address,
}

impl Chain {
    async fn start() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dev = DevChain::start(&DevChain::anvil_path(&root).unwrap(), 8453, 0).unwrap();
        dev.install_test_usdc(BASE_USDC).await.unwrap();
        let buyer = PrivateKeySigner::random();
        dev.mint(BASE_USDC, buyer.address(), FUNDS).await.unwrap();
        Self {
            dev,
            buyer,
            pay_to: PrivateKeySigner::random().address(),
        }
    }

    fn payer(&self) -> EvmPayer {
        EvmPayer::new(
            self.buyer.clone(),
            vec![(EvmNetwork::BASE, BASE_USDC)],
            1_000_000,
        )
    }

    async fn balances(&self) -> (u64, u64) {
        (
            self.dev
                .balance(BASE_USDC, self.buyer.address())
                .await
                .unwrap(),
            self.dev.balance(BASE_USDC, self.pay_to).await.unwrap(),
        )
    }

    /// Configures `config` for `--rail x402-base` on this chain, the gas key in a 0600 file.
    fn configure(&self, config: &mut d402_node::NodeConfig, state: &Path) {
        let key_file = state.join("facilitator.key");
        let _ = std::fs::remove_file(&key_file);
        d402_rail_x402_evm::write_key(&key_file, &self.dev.account(1)).unwrap();
        config.rails.accepted = vec![RailId::X402Base];
        config.x402.evm_rpc_url = Some(self.dev.rpc_url().to_string());
        config.x402.provider_payout_wallet = Some(self.pay_to.to_string());
        config.x402.facilitator_key_file = Some(key_file);
    }
}

async fn gateway(chain: &Chain) -> common::Node {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    let state = dir.path().to_path_buf();
    serve(dir, |c| chain.configure(c, &state)).await.unwrap()
}

fn body(key: &str) -> Value {
    json!({"input": {"value": {"k": key}, "select": ["k"]}})
}

/// A signed `PAYMENT-SIGNATURE` header for `body` from the node's challenge.
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

#[tokio::test]
async fn an_x402_payment_runs_a_task_and_settles_exactly_the_price_on_chain() {
    let chain = Chain::start().await;
    let node = gateway(&chain).await;
    let challenge = node.challenge(&body("a")).await;
    let offer = &challenge.accepts[0];
    assert_eq!(
        (offer.network.as_str(), offer.amount.as_str()),
        ("eip155:8453", "100")
    );
    assert_eq!(offer.asset.parse::<Address>().unwrap(), BASE_USDC);
    assert_eq!(offer.pay_to.parse::<Address>().unwrap(), chain.pay_to);
    assert_eq!(offer.extra, json!({"name": "USD Coin", "version": "2"}));
    // Discovery and OpenAPI say which rail this is, where it pays, and how real it is.
    let maturity = "implemented, tested on a local chain; not audited";
    let discovery = node.get("/.well-known/d402-gateway.json").await.1;
    let listed = &discovery["payment"]["rails"][0];
    assert_eq!(
        (&listed["rail"], &listed["maturity"]),
        (&json!("x402-base"), &json!(maturity))
    );
    assert_eq!(
        listed["payTo"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        chain.pay_to
    );
    let openapi = node.get("/openapi.json").await.1;
    let offered = &openapi["paths"]["/tasks"]["post"]["x-payment-info"]["offers"][0];
    assert_eq!(
        (&offered["rail"], &offered["network"], &offered["maturity"]),
        (&json!("x402-base"), &json!("eip155:8453"), &json!(maturity))
    );
    assert_eq!(
        offered["payTo"]
            .as_str()
            .unwrap()
            .parse::<Address>()
            .unwrap(),
        chain.pay_to
    );

    let client = Client::new(&node.base).unwrap();
    let outcome = client.run_task(&body("a"), &chain.payer()).await.unwrap();
    assert_eq!(outcome.task["status"], "accepted", "{}", outcome.task);
    assert_eq!(outcome.task["result"]["result"], json!({"k": "a"}));
    let settled = outcome.payment_response.expect("PAYMENT-RESPONSE");
    assert!(settled.success);
    assert_eq!(settled.network, "eip155:8453");
    assert_eq!(settled.amount.as_deref(), Some("100"));
    assert_eq!(
        settled.payer.unwrap().parse::<Address>().unwrap(),
        chain.buyer.address()
    );
    assert!(
        settled.transaction.starts_with("0x") && settled.transaction.len() == 66,
        "a transaction hash: {}",
        settled.transaction
    );
    assert_eq!(chain.balances().await, (FUNDS - PRICE, PRICE));
    assert_eq!(
        outcome.receipt["payment"]["transaction"],
        settled.transaction
    );
}

#[tokio::test]
async fn a_replayed_or_rebound_or_concurrent_authorization_pays_once() {
    let chain = Chain::start().await;
    let node = gateway(&chain).await;
    let request = body("once");
    let payment = pay(&node, &chain, &request).await;

    // Twenty concurrent requests with one authorization: one task, one transfer. The
    // first runs it; the others are replays, answered 202 while it is still settling.
    let responses =
        futures_util::future::join_all((0..20).map(|_| node.post(&request, Some(&payment)))).await;
    let mut task_ids = Vec::new();
    for response in responses {
        assert!([200, 202].contains(&response.status().as_u16()));
        let task: Value = response.json().await.unwrap();
        task_ids.push(task["taskId"].as_str().unwrap().to_string());
    }
    task_ids.dedup();
    assert_eq!(task_ids.len(), 1, "one task");
    assert_eq!(
        chain.balances().await,
        (FUNDS - PRICE, PRICE),
        "one transfer"
    );

    // Replayed later: the same task, marked as a replay, nothing moves.
    let replay = node.post(&request, Some(&payment)).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["x-d402-idempotent-replay"], "true");
    let settled: Value = decode_header(
        replay.headers()[headers::PAYMENT_RESPONSE]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(settled["success"], true);
    assert_eq!(replay.json::<Value>().await.unwrap()["taskId"], task_ids[0]);

    // The same authorization re-bound to another body: 409, nothing moves.
    let rebound = node.post(&body("other"), Some(&payment)).await;
    assert_eq!(rebound.status(), 409);
    assert_eq!(chain.balances().await, (FUNDS - PRICE, PRICE));
}

#[tokio::test]
async fn a_rejected_task_transfers_nothing() {
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
    assert!(
        !response.headers().contains_key(headers::PAYMENT_RESPONSE),
        "no settlement to report"
    );
    let task: Value = response.json().await.unwrap();
    assert_eq!(task["status"], "rejected", "{task}");
    assert_eq!(chain.balances().await, (FUNDS, 0), "nothing transferred");
}

#[tokio::test]
async fn a_gateway_refuses_to_start_without_what_the_rail_needs() {
    let chain = Chain::start().await;
    for (unset, expected) in [
        ("rpc", "D402_EVM_RPC_URL"),
        ("wallet", "D402_PROVIDER_PAYOUT_WALLET"),
        ("key", "gas key"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_path_buf();
        let result = serve(dir, |c| {
            chain.configure(c, &state);
            match unset {
                "rpc" => c.x402.evm_rpc_url = None,
                "wallet" => c.x402.provider_payout_wallet = None,
                _ => c.x402.facilitator_key_file = None,
            }
        })
        .await;
        let error = format!("{:#}", result.err().expect("refused"));
        assert!(error.contains(expected), "{unset}: {error}");
    }
}

#[tokio::test]
async fn health_reports_the_rails_readiness_and_no_key() {
    let chain = Chain::start().await;
    let node = gateway(&chain).await;
    let (status, health) = node.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["paymentReady"], true, "{health}");
    let rail = &health["policy"]["rails"][0];
    assert_eq!(rail["rail"], "x402-base");
    assert_eq!(
        rail["maturity"],
        "implemented, tested on a local chain; not audited"
    );
    let checks: Vec<(&str, bool)> = rail["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [("rpc", true), ("chainId", true), ("gasSigner", true)]
    );
    let gas = &rail["checks"][2]["balance"];
    assert_eq!(
        (gas["asset"].as_str(), gas["decimals"].as_u64()),
        (Some("ETH"), Some(18)),
        "{rail}"
    );
    let wei: u128 = gas["atomic"].as_str().unwrap().parse().unwrap();
    assert!(wei > 0, "{rail}");
    let gas_key = chain.dev.account(1).to_bytes().to_string();
    assert!(
        !health.to_string().contains(&gas_key[2..]),
        "no key in /health"
    );

    // A gas signer with no ETH cannot settle: the rail is reported not ready.
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    let state = dir.path().to_path_buf();
    let broke = serve(dir, |c| {
        chain.configure(c, &state);
        let key_file = state.join("broke.key");
        d402_rail_x402_evm::write_key(&key_file, &PrivateKeySigner::random()).unwrap();
        c.x402.facilitator_key_file = Some(key_file);
    })
    .await
    .unwrap();
    let health = broke.get("/health").await.1;
    assert_eq!(health["paymentReady"], false, "{health}");
    assert_eq!(health["policy"]["rails"][0]["checks"][2]["ok"], false);
    assert_eq!(
        health["policy"]["rails"][0]["checks"][2]["balance"]["atomic"],
        "0"
    );
}

/// Runs the Node script `interop/x402/<script>` with the official x402 packages on `url`
/// and `body` (and `BUYER_KEY`, when paying); returns the JSON it prints.
async fn official(script: &str, url: &str, body: &Value, key: Option<&PrivateKeySigner>) -> Value {
    let env: Vec<(&str, String)> = key
        .map(|key| ("BUYER_KEY", key.to_bytes().to_string()))
        .into_iter()
        .collect();
    common::official_client(&format!("x402/{script}"), url, body, &env).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_x402_client_lists_and_pays_for_page_to_markdown_and_json_transform() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    let page_price = common::install_page_to_markdown(dir.path());
    let state = dir.path().to_path_buf();
    let node = serve(dir, |c| {
        chain.configure(c, &state);
        c.browser.allow_private_addresses = true;
    })
    .await
    .unwrap();
    let page = d402_testkit::serve_html(
        "<html><head><title>Paid</title></head><body><article><h1>Paid page</h1>\
         <p>This page was paid for by the official x402 client on a local chain.</p>\
         </article></body></html>",
    );
    let cases = [
        (
            format!("{}/tasks", node.base),
            json!({"capabilityId": "util.json_transform@1", "input": {"value": {"k": "x402"}, "select": ["k"]}}),
            PRICE,
        ),
        (
            format!("{}/v1/web/page-to-markdown", node.base),
            json!({"url": page}),
            page_price,
        ),
    ];
    let mut spent = 0;
    for (url, body, price) in cases {
        // x402 catalogs can index the route: the official validators accept its bazaar
        // extension, which describes the body this route takes.
        let bazaar = official("check-bazaar.mjs", &url, &body, None).await;
        assert_eq!(bazaar["status"], 402);
        assert_eq!(
            (&bazaar["valid"], &bazaar["spec"]),
            (&json!(true), &json!(true)),
            "{bazaar}"
        );
        assert_eq!(bazaar["extension"]["info"]["input"]["method"], "POST");
        let before = chain.balances().await;
        let report = official("pay-d402.mjs", &url, &body, Some(&chain.buyer)).await;
        assert_eq!(report["status"], 200, "{report}");
        assert_eq!(report["body"]["status"], "accepted", "{report}");
        let settled = &report["paymentResponse"];
        assert_eq!(settled["success"], true, "{report}");
        assert_eq!(settled["network"], "eip155:8453");
        assert_eq!(settled["transaction"].as_str().unwrap().len(), 66);
        spent += price;
        assert_eq!(
            chain.balances().await,
            (before.0 - price, before.1 + price),
            "buyer down and payTo up by exactly the price"
        );
    }
    assert_eq!(chain.balances().await, (FUNDS - spent, spent));
}

#[tokio::test]
async fn a_capability_with_a_creator_commission_is_not_sold_on_x402_base() {
    let chain = Chain::start().await;
    let with_commission = |rails: Vec<RailId>| {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, bytes) = json_transform();
        install(dir.path(), &manifest, &bytes);
        common::register(dir.path(), &manifest, |r| {
            r.creator_commission = Some(d402_protocol::CreatorCommission::new(
                1000,
                d402_protocol::Keypair::from_seed(&[9; 32])
                    .public()
                    .to_string(),
                "simulated".into(),
            ));
        });
        let state = dir.path().to_path_buf();
        let chain = &chain;
        async move {
            serve(dir, |c| {
                chain.configure(c, &state);
                c.rails.accepted = rails;
                c.capabilities.require_registration = true;
            })
            .await
            .unwrap()
        }
    };
    // Both rails enabled: only the simulated rail is offered for it.
    let node = with_commission(vec![RailId::Simulated, RailId::X402Base]).await;
    let request = body("commission");
    let challenge = node.challenge(&request).await;
    let offered: Vec<&str> = challenge
        .accepts
        .iter()
        .map(|r| r.network.as_str())
        .collect();
    assert_eq!(offered, ["d402:simulated"]);
    // An x402 payment for it anyway is refused before any work, nothing moves.
    let x402 =
        node.gateway.rails().all()[1].requirements(d402_protocol::Amount::from_micros(PRICE), 300);
    let purchase = Purchase {
        resource: None,
        body: &request,
        now: Timestamp::now(),
    };
    let payment = chain.payer().pay(&x402, &purchase).await.unwrap();
    let refused = node.post(&request, Some(&encode_header(&payment))).await;
    assert_eq!(refused.status(), 402);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "rail_not_offered", "{error}");
    assert_eq!(chain.balances().await, (FUNDS, 0));
    // x402-base alone cannot sell it at all: 503 says why and what to enable.
    let node = with_commission(vec![RailId::X402Base]).await;
    let response = node.post(&request, None).await;
    assert_eq!(response.status(), 503);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["code"], "no_rail_sells_capability",
        "{error}"
    );
}

/// The official x402 facilitator served over HTTP (`interop/x402/facilitator-server.mjs`)
/// with `key` as its gas key; killed when dropped.
struct RemoteFacilitator {
    child: std::process::Child,
    url: String,
}

impl RemoteFacilitator {
    fn start(chain: &Chain, key: &PrivateKeySigner) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new("node")
            .arg(d402_testkit::repo_path(
                "interop/x402/facilitator-server.mjs",
            ))
            .env("RPC_URL", chain.dev.rpc_url().to_string())
            .env("FACILITATOR_KEY", key.to_bytes().to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .trim()
            .to_string();
        Self { child, url }
    }
}

impl Drop for RemoteFacilitator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_x402_facilitator_settles_for_the_gateway() {
    let chain = Chain::start().await;
    let facilitator_key = chain.dev.account(3);
    let facilitator = RemoteFacilitator::start(&chain, &facilitator_key);
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    let state = dir.path().to_path_buf();
    let node = serve(dir, |c| {
        chain.configure(c, &state);
        c.x402.facilitator_key_file = None;
        c.x402.facilitator_url = Some(facilitator.url.clone());
    })
    .await
    .unwrap();
    let health = node.get("/health").await.1;
    assert_eq!(health["paymentReady"], true, "{health}");
    assert_eq!(
        health["policy"]["rails"][0]["checks"][2]["name"],
        "facilitator"
    );

    let client = Client::new(&node.base).unwrap();
    let outcome = client
        .run_task(&body("remote"), &chain.payer())
        .await
        .unwrap();
    assert_eq!(outcome.task["status"], "accepted", "{}", outcome.task);
    let settled = outcome.payment_response.expect("PAYMENT-RESPONSE");
    assert!(settled.success);
    assert_eq!(chain.balances().await, (FUNDS - PRICE, PRICE));
    assert_eq!(
        chain.dev.nonce(facilitator_key.address()).await.unwrap(),
        1,
        "the remote facilitator sent the transfer"
    );
    assert_eq!(
        chain
            .dev
            .nonce(chain.dev.account(1).address())
            .await
            .unwrap(),
        0,
        "the gateway's own gas key sent nothing"
    );
}

#[tokio::test]
async fn a_payment_identifier_names_one_task_and_v1_x_payment_works_too() {
    use d402_payment::x402::payment_identifier;
    let chain = Chain::start().await;
    let node = gateway(&chain).await;
    let request = body("identified");
    let with_id = |header: String| {
        let mut payment: PaymentPayload = decode_header(&header).unwrap();
        payment_identifier::append(&mut payment.extensions, "pay_0123456789abcdef0123");
        encode_header(&payment)
    };
    let first = with_id(pay(&node, &chain, &request).await);
    let paid = node.post(&request, Some(&first)).await;
    assert_eq!(paid.status(), 200);
    let task: Value = paid.json().await.unwrap();
    let replay = node.post(&request, Some(&first)).await;
    assert_eq!(
        replay.json::<Value>().await.unwrap()["taskId"],
        task["taskId"]
    );
    // The same identifier on another authorization: 409, and nothing more moves.
    let second = with_id(pay(&node, &chain, &request).await);
    let conflict = node.post(&request, Some(&second)).await;
    assert_eq!(conflict.status(), 409);
    assert_eq!(
        conflict.json::<Value>().await.unwrap()["error"]["code"],
        "payment_identifier_reused"
    );
    assert_eq!(chain.balances().await, (FUNDS - PRICE, PRICE));

    // The v1 header carries the same EVM payload and is answered in kind.
    let request = body("v1");
    let paid = node
        .post_v1(&request, &pay(&node, &chain, &request).await)
        .await;
    assert_eq!(paid.status(), 200);
    let settled: Value = decode_header(
        paid.headers()[headers::X_PAYMENT_RESPONSE]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(settled["success"], true);
    assert_eq!(chain.balances().await, (FUNDS - 2 * PRICE, 2 * PRICE));
}
