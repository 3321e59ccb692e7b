//! Node configuration, in layers: embedded defaults ([`NodeConfig::default`]) < a TOML file
//! (`--config FILE` or `D402_CONFIG`) < environment variables (`D402_STATE`,
//! `D402_MAX_CREATOR_COMMISSION_BPS`, `D402_SAFETY_MAX_TASK_BUDGET`) < command-line flags.
//! [`NodeArgs::resolve`] layers them and checks the result ([`NodeConfig::validate`]).
//!
//! The file's keys are the flag names, e.g.:
//!
//! ```toml
//! http-port = 9000
//! roles = ["gateway", "worker"]
//! accepted-manifest-cid = ["bafkrei..."]
//! price = "$0.01"
//! mode = "quorum"
//! fanout = 3
//! quorum = 2
//! ```
//!
//! Relative paths in the file are relative to the working directory, as on the command line.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use d402_browser::BrowserConfig;
use d402_payment::RailId;
use d402_protocol::{
    Amount, BPS_DENOMINATOR, DEFAULT_MAX_CREATOR_COMMISSION_BPS, ExecutionMode, Price,
};
use serde::Deserialize;

/// The capability a node serves by default (`--capability`).
pub const DEFAULT_CAPABILITY: &str = "web.page_to_markdown@1";

/// A role a node process can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Serves the HTTP API and the 402 flow.
    Gateway,
    /// Runs capabilities.
    Worker,
    /// Validates result claims.
    Validator,
    /// Helps other nodes join the peer network (any node with `--p2p-listen` does).
    Bootstrap,
}

impl Role {
    /// The role's name in offers and discovery.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Worker => "worker",
            Self::Validator => "validator",
            Self::Bootstrap => "bootstrap",
        }
    }
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// State directory (wallet, installed capabilities, blobs, `node.redb`).
    pub state: PathBuf,
    /// HTTP listen address.
    pub http_host: IpAddr,
    /// HTTP port (0 picks a free one).
    pub http_port: u16,
    /// Base URL announced in discovery; default `http://<host>:<port>`.
    pub public_url: Option<String>,
    /// Roles held.
    pub roles: Vec<Role>,
    /// The capability served (ID or manifest CID) when no accepted manifest CID is given.
    pub capability: String,
    /// Manifest CIDs this gateway accepts; the first is served.
    pub accepted_manifest_cids: Vec<String>,
    /// Namespaces whose capabilities this gateway serves (empty: any).
    pub trusted_capability_namespaces: Vec<String>,
    /// Serve only capabilities with a valid signed registration for their exact manifest CID.
    pub require_capability_registration: bool,
    /// The same as `require_capability_registration`: registrations are always signed envelopes.
    pub require_signed_capability_registration: bool,
    /// Serve only capabilities whose registration carries a valid namespace proof.
    pub require_capability_namespace_proof: bool,
    /// Payment rails accepted, in preference order (`simulated`, `x402-base`,
    /// `x402-base-escrow`).
    pub rails: Vec<RailId>,
    /// Price override; default: the manifest's price.
    pub price: Option<Price>,
    /// Cap on creator commissions in basis points.
    pub max_creator_commission_bps: u32,
    /// Refuse to serve a capability whose price is above this.
    pub safety_max_task_budget: Option<Amount>,
    /// Longest payment authorization lifetime, seconds.
    pub payment_timeout_seconds: u64,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Seconds a client has to send complete request headers.
    pub http_header_timeout_seconds: u64,
    /// Seconds a client has to send a request body.
    pub http_body_timeout_seconds: u64,
    /// HTTP connections held at once; at the cap the oldest idle one is closed.
    pub http_max_connections: usize,
    /// Admin API listen address (bearer token; never public).
    pub admin_host: IpAddr,
    /// Admin API port (0 picks a free one; `<state>/admin.json` names it).
    pub admin_port: u16,
    /// Seconds a stopping node (SIGTERM, Ctrl-C) lets running tasks finish before it exits.
    pub shutdown_grace_seconds: u64,
    /// DEVELOPMENT ONLY: let page fetches reach private and loopback addresses.
    pub allow_private_addresses: bool,
    /// Size of the node's local worker pool.
    pub local_workers: u32,
    /// Execution mode of the tasks this gateway creates.
    pub mode: ExecutionMode,
    /// Workers each task is sent to.
    pub fanout: u32,
    /// Agreeing results needed to accept a task (quorum mode).
    pub quorum: u32,
    /// Validator fee in basis points of the price.
    pub validator_fee_bps: u32,
    /// Peer-network listen address (a multiaddr); none: no peer network.
    pub p2p_listen: Option<String>,
    /// Peers to dial at start (`/ip4/…/tcp/…/p2p/<PeerId>`).
    pub bootstrap: Vec<String>,
    /// How often the node re-announces its signed offers; they lapse after three intervals.
    pub offer_interval_seconds: u64,
    /// Lowest protocol version of workers this gateway leases to.
    pub min_protocol_version: u32,
    /// Lowest software version of workers this gateway leases to.
    pub min_software_version: Option<semver::Version>,
    /// Gossip task intents and accepted claims (they carry buyers' inputs and outputs).
    pub gossip_tasks: bool,
    /// Leases from other gateways a worker runs at once; more are refused as `busy`.
    pub max_leases: u32,
    /// Chromium tabs open at once for rendered page fetches; more renders wait.
    pub browser_tabs: usize,
    /// Seconds Chromium may take to start before a render fails.
    pub browser_launch_timeout_seconds: u64,
    /// x402 on EVM (`--rail x402-base`, `--rail x402-base-escrow`).
    pub x402: X402Settings,
    /// Solana (`--rail solana-direct`).
    pub solana: SolanaSettings,
}

