//! Test support: locating the capability components built by scripts/build-capabilities.sh
//! and making manifests for them.

use std::path::PathBuf;

use d402_protocol::{CapabilityManifest, ContentId};
use serde_json::{Value, json};

/// The directory scripts/build-capabilities.sh writes components to.
pub fn components_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("wasm32-wasip2/wasm")
}

/// Path of a capability's manifest in the source tree, e.g. `manifest_path("json-transform")`.
pub fn manifest_path(capability_dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../capabilities")
        .join(capability_dir)
        .join("manifest.json")
}

/// Path of a file in the source tree, relative to the repository root.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// Bytes of a built capability component (`hostile`, `json_transform`).
pub fn component(name: &str) -> Vec<u8> {
    let path = components_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Build the components first: scripts/build-capabilities.sh",
            path.display()
        )
    })
}

/// A manifest for the hostile test component with the given limits and browser permission.
pub fn hostile_manifest(
    bytes: &[u8],
    deadline_ms: u64,
    browser: Option<Value>,
    determinism: &str,
) -> CapabilityManifest {
    let mut manifest = json!({
        "manifestVersion": 1,
        "id": "test.hostile",
        "version": "1",
        "description": "misbehaves on purpose",
        "inputSchema": {"type": "object", "required": ["behaviour"]},
        "outputSchema": {"type": "object"},
        "runtime": {
            "type": "wasm-component",
            "world": "d402:capability/web@0.1.0",
            "artifactCid": ContentId::of_bytes(bytes).to_string()
        },
        "determinism": determinism,
        "validator": {"model": "canonicalized", "method": "jcs"},
        "pricing": {"unit": "task", "price": "$0.001"},
        "executionModes": ["single"],
        "limits": {"deadlineMs": deadline_ms, "memoryBytes": 33554432, "outputBytes": 65536}
    });
    if let Some(browser) = browser {
        manifest["permissions"] = json!({"browser": browser});
    }
    serde_json::from_value::<CapabilityManifest>(manifest).expect("valid test manifest")
}

/// A browser permission allowing fetches from `hosts`.
pub fn fetch_permission(hosts: &[&str], max_requests: u32) -> Value {
    json!({
        "fetch": true, "render": false, "allowedHosts": hosts,
        "maxResponseBytes": 1048576, "maxRequests": max_requests
    })
}

/// The json-transform capability's manifest, pinned to its built component.
pub fn json_transform() -> (CapabilityManifest, Vec<u8>) {
    let bytes = component("json_transform");
    let text = std::fs::read_to_string(manifest_path("json-transform")).unwrap();
    let mut manifest = CapabilityManifest::from_json(&text).unwrap();
    manifest.runtime.artifact_cid = Some(ContentId::of_bytes(&bytes));
    (manifest, bytes)
}

/// Serves `body` as an HTML page on 127.0.0.1 (a fresh port) for every request; returns the
/// page's URL (`http://127.0.0.1:<port>/story`).
pub fn serve_html(body: &'static str) -> String {
    serve_pages(move |_| (std::time::Duration::ZERO, body.to_string()))
}

/// Serves HTML pages on 127.0.0.1 (a fresh port): the `n`-th request (from 0) is answered
/// with `respond(n)`'s body after its delay, each connection on its own thread. Returns the
/// page's URL (`http://127.0.0.1:<port>/story`).
pub fn serve_pages(
    respond: impl Fn(usize) -> (std::time::Duration, String) + Send + Sync + 'static,
) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let respond = respond.clone();
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let (delay, body) = respond(n);
                std::thread::sleep(delay);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    format!("http://{address}/story")
}

/// The accounts paid for accepted results in a task or receipt document's
/// `settlement.payouts`, in payout order.
pub fn worker_payees(document: &serde_json::Value) -> Vec<String> {
    document["settlement"]["payouts"]
        .as_array()
        .expect("a settled document has payouts")
        .iter()
        .filter(|p| p["reason"] == "accepted-result")
        .map(|p| {
            p["account"]
                .as_str()
                .expect("a payout names its account")
                .to_string()
        })
        .collect()
}

/// What a starting `d402 devnet` printed on `stdout` up to its `buyer: …` line: the lines
/// before it, and the buyer command. Panics if the devnet exits first.
pub fn devnet_banner(stdout: &mut impl std::io::BufRead) -> (Vec<String>, String) {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "devnet exited early"
        );
        if let Some(command) = line.strip_prefix("buyer: ") {
            return (lines, command.trim().to_string());
        }
        lines.push(line.trim().to_string());
    }
}

/// The local chain's address among a devnet's printed `lines` (`local chain URL …`).
pub fn devnet_chain_url(lines: &[String]) -> &str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("local chain "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the chain's address is printed")
}
