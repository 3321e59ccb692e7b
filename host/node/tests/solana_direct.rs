//! A gateway accepting Solana USDC over real HTTP on 127.0.0.1, with the local SVM network
//! behind its JSON-RPC endpoint: direct (`--rail solana-direct`: the buyer pays first with
//! a USDC transfer carrying the request's memo and proves it with `Authorization: Payment`,
//! or an MPP credential), and x402 `exact` on SVM (`--rail x402-solana`, the official
//! `@x402/svm` client); a failed task is refunded on chain.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{install, json_transform, serve};
use d402_payment::RailId;
use d402_payment::x402::{PaymentRequired, TransferProof, decode_header, headers};
use d402_rail_solana::Signer;
use d402_rail_solana::transfer::{self, TransferOrder};
use d402_rail_solana::{Address, Keypair, SolanaRpc, USDC_DECIMALS, USDC_MINT};
use d402_solana_devnet::SolanaDevnet;
use serde_json::{Value, json};

/// json-transform's price in atomic units ($0.0001).
const PRICE: u64 = 100;
const FUNDS: u64 = 1_000_000;

struct Setup {
    devnet: SolanaDevnet,
    node: common::Node,
    buyer: Keypair,
    gateway: Address,
}

async fn setup(install_capability: impl FnOnce(&std::path::Path), capability: &str) -> Setup {
    setup_on(
        install_capability,
        capability,
        RailId::SolanaDirect,
        "solana:localnet",
        |_| {},
    )
    .await
}