/// Settings of the Solana rails. The gateway's Solana wallet is its node key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolanaSettings {
    /// The cluster (CAIP-2, or the spec's `solana:mainnet-beta`, or `solana:localnet`).
    pub network: String,
    /// Its JSON-RPC endpoint.
    pub rpc_url: Option<String>,
    /// The USDC mint prices are paid in.
    pub usdc_mint: String,
}

impl Default for SolanaSettings {
    fn default() -> Self {
        Self {
            network: d402_rail_solana::SolanaNetwork::Mainnet.to_string(),
            rpc_url: None,
            usdc_mint: d402_rail_solana::USDC_MINT.to_string(),
        }
    }
}

impl SolanaSettings {
    /// The direct rail's configuration, checked, with its RPC endpoint; the variable or
    /// flag to fix is named.
    pub fn direct_config(&self) -> anyhow::Result<(d402_rail_solana::DirectConfig, url::Url)> {
        let network = self
            .network
            .parse()
            .context("solana-network (D402_SOLANA_NETWORK)")?;
        let rpc = self.rpc_url.as_deref().context(
            "--rail solana-direct and --rail x402-solana need the cluster's JSON-RPC endpoint: set solana-rpc-url (D402_SOLANA_RPC_URL)",
        )?;
        let rpc_url = url::Url::parse(rpc).with_context(|| {
            format!("solana-rpc-url {rpc:?} (D402_SOLANA_RPC_URL) is not a URL")
        })?;
        let mint = self.usdc_mint.parse().map_err(|_| {
            anyhow::anyhow!(
                "solana-usdc-mint {:?} (D402_SOLANA_USDC_MINT) is not a Solana address",
                self.usdc_mint
            )
        })?;
        let config = d402_rail_solana::DirectConfig {
            network,
            mint,
            decimals: d402_rail_solana::USDC_DECIMALS,
            confirm_timeout: Duration::from_secs(60),
        };
        Ok((config, rpc_url))
    }
}

/// Settings of the x402 EVM rail. Its gas signer's key is read when the rail starts, from
/// `--x402-facilitator-key-file` or `D402_X402_FACILITATOR_PRIVATE_KEY`, never kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X402Settings {
    /// CAIP-2 network, `eip155:<chain id>`.
    pub network: String,
    /// JSON-RPC endpoint of that chain.
    pub evm_rpc_url: Option<String>,
    /// The EIP-3009 token prices are paid in.
    pub asset: String,
    /// The token's EIP-712 domain name.
    pub asset_name: String,
    /// The token's EIP-712 domain version.
    pub asset_version: String,
    /// The `payTo` address payments land at.
    pub provider_payout_wallet: Option<String>,
    /// File holding the built-in facilitator's gas key (hex, mode 0600).
    pub facilitator_key_file: Option<PathBuf>,
    /// A remote x402 facilitator to settle through instead of the built-in one.
    pub facilitator_url: Option<String>,
    /// Where this node's own worker nets and validator fees are paid on EVM rails (unset:
    /// they are kept at `payTo`).
    pub evm_payout_wallet: Option<String>,
    /// The Base task escrow factory (`--rail x402-base-escrow`).
    pub escrow_factory_address: Option<String>,
    /// File holding the escrow operator's key (it settles, refunds and pays the gas; hex,
    /// mode 0600); else `D402_ESCROW_TX_PRIVATE_KEY`.
    pub escrow_tx_key_file: Option<PathBuf>,
    /// Seconds the gateway has to settle an escrow after the buyer's authorization window;
    /// then anyone may return the funds to the buyer.
    pub escrow_settle_window_seconds: u64,
}

/// Default [`X402Settings::escrow_settle_window_seconds`]: an hour.
pub const DEFAULT_ESCROW_SETTLE_WINDOW_SECONDS: u64 = 3600;

impl Default for X402Settings {
    fn default() -> Self {
        Self {
            network: d402_rail_x402_evm::EvmNetwork::BASE.to_string(),
            evm_rpc_url: None,
            asset: d402_rail_x402_evm::BASE_USDC.to_checksum(None),
            asset_name: d402_rail_x402_evm::USDC_DOMAIN_NAME.into(),
            asset_version: d402_rail_x402_evm::USDC_DOMAIN_VERSION.into(),
            provider_payout_wallet: None,
            facilitator_key_file: None,
            facilitator_url: None,
            evm_payout_wallet: None,
            escrow_factory_address: None,
            escrow_tx_key_file: None,
            escrow_settle_window_seconds: DEFAULT_ESCROW_SETTLE_WINDOW_SECONDS,
        }
    }
}

