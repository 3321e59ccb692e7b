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
    assert_eq!(config.http.port, 8402);
    assert_eq!(config.node.state, default.node.state);
    assert_eq!(
        config.node.roles,
        [Role::Gateway, Role::Worker, Role::Validator]
    );
    assert_eq!(
        (
            config.node.local_workers,
            config.node.mode,
            config.node.fanout,
            config.node.quorum
        ),
        (3, ExecutionMode::Single, 1, 1)
    );
    assert_eq!(config.node.validator_fee_bps, 0);
    assert!(!config.capabilities.require_registration);
}

#[test]
fn the_file_overrides_defaults_and_flags_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        r#"
[http]
port = 9000
host = "0.0.0.0"
max-body-bytes = 1024
[node]
roles = ["gateway", "worker"]
local-workers = 5
mode = "quorum"
fanout = 3
quorum = 2
validator-fee-bps = 500
[capabilities]
accepted-manifest-cids = ["bafkreione", "bafkreitwo"]
trusted-namespaces = ["example"]
price = "$0.02"
require-registration = true
[safety]
max-task-budget = "$0.05"
"#,
    );
    let config = resolve(&["--config", &file]).unwrap();
    assert_eq!(config.http.port, 9000);
    assert_eq!(config.http.host.to_string(), "0.0.0.0");
    assert_eq!(config.node.roles, [Role::Gateway, Role::Worker]);
    assert_eq!(
        config.capabilities.accepted_manifest_cids,
        ["bafkreione", "bafkreitwo"]
    );
    assert_eq!(config.capabilities.trusted_namespaces, ["example"]);
    assert_eq!(
        config.capabilities.price.map(|p| p.0),
        Some(Amount::from_micros(20_000))
    );
    assert_eq!(
        config.safety.max_task_budget.map(|p| p.0),
        Some(Amount::from_micros(50_000))
    );
    assert!(config.capabilities.require_registration);
    assert_eq!(
        (
            config.node.local_workers,
            config.node.mode,
            config.node.fanout,
            config.node.quorum
        ),
        (5, ExecutionMode::Quorum, 3, 2)
    );
    assert_eq!(config.node.validator_fee_bps, 500);
    assert_eq!(config.http.max_body_bytes, 1024);
    assert_eq!(
        config.node.capability,
        NodeConfig::default().node.capability,
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
    assert_eq!(config.http.port, 0);
    assert_eq!(config.node.roles, [Role::Gateway]);
    assert_eq!(
        config.capabilities.accepted_manifest_cids,
        ["bafkreithree"],
        "a list flag replaces the file's list"
    );
    assert!(
        !config.capabilities.require_registration,
        "a boolean flag can turn a file's true off"
    );
    assert_eq!(
        (config.node.mode, config.node.fanout, config.node.quorum),
        (ExecutionMode::Race, 2, 2)
    );
    assert_eq!(
        config.node.validator_fee_bps, 500,
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
    assert!(config.browser.allow_private_addresses);
    assert!(config.capabilities.require_namespace_proof);
    assert_eq!(config.http.port, 1);
}

#[test]
fn the_environment_sits_between_the_file_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "[capabilities]\nmax-creator-commission-bps = 1000\n[node]\nstate = \"from-file\"\n",
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
        from_env.capabilities.max_creator_commission_bps, 1500,
        "the environment overrides the file"
    );
    assert_eq!(
        from_env.node.state,
        Path::new("from-file"),
        "D402_CONFIG names the file"
    );
    assert_eq!(
        from_flag.unwrap().capabilities.max_creator_commission_bps,
        1200,
        "a flag overrides the environment"
    );
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[http]\nport = 9000\nprot = 9001\n");
    let message = error_of(resolve(&["--config", &file]));
    assert!(message.contains("http.prot"), "{message}");
    assert!(message.contains("unknown field"), "{message}");
    assert!(
        message.contains("node.toml"),
        "the file is named: {message}"
    );
    // Keys are kebab-case, inside their section: neither the Rust field names nor the
    // flag names at the top level are keys.
    for (text, key) in [
        ("[http]\nmax_body_bytes = 9000\n", "max_body_bytes"),
        ("http-port = 9000\n", "http-port"),
        ("[htp]\nport = 9000\n", "htp"),
    ] {
        let message = error_of(resolve(&["--config", &write(dir.path(), text)]));
        assert!(
            message.contains(key) && message.contains("unknown field"),
            "{text:?}: {message}"
        );
    }
}

