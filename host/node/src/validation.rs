//! Validators: deciding which result claims of a task are acceptable and which agree.
//!
//! Every claim first passes the integrity checks ([`check_integrity`]): it answers this task
//! and this exact manifest, hashes the intent's input, and its output hash is the hash of its
//! output. Then the manifest's validation model decides ([`Validator`]):
//!
//! - `exact`: claims agree when their canonical output bytes are identical;
//! - `canonicalized`: claims agree when their outputs are identical after dropping the
//!   evidence (the `evidence` object and every top-level field the manifest's `evidence`
//!   list names, e.g. `snapshotCid`: two workers fetching the same page make different
//!   snapshots) and applying the named canonicalisation (`jcs`, or `markdown`, which also
//!   normalises whitespace in the markdown text);
//! - `comparator`: a [`Comparator`] rates two outputs; they agree at or above the threshold
//!   (implemented: `token-jaccard`);
//! - `scoreable`: a [`Scorer`] rates each output on its own; it passes at or above the
//!   threshold (implemented: `schema-completeness`); agreement is canonical identity;
//! - `reputation-only`: a claim passes when its worker's reputation score is not negative.
//!
//! Snapshot-deterministic capabilities are also re-run on the claim's snapshots by the
//! engine (replay validation); [`Validator::replay_agrees`] compares the replayed output.

use d402_protocol::{
    CapabilityManifest, ContentHash, ContentId, DeterminismClass, Lease, PublicKey, ResultClaim,
    TaskIntent, ValidationModel, canonical,
};
use serde_json::Value;

/// Default pass mark of comparators and scorers, in basis points.
pub const DEFAULT_THRESHOLD_BPS: u32 = 9_000;

/// Checks that `claim` answers `intent` for `manifest_cid` and that its hashes are honest.
pub fn check_integrity(
    claim: &ResultClaim,
    intent: &TaskIntent,
    manifest_cid: &ContentId,
) -> Result<(), String> {
    if claim.task_id != intent.task_id {
        return Err(format!(
            "the claim answers task {}, not {}",
            claim.task_id, intent.task_id
        ));
    }
    if claim.manifest_cid != *manifest_cid {
        return Err(format!(
            "the claim ran manifest {}, not the pinned {manifest_cid}",
            claim.manifest_cid
        ));
    }
    let input = canonical::to_vec(&intent.input).map_err(|e| e.to_string())?;
    if claim.input_hash != ContentHash::of(&input) {
        return Err("the claim's input hash is not the hash of the task input".into());
    }
    let output = canonical::to_vec(&claim.output).map_err(|e| e.to_string())?;
    if claim.output_hash != ContentHash::of(&output) {
        return Err("the claim's output hash is not the hash of its output".into());
    }
    Ok(())
}

/// The checks that tie a claim signed by `signer` to the `lease` it answers: the leased
/// worker signed it, for this lease, having run the leased artifact.
pub fn check_lease(claim: &ResultClaim, signer: &PublicKey, lease: &Lease) -> Result<(), String> {
    if *signer != lease.worker || claim.worker != lease.worker {
        return Err(format!(
            "the claim is not signed by the leased worker {}",
            lease.worker
        ));
    }
    if claim.lease_id != lease.lease_id {
        return Err(format!(
            "the claim answers lease {}, not {}",
            claim.lease_id, lease.lease_id
        ));
    }
    if claim.artifact_cid != lease.artifact_cid {
        return Err(format!(
            "the claim ran artifact {}, not the leased {}",
            claim.artifact_cid, lease.artifact_cid
        ));
    }
    Ok(())
}

/// Rates how much two outputs agree.
pub trait Comparator: Send + Sync {
    /// The method name manifests use.
    fn name(&self) -> &'static str;
    /// Similarity of `a` and `b` in basis points (10 000: the same).
    fn similarity_bps(&self, a: &Value, b: &Value) -> u32;
}

/// Jaccard similarity of the sets of words in all string values of the two outputs (the
/// validator drops their evidence first).
pub struct TokenJaccard;

impl Comparator for TokenJaccard {
    fn name(&self) -> &'static str {
        "token-jaccard"
    }

    fn similarity_bps(&self, a: &Value, b: &Value) -> u32 {
        let (a, b) = (words(a), words(b));
        let union = a.union(&b).count();
        if union == 0 {
            return 10_000;
        }
        (a.intersection(&b).count() * 10_000 / union) as u32
    }
}

