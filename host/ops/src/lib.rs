//! Operator safety checks for a d402 node.
//!
//! A node reports a [`Snapshot`]: named [`Measure`]s (pending settlements, refunds owed,
//! failure rates, disk, incident mode, …), some with the cap they are held against.
//! [`Rules`] turn a snapshot into [`Check`]s with a [`Level`] (`d402 ops-status`), and a
//! [`Monitor`] turns successive checks into deduplicated alert [`Notification`]s
//! (`d402 ops-monitor`).

mod monitor;
mod rules;

pub use monitor::{AlertState, Monitor, MonitorError, Notification, NotificationKind};
pub use rules::{Check, Rule, Rules, RulesError};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How bad a check is. Ordered from best to worst as monitoring systems rank them; the exit
/// code of `d402 ops-status` is [`Level::exit_code`] of the worst check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Within its thresholds.
    Ok,
    /// The value could not be measured.
    Unknown,
    /// Past the warning threshold.
    Warn,
    /// Past the critical threshold.
    Critical,
}

impl Level {
    /// The Nagios-style exit code: 0 ok, 1 warn, 2 critical, 3 unknown.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warn => 1,
            Self::Critical => 2,
            Self::Unknown => 3,
        }
    }

    /// The level's name, as tables and notifications show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unknown => "unknown",
            Self::Warn => "warn",
            Self::Critical => "critical",
        }
    }
}

/// One measured value of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measure {
    /// What is measured, e.g. `oldest_pending_settlement_seconds`.
    pub name: String,
    /// What it is measured on, e.g. `{rail: "x402-base"}` (never task or buyer ids).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The value; `None` when it could not be measured.
    pub value: Option<f64>,
    /// The cap the value is held against, when the node has one configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

impl Measure {
    /// A measure without labels or cap.
    pub fn new(name: &str, value: Option<f64>) -> Self {
        Self {
            name: name.to_string(),
            labels: BTreeMap::new(),
            value,
            limit: None,
        }
    }

    /// The same measure with one more label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// The same measure held against `limit`.
    pub fn with_limit(mut self, limit: Option<f64>) -> Self {
        self.limit = limit;
        self
    }
}

/// Everything a node reports about its safety state at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The node's id (its wallet's public key), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Whether a running node answered (otherwise the state was read from disk).
    pub live: bool,
    /// When it was taken, Unix milliseconds.
    pub taken_at_ms: u64,
    /// The measures.
    pub measures: Vec<Measure>,
}
