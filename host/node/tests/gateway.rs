//! End-to-end tests of the gateway over real HTTP on 127.0.0.1, serving the json-transform
//! component (build it first: scripts/build-capabilities.sh).

mod common;

use common::{FUNDS, Node, install, paid_out, pay_simulated, serve, start};
use d402_payment::x402::{PaymentRequired, decode_header, encode_header};
use d402_protocol::{Keypair, Signed, Timestamp};
use d402_rail_simulated::{SimulatedAuthorization, SimulatedPayment};
use serde_json::{Value, json};

async fn start_default() -> Node {
    start(|_| {}).await
}

fn task_body(select: &str) -> Value {
    json!({"input": {"value": {"a": {"b": 2}}, "select": [select]}})
}

/// Re-signs a payment after `edit` changes its authorization (or leaves the old signature
/// when `resign` is false: a forgery).
fn tamper(
    header: &str,
    key: &Keypair,
    resign: bool,
    edit: impl FnOnce(&mut SimulatedAuthorization),
) -> String {
    let mut payload: SimulatedPayment = decode_header(header).unwrap();
    let mut auth = payload.payload.payload.clone();
    edit(&mut auth);
    if resign {
        payload.payload = Signed::sign(auth, key).unwrap();
    } else {
        payload.payload.payload = auth;
    }
    encode_header(&payload)
}

#[tokio::test]
async fn challenge_pay_replay_and_reuse() {
    let h = start_default().await;
    let body = task_body("a.b");
    let challenge = h.challenge(&body).await;
    assert_eq!(challenge.x402_version, 2);
    assert_eq!(
        challenge.resource.url,
        format!("{}/tasks", h.base),
        "the bound address, not port 0"
    );
    let req = &challenge.accepts[0];
    assert_eq!(
        (
            req.scheme.as_str(),
            req.network.as_str(),
            req.amount.as_str()
        ),
        ("exact", "d402:simulated", "100")
    );
    assert_eq!(req.pay_to, h.gateway.account());

    let payment = pay_simulated(req, &body, &h.buyer);
    let paid = h.post(&body, Some(&payment)).await;
    assert_eq!(paid.status(), 200);
    let response: Value =
        decode_header(paid.headers()["payment-response"].to_str().unwrap()).unwrap();
    assert_eq!(response["success"], true);
    assert_eq!(response["amount"], "100");
    let task: Value = paid.json().await.unwrap();
    assert_eq!(task["status"], "accepted");
    assert_eq!(task["result"]["result"]["a.b"], 2, "{task}");
    assert_eq!(task["validationReceipt"]["status"], "accepted");
    assert_eq!(paid_out(&task), 100, "payouts add up to the price");
    assert_eq!(h.buyer_balance(), FUNDS - 100);
    let worker = task["settlement"]["payouts"][0]["account"]
        .as_str()
        .unwrap();
    assert!(
        h.gateway.worker_accounts().iter().any(|w| w == worker),
        "a local worker earned it"
    );
    assert_eq!(h.balance(worker), 100);

    // Same proof, same body: the same task, marked as a replay, charged once.
    let replay = h.post(&body, Some(&payment)).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["x-d402-idempotent-replay"], "true");
    assert_eq!(replay.headers()["x-dnc-idempotent-replay"], "true");
    let again: Value = replay.json().await.unwrap();
    assert_eq!(again["taskId"], task["taskId"]);
    assert_eq!(h.buyer_balance(), FUNDS - 100);

    // Same proof, another body: refused as a conflict (the proof paid for another request).
    let other = h.post(&task_body("a"), Some(&payment)).await;
    assert_eq!(other.status(), 409);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error"]["code"],
        "payment_already_used"
    );
    // Re-bound by the buyer to another body but with the same nonce: refused as reuse.
    let rebound = tamper(&payment, &h.buyer, true, |a| {
        a.task_binding = d402_payment::request_binding(&task_body("a"))
    });
    let reused = h.post(&task_body("a"), Some(&rebound)).await;
    assert_eq!(reused.status(), 409);
    assert_eq!(h.buyer_balance(), FUNDS - 100);

    // Task, result and receipt endpoints; each answer matches its schema in /openapi.json.
    let id = task["taskId"].as_str().unwrap();
    let (_, doc) = h.get("/openapi.json").await;
    let conforms = |schema: &str, value: &Value| {
        let mut root = doc.clone();
        root["$ref"] = json!(format!("#/components/schemas/{schema}"));
        let validator = jsonschema::validator_for(&root).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{schema}: {errors:?}\n{value}");
    };
    conforms("Task", &task);
    conforms("Receipt", &h.get(&format!("/tasks/{id}/receipt")).await.1);
    conforms("Result", &h.get(&format!("/tasks/{id}/result")).await.1);
    for (schema, path) in [
        ("Health", "/health"),
        ("Healthz", "/healthz"),
        ("Discovery", "/.well-known/d402-gateway.json"),
        ("Network", "/network"),
        ("Capabilities", "/capabilities"),
        ("Error", "/tasks/task:nope"),
    ] {
        conforms(schema, &h.get(path).await.1);
    }
    conforms("PaymentRequired", &json!(challenge));
    conforms("PaymentResponse", &response);
    let receipt: Value = h.get(&format!("/tasks/{id}/receipt")).await.1;
    assert_eq!(receipt["validationReceipt"]["status"], "accepted");
    assert_eq!(
        receipt["settlement"]["payouts"],
        task["settlement"]["payouts"]
    );
    let result = h.get(&format!("/tasks/{id}/result")).await;
    assert_eq!(result.0, 200);
    let missing = h.get("/tasks/task:nope").await;
    assert_eq!(missing.0, 404);
}

