//! Solana direct USDC from the command line, on the local SVM network:
//! - `d402 devnet --rail solana-direct` starts the network and a peer network, and the
//!   `d402 solana-task` command it prints pays the gateway as printed (`--inspect` only
//!   prints the challenge; a price above `--max-amount` is refused before anything is sent);
//! - a `d402 node --rail solana-direct` killed (SIGKILL) after a refund decision is stored
//!   and before the refund is sent sends exactly one refund after a restart, however often
//!   it restarts.

mod common;

use std::time::Duration;

use common::{NodeProcess, install};
use d402_rail_solana::token::{MEMO_PROGRAM, associated_token_address};
use d402_rail_solana::{Address, SolanaRpc, USDC_MINT};
use d402_solana_devnet::SolanaDevnet;
use serde_json::{Value, json};

#[test]
fn devnet_with_solana_direct_prints_a_buyer_command_that_pays_on_chain() {
    let root = tempfile::tempdir().unwrap();
    let devnet = common::Devnet::start(
        root.path(),
        &common::anvil(),
        &[
            "--rail",
            "solana-direct",
            "--solana-port",
            "0",
            "--workers",
            "1",
            "--validators",
            "0",
            "--mode",
            "single",
        ],
    );
    assert_eq!(devnet.buyer[0], "solana-task", "{:?}", devnet.buyer);
    let args: Vec<&str> = devnet.buyer.iter().map(String::as_str).collect();
    let rpc_url = args[args.iter().position(|a| *a == "--rpc-url").unwrap() + 1].to_string();
    let rpc = SolanaRpc::new(rpc_url.parse().unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Inspect: the challenge, nothing paid.
    let mut inspect = args.clone();
    inspect.push("--inspect");
    let (code, out, err) = common::d402(root.path(), &inspect);
    assert_eq!(code, 0, "{err}");
    let challenge: Value = serde_json::from_str(&out).unwrap();
    let offer = &challenge["accepts"][0];
    assert_eq!(offer["scheme"], "d402-solana-transfer");
    let gateway: Address = offer["payTo"].as_str().unwrap().parse().unwrap();
    let gateway_account = associated_token_address(&gateway, &USDC_MINT);
    assert_eq!(
        runtime
            .block_on(rpc.token_balance(&gateway_account))
            .unwrap(),
        Some(0),
        "the devnet opened the gateway's USDC account; nothing is paid yet"
    );

    // Above --max-amount: refused before anything is sent.
    let mut capped = args.clone();
    capped.extend(["--max-amount", "0.00001"]);
    let (code, _, err) = common::d402(root.path(), &capped);
    assert_eq!(code, 1);
    assert!(err.contains("no payment this wallet can make"), "{err}");

    // As printed: paid, accepted, the transfer on chain.
    let (code, out, err) = common::d402(root.path(), &args);
    assert_eq!(code, 0, "{out} {err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["task"]["status"], "accepted", "{out}");
    assert_eq!(out["task"]["result"]["result"], json!({"k": 1}));
    let price: u64 = out["challenge"]["accepts"][0]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        runtime
            .block_on(rpc.token_balance(&gateway_account))
            .unwrap(),
        Some(price)
    );
    let signature = out["paymentResponse"]["transaction"].as_str().unwrap();
    let landed = runtime
        .block_on(rpc.transaction(&signature.parse().unwrap()))
        .unwrap()
        .expect("the transfer is on chain");
    assert!(
        landed
            .transaction
            .message
            .static_account_keys()
            .contains(&MEMO_PROGRAM)
    );
    assert!(devnet.stop());
}

#[test]
fn a_node_killed_between_its_refund_decision_and_the_refund_refunds_once() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    common::install_hostile(dir, 5_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let network = runtime.block_on(SolanaDevnet::start(0)).unwrap();
    let rpc_url = network.rpc_url().to_string();
    let args = [
        "--capability",
        "test.hostile@1",
        "--rail",
        "solana-direct",
        "--solana-network",
        "solana:localnet",
        "--solana-rpc-url",
        &rpc_url,
    ];
    let mut node = NodeProcess::start(dir, &args);
    let wallet = d402_wallet::load(&dir.join("state/wallet.json")).unwrap();
    let gateway: Address = wallet.public().to_string().parse().unwrap();
    network.fund_sol(&gateway, 1_000_000_000).unwrap();
    let buyer = d402_rail_solana::Keypair::new();
    let buyer_address = d402_rail_solana::Signer::pubkey(&buyer);
    network.fund_sol(&buyer_address, 1_000_000_000).unwrap();
    network.fund_usdc(&buyer_address, 1_000_000).unwrap();

    let payer = d402_rail_solana::SolanaPayer::new(
        buyer,
        SolanaRpc::new(network.rpc_url()),
        d402_rail_solana::SolanaNetwork::Localnet,
        USDC_MINT,
        d402_rail_solana::USDC_DECIMALS,
        1_000_000,
    );
    let body = json!({"input": {"behaviour": "panic"}});
    let task = runtime.block_on(async {
        let client = d402_client::http_client();
        let url = format!("{}/tasks", node.base);
        let challenge = d402_client::Client::new(&node.base)
            .unwrap()
            .challenge(&url, &body)
            .await
            .unwrap();
        let purchase = d402_payment::Purchase {
            resource: None,
            body: &body,
            now: d402_protocol::Timestamp::now(),
        };
        use d402_payment::Payer;
        let payment = payer.pay(&challenge.accepts[0], &purchase).await.unwrap();
        let (name, value) = payer.header(&payment);
        // The refund cannot be sent: the decision is stored, the transfer is not made.
        network.refuse_transactions(true);
        let response = client
            .post(&url)
            .header(name, value)
            .json(&body)
            .send()
            .await
            .unwrap();
        response.json::<Value>().await.unwrap()
    });
    assert_eq!(task["status"], "refunding", "{task}");
    let paid = 1_000_000 - network.usdc_balance(&buyer_address);
    assert!(paid > 0);
    node.kill();

    network.refuse_transactions(false);
    for _ in 0..2 {
        let mut node = NodeProcess::start(dir, &args);
        let task_url = format!("{}/tasks/{}", node.base, task["taskId"].as_str().unwrap());
        let mut settled = Value::Null;
        for _ in 0..100 {
            settled = common::get_json(&task_url);
            if settled["status"] == "rejected" {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(settled["status"], "rejected", "{settled}");
        assert!(
            settled["settlement"]["refunds"][0]["transaction"].is_string(),
            "{settled}"
        );
        node.kill();
    }
    assert_eq!(
        network.usdc_balance(&buyer_address),
        1_000_000,
        "refunded once, in full"
    );
    assert_eq!(network.usdc_balance(&gateway), 0);
}

#[test]
fn payouts_owed_on_solana_are_paid_once_from_a_hot_keypair() {
    use d402_rail_solana::Signer;
    use d402_store::{NodeStore, OwedPayout, PayoutState};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let network = runtime.block_on(SolanaDevnet::start(0)).unwrap();
    let worker = d402_rail_solana::Keypair::new().pubkey();
    // What a settled solana-direct task owes a remote worker: its d402 account, a Solana
    // address.
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let store = NodeStore::open(&dir.join("state/node.redb")).unwrap();
    let owed = OwedPayout {
        task_id: "task:00".into(),
        index: 0,
        rail: d402_payment::RailId::SolanaDirect,
        network: "solana:localnet".into(),
        reason: d402_protocol::PayoutReason::AcceptedResult,
        account: worker.to_string(),
        address: Some(worker.to_string()),
        amount: d402_protocol::Amount::from_micros(4_200),
        state: PayoutState::Owed,
    };
    store.record_payout(&owed).unwrap();
    drop(store);
    // The hot key: a Solana keypair file holding the USDC and the fees.
    let hot = d402_wallet::generate();
    d402_wallet::save(&dir.join("hot.json"), &hot, false).unwrap();
    let hot_address: Address = hot.public().to_string().parse().unwrap();
    network.fund_sol(&hot_address, 1_000_000_000).unwrap();
    network.fund_usdc(&hot_address, 10_000).unwrap();
    let rpc_url = network.rpc_url().to_string();
    let run = [
        "payouts",
        "run",
        "--state",
        "state",
        "--rail",
        "solana-direct",
        "--solana-rpc-url",
        &rpc_url,
        "--key-file",
        "hot.json",
    ];
    for expected in [
        json!({"paid": 1, "unfinished": 0}),
        json!({"paid": 0, "unfinished": 0}),
    ] {
        let (code, out, err) = common::d402(dir, &run);
        assert_eq!(code, 0, "{out} {err}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), expected);
    }
    assert_eq!(network.usdc_balance(&worker), 4_200, "paid once");
    assert_eq!(network.usdc_balance(&hot_address), 10_000 - 4_200);
    let (_, listed, _) = common::d402(dir, &["payouts", "list", "--state", "state", "--json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["state"]["status"], "paid", "{listed}");
}
