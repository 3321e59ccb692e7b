//! `d402-agent` against a real `d402 node` process on 127.0.0.1, paying the simulated rail:
//! init, discover (keys pinned), capabilities, request (sync, async, manual), the spend
//! policy under concurrency, a retry after a dropped connection charged once, the ledger
//! and receipt verification with its attacks.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;

mod common;
use common::{agent, d402, d402_binary, ok};

fn json(output: Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap()
}

/// A `d402 node` process on a fresh state (the built-in capabilities), killed on drop.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(d402_binary())
            .args(["node", "--state", "state", "--http-port", "0"])
            .args(extra)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let base = line
            .strip_prefix("d402 node listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected: {line:?}"))
            .to_string();
        Self { child, base }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A buyer key (`buyer.json`, 0600) funded with $1 on the running node's ledger; its
/// address.
fn funded_buyer(dir: &Path) -> String {
    let buyer = ok(d402(dir, &["keygen", "--out", "buyer.json"]))
        .trim()
        .to_string();
    ok(d402(
        dir,
        &[
            "faucet",
            "--state",
            "state",
            "--account",
            &buyer,
            "--amount",
            "1",
        ],
    ));
    buyer
}

/// A node, a funded buyer key (0600) and an agent configured for the node with `policy`.
fn setup(dir: &Path, policy: &[&str]) -> (Node, String) {
    let node = Node::start(dir, &[]);
    let buyer = funded_buyer(dir);
    let mut init = vec![
        "init",
        "--gateway",
        &node.base,
        "--rail",
        "simulated",
        "--key-file",
        "buyer.json",
    ];
    init.extend(policy);
    ok(agent(dir, &init));
    (node, buyer)
}

fn balance(dir: &Path, account: &str) -> u64 {
    let balances: Value =
        serde_json::from_str(&ok(d402(dir, &["balances", "--state", "state", "--json"]))).unwrap();
    balances
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == account)
        .map_or(0, |a| a["balanceMicros"].as_u64().unwrap())
}

/// `d402-agent request` for the json-transform task, ready to run in `dir`.
fn request_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_d402-agent"));
    command
        .args(["--config", "agent/config.toml", "request"])
        .args(["--capability", "util.json_transform@1", "--input", TASK])
        .current_dir(dir);
    command
}

const TASK: &str = r#"{"value": {"a": {"b": 2}}, "select": ["a.b"]}"#;
/// util.json_transform@1's price, micro-dollars.
const PRICE: u64 = 100;

/// The event names of ledger `entries` (`ledger --json`), in order.
fn events(entries: &Value) -> Vec<&str> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

fn request(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "request",
        "--capability",
        "util.json_transform@1",
        "--input",
        TASK,
    ];
    args.extend(extra);
    agent(dir, &args)
}

