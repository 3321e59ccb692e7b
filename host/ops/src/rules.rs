//! Threshold rules and the checks they make of a snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Level, Measure, Snapshot};

/// The rules applied when none are configured (`src/default-rules.toml`).
const DEFAULT_RULES: &str = include_str!("default-rules.toml");

/// One threshold rule over the measures of one name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Rule {
    /// The rule's name, part of each alert's fingerprint.
    pub name: String,
    /// The measure it applies to.
    pub measure: String,
    /// Only measures carrying these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Warn at or past this value.
    pub warn: Option<f64>,
    /// Critical at or past this value.
    pub critical: Option<f64>,
    /// Thresholds are floors (fire below them) instead of ceilings.
    #[serde(default)]
    pub below: bool,
    /// The level when the value exceeds the cap the node holds it against.
    pub over_limit: Option<Level>,
    /// How long a condition must last before ops-monitor notifies.
    #[serde(default, rename = "for", deserialize_with = "duration")]
    pub for_duration: Duration,
    /// What a firing alert means, for people.
    pub summary: Option<String>,
}

/// Why a rules file is refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not TOML of the rules' shape.
    #[error("invalid rules: {0}")]
    Parse(#[from] toml::de::Error),
    /// Two rules share a name.
    #[error("two rules are named {0:?}; rule names identify alerts and must be unique")]
    DuplicateName(String),
    /// Thresholds in the wrong order for the rule's direction.
    #[error(
        "rule {0:?}: `critical` must be past `warn` in the rule's direction (higher, or lower with below = true)"
    )]
    ThresholdOrder(String),
}

/// A rule set, e.g. the contents of an ops-monitor rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rule: Vec<Rule>,
}

/// One rule applied to one measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// The rule.
    pub rule: String,
    /// The measure it looked at.
    pub measure: String,
    /// The measure's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The measured value (`None`: unknown).
    pub value: Option<f64>,
    /// The cap, when the node has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// The verdict.
    pub level: Level,
    /// How long the rule wants a condition held before notifying, seconds.
    pub for_seconds: u64,
    /// What it means when it is not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl Check {
    /// Identifies the alert of this rule on these labels across evaluations and restarts:
    /// the first 16 hex digits of sha256 over the rule name and the sorted labels.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(self.rule.as_bytes());
        for (key, value) in &self.labels {
            hash.update([0]);
            hash.update(key.as_bytes());
            hash.update([1]);
            hash.update(value.as_bytes());
        }
        hex::encode(&hash.finalize()[..8])
    }
}

impl Rules {
    /// The built-in rules.
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_RULES).expect("the built-in rules parse")
    }

    /// Parses a rules file: `[[rule]]` tables with `name`, `measure`, optional `labels`,
    /// `warn`, `critical`, `below`, `over-limit`, `for` (e.g. `"5m"`) and `summary`.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let file: RulesFile = toml::from_str(text)?;
        let mut names = std::collections::BTreeSet::new();
        for rule in &file.rule {
            if !names.insert(rule.name.as_str()) {
                return Err(RulesError::DuplicateName(rule.name.clone()));
            }
            if let (Some(warn), Some(critical)) = (rule.warn, rule.critical) {
                let ordered = if rule.below {
                    critical <= warn
                } else {
                    critical >= warn
                };
                if !ordered {
                    return Err(RulesError::ThresholdOrder(rule.name.clone()));
                }
            }
        }
        Ok(Self { rules: file.rule })
    }

    /// Every check the rules make of `snapshot`, in rule order. A rule without a matching
    /// measure makes none (e.g. a rail that is not configured).
    pub fn evaluate(&self, snapshot: &Snapshot) -> Vec<Check> {
        self.rules
            .iter()
            .flat_map(|rule| {
                snapshot
                    .measures
                    .iter()
                    .filter(move |m| m.name == rule.measure && matches_labels(rule, m))
                    .map(move |m| Check {
                        rule: rule.name.clone(),
                        measure: m.name.clone(),
                        labels: m.labels.clone(),
                        value: m.value,
                        limit: m.limit,
                        level: rule.level_of(m),
                        for_seconds: rule.for_duration.as_secs(),
                        summary: rule.summary.clone(),
                    })
            })
            .collect()
    }

    /// The worst level among `checks` (ok when there are none).
    pub fn worst(checks: &[Check]) -> Level {
        checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok)
    }
}

