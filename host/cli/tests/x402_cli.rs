//! x402 on Base from the command line, on a local anvil chain:
//! - `d402 devnet --rail x402-base` starts the chain and a network, and the `d402 x402-task`
//!   command it prints pays the gateway as printed;
//! - a `d402 node --rail x402-base` killed with SIGKILL after its settlement transaction was
//!   mined but before it recorded it finds the transfer on chain after a restart instead of
//!   sending another — exactly one transfer, the task accepted with that transaction, the
//!   receipt present. The window is made reproducible by an RPC proxy between the node and
//!   anvil that never answers `eth_getTransactionReceipt`: the transaction goes through,
//!   its receipt never comes back.

mod common;

use std::path::Path;
use std::time::Duration;

use axum::body::Bytes;
use common::{NodeProcess, install};
use d402_payment::x402::decode_header;
use d402_rail_x402_evm::devchain::DevChain;
use d402_rail_x402_evm::{BASE_USDC, PrivateKeySigner};
use serde_json::{Value, json};

const PRICE: u64 = 100;
const FUNDS: u64 = 1_000_000;

/// Serves JSON-RPC on a free 127.0.0.1 port, forwarding to `upstream`, except that
/// receipt requests are never answered. Returns the proxy's URL.
async fn receipt_swallowing_proxy(upstream: String) -> String {
    let client = reqwest::Client::new();
    let forward = move |body: Bytes| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            if body.windows(25).any(|w| w == b"eth_getTransactionReceipt") {
                std::future::pending::<()>().await;
            }
            let answer = client
                .post(&upstream)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (
                [("content-type", "application/json")],
                answer.bytes().await.unwrap(),
            )
        }
    };
    let app = axum::Router::new().route("/", axum::routing::post(forward));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn node_args<'a>(rpc: &'a str, pay_to: &'a str) -> Vec<&'a str> {
    vec![
        "--capability",
        "util.json_transform@1",
        "--rail",
        "x402-base",
        "--evm-rpc-url",
        rpc,
        "--provider-payout-wallet",
        pay_to,
        "--x402-facilitator-key-file",
        "gas.key",
    ]
}

