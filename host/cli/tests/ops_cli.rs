//! The operator's tools against a real `d402 node` process: the admin API on its own
//! listener (token, Host check, not on the public port), the CLI acting on a running node
//! through it (faucet, task, balances, tasks), `/metrics` moving by exactly the tasks sent
//! and passing `promtool check metrics`, `ops-status` exit codes, a draining SIGTERM, and
//! `ops-monitor`'s sinks and automatic incident mode.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use common::{NodeProcess, d402, install, ok};
use serde_json::Value;

/// `GET url` with an optional bearer token and Host header: status and body.
fn get(url: &str, token: Option<&str>, host: Option<&str>) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = d402_client::http_client().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

/// The sample value of the metric line starting with `series` (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn promtool_check(metrics: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian's prometheus package; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Rules without the disk check, whose level depends on the machine running the test.
const RULES: &str = r#"
[[rule]]
name = "node-down"
measure = "node_up"
critical = 1
below = true

[[rule]]
name = "incident-mode"
measure = "incident_mode"
warn = 1

[[rule]]
name = "failure-rate"
measure = "failure_rate"
warn = 0.25
critical = 0.5
"#;

fn ops_status(dir: &Path, state: &str) -> (i32, Value) {
    let (code, out, err) = d402(
        dir,
        &[
            "ops-status",
            "--state",
            state,
            "--rules",
            "rules.toml",
            "--json",
        ],
    );
    let report = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    (code, report)
}

#[test]
fn the_admin_api_serves_a_running_node_and_ops_status_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    let log = dir.join("node.log");
    let mut node =
        NodeProcess::start_logged(dir, &["--capability", "util.json_transform@1"], Some(&log));

    // The endpoint file and the token: private to the operator.
    let state = dir.join("state");
    for file in ["admin.json", "admin-token"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(state.join(file)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let endpoint: Value =
        serde_json::from_slice(&std::fs::read(state.join("admin.json")).unwrap()).unwrap();
    let admin = endpoint["url"].as_str().unwrap().to_string();
    let token = std::fs::read_to_string(state.join("admin-token")).unwrap();
    assert_eq!(endpoint["token"], token.trim());
    assert_eq!(endpoint["publicUrl"], node.base);
    assert_ne!(admin, node.base);

    // Without the token (or with another), nothing; not on the public port at all; not
    // through another Host name.
    let status_url = format!("{admin}/admin/status");
    assert_eq!(get(&status_url, None, None).0, 401);
    assert_eq!(get(&status_url, Some("not-the-token"), None).0, 401);
    assert_eq!(get(&status_url, Some(&token), None).0, 200);
    assert_eq!(get(&status_url, Some(&token), Some("evil.example")).0, 403);
    for path in ["/admin/status", "/metrics", "/admin/balances"] {
        assert_eq!(
            get(&format!("{}{path}", node.base), Some(&token), None).0,
            404,
            "{path}"
        );
    }
    let openapi = get(&format!("{}/openapi.json", node.base), None, None).1;
    assert!(
        !openapi.contains("/admin/"),
        "the admin API is not in the public document"
    );

    // The faucet, `d402 task` and the listings work on the running node.
    let buyer = common::funded_buyer(dir).public().to_string();
    let metrics_url = format!("{admin}/metrics");
    let before = get(&metrics_url, Some(&token), None).1;
    let accepted = "d402_tasks_total{capability=\"util.json_transform@1\",mode=\"single\",outcome=\"accepted\"}";
    let paid = "d402_payments_total{rail=\"simulated\",outcome=\"accepted\"}";
    const TASKS: usize = 3;
    for _ in 0..TASKS {
        let out = ok(
            dir,
            &[
                "task",
                "--state",
                "state",
                "--key",
                "buyer.json",
                "--input",
                r#"{"value":{"a":1},"select":["a"]}"#,
            ],
        );
        let out: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["task"]["status"], "accepted", "{out}");
    }
    let after = get(&metrics_url, Some(&token), None).1;
    assert_eq!(
        sample(&after, accepted) - sample(&before, accepted),
        TASKS as f64
    );
    assert_eq!(sample(&after, paid) - sample(&before, paid), TASKS as f64);
    assert_eq!(sample(&after, "d402_node_up"), 1.0);
    assert!(!after.contains("task:"), "no task id is a label");
    promtool_check(&after);

    let balances = common::balances(dir);
    assert_eq!(
        common::account(&balances, &buyer)["balanceMicros"],
        1_000_000 - 3 * 100
    );
    assert_eq!(balances[0]["role"], "node");
    let earned: u64 = balances
        .iter()
        .map(|a| a["earnedMicros"].as_u64().unwrap())
        .sum();
    assert_eq!(
        earned,
        3 * 100,
        "the three prices were paid out: {balances:?}"
    );
    let listed = |filter: &[&str]| -> Vec<Value> {
        let mut args = vec!["tasks", "--state", "state", "--json"];
        args.extend(filter);
        serde_json::from_str::<Vec<Value>>(&ok(dir, &args)).unwrap()
    };
    assert_eq!(listed(&[]).len(), 3);
    assert_eq!(listed(&["--status", "accepted", "--since", "1h"]).len(), 3);
    assert_eq!(listed(&["--status", "rejected"]).len(), 0);
    assert_eq!(listed(&["--capability", "web.page_to_markdown@1"]).len(), 0);
    assert_eq!(listed(&["--limit", "2"]).len(), 2);

    // ops-status: ok, then warn in incident mode.
    let (code, report) = ops_status(dir, "state");
    assert_eq!(
        (code, report["level"].as_str()),
        (0, Some("ok")),
        "{report}"
    );
    assert_eq!(report["snapshot"]["live"], true);
    ok(
        dir,
        &["ops", "pause", "--state", "state", "--reason", "drill"],
    );
    let (code, report) = ops_status(dir, "state");
    assert_eq!(
        (code, report["level"].as_str()),
        (1, Some("warn")),
        "{report}"
    );
    ok(dir, &["ops", "resume", "--state", "state"]);

    // SIGTERM drains and stops; the endpoint file goes with the node.
    unsafe { libc::kill(node.child.id() as i32, libc::SIGTERM) };
    let status = node.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!state.join("admin.json").exists());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("stopped: no task left running"), "{logged}");
    assert!(
        !logged.contains('\u{1b}'),
        "no colours when stderr is a file"
    );
    assert_eq!(
        logged.matches("payment accepted").count(),
        3,
        "one line per paid task"
    );

    // A stopped node is critical; state that cannot be read is unknown.
    let (code, report) = ops_status(dir, "state");
    assert_eq!(
        (code, report["level"].as_str()),
        (2, Some("critical")),
        "{report}"
    );
    assert_eq!(report["snapshot"]["live"], false);
    let (code, report) = ops_status(dir, "no-such-state");
    assert_eq!(
        (code, report["level"].as_str()),
        (3, Some("unknown")),
        "{report}"
    );
    assert!(
        report["error"].as_str().unwrap().contains("does not exist"),
        "{report}"
    );
    // Read offline, the balances and tasks are still there.
    assert_eq!(listed(&["--status", "accepted"]).len(), 3);
}

