//! What `d402 ops-status`, `d402 ops-monitor` and `/metrics` read about a node's safety
//! state: measures taken from the durable store (which a stopped node's state still has)
//! and, on a running node, from the gateway itself (caps, replays, peers, rail readiness).

use std::time::Duration;

use d402_ops::{Measure, Snapshot};
use d402_protocol::{Timestamp, Verdict};
use d402_store::{
    NodeStore, PayoutState, StateDir, StoreError, TaskFilter, TaskRecord, TaskStatus,
};

use crate::gateway::Gateway;

/// The windows failure and refund rates are measured over.
const RATE_WINDOWS: [(&str, Duration); 2] = [
    ("1h", Duration::from_secs(3600)),
    ("24h", Duration::from_secs(24 * 3600)),
];

/// The snapshot of a running gateway: its store's measures and its live ones.
pub async fn live_snapshot(gateway: &Gateway) -> Result<Snapshot, StoreError> {
    let state = StateDir::new(&gateway.config().node.state);
    let now = Timestamp::now();
    let mut measures = vec![Measure::new("node_up", Some(1.0))];
    let highest_price = gateway.catalog().all().iter().map(|s| s.price).max();
    measures.push(
        Measure::new("max_task_price_usd", highest_price.map(|p| p.as_dollars())).with_limit(
            gateway
                .config()
                .safety
                .max_task_budget
                .map(|budget| budget.0.as_dollars()),
        ),
    );
    measures.push(Measure::new(
        "rejected_replays",
        Some(gateway.metrics().rejected_replays() as f64),
    ));
    if let Some(network) = gateway.network() {
        measures.push(Measure::new("peers", Some(network.offers().len() as f64)));
    }
    for rail in gateway.rails().all() {
        let Ok(checks) =
            tokio::time::timeout(crate::http::READINESS_TIMEOUT, rail.readiness()).await
        else {
            measures.push(Measure::new("rail_ready", None).label("rail", rail.id().as_str()));
            continue;
        };
        for check in checks {
            measures.push(
                Measure::new("rail_ready", Some(f64::from(u8::from(check.ok))))
                    .label("rail", rail.id().as_str())
                    .label("check", &check.name),
            );
            if let Some(balance) = &check.balance {
                measures.push(
                    Measure::new("hot_wallet_balance", Some(balance.whole()))
                        .label("rail", rail.id().as_str())
                        .label("check", &check.name)
                        .label("asset", &balance.asset),
                );
            }
        }
    }
    measures.extend(stored_measures(gateway.store(), &state, now)?);
    Ok(Snapshot {
        node_id: Some(gateway.account()),
        live: true,
        taken_at_ms: now.unix_millis(),
        measures,
    })
}

/// The snapshot of a stopped node's state: what its store says, and `node_up` 0.
pub fn offline_snapshot(state: &StateDir) -> Result<Snapshot, StoreError> {
    let now = Timestamp::now();
    let store = state.open_store()?;
    let mut measures = vec![Measure::new("node_up", Some(0.0))];
    measures.extend(stored_measures(&store, state, now)?);
    Ok(Snapshot {
        node_id: d402_wallet::load(&state.wallet())
            .ok()
            .map(|key| key.public().to_string()),
        live: false,
        taken_at_ms: now.unix_millis(),
        measures,
    })
}

/// Measures the store and the state directory give: settlements and refunds pending,
/// failure and refund rates, validator disagreements, payouts owed, incident mode, disk.
pub fn stored_measures(
    store: &NodeStore,
    state: &StateDir,
    now: Timestamp,
) -> Result<Vec<Measure>, StoreError> {
    let tasks = store.tasks(&TaskFilter::default())?;
    let age = |record: &TaskRecord| {
        let since = record.completed_at.unwrap_or(record.created_at);
        now.unix_millis().saturating_sub(since.unix_millis()) as f64 / 1000.0
    };
    let oldest = |status: TaskStatus| {
        tasks
            .iter()
            .filter(|t| t.status == status)
            .map(age)
            .fold(0.0, f64::max)
    };
    let count = |status: TaskStatus| tasks.iter().filter(|t| t.status == status).count() as f64;
    let mut measures = vec![
        Measure::new("pending_settlements", Some(count(TaskStatus::Settling))),
        Measure::new(
            "oldest_pending_settlement_seconds",
            Some(oldest(TaskStatus::Settling)),
        ),
        Measure::new(
            "failed_settlements",
            Some(count(TaskStatus::SettlementFailed)),
        ),
        Measure::new("refunds_owed", Some(count(TaskStatus::Refunding))),
        Measure::new(
            "oldest_refund_owed_seconds",
            Some(oldest(TaskStatus::Refunding)),
        ),
    ];
    for (window, length) in RATE_WINDOWS {
        let since = now.unix_millis().saturating_sub(length.as_millis() as u64);
        let recent: Vec<&TaskRecord> = tasks
            .iter()
            .filter(|t| t.created_at.unix_millis() >= since)
            .collect();
        let decided = recent
            .iter()
            .filter(|t| !matches!(t.status, TaskStatus::Running))
            .count();
        let failed = recent
            .iter()
            .filter(|t| {
                matches!(
                    t.status,
                    TaskStatus::Rejected | TaskStatus::Refunding | TaskStatus::SettlementFailed
                )
            })
            .count();
        let refunded = recent
            .iter()
            .filter(|t| matches!(t.status, TaskStatus::Rejected | TaskStatus::Refunding))
            .count();
        measures.push(
            Measure::new("failure_rate", Some(ratio(failed, decided))).label("window", window),
        );
        measures.push(
            Measure::new("refund_rate", Some(ratio(refunded, recent.len())))
                .label("window", window),
        );
        if window == "24h" {
            let mut disagreements = 0;
            for task in &recent {
                if let Some(receipts) = store.receipts(&task.task_id)?
                    && receipts.verdicts.contains(&Verdict::Accepted)
                    && receipts
                        .verdicts
                        .iter()
                        .any(|v| matches!(v, Verdict::Rejected { .. }))
                {
                    disagreements += 1;
                }
            }
            measures.push(
                Measure::new("validator_disagreements", Some(f64::from(disagreements)))
                    .label("window", window),
            );
        }
    }
    let mut owed = std::collections::BTreeMap::<String, f64>::new();
    for payout in store.payouts()? {
        let entry = owed.entry(payout.rail.to_string()).or_default();
        if matches!(
            payout.state,
            PayoutState::Owed | PayoutState::Sending { .. }
        ) {
            *entry += 1.0;
        }
    }
    for (rail, count) in owed {
        measures.push(Measure::new("payouts_owed", Some(count)).label("rail", &rail));
    }
    measures.push(Measure::new(
        "incident_mode",
        Some(if state.pause_file().exists() {
            1.0
        } else {
            0.0
        }),
    ));
    match rustix::fs::statvfs(state.root()) {
        Ok(stats) => {
            let free = stats.f_bavail as f64 * stats.f_frsize as f64;
            let total = stats.f_blocks as f64 * stats.f_frsize as f64;
            measures.push(Measure::new("disk_free_bytes", Some(free)));
            measures.push(Measure::new(
                "disk_free_ratio",
                (total > 0.0).then(|| free / total),
            ));
        }
        Err(_) => measures.push(Measure::new("disk_free_ratio", None)),
    }
    Ok(measures)
}

/// `part / whole`, 0 when nothing was measured.
fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