#[tokio::test]
async fn bad_payments_and_bad_input_charge_nothing() {
    let h = start_default().await;
    let body = task_body("a.b");
    let payment = h.pay(&body).await;
    let cases = [
        (
            "forged",
            tamper(&payment, &h.buyer, false, |a| a.amount = "1".into()),
            402,
            "invalid_signature",
        ),
        (
            "underpaid",
            tamper(&payment, &h.buyer, true, |a| a.amount = "99".into()),
            402,
            "underpaid",
        ),
        (
            "expired",
            tamper(&payment, &h.buyer, true, |a| {
                a.expires_at = Timestamp::from_unix_millis(1_000)
            }),
            402,
            "payment_expired",
        ),
        (
            "wrong payee",
            tamper(&payment, &h.buyer, true, |a| {
                a.pay_to = h.buyer.public().to_string()
            }),
            402,
            "wrong_payee",
        ),
        ("not base64", "%%%".to_string(), 400, "malformed_payment"),
    ];
    for (name, header, status, code) in cases {
        let response = h.post(&body, Some(&header)).await;
        assert_eq!(response.status(), status, "{name}");
        assert!(
            response.headers().contains_key("payment-required"),
            "{name}: a fresh challenge comes with the refusal"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{name}: {error}");
    }
    // A buyer that writes `expiresAt` in another RFC 3339 spelling (no milliseconds) and
    // signs its own JSON is told which field to write how, not that its key is wrong.
    let mut document: Value = decode_header(&payment).unwrap();
    let authorization = &mut document["payload"]["payload"];
    let expires = authorization["expiresAt"].as_str().unwrap().to_string();
    let (seconds, _) = expires.split_once('.').unwrap();
    let seconds = seconds.to_string();
    authorization["expiresAt"] = json!(format!("{seconds}Z"));
    let message = d402_protocol::signing_message(
        "simulated-payment-authorization",
        &document["payload"]["payload"],
    )
    .unwrap();
    document["payload"]["signature"] = json!(h.buyer.sign_raw(&message));
    let response = h.post(&body, Some(&encode_header(&document))).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("expiresAt")
            && message.contains(&format!("write \"{seconds}.000Z\""))
            && !message.contains("not signed by"),
        "{error}"
    );
    // A payment bound to another body: the same proof for another request, 409.
    let response = h.post(&task_body("a"), Some(&payment)).await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "binding_mismatch"
    );

    let raw = |bytes: Vec<u8>| {
        h.client
            .post(format!("{}/tasks", h.base))
            .body(bytes)
            .send()
    };
    let malformed = raw(b"{not json".to_vec()).await.unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["error"]["code"],
        "malformed_json"
    );
    let big = raw(vec![b' '; 70 * 1024]).await.unwrap();
    assert_eq!(big.status(), 413);
    let bad_url = h
        .post(&json!({"input": {"url": "not a url"}}), Some(&payment))
        .await;
    assert_eq!(bad_url.status(), 400);
    assert_eq!(
        bad_url.json::<Value>().await.unwrap()["error"]["code"],
        "bad_url"
    );
    // capabilityId must be a string (schemathesis found it was not checked).
    let odd = h.post(&json!({"input": {"value": 1, "select": []}, "capabilityId": ["util.json_transform@1"]}), None).await;
    assert_eq!(odd.status(), 400);
    assert_eq!(
        odd.json::<Value>().await.unwrap()["error"]["code"],
        "malformed_request"
    );
    assert_eq!(h.buyer_balance(), FUNDS, "nothing charged");

    // The untouched payment still works afterwards, and client-supplied policy is ignored.
    let ok = h.post(&body, Some(&payment)).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(h.buyer_balance(), FUNDS - 100);
}