/// Posts `body` to the gateway at `base`, pays its 402 with an EIP-3009 authorization from
/// `buyer`, and returns the paid response.
async fn pay_task(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
    buyer: &PrivateKeySigner,
) -> reqwest::Response {
    let (_, payment) = common::x402_payment(client, base, body, buyer).await;
    client
        .post(format!("{base}/tasks"))
        .header("payment-signature", payment)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// anvil (chain id 8453) with the test token at the Base USDC address, and a buyer holding
/// [`FUNDS`] of it.
fn funded_chain(runtime: &tokio::runtime::Runtime) -> (DevChain, PrivateKeySigner) {
    let chain = DevChain::start(&common::anvil(), 8453, 0).unwrap();
    let buyer = PrivateKeySigner::random();
    runtime.block_on(async {
        chain.install_test_usdc(BASE_USDC).await.unwrap();
        chain.mint(BASE_USDC, buyer.address(), FUNDS).await.unwrap();
    });
    (chain, buyer)
}

#[test]
fn devnet_with_x402_base_prints_a_buyer_command_that_pays_on_chain() {
    let root = tempfile::tempdir().unwrap();
    let devnet = common::Devnet::start(
        root.path(),
        &common::anvil(),
        &[
            "--rail",
            "x402-base",
            "--workers",
            "1",
            "--validators",
            "0",
            "--mode",
            "single",
        ],
    );
    devnet.chain_url();
    // As printed, with json-transform's input in place of the example page.
    let args: Vec<&str> = devnet.buyer.iter().map(String::as_str).collect();
    let (code, out, err) = common::d402(root.path(), &args);
    assert_eq!(code, 0, "{out} {err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["task"]["status"], "accepted", "{out}");
    assert_eq!(out["paymentResponse"]["success"], true);
    assert_eq!(out["paymentResponse"]["network"], "eip155:8453");
    // A price above --max-amount is refused before anything is signed.
    let mut capped = args.clone();
    capped.extend(["--max-amount", "0.00001"]);
    let (code, _, err) = common::d402(root.path(), &capped);
    assert_eq!(code, 1);
    assert!(err.contains("no payment this wallet can make"), "{err}");
    assert!(devnet.stop());
}

#[test]
fn a_node_killed_between_settlement_and_its_record_settles_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (chain, buyer) = funded_chain(&runtime);
    let pay_to = PrivateKeySigner::random().address();
    let gas = chain.account(1);
    d402_rail_x402_evm::write_key(&dir.join("gas.key"), &gas).unwrap();
    let proxy = runtime.block_on(receipt_swallowing_proxy(chain.rpc_url().to_string()));
    let pay_to_text = pay_to.to_string();
    // The local worker's net is owed to a wallet of its own, paid after the restart.
    let earnings = PrivateKeySigner::random().address().to_string();
    let with_earnings = |rpc: &str| {
        let mut args: Vec<String> = node_args(rpc, &pay_to_text)
            .into_iter()
            .map(str::to_string)
            .collect();
        args.extend(["--evm-payout-wallet".into(), earnings.clone()]);
        args
    };
    let args = with_earnings(&proxy);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut node = NodeProcess::start(dir, &args);
    let body = json!({"sync": false, "input": {"value": {"k": "crash"}, "select": ["k"]}});
    let client = d402_client::http_client();
    let task_id = runtime.block_on(async {
        let paid = pay_task(&client, &node.base, &body, &buyer).await;
        assert_eq!(paid.status(), 202);
        let task: Value = paid.json().await.unwrap();
        // Wait until the settlement transaction is mined on chain.
        for _ in 0..200 {
            if chain.balance(BASE_USDC, pay_to).await.unwrap() == PRICE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task["taskId"].as_str().unwrap().to_string()
    });
    assert_eq!(
        runtime.block_on(chain.balance(BASE_USDC, pay_to)).unwrap(),
        PRICE,
        "the settlement transaction was mined"
    );
    let task_url = format!("{}/tasks/{task_id}", node.base);
    let before: Value = runtime.block_on(async {
        client
            .get(&task_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(before["status"], "settling", "not recorded yet: {before}");
    assert!(
        before.get("result").is_none(),
        "the result waits for settlement"
    );
    node.kill();

    // Restarted on the same state, straight to the chain: reconciled, not paid again.
    let chain_url = chain.rpc_url().to_string();
    let args = with_earnings(&chain_url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut node = NodeProcess::start(dir, &args);
    let (status, settled, task, receipt) = runtime.block_on(async {
        let response = client
            .get(format!("{}/tasks/{task_id}", node.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let settled: Value =
            decode_header(response.headers()["payment-response"].to_str().unwrap()).unwrap();
        let task: Value = response.json().await.unwrap();
        let receipt = client
            .get(format!("{}/tasks/{task_id}/receipt", node.base))
            .send()
            .await
            .unwrap();
        (status, settled, task, receipt.status().as_u16())
    });
    assert_eq!((status, receipt), (200, 200), "{task}");
    assert_eq!(task["status"], "accepted");
    assert_eq!(task["result"]["result"], json!({"k": "crash"}));
    assert_eq!(settled["success"], true);
    runtime.block_on(async {
        assert_eq!(chain.balance(BASE_USDC, pay_to).await.unwrap(), PRICE);
        assert_eq!(
            chain.balance(BASE_USDC, buyer.address()).await.unwrap(),
            FUNDS - PRICE,
            "exactly one transfer"
        );
        assert_eq!(
            chain.nonce(gas.address()).await.unwrap(),
            1,
            "one transaction sent"
        );
    });
    assert!(settled["transaction"].as_str().unwrap().starts_with("0x"));

    // What the settlement owes survived the crash and is paid once, however often run.
    node.kill();
    let hot = chain.account(4);
    runtime
        .block_on(chain.mint(BASE_USDC, hot.address(), PRICE))
        .unwrap();
    d402_rail_x402_evm::write_key(&dir.join("hot.key"), &hot).unwrap();
    let run = [
        "run",
        "--state",
        "state",
        "--key-file",
        "hot.key",
        "--evm-rpc-url",
        &chain_url,
    ];
    for expected in [
        json!({"paid": 1, "unfinished": 0}),
        json!({"paid": 0, "unfinished": 0}),
    ] {
        let (code, out, err) = payouts(dir, &run);
        assert_eq!(code, 0, "{out} {err}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), expected);
    }
    let earned = runtime
        .block_on(chain.balance(BASE_USDC, earnings.parse().unwrap()))
        .unwrap();
    assert_eq!(earned, PRICE, "the worker's net, paid once");
}

#[test]
fn x402_task_pays_the_official_x402_express_server() {
    use std::io::{BufRead, BufReader};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (chain, buyer) = funded_chain(&runtime);
    let pay_to = PrivateKeySigner::random().address();
    let modules = d402_testkit::repo_path("interop/x402/node_modules/@x402/express");
    assert!(
        modules.exists(),
        "the official x402 server is not installed: run scripts/test.sh, or npm ci in interop/x402"
    );
    let mut server = std::process::Command::new("node")
        .arg(d402_testkit::repo_path("interop/x402/express-server.mjs"))
        .env("RPC_URL", chain.rpc_url().to_string())
        .env("FACILITATOR_KEY", chain.account(1).to_bytes().to_string())
        .env("PAY_TO", pay_to.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .trim()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    d402_rail_x402_evm::write_key(&dir.path().join("buyer.key"), &buyer).unwrap();
    let resource = format!("{base}/paid");
    let (code, out, err) = common::d402(
        dir.path(),
        &[
            "x402-task",
            "--resource",
            &resource,
            "--input",
            r#"{"hello": "x402"}"#,
            "--key-file",
            "buyer.key",
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code, 0, "{out} {err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"]["paid"], true);
    assert_eq!(out["body"]["echo"], json!({"hello": "x402"}));
    assert_eq!(out["paymentResponse"]["success"], true, "{out}");
    let price = 1_000; // $0.001 in USDC atomic units
    runtime.block_on(async {
        assert_eq!(chain.balance(BASE_USDC, pay_to).await.unwrap(), price);
        assert_eq!(
            chain.balance(BASE_USDC, buyer.address()).await.unwrap(),
            FUNDS - price
        );
    });
}

/// A `d402 payouts` command in `dir` with the given arguments; (exit code, stdout, stderr).
fn payouts(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["payouts"];
    all.extend_from_slice(args);
    common::d402(dir, &all)
}

#[test]
fn payouts_owed_survive_a_crash_and_are_paid_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (chain, buyer) = funded_chain(&runtime);
    let pay_to = PrivateKeySigner::random().address();
    let earnings = PrivateKeySigner::random().address();
    let hot = chain.account(4);
    runtime
        .block_on(chain.mint(BASE_USDC, hot.address(), 1_000))
        .unwrap();
    d402_rail_x402_evm::write_key(&dir.join("gas.key"), &chain.account(1)).unwrap();
    d402_rail_x402_evm::write_key(&dir.join("hot.key"), &hot).unwrap();
    let (pay_to_text, earnings_text) = (pay_to.to_string(), earnings.to_string());
    let chain_url = chain.rpc_url().to_string();
    let mut args = node_args(&chain_url, &pay_to_text);
    args.extend([
        "--validator-fee-bps",
        "500",
        "--evm-payout-wallet",
        &earnings_text,
    ]);
    let mut node = NodeProcess::start(dir, &args);
    let client = d402_client::http_client();
    let body = json!({"input": {"value": {"k": "owed"}, "select": ["k"]}});
    runtime.block_on(async {
        let paid = pay_task(&client, &node.base, &body, &buyer).await;
        assert_eq!(paid.status(), 200);
    });
    // SIGKILL: what is owed was recorded with the settled task.
    node.kill();
    let (code, out, err) = payouts(dir, &["list", "--state", "state", "--json"]);
    assert_eq!(code, 0, "{err}");
    let owed: Vec<Value> = serde_json::from_str(&out).unwrap();
    let states: Vec<(&str, &str)> = owed
        .iter()
        .map(|p| {
            (
                p["state"]["status"].as_str().unwrap(),
                p["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("owed", "accepted-result"), ("owed", "validator-fee")],
        "{out}"
    );
    assert!(owed.iter().all(|p| {
        p["address"]
            .as_str()
            .unwrap()
            .parse::<d402_rail_x402_evm::Address>()
            .unwrap()
            == earnings
    }));

    // A payout run killed after its first transfer was mined, before it learnt so.
    let proxy = runtime.block_on(receipt_swallowing_proxy(chain_url.clone()));
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_d402"))
        .args([
            "payouts",
            "run",
            "--state",
            "state",
            "--key-file",
            "hot.key",
        ])
        .args(["--evm-rpc-url", &proxy])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = runtime.block_on(async {
        for _ in 0..200 {
            let balance = chain.balance(BASE_USDC, earnings).await.unwrap();
            if balance > 0 {
                return balance;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        0
    });
    let _ = run.kill();
    let _ = run.wait();
    assert_eq!(first, 95, "the worker's net was sent first");
    let (_, out, _) = payouts(dir, &["list", "--state", "state", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["state"]["status"],
        "sending"
    );

    // Run again: the recorded transfer is found on chain, the rest is paid, nothing twice.
    let run_args = [
        "run",
        "--state",
        "state",
        "--key-file",
        "hot.key",
        "--evm-rpc-url",
        &chain_url,
    ];
    let (code, out, err) = payouts(dir, &run_args);
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"paid": 2, "unfinished": 0})
    );
    let (code, out, _) = payouts(dir, &run_args);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"paid": 0, "unfinished": 0})
    );
    runtime.block_on(async {
        assert_eq!(
            chain.balance(BASE_USDC, earnings).await.unwrap(),
            100,
            "95 + 5, once each"
        );
        assert_eq!(
            chain.nonce(hot.address()).await.unwrap(),
            2,
            "one transaction per payout"
        );
    });
    let (_, out, _) = payouts(dir, &["list", "--state", "state", "--json"]);
    let owed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(owed.iter().all(|p| p["state"]["status"] == "paid"), "{out}");
}
