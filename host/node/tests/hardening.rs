//! What a hostile or careless client cannot do to a gateway (over real HTTP on 127.0.0.1):
//! leave a paid sync task unsettled by disconnecting, hold a connection open with half-sent
//! headers or a slow body, make the gateway read a body it already knows is too large, get a
//! non-JSON error, or steer the OpenAPI document's servers with its Host header.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{FUNDS, serve, start};
use serde_json::{Value, json};

/// Sends `request` raw and returns what the server answered before closing or `wait`.
fn raw_exchange(base: &str, request: &[u8], wait: Duration) -> (String, Duration) {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_client_that_disconnects_from_a_paid_sync_task_does_not_strand_it() {
    let dir = tempfile::tempdir().unwrap();
    common::install_hostile(dir.path(), 3_000);
    let node = serve(dir, |c| c.node.capability = "test.hostile@1".into())
        .await
        .unwrap();
    let request = json!({"input": {"behaviour": "loop"}});
    let payment = node.pay(&request).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let sent = impatient
        .post(format!("{}/tasks", node.base))
        .header("payment-signature", &payment)
        .json(&request)
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up after one second");
    assert_eq!(node.buyer_balance(), FUNDS - 1_000, "the payment was taken");
    // The task belongs to the node: it ends by its 3 s deadline and the buyer is refunded.
    let started = Instant::now();
    while !node.gateway.store().running().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the task is still running long after its deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(node.buyer_balance(), FUNDS, "refunded by its deadline");
}

#[tokio::test]
async fn half_sent_headers_and_slow_bodies_are_cut_off() {
    let node = start(|c| {
        c.http.header_timeout_seconds = 1;
        c.http.body_timeout_seconds = 1;
    })
    .await;
    let base = node.base.clone();
    let (headers_cut, slow_body) = tokio::task::spawn_blocking(move || {
        let headers = raw_exchange(
            &base,
            b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: applic",
            Duration::from_secs(10),
        );
        let body = raw_exchange(
            &base,
            b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"input\":",
            Duration::from_secs(10),
        );
        (headers, body)
    })
    .await
    .unwrap();
    assert!(
        headers_cut.1 < Duration::from_secs(5),
        "half-sent headers held for {:?}",
        headers_cut.1
    );
    assert!(
        slow_body.1 < Duration::from_secs(5),
        "slow body held for {:?}",
        slow_body.1
    );
    assert!(slow_body.0.starts_with("HTTP/1.1 408"), "{}", slow_body.0);
    assert!(slow_body.0.contains("body_timeout"), "{}", slow_body.0);
}

#[tokio::test]
async fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let node = start(|_| {}).await;
    let base = node.base.clone();
    let (answer, took) = tokio::task::spawn_blocking(move || {
        raw_exchange(
            &base,
            b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
            Duration::from_secs(10),
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert!(
        took < Duration::from_secs(5),
        "answered only after {took:?}"
    );
}

#[tokio::test]
async fn every_error_is_the_json_error_shape() {
    let node = start(|_| {}).await;
    let cases = [
        (reqwest::Method::DELETE, "/tasks", 405, "method_not_allowed"),
        (reqwest::Method::POST, "/health", 405, "method_not_allowed"),
        (
            reqwest::Method::GET,
            "/capabilities?q=a&q=b",
            400,
            "malformed_query",
        ),
        (reqwest::Method::GET, "/tasks/%FF", 400, "malformed_path"),
        (
            reqwest::Method::GET,
            "/tasks/%FF/receipt",
            400,
            "malformed_path",
        ),
        (reqwest::Method::GET, "/nowhere", 404, "not_found"),
    ];
    for (method, path, status, code) in cases {
        let response = node
            .client
            .request(method.clone(), format!("{}{path}", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        let body: Value = response.json().await.unwrap_or_else(|e| {
            panic!("{method} {path}: not JSON: {e}");
        });
        assert_eq!(body["error"]["code"], code, "{method} {path}: {body}");
        assert!(
            body["error"]["message"].is_string(),
            "{method} {path}: {body}"
        );
    }
}

#[tokio::test]
async fn openapi_servers_are_the_gateways_own_url_whatever_the_host_header() {
    let node = start(|_| {}).await;
    let doc: Value = node
        .client
        .get(format!("{}/openapi.json", node.base))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["servers"][0]["url"], node.base, "{}", doc["servers"]);
}

#[tokio::test]
async fn the_store_is_readable_by_its_owner_only() {
    let node = start(|_| {}).await;
    let mode = std::fs::metadata(node.dir.path().join("node.redb"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "node.redb mode {:o}", mode & 0o777);
}
