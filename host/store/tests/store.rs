//! The store keeps consumed payments and balances across a reopen (a restart).

use d402_protocol::Amount;
use d402_store::NodeStore;

#[test]
fn ledger_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    {
        let store = NodeStore::open(&path).unwrap();
        store.credit("buyer", Amount::from_micros(500)).unwrap();
        store.credit("buyer", Amount::from_micros(250)).unwrap();
    }
    let store = NodeStore::open(&path).unwrap();
    assert_eq!(store.balance("buyer").unwrap().micros(), 750);
    assert_eq!(store.balance("nobody").unwrap().micros(), 0);
    assert!(store.running().unwrap().is_empty());
}

/// The test buyer's account (base58).
fn buyer() -> String {
    d402_protocol::Keypair::from_seed(&[9; 32])
        .public()
        .to_string()
}

fn record(task: &str, payment_key: &str, binding: &str, amount: u64) -> d402_store::TaskRecord {
    let key = d402_protocol::Keypair::from_seed(&[5; 32]);
    let intent = d402_protocol::TaskIntent {
        task_id: task.into(),
        capability_id: "util.json_transform@1".into(),
        manifest_cid: d402_protocol::ContentId::of_bytes(b"manifest"),
        input: serde_json::json!({}),
        mode: d402_protocol::ExecutionMode::Single,
        fanout: 1,
        quorum: 1,
        deadline_ms: 1000,
        budget: Amount::from_micros(amount),
        validation: d402_protocol::ValidationModel::Exact,
        gateway: key.public(),
        created_at: d402_protocol::Timestamp::from_unix_millis(0),
    };
    let amount = Amount::from_micros(amount);
    d402_store::TaskRecord {
        task_id: task.into(),
        status: d402_store::TaskStatus::Running,
        intent: d402_protocol::Signed::sign(intent, &key).unwrap(),
        payment: d402_payment::Authorization {
            rail: d402_payment::RailId::Simulated,
            network: "d402:simulated".into(),
            payer: buyer().parse().unwrap(),
            payment_key: d402_payment::PaymentKey(payment_key.into()),
            amount,
            reference: format!("sim:{payment_key}"),
            holds: vec![d402_payment::LedgerChange::Debit {
                account: buyer(),
                amount,
            }],
            proof: serde_json::Value::Null,
        },
        payment_id: None,
        payment_digest: format!("digest of {payment_key}"),
        workers: vec![],
        binding: binding.into(),
        payment_response: d402_payment::x402::SettlementResponse {
            success: true,
            error_reason: None,
            payer: None,
            transaction: String::new(),
            network: "d402:simulated".into(),
            amount: None,
        },
        result: None,
        evidence: None,
        error: None,
        settlement_error: None,
        created_at: d402_protocol::Timestamp::from_unix_millis(0),
        completed_at: None,
    }
}

/// Many threads race to spend: the group-committed writer applies every payment exactly
/// once, answers each caller with its own outcome, and never overdraws the buyer.
#[test]
fn concurrent_payments_are_consumed_exactly_once() {
    use d402_store::Accepted;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(NodeStore::open(&dir.path().join("node.redb")).unwrap());
    store.credit(&buyer(), Amount::from_micros(30)).unwrap();
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                // 16 distinct payments, each presented 4 times; the buyer can afford 3.
                scope.spawn(move || {
                    let n = i % 16;
                    store.accept_payment(&record(
                        &format!("task:{n}"),
                        &format!("{}:{n}", buyer()),
                        &format!("b{n}"),
                        10,
                    ))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let new = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Accepted::New)))
        .count();
    let replays = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Accepted::Replay(_))))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(d402_store::StoreError::InsufficientFunds { .. })))
        .count();
    assert_eq!(new, 3, "three payments fit the balance");
    assert_eq!(
        replays, 9,
        "each accepted payment's three repeats are replays"
    );
    assert_eq!(refused, 52);
    assert_eq!(store.balance(&buyer()).unwrap().micros(), 0);
    assert_eq!(store.running().unwrap().len(), 3);
    // A payment key presented with another request is refused, not replayed.
    let accepted = store.running().unwrap()[0].clone();
    let reused = store.accept_payment(&record(
        "task:other",
        &accepted.payment.payment_key.0,
        "another binding",
        10,
    ));
    assert!(matches!(
        reused,
        Err(d402_store::StoreError::PaymentReused(_))
    ));
}

#[test]
fn pricing_versions_count_price_changes_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let price = Amount::from_micros;
    {
        let store = NodeStore::open(&path).unwrap();
        let version = |sku, micros, unit| {
            store
                .pricing_versions(&[(sku, price(micros), unit)])
                .unwrap()[0]
        };
        assert_eq!(version("a@1", 100, "task"), 1);
        assert_eq!(version("a@1", 100, "task"), 1, "unchanged");
        assert_eq!(version("a@1", 200, "task"), 2);
        assert_eq!(version("a@1", 100, "task"), 3, "back is a change too");
        assert_eq!(version("a@1", 100, "page"), 4, "a new unit");
        assert_eq!(version("b@1", 100, "task"), 1, "per SKU");
    }
    let store = NodeStore::open(&path).unwrap();
    let both = [("a@1", price(100), "page"), ("b@1", price(300), "task")];
    assert_eq!(
        store.pricing_versions(&both).unwrap(),
        [4, 2],
        "several at once, in order"
    );
}

