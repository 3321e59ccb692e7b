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
/// Installs the hostile test capability (`test.hostile@1`: its behaviour chosen by its
/// input) in `dir`'s state with a `deadline_ms` deadline, signed by `dir`'s publisher
/// (install another capability first).
pub fn install_hostile(dir: &Path, deadline_ms: u64) {
    let hostile = components_dir().join("hostile.wasm");
    let manifest = d402_testkit::hostile_manifest(
        &std::fs::read(&hostile).unwrap(),
        deadline_ms,
        Some(d402_testkit::fetch_permission(&["example.com"], 1)),
        "snapshot-deterministic",
    );
    std::fs::write(
        dir.join("hostile.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let hostile = hostile.to_str().unwrap();
    for args in [
        [
            "create",
            "--manifest",
            "hostile.json",
            "--wasm",
            hostile,
            "--key",
            "publisher.json",
            "--out",
            "h.json",
        ]
        .as_slice(),
        [
            "install",
            "--file",
            "h.json",
            "--wasm",
            hostile,
            "--manifest",
            "hostile.json",
            "--state",
            "state",
        ]
        .as_slice(),
    ] {
        let mut command = vec!["capability", "implementation"];
        command.extend(args);
        ok(dir, &command);
    }
}

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

/// `d402 balances --state state --json` in `dir`: every account with its balance and
/// earnings.
pub fn balances(dir: &Path) -> Vec<Value> {
    serde_json::from_str(&ok(dir, &["balances", "--state", "state", "--json"])).unwrap()
}

/// The entry of `account` in `balances`.
pub fn account<'a>(balances: &'a [Value], account: &str) -> &'a Value {
    balances
        .iter()
        .find(|a| a["account"] == account)
        .unwrap_or_else(|| panic!("{account} in {balances:?}"))
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

/// A running `d402 devnet` (json-transform installed, free ports) and what it printed up to
/// its buyer command.
pub struct Devnet {
    /// The devnet process.
    pub child: Child,
    /// Every line it printed until the buyer command, in order.
    pub lines: Vec<String>,
    /// The printed buyer command's arguments after `d402`, with json-transform's input in
    /// place of the example page.
    pub buyer: Vec<String>,
    /// Its standard output, kept open: a devnet printing to a closed pipe would stop.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Devnet {
    /// Starts `d402 devnet --dir <root>/devnet <extra>` with anvil from `anvil` and waits for
    /// its buyer command.
    pub fn start(root: &Path, anvil: &Path, extra: &[&str]) -> Self {
        let template = root.join("template");
        std::fs::create_dir_all(&template).unwrap();
        install(&template, "json-transform", "json_transform.wasm");
        let mut child = Command::new(env!("CARGO_BIN_EXE_d402"))
            .args(["devnet", "--evm-port", "0", "--http-port", "0"])
            .args(extra)
            .arg("--dir")
            .arg(root.join("devnet"))
            .arg("--from-state")
            .arg(template.join("state"))
            .env("D402_ANVIL", anvil)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (lines, command) = d402_testkit::devnet_banner(&mut stdout);
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words[0], "d402", "{command}");
        let mut buyer = Vec::new();
        let mut rest = words[1..].iter();
        while let Some(word) = rest.next() {
            if *word == "--url" {
                rest.next();
                buyer.extend([
                    "--input".into(),
                    r#"{"value": {"k": 1}, "select": ["k"]}"#.into(),
                ]);
            } else {
                buyer.push(word.to_string());
            }
        }
        Self {
            child,
            lines,
            buyer,
            _stdout: stdout,
        }
    }

    /// The address of the local chain it printed.
    pub fn chain_url(&self) -> String {
        d402_testkit::devnet_chain_url(&self.lines).to_string()
    }

    /// Stops it with Ctrl-C; whether it exited cleanly.
    pub fn stop(mut self) -> bool {
        // SAFETY: kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        self.child.wait().unwrap().success()
    }
}

/// The 402 challenge for `body` at the gateway `base`, and a signed x402 payment
/// (`PAYMENT-SIGNATURE` value) of its first offer by `buyer` (an EIP-3009 authorization in
/// Base USDC, up to $0.001).
pub async fn x402_payment(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
    buyer: &d402_rail_x402_evm::PrivateKeySigner,
) -> (d402_payment::x402::PaymentRequired, String) {
    use d402_payment::Payer;
    use d402_rail_x402_evm::{BASE_USDC, EvmNetwork, EvmPayer};
    let first = client
        .post(format!("{base}/tasks"))
        .json(body)
        .send()
        .await
        .unwrap();
    let challenge: d402_payment::x402::PaymentRequired =
        d402_payment::x402::decode_header(first.headers()["payment-required"].to_str().unwrap())
            .unwrap();
    let payer = EvmPayer::new(buyer.clone(), vec![(EvmNetwork::BASE, BASE_USDC)], 1_000);
    let purchase = d402_payment::Purchase {
        resource: Some(&challenge.resource),
        body,
        now: d402_protocol::Timestamp::now(),
    };
    let payment = payer.pay(&challenge.accepts[0], &purchase).await.unwrap();
    (challenge, d402_payment::x402::encode_header(&payment))
}

/// The repository's anvil (what `scripts/test.sh` installs).
pub fn anvil() -> std::path::PathBuf {
    d402_rail_x402_evm::devchain::DevChain::anvil_path(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    )
    .unwrap()
}
