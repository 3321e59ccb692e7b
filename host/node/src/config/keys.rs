//! Every `d402 node` setting, defined once: its section, its command-line flag, its key in
//! the configuration file, its type, its default and its help text. [`node_settings!`]
//! turns the table into the configuration ([`NodeConfig`], one struct per section), the
//! flags ([`NodeArgs`], grouped under their section's heading, each default shown in
//! `--help`), the file's tables, and the layering of one over the other.
//!
//! A key is `name / flag: kind Type = default`, with `arg(…)` for clap and `file(…)` for
//! serde where needed. Kinds: `value` (always set; a flag or key replaces it), `optional`
//! (`Option<Type>`, unset by default), `list` (`Vec<Type>`; a repeated flag or a TOML array
//! replaces it), `switch` (`bool`; `--flag` alone means true, `--flag false` is allowed).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use d402_browser::BrowserConfig;
use d402_payment::RailId;
use d402_protocol::{DEFAULT_MAX_CREATOR_COMMISSION_BPS, ExecutionMode, Price};
use serde::Deserialize;

use super::{DEFAULT_CAPABILITY, DEFAULT_ESCROW_SETTLE_WINDOW_SECONDS, Role, dollars, parse_mode};

/// How a default is shown in `--help`.
trait DefaultText {
    /// The default as a flag would spell it.
    fn text(&self) -> String;
}