impl X402Settings {
    /// The chain, its RPC endpoint and the token, checked for `rail`; the environment
    /// variable or flag to fix is named.
    fn chain(
        &self,
        rail: RailId,
    ) -> anyhow::Result<(
        d402_rail_x402_evm::EvmNetwork,
        url::Url,
        d402_rail_x402_evm::TokenConfig,
    )> {
        use d402_rail_x402_evm::{Address, TokenConfig};
        let network = self
            .network
            .parse()
            .context("x402-network (D402_X402_NETWORK)")?;
        let rpc = self.evm_rpc_url.as_deref().with_context(|| {
            format!("--rail {rail} needs the chain's JSON-RPC endpoint: set evm-rpc-url (D402_EVM_RPC_URL)")
        })?;
        let rpc_url = url::Url::parse(rpc)
            .with_context(|| format!("evm-rpc-url {rpc:?} (D402_EVM_RPC_URL) is not a URL"))?;
        let asset: Address = self.asset.parse().map_err(|_| {
            anyhow::anyhow!(
                "x402-asset {:?} (D402_X402_ASSET) is not a 0x address",
                self.asset
            )
        })?;
        if let Some(wallet) = &self.evm_payout_wallet
            && wallet.parse::<Address>().is_err()
        {
            bail!("evm-payout-wallet {wallet:?} (D402_EVM_PAYOUT_WALLET) is not a 0x address");
        }
        let token = TokenConfig {
            asset,
            domain_name: self.asset_name.clone(),
            domain_version: self.asset_version.clone(),
        };
        Ok((network, rpc_url, token))
    }

    /// Where this node's own earnings are paid on EVM: `evm-payout-wallet`, else
    /// `provider-payout-wallet`.
    pub fn own_evm_wallet(&self) -> Option<&str> {
        self.evm_payout_wallet
            .as_deref()
            .or(self.provider_payout_wallet.as_deref())
    }

    /// The escrow rail's configuration, checked, with its RPC endpoint; the commission cap
    /// written into the terms is `max_commission_bps`.
    pub fn escrow_config(
        &self,
        max_commission_bps: u32,
    ) -> anyhow::Result<(d402_rail_x402_evm::EscrowConfig, url::Url)> {
        use d402_rail_x402_evm::{Address, EscrowConfig};
        let (network, rpc_url, token) = self.chain(RailId::X402BaseEscrow)?;
        let factory = self.escrow_factory_address.as_deref().context(
            "--rail x402-base-escrow needs the escrow factory: set escrow-factory-address (D402_ESCROW_FACTORY_ADDRESS); deploy one with `d402 escrow deploy`",
        )?;
        let factory: Address = factory.parse().map_err(|_| {
            anyhow::anyhow!(
                "escrow-factory-address {factory:?} (D402_ESCROW_FACTORY_ADDRESS) is not a 0x address"
            )
        })?;
        let wallet = self.own_evm_wallet().context(
            "--rail x402-base-escrow pays this node's own worker nets and validator fees on chain: set evm-payout-wallet (D402_EVM_PAYOUT_WALLET) or provider-payout-wallet (D402_PROVIDER_PAYOUT_WALLET)",
        )?;
        if wallet.parse::<Address>().is_err() {
            bail!(
                "provider-payout-wallet {wallet:?} (D402_PROVIDER_PAYOUT_WALLET) is not a 0x address"
            );
        }
        if self.escrow_settle_window_seconds == 0 {
            bail!("escrow-settle-window-seconds must be at least 1");
        }
        let config = EscrowConfig {
            network,
            token,
            factory,
            settle_window_secs: self.escrow_settle_window_seconds,
            max_commission_bps: u16::try_from(max_commission_bps)
                .context("max-creator-commission-bps above 10000")?,
            receipt_timeout: Duration::from_secs(60),
        };
        Ok((config, rpc_url))
    }

