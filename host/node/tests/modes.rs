//! Execution modes on the local worker pool, validators, creator commission, validator fee
//! and the gateway's acceptance policy, over real HTTP on 127.0.0.1.

mod common;

use common::{FUNDS, install, json_transform, paid_out, register, serve, start};
use d402_node::installed::install_registration;
use d402_protocol::{CapabilityRegistration, CreatorCommission, ExecutionMode, Signed, Timestamp};
use serde_json::{Value, json};

fn select(key: &str) -> Value {
    json!({"input": {"value": {"k": key}, "select": ["k"]}})
}

#[tokio::test]
async fn quorum_pays_the_agreeing_workers_and_the_split_adds_up() {
    let node = start(|c| {
        c.node.mode = ExecutionMode::Quorum;
        c.node.fanout = 3;
        c.node.quorum = 2;
    })
    .await;
    let task = node.run(&select("q")).await;
    assert_eq!(task["status"], "accepted", "{task}");
    assert_eq!(
        (
            task["mode"].as_str(),
            task["fanout"].as_u64(),
            task["quorum"].as_u64()
        ),
        (Some("quorum"), Some(3), Some(2))
    );
    assert_eq!(
        task["workers"].as_array().unwrap().len(),
        3,
        "three workers leased"
    );
    let paid = d402_testkit::worker_payees(&task);
    assert_eq!(paid.len(), 2, "the two agreeing workers are paid: {task}");
    assert_ne!(paid[0], paid[1]);
    assert_eq!(paid_out(&task), 100);
    assert_eq!(
        task["validationReceipt"]["acceptedClaimCids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let workers = node.gateway.worker_accounts();
    let earned: u64 = workers.iter().map(|w| node.balance(w)).sum();
    assert_eq!(earned, 100, "the ledger paid the workers the price");
    assert_eq!(node.buyer_balance(), FUNDS - 100);
    // Accepted claims earn a positive reputation event each.
    let id = task["taskId"].as_str().unwrap();
    let (_, receipt) = node.get(&format!("/tasks/{id}/receipt")).await;
    let events = receipt["signed"]["reputationEvents"].as_array().unwrap();
    assert_eq!(
        events.iter().filter(|e| e["payload"]["delta"] == 1).count(),
        2,
        "{receipt}"
    );
    for account in &paid {
        assert_eq!(node.gateway.store().reputation(account).unwrap(), 1);
    }
}

#[tokio::test]
async fn race_pays_only_the_winner() {
    let node = start(|c| {
        c.node.mode = ExecutionMode::Race;
        c.node.fanout = 3;
    })
    .await;
    let task = node.run(&select("r")).await;
    assert_eq!(task["status"], "accepted", "{task}");
    assert_eq!(task["mode"], "race");
    assert_eq!(d402_testkit::worker_payees(&task).len(), 1, "{task}");
    assert_eq!(paid_out(&task), 100);
    assert_eq!(
        task["validationReceipt"]["acceptedClaimCids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Workers of a nondeterministic capability disagree: no quorum, a full refund, no payout.
#[tokio::test]
async fn a_quorum_that_cannot_agree_refunds_the_buyer() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = d402_testkit::component("hostile");
    let mut manifest = d402_testkit::hostile_manifest(
        &bytes,
        5_000,
        Some(d402_testkit::fetch_permission(&["example.com"], 1)),
        "nondeterministic",
    );
    manifest.execution_modes = vec![
        ExecutionMode::Single,
        ExecutionMode::Race,
        ExecutionMode::Quorum,
    ];
    install(dir.path(), &manifest, &bytes);
    let node = serve(dir, |c| {
        c.node.capability = "test.hostile@1".into();
        c.node.mode = ExecutionMode::Quorum;
        c.node.fanout = 3;
        c.node.quorum = 3;
    })
    .await
    .unwrap();
    let body = json!({"input": {"behaviour": "entropy"}});
    let payment = node.pay(&body).await;
    let response = node.post(&body, Some(&payment)).await;
    assert_eq!(response.status(), 200);
    let task: Value = response.json().await.unwrap();
    assert_eq!(task["status"], "rejected", "{task}");
    assert_eq!(task["error"]["kind"], "quorum-not-reached", "{task}");
    assert_eq!(task["settlement"]["payouts"], json!([]));
    assert_eq!(task["settlement"]["refunds"][0]["amount"], 0.001);
    assert_eq!(node.buyer_balance(), FUNDS, "refunded in full");
}

#[tokio::test]
async fn a_signed_registration_earns_its_creator_commission_and_the_validator_its_fee() {
    let dir = tempfile::tempdir().unwrap();
    let (mut manifest, bytes) = json_transform();
    manifest.pricing.price = "$0.01".parse().unwrap();
    // Let over-long selections reach the component, which refuses them: a failing task.
    manifest.input_schema["properties"]["select"]
        .as_object_mut()
        .unwrap()
        .remove("maxItems");
    install(dir.path(), &manifest, &bytes);
    let creator = d402_protocol::Keypair::from_seed(&[9; 32])
        .public()
        .to_string();
    register(dir.path(), &manifest, |r| {
        r.creator_commission = Some(CreatorCommission::new(
            1000,
            creator.clone(),
            "simulated".into(),
        ));
    });
    let node = serve(dir, |c| {
        c.capabilities.require_registration = true;
        c.capabilities.require_signed_registration = true;
        c.node.validator_fee_bps = 500;
    })
    .await
    .unwrap();
    let task = node.run(&select("c")).await;
    assert_eq!(task["status"], "accepted", "{task}");
    let payouts = task["settlement"]["payouts"].as_array().unwrap();
    let by_reason = |reason: &str| {
        payouts
            .iter()
            .find(|p| p["reason"] == reason)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_reason("accepted-result")["amount"], 0.0085);
    assert_eq!(by_reason("accepted-result")["grossAmount"], 0.01);
    let commission = by_reason("creator-commission");
    assert_eq!(
        (
            commission["amount"].as_f64(),
            commission["rateBps"].as_u64()
        ),
        (Some(0.001), Some(1000))
    );
    assert_eq!(commission["account"], creator.as_str());
    assert_eq!(commission["manifestCid"], task["manifestCid"]);
    assert!(commission["registrationCid"].is_string());
    assert_eq!(commission["namespace"], "util");
    assert_eq!(by_reason("validator-fee")["amount"], 0.0005);
    assert_eq!(paid_out(&task), 10_000);
    assert_eq!(node.balance(&creator), 1_000);
    assert_eq!(node.balance(&node.gateway.account()), 500);

    // A failed task pays no commission: the buyer is refunded in full.
    let before = node.buyer_balance();
    let too_many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let task = node
        .run(&json!({"input": {"value": 1, "select": too_many}}))
        .await;
    assert_eq!(task["status"], "rejected", "{task}");
    assert_eq!(task["settlement"]["payouts"], json!([]));
    assert_eq!(node.buyer_balance(), before);
    assert_eq!(node.balance(&creator), 1_000);
}

#[tokio::test]
async fn the_acceptance_policy_decides_what_is_served() {
    // Required registration, none installed: nothing to serve.
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    let error = serve(dir, |c| c.capabilities.require_registration = true)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("no installed capability passes"),
        "{error:#}"
    );

    // Registered but without a namespace proof, which is required.
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &manifest, &bytes);
    register(dir.path(), &manifest, |_| {});
    let error = serve(dir, |c| c.capabilities.require_namespace_proof = true)
        .await
        .err()
        .expect("refused");
    assert!(format!("{error:#}").contains("no installed capability passes"));

    // Untrusted namespace; an accepted manifest CID that is not this one.
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &manifest, &bytes);
    assert!(
        serve(dir, |c| c.capabilities.trusted_namespaces =
            vec!["other".into()])
        .await
        .is_err()
    );
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &manifest, &bytes);
    let other = d402_protocol::ContentId::of_bytes(b"another manifest").to_string();
    assert!(
        serve(dir, |c| c.capabilities.accepted_manifest_cids = vec![other])
            .await
            .is_err()
    );

    // A forged registration (changed after signing) is ignored, so the requirement is not met.
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &manifest, &bytes);
    let registration = CapabilityRegistration::for_manifest(
        &manifest,
        common::publisher().public(),
        Timestamp::now(),
    )
    .unwrap();
    let mut envelope = Signed::sign(registration, &common::publisher()).unwrap();
    assert!(
        install_registration(dir.path(), &envelope, &manifest, 2000, Timestamp::now()).is_ok(),
        "the original verifies"
    );
    envelope.payload.tags.push("forged".into());
    assert!(
        install_registration(dir.path(), &envelope, &manifest, 2000, Timestamp::now()).is_err(),
        "install refuses it"
    );
    std::fs::remove_dir_all(dir.path().join("registrations")).unwrap();
    std::fs::create_dir(dir.path().join("registrations")).unwrap();
    std::fs::write(
        dir.path().join("registrations/forged.json"),
        serde_json::to_vec(&envelope).unwrap(),
    )
    .unwrap();
    let error = serve(dir, |c| c.capabilities.require_registration = true)
        .await
        .err()
        .expect("refused");
    assert!(format!("{error:#}").contains("no installed capability passes"));
}

