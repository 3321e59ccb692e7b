//! Two real libp2p nodes on 127.0.0.1: identity ties the wallet key to the PeerId, a signed
//! offer gossiped by one node is verified and stored by the other, forgeries are not.

use std::time::Duration;

use d402_network::{NODE_OFFERS_TOPIC, Network, NetworkConfig, libp2p_keypair, peer_id_of};
use d402_protocol::{Keypair, NodeOffer, Signed, Timestamp};

fn offer(key: &Keypair, lifetime_ms: u64) -> Signed<NodeOffer> {
    let now = Timestamp::now();
    let offer = NodeOffer {
        node_id: key.public(),
        addresses: vec![],
        payout_wallet: key.public().to_string(),
        evm_payout_wallet: None,
        roles: vec!["worker".into()],
        capabilities: vec![],
        software_version: "test".into(),
        protocol_version: 1,
        issued_at: now,
        expires_at: now.plus_millis(lifetime_ms),
    };
    Signed::sign(offer, key).unwrap()
}

fn listen() -> NetworkConfig {
    NetworkConfig {
        listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        bootstrap: vec![],
        peer_store: None,
        blobs: None,
    }
}

/// Starts A and B on 127.0.0.1, B bootstrapping to A.
async fn connected_pair(a_key: &Keypair, b_key: &Keypair) -> (Network, Network) {
    let a = Network::start(a_key, listen()).unwrap();
    let address = a.listen_addresses().await.remove(0);
    let b = Network::start(
        b_key,
        NetworkConfig {
            bootstrap: vec![address],
            ..listen()
        },
    )
    .unwrap();
    (a, b)
}