#[test]
fn bad_values_name_the_key_and_why() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key, why) in [
        ("[http]\nport = \"high\"\n", "http.port", "invalid type"),
        ("\n\n[http]\nport = 70000\n", "http.port", "line 4"),
        (
            "[capabilities]\nprice = \"0.01.5\"\n",
            "capabilities.price",
            "expected digits like $0.01",
        ),
        (
            "[node]\nmode = \"fastest\"\n",
            "node.mode",
            "unknown variant",
        ),
        (
            "[node]\nroles = [\"gateway\", \"bank\"]\n",
            "node.roles",
            "unknown variant",
        ),
        (
            "[http]\nhost = \"localhost:1\"\n",
            "http.host",
            "invalid IP address",
        ),
    ] {
        let message = error_of(resolve(&["--config", &write(dir.path(), text)]));
        assert!(message.contains(&format!("`{key}")), "{text:?}: {message}");
        assert!(message.contains(why), "{text:?}: {message}");
    }
    let message = error_of(resolve(&[
        "--config",
        &write(dir.path(), "[http]\nport = \n"),
    ]));
    assert!(
        message.contains("line 2"),
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
            "[node]\nfanout = 2\n",
            &[][..],
            "mode single sends each task to one worker: fanout must be 1, not 2",
        ),
        (
            "[node]\nmode = \"quorum\"\nfanout = 3\nquorum = 4\n",
            &[],
            "quorum (4) must be between 1 and fanout (3)",
        ),
        (
            "[node]\nmode = \"race\"\nfanout = 3\n",
            &["--quorum", "0"][..],
            "quorum (0) must be between 1 and fanout (3)",
        ),
        (
            "[node]\nmode = \"race\"\nfanout = 0\n",
            &[],
            "fanout must be at least 1",
        ),
        (
            "[node]\nmode = \"race\"\nfanout = 4\n",
            &[],
            "fanout (4) cannot exceed local-workers (3)",
        ),
        (
            "[node]\nlocal-workers = 0\n",
            &[],
            "local-workers must be at least 1",
        ),
        (
            "[node]\nvalidator-fee-bps = 10001\n",
            &[],
            "validator-fee-bps (10001) cannot exceed 10000",
        ),
        (
            "[capabilities]\nmax-creator-commission-bps = 10001\n",
            &[],
            "max-creator-commission-bps (10001) cannot exceed 10000",
        ),
        (
            "[node]\nvalidator-fee-bps = 9000\n",
            &[],
            "validator-fee-bps (9000) plus max-creator-commission-bps (2000) cannot exceed 10000",
        ),
        ("[node]\nroles = []\n", &[], "roles cannot be empty"),
        (
            "[network]\nmax-leases = 0\n",
            &[],
            "max-leases must be at least 1",
        ),
        (
            "[node]\nroles = [\"worker\"]\n",
            &[],
            "only a gateway runs without the peer network: set p2p-listen",
        ),
        (
            "[network]\nbootstrap = [\"/ip4/127.0.0.1/tcp/1\"]\n",
            &["--p2p-listen", "/ip4/127.0.0.1/tcp/0"],
            "must end in /p2p/<PeerId>",
        ),
        (
            "[network]\nlisten = \"127.0.0.1:4001\"\n",
            &[],
            "p2p-listen \"127.0.0.1:4001\" is not a multiaddr",
        ),
        (
            "[network]\nlisten = \"/ip4/127.0.0.1/tcp/0\"\noffer-interval-seconds = 0\n",
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
        "[browser]\ntabs = 2\nlaunch-timeout-seconds = 45\n",
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
        ("rail", "Payment rails"),
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
    // Each flag's help shows its default, taken from the embedded defaults, and its key in
    // the file.
    let help = |id: &str| {
        command
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_help())
            .map(|h| h.to_string())
            .unwrap()
    };
    let port = NodeConfig::default().http.port;
    assert!(
        help("http_port").ends_with(&format!("[default: {port}] [file: http.port]")),
        "{}",
        help("http_port")
    );
    assert!(help("rail").ends_with("[default: simulated] [file: rails.accepted]"));
    assert!(
        help("evm_rpc_url").ends_with("(required with --rail x402-base) [file: x402.evm-rpc-url]")
    );
    let undocumented: Vec<_> = command
        .get_arguments()
        .filter(|a| a.get_id() != "config")
        .filter(|a| {
            !a.get_help()
                .is_some_and(|h| h.to_string().contains("[file: "))
        })
        .map(|a| a.get_id().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "flags without a file key: {undocumented:?}"
    );
}

#[test]
fn the_x402_rail_is_configured_by_file_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let pay_to = "0x00000000000000000000000000000000000000b0";
    let file = write(
        dir.path(),
        &format!(
            "[rails]\naccepted = [\"x402-base\"]\n[x402]\nnetwork = \"eip155:84532\"\n\
             evm-rpc-url = \"http://127.0.0.1:8545\"\nprovider-payout-wallet = \"{pay_to}\"\n\
             asset-name = \"USDC\"\n"
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
        "[rails]\naccepted = [\"x402-base\"]\n[x402]\nevm-rpc-url = \"http://127.0.0.1:8545\"\n",
    );
    let error = error_of(parse(&["--config", &without_wallet]).resolve());
    assert!(error.contains("D402_PROVIDER_PAYOUT_WALLET"), "{error}");
}

#[test]
fn money_is_read_with_or_without_the_dollar_sign_in_flags_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "[capabilities]\nprice = \"0.02\"\n[safety]\nmax-task-budget = \"$0.05\"\n",
    );
    let config = resolve(&["--config", &file]).unwrap();
    assert_eq!(
        config.capabilities.price.map(|p| p.0.micros()),
        Some(20_000)
    );
    assert_eq!(
        config.safety.max_task_budget.map(|p| p.0.micros()),
        Some(50_000)
    );
    let config = resolve(&["--price", "$0.03", "--safety-max-task-budget", "0.04"]).unwrap();
    assert_eq!(
        config.capabilities.price.map(|p| p.0.micros()),
        Some(30_000)
    );
    assert_eq!(
        config.safety.max_task_budget.map(|p| p.0.micros()),
        Some(40_000)
    );
    let error = error_of(resolve(&[
        "--config",
        &write(dir.path(), "[capabilities]\nprice = \"cheap\"\n"),
    ]));
    assert!(
        error.contains("price") && error.contains("invalid price"),
        "{error}"
    );
}
