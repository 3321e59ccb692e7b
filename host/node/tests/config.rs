//! `d402 node` configuration: embedded defaults < TOML file < environment < flags, unknown
//! keys and bad values named, inconsistent combinations refused.

use std::path::Path;
use std::sync::Mutex;

use clap::Parser;
use d402_node::{NodeArgs, NodeConfig, Role};
use d402_protocol::{Amount, ExecutionMode};

/// `d402 node` as the CLI declares it.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
}

/// Tests that read or set the process environment take this lock (clap reads `D402_*`).
static ENV: Mutex<()> = Mutex::new(());

fn parse(args: &[&str]) -> NodeArgs {
    Cli::try_parse_from(std::iter::once("d402").chain(args.iter().copied()))
        .unwrap()
        .node
}

fn resolve(args: &[&str]) -> anyhow::Result<NodeConfig> {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    parse(args).resolve()
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn error_of(result: anyhow::Result<NodeConfig>) -> String {
    format!("{:#}", result.expect_err("the configuration is refused"))
}

#[test]
fn no_file_no_flags_is_the_embedded_default() {
    let config = resolve(&[]).unwrap();
    let default = NodeConfig::default();
    assert_eq!(config.http_port, 8402);
    assert_eq!(config.state, default.state);
    assert_eq!(config.roles, [Role::Gateway, Role::Worker, Role::Validator]);
    assert_eq!(
        (
            config.local_workers,
            config.mode,
            config.fanout,
            config.quorum
        ),
        (3, ExecutionMode::Single, 1, 1)
    );
    assert_eq!(config.validator_fee_bps, 0);
    assert!(!config.require_capability_registration);
}

#[test]
fn the_file_overrides_defaults_and_flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        r#"
http-port = 9000
http-host = "0.0.0.0"
roles = ["gateway", "worker"]
accepted-manifest-cid = ["bafkreione", "bafkreitwo"]
trusted-capability-namespace = ["example"]
price = "$0.02"
safety-max-task-budget = "$0.05"
require-capability-registration = true
local-workers = 5
mode = "quorum"
fanout = 3
quorum = 2
validator-fee-bps = 500
max-body-bytes = 1024
"#,
    );
    let config = resolve(&["--config", &file]).unwrap();
    assert_eq!(config.http_port, 9000);
    assert_eq!(config.http_host.to_string(), "0.0.0.0");
    assert_eq!(config.roles, [Role::Gateway, Role::Worker]);
    assert_eq!(config.accepted_manifest_cids, ["bafkreione", "bafkreitwo"]);
    assert_eq!(config.trusted_capability_namespaces, ["example"]);
    assert_eq!(config.price.map(|p| p.0), Some(Amount::from_micros(20_000)));
    assert_eq!(
        config.safety_max_task_budget,
        Some(Amount::from_micros(50_000))
    );
    assert!(config.require_capability_registration);
    assert_eq!(
        (
            config.local_workers,
            config.mode,
            config.fanout,
            config.quorum
        ),
        (5, ExecutionMode::Quorum, 3, 2)
    );
    assert_eq!(config.validator_fee_bps, 500);
    assert_eq!(config.max_body_bytes, 1024);
    assert_eq!(
        config.capability,
        NodeConfig::default().capability,
        "unset keys keep the default"
    );

    let config = resolve(&[
        "--config",
        &file,
        "--http-port",
        "0",
        "--roles",
        "gateway",
        "--accepted-manifest-cid",
        "bafkreithree",
        "--require-capability-registration",
        "false",
        "--fanout",
        "2",
        "--mode",
        "race",
    ])
    .unwrap();
    assert_eq!(config.http_port, 0);
    assert_eq!(config.roles, [Role::Gateway]);
    assert_eq!(
        config.accepted_manifest_cids,
        ["bafkreithree"],
        "a list flag replaces the file's list"
    );
    assert!(
        !config.require_capability_registration,
        "a boolean flag can turn a file's true off"
    );
    assert_eq!(
        (config.mode, config.fanout, config.quorum),
        (ExecutionMode::Race, 2, 2)
    );
    assert_eq!(
        config.validator_fee_bps, 500,
        "what the flags leave alone stays as the file says"
    );
}