macro_rules! displayed_defaults {
    ($($ty:ty),*) => {$(
        impl DefaultText for $ty {
            fn text(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
displayed_defaults!(u16, u32, u64, usize, bool, String, IpAddr, RailId, Price);

impl DefaultText for PathBuf {
    fn text(&self) -> String {
        self.display().to_string()
    }
}

impl DefaultText for Role {
    fn text(&self) -> String {
        self.as_str().to_string()
    }
}

impl DefaultText for ExecutionMode {
    fn text(&self) -> String {
        self.as_str().to_string()
    }
}

impl DefaultText for semver::Version {
    fn text(&self) -> String {
        self.to_string()
    }
}

macro_rules! node_settings {
    (@config value $ty:ty) => { $ty };
    (@config optional $ty:ty) => { Option<$ty> };
    (@config list $ty:ty) => { Vec<$ty> };
    (@config switch $ty:ty) => { bool };
    (@given value $ty:ty) => { Option<$ty> };
    (@given optional $ty:ty) => { Option<$ty> };
    (@given list $ty:ty) => { Vec<$ty> };
    (@given switch $ty:ty) => { Option<bool> };
    // In a file a list is given (`[]` too) or absent; an empty flag list is an absent one.
    (@file list $ty:ty) => { Option<Vec<$ty>> };
    (@file $kind:ident $ty:ty) => { node_settings!(@given $kind $ty) };
    (@set_file list $slot:expr, $given:expr) => {
        if let Some(list) = $given {
            $slot = list;
        }
    };
    (@set_file $kind:ident $slot:expr, $given:expr) => { node_settings!(@set $kind $slot, $given) };
    (@set value $slot:expr, $given:expr) => {
        if let Some(value) = $given {
            $slot = value;
        }
    };
    (@set switch $slot:expr, $given:expr) => {
        if let Some(value) = $given {
            $slot = value;
        }
    };
    (@set optional $slot:expr, $given:expr) => {
        if $given.is_some() {
            $slot = $given;
        }
    };
    (@set list $slot:expr, $given:expr) => {
        if !$given.is_empty() {
            $slot = $given;
        }
    };
    // The flags, one key at a time: clap reads `Option`/`Vec` from the written type, so
    // each kind's flag type is spelled out here rather than by a nested macro.
    (@flags [$($done:tt)*]) => {
        /// The flags as clap declares them (every one optional: unset keeps what the file
        /// or the default says).
        #[derive(Debug, Clone, Default, Args)]
        pub struct Flags {
            /// TOML configuration file, one table per section (`[http]` `port = 9000`);
            /// flags and environment variables override it.
            #[arg(long, env = "D402_CONFIG", value_name = "FILE", help_heading = "Node")]
            pub config: Option<PathBuf>,
            $($done)*
        }
    };
    (@flags [$($done:tt)*] {$(#[$meta:meta])* $flag:ident list $ty:ty} $($rest:tt)*) => {
        node_settings!(@flags [$($done)* $(#[$meta])* pub $flag: Vec<$ty>,] $($rest)*);
    };
    (@flags [$($done:tt)*] {$(#[$meta:meta])* $flag:ident switch $ty:ty} $($rest:tt)*) => {
        node_settings!(@flags [$($done)* $(#[$meta])* pub $flag: Option<bool>,] $($rest)*);
    };
    (@flags [$($done:tt)*] {$(#[$meta:meta])* $flag:ident $kind:ident $ty:ty} $($rest:tt)*) => {
        node_settings!(@flags [$($done)* $(#[$meta])* pub $flag: Option<$ty>,] $($rest)*);
    };
    (@show value $value:expr) => { Some($value.text()) };
    (@show switch $value:expr) => { Some($value.text()) };
    (@show optional $value:expr) => { $value.as_ref().map(DefaultText::text) };
    (@show list $value:expr) => {
        (!$value.is_empty())
            .then(|| $value.iter().map(DefaultText::text).collect::<Vec<_>>().join(","))
    };
    (
        $(
            $(#[doc = $section_doc:literal])*
            [$section:ident: $Section:ident, $heading:literal] {
                $(
                    $(#[doc = $doc:literal])*
                    $key:ident / $flag:ident: $kind:ident $ty:ty = $default:expr
                        $(, arg($($arg:tt)*))? $(, file($($file:tt)*))?;
                )*
            }
        )*
    ) => {
        $(
            $(#[doc = $section_doc])*
            #[derive(Debug, Clone, PartialEq)]
            pub struct $Section {
                $(
                    $(#[doc = $doc])*
                    pub $key: node_settings!(@config $kind $ty),
                )*
            }

            impl Default for $Section {
                fn default() -> Self {
                    Self { $($key: $default,)* }
                }
            }
        )*

        /// Everything a node needs to start, by section (the file's tables).
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct NodeConfig {
            $(
                $(#[doc = $section_doc])*
                pub $section: $Section,
            )*
        }

        node_settings!(@flags [] $($({
            $(#[doc = $doc])*
            #[arg(long, help_heading = $heading $(, $($arg)*)?)]
            $flag $kind $ty
        })*)*);

        /// The configuration file's tables.
        mod file {
            use super::*;

            $(
                #[derive(Debug, Default, Deserialize)]
                #[serde(rename_all = "kebab-case", deny_unknown_fields)]
                pub struct $Section {
                    $(
                        #[serde(default $(, $($file)*)?)]
                        pub $key: node_settings!(@file $kind $ty),
                    )*
                }
            )*

            /// A whole configuration file: a table per section, each optional.
            #[derive(Debug, Default, Deserialize)]
            #[serde(rename_all = "kebab-case", deny_unknown_fields)]
            pub struct FileConfig {
                $(
                    #[serde(default)]
                    pub $section: $Section,
                )*
            }
        }

        pub use file::FileConfig;

        impl FileConfig {
            /// Overwrites the settings of `config` that the file sets.
            pub fn apply(self, config: &mut NodeConfig) {
                $($(node_settings!(@set_file $kind config.$section.$key, self.$section.$key);)*)*
            }
        }

        impl Flags {
            /// Overwrites the settings of `config` that these flags (or their environment
            /// variables) set.
            pub fn apply(self, config: &mut NodeConfig) {
                $($(node_settings!(@set $kind config.$section.$key, self.$flag);)*)*
            }
        }

        /// Each flag's id, its key in the file (`section.key`, snake case) and its default
        /// as `--help` shows it (none when unset).
        fn documented() -> Vec<(&'static str, &'static str, Option<String>)> {
            let default = NodeConfig::default();
            vec![$($((
                stringify!($flag),
                concat!(stringify!($section), ".", stringify!($key)),
                node_settings!(@show $kind default.$section.$key),
            ),)*)*]
        }
    };
}

node_settings! {
    /// The node itself: where it keeps its state, what it does and how it runs tasks.
    [node: NodeSettings, "Node"] {
        /// Node state directory.
        state / state: value PathBuf = PathBuf::from("state/node"), arg(env = "D402_STATE");
        /// Roles, comma separated.
        roles / roles: list Role = vec![Role::Gateway, Role::Worker, Role::Validator],
            arg(value_enum, value_delimiter = ',');
        /// Capability served (ID or manifest CID), when no accepted manifest CID is given.
        capability / capability: value String = DEFAULT_CAPABILITY.into();
        /// Size of the node's local worker pool.
        local_workers / local_workers: value u32 = 3;
        /// Execution mode: single, race or quorum.
        mode / mode: value ExecutionMode = ExecutionMode::Single, arg(value_parser = parse_mode);
        /// Workers each task is sent to (1 in single mode; at most --local-workers).
        fanout / fanout: value u32 = 1;
        /// Agreeing results needed to accept a task (1 to --fanout).
        quorum / quorum: value u32 = 1;
        /// Validator fee, basis points of the price.
        validator_fee_bps / validator_fee_bps: value u32 = 0;
    }
    /// Which capabilities a gateway serves, and at what price.
    [capabilities: CapabilityPolicy, "Capability policy"] {
        /// Accepted manifest CID (repeatable); the first is served.
        accepted_manifest_cids / accepted_manifest_cid: list String = Vec::new();
        /// Trusted capability namespace (repeatable; none: any).
        trusted_namespaces / trusted_capability_namespace: list String = Vec::new();
        /// Serve only capabilities with a valid signed registration for their exact
        /// manifest CID.
        require_registration / require_capability_registration: switch bool = false,
            arg(value_name = "BOOL", num_args = 0..=1, default_missing_value = "true");
        /// Same as --require-capability-registration: registrations are always signed.
        require_signed_registration / require_signed_capability_registration: switch bool = false,
            arg(value_name = "BOOL", num_args = 0..=1, default_missing_value = "true");
        /// Serve only capabilities whose registration carries a valid namespace proof.
        require_namespace_proof / require_capability_namespace_proof: switch bool = false,
            arg(value_name = "BOOL", num_args = 0..=1, default_missing_value = "true");
        /// Price override, e.g. "$0.01" or 0.01 [default: the manifest's price].
        price / price: optional Price = None,
            arg(value_parser = Price::parse_dollars), file(deserialize_with = "dollars");
        /// Cap on creator commissions, basis points.
        max_creator_commission_bps / max_creator_commission_bps: value u32 =
            DEFAULT_MAX_CREATOR_COMMISSION_BPS, arg(env = "D402_MAX_CREATOR_COMMISSION_BPS");
    }
    /// The public HTTP API.
    [http: HttpSettings, "HTTP"] {
        /// HTTP listen address.
        host / http_host: value IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
        /// HTTP port (0: any free port; the chosen address is printed).
        port / http_port: value u16 = 8402;
        /// Base URL announced in discovery [default: http://HOST:PORT].
        public_url / public_url: optional String = None;
        /// Largest request body, bytes.
        max_body_bytes / max_body_bytes: value usize = 64 * 1024;
        /// Seconds a client has to send complete request headers.
        header_timeout_seconds / http_header_timeout_seconds: value u64 = 10;
        /// Seconds a client has to send a request body.
        body_timeout_seconds / http_body_timeout_seconds: value u64 = 30;
        /// HTTP connections held at once; at the cap the oldest idle connection is closed
        /// to make room.
        max_connections / http_max_connections: value usize = 4096;
    }
    /// The operator's admin API and the node's lifecycle.
    [admin: AdminSettings, "Admin"] {
        /// Admin API listen address; a non-loopback address exposes it (token still
        /// required).
        host / admin_host: value IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
        /// Admin API port (0: any free port; <state>/admin.json names it).
        port / admin_port: value u16 = 0;
        /// Seconds a stopping node (SIGTERM, Ctrl-C) lets running tasks finish; tasks still
        /// running then are refunded at the next start.
        shutdown_grace_seconds / shutdown_grace_seconds: value u64 = 30;
    }
    /// How buyers pay.
    [rails: RailSettings, "Payment rails"] {
        /// Payment rail to accept (repeatable; the 402 lists one offer per rail, the first
        /// is preferred): simulated, x402-base, x402-base-escrow, solana-direct, x402-solana.
        accepted / rail: list RailId = vec![RailId::Simulated], arg(value_name = "RAIL");
        /// Longest payment authorization lifetime, seconds.
        payment_timeout_seconds / payment_timeout_seconds: value u64 = 300;
    }
    /// x402 on EVM (`--rail x402-base`, `--rail x402-base-escrow`). Its gas signer's key is
    /// read when the rail starts, from `--x402-facilitator-key-file` or
    /// `D402_X402_FACILITATOR_PRIVATE_KEY`, never kept here.
    [x402: X402Settings, "Payment rails"] {
        /// x402 rail: CAIP-2 EVM network, e.g. eip155:84532 for Base Sepolia.
        network / x402_network: value String = d402_rail_x402_evm::EvmNetwork::BASE.to_string(),
            arg(env = "D402_X402_NETWORK");
        /// x402 rail: the chain's JSON-RPC endpoint (required with --rail x402-base).
        evm_rpc_url / evm_rpc_url: optional String = None,
            arg(env = "D402_EVM_RPC_URL", value_name = "URL");
        /// x402 rail: the EIP-3009 token prices are paid in (Base USDC).
        asset / x402_asset: value String = d402_rail_x402_evm::BASE_USDC.to_checksum(None),
            arg(env = "D402_X402_ASSET", value_name = "ADDRESS");
        /// x402 rail: the token's EIP-712 domain name ("USDC" on Base Sepolia).
        asset_name / x402_asset_name: value String = d402_rail_x402_evm::USDC_DOMAIN_NAME.into(),
            arg(env = "D402_X402_ASSET_NAME");
        /// x402 rail: the token's EIP-712 domain version.
        asset_version / x402_asset_version: value String =
            d402_rail_x402_evm::USDC_DOMAIN_VERSION.into(), arg(env = "D402_X402_ASSET_VERSION");
        /// x402 rail: the address payments go to, `payTo` (required with --rail x402-base).
        provider_payout_wallet / provider_payout_wallet: optional String = None,
            arg(env = "D402_PROVIDER_PAYOUT_WALLET", value_name = "ADDRESS");
        /// x402 rail: file holding the built-in facilitator's gas key (0x hex, mode 0600);
        /// else the key is read from D402_X402_FACILITATOR_PRIVATE_KEY.
        facilitator_key_file / x402_facilitator_key_file: optional PathBuf = None,
            arg(env = "D402_X402_FACILITATOR_KEY_FILE", value_name = "FILE");
        /// x402 rail: settle through this remote x402 facilitator (GET /supported, POST
        /// /verify, POST /settle) instead of the built-in one; no gas key is needed then.
        facilitator_url / x402_facilitator_url: optional String = None,
            arg(env = "D402_X402_FACILITATOR_URL", value_name = "URL");
        /// Where this node is paid on EVM rails: a worker or validator announces it in its
        /// offers; a gateway pays its own local pool's nets and validator fees here with
        /// `d402 payouts run` [default: a gateway keeps them at --provider-payout-wallet].
        evm_payout_wallet / evm_payout_wallet: optional String = None,
            arg(env = "D402_EVM_PAYOUT_WALLET", value_name = "ADDRESS");
        /// Escrow rail: the deployed TaskEscrowFactory (required with --rail
        /// x402-base-escrow; `d402 escrow deploy` deploys one).
        escrow_factory_address / escrow_factory_address: optional String = None,
            arg(env = "D402_ESCROW_FACTORY_ADDRESS", value_name = "ADDRESS");
        /// Escrow rail: file holding the operator key that settles, refunds and pays the gas
        /// (0x hex, mode 0600); else the key is read from D402_ESCROW_TX_PRIVATE_KEY.
        escrow_tx_key_file / escrow_tx_key_file: optional PathBuf = None,
            arg(env = "D402_ESCROW_TX_KEY_FILE", value_name = "FILE");
        /// Escrow rail: seconds the gateway has to settle after the buyer's authorization
        /// window; then anyone may return the funds to the buyer.
        escrow_settle_window_seconds / escrow_settle_window_seconds: value u64 =
            DEFAULT_ESCROW_SETTLE_WINDOW_SECONDS,
            arg(env = "D402_ESCROW_SETTLE_WINDOW_SECONDS", value_name = "SECONDS");
    }
    /// The Solana rails (`--rail solana-direct`, `--rail x402-solana`). The gateway's Solana
    /// wallet is its node key.
    [solana: SolanaSettings, "Payment rails"] {
        /// Solana rails: the cluster, CAIP-2 (solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp mainnet,
        /// also solana:mainnet-beta; solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1 devnet;
        /// solana:localnet).
        network / solana_network: value String =
            d402_rail_solana::SolanaNetwork::Mainnet.to_string(), arg(env = "D402_SOLANA_NETWORK");
        /// Solana rails: the cluster's JSON-RPC endpoint (required with a Solana rail).
        rpc_url / solana_rpc_url: optional String = None,
            arg(env = "D402_SOLANA_RPC_URL", value_name = "URL");
        /// Solana rails: the USDC mint.
        usdc_mint / solana_usdc_mint: value String = d402_rail_solana::USDC_MINT.to_string(),
            arg(env = "D402_SOLANA_USDC_MINT", value_name = "ADDRESS");
    }
    /// The peer network.
    [network: NetworkSettings, "Peer network"] {
        /// Join the peer network, listening here, e.g. /ip4/127.0.0.1/tcp/0 [default: no
        /// peer network].
        listen / p2p_listen: optional String = None, arg(value_name = "MULTIADDR");
        /// Peer to dial at start, /ip4/…/tcp/…/p2p/<PeerId> (repeatable). A restarted node
        /// also dials the peers it remembers (<state>/peers.json).
        bootstrap / bootstrap: list String = Vec::new(), arg(value_name = "MULTIADDR");
        /// Seconds between re-announcements of the node's signed offers; they lapse after
        /// three intervals.
        offer_interval_seconds / offer_interval_seconds: value u64 = 30;
        /// Lowest protocol version of workers this gateway leases to.
        min_protocol_version / min_protocol_version: value u32 = 1;
        /// Lowest software version of workers this gateway leases to, e.g. 0.1.0 [default:
        /// any].
        min_software_version / min_software_version: optional semver::Version = None;
        /// Gossip task intents when paid and accepted claims when settled: this publishes
        /// buyers' inputs and outputs to the whole network.
        gossip_tasks / gossip_tasks: switch bool = false,
            arg(value_name = "BOOL", num_args = 0..=1, default_missing_value = "true");
        /// Leases from other gateways this worker runs at once; more are refused as busy.
        max_leases / max_leases: value u32 = 16;
    }
    /// The page fetcher's Chromium.
    [browser: BrowserSettings, "Browser"] {
        /// Chromium tabs open at once for rendered page fetches; more renders wait.
        tabs / browser_tabs: value usize = BrowserConfig::default().max_tabs;
        /// Seconds Chromium may take to start before a render fails.
        launch_timeout_seconds / browser_launch_timeout_seconds: value u64 =
            BrowserConfig::default().launch_timeout.as_secs();
        /// DEVELOPMENT ONLY: let page fetches reach private/loopback addresses.
        allow_private_addresses / allow_private_addresses: switch bool = false,
            arg(value_name = "BOOL", num_args = 0..=1, default_missing_value = "true");
    }
    /// Limits that keep an operator's money safe.
    [safety: SafetySettings, "Safety"] {
        /// Per-task budget cap, e.g. "$0.05" or 0.05: refuse to serve a capability priced
        /// above it [default: none].
        max_task_budget / safety_max_task_budget: optional Price = None,
            arg(env = "D402_SAFETY_MAX_TASK_BUDGET", value_parser = Price::parse_dollars),
            file(deserialize_with = "dollars");
    }
}

/// `d402 node` flags: every setting of [`NodeConfig`] (see the module documentation), each
/// under its section's heading with its default shown. Every one is optional: what neither
/// the flags, the environment nor the file sets keeps its default.
#[derive(Debug, Clone, Default)]
pub struct NodeArgs(pub Flags);

/// `command` with each node flag's default and file key appended to its help.
fn with_defaults(command: Command) -> Command {
    documented()
        .into_iter()
        .fold(command, |command, (id, key, default)| {
            command.mut_arg(id, |arg: Arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                let default = default.map(|d| format!(" [default: {d}]"));
                let key = key.replace('_', "-");
                arg.help(format!(
                    "{help}{} [file: {key}]",
                    default.unwrap_or_default()
                ))
            })
        })
}

impl Args for NodeArgs {
    fn augment_args(command: Command) -> Command {
        with_defaults(Flags::augment_args(command))
    }

    fn augment_args_for_update(command: Command) -> Command {
        with_defaults(Flags::augment_args_for_update(command))
    }
}

impl FromArgMatches for NodeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Flags::from_arg_matches(matches).map(Self)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}
