//! Node configuration, in layers: embedded defaults ([`NodeConfig::default`]) < a TOML file
//! (`--config FILE` or `D402_CONFIG`) < environment variables (`D402_STATE`,
//! `D402_EVM_RPC_URL`, … as `--help` names them) < command-line flags. Every key is defined
//! once, in the table of [`keys`]: its section, flag, file key, default and help.
//! [`NodeArgs::resolve`] layers them and checks the result ([`NodeConfig::validate`]).
//!
//! The file has one table per section; its keys are the settings' names in that section:
//!
//! ```toml
//! [node]
//! roles = ["gateway", "worker"]
//! mode = "quorum"
//! fanout = 3
//! quorum = 2
//!
//! [http]
//! port = 9000
//!
//! [capabilities]
//! accepted-manifest-cids = ["bafkrei..."]
//! price = "$0.01"
//!
//! [rails]
//! accepted = ["x402-base"]
//!
//! [x402]
//! evm-rpc-url = "https://mainnet.base.org"
//! ```
//!
//! Relative paths in the file are relative to the working directory, as on the command line.

mod keys;

pub use keys::{
    AdminSettings, BrowserSettings, CapabilityPolicy, FileConfig, Flags, HttpSettings,
    NetworkSettings, NodeArgs, NodeConfig, NodeSettings, RailSettings, SafetySettings,
    SolanaSettings, X402Settings,
};

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;
use d402_browser::BrowserConfig;
use d402_payment::RailId;
use d402_protocol::{BPS_DENOMINATOR, ExecutionMode, Price};
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

/// Default [`X402Settings::escrow_settle_window_seconds`]: an hour.
pub const DEFAULT_ESCROW_SETTLE_WINDOW_SECONDS: u64 = 3600;

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

impl NodeConfig {
    /// Whether the node holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.node.roles.contains(&role)
    }

    /// The size of the gateway's local worker pool: `local_workers` for a node that is both
    /// gateway and worker, none otherwise.
    pub fn local_pool(&self) -> usize {
        if self.has(Role::Gateway) && self.has(Role::Worker) {
            self.node.local_workers as usize
        } else {
            0
        }
    }

    /// The page fetcher's settings: its production defaults with this node's tab count,
    /// Chromium start-up time and (development only) private-address switch.
    pub fn browser_config(&self) -> BrowserConfig {
        BrowserConfig {
            max_tabs: self.browser.tabs,
            launch_timeout: Duration::from_secs(self.browser.launch_timeout_seconds),
            allow_private_addresses: self.browser.allow_private_addresses,
            ..BrowserConfig::default()
        }
    }

    /// Refuses inconsistent settings, naming the keys involved.
    pub fn validate(&self) -> anyhow::Result<()> {
        let (mode, fanout, quorum, workers) = (
            self.node.mode,
            self.node.fanout,
            self.node.quorum,
            self.node.local_workers,
        );
        if self.node.roles.is_empty() {
            bail!("roles cannot be empty: use gateway, worker, validator and/or bootstrap");
        }
        if let Some(listen) = &self.network.listen {
            listen
                .parse::<d402_network::Multiaddr>()
                .map_err(|e| anyhow::anyhow!("p2p-listen {listen:?} is not a multiaddr: {e}"))?;
        }
        for peer in &self.network.bootstrap {
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
        if self.network.listen.is_none()
            && (!self.network.bootstrap.is_empty() || !self.has(Role::Gateway))
        {
            bail!(
                "only a gateway runs without the peer network: set p2p-listen (e.g. /ip4/127.0.0.1/tcp/0)"
            );
        }
        for (i, rail) in self.rails.accepted.iter().enumerate() {
            if self.rails.accepted[..i].contains(rail) {
                bail!("rail {rail} is listed twice");
            }
            match rail {
                RailId::Simulated => {}
                RailId::X402Base => {
                    self.x402.rail_config()?;
                }
                RailId::X402BaseEscrow => {
                    self.x402
                        .escrow_config(self.capabilities.max_creator_commission_bps)?;
                }
                RailId::SolanaDirect | RailId::X402Solana => {
                    self.solana.direct_config()?;
                }
            }
        }
        if self.rails.accepted.is_empty() {
            bail!("at least one payment rail is needed: use --rail simulated");
        }
        if self.http.header_timeout_seconds == 0 || self.http.body_timeout_seconds == 0 {
            bail!("http-header-timeout-seconds and http-body-timeout-seconds must be at least 1");
        }
        if self.http.max_connections == 0 {
            bail!("http-max-connections must be at least 1");
        }
        if self.network.max_leases == 0 {
            bail!("max-leases must be at least 1");
        }
        if self.browser.tabs == 0 {
            bail!("browser-tabs must be at least 1");
        }
        if self.browser.launch_timeout_seconds == 0 {
            bail!("browser-launch-timeout-seconds must be at least 1");
        }
        if self.network.offer_interval_seconds == 0 {
            bail!("offer-interval-seconds must be at least 1");
        }
        if fanout == 0 {
            bail!("fanout must be at least 1");
        }
        if quorum == 0 || quorum > fanout {
            bail!("quorum ({quorum}) must be between 1 and fanout ({fanout})");
        }
        if self.network.listen.is_none() && workers == 0 {
            bail!("local-workers must be at least 1 without the peer network");
        }
        if self.network.listen.is_none() && fanout > workers {
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
        if self.node.validator_fee_bps > whole {
            bail!(
                "validator-fee-bps ({}) cannot exceed {whole}",
                self.node.validator_fee_bps
            );
        }
        if self.capabilities.max_creator_commission_bps > whole {
            bail!(
                "max-creator-commission-bps ({}) cannot exceed {whole}",
                self.capabilities.max_creator_commission_bps
            );
        }
        if self.node.validator_fee_bps + self.capabilities.max_creator_commission_bps > whole {
            bail!(
                "validator-fee-bps ({}) plus max-creator-commission-bps ({}) cannot exceed {whole}: nothing would be left for the worker",
                self.node.validator_fee_bps,
                self.capabilities.max_creator_commission_bps
            );
        }
        Ok(())
    }
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
        let source = self.0.config.clone();
        if let Some(path) = &source {
            FileConfig::read(path)?.apply(&mut config);
        }
        self.0.apply(&mut config);
        let node = &config.node;
        if node.mode == ExecutionMode::Quorum && node.fanout == 1 {
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
}

impl FileConfig {
    /// Reads a TOML configuration file. Unknown keys and bad values are errors naming the key.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text)
            .with_context(|| format!("{} is not a valid node configuration", path.display()))
    }

    /// Parses TOML configuration text (see [`FileConfig::read`]).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
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
}
