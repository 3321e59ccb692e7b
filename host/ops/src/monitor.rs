//! The ops-monitor alert state machine: a condition becomes an alert when a check leaves
//! `ok`, fires once it has lasted the rule's `for` duration, is notified again after the
//! repeat interval (or at once when its level changes) and once more when it resolves.
//! Alerts are keyed by [`Check::fingerprint`] and persisted after every evaluation, so a
//! restarted monitor neither notifies a firing alert again early nor forgets to resolve it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Check, Level};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, but not yet for the rule's `for` duration.
    Pending,
    /// Notified.
    Firing,
}

/// One alert the monitor tracks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    rule: String,
    labels: BTreeMap<String, String>,
    level: Level,
    state: AlertState,
    /// When the condition was first seen, Unix ms.
    since_ms: u64,
    /// When it was last notified, Unix ms.
    notified_ms: Option<u64>,
    value: Option<f64>,
    summary: Option<String>,
}

/// What a notification says about its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// It started firing, or its level changed.
    Firing,
    /// It is still firing (after the repeat interval).
    Repeat,
    /// It stopped.
    Resolved,
}

/// One message to the sinks (a JSON line, a webhook body, a command's stdin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Firing, repeat or resolved.
    pub status: NotificationKind,
    /// The alert's fingerprint (rule + labels).
    pub fingerprint: String,
    /// The rule.
    pub rule: String,
    /// The measure's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The level (for resolved: the level it had).
    pub level: Level,
    /// The latest value.
    pub value: Option<f64>,
    /// What the rule means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// When the condition was first seen, Unix ms.
    pub since_ms: u64,
    /// When this notification was made, Unix ms.
    pub at_ms: u64,
}

/// Why the monitor's state cannot be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Reading or writing the state file failed.
    #[error("monitor state {path}")]
    Io {
        /// The state file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The state file is not the monitor's JSON.
    #[error("monitor state {path} is corrupt; move it away to start afresh")]
    Corrupt {
        /// The state file.
        path: String,
        /// The parse failure.
        source: serde_json::Error,
    },
}

/// The alert state machine and, optionally, the file it persists to.
#[derive(Debug)]
pub struct Monitor {
    path: Option<PathBuf>,
    repeat_interval: Duration,
    alerts: BTreeMap<String, Alert>,
}

impl Monitor {
    /// A monitor that keeps its alerts in memory only.
    pub fn in_memory(repeat_interval: Duration) -> Self {
        Self {
            path: None,
            repeat_interval,
            alerts: BTreeMap::new(),
        }
    }

