//! `d402-agent mcp`: the agent as a Model Context Protocol server on stdio (rmcp), so an AI
//! agent can buy d402 work within the configured policy. Tools: `discover`,
//! `search_capabilities`, `quote` (signs nothing), `request`, `get_receipt`, `ledger`. No
//! tool changes the policy or accepts a changed gateway key.

use std::sync::Arc;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{ServiceExt, schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{AgentConfig, Paths};
use crate::request::{self, Bought};

/// The MCP server.
#[derive(Clone)]
pub struct AgentTools {
    paths: Arc<Paths>,
}

/// What to buy or quote.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TaskParams {
    /// Capability ID, e.g. `util.json_transform@1` (default: the gateway's default).
    pub capability_id: Option<String>,
    /// The task input (JSON), as the capability's input schema describes it.
    pub input: Option<Value>,
    /// A page URL, for web.page_to_markdown@1.
    pub url: Option<String>,
    /// Most to pay for this task, dollars (only lowers the configured policy).
    pub max_amount: Option<String>,
}

/// A capability search.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct SearchParams {
    /// With this tag.
    pub tag: Option<String>,
    /// In this namespace.
    pub namespace: Option<String>,
    /// This capability ID.
    pub id: Option<String>,
    /// This manifest CID.
    pub cid: Option<String>,
}

/// A task, by id.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TaskIdParams {
    /// The task ID (`task:…`).
    pub task_id: String,
}

/// How many ledger entries.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LedgerParams {
    /// At most this many, newest last (default 20).
    pub limit: Option<usize>,
}

/// A tool's answer: a JSON object (MCP structured content is always one), or an error the
/// calling agent can read.
fn answer(result: anyhow::Result<Value>) -> CallToolResult {
    match result {
        Ok(value) => CallToolResult::structured(value),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!("{e:#}"))]),
    }
}

#[tool_router(server_handler)]
impl AgentTools {
    /// The server over the agent whose configuration `paths` names.
    pub fn new(paths: Paths) -> Self {
        Self {
            paths: Arc::new(paths),
        }
    }

    fn config(&self) -> anyhow::Result<AgentConfig> {
        AgentConfig::load(&self.paths)
    }

    #[tool(
        description = "List the configured d402 gateways: key (pinned on first use), latency, rails, default price."
    )]
    async fn discover(&self) -> CallToolResult {
        answer(
            async {
                let gateways = crate::search::discover(&self.paths, &self.config()?, false).await?;
                Ok(json!({ "gateways": gateways }))
            }
            .await,
        )
    }

    #[tool(
        description = "Search the gateways' capabilities by tag, namespace, capability ID or manifest CID."
    )]
    async fn search_capabilities(
        &self,
        Parameters(search): Parameters<SearchParams>,
    ) -> CallToolResult {
        let filter = crate::search::Filter {
            tag: search.tag,
            namespace: search.namespace,
            id: search.id,
            cid: search.cid,
        };
        answer(
            async {
                let capabilities = crate::search::capabilities(&self.config()?, &filter).await?;
                Ok(json!({ "capabilities": capabilities }))
            }
            .await,
        )
    }

    #[tool(
        description = "What each gateway would charge for a task and whether the spend policy allows it. Signs and pays nothing."
    )]
    async fn quote(&self, Parameters(task): Parameters<TaskParams>) -> CallToolResult {
        answer(
            async {
                let config = self.config()?;
                let body = request::task_body(task.url, task.capability_id, task.input, false)?;
                let payer = crate::signer::payer(&config)?;
                let policy = config
                    .policy
                    .clone()
                    .tightened(max_micros(task.max_amount.as_deref())?);
                let quotes = request::quote(
                    &self.paths,
                    &config.gateways,
                    &body,
                    &policy,
                    payer.as_ref(),
                )
                .await?;
                Ok(json!({ "quotes": quotes }))
            }
            .await,
        )
    }

    #[tool(
        description = "Buy one task within the spend policy: pays, retries without paying twice, returns the result and the signed receipts."
    )]
    async fn request(&self, Parameters(task): Parameters<TaskParams>) -> CallToolResult {
        answer(
            async {
                let config = self.config()?;
                let body = request::task_body(task.url, task.capability_id, task.input, false)?;
                let payer = crate::signer::payer(&config)?;
                let max = max_micros(task.max_amount.as_deref())?;
                let order = request::Order::new(&config, body, None, max);
                match request::buy(&self.paths, order, Some(payer.as_ref())).await? {
                    Bought::Task(document) => Ok(document),
                    Bought::Challenge(challenge) => Ok(challenge),
                }
            }
            .await,
        )
    }

    #[tool(
        description = "A bought task's cached receipt, verified again: signatures against the pinned gateway key, the request, the amounts."
    )]
    async fn get_receipt(&self, Parameters(task): Parameters<TaskIdParams>) -> CallToolResult {
        answer(
            async {
                let checked = crate::verify::verify(&self.paths, &task.task_id).await?;
                let receipt = crate::ledger::Ledger::new(self.paths.ledger())
                    .entries()?
                    .into_iter()
                    .find_map(|e| match e {
                        crate::ledger::Entry::Settled {
                            task_id, receipt, ..
                        } if task_id == task.task_id => Some(receipt),
                        _ => None,
                    });
                Ok(json!({"taskId": task.task_id, "verified": checked, "receipt": receipt}))
            }
            .await,
        )
    }

    #[tool(
        description = "The latest entries of the agent's ledger: reservations, payments, settlements, releases."
    )]
    async fn ledger(&self, Parameters(query): Parameters<LedgerParams>) -> CallToolResult {
        answer((|| {
            let entries = crate::ledger::Ledger::new(self.paths.ledger()).entries()?;
            let start = entries.len().saturating_sub(query.limit.unwrap_or(20));
            Ok(json!({ "entries": &entries[start..] }))
        })())
    }
}

/// `max_amount` dollars as atomic units.
fn max_micros(max_amount: Option<&str>) -> anyhow::Result<Option<u64>> {
    Ok(max_amount
        .map(d402_protocol::Price::parse_dollars)
        .transpose()?
        .map(|p| p.0.micros()))
}

/// Serves the tools on stdin/stdout until the client goes away.
pub async fn serve(paths: Paths) -> anyhow::Result<()> {
    AgentConfig::load(&paths)?;
    let service = AgentTools::new(paths)
        .serve(rmcp::transport::stdio())
        .await?;
    service.waiting().await?;
    Ok(())
}
