//! Node configuration: embedded defaults ([`NodeConfig::default`]), command-line flags and
//! the spec's environment variables ([`NodeArgs`]).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use d402_protocol::{Amount, DEFAULT_MAX_CREATOR_COMMISSION_BPS, ExecutionMode, Price};

/// A role a node process can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Serves the HTTP API and the 402 flow.
    Gateway,
    /// Runs capabilities.
    Worker,
    /// Validates result claims.
    Validator,
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
    /// Require a capability registration (accepted, not enforced yet).
    pub require_capability_registration: bool,
    /// Require a signed capability registration (accepted, not enforced yet).
    pub require_signed_capability_registration: bool,
    /// Require a namespace proof (accepted, not enforced yet).
    pub require_capability_namespace_proof: bool,
    /// Payment rail (only `simulated` today).
    pub rail: String,
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
    /// DEVELOPMENT ONLY: let page fetches reach private and loopback addresses.
    pub allow_private_addresses: bool,
    /// Size of the node's local worker pool.
    pub local_workers: u32,
    /// Execution mode for capabilities whose manifest supports it.
    pub mode: ExecutionMode,
    /// Workers leased per task (race and quorum).
    pub fanout: u32,
    /// Agreeing workers required (quorum).
    pub quorum: u32,
    /// The validator's fee, in basis points of the price.
    pub validator_fee_bps: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            state: PathBuf::from("state/node"),
            http_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: 8402,
            public_url: None,
            roles: vec![Role::Gateway, Role::Worker, Role::Validator],
            capability: "web.page_to_markdown@1".into(),
            accepted_manifest_cids: Vec::new(),
            trusted_capability_namespaces: Vec::new(),
            require_capability_registration: false,
            require_signed_capability_registration: false,
            require_capability_namespace_proof: false,
            rail: "simulated".into(),
            price: None,
            max_creator_commission_bps: DEFAULT_MAX_CREATOR_COMMISSION_BPS,
            safety_max_task_budget: None,
            payment_timeout_seconds: 300,
            max_body_bytes: 64 * 1024,
            allow_private_addresses: false,
            local_workers: 3,
            mode: ExecutionMode::Single,
            fanout: 1,
            quorum: 1,
            validator_fee_bps: 0,
        }
    }
}

/// `d402 node` flags. Unset flags keep the embedded defaults.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Node state directory.
    #[arg(long, env = "D402_STATE", default_value = "state/node")]
    pub state: PathBuf,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1")]
    pub http_host: IpAddr,
    /// HTTP port (0: any free port; the chosen address is printed).
    #[arg(long, default_value_t = 8402)]
    pub http_port: u16,
    /// Base URL announced in discovery (default http://HOST:PORT).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Roles, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "gateway,worker,validator")]
    pub roles: Vec<Role>,
    /// Capability served (ID or manifest CID), when --accepted-manifest-cid is not given.
    #[arg(long, default_value = "web.page_to_markdown@1")]
    pub capability: String,
    /// Accepted manifest CID (repeatable); the first is served.
    #[arg(long = "accepted-manifest-cid")]
    pub accepted_manifest_cids: Vec<String>,
    /// Trusted capability namespace (repeatable; empty: any).
    #[arg(long = "trusted-capability-namespace")]
    pub trusted_capability_namespaces: Vec<String>,
    /// Require a capability registration (accepted; not enforced yet).
    #[arg(long)]
    pub require_capability_registration: bool,
    /// Require a signed capability registration (accepted; not enforced yet).
    #[arg(long)]
    pub require_signed_capability_registration: bool,
    /// Require a namespace proof (accepted; not enforced yet).
    #[arg(long)]
    pub require_capability_namespace_proof: bool,
    /// Payment rail.
    #[arg(long, default_value = "simulated")]
    pub rail: String,
    /// Price override, e.g. "$0.01" (default: the manifest's price).
    #[arg(long)]
    pub price: Option<Price>,
    /// Cap on creator commissions, basis points.
    #[arg(long, env = "D402_MAX_CREATOR_COMMISSION_BPS", default_value_t = DEFAULT_MAX_CREATOR_COMMISSION_BPS)]
    pub max_creator_commission_bps: u32,
    /// Per-task budget cap, e.g. "$0.05": refuse to serve a capability priced above it.
    #[arg(long, env = "D402_SAFETY_MAX_TASK_BUDGET")]
    pub safety_max_task_budget: Option<Price>,
    /// Longest payment authorization lifetime, seconds.
    #[arg(long, default_value_t = 300)]
    pub payment_timeout_seconds: u64,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// DEVELOPMENT ONLY: let page fetches reach private/loopback addresses.
    #[arg(long)]
    pub allow_private_addresses: bool,
}

impl NodeArgs {
    /// The configuration these flags describe.
    pub fn into_config(self) -> NodeConfig {
        NodeConfig {
            state: self.state,
            http_host: self.http_host,
            http_port: self.http_port,
            public_url: self.public_url,
            roles: self.roles,
            capability: self.capability,
            accepted_manifest_cids: self.accepted_manifest_cids,
            trusted_capability_namespaces: self.trusted_capability_namespaces,
            require_capability_registration: self.require_capability_registration,
            require_signed_capability_registration: self.require_signed_capability_registration,
            require_capability_namespace_proof: self.require_capability_namespace_proof,
            rail: self.rail,
            price: self.price,
            max_creator_commission_bps: self.max_creator_commission_bps,
            safety_max_task_budget: self.safety_max_task_budget.map(|p| p.0),
            payment_timeout_seconds: self.payment_timeout_seconds,
            max_body_bytes: self.max_body_bytes,
            allow_private_addresses: self.allow_private_addresses,
            ..NodeConfig::default()
        }
    }
}