    /// The x402 rail's configuration, checked, with its RPC endpoint.
    pub fn rail_config(&self) -> anyhow::Result<(d402_rail_x402_evm::RailConfig, url::Url)> {
        use d402_rail_x402_evm::{Address, RailConfig};
        let (network, rpc_url, token) = self.chain(RailId::X402Base)?;
        let wallet = self.provider_payout_wallet.as_deref().context(
            "--rail x402-base needs the address payments go to: set provider-payout-wallet (D402_PROVIDER_PAYOUT_WALLET)",
        )?;
        let pay_to: Address = wallet.parse().map_err(|_| {
            anyhow::anyhow!(
                "provider-payout-wallet {wallet:?} (D402_PROVIDER_PAYOUT_WALLET) is not a 0x address"
            )
        })?;
        if self.facilitator_url.is_some() && self.facilitator_key_file.is_some() {
            bail!(
                "set either x402-facilitator-url (a remote facilitator settles) or x402-facilitator-key-file (the built-in one does), not both"
            );
        }
        let config = RailConfig {
            network,
            token,
            pay_to,
            receipt_timeout: Duration::from_secs(60),
        };
        Ok((config, rpc_url))
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        // The page fetcher's own production defaults.
        let browser = BrowserConfig::default();
        Self {
            state: PathBuf::from("state/node"),
            http_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: 8402,
            public_url: None,
            roles: vec![Role::Gateway, Role::Worker, Role::Validator],
            capability: DEFAULT_CAPABILITY.into(),
            accepted_manifest_cids: Vec::new(),
            trusted_capability_namespaces: Vec::new(),
            require_capability_registration: false,
            require_signed_capability_registration: false,
            require_capability_namespace_proof: false,
            rails: vec![RailId::Simulated],
            price: None,
            max_creator_commission_bps: DEFAULT_MAX_CREATOR_COMMISSION_BPS,
            safety_max_task_budget: None,
            payment_timeout_seconds: 300,
            max_body_bytes: 64 * 1024,
            http_header_timeout_seconds: 10,
            http_body_timeout_seconds: 30,
            http_max_connections: 4096,
            admin_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            admin_port: 0,
            shutdown_grace_seconds: 30,
            allow_private_addresses: false,
            local_workers: 3,
            mode: ExecutionMode::Single,
            fanout: 1,
            quorum: 1,
            validator_fee_bps: 0,
            p2p_listen: None,
            bootstrap: Vec::new(),
            offer_interval_seconds: 30,
            min_protocol_version: 1,
            min_software_version: None,
            gossip_tasks: false,
            max_leases: 16,
            browser_tabs: browser.max_tabs,
            browser_launch_timeout_seconds: browser.launch_timeout.as_secs(),
            x402: X402Settings::default(),
            solana: SolanaSettings::default(),
        }
    }
}

impl NodeConfig {
    /// Whether the node holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The size of the gateway's local worker pool: `local_workers` for a node that is both
    /// gateway and worker, none otherwise.
    pub fn local_pool(&self) -> usize {
        if self.has(Role::Gateway) && self.has(Role::Worker) {
            self.local_workers as usize
        } else {
            0
        }
    }

    /// The page fetcher's settings: its production defaults with this node's tab count,
    /// Chromium start-up time and (development only) private-address switch.
    pub fn browser_config(&self) -> BrowserConfig {
        BrowserConfig {
            max_tabs: self.browser_tabs,
            launch_timeout: Duration::from_secs(self.browser_launch_timeout_seconds),
            allow_private_addresses: self.allow_private_addresses,
            ..BrowserConfig::default()
        }
    }

    /// Refuses inconsistent settings, naming the keys involved.
    pub fn validate(&self) -> anyhow::Result<()> {
        let (mode, fanout, quorum, workers) =
            (self.mode, self.fanout, self.quorum, self.local_workers);
        if self.roles.is_empty() {
            bail!("roles cannot be empty: use gateway, worker, validator and/or bootstrap");
        }
        if let Some(listen) = &self.p2p_listen {
            listen
                .parse::<d402_network::Multiaddr>()
                .map_err(|e| anyhow::anyhow!("p2p-listen {listen:?} is not a multiaddr: {e}"))?;
        }
        for peer in &self.bootstrap {
            let address: d402_network::Multiaddr = peer
                .parse()
                .map_err(|e| anyhow::anyhow!("bootstrap {peer:?} is not a multiaddr: {e}"))?;
            if !address
                .iter()
                .any(|p| matches!(p, d402_network::Protocol::P2p(_)))
            {
                bail!("bootstrap {peer:?} must end in /p2p/<PeerId>");
            }
        }
        if self.p2p_listen.is_none() && (!self.bootstrap.is_empty() || !self.has(Role::Gateway)) {
            bail!(
                "only a gateway runs without the peer network: set p2p-listen (e.g. /ip4/127.0.0.1/tcp/0)"
            );
        }
        for (i, rail) in self.rails.iter().enumerate() {
            if self.rails[..i].contains(rail) {
                bail!("rail {rail} is listed twice");
            }
            match rail {
                RailId::Simulated => {}
                RailId::X402Base => {
                    self.x402.rail_config()?;
                }
                RailId::X402BaseEscrow => {
                    self.x402.escrow_config(self.max_creator_commission_bps)?;
                }
                RailId::SolanaDirect | RailId::X402Solana => {
                    self.solana.direct_config()?;
                }
            }
        }
        if self.rails.is_empty() {
            bail!("at least one payment rail is needed: use --rail simulated");
        }
        if self.http_header_timeout_seconds == 0 || self.http_body_timeout_seconds == 0 {
            bail!("http-header-timeout-seconds and http-body-timeout-seconds must be at least 1");
        }
        if self.http_max_connections == 0 {
            bail!("http-max-connections must be at least 1");
        }
        if self.max_leases == 0 {
            bail!("max-leases must be at least 1");
        }
        if self.browser_tabs == 0 {
            bail!("browser-tabs must be at least 1");
        }
        if self.browser_launch_timeout_seconds == 0 {
            bail!("browser-launch-timeout-seconds must be at least 1");
        }
        if self.offer_interval_seconds == 0 {
            bail!("offer-interval-seconds must be at least 1");
        }
        if fanout == 0 {
            bail!("fanout must be at least 1");
        }
        if quorum == 0 || quorum > fanout {
            bail!("quorum ({quorum}) must be between 1 and fanout ({fanout})");
        }
        if self.p2p_listen.is_none() && workers == 0 {
            bail!("local-workers must be at least 1 without the peer network");
        }
        if self.p2p_listen.is_none() && fanout > workers {
            bail!(
                "fanout ({fanout}) cannot exceed local-workers ({workers}) without the peer network"
            );
        }
        if mode == ExecutionMode::Single && fanout != 1 {
            bail!(
                "mode single sends each task to one worker: fanout must be 1, not {fanout} (or use mode race or quorum)"
            );
        }
        let whole = BPS_DENOMINATOR as u32;
        if self.validator_fee_bps > whole {
            bail!(
                "validator-fee-bps ({}) cannot exceed {whole}",
                self.validator_fee_bps
            );
        }
        if self.max_creator_commission_bps > whole {
            bail!(
                "max-creator-commission-bps ({}) cannot exceed {whole}",
                self.max_creator_commission_bps
            );
        }
        if self.validator_fee_bps + self.max_creator_commission_bps > whole {
            bail!(
                "validator-fee-bps ({}) plus max-creator-commission-bps ({}) cannot exceed {whole}: nothing would be left for the worker",
                self.validator_fee_bps,
                self.max_creator_commission_bps
            );
        }
        Ok(())
    }
}

