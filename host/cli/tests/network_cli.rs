//! A multi-process peer network on 127.0.0.1: a gateway process leasing tasks over libp2p to
//! separate worker processes, each with its own state and wallet.
//!
//! - quorum 2-of-3 across three workers pays the two that agree; a worker that saw another
//!   page is out-voted and gets a negative reputation event;
//! - a race survives a worker killed mid-task, which is replaced by a spare worker;
//! - a worker whose artifact is missing or tampered fetches it by CID from the gateway and
//!   never runs the tampered bytes;
//! - a restarted worker rejoins through its peer store, without a bootstrap flag;
//! - on x402 on Base, a remote worker's net is owed to the EVM wallet its offer announces.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{NodeProcess, buy, d402, funded_buyer, get_json, install, paid_out};
use serde_json::Value;

const ARTICLE: &str =
    include_str!("../../../capabilities/page-to-markdown/extractor/tests/pages/news-article.html");

/// A test network: a gateway and its workers, each in its own directory.
struct Net {
    root: tempfile::TempDir,
    template: PathBuf,
    gateway: NodeProcess,
}

/// A worker process with its directory, log and payout account.
struct Worker {
    dir: PathBuf,
    log: PathBuf,
    process: NodeProcess,
    account: String,
}

impl Net {
    /// A gateway with page-to-markdown installed, a funded buyer and `gateway_flags`.
    fn start(gateway_flags: &[&str]) -> Self {
        let root = tempfile::Builder::new()
            .disable_cleanup(std::env::var_os("D402_KEEP").is_some())
            .tempdir()
            .unwrap();
        eprintln!("network test dir {}", root.path().display());
        let template = root.path().join("template");
        std::fs::create_dir_all(&template).unwrap();
        install(&template, "page-to-markdown", "page_to_markdown.wasm");
        let dir = Self::node_dir(&template, root.path(), "gateway");
        funded_buyer(&dir);
        let mut flags = vec![
            "--roles",
            "gateway,validator",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--allow-private-addresses",
        ];
        flags.extend_from_slice(gateway_flags);
        let gateway =
            NodeProcess::start_logged(&dir, &flags, Some(&root.path().join("gateway.log")));
        Self {
            root,
            template,
            gateway,
        }
    }

