//! A gateway on 127.0.0.1 over a temporary state directory with installed capabilities.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use d402_node::gateway::NodeParts;
use d402_node::installed::{create_package, install_package, install_registration};
use d402_node::{Gateway, NodeConfig};
use d402_payment::Purchase;
use d402_payment::x402::{PaymentRequired, PaymentRequirements, decode_header, encode_header};
use d402_payment::{Account, PaymentRail, Rails};
use d402_protocol::{
    Amount, CapabilityManifest, CapabilityRegistration, Keypair, Signed, Timestamp,
};
use d402_rail_simulated::SimulatedRail;
use serde_json::Value;

/// Micro-dollars every test buyer starts with.
pub const FUNDS: u64 = 1_000_000;

/// A running gateway with a funded buyer.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub gateway: Arc<Gateway>,
    pub base: String,
    pub client: reqwest::Client,
    pub buyer: Keypair,
}

/// The capability publisher all tests use.
pub fn publisher() -> Keypair {
    Keypair::from_seed(&[3; 32])
}

/// Installs `manifest` + `bytes` into `state`, packaged by the test publisher.
pub fn install(state: &Path, manifest: &CapabilityManifest, bytes: &[u8]) {
    let package = create_package(manifest, bytes, &publisher(), Timestamp::now()).unwrap();
    install_package(state, &package, manifest, bytes, &[]).unwrap();
}

/// Installs a signed registration of `manifest` made by the test publisher; `edit` adjusts it
/// before signing.
pub fn register(
    state: &Path,
    manifest: &CapabilityManifest,
    edit: impl FnOnce(&mut CapabilityRegistration),
) {
    let mut registration =
        CapabilityRegistration::for_manifest(manifest, publisher().public(), Timestamp::now())
            .unwrap();
    edit(&mut registration);
    let envelope = Signed::sign(registration, &publisher()).unwrap();
    install_registration(state, &envelope, manifest, 10_000, Timestamp::now()).unwrap();
}

/// Installs the hostile test capability (`test.hostile@1`, its behaviour chosen by the
/// input) in `state` with a `deadline_ms` deadline. It imports `browser`, which only a
/// browser permission links, so it gets one (fetching example.com).
pub fn install_hostile(state: &Path, deadline_ms: u64) {
    let bytes = d402_testkit::component("hostile");
    let manifest = d402_testkit::hostile_manifest(
        &bytes,
        deadline_ms,
        Some(d402_testkit::fetch_permission(&["example.com"], 1)),
        "snapshot-deterministic",
    );
    install(state, &manifest, &bytes);
}

/// Installs page-to-markdown (`web.page_to_markdown@1`, the built component) in `state`;
/// its price in atomic units.
pub fn install_page_to_markdown(state: &Path) -> u64 {
    let bytes = d402_testkit::component("page_to_markdown");
    let text = std::fs::read_to_string(d402_testkit::manifest_path("page-to-markdown")).unwrap();
    let mut manifest = CapabilityManifest::from_json(&text).unwrap();
    manifest.runtime.artifact_cid = Some(d402_protocol::ContentId::of_bytes(&bytes));
    install(state, &manifest, &bytes);
    manifest.pricing.price.0.micros()
}

/// The json-transform capability (`util.json_transform@1`, $0.0001).
pub fn json_transform() -> (CapabilityManifest, Vec<u8>) {
    d402_testkit::json_transform()
}

/// Opens a gateway on `state` with `config` adjusted by `configure` and serves it.
pub async fn serve(
    dir: tempfile::TempDir,
    configure: impl FnOnce(&mut NodeConfig),
) -> anyhow::Result<Node> {
    serve_on_networks(dir, configure, &[]).await
}

