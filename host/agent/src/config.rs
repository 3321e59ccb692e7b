//! The agent's configuration: gateways in preference order, the one signer source, the
//! spend policy. TOML in `$XDG_CONFIG_HOME/d402-agent/config.toml` (else
//! `~/.config/d402-agent/config.toml`); `--config FILE` names another. The ledger and the
//! pinned gateway keys live next to it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use d402_payment::RailId;
use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// How the agent answers a gateway's 402: pay it on a rail, or (`manual`) only show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayRail {
    /// Print the challenge and pay nothing.
    Manual,
    /// Pay on this rail.
    Pay(RailId),
}

impl std::str::FromStr for PayRail {
    type Err = d402_payment::UnknownRail;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "manual" => Ok(Self::Manual),
            rail => rail.parse().map(Self::Pay),
        }
    }
}

impl std::fmt::Display for PayRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Manual => f.write_str("manual"),
            Self::Pay(rail) => rail.fmt(f),
        }
    }
}

impl Serialize for PayRail {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PayRail {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One gateway the agent buys from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Base URL, e.g. `http://127.0.0.1:8402`.
    pub url: String,
    /// The rail to pay it on, or `manual`.
    pub rail: PayRail,
}

/// Where the buyer's key comes from: exactly one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SignerSource {
    /// A key file (Solana keypair JSON), refused unless its mode is 0600.
    KeyFile {
        /// The file.
        path: PathBuf,
    },
    /// An environment variable holding the keypair JSON (`D402_BUYER_KEYPAIR`).
    Env {
        /// The variable's name.
        variable: String,
    },
    /// The OS keychain (Linux: the kernel keyutils session keyring), holding the 64 keypair
    /// bytes under `service` / `user`.
    Keychain {
        /// The keychain service name.
        service: String,
        /// The keychain user name.
        user: String,
    },
    /// An external signer program ([`crate::plugin`]).
    Plugin {
        /// The program.
        program: PathBuf,
        /// The address it gave at `init`: every signature must verify under it.
        address: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Gateways in preference order.
    #[serde(rename = "gateway")]
    pub gateways: Vec<Gateway>,
    /// The signer.
    pub signer: SignerSource,
    /// What may be spent.
    #[serde(default)]
    pub policy: Policy,
    /// What `update` may do with a verified release.
    #[serde(default, rename = "update-policy")]
    pub update_policy: crate::update::UpdatePolicy,
    /// An EVM JSON-RPC endpoint `verify-receipt` looks x402 payments up on.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "evm-rpc-url"
    )]
    pub evm_rpc_url: Option<String>,
    /// Where Solana payments are sent (`--rail solana-direct` and `x402-solana`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solana: Option<SolanaSettings>,
}

/// The Solana cluster and token the agent pays in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SolanaSettings {
    /// JSON-RPC endpoint the transfers are sent through.
    pub rpc_url: String,
    /// CAIP-2 network (`solana:mainnet-beta`, `solana:localnet`, …).
    pub network: String,
    /// The USDC mint.
    pub mint: String,
}

/// Where the configuration and its companions are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The configuration file.
    pub config: PathBuf,
}

impl Paths {
    /// `--config FILE`, else the user's configuration directory.
    pub fn resolve(config: Option<PathBuf>) -> anyhow::Result<Self> {
        let config = match config {
            Some(path) => path,
            None => {
                let base = std::env::var_os("XDG_CONFIG_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                    .context("neither XDG_CONFIG_HOME nor HOME is set; pass --config FILE")?;
                base.join("d402-agent").join("config.toml")
            }
        };
        Ok(Self { config })
    }

    fn dir(&self) -> &Path {
        self.config.parent().unwrap_or(Path::new("."))
    }

    /// The append-only ledger of payments and receipts.
    pub fn ledger(&self) -> PathBuf {
        self.dir().join("ledger.jsonl")
    }

    /// The daemon's bearer token (0600).
    pub fn daemon_token(&self) -> PathBuf {
        self.dir().join("daemon-token")
    }

    /// The last release sequence accepted per component.
    pub fn releases(&self) -> PathBuf {
        self.dir().join("releases.json")
    }

    /// Gateway keys pinned on first use.
    pub fn known_gateways(&self) -> PathBuf {
        self.dir().join("known_gateways.json")
    }
}

impl AgentConfig {
    /// The rail the agent pays on (every configured gateway's: `init` sets one).
    pub fn rail(&self) -> PayRail {
        self.gateways
            .first()
            .map_or(PayRail::Pay(RailId::Simulated), |g| g.rail)
    }

    /// Reads the configuration, saying how to create one when there is none.
    pub fn load(paths: &Paths) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(&paths.config) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "no agent configuration at {}; create one with `d402-agent init --gateway URL --rail simulated --key-file FILE`",
                paths.config.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", paths.config.display()));
            }
        };
        toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid agent configuration",
                paths.config.display()
            )
        })
    }

    /// Writes the configuration (creating its directory).
    pub fn save(&self, paths: &Paths) -> anyhow::Result<()> {
        std::fs::create_dir_all(paths.dir())
            .with_context(|| format!("cannot create {}", paths.dir().display()))?;
        let text = toml::to_string(self).context("cannot encode the configuration")?;
        std::fs::write(&paths.config, text)
            .with_context(|| format!("cannot write {}", paths.config.display()))
    }
}