#[tokio::test]
async fn async_task_is_polled_to_completion() {
    let h = start_default().await;
    let body = json!({"sync": false, "price": "$0", "payTo": "x", "input": {"value": {"k": 1}, "select": ["k"]}});
    let payment = h.pay(&body).await;
    let response = h.post(&body, Some(&payment)).await;
    assert_eq!(response.status(), 202);
    let task: Value = response.json().await.unwrap();
    let id = task["taskId"].as_str().unwrap().to_string();
    let mut status = task["status"].clone();
    for _ in 0..100 {
        if status == "accepted" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let t: Value = h.get(&format!("/tasks/{id}")).await.1;
        status = t["status"].clone();
    }
    assert_eq!(status, "accepted");
    assert_eq!(
        h.buyer_balance(),
        FUNDS - 100,
        "charged the price, not the client's \"price\""
    );
}

#[tokio::test]
async fn discovery_health_and_capabilities() {
    let h = start_default().await;
    for path in [
        "/.well-known/d402-gateway.json",
        "/.well-known/dnc-gateway.json",
    ] {
        let d: Value = h.get(path).await.1;
        assert_eq!(d["d402GatewayVersion"], 1);
        assert_eq!(
            d["capabilities"][0]["capabilityId"],
            "util.json_transform@1"
        );
        assert_eq!(d["payment"]["creatorCommission"]["maxRateBps"], 2000);
    }
    let health: Value = h.get("/health").await.1;
    assert_eq!(health["ok"], true);
    assert_eq!(health["policy"]["price"], "$0.0001");
    let healthz = h.get("/healthz").await;
    assert_eq!(healthz.0, 200);
    let caps: Value = h.get("/capabilities").await.1;
    assert_eq!(
        caps["capabilities"][0]["capabilityId"],
        "util.json_transform@1"
    );
}