    /// A monitor persisted at `path`, resuming the alerts stored there.
    pub fn open(path: PathBuf, repeat_interval: Duration) -> Result<Self, MonitorError> {
        let shown = path.display().to_string();
        let alerts = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| MonitorError::Corrupt {
                    path: shown.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(MonitorError::Io {
                    path: shown,
                    source,
                });
            }
        };
        Ok(Self {
            path: Some(path),
            repeat_interval,
            alerts,
        })
    }

    /// Takes one evaluation's checks at `now_ms` and returns what to notify. The new state
    /// is saved before the notifications are returned.
    pub fn observe(
        &mut self,
        checks: &[Check],
        now_ms: u64,
    ) -> Result<Vec<Notification>, MonitorError> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for check in checks {
            let fingerprint = check.fingerprint();
            seen.insert(fingerprint.clone());
            match check.level {
                // Not measured: neither fire nor resolve on missing information.
                Level::Unknown => {}
                Level::Ok => out.extend(self.resolve(&fingerprint, now_ms)),
                Level::Warn | Level::Critical => {
                    let alert = self
                        .alerts
                        .entry(fingerprint.clone())
                        .or_insert_with(|| Alert {
                            rule: check.rule.clone(),
                            labels: check.labels.clone(),
                            level: check.level,
                            state: AlertState::Pending,
                            since_ms: now_ms,
                            notified_ms: None,
                            value: check.value,
                            summary: check.summary.clone(),
                        });
                    let changed = alert.level != check.level;
                    alert.level = check.level;
                    alert.value = check.value;
                    let held = now_ms.saturating_sub(alert.since_ms) >= check.for_seconds * 1000;
                    let kind = match alert.state {
                        AlertState::Pending if held => Some(NotificationKind::Firing),
                        AlertState::Pending => None,
                        AlertState::Firing if changed => Some(NotificationKind::Firing),
                        AlertState::Firing => alert
                            .notified_ms
                            .filter(|at| {
                                now_ms.saturating_sub(*at)
                                    >= self.repeat_interval.as_millis() as u64
                            })
                            .map(|_| NotificationKind::Repeat),
                    };
                    if let Some(kind) = kind {
                        alert.state = AlertState::Firing;
                        alert.notified_ms = Some(now_ms);
                        out.push(notification(kind, &fingerprint, alert, now_ms));
                    }
                }
            }
        }
        // A rule that no longer checks anything (e.g. a rail removed) resolves its alerts.
        let gone: Vec<String> = self
            .alerts
            .keys()
            .filter(|f| !seen.contains(*f))
            .cloned()
            .collect();
        for fingerprint in gone {
            out.extend(self.resolve(&fingerprint, now_ms));
        }
        self.save()?;
        Ok(out)
    }

    /// Forgets the alert `fingerprint`; the resolution to notify, when it was firing.
    fn resolve(&mut self, fingerprint: &str, now_ms: u64) -> Option<Notification> {
        self.alerts
            .remove(fingerprint)
            .filter(|alert| alert.state == AlertState::Firing)
            .map(|alert| notification(NotificationKind::Resolved, fingerprint, &alert, now_ms))
    }

    /// The alerts now firing: `(fingerprint, rule, level)`.
    pub fn firing(&self) -> Vec<(&str, &str, Level)> {
        self.alerts
            .iter()
            .filter(|(_, a)| a.state == AlertState::Firing)
            .map(|(f, a)| (f.as_str(), a.rule.as_str(), a.level))
            .collect()
    }

    /// Writes the alerts to the state file (atomically: a temporary file renamed over it).
    fn save(&self) -> Result<(), MonitorError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| MonitorError::Io {
            path: path.display().to_string(),
            source,
        };
        let temporary = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(&self.alerts).expect("alerts serialize");
        std::fs::write(&temporary, bytes).map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }
}