/// Runs `publish` every 300 ms until `heard()` holds (panics after 20 s, naming `what`),
/// then waits 500 ms more so that whatever was published alongside has arrived too.
async fn publish_until(mut publish: impl AsyncFnMut(), heard: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !heard() {
        publish().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never arrived"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Publishes `offer` from `from` until `to` has it (or panics after 20 s).
async fn gossip_until_heard(from: &Network, to: &Network, offer: &Signed<NodeOffer>) {
    let heard = || to.offers().contains_key(&offer.payload.node_id);
    publish_until(
        async || from.publish(offer).await.unwrap(),
        heard,
        "the offer",
    )
    .await;
}

#[test]
fn the_wallet_key_is_the_peer_identity() {
    let key = Keypair::from_seed(&[1; 32]);
    assert_eq!(
        peer_id_of(&key.public()),
        libp2p_keypair(&key).unwrap().public().to_peer_id()
    );
    assert_ne!(
        peer_id_of(&key.public()),
        peer_id_of(&Keypair::from_seed(&[2; 32]).public())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gossiped_offer_is_verified_and_forgeries_are_rejected() {
    let (a_key, b_key, c_key) = (
        Keypair::from_seed(&[1; 32]),
        Keypair::from_seed(&[2; 32]),
        Keypair::from_seed(&[3; 32]),
    );
    let (a, b) = connected_pair(&a_key, &b_key).await;

    // Forgeries first: another node's offer published by A, a tampered offer, an expired one,
    // and bytes that are no offer at all.
    let foreign = offer(&c_key, 60_000);
    let mut tampered = offer(&a_key, 60_000);
    tampered.payload.payout_wallet = c_key.public().to_string();
    let expired = offer(&a_key, 0);
    let genuine = offer(&a_key, 60_000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for bytes in [
            serde_json::to_vec(&foreign).unwrap(),
            serde_json::to_vec(&tampered).unwrap(),
            serde_json::to_vec(&expired).unwrap(),
            b"junk".to_vec(),
        ] {
            a.publish_raw(NODE_OFFERS_TOPIC, bytes).await.unwrap();
        }
        a.publish(&genuine).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        if b.offers().contains_key(&a_key.public()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never received A's offer"
        );
    }
    // A's own offer with a broken signature must not replace the genuine one.
    for _ in 0..3 {
        a.publish_raw(NODE_OFFERS_TOPIC, serde_json::to_vec(&tampered).unwrap())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let heard = b.offers();
    assert_eq!(
        heard[&a_key.public()],
        genuine,
        "the genuine offer, not the tampered one"
    );
    assert!(
        !heard.contains_key(&c_key.public()),
        "an offer for another node, published by A, is refused"
    );
    assert_eq!(heard.len(), 1);
}

/// A node restarted on the same peer store rejoins without any bootstrap peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_reconnects_from_its_peer_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("peers.json");
    let (a_key, b_key) = (Keypair::from_seed(&[4; 32]), Keypair::from_seed(&[5; 32]));
    let a = Network::start(&a_key, listen()).unwrap();
    let address = a.listen_addresses().await.remove(0);
    let with_store = |bootstrap| NetworkConfig {
        bootstrap,
        peer_store: Some(store.clone()),
        ..listen()
    };
    let b = Network::start(&b_key, with_store(vec![address])).unwrap();
    gossip_until_heard(&a, &b, &offer(&a_key, 60_000)).await;
    // The store is written once A has identified itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&store)
        .unwrap_or_default()
        .contains(&a.peer_id().to_string())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A was never written to the peer store"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(b);

    let b = Network::start(&b_key, with_store(vec![])).unwrap();
    gossip_until_heard(&a, &b, &offer(&a_key, 60_000)).await;
}

/// Reputation events and validator offers travel the same checked path: B keeps A's own
/// signed objects and refuses objects A publishes for another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reputation_events_and_validator_offers_are_checked_like_offers() {
    use d402_protocol::{
        Amount, Price, ReputationEvent, ReputationKind, ValidationModel, ValidatorOffer,
    };
    let (a_key, b_key, c_key) = (
        Keypair::from_seed(&[8; 32]),
        Keypair::from_seed(&[9; 32]),
        Keypair::from_seed(&[10; 32]),
    );
    let (a, b) = connected_pair(&a_key, &b_key).await;
    let event = |issuer: &Keypair, reason: &str| {
        let event = ReputationEvent {
            subject: c_key.public(),
            kind: ReputationKind::Accuracy,
            delta: -1,
            task_id: None,
            reason: reason.into(),
            issuer: issuer.public(),
            issued_at: Timestamp::now(),
        };
        Signed::sign(event, issuer).unwrap()
    };
    let validator_offer = |validator: &Keypair| {
        let now = Timestamp::now();
        let offer = ValidatorOffer {
            validator_id: validator.public(),
            capability_family: "web.page_to_markdown@1".into(),
            models: vec![ValidationModel::Canonicalized],
            fee: Price(Amount::from_micros(5)),
            payout_wallet: validator.public().to_string(),
            evm_payout_wallet: None,
            issued_at: now,
            expires_at: now.plus_millis(60_000),
        };
        Signed::sign(offer, validator).unwrap()
    };
    publish_until(
        async || {
            a.publish(&event(&c_key, "issued by another key"))
                .await
                .unwrap();
            a.publish(&validator_offer(&c_key)).await.unwrap();
            a.publish(&event(&a_key, "genuine")).await.unwrap();
            a.announce(&validator_offer(&a_key), "web.page_to_markdown@1")
                .await
                .unwrap();
        },
        || {
            !(b.reputation_events()
                .iter()
                .all(|e| e.payload.reason != "genuine")
                || b.validator_offers().is_empty())
        },
        "A's reputation event and validator offer",
    )
    .await;
    assert!(
        b.reputation_events()
            .iter()
            .all(|e| e.signer == a_key.public()),
        "only A's own events are kept"
    );
    let offers = b.validator_offers();
    assert!(
        offers
            .iter()
            .all(|o| o.payload.validator_id == a_key.public()),
        "only A's own validator offer is kept"
    );
}

/// Registrations and receipts are documents any node may relay: B keeps the ones A relays
/// for other signers, and refuses tampered ones and ones signed by another key than their
/// author.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_registrations_and_receipts_are_kept_only_when_their_signatures_hold() {
    use d402_protocol::{
        CapabilityManifest, CapabilityRegistration, ValidationModel, ValidationReceipt,
        ValidationStatus,
    };
    let (a_key, b_key, publisher, stranger) = (
        Keypair::from_seed(&[11; 32]),
        Keypair::from_seed(&[12; 32]),
        Keypair::from_seed(&[13; 32]),
        Keypair::from_seed(&[14; 32]),
    );
    let (a, b) = connected_pair(&a_key, &b_key).await;
    let manifest = CapabilityManifest::template("example.thing", "1");
    let registration =
        CapabilityRegistration::for_manifest(&manifest, publisher.public(), Timestamp::now())
            .unwrap();
    let genuine = Signed::sign(registration.clone(), &publisher).unwrap();
    let mut tampered = genuine.clone();
    tampered.payload.deprecated = true;
    let impostor = Signed::sign(registration, &stranger).unwrap();
    let receipt = |validator: &Keypair, signer: &Keypair| {
        let receipt = ValidationReceipt {
            task_id: "task:1".into(),
            status: ValidationStatus::Accepted,
            accepted_claim_cids: vec![],
            rejected_claim_cids: vec![],
            model: ValidationModel::Exact,
            validator: validator.public(),
            reason: None,
            issued_at: Timestamp::now(),
        };
        Signed::sign(receipt, signer).unwrap()
    };
    publish_until(
        async || {
            a.publish(&genuine).await.unwrap();
            a.publish(&receipt(&publisher, &publisher)).await.unwrap();
            a.publish(&tampered).await.unwrap();
            a.publish(&impostor).await.unwrap();
            a.publish(&receipt(&publisher, &stranger)).await.unwrap();
        },
        || !(b.registrations().is_empty() || b.receipts().0.is_empty()),
        "the relayed documents",
    )
    .await;
    let registrations = b.registrations();
    assert_eq!(registrations.len(), 1, "only the genuine registration");
    assert_eq!(registrations.values().next().unwrap(), &genuine);
    assert!(
        b.receipts()
            .0
            .iter()
            .all(|r| r.signer == publisher.public()),
        "a receipt signed for another validator is refused"
    );
}

/// Task intents speak for their gateway (only it may publish them); result claims are
/// relayed by the gateway that accepted them, and must be signed by their worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_intents_and_claims_are_checked_before_they_are_kept() {
    use d402_protocol::{
        Amount, ContentHash, ContentId, ExecutionMode, ResultClaim, TaskIntent, ValidationModel,
    };
    let (a_key, b_key, worker, stranger) = (
        Keypair::from_seed(&[15; 32]),
        Keypair::from_seed(&[16; 32]),
        Keypair::from_seed(&[17; 32]),
        Keypair::from_seed(&[18; 32]),
    );
    let (a, b) = connected_pair(&a_key, &b_key).await;
    let intent = |gateway: &Keypair| {
        let intent = TaskIntent {
            task_id: "task:1".into(),
            capability_id: "util.json_transform@1".into(),
            manifest_cid: ContentId::of_bytes(b"manifest"),
            input: serde_json::json!({"value": 1, "select": []}),
            mode: ExecutionMode::Single,
            fanout: 1,
            quorum: 1,
            deadline_ms: 1000,
            budget: Amount::from_micros(100),
            validation: ValidationModel::Exact,
            gateway: gateway.public(),
            created_at: Timestamp::now(),
        };
        Signed::sign(intent, gateway).unwrap()
    };
    let claim = Signed::sign(
        ResultClaim {
            task_id: "task:1".into(),
            lease_id: "lease:1:0".into(),
            worker: worker.public(),
            manifest_cid: ContentId::of_bytes(b"manifest"),
            artifact_cid: ContentId::of_bytes(b"artifact"),
            input_hash: ContentHash::of(b"in"),
            output: serde_json::json!({}),
            output_hash: ContentHash::of(b"{}"),
            snapshot_cids: vec![],
            evidence: serde_json::json!({}),
            completed_at: Timestamp::now(),
        },
        &worker,
    )
    .unwrap();
    let mut tampered = claim.clone();
    tampered.payload.output = serde_json::json!({"forged": true});
    publish_until(
        async || {
            a.publish(&intent(&stranger)).await.unwrap();
            a.publish(&tampered).await.unwrap();
            a.publish(&intent(&a_key)).await.unwrap();
            a.publish(&claim).await.unwrap();
        },
        || !(b.tasks_and_claims().0.is_empty() || b.tasks_and_claims().1.is_empty()),
        "A's task and claim",
    )
    .await;
    let (tasks, claims) = b.tasks_and_claims();
    assert!(
        tasks.iter().all(|t| t.signer == a_key.public()),
        "another gateway's intent published by A is refused"
    );
    assert!(
        claims.iter().all(|c| c == &claim),
        "the relayed claim is kept, the tampered one is not"
    );
}