/// The spec's Zero example: the alias takes the bare input and answers 402 with a challenge.
#[tokio::test]
async fn page_to_markdown_alias_takes_the_bare_input() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = d402_testkit::component("page_to_markdown");
    let text = std::fs::read_to_string(d402_testkit::manifest_path("page-to-markdown")).unwrap();
    let mut manifest = d402_protocol::CapabilityManifest::from_json(&text).unwrap();
    manifest.runtime.artifact_cid = Some(d402_protocol::ContentId::of_bytes(&bytes));
    install(dir.path(), &manifest, &bytes);
    let node = serve(dir, |_| {}).await.unwrap();
    let base = format!("{}/v1/web/page-to-markdown", node.base);
    let client = d402_client::http_client();

    let response = client
        .post(&base)
        .json(&json!({"url": "https://example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 402);
    let header = response.headers()["payment-required"]
        .to_str()
        .unwrap()
        .to_string();
    let challenge: PaymentRequired = decode_header(&header).unwrap();
    assert_eq!(
        challenge.accepts[0].amount, "10000",
        "$0.01 in micro-dollars"
    );

    let response = client
        .post(&base)
        .json(&json!({"url": "ftp://example.com/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // The manifest says `"format": "uri"` (RFC 3986): browsers' looser URLs are refused before
    // payment (schemathesis found "https://\u{cf}" was taken), %-encoded ones are fine.
    for url in [
        "https://\u{cf}",
        "https://example.com/a b",
        "https://example.com/%zz",
        "https://example.com/\u{e9}",
    ] {
        let response = client
            .post(&base)
            .json(&json!({"url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{url}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"]["code"],
            "bad_url",
            "{url}"
        );
    }
    let response = client
        .post(&base)
        .json(&json!({"url": "https://xn--exmple-cua.com/a%20b?q=1#f"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 402);

    // The OpenAPI document lists the alias, priced like POST /tasks.
    let openapi = base.replace("/v1/web/page-to-markdown", "/openapi.json");
    let doc: Value = client
        .get(&openapi)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/tasks", "/v1/web/page-to-markdown"] {
        let info = &doc["paths"][path]["post"]["x-payment-info"];
        assert_eq!(info["amount"], "0.01", "{path}");
        assert_eq!(info["sku"], "web.page_to_markdown@1", "{path}");
        assert_eq!(info["pricingVersion"], 1, "{path}");
    }
}

/// A gateway selling several capabilities gives each its own paid route, priced alone:
/// one `x-payment-info` object per operation, a challenge for that capability's price, and
/// a paid retry on the same route runs it.
#[tokio::test]
async fn each_capability_sold_has_its_own_paid_route_and_price() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = common::json_transform();
    install(dir.path(), &manifest, &bytes);
    common::install_page_to_markdown(dir.path());
    let node = serve(dir, |_| {}).await.unwrap();
    let route = "/v1/util/json-transform";

    let doc = node.get("/openapi.json").await.1;
    let default = &doc["paths"]["/tasks"]["post"]["x-payment-info"];
    assert_eq!(default["sku"], "web.page_to_markdown@1", "{default}");
    for (path, sku, amount) in [
        (route, "util.json_transform@1", "0.0001"),
        ("/v1/web/page-to-markdown", "web.page_to_markdown@1", "0.01"),
    ] {
        let info = &doc["paths"][path]["post"]["x-payment-info"];
        assert_eq!(info["sku"], sku, "{path}: {info}");
        assert_eq!(info["amount"], amount, "{path}");
    }

    let input = json!({"value": {"a": {"b": 2}}, "select": ["a.b"]});
    let url = format!("{}{route}", node.base);
    // A capability named in the body must be served there too (schemathesis found an
    // unknown one taken on a capability's own route).
    let unknown = json!({"input": input, "capabilityId": "AAA"});
    let refused = node.client.post(&url).json(&unknown).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "unknown_capability");
    let response = node.client.post(&url).json(&input).send().await.unwrap();
    assert_eq!(response.status(), 402);
    let challenge: PaymentRequired = response.json().await.unwrap();
    assert_eq!(challenge.accepts[0].amount, "100", "json-transform's price");
    assert!(
        challenge.resource.url.ends_with(route),
        "{:?}",
        challenge.resource
    );
    let payment = common::pay_simulated(&challenge.accepts[0], &input, &node.buyer);
    let paid = node
        .client
        .post(&url)
        .header("payment-signature", payment)
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let task: Value = paid.json().await.unwrap();
    assert_eq!(task["status"], "accepted", "{task}");
    assert_eq!(task["capabilityId"], "util.json_transform@1");
    assert_eq!(
        node.buyer_balance(),
        common::FUNDS - 100,
        "charged its own price"
    );
}

#[tokio::test]
async fn the_pricing_version_moves_with_the_price_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = common::json_transform();
    install(dir.path(), &manifest, &bytes);
    let sku = "util.json_transform@1";
    let version_at = |price: Option<&str>| {
        let mut config = d402_node::NodeConfig::default();
        config.node.state = dir.path().to_path_buf();
        config.node.capability = sku.into();
        config.capabilities.price = price.map(|p| p.parse().unwrap());
        async move {
            let gateway = d402_node::Gateway::open(config).await.unwrap();
            gateway.pricing_version(sku)
        }
    };
    assert_eq!(version_at(None).await, 1, "the first listing");
    assert_eq!(version_at(None).await, 1, "a restart at the same price");
    assert_eq!(version_at(Some("$0.02")).await, 2, "a new price");
    assert_eq!(
        version_at(None).await,
        3,
        "the old price again is a change too"
    );
}