/// One HTTP request received by a one-shot webhook on 127.0.0.1: its body.
fn webhook() -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).unwrap();
            received.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                    return body.to_string();
                }
            }
            if n == 0 {
                return String::new();
            }
        }
    });
    (url, handle)
}

/// `(rule, status)` of each notification line ops-monitor printed.
fn notified(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|line| {
            let n: Value = serde_json::from_str(line).unwrap();
            (
                n["rule"].as_str().unwrap().into(),
                n["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn ops_monitor_notifies_every_sink_once_and_enters_incident_mode() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    std::fs::write(dir.join("rules.toml"), RULES).unwrap();
    let sink = dir.join("sink.sh");
    std::fs::write(&sink, "#!/bin/sh\ncat >> notified.jsonl\n").unwrap();
    std::fs::set_permissions(&sink, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (url, received) = webhook();

    // No node runs on this state: node-down is critical, fires at once (no `for`).
    let monitor = |extra: &[&str]| {
        let mut args = vec![
            "ops-monitor",
            "--state",
            "state",
            "--rules",
            "rules.toml",
            "--once",
            "--auto-pause-on",
            "critical",
            "--command",
            "./sink.sh",
        ];
        args.extend(extra);
        ok(dir, &args)
    };
    let out = monitor(&["--webhook", &url]);
    let notification: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(notification["status"], "firing");
    assert_eq!(notification["rule"], "node-down");
    assert_eq!(notification["level"], "critical");
    let posted: Value = serde_json::from_str(&received.join().unwrap()).unwrap();
    assert_eq!(posted, notification);
    let commanded = std::fs::read_to_string(dir.join("notified.jsonl")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(commanded.trim()).unwrap(),
        notification
    );
    let reason = std::fs::read_to_string(dir.join("state/PAUSE")).unwrap();
    assert_eq!(reason, "ops-monitor: node-down is critical");

    // The alert is remembered: a second run does not notify node-down again (only the
    // incident mode the first run entered).
    let out = monitor(&[]);
    let rules = notified(&out);
    assert_eq!(rules, [("incident-mode".to_string(), "firing".to_string())]);
    assert_eq!(
        std::fs::read_to_string(dir.join("notified.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    // With the node up and incident mode cleared, both alerts resolve.
    ok(dir, &["ops", "resume", "--state", "state"]);
    let _node = NodeProcess::start(dir, &["--capability", "util.json_transform@1"]);
    let mut resolved = notified(&monitor(&[]));
    resolved.sort();
    assert_eq!(
        resolved,
        [
            ("incident-mode".to_string(), "resolved".to_string()),
            ("node-down".to_string(), "resolved".to_string())
        ]
    );
}