    /// A node directory `name` with the template's installed capabilities.
    fn node_dir(template: &Path, root: &Path, name: &str) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let copied = Command::new("cp")
            .arg("-r")
            .arg(template.join("state"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(copied.success());
        dir
    }

    /// Starts worker `name` bootstrapping to the gateway; `prepare` may change its state first.
    fn worker(&self, name: &str, prepare: impl FnOnce(&Path)) -> Worker {
        self.worker_with(name, prepare, &[])
    }

    /// As [`Net::worker`], with `extra` flags.
    fn worker_with(&self, name: &str, prepare: impl FnOnce(&Path), extra: &[&str]) -> Worker {
        let dir = Self::node_dir(&self.template, self.root.path(), name);
        prepare(&dir.join("state"));
        let bootstrap = self.gateway.p2p[0].clone();
        let log = self.root.path().join(format!("{name}.log"));
        let mut flags = worker_flags(Some(&bootstrap));
        flags.extend_from_slice(extra);
        let process = NodeProcess::start_logged(&dir, &flags, Some(&log));
        let account = d402_wallet::load(&dir.join("state/wallet.json"))
            .unwrap()
            .public()
            .to_string();
        Worker {
            dir,
            log,
            process,
            account,
        }
    }

    /// The workers whose offers the gateway has verified.
    fn offered_workers(&self) -> Vec<String> {
        let network = get_json(&format!("{}/network", self.gateway.base));
        network["nodeOffers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| {
                o["payload"]["roles"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == "worker")
            })
            .map(|o| o["payload"]["nodeId"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits until the gateway has heard the offers of all `workers`; how long it took.
    fn wait_for_offers(&self, workers: &[&Worker]) -> Duration {
        let started = Instant::now();
        loop {
            let offered = self.offered_workers();
            if workers.iter().all(|w| offered.contains(&w.account)) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "offers never arrived: {offered:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Buys one page-to-markdown task for `url` through the gateway; the http-task output.
    fn buy(&self, url: &str) -> Value {
        buy(
            &self.root.path().join("gateway"),
            &self.gateway.base,
            url,
            &[],
        )
    }
}

fn worker_flags(bootstrap: Option<&str>) -> Vec<&str> {
    let mut flags = vec![
        "--roles",
        "worker",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--allow-private-addresses",
        "--offer-interval-seconds",
        "2",
    ];
    if let Some(bootstrap) = bootstrap {
        flags.extend(["--bootstrap", bootstrap]);
    }
    flags
}

/// The blob file of the installed page-to-markdown artifact in `state`.
fn artifact_path(state: &Path) -> PathBuf {
    let package = std::fs::read_dir(state.join("implementations"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let package: Value = serde_json::from_str(&std::fs::read_to_string(package).unwrap()).unwrap();
    state
        .join("blobs")
        .join(package["payload"]["artifactCid"].as_str().unwrap())
}

#[test]
fn a_quorum_across_three_worker_processes_pays_the_agreeing_two_and_outvotes_the_third() {
    let net = Net::start(&["--mode", "quorum", "--fanout", "3", "--quorum", "2"]);
    let workers: Vec<Worker> = (0..3)
        .map(|i| net.worker(&format!("worker-{i}"), |_| {}))
        .collect();
    let visible = net.wait_for_offers(&workers.iter().collect::<Vec<_>>());
    eprintln!("offers of 3 worker processes visible at the gateway after {visible:?}");

    // The first worker to fetch the page sees another article (a stale edge cache, say) and
    // answers at once; the other two see the real one a moment later.
    let other = ARTICLE.replace(" the ", " the stale copy of the ");
    let page = d402_testkit::serve_pages(move |n| {
        if n == 0 {
            (Duration::ZERO, other.clone())
        } else {
            (Duration::from_millis(1500), ARTICLE.to_string())
        }
    });
    let out = net.buy(&page);
    let task = &out["task"];
    assert_eq!(task["status"], "accepted", "{out}");
    let receipt = &out["receipt"];
    assert_eq!(
        paid_out(&receipt["settlement"]),
        10_000,
        "payouts add up to the price"
    );
    let paid = d402_testkit::worker_payees(receipt);
    assert_eq!(paid.len(), 2, "two agreeing workers are paid: {receipt}");
    let accounts: Vec<&String> = workers.iter().map(|w| &w.account).collect();
    assert!(
        paid.iter().all(|p| accounts.contains(&p)),
        "payees are worker processes: {paid:?}"
    );
    let outvoted: Vec<&String> = accounts
        .iter()
        .copied()
        .filter(|a| !paid.contains(a))
        .collect();
    assert_eq!(outvoted.len(), 1);
    let events = receipt["signed"]["reputationEvents"].as_array().unwrap();
    let against = |account: &str| {
        events.iter().any(|e| {
            e["payload"]["subject"] == account
                && e["payload"]["delta"] == -1
                && e["payload"]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("out-voted")
        })
    };
    assert!(
        against(outvoted[0]),
        "the out-voted worker gets a negative event: {events:?} claims {} failures {}",
        receipt["claims"],
        receipt["failures"]
    );
    assert!(paid.iter().all(|p| !against(p)));
    assert!(
        !task["result"]["markdown"]
            .as_str()
            .unwrap()
            .contains("stale copy"),
        "the agreeing result is accepted"
    );
    assert!(
        receipt["claims"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["verdict"]["status"] == "rejected"),
        "{receipt}"
    );
}

#[test]
fn a_race_survives_a_worker_killed_mid_task_and_the_lease_moves_to_a_spare() {
    let net = Net::start(&["--mode", "race", "--fanout", "2"]);
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| net.worker(&format!("worker-{i}"), |_| {}))
        .collect();
    net.wait_for_offers(&workers.iter().collect::<Vec<_>>());
    let page = d402_testkit::serve_pages(|_| (Duration::from_secs(3), ARTICLE.to_string()));

    let (out, killed) = std::thread::scope(|scope| {
        let buying = scope.spawn(|| net.buy(&page));
        // Kill the first worker that starts running the lease.
        let started = Instant::now();
        let killed = loop {
            if let Some(i) = workers.iter().position(|w| {
                std::fs::read_to_string(&w.log)
                    .unwrap()
                    .contains("running a lease")
            }) {
                break i;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no worker ran the lease"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        workers[killed].process.kill();
        (buying.join().unwrap(), killed)
    });
    let task = &out["task"];
    assert_eq!(task["status"], "accepted", "the race survives: {out}");
    let receipt = &out["receipt"];
    let victim = format!("node:{}", workers[killed].account);
    let failures = receipt["failures"].as_array().unwrap();
    assert!(
        failures
            .iter()
            .any(|f| f["workerId"] == victim.as_str() && f["error"]["kind"] == "unreachable"),
        "the killed worker is recorded as unreachable: {failures:?}"
    );
    assert_eq!(
        task["workers"].as_array().map(Vec::len),
        Some(3),
        "a spare worker replaced the killed one: {task}"
    );
    let paid = d402_testkit::worker_payees(receipt);
    assert_eq!(paid.len(), 1);
    assert_ne!(paid[0], workers[killed].account);
    assert_eq!(receipt["validationReceipt"]["status"], "accepted");
}

#[test]
fn workers_fetch_a_missing_or_tampered_artifact_by_cid_and_a_restarted_worker_rejoins_without_bootstrap()
 {
    let net = Net::start(&["--mode", "quorum", "--fanout", "2", "--quorum", "2"]);
    let missing = net.worker("missing", |state| {
        std::fs::remove_file(artifact_path(state)).unwrap()
    });
    let tampered = net.worker("tampered", |state| {
        let path = artifact_path(state);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    });
    net.wait_for_offers(&[&missing, &tampered]);
    let page = d402_testkit::serve_html(ARTICLE);
    let out = net.buy(&page);
    assert_eq!(out["task"]["status"], "accepted", "{out}");
    let mut paid = d402_testkit::worker_payees(&out["receipt"]);
    paid.sort();
    let mut expected = vec![missing.account.clone(), tampered.account.clone()];
    expected.sort();
    assert_eq!(paid, expected, "both ran the genuine artifact and agree");
    for worker in [&missing, &tampered] {
        let log = std::fs::read_to_string(&worker.log).unwrap();
        assert!(log.contains("artifact fetched and verified"), "{log}");
        let gateway_copy =
            std::fs::read(artifact_path(&net.root.path().join("gateway/state"))).unwrap();
        assert_eq!(
            std::fs::read(artifact_path(&worker.dir.join("state"))).unwrap(),
            gateway_copy,
            "the good copy replaced it"
        );
    }

    // Restart one worker with the same state and no bootstrap flag: its peer store brings it
    // back, and the gateway hears its fresh offer.
    let mut missing = missing;
    missing.process.kill();
    let before = d402_protocol::Timestamp::now();
    missing.process =
        NodeProcess::start_logged(&missing.dir, &worker_flags(None), Some(&missing.log));
    let rejoined = {
        let gateway_heard = |offers: &Value| {
            offers["nodeOffers"].as_array().unwrap().iter().any(|o| {
                let issued: Option<d402_protocol::Timestamp> =
                    serde_json::from_value(o["payload"]["issuedAt"].clone()).ok();
                o["payload"]["nodeId"] == missing.account.as_str()
                    && issued.is_some_and(|t| t > before)
            })
        };
        let started = Instant::now();
        loop {
            if gateway_heard(&get_json(&format!("{}/network", net.gateway.base))) {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the restarted worker never rejoined"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    eprintln!("restarted worker's fresh offer visible after {rejoined:?}");
    let out = net.buy(&format!("{page}?again"));
    assert_eq!(out["task"]["status"], "accepted", "{out}");
}

#[test]
fn a_worker_at_its_lease_limit_answers_busy_and_the_gateway_asks_another() {
    let net = Net::start(&[]);
    let workers: Vec<Worker> = (0..2)
        .map(|i| net.worker_with(&format!("worker-{i}"), |_| {}, &["--max-leases", "1"]))
        .collect();
    net.wait_for_offers(&workers.iter().collect::<Vec<_>>());
    let page = d402_testkit::serve_pages(|_| (Duration::from_secs(5), ARTICLE.to_string()));
    // Three tasks at once for two workers that each run one lease at a time; the page is slow
    // enough (5 s) that the tasks overlap even on a loaded machine.
    let net = &net;
    let outcomes: Vec<Value> = std::thread::scope(|scope| {
        let buys: Vec<_> = (0..3)
            .map(|i| {
                let url = format!("{page}?n={i}");
                scope.spawn(move || net.buy(&url))
            })
            .collect();
        buys.into_iter().map(|b| b.join().unwrap()).collect()
    });
    let accepted = outcomes
        .iter()
        .filter(|o| o["task"]["status"] == "accepted")
        .count();
    assert_eq!(accepted, 2, "each worker ran one task: {outcomes:?}");
    let refused = outcomes
        .iter()
        .find(|o| o["task"]["status"] == "rejected")
        .expect("one task found no free worker");
    let receipt = &refused["receipt"];
    let failures = receipt["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "both workers were asked: {failures:?}");
    assert!(
        failures.iter().all(|f| f["error"]["kind"] == "busy"),
        "{failures:?}"
    );
    assert!(
        receipt["signed"]["reputationEvents"]
            .as_array()
            .unwrap()
            .is_empty(),
        "being busy is no fault"
    );
    assert_eq!(
        paid_out(&receipt["settlement"]),
        10_000,
        "the buyer is refunded in full"
    );
}

#[test]
fn devnet_starts_a_multi_process_network_a_buyer_can_pay_and_ctrl_c_stops_it() {
    use std::io::{BufRead, BufReader};
    let root = tempfile::tempdir().unwrap();
    let template = root.path().join("template");
    std::fs::create_dir_all(&template).unwrap();
    install(&template, "page-to-markdown", "page_to_markdown.wasm");
    let devnet_dir = root.path().join("devnet");
    let mut devnet = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args([
            "devnet",
            "--workers",
            "3",
            "--validators",
            "1",
            "--http-port",
            "0",
            "--allow-private-addresses",
        ])
        .arg("--dir")
        .arg(&devnet_dir)
        .arg("--from-state")
        .arg(template.join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(devnet.stdout.take().unwrap());
    let (mut pids, mut buyer_command) = (Vec::new(), None);
    while buyer_command.is_none() {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "devnet exited early"
        );
        if let Some(pid) = line
            .split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
        {
            pids.push(pid.parse::<u32>().unwrap());
        }
        if let Some(command) = line.strip_prefix("buyer: ") {
            buyer_command = Some(command.trim().to_string());
        }
    }
    assert_eq!(pids.len(), 6, "bootstrap, gateway, 3 workers, 1 validator");
    // The printed buyer command works as given, pointed at a local page.
    let words: Vec<String> = buyer_command
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(&words[..2], ["d402", "http-task"]);
    let page = d402_testkit::serve_html(ARTICLE);
    let args: Vec<&str> = words[1..]
        .iter()
        .map(|w| {
            if w.starts_with("https://example.com") {
                page.as_str()
            } else {
                w.as_str()
            }
        })
        .collect();
    let (code, out, err) = d402(root.path(), &args);
    assert_eq!(code, 0, "{out} {err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["task"]["status"], "accepted");
    assert_eq!(
        d402_testkit::worker_payees(&out["receipt"]).len(),
        2,
        "a 2-of-3 quorum across worker processes"
    );
    let gateway = words
        .iter()
        .position(|w| w == "--gateway")
        .map(|i| words[i + 1].clone())
        .unwrap();
    let network = get_json(&format!("{gateway}/network"));
    let validators = network["validatorOffers"].as_array().unwrap();
    assert_eq!(
        validators.len(),
        1,
        "the validator process offers to validate page-to-markdown: {validators:?}"
    );
    assert_eq!(
        validators[0]["payload"]["capabilityFamily"],
        "web.page_to_markdown@1"
    );

    // Ctrl-C stops every node process.
    // SAFETY: kill(2) on our child's pid.
    unsafe { libc::kill(devnet.id() as libc::pid_t, libc::SIGINT) };
    assert!(devnet.wait().unwrap().success());
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "node process {pid} is still running"
        );
    }
}

#[test]
fn a_remote_worker_is_owed_its_net_at_the_evm_wallet_its_offer_announces() {
    use d402_rail_x402_evm::devchain::DevChain;
    use d402_rail_x402_evm::{BASE_USDC, PrivateKeySigner, write_key};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let chain = DevChain::start(&DevChain::anvil_path(&root).unwrap(), 8453, 0).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let buyer = PrivateKeySigner::random();
    runtime.block_on(async {
        chain.install_test_usdc(BASE_USDC).await.unwrap();
        chain
            .mint(BASE_USDC, buyer.address(), 1_000_000)
            .await
            .unwrap();
    });
    write_key(&keys.path().join("buyer.key"), &buyer).unwrap();
    write_key(&keys.path().join("gas.key"), &chain.account(1)).unwrap();
    let (rpc, pay_to) = (
        chain.rpc_url().to_string(),
        chain.account(2).address().to_string(),
    );
    let gas = keys.path().join("gas.key").display().to_string();
    let net = Net::start(&[
        "--rail",
        "x402-base",
        "--evm-rpc-url",
        &rpc,
        "--provider-payout-wallet",
        &pay_to,
        "--x402-facilitator-key-file",
        &gas,
    ]);
    let earnings = PrivateKeySigner::random().address().to_string();
    let worker = net.worker_with("worker-0", |_| {}, &["--evm-payout-wallet", &earnings]);
    net.wait_for_offers(&[&worker]);
    let page = d402_testkit::serve_html(ARTICLE);
    let (code, out, err) = d402(
        keys.path(),
        &[
            "x402-task",
            "--gateway",
            &net.gateway.base,
            "--url",
            &page,
            "--key-file",
            "buyer.key",
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        d402_testkit::worker_payees(&out["receipt"]),
        std::slice::from_ref(&worker.account)
    );

    let mut gateway = net.gateway;
    gateway.kill();
    let state = net.root.path().join("gateway/state");
    let (code, out, err) = d402(
        keys.path(),
        &[
            "payouts",
            "list",
            "--json",
            "--state",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let owed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(owed.len(), 1, "{out}");
    assert_eq!(owed[0]["account"], worker.account.as_str());
    assert_eq!(owed[0]["state"]["status"], "owed");
    assert_eq!(
        owed[0]["address"].as_str().unwrap().to_lowercase(),
        earnings.to_lowercase(),
        "the wallet the worker's signed offer announced"
    );
}