/// `d402 node` flags, and the keys of its TOML configuration file. Every setting is
/// optional: what neither the flags, the environment nor the file set keeps its embedded
/// default (shown in brackets).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeArgs {
    /// TOML configuration file; its keys are these flags' names (`http-port = 9000`).
    /// Flags and environment variables override it.
    #[arg(long, env = "D402_CONFIG", value_name = "FILE", help_heading = "Node")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Node state directory [default: state/node].
    #[arg(long, env = "D402_STATE", help_heading = "Node")]
    pub state: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1].
    #[arg(long, help_heading = "HTTP")]
    pub http_host: Option<IpAddr>,
    /// HTTP port (0: any free port; the chosen address is printed) [default: 8402].
    #[arg(long, help_heading = "HTTP")]
    pub http_port: Option<u16>,
    /// Base URL announced in discovery [default: http://HOST:PORT].
    #[arg(long, help_heading = "HTTP")]
    pub public_url: Option<String>,
    /// Roles, comma separated [default: gateway,worker,validator].
    #[arg(long, value_enum, value_delimiter = ',', help_heading = "Node")]
    pub roles: Option<Vec<Role>>,
    /// Capability served (ID or manifest CID), when no accepted manifest CID is given
    /// [default: web.page_to_markdown@1].
    #[arg(long, help_heading = "Node")]
    pub capability: Option<String>,
    /// Accepted manifest CID (repeatable); the first is served.
    #[arg(long = "accepted-manifest-cid", help_heading = "Capability policy")]
    #[serde(default, rename = "accepted-manifest-cid")]
    pub accepted_manifest_cids: Vec<String>,
    /// Trusted capability namespace (repeatable; none: any).
    #[arg(
        long = "trusted-capability-namespace",
        help_heading = "Capability policy"
    )]
    #[serde(default, rename = "trusted-capability-namespace")]
    pub trusted_capability_namespaces: Vec<String>,
    /// Serve only capabilities with a valid signed registration for their exact manifest CID [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Capability policy")]
    pub require_capability_registration: Option<bool>,
    /// Same as --require-capability-registration: registrations are always signed [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Capability policy")]
    pub require_signed_capability_registration: Option<bool>,
    /// Serve only capabilities whose registration carries a valid namespace proof [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Capability policy")]
    pub require_capability_namespace_proof: Option<bool>,
    /// Payment rail to accept (repeatable; the 402 lists one offer per rail, the first is
    /// preferred): simulated, x402-base, x402-base-escrow, solana-direct, x402-solana
    /// [default: simulated].
    #[arg(long = "rail", value_name = "RAIL", help_heading = "Payment rails")]
    #[serde(default, rename = "rail")]
    pub rails: Vec<RailId>,
    /// Price override, e.g. "$0.01" or 0.01 [default: the manifest's price].
    #[arg(long, value_parser = Price::parse_dollars, help_heading = "Capability policy")]
    #[serde(default, deserialize_with = "dollars")]
    pub price: Option<Price>,
    /// Cap on creator commissions, basis points [default: 2000].
    #[arg(
        long,
        env = "D402_MAX_CREATOR_COMMISSION_BPS",
        help_heading = "Capability policy"
    )]
    pub max_creator_commission_bps: Option<u32>,
    /// Per-task budget cap, e.g. "$0.05" or 0.05: refuse to serve a capability priced above it.
    #[arg(long, env = "D402_SAFETY_MAX_TASK_BUDGET", value_parser = Price::parse_dollars, help_heading = "Safety")]
    #[serde(default, deserialize_with = "dollars")]
    pub safety_max_task_budget: Option<Price>,
    /// Longest payment authorization lifetime, seconds [default: 300].
    #[arg(long, help_heading = "Payment rails")]
    pub payment_timeout_seconds: Option<u64>,
    /// Largest request body, bytes [default: 65536].
    #[arg(long, help_heading = "HTTP")]
    pub max_body_bytes: Option<usize>,
    /// Seconds a client has to send complete request headers [default: 10].
    #[arg(long, help_heading = "HTTP")]
    pub http_header_timeout_seconds: Option<u64>,
    /// Seconds a client has to send a request body [default: 30].
    #[arg(long, help_heading = "HTTP")]
    pub http_body_timeout_seconds: Option<u64>,
    /// HTTP connections held at once; at the cap the oldest idle connection is closed to
    /// make room [default: 4096].
    #[arg(long, help_heading = "HTTP")]
    pub http_max_connections: Option<usize>,
    /// Admin API listen address; a non-loopback address exposes it (token still required)
    /// [default: 127.0.0.1].
    #[arg(long, help_heading = "Admin")]
    pub admin_host: Option<IpAddr>,
    /// Admin API port (0: any free port; <state>/admin.json names it) [default: 0].
    #[arg(long, help_heading = "Admin")]
    pub admin_port: Option<u16>,
    /// Seconds a stopping node (SIGTERM, Ctrl-C) lets running tasks finish; tasks still
    /// running then are refunded at the next start [default: 30].
    #[arg(long, help_heading = "Admin")]
    pub shutdown_grace_seconds: Option<u64>,
    /// DEVELOPMENT ONLY: let page fetches reach private/loopback addresses [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Browser")]
    pub allow_private_addresses: Option<bool>,
    /// Size of the node's local worker pool [default: 3].
    #[arg(long, help_heading = "Node")]
    pub local_workers: Option<u32>,
    /// Execution mode: single, race or quorum [default: single].
    #[arg(long, value_parser = parse_mode, help_heading = "Node")]
    pub mode: Option<ExecutionMode>,
    /// Workers each task is sent to (1 in single mode; at most --local-workers) [default: 1].
    #[arg(long, help_heading = "Node")]
    pub fanout: Option<u32>,
    /// Agreeing results needed to accept a task (1 to --fanout) [default: 1].
    #[arg(long, help_heading = "Node")]
    pub quorum: Option<u32>,
    /// Validator fee, basis points of the price [default: 0].
    #[arg(long, help_heading = "Node")]
    pub validator_fee_bps: Option<u32>,
    /// Join the peer network, listening here, e.g. /ip4/127.0.0.1/tcp/0 [default: no peer network].
    #[arg(long, value_name = "MULTIADDR", help_heading = "Peer network")]
    pub p2p_listen: Option<String>,
    /// Peer to dial at start, /ip4/…/tcp/…/p2p/<PeerId> (repeatable). A restarted node also
    /// dials the peers it remembers (<state>/peers.json).
    #[arg(
        long = "bootstrap",
        value_name = "MULTIADDR",
        help_heading = "Peer network"
    )]
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Seconds between re-announcements of the node's signed offers [default: 30].
    #[arg(long, help_heading = "Peer network")]
    pub offer_interval_seconds: Option<u64>,
    /// Lowest protocol version of workers this gateway leases to [default: 1].
    #[arg(long, help_heading = "Peer network")]
    pub min_protocol_version: Option<u32>,
    /// Lowest software version of workers this gateway leases to, e.g. 0.1.0 [default: any].
    #[arg(long, help_heading = "Peer network")]
    pub min_software_version: Option<semver::Version>,
    /// Gossip task intents when paid and accepted claims when settled: this publishes
    /// buyers' inputs and outputs to the whole network [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = "Peer network")]
    pub gossip_tasks: Option<bool>,
    /// Leases from other gateways this worker runs at once; more are refused as busy [default: 16].
    #[arg(long, help_heading = "Peer network")]
    pub max_leases: Option<u32>,
    /// Chromium tabs open at once for rendered page fetches; more renders wait [default: 4].
    #[arg(long, help_heading = "Browser")]
    pub browser_tabs: Option<usize>,
    /// Seconds Chromium may take to start before a render fails [default: 20].
    #[arg(long, help_heading = "Browser")]
    pub browser_launch_timeout_seconds: Option<u64>,
    /// x402 rail: CAIP-2 EVM network, e.g. eip155:84532 for Base Sepolia [default: eip155:8453].
    #[arg(long, env = "D402_X402_NETWORK", help_heading = "Payment rails")]
    pub x402_network: Option<String>,
    /// x402 rail: the chain's JSON-RPC endpoint (required with --rail x402-base).
    #[arg(
        long,
        env = "D402_EVM_RPC_URL",
        value_name = "URL",
        help_heading = "Payment rails"
    )]
    pub evm_rpc_url: Option<String>,
    /// x402 rail: the EIP-3009 token prices are paid in [default: Base USDC 0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913].
    #[arg(
        long,
        env = "D402_X402_ASSET",
        value_name = "ADDRESS",
        help_heading = "Payment rails"
    )]
    pub x402_asset: Option<String>,
    /// x402 rail: the token's EIP-712 domain name ("USDC" on Base Sepolia) [default: USD Coin].
    #[arg(long, env = "D402_X402_ASSET_NAME", help_heading = "Payment rails")]
    pub x402_asset_name: Option<String>,
    /// x402 rail: the token's EIP-712 domain version [default: 2].
    #[arg(long, env = "D402_X402_ASSET_VERSION", help_heading = "Payment rails")]
    pub x402_asset_version: Option<String>,
    /// x402 rail: the address payments go to, `payTo` (required with --rail x402-base).
    #[arg(
        long,
        env = "D402_PROVIDER_PAYOUT_WALLET",
        value_name = "ADDRESS",
        help_heading = "Payment rails"
    )]
    pub provider_payout_wallet: Option<String>,
    /// x402 rail: file holding the built-in facilitator's gas key (0x hex, mode 0600); else
    /// the key is read from D402_X402_FACILITATOR_PRIVATE_KEY.
    #[arg(
        long,
        env = "D402_X402_FACILITATOR_KEY_FILE",
        value_name = "FILE",
        help_heading = "Payment rails"
    )]
    pub x402_facilitator_key_file: Option<PathBuf>,
    /// x402 rail: settle through this remote x402 facilitator (GET /supported, POST /verify,
    /// POST /settle) instead of the built-in one; no gas key is needed then.
    #[arg(
        long,
        env = "D402_X402_FACILITATOR_URL",
        value_name = "URL",
        help_heading = "Payment rails"
    )]
    pub x402_facilitator_url: Option<String>,
    /// Where this node is paid on EVM rails: a worker or validator announces it in its
    /// offers; a gateway pays its own local pool's nets and validator fees here with
    /// `d402 payouts run` [default: a gateway keeps them at --provider-payout-wallet].
    #[arg(
        long,
        env = "D402_EVM_PAYOUT_WALLET",
        value_name = "ADDRESS",
        help_heading = "Payment rails"
    )]
    pub evm_payout_wallet: Option<String>,
    /// Escrow rail: the deployed TaskEscrowFactory (required with --rail x402-base-escrow;
    /// `d402 escrow deploy` deploys one).
    #[arg(
        long,
        env = "D402_ESCROW_FACTORY_ADDRESS",
        value_name = "ADDRESS",
        help_heading = "Payment rails"
    )]
    pub escrow_factory_address: Option<String>,
    /// Escrow rail: file holding the operator key that settles, refunds and pays the gas
    /// (0x hex, mode 0600); else the key is read from D402_ESCROW_TX_PRIVATE_KEY.
    #[arg(
        long,
        env = "D402_ESCROW_TX_KEY_FILE",
        value_name = "FILE",
        help_heading = "Payment rails"
    )]
    pub escrow_tx_key_file: Option<PathBuf>,
    /// Escrow rail: seconds the gateway has to settle after the buyer's authorization
    /// window; then anyone may return the funds to the buyer [default: 3600].
    #[arg(
        long,
        env = "D402_ESCROW_SETTLE_WINDOW_SECONDS",
        value_name = "SECONDS",
        help_heading = "Payment rails"
    )]
    pub escrow_settle_window_seconds: Option<u64>,
    /// Solana rails: the cluster, CAIP-2 (solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp mainnet, also
    /// solana:mainnet-beta; solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1 devnet; solana:localnet)
    /// [default: mainnet].
    #[arg(long, env = "D402_SOLANA_NETWORK", help_heading = "Payment rails")]
    pub solana_network: Option<String>,
    /// Solana rails: the cluster's JSON-RPC endpoint (required with --rail solana-direct).
    #[arg(
        long,
        env = "D402_SOLANA_RPC_URL",
        value_name = "URL",
        help_heading = "Payment rails"
    )]
    pub solana_rpc_url: Option<String>,
    /// Solana rails: the USDC mint [default: EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v].
    #[arg(
        long,
        env = "D402_SOLANA_USDC_MINT",
        value_name = "ADDRESS",
        help_heading = "Payment rails"
    )]
    pub solana_usdc_mint: Option<String>,
}