#[test]
fn boolean_flags_alone_mean_true() {
    let config = resolve(&[
        "--allow-private-addresses",
        "--require-capability-namespace-proof",
        "--http-port",
        "1",
    ])
    .unwrap();
    assert!(config.allow_private_addresses);
    assert!(config.require_capability_namespace_proof);
    assert_eq!(config.http_port, 1);
}

#[test]
fn the_environment_sits_between_the_file_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "max-creator-commission-bps = 1000\nstate = \"from-file\"\n",
    );
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: every test of this file that parses arguments holds the ENV lock, and nothing
    // else in this process reads the environment meanwhile.
    unsafe {
        std::env::set_var("D402_MAX_CREATOR_COMMISSION_BPS", "1500");
        std::env::set_var("D402_CONFIG", &file);
    }
    let from_env = parse(&[]).resolve();
    let from_flag = parse(&["--max-creator-commission-bps", "1200"]).resolve();
    // SAFETY: as above.
    unsafe {
        std::env::remove_var("D402_MAX_CREATOR_COMMISSION_BPS");
        std::env::remove_var("D402_CONFIG");
    }
    let from_env = from_env.unwrap();
    assert_eq!(
        from_env.max_creator_commission_bps, 1500,
        "the environment overrides the file"
    );
    assert_eq!(
        from_env.state,
        Path::new("from-file"),
        "D402_CONFIG names the file"
    );
    assert_eq!(
        from_flag.unwrap().max_creator_commission_bps,
        1200,
        "a flag overrides the environment"
    );
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "http-port = 9000\nhttp-prot = 9001\n");
    let message = error_of(resolve(&["--config", &file]));
    assert!(message.contains("http-prot"), "{message}");
    assert!(message.contains("unknown field"), "{message}");
    assert!(
        message.contains("node.toml"),
        "the file is named: {message}"
    );
    // Flag spellings only: the Rust field names are not keys.
    let message = error_of(resolve(&[
        "--config",
        &write(dir.path(), "http_port = 9000\n"),
    ]));
    assert!(message.contains("http_port"), "{message}");
}

#[test]
fn bad_values_name_the_key_and_why() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key, why) in [
        ("http-port = \"high\"\n", "http-port", "invalid type"),
        ("\n\nhttp-port = 70000\n", "http-port", "line 3"),
        (
            "price = \"0.01.5\"\n",
            "price",
            "expected digits like $0.01",
        ),
        ("mode = \"fastest\"\n", "mode", "unknown variant"),
        (
            "roles = [\"gateway\", \"bank\"]\n",
            "roles",
            "unknown variant",
        ),
        (
            "http-host = \"localhost:1\"\n",
            "http-host",
            "invalid IP address",
        ),
    ] {
        let message = error_of(resolve(&["--config", &write(dir.path(), text)]));
        assert!(message.contains(&format!("`{key}")), "{text:?}: {message}");
        assert!(message.contains(why), "{text:?}: {message}");
    }
    let message = error_of(resolve(&["--config", &write(dir.path(), "http-port = \n")]));
    assert!(
        message.contains("line 1"),
        "TOML syntax errors say where: {message}"
    );
    let message = error_of(resolve(&["--config", "/nonexistent/node.toml"]));
    assert!(
        message.contains("cannot read /nonexistent/node.toml"),
        "{message}"
    );
}

