//! Reading the gateways: their capabilities, filtered.

use anyhow::Context;
use serde_json::{Value, json};

use crate::config::AgentConfig;

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

/// `GET url` as JSON, refusing an error status.
pub async fn get_json(url: &str) -> anyhow::Result<Value> {
    let response = d402_client::http_client()
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {text}");
    serde_json::from_str(&text).with_context(|| format!("{url} did not answer JSON"))
}