#[test]
fn the_agent_discovers_searches_buys_and_verifies_on_a_real_node() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (node, buyer) = setup(dir, &[]);

    let discovered = json(agent(dir, &["discover", "--json"]));
    assert_eq!(discovered[0]["pinned"], "new", "{discovered}");
    assert_eq!(
        json(agent(dir, &["discover", "--json"]))[0]["pinned"],
        "known"
    );
    let listed = json(agent(
        dir,
        &["capabilities", "--id", "util.json_transform@1", "--json"],
    ));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["gateway"], node.base);

    let bought = json(request(dir, &[]));
    assert_eq!(bought["task"]["status"], "accepted", "{bought}");
    assert_eq!(bought["task"]["result"]["result"]["a.b"], 2);
    let asynchronous = json(request(dir, &["--async"]));
    assert_eq!(asynchronous["task"]["status"], "accepted", "{asynchronous}");
    assert_eq!(balance(dir, &buyer), 1_000_000 - 2 * PRICE);

    // Manual: the challenge, exit 2, nothing reserved or paid.
    let entries_before = json(agent(dir, &["ledger", "--json", "--limit", "100"]))
        .as_array()
        .unwrap()
        .len();
    let manual = request(dir, &["--rail", "manual"]);
    assert_eq!(manual.status.code(), Some(2));
    let challenge: Value = serde_json::from_slice(&manual.stdout).unwrap();
    assert_eq!(challenge["accepts"][0]["amount"], PRICE.to_string());
    let entries = json(agent(dir, &["ledger", "--json", "--limit", "100"]));
    assert_eq!(entries.as_array().unwrap().len(), entries_before);
    let events = events(&entries);
    assert_eq!(
        events,
        ["reserved", "paid", "settled", "reserved", "paid", "settled"]
    );

    // The receipt verifies offline against the pinned key ...
    let task_id = bought["task"]["taskId"].as_str().unwrap();
    let verified = json(agent(
        dir,
        &["verify-receipt", "--task-id", task_id, "--json"],
    ));
    assert_eq!(
        verified["verified"].as_array().unwrap().len(),
        3,
        "{verified}"
    );

    // ... and not with one byte changed, nor for another request, nor under a changed key.
    let ledger_path = dir.join("agent/ledger.jsonl");
    let original = std::fs::read_to_string(&ledger_path).unwrap();
    // One byte of the signed settlement receipt (of the first task) changed.
    let signed = original.find("\"settlementReceipt\":{\"payload\"").unwrap();
    let pattern = "\"amount\":0.0001";
    let amount = signed + original[signed..].find(pattern).unwrap();
    let mut tampered = original.clone();
    tampered.replace_range(amount..amount + pattern.len(), "\"amount\":0.0002");
    assert_ne!(tampered, original);
    std::fs::write(&ledger_path, &tampered).unwrap();
    let refused = agent(dir, &["verify-receipt", "--task-id", task_id]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("signature"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // The other task's receipt filed under this task: another request.
    let other_id = asynchronous["task"]["taskId"].as_str().unwrap();
    let swapped = original
        .replace(task_id, "task:swap")
        .replace(other_id, task_id);
    std::fs::write(&ledger_path, swapped).unwrap();
    let refused = agent(dir, &["verify-receipt", "--task-id", task_id]);
    assert_eq!(refused.status.code(), Some(1));
    std::fs::write(&ledger_path, &original).unwrap();
    let pins_path = dir.join("agent/known_gateways.json");
    let pins = std::fs::read_to_string(&pins_path).unwrap();
    let stranger = d402_testkit_key();
    let node_key = discovered[0]["key"].as_str().unwrap();
    std::fs::write(&pins_path, pins.replace(node_key, &stranger)).unwrap();
    let refused = agent(dir, &["verify-receipt", "--task-id", task_id]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not by the gateway"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // A changed key is refused before paying, unless accepted.
    let refused = request(dir, &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--accept-new-key"));
    assert_eq!(balance(dir, &buyer), 1_000_000 - 2 * PRICE, "nothing paid");
    assert_eq!(
        json(agent(dir, &["discover", "--accept-new-key", "--json"]))[0]["pinned"],
        "replaced"
    );
}

/// A fresh public key that is not the node's.
fn d402_testkit_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    ok(d402(dir.path(), &["keygen", "--out", "k.json"]))
        .trim()
        .to_string()
}

#[test]
fn the_policy_is_checked_before_signing_and_holds_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let day_cap = (3 * PRICE).to_string();
    let (_node, buyer) = setup(dir, &["--max-per-day", &day_cap]);

    // Over the per-request cap a flag sets: refused, nothing reserved, signed or paid.
    let refused = request(dir, &["--max-amount", "0.00005"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("max-per-request") && stderr.contains("nothing was signed"),
        "{stderr}"
    );
    assert!(
        !dir.join("agent/ledger.jsonl").exists()
            || std::fs::read_to_string(dir.join("agent/ledger.jsonl"))
                .unwrap()
                .is_empty()
    );

    // Ten at once against a day cap that covers three: exactly three are paid.
    let children: Vec<Child> = (0..10)
        .map(|_| {
            request_command(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outcomes: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let paid = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        paid,
        3,
        "{:?}",
        outcomes
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect::<Vec<_>>()
    );
    for refused in outcomes.iter().filter(|o| !o.status.success()) {
        assert!(String::from_utf8_lossy(&refused.stderr).contains("max-per-day"));
    }
    assert_eq!(balance(dir, &buyer), 1_000_000 - 3 * PRICE);
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_node, _) = setup(dir, &[]);
    std::fs::set_permissions(
        dir.join("buyer.json"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let refused = request(dir, &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("chmod 600"));
}

/// A proxy to `upstream` that forwards every request, but for the first paid one (it
/// carries PAYMENT-SIGNATURE) drops the connection instead of returning the answer.
/// Serves on `listener`, dropping the answers to the first `drops` paid requests; returns
/// the count of paid requests it forwarded.
fn dropping_proxy(
    listener: std::net::TcpListener,
    upstream: String,
    drops: usize,
) -> Arc<AtomicUsize> {
    let forwarded = Arc::new(AtomicUsize::new(0));
    let counted = forwarded.clone();
    std::thread::spawn(move || {
        let mut dropped = 0;
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let request = read_request(&mut client);
            let paid = String::from_utf8_lossy(&request)
                .to_ascii_lowercase()
                .contains("payment-signature:");
            let mut server =
                std::net::TcpStream::connect(upstream.trim_start_matches("http://")).unwrap();
            server.write_all(&request).unwrap();
            let mut answer = Vec::new();
            server.read_to_end(&mut answer).unwrap();
            if paid {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            if paid && dropped < drops {
                dropped += 1;
                continue; // the gateway took the payment; the buyer never hears back
            }
            let _ = client.write_all(&answer);
        }
    });
    forwarded
}

/// One HTTP/1.1 request from `stream`, rewritten to close the upstream connection after it.
fn read_request(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let n = stream.read(&mut buffer).unwrap();
        data.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length || n == 0 {
                let head = text[..end].replace("\r\nconnection: keep-alive", "");
                let mut out = format!("{head}\r\nconnection: close\r\n\r\n").into_bytes();
                out.extend_from_slice(&data[end + 4..]);
                return out;
            }
        }
        if n == 0 {
            return data;
        }
    }
}

/// Buys once through a proxy that drops the first `drops` answers to the paid request;
/// the payment must be sent again, never signed anew, and charged once.
fn a_lost_answer(drops: usize) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The node announces the proxy as its public URL, so every call goes through it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let node = Node::start(dir, &["--public-url", &proxy]);
    let forwarded = dropping_proxy(listener, node.base.clone(), drops);
    let buyer = funded_buyer(dir);
    ok(agent(
        dir,
        &[
            "init",
            "--gateway",
            &proxy,
            "--rail",
            "simulated",
            "--key-file",
            "buyer.json",
        ],
    ));
    if drops >= 5 {
        // The agent gives up after five sends: the payment stays recorded, unfinished.
        let given_up = request(dir, &[]);
        assert_eq!(given_up.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&given_up.stderr);
        assert!(stderr.contains("sends this same payment again"), "{stderr}");
    }
    let bought = json(request(dir, &[]));
    assert_eq!(bought["task"]["status"], "accepted", "{bought}");
    assert_eq!(balance(dir, &buyer), 1_000_000 - PRICE, "charged once");
    let entries = json(agent(dir, &["ledger", "--json"]));
    let payments = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "paid")
        .count();
    assert_eq!(payments, 1, "one signature: {entries}");
    let paid = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "paid")
        .unwrap();
    assert!(
        paid["paymentId"]
            .as_str()
            .unwrap()
            .starts_with("d402-agent-"),
        "{paid}"
    );
    assert_eq!(
        forwarded.load(Ordering::SeqCst),
        drops + 1,
        "the same payment reached the gateway once per send"
    );
}