/// [`serve`] accepting the simulated rail once per network in `networks` (none: the
/// configured rails).
pub async fn serve_on_networks(
    dir: tempfile::TempDir,
    configure: impl FnOnce(&mut NodeConfig),
    networks: &[&str],
) -> anyhow::Result<Node> {
    let mut config = NodeConfig::default();
    config.node.state = dir.path().to_path_buf();
    config.http.port = 0;
    configure(&mut config);
    let gateway = if networks.is_empty() {
        Gateway::open(config).await?
    } else {
        let parts = NodeParts::prepare(&config)?;
        let account = Account::from(parts.key.public());
        let rails = networks
            .iter()
            .map(|network| Arc::new(SimulatedRail::new(*network, account)) as Arc<dyn PaymentRail>)
            .collect();
        Gateway::open_with_rails(config, parts, None, Rails::new(rails)?).await?
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(d402_node::http::serve_on(listener, gateway.clone()));
    let buyer = Keypair::from_seed(&[7; 32]);
    gateway
        .store()
        .credit(&buyer.public().to_string(), Amount::from_micros(FUNDS))
        .unwrap();
    Ok(Node {
        dir,
        gateway,
        base,
        client: d402_client::http_client(),
        buyer,
    })
}

/// A gateway serving json-transform with `configure` applied.
pub async fn start(configure: impl FnOnce(&mut NodeConfig)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    serve(dir, configure).await.unwrap()
}

impl Node {
    pub fn balance(&self, account: &str) -> u64 {
        self.gateway.store().balance(account).unwrap().micros()
    }

    pub fn buyer_balance(&self) -> u64 {
        self.balance(&self.buyer.public().to_string())
    }

    pub async fn post(&self, body: &Value, payment: Option<&str>) -> reqwest::Response {
        let mut request = self.client.post(format!("{}/tasks", self.base)).json(body);
        if let Some(payment) = payment {
            request = request.header("payment-signature", payment);
        }
        request.send().await.unwrap()
    }

    /// POSTs `body` with the payment of the v2 `PAYMENT-SIGNATURE` header `v2` re-sent as a
    /// v1 `X-PAYMENT` header (`{x402Version: 1, scheme, network, payload}`).
    pub async fn post_v1(&self, body: &Value, v2: &str) -> reqwest::Response {
        let v2: d402_payment::x402::PaymentPayload = decode_header(v2).unwrap();
        let v1 = encode_header(&serde_json::json!({
            "x402Version": 1,
            "scheme": v2.accepted.scheme,
            "network": v2.accepted.network,
            "payload": v2.payload
        }));
        self.client
            .post(format!("{}/tasks", self.base))
            .header(d402_payment::x402::headers::X_PAYMENT, &v1)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn challenge(&self, body: &Value) -> PaymentRequired {
        let response = self.post(body, None).await;
        assert_eq!(response.status(), 402);
        let header = response.headers()["payment-required"]
            .to_str()
            .unwrap()
            .to_string();
        let decoded: PaymentRequired = decode_header(&header).unwrap();
        let in_body: PaymentRequired = response.json().await.unwrap();
        assert_eq!(decoded, in_body, "header and body carry the same challenge");
        decoded
    }

    pub async fn pay(&self, body: &Value) -> String {
        let challenge = self.challenge(body).await;
        pay_simulated(&challenge.accepts[0], body, &self.buyer)
    }

    /// Pays for `body` and returns the settled task document.
    pub async fn run(&self, body: &Value) -> Value {
        let payment = self.pay(body).await;
        let response = self.post(body, Some(&payment)).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// A `PAYMENT-SIGNATURE` header paying `requirements` for `body` with `key`.
pub fn pay_simulated(requirements: &PaymentRequirements, body: &Value, key: &Keypair) -> String {
    let purchase = Purchase {
        resource: None,
        body,
        now: Timestamp::now(),
    };
    encode_header(&d402_rail_simulated::sign_payment(requirements, &purchase, key).unwrap())
}

/// Sum of a settlement's payout amounts, in micro-dollars.
pub fn paid_out(task: &Value) -> u64 {
    task["settlement"]["payouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["amount"].as_f64().unwrap() * 1e6).round() as u64)
        .sum()
}

/// Runs the Node script `interop/<script>` (an official third-party client) on `url` and
/// `body` with the environment `env`, off the runtime's threads (the gateway it calls runs
/// on them); the JSON it prints. Its packages must be installed (`scripts/test.sh` does).
pub async fn official_client(
    script: &str,
    url: &str,
    body: &Value,
    env: &[(&str, String)],
) -> Value {
    let path = d402_testkit::repo_path(&format!("interop/{script}"));
    let modules = path.parent().unwrap().join("node_modules");
    assert!(
        modules.exists(),
        "the official clients are not installed: run scripts/test.sh, or npm ci in {}",
        modules.parent().unwrap().display()
    );
    let mut command = std::process::Command::new("node");
    command.arg(path).arg(url).arg(body.to_string());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("node runs"))
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
