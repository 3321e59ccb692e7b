//! A real `d402 node` process on 127.0.0.1: a buyer pays for a local page through
//! web.page_to_markdown@1 end to end, and a node killed with SIGKILL mid-task loses no
//! accepted payment, result or receipt.

mod common;

use common::{
    NodeProcess, buy, d402, funded_buyer, install, micros, ok, paid_out, pay_simulated, task_id_of,
};

use d402_payment::x402::{PaymentRequired, decode_header, encode_header};
use d402_rail_simulated::{SimulatedAuthorization, SimulatedPayment};
use serde_json::{Value, json};

#[test]
fn a_buyer_pays_for_a_local_page_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "page-to-markdown", "page_to_markdown.wasm");
    let buyer = funded_buyer(dir);
    let page = d402_testkit::serve_html(include_str!(
        "../../../capabilities/page-to-markdown/extractor/tests/pages/news-article.html"
    ));
    let node = NodeProcess::start(dir, &["--allow-private-addresses"]);

    // The CLI buyer: discovery, 402, signed payment, result and receipts.
    let out = buy(dir, &node.base, &page, &[]);
    assert_eq!(out["challenge"]["x402Version"], 2);
    assert_eq!(out["challenge"]["accepts"][0]["amount"], "10000");
    let task = &out["task"];
    assert_eq!(task["status"], "accepted", "{task}");
    let result = &task["result"];
    assert!(
        result["markdown"].as_str().unwrap().starts_with("# "),
        "{result}"
    );
    assert!(
        result["contentHash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(result["url"], page.as_str());
    assert_eq!(task["validationReceipt"]["status"], "accepted");
    assert_eq!(out["receipt"]["validationReceipt"]["status"], "accepted");
    assert_eq!(
        paid_out(&out["receipt"]["settlement"]),
        10_000,
        "payouts add up to the price"
    );
    assert_eq!(out["paymentResponse"]["success"], true);

    // The async path.
    let out = buy(dir, &node.base, &page, &["--async"]);
    assert_eq!(out["task"]["status"], "accepted", "{out}");

    // Replay of the same paid request, and the same proof for another task.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = d402_client::http_client();
        let post = |body: &Value, payment: Option<&str>| {
            let mut request = client.post(format!("{}/tasks", node.base)).json(body);
            if let Some(payment) = payment {
                request = request.header("payment-signature", payment);
            }
            request.send()
        };
        let body = json!({"input": {"url": page}});
        let first = post(&body, None).await.unwrap();
        assert_eq!(first.status(), 402);
        let challenge: PaymentRequired = first.json().await.unwrap();
        let payment = pay_simulated(&challenge.accepts[0], &body, &buyer);
        let paid = post(&body, Some(&payment)).await.unwrap();
        assert_eq!(paid.status(), 200);
        let paid: Value = paid.json().await.unwrap();
        let replay = post(&body, Some(&payment)).await.unwrap();
        assert_eq!(replay.headers()["x-d402-idempotent-replay"], "true");
        let replay: Value = replay.json().await.unwrap();
        assert_eq!(replay["taskId"], paid["taskId"]);
        let other = json!({"input": {"url": format!("{page}?other")}});
        let mut reused: SimulatedPayment = decode_header(&payment).unwrap();
        reused.payload = d402_protocol::Signed::sign(
            SimulatedAuthorization {
                task_binding: d402_payment::request_binding(&other),
                ..reused.payload.payload.clone()
            },
            &buyer,
        )
        .unwrap();
        let reused = post(&other, Some(&encode_header(&reused))).await.unwrap();
        assert_eq!(
            reused.status(),
            409,
            "a payment proof pays for one task only"
        );
    });
    drop(node);
    let store = d402_store::NodeStore::open(&dir.join("state/node.redb")).unwrap();
    assert_eq!(
        store.balance(&buyer.public().to_string()).unwrap().micros(),
        1_000_000 - 3 * 10_000,
        "three tasks charged"
    );
}