#[test]
fn inconsistent_combinations_are_refused_precisely() {
    let dir = tempfile::tempdir().unwrap();
    for (text, flags, expected) in [
        (
            "fanout = 2\n",
            &[][..],
            "mode single sends each task to one worker: fanout must be 1, not 2",
        ),
        (
            "mode = \"quorum\"\nfanout = 3\nquorum = 4\n",
            &[],
            "quorum (4) must be between 1 and fanout (3)",
        ),
        (
            "mode = \"race\"\nfanout = 3\n",
            &["--quorum", "0"][..],
            "quorum (0) must be between 1 and fanout (3)",
        ),
        (
            "mode = \"race\"\nfanout = 0\n",
            &[],
            "fanout must be at least 1",
        ),
        (
            "mode = \"race\"\nfanout = 4\n",
            &[],
            "fanout (4) cannot exceed local-workers (3)",
        ),
        (
            "local-workers = 0\n",
            &[],
            "local-workers must be at least 1",
        ),
        (
            "validator-fee-bps = 10001\n",
            &[],
            "validator-fee-bps (10001) cannot exceed 10000",
        ),
        (
            "max-creator-commission-bps = 10001\n",
            &[],
            "max-creator-commission-bps (10001) cannot exceed 10000",
        ),
        (
            "validator-fee-bps = 9000\n",
            &[],
            "validator-fee-bps (9000) plus max-creator-commission-bps (2000) cannot exceed 10000",
        ),
        ("roles = []\n", &[], "roles cannot be empty"),
        ("max-leases = 0\n", &[], "max-leases must be at least 1"),
        (
            "roles = [\"worker\"]\n",
            &[],
            "only a gateway runs without the peer network: set p2p-listen",
        ),
        (
            "bootstrap = [\"/ip4/127.0.0.1/tcp/1\"]\n",
            &["--p2p-listen", "/ip4/127.0.0.1/tcp/0"],
            "must end in /p2p/<PeerId>",
        ),
        (
            "p2p-listen = \"127.0.0.1:4001\"\n",
            &[],
            "p2p-listen \"127.0.0.1:4001\" is not a multiaddr",
        ),
        (
            "p2p-listen = \"/ip4/127.0.0.1/tcp/0\"\noffer-interval-seconds = 0\n",
            &[],
            "offer-interval-seconds must be at least 1",
        ),
    ] {
        let file = write(dir.path(), text);
        let args: Vec<&str> = ["--config", file.as_str()]
            .into_iter()
            .chain(flags.iter().copied())
            .collect();
        let message = error_of(resolve(&args));
        assert!(message.contains(expected), "{text:?} {flags:?}: {message}");
    }
    // The same checks apply without a file.
    let message = error_of(resolve(&[
        "--mode", "quorum", "--fanout", "2", "--quorum", "3",
    ]));
    assert!(
        message.contains("quorum (3) must be between 1 and fanout (2)"),
        "{message}"
    );
    assert!(resolve(&["--mode", "quorum", "--fanout", "3", "--quorum", "2"]).is_ok());
    // With the peer network the fanout is not bounded by the local pool.
    let networked = resolve(&[
        "--roles",
        "gateway",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--mode",
        "race",
        "--fanout",
        "5",
    ]);
    assert_eq!(
        networked.unwrap().local_pool(),
        0,
        "a gateway without the worker role has no local pool"
    );
}

#[test]
fn browser_settings_reach_the_page_fetcher() {
    let default = resolve(&[]).unwrap().browser_config();
    let production = d402_browser::BrowserConfig::default();
    assert_eq!(
        (default.max_tabs, default.launch_timeout),
        (production.max_tabs, production.launch_timeout),
        "unset, the fetcher keeps its own production defaults"
    );
    assert!(!default.allow_private_addresses);

    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "browser-tabs = 2\nbrowser-launch-timeout-seconds = 45\n",
    );
    let config = resolve(&["--config", &file, "--browser-tabs", "8"]).unwrap();
    let browser = config.browser_config();
    assert_eq!(browser.max_tabs, 8, "the flag overrides the file");
    assert_eq!(browser.launch_timeout, std::time::Duration::from_secs(45));
    assert_eq!(
        browser.max_redirects, production.max_redirects,
        "what the node does not set stays as the fetcher's default"
    );

    for (flag, key) in [
        ("--browser-tabs", "browser-tabs"),
        (
            "--browser-launch-timeout-seconds",
            "browser-launch-timeout-seconds",
        ),
    ] {
        let message = error_of(resolve(&[flag, "0"]));
        assert!(
            message.contains(&format!("{key} must be at least 1")),
            "{message}"
        );
    }
}

