//! A real `d402 node` process serving the json-transform component (build it first:
//! scripts/build-capabilities.sh), configured by a TOML file: its `/openapi.json` carries the
//! price, and schemathesis (installed by scripts/test.sh) finds no difference between the
//! document and what the handlers answer.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::install;
use d402_testkit::repo_path;
use serde_json::Value;

/// A running `d402 node`, killed on drop.
struct Node {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs a built capability (`json-transform`/`json_transform`) into a fresh state
/// directory and starts `d402 node --config node.toml` serving `capability`.
fn start_node(source_dir: &str, component: &str, capability: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), source_dir, &format!("{component}.wasm"));
    let config =
        format!("[node]\nstate = \"state\"\ncapability = \"{capability}\"\n[http]\nport = 0\n");
    std::fs::write(dir.path().join("node.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args(["node", "--config", "node.toml"])
        .current_dir(dir.path())
        .env_remove("D402_STATE")
        .env_remove("D402_CONFIG")
        .stdout(Stdio::piped())
        .spawn()
        .expect("d402 node starts");
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = send.send(line);
        }
    });
    let mut node = Node {
        child,
        address: String::new(),
        _dir: dir,
    };
    let line = receive
        .recv_timeout(Duration::from_secs(120))
        .expect("the node prints its address");
    let address = line
        .strip_prefix("d402 node listening on http://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    node.address = address.to_string();
    node
}

/// `GET path` over plain HTTP/1.1: (status, body).
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// The schemathesis to run: `D402_SCHEMATHESIS` (set by scripts/lib/setup.sh), the venv
/// scripts/test.sh installs under target/, or `schemathesis` on PATH.
fn schemathesis() -> PathBuf {
    let candidates = std::env::var_os("D402_SCHEMATHESIS")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            repo_path("target/schemathesis/bin/schemathesis"),
            PathBuf::from("schemathesis"),
        ]);
    for candidate in candidates {
        let works = Command::new(&candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if works {
            return candidate;
        }
    }
    panic!(
        "schemathesis is not installed: run scripts/test.sh, or `source scripts/lib/setup.sh && ensure_schemathesis` \
         from the repository root (it installs schemathesis==4.32.5 into target/schemathesis)"
    );
}

#[test]
fn openapi_document_carries_the_price() {
    let node = start_node("json-transform", "json_transform", "util.json_transform@1");
    let (status, body) = get(&node.address, "/openapi.json");
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], format!("http://{}", node.address));
    let text = std::fs::read_to_string(d402_testkit::manifest_path("json-transform")).unwrap();
    let manifest = d402_protocol::CapabilityManifest::from_json(&text).unwrap();
    let info = &doc["paths"]["/tasks"]["post"]["x-payment-info"];
    assert_eq!(info["method"], "x402");
    assert_eq!(info["currency"], "USD");
    assert_eq!(info["amount"], "0.0001", "the manifest's $0.0001");
    assert_eq!(info["sku"], "util.json_transform@1");
    assert_eq!(
        info["pricingVersion"], 1,
        "the first price this node listed"
    );
    assert_eq!(
        info["offers"][0]["amount"], "100",
        "base units of the simulated USD"
    );
    assert_eq!(info["offers"][0]["network"], "d402:simulated");
    assert_eq!(doc["components"]["schemas"]["Input"], manifest.input_schema);
    assert!(
        doc["paths"].get("/v1/web/page-to-markdown").is_none(),
        "the alias is for web.page_to_markdown@1 only"
    );
    let (_, discovery) = get(&node.address, "/.well-known/d402-gateway.json");
    let discovery: Value = serde_json::from_str(&discovery).unwrap();
    assert_eq!(discovery["capabilities"][0]["price"], "$0.0001");
}

/// Runs schemathesis against `url` with the checked-in settings and `args`; asserts exit 0.
fn run_schemathesis(schemathesis: &Path, url: &str, args: &[&str]) -> String {
    let work = tempfile::tempdir().unwrap();
    let config = repo_path("host/cli/tests/schemathesis.toml");
    let output = Command::new(schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            url,
            "--max-examples",
            "30",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .args(args)
        .current_dir(work.path())
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[test]
fn schemathesis_finds_the_document_honest() {
    let schemathesis = schemathesis();
    let node = start_node("json-transform", "json_transform", "util.json_transform@1");
    let url = format!("http://{}/openapi.json", node.address);
    // Every operation, every check, no payment header: a schema-valid task must get the
    // 402 challenge (never a 400), an invalid one a 400 (never the challenge).
    let all = run_schemathesis(
        &schemathesis,
        &url,
        &["--generation-with-security-parameters", "false"],
    );
    assert!(
        all.contains("11 selected / 11 total"),
        "every operation (the capability's own route too) was tested:\n{all}"
    );
    // The paid operations with a PAYMENT-SIGNATURE that is base64 but not a payment: every
    // answer is documented (400 `malformed_payment` with a fresh challenge header). Such a
    // request is never accepted, so the positive-data check is left out.
    let paid = run_schemathesis(
        &schemathesis,
        &url,
        &[
            "--include-method",
            "POST",
            "--header",
            "PAYMENT-SIGNATURE: bm90IGEgcGF5bWVudA==",
            "--exclude-checks",
            "positive_data_acceptance",
        ],
    );
    assert!(paid.contains("2 selected / 11 total"), "{paid}");
}

#[test]
fn schemathesis_finds_the_page_to_markdown_alias_honest() {
    let schemathesis = schemathesis();
    let node = start_node(
        "page-to-markdown",
        "page_to_markdown",
        "web.page_to_markdown@1",
    );
    let url = format!("http://{}/openapi.json", node.address);
    let all = run_schemathesis(
        &schemathesis,
        &url,
        &["--generation-with-security-parameters", "false"],
    );
    assert!(
        all.contains("11 selected / 11 total"),
        "the alias is documented and tested:\n{all}"
    );
}
