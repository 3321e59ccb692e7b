//! `util.json_transform@1`: a pure, deterministic JSON transform. Picks fields out of a JSON
//! value by dotted path and reports the canonical digest-friendly result.

use std::collections::BTreeMap;

use d402_sdk::{Capability, RunError, TaskContext};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Input: a JSON value and the dotted paths to pick from it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    /// The document to transform.
    pub value: Value,
    /// Dotted paths (`a.b.0.c`) to pick; array elements by index.
    pub select: Vec<String>,
}

/// Output: the picked values by path, and the paths that were missing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Picked values, keyed by path (sorted).
    pub result: BTreeMap<String, Value>,
    /// Paths that did not resolve.
    pub missing: Vec<String>,
}

/// The capability.
pub struct JsonTransform;

impl Capability for JsonTransform {
    type Input = Input;
    type Output = Output;

    fn run(_ctx: &TaskContext, input: Input) -> Result<Output, RunError> {
        if input.select.len() > 1000 {
            return Err(RunError::InvalidInput("at most 1000 paths".into()));
        }
        let mut result = BTreeMap::new();
        let mut missing = Vec::new();
        for path in input.select {
            match pick(&input.value, &path) {
                Some(found) => {
                    result.insert(path, found.clone());
                }
                None => missing.push(path),
            }
        }
        Ok(Output { result, missing })
    }
}

fn pick<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(value, |current, segment| match current {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

d402_sdk::export_capability!(JsonTransform);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_paths_and_reports_missing_ones() {
        let out = d402_sdk::run_json::<JsonTransform>(
            &d402_sdk::testing::context("util.json_transform@1"),
            r#"{"value": {"a": {"b": [10, {"c": true}]}}, "select": ["a.b.1.c", "a.b.0", "a.x", "a.b.9"]}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"result":{"a.b.0":10,"a.b.1.c":true},"missing":["a.x","a.b.9"]}"#
        );
    }

    #[test]
    fn wrong_input_type_is_invalid_input() {
        let err = d402_sdk::run_json::<JsonTransform>(
            &d402_sdk::testing::context("x.y@1"),
            r#"{"value": 1}"#,
        )
        .unwrap_err();
        assert!(matches!(err, RunError::InvalidInput(m) if m.contains("select")));
    }
}