#[test]
fn every_node_flag_is_listed_in_its_section() {
    use clap::Args;
    let command = d402_node::NodeArgs::augment_args(clap::Command::new("node"));
    let heading_of = |id: &str| {
        command
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_help_heading())
            .map(str::to_string)
    };
    for (flag, section) in [
        ("state", "Node"),
        ("price", "Capability policy"),
        ("rails", "Payment rails"),
        ("http_port", "HTTP"),
        ("bootstrap", "Peer network"),
        ("browser_tabs", "Browser"),
        ("safety_max_task_budget", "Safety"),
    ] {
        assert_eq!(heading_of(flag).as_deref(), Some(section), "--{flag}");
    }
    let loose: Vec<_> = command
        .get_arguments()
        .filter(|a| a.get_help_heading().is_none())
        .map(|a| a.get_id().to_string())
        .collect();
    assert!(loose.is_empty(), "flags outside any section: {loose:?}");
}

#[test]
fn the_x402_rail_is_configured_by_file_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let pay_to = "0x00000000000000000000000000000000000000b0";
    let file = write(
        dir.path(),
        &format!(
            "rail = [\"x402-base\"]\nx402-network = \"eip155:84532\"\nevm-rpc-url = \"http://127.0.0.1:8545\"\n\
             provider-payout-wallet = \"{pay_to}\"\nx402-asset-name = \"USDC\"\n"
        ),
    );
    let asset = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: every test of this file that parses arguments holds the ENV lock.
    unsafe { std::env::set_var("D402_X402_ASSET", asset) };
    let earnings = "0x00000000000000000000000000000000000000e0";
    let config = parse(&["--config", &file, "--evm-payout-wallet", earnings]).resolve();
    let bad_network = parse(&["--config", &file, "--x402-network", "base"]).resolve();
    // SAFETY: as above.
    unsafe { std::env::remove_var("D402_X402_ASSET") };
    let x402 = config.unwrap().x402;
    assert_eq!(x402.network, "eip155:84532", "from the file");
    assert_eq!(x402.asset, asset, "from the environment");
    assert_eq!(x402.asset_name, "USDC");
    assert_eq!(x402.asset_version, "2", "the embedded default");
    assert_eq!(x402.provider_payout_wallet.as_deref(), Some(pay_to));
    assert_eq!(
        x402.evm_payout_wallet.as_deref(),
        Some(earnings),
        "from the flag"
    );
    let error = error_of(bad_network);
    assert!(error.contains("eip155:<chain id>"), "{error}");
    let without_wallet = write(
        dir.path(),
        "rail = [\"x402-base\"]\nevm-rpc-url = \"http://127.0.0.1:8545\"\n",
    );
    let error = error_of(parse(&["--config", &without_wallet]).resolve());
    assert!(error.contains("D402_PROVIDER_PAYOUT_WALLET"), "{error}");
}

#[test]
fn money_is_read_with_or_without_the_dollar_sign_in_flags_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "price = \"0.02\"\nsafety-max-task-budget = \"$0.05\"\n",
    );
    let config = resolve(&["--config", &file]).unwrap();
    assert_eq!(config.price.map(|p| p.0.micros()), Some(20_000));
    assert_eq!(
        config.safety_max_task_budget.map(Amount::micros),
        Some(50_000)
    );
    let config = resolve(&["--price", "$0.03", "--safety-max-task-budget", "0.04"]).unwrap();
    assert_eq!(config.price.map(|p| p.0.micros()), Some(30_000));
    assert_eq!(
        config.safety_max_task_budget.map(Amount::micros),
        Some(40_000)
    );
    let error = error_of(resolve(&[
        "--config",
        &write(dir.path(), "price = \"cheap\"\n"),
    ]));
    assert!(
        error.contains("price") && error.contains("invalid price"),
        "{error}"
    );
}