fn words(value: &Value) -> std::collections::BTreeSet<String> {
    fn collect(value: &Value, out: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::String(s) => {
                out.extend(
                    s.split(|c: char| !c.is_alphanumeric())
                        .filter(|w| !w.is_empty())
                        .map(str::to_lowercase),
                );
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            Value::Object(map) => map.values().for_each(|v| collect(v, out)),
            other => {
                out.insert(other.to_string());
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    collect(value, &mut out);
    out
}

/// Rates one output on its own.
pub trait Scorer: Send + Sync {
    /// The method name manifests use.
    fn name(&self) -> &'static str;
    /// Quality of `output` in basis points, given the manifest's output schema.
    fn score_bps(&self, output: &Value, output_schema: &Value) -> u32;
}

/// The share of the output schema's declared top-level properties that are present and
/// not empty (an output of a schema without properties scores full marks when not empty).
pub struct SchemaCompleteness;

impl Scorer for SchemaCompleteness {
    fn name(&self) -> &'static str {
        "schema-completeness"
    }

    fn score_bps(&self, output: &Value, output_schema: &Value) -> u32 {
        let filled = |v: Option<&Value>| match v {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        };
        match output_schema.get("properties").and_then(Value::as_object) {
            Some(properties) if !properties.is_empty() => {
                let present = properties
                    .keys()
                    .filter(|k| filled(output.get(k.as_str())))
                    .count();
                (present * 10_000 / properties.len()) as u32
            }
            _ => {
                if filled(Some(output)) {
                    10_000
                } else {
                    0
                }
            }
        }
    }
}

/// How outputs are reduced before comparing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Canonicalization {
    /// The whole output, RFC 8785.
    Exact,
    /// The output without its evidence, RFC 8785.
    Jcs,
    /// As `Jcs`, with the `markdown` field's whitespace normalised.
    Markdown,
}

/// The validator a manifest asks for.
pub struct Validator {
    model: ValidationModel,
    canonicalization: Canonicalization,
    comparator: Option<Box<dyn Comparator>>,
    scorer: Option<Box<dyn Scorer>>,
    threshold_bps: u32,
    replay: bool,
    output_schema: Value,
    /// Top-level output fields that are evidence, not result.
    evidence_fields: Vec<String>,
}

impl Validator {
    /// The validator `manifest.validator` names. Manifest validation already refused
    /// unknown methods, so an unknown name here falls back to the model's default.
    pub fn for_manifest(manifest: &CapabilityManifest) -> Self {
        let spec = &manifest.validator;
        let method = spec.method.as_deref();
        let canonicalization = match (spec.model, method) {
            (ValidationModel::Exact, _) => Canonicalization::Exact,
            (_, Some("markdown")) => Canonicalization::Markdown,
            _ => Canonicalization::Jcs,
        };
        Self {
            model: spec.model,
            canonicalization,
            comparator: (spec.model == ValidationModel::Comparator)
                .then(|| Box::new(TokenJaccard) as Box<dyn Comparator>),
            scorer: (spec.model == ValidationModel::Scoreable)
                .then(|| Box::new(SchemaCompleteness) as Box<dyn Scorer>),
            threshold_bps: spec.threshold_bps.unwrap_or(DEFAULT_THRESHOLD_BPS),
            replay: manifest.determinism == DeterminismClass::SnapshotDeterministic,
            output_schema: manifest.output_schema.clone(),
            evidence_fields: std::iter::once("evidence")
                .chain(
                    manifest
                        .evidence
                        .iter()
                        .map(|path| path.split('.').next().unwrap_or(path)),
                )
                .map(str::to_string)
                .collect(),
        }
    }

    /// The validation model.
    pub fn model(&self) -> ValidationModel {
        self.model
    }

    /// True when claims of this capability are re-run on their snapshots.
    pub fn replays(&self) -> bool {
        self.replay
    }

    /// The model's check of one claim on its own; `reputation` is the worker's score.
    pub fn check_claim(&self, claim: &ResultClaim, reputation: i64) -> Result<(), String> {
        if let Some(scorer) = &self.scorer {
            let score = scorer.score_bps(&claim.output, &self.output_schema);
            if score < self.threshold_bps {
                return Err(format!(
                    "{} scored {score} bps, below the pass mark of {} bps",
                    scorer.name(),
                    self.threshold_bps
                ));
            }
        }
        if self.model == ValidationModel::ReputationOnly && reputation < 0 {
            return Err(format!(
                "the worker's reputation score {reputation} is negative"
            ));
        }
        Ok(())
    }

    /// Whether two outputs agree under this validator.
    pub fn agrees(&self, a: &Value, b: &Value) -> bool {
        match &self.comparator {
            Some(comparator) => {
                comparator.similarity_bps(&self.without_evidence(a), &self.without_evidence(b))
                    >= self.threshold_bps
            }
            None => self.canonical_hash(a) == self.canonical_hash(b),
        }
    }

    /// Whether a replay of a claim reproduced it: the `contentHash` fields match when the
    /// output has one, otherwise the outputs agree.
    pub fn replay_agrees(&self, claimed: &Value, replayed: &Value) -> bool {
        match (claimed.get("contentHash"), replayed.get("contentHash")) {
            (Some(a), Some(b)) => a == b,
            _ => self.agrees(claimed, replayed),
        }
    }

    /// The hash outputs are grouped by: identical hashes agree.
    pub fn canonical_hash(&self, output: &Value) -> ContentHash {
        let reduced = match self.canonicalization {
            Canonicalization::Exact => output.clone(),
            Canonicalization::Jcs => self.without_evidence(output),
            Canonicalization::Markdown => {
                let mut reduced = self.without_evidence(output);
                if let Some(Value::String(markdown)) = reduced.get_mut("markdown") {
                    *markdown = normalise_markdown(markdown);
                }
                reduced
            }
        };
        ContentHash::of(&canonical::to_vec(&reduced).unwrap_or_default())
    }

    fn without_evidence(&self, output: &Value) -> Value {
        let mut output = output.clone();
        if let Some(map) = output.as_object_mut() {
            for field in &self.evidence_fields {
                map.remove(field);
            }
        }
        output
    }
}

/// Trims trailing spaces, collapses runs of blank lines and trims the ends.
fn normalise_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push('\n');
            blank = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// Finds the largest group of mutually agreeing outputs among `outputs`; returns the
/// indices of a group of at least `quorum`, if one exists.
pub fn quorum_group(
    validator: &Validator,
    outputs: &[&Value],
    quorum: usize,
) -> Option<Vec<usize>> {
    (0..outputs.len())
        .map(|i| {
            (0..outputs.len())
                .filter(|&j| validator.agrees(outputs[i], outputs[j]))
                .collect::<Vec<_>>()
        })
        .filter(|group| group.len() >= quorum)
        .max_by_key(Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use d402_protocol::{Amount, Keypair, Timestamp};
    use serde_json::json;

    fn validator(spec: Value) -> Validator {
        let mut manifest = CapabilityManifest::template("example.thing", "1");
        manifest.validator = serde_json::from_value(spec).unwrap();
        manifest.output_schema =
            json!({"type": "object", "properties": {"title": {}, "markdown": {}}});
        Validator::for_manifest(&manifest)
    }

    #[test]
    fn exact_outputs_differ_on_any_field_canonicalized_ones_ignore_evidence() {
        let a = json!({"title": "T", "evidence": {"fetchedAt": "1"}});
        let b = json!({"title": "T", "evidence": {"fetchedAt": "2"}});
        assert!(!validator(json!({"model": "exact"})).agrees(&a, &b));
        assert!(validator(json!({"model": "canonicalized", "method": "jcs"})).agrees(&a, &b));
        let c = json!({"title": "U", "evidence": {"fetchedAt": "1"}});
        assert!(!validator(json!({"model": "canonicalized", "method": "jcs"})).agrees(&a, &c));
    }

    #[test]
    fn markdown_canonicalization_ignores_whitespace_noise_only() {
        let v = validator(json!({"model": "canonicalized", "method": "markdown"}));
        let a = json!({"markdown": "# T\n\n\n\nBody text.  \n"});
        let b = json!({"markdown": "# T\n\nBody text."});
        let c = json!({"markdown": "# T\n\nBody test."});
        assert!(v.agrees(&a, &b));
        assert!(!v.agrees(&a, &c));
    }

    #[test]
    fn token_jaccard_accepts_near_identical_text_and_refuses_different_text() {
        let v = validator(
            json!({"model": "comparator", "method": "token-jaccard", "thresholdBps": 8000}),
        );
        let base = "one two three four five six seven eight nine ten";
        let a = json!({"markdown": base});
        let b = json!({"markdown": format!("{base} eleven")});
        let c = json!({"markdown": "completely unrelated words here"});
        assert!(v.agrees(&a, &b));
        assert!(!v.agrees(&a, &c));
        assert_eq!(TokenJaccard.similarity_bps(&a, &a), 10_000);
    }

    #[test]
    fn schema_completeness_scores_missing_and_empty_fields() {
        let schema = json!({"properties": {"title": {}, "markdown": {}}});
        assert_eq!(
            SchemaCompleteness.score_bps(&json!({"title": "T", "markdown": "m"}), &schema),
            10_000
        );
        assert_eq!(
            SchemaCompleteness.score_bps(&json!({"title": "T", "markdown": "  "}), &schema),
            5_000
        );
        assert_eq!(SchemaCompleteness.score_bps(&json!({}), &json!({})), 0);
    }

    #[test]
    fn quorum_group_finds_the_agreeing_majority() {
        let v = validator(json!({"model": "exact"}));
        let (a, b) = (json!({"x": 1}), json!({"x": 2}));
        assert_eq!(quorum_group(&v, &[&a, &b, &a], 2), Some(vec![0, 2]));
        assert_eq!(quorum_group(&v, &[&a, &b], 2), None);
    }

    #[test]
    fn fields_the_manifest_lists_as_evidence_do_not_decide_agreement() {
        let mut manifest = CapabilityManifest::template("example.thing", "1");
        manifest.validator =
            serde_json::from_value(json!({"model": "canonicalized", "method": "markdown"}))
                .unwrap();
        manifest.evidence = vec!["snapshotCid".into(), "evidence.fetchedAt".into()];
        let v = Validator::for_manifest(&manifest);
        let a = json!({"markdown": "# T", "snapshotCid": "one", "evidence": {"fetchedAt": "1"}});
        let b = json!({"markdown": "# T", "snapshotCid": "two", "evidence": {"fetchedAt": "2"}});
        let c = json!({"markdown": "# U", "snapshotCid": "one", "evidence": {"fetchedAt": "1"}});
        assert!(v.agrees(&a, &b), "two snapshots of the same page agree");
        assert!(!v.agrees(&a, &c), "the result still decides");
        assert!(
            !validator(json!({"model": "canonicalized", "method": "markdown"})).agrees(&a, &b),
            "undeclared fields count"
        );
    }

    #[test]
    fn a_claim_must_come_from_the_leased_worker_for_its_lease_and_artifact() {
        let (gateway, worker, other) = (
            Keypair::from_seed(&[1; 32]),
            Keypair::from_seed(&[2; 32]),
            Keypair::from_seed(&[3; 32]),
        );
        let (artifact, tampered) = (
            ContentId::of_bytes(b"artifact"),
            ContentId::of_bytes(b"tampered"),
        );
        let lease = Lease {
            lease_id: "lease:1:0".into(),
            task_id: "task:1".into(),
            gateway: gateway.public(),
            worker: worker.public(),
            manifest_cid: ContentId::of_bytes(b"manifest"),
            artifact_cid: artifact,
            price: Amount::from_micros(10_000),
            expires_at: Timestamp::now(),
        };
        let claim = ResultClaim {
            task_id: "task:1".into(),
            lease_id: "lease:1:0".into(),
            worker: worker.public(),
            manifest_cid: lease.manifest_cid,
            artifact_cid: artifact,
            input_hash: ContentHash::of(b"{}"),
            output: json!({}),
            output_hash: ContentHash::of(b"{}"),
            snapshot_cids: vec![],
            evidence: json!({}),
            completed_at: Timestamp::now(),
        };
        assert_eq!(check_lease(&claim, &worker.public(), &lease), Ok(()));
        assert!(
            check_lease(&claim, &other.public(), &lease)
                .unwrap_err()
                .contains("leased worker")
        );
        let ran_tampered = ResultClaim {
            artifact_cid: tampered,
            ..claim.clone()
        };
        assert!(
            check_lease(&ran_tampered, &worker.public(), &lease)
                .unwrap_err()
                .contains("ran artifact")
        );
        let other_lease = ResultClaim {
            lease_id: "lease:1:1".into(),
            ..claim
        };
        assert!(
            check_lease(&other_lease, &worker.public(), &lease)
                .unwrap_err()
                .contains("answers lease")
        );
    }
}