/// SIGKILL while tasks are in flight; after a restart every accepted payment has a receipt
/// with a result or a refund, nothing is lost, no payment counts twice, and money is
/// conserved on the ledger.
#[test]
fn a_node_killed_mid_task_loses_no_payment_result_or_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    // A capability that runs until its deadline keeps tasks in flight when the node dies.
    common::install_hostile(dir, 20_000);
    let buyer = funded_buyer(dir);
    let mut node = NodeProcess::start(dir, &["--capability", "util.json_transform@1"]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sent: Vec<(Value, String, Option<u16>)> = runtime.block_on(async {
        let client = d402_client::http_client();
        let base = node.base.clone();
        let challenge = |body: Value| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let response = client.post(format!("{base}/tasks")).json(&body).send().await.unwrap();
                let challenge: PaymentRequired = response.json().await.unwrap();
                challenge
            }
        };
        let mut bodies: Vec<Value> = (0..8)
            .map(|i| json!({"sync": false, "capabilityId": "test.hostile@1", "input": {"behaviour": "loop"}, "n": i}))
            .collect();
        bodies.extend((0..150).map(|i| json!({"input": {"value": {"k": i}, "select": ["k"]}})));
        let mut requests = Vec::new();
        for body in bodies {
            let challenge = challenge(body.clone()).await;
            let payment = pay_simulated(&challenge.accepts[0], &body, &buyer);
            requests.push((body, payment));
        }
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut handles = Vec::new();
        for (body, payment) in requests {
            let client = client.clone();
            let url = format!("{base}/tasks");
            let answered = answered.clone();
            handles.push(tokio::spawn(async move {
                let response = client.post(url).header("payment-signature", &payment).json(&body).send().await.ok();
                let status = response.map(|r| r.status().as_u16());
                if status.is_some() {
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                (body, payment, status)
            }));
        }
        // Kill the node in the middle of the burst: once a few tasks have been answered.
        while answered.load(std::sync::atomic::Ordering::SeqCst) < 12 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        node.kill();
        let mut sent = Vec::new();
        for handle in handles {
            sent.push(handle.await.unwrap());
        }
        sent
    });
    let answered = sent.iter().filter(|(_, _, s)| s.is_some()).count();
    assert!(
        answered > 0 && answered < sent.len(),
        "the kill landed mid-burst ({answered} of {} answered)",
        sent.len()
    );

    // Restart on the same state: interrupted tasks are refunded before serving.
    let node = NodeProcess::start(dir, &["--capability", "util.json_transform@1"]);
    let settled: Vec<Value> = runtime.block_on(async {
        let client = d402_client::http_client();
        let mut settled = Vec::new();
        for (_, payment, status) in &sent {
            let id = task_id_of(payment);
            let response = client
                .get(format!("{}/tasks/{id}/receipt", node.base))
                .send()
                .await
                .unwrap();
            match response.status().as_u16() {
                200 => {
                    let receipt: Value = response.json().await.unwrap();
                    assert_ne!(receipt["status"], "running");
                    let price = if receipt["signed"]["taskIntent"]["payload"]["capabilityId"]
                        == "test.hostile@1"
                    {
                        1_000
                    } else {
                        100
                    };
                    assert_eq!(
                        paid_out(&receipt["settlement"]),
                        price,
                        "payouts or refunds account for the whole price"
                    );
                    settled.push(receipt);
                }
                404 => assert!(
                    !matches!(status, Some(200 | 202)),
                    "an answered payment ({status:?}) lost its task"
                ),
                other => panic!("unexpected status {other} for {id}"),
            }
        }
        settled
    });
    let hostile_refunds = settled
        .iter()
        .filter(|r| {
            r["settlement"]["refunds"]
                .as_array()
                .is_some_and(|x| !x.is_empty())
                && r["validationReceipt"]["status"] == "rejected"
        })
        .count();
    assert!(
        hostile_refunds >= 1,
        "the looping tasks in flight were refunded"
    );

    // Every payment that was accepted before the crash is a replay now, never a new charge.
    runtime.block_on(async {
        let client = d402_client::http_client();
        for (body, payment, _) in &sent {
            let id = task_id_of(payment);
            if !settled.iter().any(|r| r["taskId"] == id.as_str()) {
                continue;
            }
            let response = client
                .post(format!("{}/tasks", node.base))
                .header("payment-signature", payment)
                .json(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["x-d402-idempotent-replay"],
                "true",
                "{id} was accepted once already"
            );
        }
    });
    drop(node);

    // Conservation: what the buyer lost is exactly what the receipts paid out.
    let store = d402_store::NodeStore::open(&dir.join("state/node.redb")).unwrap();
    let charged: u64 = settled
        .iter()
        .map(|r| {
            r["settlement"]["payouts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| micros(&p["amount"]))
                .sum::<u64>()
        })
        .sum();
    assert_eq!(
        store.balance(&buyer.public().to_string()).unwrap().micros(),
        1_000_000 - charged
    );
    assert!(store.running().unwrap().is_empty(), "nothing left running");
}

/// `d402 task` runs a paid quorum task on the node's own worker pool and prints receipts.
#[test]
fn d402_task_runs_a_quorum_on_the_local_pool() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    funded_buyer(dir);
    let input = r#"{"value": {"a": 7}, "select": ["a"]}"#;
    let args = [
        "task",
        "--state",
        "state",
        "--input",
        input,
        "--mode",
        "quorum",
        "--fanout",
        "3",
        "--quorum",
        "2",
        "--key",
        "buyer.json",
    ];
    let out: Value = serde_json::from_str(&ok(dir, &args)).unwrap();
    assert_eq!(out["task"]["status"], "accepted", "{out}");
    assert_eq!(out["task"]["result"]["result"]["a"], 7);
    let payouts = out["receipts"]["settlementReceipt"]["payload"]["payouts"]
        .as_array()
        .unwrap();
    assert_eq!(
        payouts
            .iter()
            .filter(|p| p["reason"] == "accepted-result")
            .count(),
        2,
        "{out}"
    );
    assert_eq!(
        paid_out(&out["receipts"]["settlementReceipt"]["payload"]),
        100
    );

    let (code, _, err) = d402(
        dir,
        &[
            "task",
            "--state",
            "state",
            "--input",
            r#"{"value": 1}"#,
            "--key",
            "buyer.json",
        ],
    );
    assert_eq!(code, 1, "input without `select` is refused before payment");
    assert!(err.contains("invalid input"), "{err}");
    let (code, _, err) = d402(
        dir,
        &[
            "task",
            "--state",
            "state",
            "--input",
            input,
            "--mode",
            "quorum",
            "--fanout",
            "2",
            "--quorum",
            "3",
            "--key",
            "buyer.json",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("quorum"), "{err}");
}

