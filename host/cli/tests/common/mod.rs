//! Helpers shared by the CLI's process-level tests: running `d402`, installing capabilities,
//! funding buyers and starting node processes.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use d402_protocol::Keypair;
use d402_testkit::{components_dir, manifest_path};
use serde_json::Value;

pub fn d402(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

pub fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = d402(dir, args);
    assert_eq!(code, 0, "d402 {args:?}: {err}");
    out
}

/// Installs the component `wasm` (in the build's components dir) for the manifest of
/// `capability_dir` into `dir/state`, packaged by a fresh publisher key.
pub fn install(dir: &Path, capability_dir: &str, wasm: &str) {
    if !dir.join("publisher.json").exists() {
        ok(dir, &["keygen", "--out", "publisher.json"]);
    }
    let manifest = manifest_path(capability_dir);
    let manifest = manifest.to_str().unwrap();
    let wasm = components_dir().join(wasm);
    let wasm = wasm.to_str().unwrap();
    let package = format!("{capability_dir}.package.json");
    ok(
        dir,
        &[
            "capability",
            "implementation",
            "create",
            "--manifest",
            manifest,
            "--wasm",
            wasm,
            "--key",
            "publisher.json",
            "--out",
            &package,
        ],
    );
    ok(
        dir,
        &[
            "capability",
            "implementation",
            "install",
            "--file",
            &package,
            "--wasm",
            wasm,
            "--manifest",
            manifest,
            "--state",
            "state",
        ],
    );
}

/// A buyer key in `dir/buyer.json`, funded with $1 on the node's ledger (node stopped).
pub fn funded_buyer(dir: &Path) -> Keypair {
    ok(dir, &["keygen", "--out", "buyer.json"]);
    let buyer = d402_wallet::load(&dir.join("buyer.json")).unwrap();
    ok(
        dir,
        &[
            "faucet",
            "--state",
            "state",
            "--account",
            &buyer.public().to_string(),
            "--amount",
            "1",
        ],
    );
    buyer
}

/// A `d402 node` child process; killed (SIGKILL) when dropped.
pub struct NodeProcess {
    /// The child process.
    pub child: Child,
    /// The gateway's base URL (`http://127.0.0.1:<port>`), empty for a node without HTTP.
    pub base: String,
    /// The node's peer-network addresses.
    pub p2p: Vec<String>,
}

impl NodeProcess {
    /// Starts `d402 node --state state --http-port 0 <extra>` in `dir`.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_logged(dir, extra, None)
    }

    /// Starts `d402 node --state state --http-port 0 <extra>` in `dir`, with info logs in
    /// `log` when given, and waits until it is up: its peer-network addresses and, for a
    /// gateway, its HTTP address have been printed.
    pub fn start_logged(dir: &Path, extra: &[&str], log: Option<&Path>) -> Self {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_d402"))
            .args(["node", "--state", "state", "--http-port", "0"])
            .args(extra)
            .current_dir(dir)
            .env("D402_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut base, mut p2p) = (String::new(), Vec::new());
        loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the node exited before it was up"
            );
            if let Some(address) = line.strip_prefix("d402 node p2p address ") {
                p2p.push(address.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("d402 node listening on ") {
                base = rest.split_whitespace().next().unwrap().to_string();
                break;
            } else if line.starts_with("d402 node running") {
                break;
            } else {
                panic!("unexpected line: {line:?}");
            }
        }
        Self { child, base, p2p }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn micros(value: &Value) -> u64 {
    (value.as_f64().unwrap() * 1e6).round() as u64
}

pub fn paid_out(settlement: &Value) -> u64 {
    let sum = |key: &str| {
        settlement[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| micros(&p["amount"]))
            .sum::<u64>()
    };
    sum("payouts") + sum("refunds")
}

/// `GET url` as JSON.
pub fn get_json(url: &str) -> Value {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = d402_client::http_client();
        client.get(url).send().await.unwrap().json().await.unwrap()
    })
}

/// `d402 http-task --gateway GATEWAY --url URL --key buyer.json [extra]` in `dir`: the JSON
/// it printed (for accepted and rejected tasks alike; the caller asserts the status).
pub fn buy(dir: &Path, gateway: &str, url: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "http-task",
        "--gateway",
        gateway,
        "--url",
        url,
        "--key",
        "buyer.json",
    ];
    args.extend_from_slice(extra);
    let (_, out, err) = d402(dir, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("http-task printed no JSON ({e}): {err}"))
}

/// A `PAYMENT-SIGNATURE` header paying `requirements` for `body` with `key` on the
/// simulated rail.
pub fn pay_simulated(
    requirements: &d402_payment::x402::PaymentRequirements,
    body: &Value,
    key: &Keypair,
) -> String {
    let purchase = d402_payment::Purchase {
        resource: None,
        body,
        now: d402_protocol::Timestamp::now(),
    };
    let payment = d402_rail_simulated::sign_payment(requirements, &purchase, key).unwrap();
    d402_payment::x402::encode_header(&payment)
}

/// The task a simulated `PAYMENT-SIGNATURE` header pays for.
pub fn task_id_of(header: &str) -> String {
    let payment = d402_payment::x402::decode_header(header).unwrap();
    d402_rail_simulated::payment_key(&payment)
        .unwrap()
        .task_id()
}