#[tokio::test]
async fn capabilities_are_searchable_and_unknown_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    install(dir.path(), &manifest, &bytes);
    let hostile = d402_testkit::component("hostile");
    install(
        dir.path(),
        &d402_testkit::hostile_manifest(
            &hostile,
            1_000,
            Some(d402_testkit::fetch_permission(&["example.com"], 1)),
            "snapshot-deterministic",
        ),
        &hostile,
    );
    let node = serve(dir, |c| c.node.capability = "util.json_transform@1".into())
        .await
        .unwrap();
    let ids = |v: &Value| -> Vec<String> {
        v["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["capabilityId"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = node.get("/capabilities").await;
    assert_eq!(
        ids(&all),
        ["util.json_transform@1", "test.hostile@1"],
        "the default first"
    );
    let cid = manifest.cid().unwrap();
    let sha = format!("sha256:{}", cid.digest().to_hex());
    for query in [
        "namespace=util".to_string(),
        "capabilityId=util.json_transform@1".to_string(),
        format!("manifestCid={cid}"),
        format!("manifestCid={sha}"),
        format!(
            "shard={}",
            d402_node::catalog::shard_of("util.json_transform@1")
        ),
        "q=JSON".to_string(),
    ] {
        let (_, found) = node.get(&format!("/capabilities?{query}")).await;
        assert_eq!(ids(&found), ["util.json_transform@1"], "{query}");
    }
    let (_, none) = node.get("/capabilities?namespace=nobody").await;
    assert!(ids(&none).is_empty());

    // A request may pick any served capability; one that is not served is a 400, unpaid.
    let body =
        json!({"capabilityId": "test.hostile@1", "input": {"behaviour": "echo", "text": "hi"}});
    let task = node.run(&body).await;
    assert_eq!(task["result"]["text"], "hi", "{task}");
    let response = node
        .post(&json!({"capabilityId": "no.such@1", "input": {}}), None)
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unknown_capability");
}

/// Installing a newer package for the same manifest replaces the older one on disk.
#[test]
fn a_newer_package_supersedes_the_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, bytes) = json_transform();
    let older = d402_node::installed::create_package(
        &manifest,
        &bytes,
        &common::publisher(),
        Timestamp::from_unix_millis(1_000),
    )
    .unwrap();
    let newer = d402_node::installed::create_package(
        &manifest,
        &bytes,
        &common::publisher(),
        Timestamp::from_unix_millis(2_000),
    )
    .unwrap();
    let count = || {
        std::fs::read_dir(dir.path().join("implementations"))
            .unwrap()
            .count()
    };
    d402_node::installed::install_package(dir.path(), &older, &manifest, &bytes, &[]).unwrap();
    d402_node::installed::install_package(dir.path(), &newer, &manifest, &bytes, &[]).unwrap();
    assert_eq!(count(), 1);
    let installed = d402_node::installed::list_installed(dir.path()).unwrap();
    assert_eq!(
        installed[0].package.created_at,
        Timestamp::from_unix_millis(2_000)
    );
    // Installing the older one again keeps the newer.
    d402_node::installed::install_package(dir.path(), &older, &manifest, &bytes, &[]).unwrap();
    assert_eq!(
        d402_node::installed::list_installed(dir.path()).unwrap()[0]
            .package
            .created_at,
        Timestamp::from_unix_millis(2_000)
    );
}
