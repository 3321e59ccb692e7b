//! Reading the gateways: their capabilities, filtered.

use anyhow::Context;
use serde_json::{Value, json};

use crate::config::{AgentConfig, Paths};
use crate::pins::KnownGateways;

/// Which capabilities to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// With this tag.
    pub tag: Option<String>,
    /// In this namespace.
    pub namespace: Option<String>,
    /// This capability ID.
    pub id: Option<String>,
    /// This manifest CID.
    pub cid: Option<String>,
}

/// The capabilities of every configured gateway that match `filter`, each with its
/// `gateway`.
pub async fn capabilities(config: &AgentConfig, filter: &Filter) -> anyhow::Result<Value> {
    let mut listed = Vec::new();
    for gateway in &config.gateways {
        let mut url = format!("{}/capabilities?", gateway.url);
        for (key, value) in [("tag", &filter.tag), ("namespace", &filter.namespace)] {
            if let Some(value) = value {
                url.push_str(&format!("{key}={value}&"));
            }
        }
        let answer = get_json(&url).await?;
        for capability in answer["capabilities"].as_array().into_iter().flatten() {
            let wanted = filter
                .id
                .as_ref()
                .is_none_or(|id| capability["capabilityId"] == *id)
                && filter
                    .cid
                    .as_ref()
                    .is_none_or(|cid| capability["manifestCid"] == *cid);
            if wanted {
                let mut entry = capability.clone();
                entry["gateway"] = json!(gateway.url);
                listed.push(entry);
            }
        }
    }
    Ok(Value::Array(listed))
}

/// Each configured gateway's discovery document and health: its key (pinned on first use;
/// a changed key is an error unless `accept_new_key`), latency, rails and default price.
/// A gateway that does not answer is listed with its error.
pub async fn discover(
    paths: &Paths,
    config: &AgentConfig,
    accept_new_key: bool,
) -> anyhow::Result<Vec<Value>> {
    let mut pins = KnownGateways::load(paths.known_gateways())?;
    let mut found = Vec::new();
    for gateway in &config.gateways {
        let started = std::time::Instant::now();
        let client = d402_client::Client::new(&gateway.url)?;
        let discovery = match client.discover().await {
            Ok(discovery) => discovery,
            Err(e) => {
                found.push(json!({"gateway": gateway.url, "error": format!("{e}")}));
                continue;
            }
        };
        let latency_ms = started.elapsed().as_millis();
        let key = discovery.gateway_key()?;
        let pin = pins.check(&gateway.url, &key, accept_new_key)?;
        let health = get_json(&format!("{}/health", gateway.url)).await?;
        found.push(json!({
            "gateway": gateway.url,
            "key": key.to_string(),
            "pinned": format!("{pin:?}").to_lowercase(),
            "latencyMs": latency_ms,
            "rails": health["policy"]["rails"],
            "price": health["policy"]["price"],
            "capability": health["policy"]["capabilityId"],
        }));
    }
    Ok(found)
}

/// `POST url` with a JSON body, the answer as JSON (a JSON-RPC call).
pub async fn post_json(url: &str, body: &Value) -> anyhow::Result<Value> {
    json_answer(url, d402_client::http_client().post(url).json(body)).await
}

/// `GET url` as JSON, refusing an error status.
pub async fn get_json(url: &str) -> anyhow::Result<Value> {
    json_answer(url, d402_client::http_client().get(url)).await
}

/// Sends `request` to `url` and reads its JSON answer, refusing an error status.
async fn json_answer(url: &str, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {text}");
    serde_json::from_str(&text).with_context(|| format!("{url} did not answer JSON"))
}
