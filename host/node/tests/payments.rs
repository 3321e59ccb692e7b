//! Payments through the rail interface over real HTTP on 127.0.0.1: several rails in one
//! challenge, idempotent retries (after expiry, by `payment-identifier`), the v1 header.

mod common;

use common::{FUNDS, install, json_transform, pay_simulated, serve_on_networks, start};
use d402_payment::x402::{
    PaymentRequired, decode_header, encode_header, headers, payment_identifier,
};
use d402_rail_simulated::SimulatedPayment;
use serde_json::{Value, json};

fn body(key: &str) -> Value {
    json!({"input": {"value": {"k": key}, "select": ["k"]}})
}

#[tokio::test]
async fn a_gateway_with_two_rails_offers_both_and_settles_on_each() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    let networks = ["d402:simulated", "d402:simulated-eu"];
    let node = serve_on_networks(dir, |_| {}, &networks).await.unwrap();
    let challenge: PaymentRequired = node.challenge(&body("a")).await;
    let offered: Vec<&str> = challenge
        .accepts
        .iter()
        .map(|r| r.network.as_str())
        .collect();
    assert_eq!(offered, networks, "one offer per rail, in preference order");
    assert!(
        challenge
            .extensions
            .contains_key(payment_identifier::PAYMENT_IDENTIFIER),
        "the challenge declares the payment-identifier extension"
    );
    for (i, requirements) in challenge.accepts.iter().enumerate() {
        let request = body(&format!("rail {i}"));
        let payment = pay_simulated(requirements, &request, &node.buyer);
        let paid = node.post(&request, Some(&payment)).await;
        assert_eq!(paid.status(), 200);
        let settled: Value =
            decode_header(paid.headers()[headers::PAYMENT_RESPONSE].to_str().unwrap()).unwrap();
        assert_eq!(
            settled["network"], requirements.network,
            "settled on the rail it named"
        );
        let task: Value = paid.json().await.unwrap();
        assert_eq!(task["status"], "accepted", "{task}");
        assert_eq!(task["settlement"]["payouts"][0]["rail"], "simulated");
        assert_eq!(node.buyer_balance(), FUNDS - 100 * (i as u64 + 1));
    }
    // A payment naming a network the gateway does not accept is refused, charging nothing.
    let mut elsewhere = challenge.accepts[0].clone();
    elsewhere.network = "d402:simulated-mars".into();
    let request = body("mars");
    let refused = node
        .post(
            &request,
            Some(&pay_simulated(&elsewhere, &request, &node.buyer)),
        )
        .await;
    assert_eq!(refused.status(), 402);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unsupported_network", "{error}");
    assert_eq!(node.buyer_balance(), FUNDS - 200);
    // Discovery lists both rails.
    let discovery = node.get("/.well-known/d402-gateway.json").await.1;
    let listed: Vec<&str> = discovery["payment"]["rails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["network"].as_str().unwrap())
        .collect();
    assert_eq!(listed, networks);
}

#[tokio::test]
async fn a_retry_after_the_authorization_expired_finds_its_task() {
    let node = start(|_| {}).await;
    let request = body("late");
    let mut requirements = node.challenge(&request).await.accepts[0].clone();
    requirements.max_timeout_seconds = 1;
    let payment = pay_simulated(&requirements, &request, &node.buyer);
    let paid = node.post(&request, Some(&payment)).await;
    assert_eq!(paid.status(), 200);
    let task: Value = paid.json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let retry = node.post(&request, Some(&payment)).await;
    assert_eq!(
        retry.status(),
        200,
        "the retry finds its task, not payment_expired"
    );
    assert_eq!(retry.headers()["x-d402-idempotent-replay"], "true");
    let again: Value = retry.json().await.unwrap();
    assert_eq!(again["taskId"], task["taskId"]);
    assert_eq!(node.buyer_balance(), FUNDS - 100, "charged once");
    // A fresh payment that has expired is still refused.
    let request = body("fresh but late");
    let stale = pay_simulated(&requirements, &request, &node.buyer);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let refused = node.post(&request, Some(&stale)).await;
    assert_eq!(refused.status(), 402);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "payment_expired"
    );
}

/// Adds a `payment-identifier` to a simulated payment header (extensions are not signed).
fn with_identifier(header: &str, id: &str) -> String {
    let mut payment: SimulatedPayment = decode_header(header).unwrap();
    payment_identifier::append(&mut payment.extensions, id);
    encode_header(&payment)
}

#[tokio::test]
async fn a_payment_identifier_names_one_task_and_one_payment() {
    let node = start(|_| {}).await;
    let request = body("idempotent");
    let id = "pay_0123456789abcdef0123";
    let first = with_identifier(&node.pay(&request).await, id);
    let paid = node.post(&request, Some(&first)).await;
    assert_eq!(paid.status(), 200);
    let task: Value = paid.json().await.unwrap();
    let replay = node.post(&request, Some(&first)).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(
        replay.json::<Value>().await.unwrap()["taskId"],
        task["taskId"]
    );
    // The same identifier on another payment (a new signature for the same request): 409.
    let second = with_identifier(&node.pay(&request).await, id);
    let conflict = node.post(&request, Some(&second)).await;
    assert_eq!(conflict.status(), 409);
    assert_eq!(
        conflict.json::<Value>().await.unwrap()["error"]["code"],
        "payment_identifier_reused"
    );
    // A malformed identifier is refused before anything else.
    let bad = with_identifier(&node.pay(&request).await, "short");
    let malformed = node.post(&request, Some(&bad)).await;
    assert_eq!(malformed.status(), 400);
    assert_eq!(node.buyer_balance(), FUNDS - 100, "one charge in all");
}

#[tokio::test]
async fn the_v1_x_payment_header_is_accepted_and_answered_in_kind() {
    let node = start(|_| {}).await;
    let request = body("v1");
    let paid = node.post_v1(&request, &node.pay(&request).await).await;
    assert_eq!(paid.status(), 200);
    assert!(paid.headers().contains_key(headers::X_PAYMENT_RESPONSE));
    assert!(!paid.headers().contains_key(headers::PAYMENT_RESPONSE));
    let settled: Value = decode_header(
        paid.headers()[headers::X_PAYMENT_RESPONSE]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(settled["success"], true);
    assert_eq!(node.buyer_balance(), FUNDS - 100);
}

#[tokio::test]
async fn a_forged_copy_of_an_accepted_payment_gets_409_not_the_task() {
    let node = start(|_| {}).await;
    let request = body("forged");
    let header = node.pay(&request).await;
    let paid = node.post(&request, Some(&header)).await;
    assert_eq!(paid.status(), 200);
    // The same payer, nonce and request, with a signature the payer never made.
    let mut forged: SimulatedPayment = decode_header(&header).unwrap();
    let mallory = d402_protocol::Keypair::from_seed(&[66; 32]);
    forged.payload.signature =
        d402_protocol::Signed::sign(forged.payload.payload.clone(), &mallory)
            .unwrap()
            .signature;
    let response = node.post(&request, Some(&encode_header(&forged))).await;
    assert_eq!(response.status(), 409);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(
        refused["error"]["code"], "payment_already_used",
        "{refused}"
    );
    assert!(
        refused.get("result").is_none(),
        "no task document: {refused}"
    );
    assert_eq!(node.buyer_balance(), FUNDS - 100, "charged once");
}