fn notification(
    kind: NotificationKind,
    fingerprint: &str,
    alert: &Alert,
    now_ms: u64,
) -> Notification {
    Notification {
        status: kind,
        fingerprint: fingerprint.to_string(),
        rule: alert.rule.clone(),
        labels: alert.labels.clone(),
        level: alert.level,
        value: alert.value,
        summary: alert.summary.clone(),
        since_ms: alert.since_ms,
        at_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Measure, Rules, Snapshot};

    const MINUTE: u64 = 60_000;

    /// A settlement pending for `age` seconds, checked by the built-in rules (warn at 300 s,
    /// critical at 3600 s, for 2 minutes).
    fn checks(age: f64) -> Vec<Check> {
        Rules::builtin().evaluate(&Snapshot {
            node_id: None,
            live: true,
            taken_at_ms: 0,
            measures: vec![Measure::new("oldest_pending_settlement_seconds", Some(age))],
        })
    }

    fn kinds(notifications: &[Notification]) -> Vec<(NotificationKind, Level)> {
        notifications.iter().map(|n| (n.status, n.level)).collect()
    }

    #[test]
    fn fires_after_for_dedupes_repeats_escalates_and_resolves() {
        let mut monitor = Monitor::in_memory(Duration::from_secs(3600));
        let t0 = 1_000 * MINUTE;
        assert!(
            monitor.observe(&checks(400.0), t0).unwrap().is_empty(),
            "pending for 0 s"
        );
        assert!(
            monitor
                .observe(&checks(460.0), t0 + MINUTE)
                .unwrap()
                .is_empty(),
            "pending for 1 min"
        );
        let fired = monitor.observe(&checks(520.0), t0 + 2 * MINUTE).unwrap();
        assert_eq!(kinds(&fired), [(NotificationKind::Firing, Level::Warn)]);
        assert_eq!(fired[0].since_ms, t0);
        // Deduplicated: still firing, nothing new within the repeat interval.
        for minute in 3..60 {
            assert!(
                monitor
                    .observe(&checks(600.0), t0 + minute * MINUTE)
                    .unwrap()
                    .is_empty()
            );
        }
        let repeat = monitor.observe(&checks(600.0), t0 + 62 * MINUTE).unwrap();
        assert_eq!(kinds(&repeat), [(NotificationKind::Repeat, Level::Warn)]);
        let escalated = monitor.observe(&checks(4000.0), t0 + 63 * MINUTE).unwrap();
        assert_eq!(
            kinds(&escalated),
            [(NotificationKind::Firing, Level::Critical)]
        );
        let resolved = monitor.observe(&checks(0.0), t0 + 64 * MINUTE).unwrap();
        assert_eq!(
            kinds(&resolved),
            [(NotificationKind::Resolved, Level::Critical)]
        );
        assert!(
            monitor
                .observe(&checks(0.0), t0 + 65 * MINUTE)
                .unwrap()
                .is_empty()
        );
        assert!(monitor.firing().is_empty());
    }

    #[test]
    fn a_condition_shorter_than_for_never_notifies() {
        let mut monitor = Monitor::in_memory(Duration::from_secs(3600));
        assert!(monitor.observe(&checks(400.0), 0).unwrap().is_empty());
        assert!(
            monitor.observe(&checks(0.0), MINUTE).unwrap().is_empty(),
            "pending alerts resolve silently"
        );
        assert!(
            monitor
                .observe(&checks(400.0), 2 * MINUTE)
                .unwrap()
                .is_empty(),
            "the clock starts again"
        );
    }

    #[test]
    fn unknown_values_neither_fire_nor_resolve() {
        let mut monitor = Monitor::in_memory(Duration::from_secs(3600));
        monitor.observe(&checks(400.0), 0).unwrap();
        assert_eq!(
            monitor.observe(&checks(400.0), 2 * MINUTE).unwrap().len(),
            1
        );
        let unknown = Rules::builtin().evaluate(&Snapshot {
            node_id: None,
            live: true,
            taken_at_ms: 0,
            measures: vec![Measure::new("oldest_pending_settlement_seconds", None)],
        });
        assert!(monitor.observe(&unknown, 3 * MINUTE).unwrap().is_empty());
        assert_eq!(monitor.firing().len(), 1);
    }

    #[test]
    fn a_restarted_monitor_resumes_its_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops-monitor.json");
        let repeat = Duration::from_secs(3600);
        let mut first = Monitor::open(path.clone(), repeat).unwrap();
        first.observe(&checks(400.0), 0).unwrap();
        assert_eq!(first.observe(&checks(400.0), 2 * MINUTE).unwrap().len(), 1);
        drop(first);
        let mut second = Monitor::open(path.clone(), repeat).unwrap();
        assert_eq!(second.firing().len(), 1);
        assert!(
            second
                .observe(&checks(500.0), 3 * MINUTE)
                .unwrap()
                .is_empty(),
            "a restart does not notify a firing alert again"
        );
        let resolved = second.observe(&checks(0.0), 4 * MINUTE).unwrap();
        assert_eq!(
            kinds(&resolved),
            [(NotificationKind::Resolved, Level::Warn)]
        );
        std::fs::write(&path, b"{not json").unwrap();
        let error = Monitor::open(path, repeat).unwrap_err().to_string();
        assert!(
            error.contains("corrupt") && error.contains("move it away"),
            "{error}"
        );
    }

    #[test]
    fn an_alert_whose_measure_disappears_resolves() {
        let mut monitor = Monitor::in_memory(Duration::from_secs(3600));
        monitor.observe(&checks(400.0), 0).unwrap();
        monitor.observe(&checks(400.0), 2 * MINUTE).unwrap();
        let resolved = monitor.observe(&[], 3 * MINUTE).unwrap();
        assert_eq!(
            kinds(&resolved),
            [(NotificationKind::Resolved, Level::Warn)]
        );
    }
}