impl Rule {
    fn level_of(&self, measure: &Measure) -> Level {
        let Some(value) = measure.value else {
            return Level::Unknown;
        };
        let past = |threshold: Option<f64>| {
            threshold.is_some_and(|t| if self.below { value < t } else { value >= t })
        };
        let over_limit = match (self.over_limit, measure.limit) {
            (Some(level), Some(limit)) if value > limit => level,
            _ => Level::Ok,
        };
        let threshold = if past(self.critical) {
            Level::Critical
        } else if past(self.warn) {
            Level::Warn
        } else {
            Level::Ok
        };
        threshold.max(over_limit)
    }
}

fn matches_labels(rule: &Rule, measure: &Measure) -> bool {
    rule.labels
        .iter()
        .all(|(key, value)| measure.labels.get(key) == Some(value))
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not a duration like \"5m\": {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(measures: Vec<Measure>) -> Snapshot {
        Snapshot {
            node_id: None,
            live: true,
            taken_at_ms: 0,
            measures,
        }
    }

    #[test]
    fn thresholds_rank_values_in_the_rule_direction() {
        let rules = Rules::builtin();
        let level = |measure: Measure| Rules::worst(&rules.evaluate(&snapshot(vec![measure])));
        assert_eq!(
            level(Measure::new(
                "oldest_pending_settlement_seconds",
                Some(10.0)
            )),
            Level::Ok
        );
        assert_eq!(
            level(Measure::new(
                "oldest_pending_settlement_seconds",
                Some(300.0)
            )),
            Level::Warn
        );
        assert_eq!(
            level(Measure::new(
                "oldest_pending_settlement_seconds",
                Some(7200.0)
            )),
            Level::Critical
        );
        assert_eq!(level(Measure::new("disk_free_ratio", Some(0.5))), Level::Ok);
        assert_eq!(
            level(Measure::new("disk_free_ratio", Some(0.07))),
            Level::Warn
        );
        assert_eq!(
            level(Measure::new("disk_free_ratio", Some(0.01))),
            Level::Critical
        );
        assert_eq!(level(Measure::new("node_up", Some(0.0))), Level::Critical);
        assert_eq!(level(Measure::new("node_up", Some(1.0))), Level::Ok);
        assert_eq!(level(Measure::new("failure_rate", None)), Level::Unknown);
    }

    #[test]
    fn a_value_over_its_cap_takes_the_over_limit_level() {
        let rules = Rules::builtin();
        let price = |value| Measure::new("max_task_price_usd", Some(value)).with_limit(Some(0.05));
        assert_eq!(
            Rules::worst(&rules.evaluate(&snapshot(vec![price(0.05)]))),
            Level::Ok
        );
        assert_eq!(
            Rules::worst(&rules.evaluate(&snapshot(vec![price(0.06)]))),
            Level::Critical
        );
    }

    #[test]
    fn labels_select_measures_and_change_the_fingerprint() {
        let rules = Rules::parse(
            "[[rule]]\nname = \"gas\"\nmeasure = \"hot_wallet_balance\"\nlabels = {rail = \"x402-base\"}\nwarn = 5\nbelow = true\n",
        )
        .unwrap();
        let checks = rules.evaluate(&snapshot(vec![
            Measure::new("hot_wallet_balance", Some(1.0)).label("rail", "x402-base"),
            Measure::new("hot_wallet_balance", Some(1.0)).label("rail", "solana-direct"),
        ]));
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].level, Level::Warn);
        let other = Check {
            labels: BTreeMap::from([("rail".into(), "solana-direct".into())]),
            ..checks[0].clone()
        };
        assert_ne!(checks[0].fingerprint(), other.fingerprint());
        assert_eq!(checks[0].fingerprint(), checks[0].clone().fingerprint());
    }

    #[test]
    fn bad_rules_files_are_refused_with_the_reason() {
        let twice =
            "[[rule]]\nname = \"a\"\nmeasure = \"x\"\n[[rule]]\nname = \"a\"\nmeasure = \"y\"\n";
        assert!(matches!(Rules::parse(twice), Err(RulesError::DuplicateName(n)) if n == "a"));
        let inverted = "[[rule]]\nname = \"a\"\nmeasure = \"x\"\nwarn = 5\ncritical = 1\n";
        assert!(matches!(
            Rules::parse(inverted),
            Err(RulesError::ThresholdOrder(_))
        ));
        let bad_for = "[[rule]]\nname = \"a\"\nmeasure = \"x\"\nfor = \"soon\"\n";
        let error = Rules::parse(bad_for).unwrap_err().to_string();
        assert!(error.contains("\"soon\" is not a duration"), "{error}");
        let unknown = "[[rule]]\nname = \"a\"\nmeasure = \"x\"\nwarm = 1\n";
        assert!(
            Rules::parse(unknown)
                .unwrap_err()
                .to_string()
                .contains("warm")
        );
    }
}