/// Receipts for `task` with one reputation event of +1 for `subject`.
fn receipts(task: &str, subject: &d402_protocol::Keypair) -> d402_store::Receipts {
    use d402_protocol::{
        ReputationEvent, ReputationKind, SettlementReceipt, Signed, Timestamp, ValidationModel,
        ValidationReceipt, ValidationStatus,
    };
    let key = d402_protocol::Keypair::from_seed(&[5; 32]);
    let now = Timestamp::from_unix_millis(0);
    d402_store::Receipts {
        validation_receipt: Signed::sign(
            ValidationReceipt {
                task_id: task.into(),
                status: ValidationStatus::Accepted,
                accepted_claim_cids: vec![],
                rejected_claim_cids: vec![],
                model: ValidationModel::Exact,
                validator: key.public(),
                reason: None,
                issued_at: now,
            },
            &key,
        )
        .unwrap(),
        settlement_receipt: Signed::sign(
            SettlementReceipt {
                task_id: task.into(),
                payouts: vec![],
                refunds: vec![],
                rail: "x402-base".into(),
                issued_at: now,
            },
            &key,
        )
        .unwrap(),
        claim_cids: vec![],
        claims: vec![],
        verdicts: vec![],
        failures: vec![],
        reputation: vec![
            Signed::sign(
                ReputationEvent {
                    subject: subject.public(),
                    kind: ReputationKind::Accuracy,
                    delta: 1,
                    task_id: Some(task.into()),
                    reason: "agreed".into(),
                    issuer: key.public(),
                    issued_at: now,
                },
                &key,
            )
            .unwrap(),
        ],
    }
}

/// A task decided while its payment settles on a chain is listed as settling across a
/// reopen, until its settlement is recorded; its reputation events count once.
#[test]
fn a_settling_task_is_remembered_until_settled_and_counted_once() {
    use d402_store::TaskStatus;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let worker = d402_protocol::Keypair::from_seed(&[6; 32]);
    let worker_account = worker.public().to_string();
    let mut task = record("task:s", "evm:key", "b", 10);
    task.payment.holds.clear();
    {
        let store = NodeStore::open(&path).unwrap();
        store.accept_payment(&task).unwrap();
        task.status = TaskStatus::Settling;
        store
            .settle(&task, &receipts("task:s", &worker), &[], &[])
            .unwrap();
        assert!(store.running().unwrap().is_empty());
        // A retry that did not complete stores the task again, still settling.
        task.settlement_error = Some("rpc unreachable".into());
        store
            .settle(&task, &receipts("task:s", &worker), &[], &[])
            .unwrap();
    }
    let store = NodeStore::open(&path).unwrap();
    let settling = store.settling().unwrap();
    assert_eq!(settling.len(), 1);
    assert_eq!(
        settling[0].settlement_error.as_deref(),
        Some("rpc unreachable")
    );
    task.status = TaskStatus::Accepted;
    task.settlement_error = None;
    store
        .settle(&task, &receipts("task:s", &worker), &[], &[])
        .unwrap();
    assert!(store.settling().unwrap().is_empty());
    assert_eq!(
        store.task("task:s").unwrap().unwrap().status,
        TaskStatus::Accepted
    );
    assert_eq!(
        store.reputation(&worker_account).unwrap(),
        1,
        "counted once, not three times"
    );
}

/// A decided task cannot be decided again: the second decision (another payout, or a
/// refund of what was paid out) is refused and moves nothing.
#[test]
fn a_second_decision_is_refused_and_moves_nothing() {
    use d402_payment::LedgerChange;
    use d402_store::{StoreError, TaskStatus};
    let dir = tempfile::tempdir().unwrap();
    let store = NodeStore::open(&dir.path().join("node.redb")).unwrap();
    store.credit(&buyer(), Amount::from_micros(100)).unwrap();
    let worker = d402_protocol::Keypair::from_seed(&[6; 32]);
    let mut task = record("task:d", "sim:key", "b", 10);
    store.accept_payment(&task).unwrap();
    let paid = [LedgerChange::Credit {
        account: "worker".into(),
        amount: Amount::from_micros(10),
    }];
    task.status = TaskStatus::Accepted;
    store
        .settle(&task, &receipts("task:d", &worker), &paid, &[])
        .unwrap();
    assert_eq!(store.balance("worker").unwrap().micros(), 10);

    let refund = [LedgerChange::Credit {
        account: buyer(),
        amount: Amount::from_micros(10),
    }];
    task.status = TaskStatus::Rejected;
    let second = store.settle(&task, &receipts("task:d", &worker), &refund, &[]);
    assert!(
        matches!(second, Err(StoreError::AlreadyDecided(ref t)) if t == "task:d"),
        "{second:?}"
    );
    let again = store.settle(&task, &receipts("task:d", &worker), &paid, &[]);
    assert!(matches!(again, Err(StoreError::AlreadyDecided(_))));
    assert_eq!(store.balance("worker").unwrap().micros(), 10, "paid once");
    assert_eq!(
        store.balance(&buyer()).unwrap().micros(),
        90,
        "not refunded"
    );
    assert_eq!(
        store.task("task:d").unwrap().unwrap().status,
        TaskStatus::Accepted,
        "the first decision stands"
    );
}