#[test]
fn a_payment_whose_answer_is_lost_is_sent_again_and_charged_once() {
    a_lost_answer(1);
}

#[test]
fn a_payment_left_unfinished_by_an_earlier_run_is_resent_not_signed_again() {
    a_lost_answer(5);
}

/// The test signer plugin (tests/signer_plugin.py) behind a launcher, and its call log.
fn plugin(dir: &Path) -> (PathBuf, PathBuf) {
    let python = std::env::var("D402_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/signer_plugin.py");
    let launcher = dir.join("signer-plugin");
    std::fs::write(
        &launcher,
        format!("#!/bin/sh\nexec {python} {}\n", script.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &launcher,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    (launcher, dir.join("plugin-calls.jsonl"))
}

fn agent_with_plugin(dir: &Path, mode: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_d402-agent"))
        .args(["--config", "agent/config.toml"])
        .args(args)
        .current_dir(dir)
        .env("PLUGIN_KEY", dir.join("buyer.json"))
        .env("PLUGIN_COUNTER", dir.join("plugin-calls.jsonl"))
        .env("PLUGIN_MODE", mode)
        .output()
        .unwrap()
}

#[test]
fn a_signer_plugin_signs_within_policy_and_is_refused_when_it_misbehaves() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let node = Node::start(dir, &[]);
    let buyer = funded_buyer(dir);
    let (launcher, calls) = plugin(dir);
    let signer = format!("plugin:{}", launcher.display());
    ok(agent_with_plugin(
        dir,
        "good",
        &["init", "--gateway", &node.base, "--signer", &signer],
    ));
    let config = std::fs::read_to_string(dir.join("agent/config.toml")).unwrap();
    assert!(
        config.contains(&buyer),
        "the plugin's address is pinned: {config}"
    );
    let calls_made = || std::fs::read_to_string(&calls).map_or(0, |c| c.lines().count());

    let buy = |mode: &str, extra: &[&str]| {
        let mut args = vec![
            "request",
            "--capability",
            "util.json_transform@1",
            "--input",
            TASK,
        ];
        args.extend(extra);
        agent_with_plugin(dir, mode, &args)
    };
    let bought = buy("good", &[]);
    assert_eq!(json(bought)["task"]["status"], "accepted");
    assert_eq!(calls_made(), 1);
    let request: Value = serde_json::from_str(
        std::fs::read_to_string(&calls)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        request["amount"],
        PRICE.to_string(),
        "the plugin is told what it pays: {request}"
    );
    assert!(
        request["requestHash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // Over the cap: the plugin is never called.
    let refused = buy("good", &["--max-amount", "0.00005"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(calls_made(), 1, "the signer was not asked");

    // A plugin that answers garbage, signs with another key or hangs: refused, nothing paid.
    for (mode, why) in [
        ("bad-json", "did not answer JSON"),
        ("wrong-key", "does not verify under the pinned address"),
        ("hang", "did not answer within"),
    ] {
        let refused = buy(mode, &[]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{mode}: {stderr}");
        assert!(stderr.contains(why), "{mode}: {stderr}");
    }
    assert_eq!(
        balance(dir, &buyer),
        1_000_000 - PRICE,
        "only the good signature paid"
    );
}

/// A `d402-agent daemon` process on a free loopback port, killed on drop.
struct Daemon {
    child: Child,
    url: String,
}

impl Daemon {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_d402-agent"))
            .args([
                "--config",
                "agent/config.toml",
                "daemon",
                "--port",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .strip_prefix("d402-agent daemon listening on ")
            .unwrap_or_else(|| panic!("unexpected: {line:?}"))
            .trim()
            .to_string();
        Self { child, url }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 request to the daemon: status line's code.
fn raw_status(url: &str, host: &str, token: Option<&str>) -> u16 {
    let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /v1/ledger HTTP/1.1\r\nhost: {host}\r\n{auth}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn applications_buy_through_the_daemon_with_its_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_node, buyer) = setup(dir, &[]);
    let daemon = Daemon::start(dir);
    let token_file = dir.join("agent/daemon-token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let host = daemon.url.trim_start_matches("http://").to_string();
    assert_eq!(raw_status(&daemon.url, &host, None), 401);
    assert_eq!(raw_status(&daemon.url, &host, Some("wrong")), 401);
    assert_eq!(raw_status(&daemon.url, "evil.example", Some(&token)), 403);
    assert_eq!(raw_status(&daemon.url, &host, Some(&token)), 200);

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent-daemon");
    let python = std::env::var("D402_PYTHON").unwrap_or_else(|_| "python3".into());
    for (program, script) in [(python.as_str(), "client.py"), ("node", "client.mjs")] {
        let output = Command::new(program)
            .arg(examples.join(script))
            .args([
                "--daemon",
                &daemon.url,
                "--token-file",
                token_file.to_str().unwrap(),
            ])
            .args(["--capability", "util.json_transform@1", "--input", TASK])
            .output()
            .unwrap();
        let answer: Value = serde_json::from_str(&ok(output)).unwrap();
        assert_eq!(answer["status"], "accepted", "{script}: {answer}");
        assert_eq!(answer["result"]["result"]["a.b"], 2, "{script}: {answer}");
    }
    assert_eq!(balance(dir, &buyer), 1_000_000 - 2 * PRICE);
    // A daemon refuses to listen beyond loopback.
    let refused = agent(dir, &["daemon", "--host", "0.0.0.0", "--port", "0"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("loopback only"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_client_lists_the_tools_and_buys_within_the_policy() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let per_request = (2 * PRICE).to_string();
    let (_node, buyer) = setup(dir, &["--max-per-request", &per_request]);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_d402-agent"));
    command
        .args(["--config", "agent/config.toml", "mcp"])
        .current_dir(dir);
    let client = ().serve(rmcp::transport::TokioChildProcess::new(command).unwrap()).await.unwrap();

    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "discover",
            "get_receipt",
            "ledger",
            "quote",
            "request",
            "search_capabilities"
        ]
    );

    let call = |name: &'static str, arguments: Value| {
        let client = &client;
        async move {
            let params = CallToolRequestParams::new(name)
                .with_arguments(arguments.as_object().cloned().unwrap_or_default());
            client.call_tool(params).await.unwrap()
        }
    };
    let task = serde_json::json!({"capability_id": "util.json_transform@1", "input": serde_json::from_str::<Value>(TASK).unwrap()});
    let quoted = call("quote", task.clone()).await;
    let quote = &quoted
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{quoted:?}"))["quotes"];
    assert_eq!(
        (quote[0]["amount"].as_str(), quote[0]["allowed"].as_bool()),
        (Some("100"), Some(true)),
        "{quote}"
    );
    assert_eq!(balance(dir, &buyer), 1_000_000, "a quote pays nothing");

    let bought = call("request", task.clone()).await;
    assert_ne!(bought.is_error, Some(true), "{bought:?}");
    let document = bought.structured_content.unwrap();
    assert_eq!(document["task"]["status"], "accepted", "{document}");
    let task_id = document["task"]["taskId"].as_str().unwrap().to_string();

    let mut capped = task.clone();
    capped["max_amount"] = serde_json::json!("0.00005");
    let refused = call("request", capped).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(format!("{:?}", refused.content).contains("max-per-request"));

    let receipt = call("get_receipt", serde_json::json!({"task_id": task_id})).await;
    assert_eq!(
        receipt.structured_content.unwrap()["verified"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let ledger = call("ledger", serde_json::json!({})).await;
    assert_eq!(
        ledger.structured_content.unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(balance(dir, &buyer), 1_000_000 - PRICE);
    client.cancel().await.unwrap();
}

#[test]
fn a_key_from_the_environment_pays_and_its_absence_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let node = Node::start(dir, &[]);
    let buyer = funded_buyer(dir);
    ok(agent(
        dir,
        &[
            "init",
            "--gateway",
            &node.base,
            "--key-env",
            "MY_BUYER_KEYPAIR",
        ],
    ));
    let missing = request(dir, &[]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("MY_BUYER_KEYPAIR, which is not set")
    );
    let keypair = std::fs::read_to_string(dir.join("buyer.json")).unwrap();
    let output = request_command(dir)
        .env("MY_BUYER_KEYPAIR", keypair)
        .output()
        .unwrap();
    assert_eq!(json(output)["task"]["status"], "accepted");
    assert_eq!(balance(dir, &buyer), 1_000_000 - PRICE);
}

#[test]
fn the_rust_example_on_the_buyer_crate_buys_a_task() {
    let example = Path::new(env!("CARGO_BIN_EXE_d402-agent"))
        .with_file_name("examples")
        .join("buy");
    assert!(
        example.exists(),
        "build it: cargo build -p d402-client --examples"
    );
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (node, buyer) = setup(dir, &[]);
    let output = Command::new(example)
        .args([
            node.base.as_str(),
            "buyer.json",
            "util.json_transform@1",
            TASK,
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    let bought = json(output);
    assert_eq!(bought["task"]["status"], "accepted", "{bought}");
    assert_eq!(balance(dir, &buyer), 1_000_000 - PRICE);
}

/// The repository's anvil (what scripts/test.sh installs), or `D402_ANVIL`.
fn anvil() -> PathBuf {
    std::env::var_os("D402_ANVIL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
        })
}

/// A `d402 devnet --rail RAIL` (the built-in capabilities, free ports) and the words of
/// the buyer command it printed; stopped with Ctrl-C on drop.
struct Devnet {
    child: Child,
    buyer: Vec<String>,
    lines: Vec<String>,
}

impl Devnet {
    fn start(dir: &Path, rail: &str) -> Self {
        // A node state with the built-in capabilities, for the devnet's nodes to copy.
        let mut template = Command::new(d402_binary())
            .args(["node", "--state", "template", "--http-port", "0"])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        BufReader::new(template.stdout.take().unwrap())
            .read_line(&mut String::new())
            .unwrap();
        let _ = template.kill();
        let _ = template.wait();
        let mut child = Command::new(d402_binary())
            .args([
                "devnet",
                "--rail",
                rail,
                "--evm-port",
                "0",
                "--solana-port",
                "0",
                "--http-port",
                "0",
            ])
            .args(["--dir", "devnet", "--from-state", "template"])
            .current_dir(dir)
            .env("D402_ANVIL", anvil())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (lines, command) = d402_testkit::devnet_banner(&mut stdout);
        // Keep reading its output so that it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let buyer = command.split_whitespace().map(str::to_string).collect();
        Self {
            child,
            buyer,
            lines,
        }
    }

    /// The local chain's address it printed.
    fn chain_url(&self) -> &str {
        d402_testkit::devnet_chain_url(&self.lines)
    }

    /// The value after the first of `flags` in the buyer command.
    fn after(&self, flags: &[&str]) -> &str {
        let position = self
            .buyer
            .iter()
            .position(|w| flags.contains(&w.as_str()))
            .unwrap_or_else(|| panic!("{flags:?} not in {:?}", self.buyer));
        &self.buyer[position + 1]
    }

    /// The buyer key file it printed.
    fn key(&self) -> &str {
        self.after(&["--key-file", "--key"])
    }

    /// `d402-agent init` paying its gateway on `rail` with the printed buyer key (on
    /// Solana through `solana_rpc`, its own RPC unless given), at most 10,000 per request.
    fn init_agent(&self, dir: &Path, rail: &str, solana_rpc: Option<&str>) {
        let mut args = vec![
            "init",
            "--gateway",
            self.after(&["--gateway"]),
            "--rail",
            rail,
        ];
        args.extend(["--key-file", self.key(), "--max-per-request", "10000"]);
        if rail.starts_with("x402-base") {
            args.extend(["--evm-rpc-url", self.chain_url()]);
        } else {
            let rpc = solana_rpc.unwrap_or_else(|| self.solana_rpc());
            args.extend([
                "--solana-rpc-url",
                rpc,
                "--solana-network",
                "solana:localnet",
            ]);
        }
        ok(agent(dir, &args));
    }

    /// The Solana RPC it printed.
    fn solana_rpc(&self) -> &str {
        self.after(&["--rpc-url", "--solana-rpc-url"])
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Buys a task on the configured real rail, verifies its receipt and checks the policy.
fn buy_on_a_real_rail(dir: &Path, network_prefix: &str) {
    let bought = json(request(dir, &[]));
    assert_eq!(bought["task"]["status"], "accepted", "{bought}");
    let task_id = bought["task"]["taskId"].as_str().unwrap();
    // Signatures, request, amounts, and the payment transaction on chain.
    let verified = json(agent(
        dir,
        &["verify-receipt", "--task-id", task_id, "--json"],
    ));
    let checks = verified["verified"].as_array().unwrap();
    assert_eq!(checks.len(), 4, "{verified}");
    assert!(
        checks[3]
            .as_str()
            .unwrap()
            .starts_with("chain: transaction"),
        "{verified}"
    );
    // A ledger naming a transaction that is not on chain does not verify.
    let transaction = checks[3]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap();
    let bogus = if network_prefix.starts_with("eip155") {
        format!("0x{}", "0".repeat(64))
    } else {
        "1".repeat(64)
    };
    let ledger_path = dir.join("agent/ledger.jsonl");
    let original = std::fs::read_to_string(&ledger_path).unwrap();
    let forged: Vec<String> = original
        .lines()
        .map(|line| {
            let mut entry: Value = serde_json::from_str(line).unwrap();
            if entry["paymentResponse"]["transaction"] == transaction {
                entry["paymentResponse"]["transaction"] = Value::String(bogus.clone());
            }
            entry.to_string()
        })
        .collect();
    assert_ne!(
        forged.join("\n") + "\n",
        original,
        "the transaction is in the ledger"
    );
    std::fs::write(&ledger_path, forged.join("\n") + "\n").unwrap();
    let refused = agent(dir, &["verify-receipt", "--task-id", task_id]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not on chain"), "{stderr}");
    std::fs::write(&ledger_path, original).unwrap();
    let entries = json(agent(dir, &["ledger", "--json"]));
    assert!(
        entries[0]["network"]
            .as_str()
            .unwrap()
            .starts_with(network_prefix),
        "{entries}"
    );
    let refused = request(dir, &["--max-amount", "0.00001"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("max-per-request"));
}

/// A devnet paid on `rail` (in a fresh directory) where the agent bought a task and
/// verified its receipt.
fn bought_on(rail: &str, network_prefix: &str) -> (tempfile::TempDir, Devnet) {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(dir.path(), rail);
    devnet.init_agent(dir.path(), rail, None);
    buy_on_a_real_rail(dir.path(), network_prefix);
    (dir, devnet)
}

#[test]
fn the_agent_pays_x402_on_base_on_a_local_chain() {
    bought_on("x402-base", "eip155:8453");
}

#[test]
fn the_agent_pays_into_a_base_task_escrow_and_finds_its_split_on_chain() {
    bought_on("x402-base-escrow", "eip155:8453");
}

#[test]
fn the_agent_pays_solana_usdc_on_a_local_cluster() {
    bought_on("solana-direct", "solana:");
}

#[test]
fn the_agent_pays_x402_on_solana_and_the_gateway_pays_the_fee() {
    let (dir, devnet) = bought_on("x402-solana", "solana:");
    let (dir, key, rpc) = (dir.path(), devnet.key(), devnet.solana_rpc());
    // The payment went as PAYMENT-SIGNATURE, the buyer's signed transaction, whose fee the
    // gateway paid (it is the transaction's first signer, not the buyer).
    let entries = json(agent(dir, &["ledger", "--json"]));
    let entries = entries.as_array().unwrap();
    let paid = entries.iter().find(|e| e["event"] == "paid").unwrap();
    assert_eq!(paid["header"], "payment-signature", "{paid}");
    let settled = entries.iter().find(|e| e["event"] == "settled").unwrap();
    let transaction: d402_rail_solana::Signature = settled["paymentResponse"]["transaction"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let rpc = d402_rail_solana::SolanaRpc::new(rpc.parse().unwrap());
    let landed = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(rpc.transaction(&transaction))
        .unwrap()
        .expect("the payment is on chain");
    let buyer = d402_wallet::load(&dir.join(key))
        .unwrap()
        .public()
        .to_string();
    let signers = landed.account_keys();
    assert_ne!(signers[0].to_string(), buyer, "the gateway pays the fee");
    assert_eq!(
        signers[1].to_string(),
        buyer,
        "the buyer signed the transfer"
    );
}

/// A proxy to the Solana RPC at `upstream` that forwards every call until the first
/// `sendTransaction`: that one reaches the network but its answer is lost, and from then on
/// every call is dropped until `healed` is set (the RPC vanished just as the transfer went).
fn vanishing_rpc(listener: std::net::TcpListener, upstream: String) -> Arc<AtomicBool> {
    let healed = Arc::new(AtomicBool::new(false));
    let heal = healed.clone();
    std::thread::spawn(move || {
        let mut down = false;
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let request = read_request(&mut client);
            if down && !heal.load(Ordering::SeqCst) {
                continue;
            }
            let url = upstream.trim_start_matches("http://").trim_end_matches('/');
            let mut server = std::net::TcpStream::connect(url).unwrap();
            server.write_all(&request).unwrap();
            let mut answer = Vec::new();
            server.read_to_end(&mut answer).unwrap();
            if !down && String::from_utf8_lossy(&request).contains("\"sendTransaction\"") {
                down = true;
                continue;
            }
            let _ = client.write_all(&answer);
        }
    });
    healed
}

#[test]
fn a_solana_transfer_sent_as_the_rpc_vanished_is_resumed_not_paid_twice() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let devnet = Devnet::start(dir, "solana-direct");
    let (key, rpc) = (devnet.key(), devnet.solana_rpc());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let healed = vanishing_rpc(listener, rpc.to_string());
    devnet.init_agent(dir, "solana-direct", Some(&proxy));
    let usdc = |owner: &str| {
        let owner: d402_rail_solana::Address = owner.parse().unwrap();
        let account =
            d402_rail_solana::token::associated_token_address(&owner, &d402_rail_solana::USDC_MINT);
        let rpc = d402_rail_solana::SolanaRpc::new(rpc.parse().unwrap());
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(rpc.token_balance(&account))
            .unwrap()
            .unwrap_or(0)
    };
    let buyer = d402_wallet::load(&dir.join(key))
        .unwrap()
        .public()
        .to_string();
    let before = usdc(&buyer);

    // The transfer went out, the agent never learnt whether it landed: it keeps the
    // payment reserved with its signed transfer, and says how to go on.
    let lost = request(dir, &[]);
    assert_eq!(lost.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert!(stderr.contains("stays reserved"), "{stderr}");
    assert_eq!(usdc(&buyer), before - PRICE, "the transfer landed");

    // The next identical request puts that same transfer on chain (it is there) and
    // presents it: one task, one charge, one signature.
    healed.store(true, Ordering::SeqCst);
    let bought = json(request(dir, &[]));
    assert_eq!(bought["task"]["status"], "accepted", "{bought}");
    assert_eq!(usdc(&buyer), before - PRICE, "charged once");
    let entries = json(agent(dir, &["ledger", "--json"]));
    let events = events(&entries);
    assert_eq!(events, ["reserved", "paid", "settled"], "{entries}");
}

#[test]
fn a_hot_wallet_is_created_for_test_networks_and_mainnet_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let created = json(agent(
        dir,
        &["wallet", "create", "--out", "hot.key", "--json"],
    ));
    assert!(created["address"].as_str().unwrap().starts_with("0x"));
    assert_eq!(created["network"], "eip155:84532");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("hot.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let again = agent(dir, &["wallet", "create", "--out", "hot.key"]);
    assert_eq!(again.status.code(), Some(1), "never overwritten");
    let mainnet = agent(
        dir,
        &[
            "wallet",
            "create",
            "--out",
            "main.key",
            "--network",
            "eip155:8453",
        ],
    );
    assert!(String::from_utf8_lossy(&mainnet.stderr).contains("--allow-mainnet"));
    assert!(!dir.join("main.key").exists());
    ok(agent(
        dir,
        &[
            "wallet",
            "create",
            "--out",
            "main.key",
            "--network",
            "eip155:8453",
            "--allow-mainnet",
        ],
    ));
}

#[test]
fn an_agent_initialised_manual_shows_challenges_and_pays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let node = Node::start(dir, &[]);
    ok(agent(
        dir,
        &["init", "--gateway", &node.base, "--rail", "manual"],
    ));
    let shown = request(dir, &[]);
    assert_eq!(shown.status.code(), Some(2));
    let challenge: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(challenge["accepts"][0]["amount"], PRICE.to_string());
    assert!(
        !dir.join("agent/ledger.jsonl").exists(),
        "nothing reserved or paid"
    );
}
