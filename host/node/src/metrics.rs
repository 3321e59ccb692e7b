//! The node's Prometheus metrics (`GET /metrics` on the admin listener): counters kept as
//! tasks and payments happen, and, per scrape, a gauge for every measure of the ops
//! snapshot ([`crate::safety`]). No task, payment or buyer id is ever a label.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `d402_tasks_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    capability: String,
    mode: String,
    outcome: String,
}

/// Labels of `d402_payments_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PaymentLabels {
    rail: String,
    outcome: String,
}

/// Labels of `d402_settlement_failures_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RailLabels {
    rail: String,
}

/// Labels of `d402_task_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    capability: String,
}

/// Labels of `d402_sandbox_runs_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    outcome: String,
}

/// What became of a payment presented to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Verified and consumed for a new task.
    Accepted,
    /// The same payment for the same request again: its existing task was returned.
    Replay,
    /// A payment already used for another request, presented again: refused.
    RejectedReplay,
    /// Refused (malformed, wrong amount or payee, expired, insufficient funds, …).
    Refused,
}

impl PaymentOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Replay => "replay",
            Self::RejectedReplay => "rejected-replay",
            Self::Refused => "refused",
        }
    }
}

/// The node's counters and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tasks: Family<TaskLabels, Counter>,
    payments: Family<PaymentLabels, Counter>,
    settlement_failures: Family<RailLabels, Counter>,
    task_duration: Family<CapabilityLabels, Histogram>,
    sandbox_runs: Family<RunLabels, Counter>,
    rejected_replays: Counter<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `d402` prefix, with the build info.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("d402");
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register(
            "tasks",
            "Paid tasks decided, by capability, execution mode and outcome (the task status)",
            tasks.clone(),
        );
        let payments = Family::<PaymentLabels, Counter>::default();
        registry.register(
            "payments",
            "Payments presented, by rail and outcome",
            payments.clone(),
        );
        let settlement_failures = Family::<RailLabels, Counter>::default();
        registry.register(
            "settlement_failures",
            "Settlement or refund attempts on a rail that did not complete",
            settlement_failures.clone(),
        );
        let task_duration = Family::<CapabilityLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 12))
        });
        registry.register(
            "task_duration_seconds",
            "Time from payment to decision",
            task_duration.clone(),
        );
        let sandbox_runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "sandbox_runs",
            "Worker runs leased for tasks, by outcome (claim: a signed result; failed: none)",
            sandbox_runs.clone(),
        );
        let rejected_replays = Counter::default();
        registry.register(
            "rejected_replays",
            "Payments presented again for a different request, refused",
            rejected_replays.clone(),
        );
        // A gauge at 1 labelled with the version (the Prometheus convention; the text
        // format has no `info` type).
        let build = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        build
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register("build_info", "The software build", build);
        Self {
            registry,
            tasks,
            payments,
            settlement_failures,
            task_duration,
            sandbox_runs,
            rejected_replays,
        }
    }

    /// Counts a payment presented on `rail` (`"unknown"` when it named none the node has).
    pub fn payment(&self, rail: &str, outcome: PaymentOutcome) {
        if outcome == PaymentOutcome::RejectedReplay {
            self.rejected_replays.inc();
        }
        self.payments
            .get_or_create(&PaymentLabels {
                rail: rail.to_string(),
                outcome: outcome.as_str().to_string(),
            })
            .inc();
    }

    /// Counts a decided task and the time from payment to its decision.
    pub fn task(&self, capability: &str, mode: &str, outcome: &str, seconds: f64) {
        self.tasks
            .get_or_create(&TaskLabels {
                capability: capability.to_string(),
                mode: mode.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.task_duration
            .get_or_create(&CapabilityLabels {
                capability: capability.to_string(),
            })
            .observe(seconds);
    }

    /// Counts the runs of one task: those that produced a claim and those that failed.
    pub fn runs(&self, claims: usize, failed: usize) {
        for (outcome, count) in [("claim", claims), ("failed", failed)] {
            self.sandbox_runs
                .get_or_create(&RunLabels {
                    outcome: outcome.to_string(),
                })
                .inc_by(count as u64);
        }
    }

    /// Counts a settlement or refund attempt that did not complete on `rail`.
    pub fn settlement_failure(&self, rail: &str) {
        self.settlement_failures
            .get_or_create(&RailLabels {
                rail: rail.to_string(),
            })
            .inc();
    }

    /// Payments presented again for a different request since the node started.
    pub fn rejected_replays(&self) -> u64 {
        self.rejected_replays.get()
    }

    /// The Prometheus text exposition: the counters, then one gauge family per measure
    /// name of `snapshot` (`d402_<name>`).
    pub fn encode(&self, snapshot: &d402_ops::Snapshot) -> Result<String, std::fmt::Error> {
        type Labelled = Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>;
        let mut gauges = Registry::with_prefix("d402");
        let mut by_name = std::collections::BTreeMap::<&str, Vec<&d402_ops::Measure>>::new();
        // Measures the counters above already export are not repeated as gauges.
        let counted = |m: &&d402_ops::Measure| m.name == "rejected_replays";
        for measure in snapshot
            .measures
            .iter()
            .filter(|m| m.value.is_some() && !counted(m))
        {
            by_name
                .entry(measure.name.as_str())
                .or_default()
                .push(measure);
        }
        for (name, measures) in by_name {
            let help = format!("ops measure {name} (see d402 ops-status)");
            if let [single] = measures.as_slice()
                && single.labels.is_empty()
            {
                let gauge = Gauge::<f64, AtomicU64>::default();
                gauge.set(single.value.unwrap_or_default());
                gauges.register(name, help, gauge);
                continue;
            }
            let family = Labelled::default();
            for measure in measures {
                let labels: Vec<(String, String)> = measure.labels.clone().into_iter().collect();
                family
                    .get_or_create(&labels)
                    .set(measure.value.unwrap_or_default());
            }
            gauges.register(name, help, family);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &self.registry)?;
        prometheus_client::encoding::text::encode_registry(&mut text, &gauges)?;
        Ok(prometheus_text(&text))
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Turns prometheus-client's OpenMetrics families into the Prometheus text format that
/// `promtool` and every scraper read: OpenMetrics names a counter family without the
/// `_total` its samples carry, the text format names it with it.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}