/// A gateway selling `capability` on Solana `rail` (network `network`, served by the local
/// SVM, which holds USDC at its real mint address).
async fn setup_on(
    install_capability: impl FnOnce(&std::path::Path),
    capability: &str,
    rail: RailId,
    network: &str,
    configure: impl FnOnce(&mut d402_node::NodeConfig),
) -> Setup {
    let devnet = SolanaDevnet::start(0).await.unwrap();
    let buyer = Keypair::new();
    devnet.fund_sol(&buyer.pubkey(), 1_000_000_000).unwrap();
    devnet.fund_usdc(&buyer.pubkey(), FUNDS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    install_capability(dir.path());
    let rpc = devnet.rpc_url().to_string();
    let node = serve(dir, |c| {
        c.rails.accepted = vec![rail];
        c.solana.network = network.into();
        c.solana.rpc_url = Some(rpc);
        c.node.capability = capability.into();
        configure(c);
    })
    .await
    .unwrap();
    let gateway: Address = node.gateway.account().parse().unwrap();
    // The gateway's wallet pays the fees of its refunds.
    devnet.fund_sol(&gateway, 1_000_000_000).unwrap();
    Setup {
        devnet,
        node,
        buyer,
        gateway,
    }
}

impl Setup {
    async fn challenge(&self, body: &Value) -> PaymentRequired {
        self.node.challenge(body).await
    }

    /// Pays `body`'s challenge with a USDC transfer and its memo; the `Authorization`
    /// header value proving it.
    async fn pay(&self, body: &Value) -> String {
        let challenge = self.challenge(body).await;
        let offer = &challenge.accepts[0];
        let rpc = SolanaRpc::new(self.devnet.rpc_url());
        let order = TransferOrder {
            mint: offer.asset.parse().unwrap(),
            decimals: USDC_DECIMALS,
            recipient: offer.pay_to.parse().unwrap(),
            amount: offer.amount.parse().unwrap(),
            memo: offer.extra["memo"].as_str(),
        };
        let signature = transfer::send(&rpc, &self.buyer, &order, Duration::from_secs(10))
            .await
            .unwrap();
        let proof = TransferProof {
            scheme: offer.scheme.clone(),
            network: offer.network.clone(),
            transaction: signature.to_string(),
            payer: self.buyer.pubkey().to_string(),
        };
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&proof).unwrap());
        format!("Payment {encoded}")
    }

    async fn post(&self, body: &Value, authorization: &str) -> reqwest::Response {
        self.node
            .client
            .post(format!("{}/tasks", self.node.base))
            .header("authorization", authorization)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

fn body(key: &str) -> Value {
    json!({"input": {"value": {"k": key}, "select": ["k"]}})
}

fn json_transform_installed(state: &std::path::Path) {
    let (manifest, bytes) = json_transform();
    install(state, &manifest, &bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_usdc_transfer_with_the_request_memo_pays_for_a_task_once() {
    let s = setup(json_transform_installed, "util.json_transform@1").await;
    let request = body("solana");
    let challenge = s.challenge(&request).await;
    let offer = &challenge.accepts[0];
    assert_eq!(
        (offer.scheme.as_str(), offer.network.as_str()),
        ("d402-solana-transfer", "solana:localnet")
    );
    assert_eq!(offer.asset, USDC_MINT.to_string());
    assert_eq!(offer.pay_to, s.gateway.to_string());
    assert_eq!(offer.amount, PRICE.to_string());
    let binding = d402_payment::request_binding(&request);
    assert_eq!(offer.extra["memo"], json!(format!("d402:{binding}")));

    let authorization = s.pay(&request).await;
    // Twenty concurrent requests with one proof: one task.
    let responses =
        futures_util::future::join_all((0..20).map(|_| s.post(&request, &authorization))).await;
    let mut task_ids = Vec::new();
    for response in responses {
        assert!(
            [200, 202].contains(&response.status().as_u16()),
            "{}",
            response.status()
        );
        let task: Value = response.json().await.unwrap();
        task_ids.push(task["taskId"].as_str().unwrap().to_string());
    }
    task_ids.dedup();
    assert_eq!(task_ids.len(), 1, "one task");
    let replay = s.post(&request, &authorization).await;
    assert_eq!(replay.headers()["x-d402-idempotent-replay"], "true");
    let settled: Value = decode_header(
        replay.headers()[headers::PAYMENT_RESPONSE]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(settled["success"], true);
    let task: Value = replay.json().await.unwrap();
    assert_eq!(task["status"], "accepted", "{task}");
    assert_eq!(task["result"]["result"], json!({"k": "solana"}));
    assert_eq!(s.devnet.usdc_balance(&s.buyer.pubkey()), FUNDS - PRICE);
    assert_eq!(
        s.devnet.usdc_balance(&s.gateway),
        PRICE,
        "moved by exactly the price"
    );

    // The same transfer for another task: refused (its memo names the first request).
    let other = s.post(&body("other"), &authorization).await;
    assert_eq!(other.status(), 409, "{:?}", other.text().await);
    // Malformed credentials.
    for bad in ["Payment !!!", "Payment e30", "Payment eyJzY2hlbWUiOiJ4In0"] {
        let response = s.post(&request, bad).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert_eq!(
        s.devnet.usdc_balance(&s.gateway),
        PRICE,
        "nothing else moved"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_is_refunded_on_chain() {
    let s = setup(
        |state| common::install_hostile(state, 5_000),
        "test.hostile@1",
    )
    .await;
    let request = json!({"input": {"behaviour": "panic"}});
    let authorization = s.pay(&request).await;
    let price = FUNDS - s.devnet.usdc_balance(&s.buyer.pubkey());
    assert!(
        price > 0 && s.devnet.usdc_balance(&s.gateway) == price,
        "paid first"
    );
    let response = s.post(&request, &authorization).await;
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.unwrap();
    assert_eq!(task["status"], "rejected", "{task}");
    let refund = &task["settlement"]["refunds"][0];
    assert!(
        refund["transaction"].as_str().is_some_and(|t| t.len() > 80),
        "{task}"
    );
    assert_eq!(
        s.devnet.usdc_balance(&s.buyer.pubkey()),
        FUNDS,
        "the buyer is whole"
    );
    assert_eq!(s.devnet.usdc_balance(&s.gateway), 0);
}

/// The parameters of a `WWW-Authenticate: Payment k="v", …` value.
fn auth_params(value: &str) -> std::collections::HashMap<String, String> {
    let rest = value.strip_prefix("Payment ").expect("the Payment scheme");
    rest.split(", ")
        .filter_map(|pair| {
            let (key, quoted) = pair.split_once('=')?;
            Some((key.to_string(), quoted.trim_matches('"').to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_402_speaks_mpp_and_a_push_mode_credential_pays() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let s = setup(json_transform_installed, "util.json_transform@1").await;
    let request = body("mpp");
    let unpaid = s
        .node
        .client
        .post(format!("{}/tasks", s.node.base))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(unpaid.status(), 402);
    assert_eq!(unpaid.headers()["cache-control"], "no-store");
    assert!(
        unpaid.headers().contains_key(headers::PAYMENT_REQUIRED),
        "x402 alongside"
    );
    let www = unpaid.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let params = auth_params(&www);
    assert_eq!(
        (params["method"].as_str(), params["intent"].as_str()),
        ("solana", "charge")
    );
    assert!(
        params.contains_key("id") && params.contains_key("expires"),
        "{www}"
    );
    let charge: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&params["request"]).unwrap()).unwrap();
    let binding = d402_payment::request_binding(&request);
    assert_eq!(charge["amount"], PRICE.to_string());
    assert_eq!(charge["currency"], USDC_MINT.to_string());
    assert_eq!(charge["recipient"], s.gateway.to_string());
    assert_eq!(charge["externalId"], format!("d402:{binding}"));
    assert_eq!(charge["methodDetails"]["network"], "localnet");

    // Push mode: the client pays the charge, then sends the signature.
    let rpc = SolanaRpc::new(s.devnet.rpc_url());
    let pay = |amount: u64| {
        let order = TransferOrder {
            mint: USDC_MINT,
            decimals: USDC_DECIMALS,
            recipient: s.gateway,
            amount,
            memo: charge["externalId"].as_str(),
        };
        let (rpc, buyer) = (&rpc, &s.buyer);
        async move {
            transfer::send(rpc, buyer, &order, Duration::from_secs(10))
                .await
                .unwrap()
        }
    };
    let challenge = json!({"id": params["id"], "realm": params["realm"], "method": "solana",
        "intent": "charge", "request": params["request"], "expires": params["expires"]});
    let credential = |challenge: &Value, signature: String| {
        let document = json!({"challenge": challenge, "payload": {"type": "signature", "signature": signature}});
        format!(
            "Payment {}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&document).unwrap())
        )
    };

    // A challenge the gateway did not issue (its request altered): invalid-challenge.
    let mut forged = challenge.clone();
    forged["request"] = json!(URL_SAFE_NO_PAD.encode(br#"{"amount":"1"}"#));
    let signature = pay(PRICE).await.to_string();
    let refused = s
        .post(&request, &credential(&forged, signature.clone()))
        .await;
    assert_eq!(refused.status(), 402);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert!(
        refused.headers().contains_key("www-authenticate"),
        "a fresh challenge"
    );
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://paymentauth.org/problems/invalid-challenge"
    );

    // A credential that cannot be read: malformed-credential.
    let garbage = format!("Payment {}", URL_SAFE_NO_PAD.encode(br#"{"challenge": 5}"#));
    let refused = s.post(&request, &garbage).await;
    assert_eq!(refused.status(), 400);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "https://paymentauth.org/problems/malformed-credential"
    );

    // Too little paid: payment-insufficient; nothing accepted.
    let short = pay(PRICE - 1).await.to_string();
    let refused = s.post(&request, &credential(&challenge, short)).await;
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(
        problem["type"], "https://paymentauth.org/problems/payment-insufficient",
        "{problem}"
    );

    // The real credential: accepted, with a Payment-Receipt naming the transfer.
    let accepted = s
        .post(&request, &credential(&challenge, signature.clone()))
        .await;
    assert_eq!(accepted.status(), 200);
    let receipt: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(accepted.headers()["payment-receipt"].to_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (receipt["status"].as_str(), receipt["method"].as_str()),
        (Some("success"), Some("solana"))
    );
    assert_eq!(receipt["reference"], signature);
    let task: Value = accepted.json().await.unwrap();
    assert_eq!(task["status"], "accepted", "{task}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_solana_mpp_client_pays_the_challenge_in_push_mode() {
    let s = setup(json_transform_installed, "util.json_transform@1").await;
    // The client does not create the recipient's token account (out of its scope): it
    // exists once the gateway was paid before; here it is opened empty.
    s.devnet.fund_usdc(&s.gateway, 0).unwrap();
    let request = body("official");
    let url = format!("{}/tasks", s.node.base);
    let report = official("mpp/pay-mpp.mjs", &s, &url, &request).await;
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["body"]["status"], "accepted", "{report}");
    assert_eq!(report["body"]["result"]["result"], json!({"k": "official"}));
    assert_eq!(report["receipt"]["status"], "success", "{report}");
    assert_eq!(s.devnet.usdc_balance(&s.gateway), PRICE);
    assert_eq!(
        s.devnet.usdc_balance(&s.buyer.pubkey()),
        FUNDS - PRICE,
        "exactly the price"
    );
}

/// Runs the official client `interop/<script>` as the buyer of `s` (its keypair bytes in
/// `BUYER_KEY`, the local RPC in `RPC_URL`) against `url` with `body`; the JSON it prints.
async fn official(script: &str, s: &Setup, url: &str, body: &Value) -> Value {
    let key: Vec<u8> = s.buyer.to_bytes().to_vec();
    let env = [
        ("BUYER_KEY", serde_json::to_string(&key).unwrap()),
        ("RPC_URL", s.devnet.rpc_url().to_string()),
    ];
    common::official_client(script, url, body, &env).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_x402_svm_client_pays_x402_solana_and_the_gateway_pays_the_fee() {
    // The local SVM stands in for mainnet (USDC at its real mint), as anvil does for Base:
    // the client only knows real networks.
    let mainnet = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";
    let s = setup_on(
        json_transform_installed,
        "util.json_transform@1",
        RailId::X402Solana,
        mainnet,
        |_| {},
    )
    .await;
    // The gateway's token account exists (the scheme's transfer does not create it).
    s.devnet.fund_usdc(&s.gateway, 0).unwrap();
    let before = s.devnet.transactions();
    let request = body("svm");
    let challenge = s.challenge(&request).await;
    let offer = &challenge.accepts[0];
    assert_eq!(
        (offer.scheme.as_str(), offer.network.as_str()),
        ("exact", mainnet)
    );
    assert_eq!(offer.extra["feePayer"], json!(s.gateway.to_string()));
    let binding = d402_payment::request_binding(&request);
    assert_eq!(offer.extra["memo"], json!(format!("d402:{binding}")));

    let report = official(
        "x402/pay-d402-svm.mjs",
        &s,
        &format!("{}/tasks", s.node.base),
        &request,
    )
    .await;
    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["body"]["status"], "accepted", "{report}");
    assert_eq!(report["body"]["result"]["result"], json!({"k": "svm"}));
    let settled = &report["paymentResponse"];
    assert_eq!(settled["success"], true, "{report}");
    let signature: d402_rail_solana::Signature =
        settled["transaction"].as_str().unwrap().parse().unwrap();
    let rpc = SolanaRpc::new(s.devnet.rpc_url());
    let landed = rpc
        .transaction(&signature)
        .await
        .unwrap()
        .expect("on chain");
    assert_eq!(
        landed.transaction.message.static_account_keys()[0],
        s.gateway,
        "the gateway paid the fee"
    );
    assert_eq!(s.devnet.usdc_balance(&s.gateway), PRICE);
    assert_eq!(
        s.devnet.usdc_balance(&s.buyer.pubkey()),
        FUNDS - PRICE,
        "exactly the price"
    );
    assert_eq!(s.devnet.transactions(), before + 1, "one transaction");
}

#[tokio::test(flavor = "multi_thread")]
async fn page_to_markdown_is_paid_with_a_solana_transfer() {
    let mut price = 0;
    let s = setup_on(
        |state| price = common::install_page_to_markdown(state),
        "web.page_to_markdown@1",
        RailId::SolanaDirect,
        "solana:localnet",
        |c| c.browser.allow_private_addresses = true,
    )
    .await;
    let page = d402_testkit::serve_html(
        "<html><head><title>Paid</title></head><body><article><h1>Paid on Solana</h1>\
         <p>This page was paid for with a USDC transfer on a local SVM.</p>\
         </article></body></html>",
    );
    let request = json!({"input": {"url": page}});
    let authorization = s.pay(&request).await;
    let response = s.post(&request, &authorization).await;
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.unwrap();
    assert_eq!(task["status"], "accepted", "{task}");
    assert!(
        task["result"]["markdown"]
            .as_str()
            .unwrap()
            .contains("Paid on Solana"),
        "{task}"
    );
    assert_eq!(
        s.devnet.usdc_balance(&s.gateway),
        price,
        "moved by exactly the price"
    );
    assert_eq!(s.devnet.usdc_balance(&s.buyer.pubkey()), FUNDS - price);
}