/// A node on a state directory where nothing was installed serves the built-in capabilities
/// (installed from the binary, digest-checked) and sells a task.
#[test]
fn a_fresh_node_serves_the_built_in_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    assert!(!dir.join("state").exists(), "nothing installed");
    let node = NodeProcess::start(dir, &[]);
    // Funded through the running node's admin API.
    let buyer = funded_buyer(dir);
    let capabilities = common::get_json(&format!("{}/capabilities", node.base));
    let mut served: Vec<&str> = capabilities["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["capabilityId"].as_str().unwrap())
        .collect();
    served.sort();
    assert_eq!(served, ["util.json_transform@1", "web.page_to_markdown@1"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime
        .block_on(async {
            let client = d402_client::Client::new(&node.base)?;
            let payer = d402_rail_simulated::SimulatedPayer::new(buyer);
            let body = json!({"capabilityId": "util.json_transform@1",
                "input": {"value": {"a": 1}, "select": ["a"]}});
            client.run_task(&body, &payer).await
        })
        .unwrap();
    assert_eq!(outcome.task["status"], "accepted", "{}", outcome.task);
    assert_eq!(outcome.task["result"]["result"]["a"], 1, "{}", outcome.task);
}

/// A command that needs the store of a running node (a second node, the escrow finalizer)
/// says which node holds it (its pid) and what to do, not the embedded database's lock
/// error; once the node stops, the command works.
#[test]
fn commands_on_a_running_nodes_state_name_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    let mut node = NodeProcess::start(dir, &["--capability", "util.json_transform@1"]);
    let pid = node.child.id();
    let (code, _, err) = common::d402(dir, &["node", "--state", "state", "--http-port", "0"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "state state is used by a running node (pid {pid}); use the admin API"
        )) && err.contains("or stop it"),
        "{err}"
    );
    node.kill();
    let (code, _, err) = common::d402(dir, &["payouts", "list", "--state", "state"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn ops_pause_stops_new_paid_tasks_and_resume_restarts_them() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    common::install_hostile(dir, 3_000);
    funded_buyer(dir);
    let node = NodeProcess::start(dir, &["--capability", "util.json_transform@1"]);
    let input = r#"{"value": {"k": 1}, "select": ["k"]}"#;
    // A task that runs into its 3 s deadline, paid before the pause.
    let slow = std::process::Command::new(env!("CARGO_BIN_EXE_d402"))
        .args(["http-task", "--gateway", &node.base, "--key", "buyer.json"])
        .args([
            "--capability",
            "test.hostile@1",
            "--input",
            r#"{"behaviour":"loop"}"#,
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1_000));
    let buy = || {
        common::d402(
            dir,
            &[
                "http-task",
                "--gateway",
                &node.base,
                "--input",
                input,
                "--key",
                "buyer.json",
            ],
        )
    };
    let (code, out, err) = buy();
    assert_eq!(code, 0, "{out} {err}");
    let task_id = serde_json::from_str::<Value>(&out).unwrap()["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();

    let (code, _, err) = common::d402(
        dir,
        &[
            "ops",
            "pause",
            "--state",
            "state",
            "--reason",
            "rotating keys",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = buy();
    assert_ne!(code, 0);
    assert!(
        err.contains("503") && err.contains("rotating keys"),
        "{err}"
    );
    let health = common::get_json(&format!("{}/health", node.base));
    assert_eq!(health["incidentMode"], true, "{health}");
    let task = common::get_json(&format!("{}/tasks/{task_id}", node.base));
    assert_eq!(task["status"], "accepted", "reads go on: {task}");
    let receipt = common::get_json(&format!("{}/tasks/{task_id}/receipt", node.base));
    assert_eq!(receipt["taskId"], task_id, "receipts go on: {receipt}");
    // The task paid before the pause still runs, is decided and refunded while paused.
    let slow = slow.wait_with_output().unwrap();
    let slow_err = String::from_utf8_lossy(&slow.stderr);
    assert_eq!(slow.status.code(), Some(2), "{slow_err}");
    assert!(slow_err.contains(" rejected ("), "{slow_err}");
    let slow_task: Value = serde_json::from_slice(&slow.stdout).unwrap();
    assert_eq!(
        slow_task["receipt"]["settlement"]["refunds"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{slow_task}"
    );

    let (code, _, err) = common::d402(dir, &["ops", "resume", "--state", "state"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = buy();
    assert_eq!(code, 0, "{out} {err}");
}
