//! The messages a user meets when something is wrong: each names the cause and the next
//! step (issue 18, item 7).

mod common;

use common::{NodeProcess, d402, install, ok};
use serde_json::Value;

/// `stderr` says `cause` and `next`, with no error text repeated (one `os error` at most).
fn says(stderr: &str, cause: &str, next: &str) {
    assert!(stderr.contains(cause), "cause {cause:?} missing: {stderr}");
    assert!(
        stderr.contains(next),
        "next step {next:?} missing: {stderr}"
    );
    assert!(
        stderr.matches("os error").count() <= 1,
        "repeated tail: {stderr}"
    );
}

#[test]
fn command_line_mistakes_name_the_cause_and_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // A missing key file: create one.
    let (code, _, err) = d402(
        dir,
        &[
            "http-task",
            "--gateway",
            "http://127.0.0.1:9",
            "--input",
            "{}",
            "--key",
            "buyer.json",
        ],
    );
    assert_eq!(code, 1);
    says(
        &err,
        "buyer.json does not exist",
        "d402 keygen --out buyer.json",
    );
    ok(dir, &["keygen", "--out", "buyer.json"]);
    // A gateway without a scheme, and one nobody answers at.
    let (_, _, err) = d402(
        dir,
        &[
            "http-task",
            "--gateway",
            "127.0.0.1:9",
            "--input",
            "{}",
            "--key",
            "buyer.json",
        ],
    );
    says(&err, "has no scheme", "use http://127.0.0.1:9");
    let (_, _, err) = d402(
        dir,
        &[
            "http-task",
            "--gateway",
            "http://127.0.0.1:9",
            "--input",
            "{}",
            "--key",
            "buyer.json",
        ],
    );
    says(
        &err,
        "cannot reach the gateway at http://127.0.0.1:9",
        "is a node running there?",
    );
    // A state directory that does not exist is not created by the faucet.
    let (code, _, err) = d402(
        dir,
        &[
            "faucet",
            "--state",
            "nowhere",
            "--account",
            "11111111111111111111111111111111",
            "--amount",
            "1",
        ],
    );
    assert_eq!(code, 1);
    says(
        &err,
        "state directory nowhere does not exist",
        "pass --state DIR",
    );
    assert!(!dir.join("nowhere").exists());
    // A file that cannot be read: its name and the reason, once.
    let (_, _, err) = d402(
        dir,
        &["capability", "validate", "--manifest", "missing.json"],
    );
    says(&err, "missing.json", "No such file");
    let (_, _, err) = d402(
        dir,
        &[
            "http-task",
            "--gateway",
            "http://127.0.0.1:9",
            "--input",
            "{}",
            "--key",
            ".",
        ],
    );
    says(&err, "Is a directory", "");
    // A valid manifest validates without a misleading note; --file is still the old name.
    let template = ok(dir, &["capability", "template", "--id", "example.thing"]);
    std::fs::write(dir.join("manifest.json"), template).unwrap();
    let (code, _, err) = d402(
        dir,
        &["capability", "validate", "--manifest", "manifest.json"],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        d402(dir, &["capability", "validate", "--file", "manifest.json"]).0,
        0
    );
    // An invalid log filter is an error, not ignored.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_d402"))
        .args(["keygen", "--out", "other.json"])
        .current_dir(dir)
        .env("D402_LOG", "d402=loud")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    says(
        &String::from_utf8_lossy(&output.stderr),
        "D402_LOG=\"d402=loud\" is not a log filter",
        "D402_LOG=info",
    );
}

#[test]
fn a_running_node_refuses_unfetchable_urls_unfunded_buyers_and_says_why_tasks_fail() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "page-to-markdown", "page_to_markdown.wasm");
    common::install_hostile(dir, 5_000);
    let log = dir.join("node.log");
    let node = NodeProcess::start_logged(
        dir,
        &["--mode", "quorum", "--log-format", "json"],
        Some(&log),
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("mode quorum with fanout 1") && logged.contains("set --fanout N"),
        "{logged}"
    );
    for line in logged.lines() {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(entry["level"].is_string(), "{line}");
    }
    ok(dir, &["keygen", "--out", "buyer.json"]);
    let buyer = d402_wallet::load(&dir.join("buyer.json"))
        .unwrap()
        .public()
        .to_string();

    // No funds: the 402 says so and the CLI says how to fund the buyer.
    let task = |extra: &[&str]| {
        let mut args = vec!["http-task", "--gateway", &node.base, "--key", "buyer.json"];
        args.extend(extra);
        d402(dir, &args)
    };
    let (code, _, err) = task(&[
        "--capability",
        "test.hostile@1",
        "--input",
        r#"{"behaviour":"panic"}"#,
    ]);
    assert_eq!(code, 1);
    says(
        &err,
        "insufficient_funds",
        "d402 faucet --state DIR --account ADDRESS",
    );

    // Money in either form.
    ok(
        dir,
        &[
            "faucet",
            "--state",
            "state",
            "--account",
            &buyer,
            "--amount",
            "$0.50",
        ],
    );
    let out: Value = serde_json::from_str(&ok(
        dir,
        &[
            "faucet",
            "--state",
            "state",
            "--account",
            &buyer,
            "--amount",
            "0.5",
        ],
    ))
    .unwrap();
    assert_eq!(out["balance"], 1.0);

    // A page the fetcher would refuse is refused before any payment.
    for url in [
        "http://127.0.0.1:8080/",
        "http://localhost:8080/",
        "http://10.0.0.1/",
        "http://example.com:22/",
    ] {
        let (code, _, err) = task(&["--url", url]);
        assert_eq!(code, 1, "{url}");
        says(
            &err,
            "url_refused",
            "fetches only public http(s) pages, so nothing was charged",
        );
    }
    let balance = common::get_json(&format!("{}/health", node.base));
    assert_eq!(balance["ok"], true);

    // A failed task: one human line on stderr; --result-only prints nothing on stdout.
    let (code, out, err) = task(&[
        "--capability",
        "test.hostile@1",
        "--input",
        r#"{"behaviour":"panic"}"#,
        "--result-only",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    let line = err.lines().last().unwrap();
    assert!(
        line.starts_with("task task:") && line.contains("rejected"),
        "{err}"
    );
    assert!(!line.contains("TaskError {"), "not a Debug string: {line}");
    // An accepted one with --result-only: just the result.
    let (code, out, _) = task(&[
        "--capability",
        "test.hostile@1",
        "--input",
        r#"{"behaviour":"echo","text":"hi"}"#,
        "--result-only",
    ]);
    assert_eq!(code, 0);
    let result: Value = serde_json::from_str(&out).unwrap();
    assert!(result.to_string().contains("hi"), "{result}");
    // The buyer paid for the two tasks only (the refused URLs cost nothing).
    let buyer_balance = common::account(&common::balances(dir), &buyer)["balanceMicros"]
        .as_u64()
        .unwrap();
    let capabilities = common::get_json(&format!("{}/capabilities", node.base));
    let price: d402_protocol::Price = capabilities["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["capabilityId"] == "test.hostile@1")
        .unwrap()["price"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let price = price.0.micros();
    assert_eq!(
        buyer_balance,
        1_000_000 - price,
        "the rejected task was refunded, the accepted one paid"
    );
}
