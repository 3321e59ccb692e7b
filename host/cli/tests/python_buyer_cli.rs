//! A buyer written in Python from the OpenAPI document alone (examples/python-buyer, no
//! Rust source) pays the simulated rail of a real `d402 node` process.

mod common;

use common::{NodeProcess, install};
use serde_json::Value;

#[test]
fn a_python_buyer_written_from_the_openapi_document_pays_the_simulated_rail() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    // Served without --capability: the embedded default names page-to-markdown, which is
    // not installed here, and that is no reason to warn.
    let log = dir.join("node.log");
    let node = NodeProcess::start_logged(dir, &[], Some(&log));
    let buyer = common::funded_buyer(dir).public().to_string();

    // The document the example was written from describes every field it signs.
    let document = common::get_json(&format!("{}/openapi.json", node.base));
    let authorization = &document["components"]["schemas"]["SimulatedAuthorization"];
    for field in [
        "network",
        "amount",
        "payTo",
        "nonce",
        "expiresAt",
        "taskBinding",
    ] {
        assert!(
            authorization["properties"][field]["description"].is_string(),
            "{field}"
        );
    }

    let python = std::env::var("D402_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = d402_testkit::repo_path("examples/python-buyer/buyer.py");
    let run = |input: &str| {
        std::process::Command::new(&python)
            .arg(&script)
            .args([
                "--gateway",
                &node.base,
                "--key",
                "buyer.json",
                "--input",
                input,
            ])
            .current_dir(dir)
            .output()
            .expect("python3 runs (scripts/test.sh sets D402_PYTHON)")
    };
    let output = run(r#"{"value": {"a": {"b": 7}}, "select": ["a.b"]}"#);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["status"], "accepted", "{answer}");
    assert_eq!(answer["result"]["result"]["a.b"], 7, "{answer}");
    let task_id = answer["taskId"].as_str().unwrap();
    let receipt = common::get_json(&format!("{}/tasks/{task_id}/receipt", node.base));
    assert_eq!(
        receipt["signed"]["settlementReceipt"]["type"], "settlement-receipt",
        "{receipt}"
    );

    // Charged exactly the price, once.
    let balances = common::balances(dir);
    let balance = &common::account(&balances, &buyer)["balanceMicros"];
    assert_eq!(*balance, 1_000_000 - 100);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("WARN"), "{logged}");
}