/// Dollars in a configuration file, `"$0.01"` or `"0.01"` as on the command line.
fn dollars<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Price>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Price::parse_dollars(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Parses `single`, `race` or `quorum`.
pub fn parse_mode(text: &str) -> Result<ExecutionMode, String> {
    match text {
        "single" => Ok(ExecutionMode::Single),
        "race" => Ok(ExecutionMode::Race),
        "quorum" => Ok(ExecutionMode::Quorum),
        _ => Err(format!(
            "{text:?} is not a mode: use single, race or quorum"
        )),
    }
}

impl NodeArgs {
    /// The configuration to run: embedded defaults, then the file named by `--config` (or
    /// `D402_CONFIG`), then these flags and environment variables; checked for consistency.
    pub fn resolve(self) -> anyhow::Result<NodeConfig> {
        let mut config = NodeConfig::default();
        if let Some(path) = &self.config {
            Self::from_file(path)?.apply(&mut config);
        }
        let source = self.config.clone();
        self.apply(&mut config);
        if config.mode == ExecutionMode::Quorum && config.fanout == 1 {
            tracing::warn!(
                "mode quorum with fanout 1 runs each task on one worker and accepts its result alone; \
                 set --fanout N (and --quorum Q) for a quorum"
            );
        }
        config.validate().with_context(|| match &source {
            Some(path) => format!("invalid node configuration (with {})", path.display()),
            None => "invalid node configuration".to_string(),
        })?;
        Ok(config)
    }

    /// Reads a TOML configuration file. Unknown keys and bad values are errors naming the key.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_toml(&text)
            .with_context(|| format!("{} is not a valid node configuration", path.display()))
    }

    /// Parses TOML configuration text (see [`NodeArgs::from_file`]).
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let deserializer = toml::Deserializer::parse(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let error = e.into_inner();
            let line = error
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let at = line
                .map(|line| format!("line {line}: "))
                .unwrap_or_default();
            if key == "." {
                anyhow::anyhow!("{at}{}", error.message())
            } else {
                anyhow::anyhow!("{at}key `{key}`: {}", error.message())
            }
        })
    }

    /// Overwrites the settings of `config` that these arguments set.
    fn apply(self, config: &mut NodeConfig) {
        fn set<T>(slot: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *slot = value;
            }
        }
        set(&mut config.state, self.state);
        set(&mut config.http_host, self.http_host);
        set(&mut config.http_port, self.http_port);
        if self.public_url.is_some() {
            config.public_url = self.public_url;
        }
        set(&mut config.roles, self.roles);
        set(&mut config.capability, self.capability);
        if !self.accepted_manifest_cids.is_empty() {
            config.accepted_manifest_cids = self.accepted_manifest_cids;
        }
        if !self.trusted_capability_namespaces.is_empty() {
            config.trusted_capability_namespaces = self.trusted_capability_namespaces;
        }
        set(
            &mut config.require_capability_registration,
            self.require_capability_registration,
        );
        set(
            &mut config.require_signed_capability_registration,
            self.require_signed_capability_registration,
        );
        set(
            &mut config.require_capability_namespace_proof,
            self.require_capability_namespace_proof,
        );
        if !self.rails.is_empty() {
            config.rails = self.rails;
        }
        if self.price.is_some() {
            config.price = self.price;
        }
        set(
            &mut config.max_creator_commission_bps,
            self.max_creator_commission_bps,
        );
        if let Some(budget) = self.safety_max_task_budget {
            config.safety_max_task_budget = Some(budget.0);
        }
        set(
            &mut config.payment_timeout_seconds,
            self.payment_timeout_seconds,
        );
        set(&mut config.max_body_bytes, self.max_body_bytes);
        set(
            &mut config.http_header_timeout_seconds,
            self.http_header_timeout_seconds,
        );
        set(
            &mut config.http_body_timeout_seconds,
            self.http_body_timeout_seconds,
        );
        set(&mut config.http_max_connections, self.http_max_connections);
        set(&mut config.admin_host, self.admin_host);
        set(&mut config.admin_port, self.admin_port);
        set(
            &mut config.shutdown_grace_seconds,
            self.shutdown_grace_seconds,
        );
        set(
            &mut config.allow_private_addresses,
            self.allow_private_addresses,
        );
        set(&mut config.local_workers, self.local_workers);
        set(&mut config.mode, self.mode);
        set(&mut config.fanout, self.fanout);
        set(&mut config.quorum, self.quorum);
        set(&mut config.validator_fee_bps, self.validator_fee_bps);
        if self.p2p_listen.is_some() {
            config.p2p_listen = self.p2p_listen;
        }
        if !self.bootstrap.is_empty() {
            config.bootstrap = self.bootstrap;
        }
        set(
            &mut config.offer_interval_seconds,
            self.offer_interval_seconds,
        );
        set(&mut config.min_protocol_version, self.min_protocol_version);
        if self.min_software_version.is_some() {
            config.min_software_version = self.min_software_version;
        }
        set(&mut config.gossip_tasks, self.gossip_tasks);
        set(&mut config.max_leases, self.max_leases);
        set(&mut config.browser_tabs, self.browser_tabs);
        set(
            &mut config.browser_launch_timeout_seconds,
            self.browser_launch_timeout_seconds,
        );
        let x402 = &mut config.x402;
        set(&mut x402.network, self.x402_network);
        set(&mut x402.asset, self.x402_asset);
        set(&mut x402.asset_name, self.x402_asset_name);
        set(&mut x402.asset_version, self.x402_asset_version);
        if self.evm_rpc_url.is_some() {
            x402.evm_rpc_url = self.evm_rpc_url;
        }
        if self.provider_payout_wallet.is_some() {
            x402.provider_payout_wallet = self.provider_payout_wallet;
        }
        if self.x402_facilitator_key_file.is_some() {
            x402.facilitator_key_file = self.x402_facilitator_key_file;
        }
        if self.x402_facilitator_url.is_some() {
            x402.facilitator_url = self.x402_facilitator_url;
        }
        if self.evm_payout_wallet.is_some() {
            x402.evm_payout_wallet = self.evm_payout_wallet;
        }
        if self.escrow_factory_address.is_some() {
            x402.escrow_factory_address = self.escrow_factory_address;
        }
        if self.escrow_tx_key_file.is_some() {
            x402.escrow_tx_key_file = self.escrow_tx_key_file;
        }
        set(
            &mut x402.escrow_settle_window_seconds,
            self.escrow_settle_window_seconds,
        );
        let solana = &mut config.solana;
        set(&mut solana.network, self.solana_network);
        set(&mut solana.usdc_mint, self.solana_usdc_mint);
        if self.solana_rpc_url.is_some() {
            solana.rpc_url = self.solana_rpc_url;
        }
    }
}
