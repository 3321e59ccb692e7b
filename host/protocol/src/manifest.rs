//! The capability manifest: what a capability takes, returns, may do and costs.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::content_id::{ContentHash, ContentId};
use crate::error::{Defects, ProtocolError, parse_json};
use crate::money::Price;

/// The manifest format version this crate reads and writes.
pub const MANIFEST_VERSION: u32 = 1;
/// WIT world of capabilities that may use the privileged `browser` import.
pub const WORLD_WEB: &str = "d402:capability/web@0.1.0";
/// WIT world of pure capabilities (only `log`).
pub const WORLD_PURE: &str = "d402:capability/pure@0.1.0";
/// Upper bound on any capability deadline (10 minutes).
pub const MAX_DEADLINE_MS: u64 = 600_000;
/// Upper bound on a capability's linear memory (4 GiB).
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// Lower bound on a capability's linear memory (1 MiB).
pub const MIN_MEMORY_BYTES: u64 = 1 << 20;
/// Upper bound on a capability's output (64 MiB).
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;

/// A capability manifest (`manifestVersion: 1`). Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapabilityManifest {
    /// Always [`MANIFEST_VERSION`].
    pub manifest_version: u32,
    /// Dotted lowercase identifier, e.g. `web.page_to_markdown`; its first segment is the namespace.
    pub id: String,
    /// Version: a major number (`1`) or `major.minor.patch`.
    pub version: String,
    /// What the capability does, for people.
    pub description: String,
    /// Search tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// JSON Schema of the task input (an object).
    pub input_schema: Value,
    /// JSON Schema of the output (an object).
    pub output_schema: Value,
    /// Where and how the capability runs.
    pub runtime: Runtime,
    /// Privileged host access the capability may use. Empty means none.
    #[serde(default)]
    pub permissions: Permissions,
    /// How reproducible the output is.
    pub determinism: DeterminismClass,
    /// How results are validated.
    pub validator: ValidatorSpec,
    /// Dotted paths of output fields that carry evidence, e.g. `snapshotCid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// Pricing unit and all-in price.
    pub pricing: Pricing,
    /// Execution modes gateways may use.
    pub execution_modes: Vec<ExecutionMode>,
    /// Bounds on every run.
    pub limits: Limits,
    /// Performance targets advertised to buyers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceTargets>,
}

/// The runtime boundary: a WASM component for a WIT world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Runtime {
    /// Always `wasm-component`.
    #[serde(rename = "type")]
    pub kind: RuntimeKind,
    /// The WIT world the component targets: [`WORLD_WEB`] or [`WORLD_PURE`].
    pub world: String,
    /// CID of the WASM component. A manifest without it can be registered but not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_cid: Option<ContentId>,
}

/// The kinds of runtime d402 executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// A WebAssembly component run in the wasmtime sandbox.
    WasmComponent,
}

/// Privileged imports a capability may use; everything absent is denied.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permissions {
    /// Access to the `browser` import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<BrowserPermission>,
}

/// What a capability may do through the `browser` import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrowserPermission {
    /// May fetch pages over HTTP(S).
    pub fetch: bool,
    /// May render pages in headless Chromium.
    pub render: bool,
    /// Hosts it may reach: exact names, `*.suffix`, or `*` for any public host.
    pub allowed_hosts: Vec<String>,
    /// Largest response body handed to the capability.
    pub max_response_bytes: u64,
    /// Most pages it may request in one run.
    pub max_requests: u32,
}

impl Permissions {
    /// Names of the permissions granted, e.g. `browser.fetch`.
    pub fn granted(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if let Some(browser) = &self.browser {
            if browser.fetch {
                names.push(PERMISSION_BROWSER_FETCH);
            }
            if browser.render {
                names.push(PERMISSION_BROWSER_RENDER);
            }
        }
        names
    }
}

/// Permission name for fetching pages through the `browser` import.
pub const PERMISSION_BROWSER_FETCH: &str = "browser.fetch";
/// Permission name for rendering pages through the `browser` import.
pub const PERMISSION_BROWSER_RENDER: &str = "browser.render";

/// How reproducible a capability's output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeterminismClass {
    /// A pure function of the input.
    Deterministic,
    /// Deterministic given the recorded fetch snapshots.
    SnapshotDeterministic,
    /// Neither; validated by comparison, scoring or reputation.
    Nondeterministic,
}

/// How result claims are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ValidationModel {
    /// Output bytes must match exactly.
    Exact,
    /// Outputs must match after canonicalisation.
    Canonicalized,
    /// A comparator decides whether two outputs agree.
    Comparator,
    /// A scorer rates an output; it passes above a threshold.
    Scoreable,
    /// Accepted on the worker's reputation alone.
    ReputationOnly,
}

/// The validator a manifest asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidatorSpec {
    /// The validation model.
    pub model: ValidationModel,
    /// Named method: a canonicalisation (`jcs`, `markdown`), comparator or scorer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Pass mark for comparators and scorers, in basis points (0..=10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_bps: Option<u32>,
}

/// Canonicalisations the canonicalized model knows.
pub const CANONICALIZATIONS: &[&str] = &["jcs", "markdown"];
/// Comparators the comparator model knows.
pub const COMPARATORS: &[&str] = &["token-jaccard"];
/// Scorers the scoreable model knows.
pub const SCORERS: &[&str] = &["schema-completeness"];

/// How a capability charges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pricing {
    /// What one price buys.
    pub unit: PricingUnit,
    /// All-in price per unit, e.g. `$0.01`.
    pub price: Price,
}

/// Units a price can be quoted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PricingUnit {
    /// One task.
    Task,
}

impl PricingUnit {
    /// The unit's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Task => "task",
        }
    }
}

/// Execution modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutionMode {
    /// One worker.
    Single,
    /// Several workers, first valid result wins.
    Race,
    /// Several workers, Q must agree.
    Quorum,
}

impl ExecutionMode {
    /// The mode's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Race => "race",
            Self::Quorum => "quorum",
        }
    }
}

/// Bounds enforced on every run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock deadline of one run.
    pub deadline_ms: u64,
    /// Cap on linear memory.
    pub memory_bytes: u64,
    /// Cap on the output JSON.
    pub output_bytes: u64,
    /// Optional fuel budget (wasmtime fuel units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

/// Latency targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PerformanceTargets {
    /// Median latency target.
    pub p50_ms: u64,
    /// 99th percentile latency target.
    pub p99_ms: u64,
}

impl CapabilityManifest {
    /// Parses and validates a manifest document.
    pub fn from_json(text: &str) -> Result<Self, ProtocolError> {
        let manifest: Self = parse_json(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The capability ID buyers and gateways use: `<id>@<major>`.
    pub fn capability_id(&self) -> String {
        let major = self.version.split('.').next().unwrap_or(&self.version);
        format!("{}@{major}", self.id)
    }

    /// The namespace: the first segment of the id.
    pub fn namespace(&self) -> &str {
        self.id.split('.').next().unwrap_or(&self.id)
    }

    /// The manifest CID: sha2-256 over the canonical JSON of the manifest.
    pub fn cid(&self) -> Result<ContentId, ProtocolError> {
        ContentId::of_json(self)
    }

    /// Hash of the input and output schemas together, as registrations record it.
    pub fn schema_hash(&self) -> Result<ContentHash, ProtocolError> {
        let schemas = json!({"inputSchema": self.input_schema, "outputSchema": self.output_schema});
        Ok(ContentHash(ContentId::of_json(&schemas)?.digest()))
    }

    /// Checks every rule a manifest must satisfy and reports all defects at once.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let mut defects = Defects::default();
        defects.check(
            self.manifest_version == MANIFEST_VERSION,
            "manifestVersion",
            format!("must be {MANIFEST_VERSION}"),
        );
        if let Err(reason) = check_capability_name(&self.id) {
            defects.push("id", reason);
        }
        defects.check(
            is_version(&self.version),
            "version",
            "must be a major number like \"1\" or major.minor.patch like \"1.2.0\"",
        );
        defects.check(
            !self.description.trim().is_empty(),
            "description",
            "must not be empty",
        );
        check_tags(&self.tags, &mut defects);
        check_object_schema(&self.input_schema, "inputSchema", &mut defects);
        check_object_schema(&self.output_schema, "outputSchema", &mut defects);
        self.check_runtime(&mut defects);
        self.check_validator(&mut defects);
        self.check_evidence(&mut defects);
        self.check_modes_and_limits(&mut defects);
        defects.into_result()
    }

    fn check_runtime(&self, defects: &mut Defects) {
        let world = self.runtime.world.as_str();
        defects.check(
            world == WORLD_WEB || world == WORLD_PURE,
            "runtime.world",
            format!("unknown WIT world {world:?}; expected {WORLD_PURE:?} or {WORLD_WEB:?}"),
        );
        let Some(browser) = &self.permissions.browser else {
            return;
        };
        defects.check(
            world == WORLD_WEB,
            "permissions.browser",
            format!("the browser permission needs runtime.world {WORLD_WEB:?}"),
        );
        defects.check(
            browser.fetch || browser.render,
            "permissions.browser",
            "grants neither fetch nor render; remove it",
        );
        defects.check(
            !browser.allowed_hosts.is_empty(),
            "permissions.browser.allowedHosts",
            "must list at least one host (or \"*\")",
        );
        for (i, host) in browser.allowed_hosts.iter().enumerate() {
            if !is_host_pattern(host) {
                defects.push(
                    format!("permissions.browser.allowedHosts[{i}]"),
                    format!("{host:?} is not a host name, *.suffix or *"),
                );
            }
        }
        defects.check(
            (1..=MAX_OUTPUT_BYTES * 4).contains(&browser.max_response_bytes),
            "permissions.browser.maxResponseBytes",
            format!("must be between 1 and {}", MAX_OUTPUT_BYTES * 4),
        );
        defects.check(
            (1..=100).contains(&browser.max_requests),
            "permissions.browser.maxRequests",
            "must be between 1 and 100",
        );
        if self.determinism == DeterminismClass::Deterministic {
            defects.push(
                "determinism",
                "a capability with the browser permission cannot be deterministic; use snapshot-deterministic",
            );
        }
    }

    fn check_validator(&self, defects: &mut Defects) {
        let spec = &self.validator;
        let method = spec.method.as_deref();
        let model = model_name(spec.model);
        let known: &[&str] = match spec.model {
            ValidationModel::Canonicalized => CANONICALIZATIONS,
            ValidationModel::Comparator => COMPARATORS,
            ValidationModel::Scoreable => SCORERS,
            ValidationModel::Exact | ValidationModel::ReputationOnly => &[],
        };
        match (known.is_empty(), method) {
            (true, Some(m)) => defects.push(
                "validator.method",
                format!("{m:?} given, but model {model} takes no method"),
            ),
            (false, None) => defects.push(
                "validator.method",
                format!("model {model} needs one of {known:?}"),
            ),
            (false, Some(m)) if !known.contains(&m) => defects.push(
                "validator.method",
                format!("unknown method {m:?}; expected one of {known:?}"),
            ),
            _ => {}
        }
        let needs_threshold = matches!(
            spec.model,
            ValidationModel::Comparator | ValidationModel::Scoreable
        );
        match spec.threshold_bps {
            None if needs_threshold => defects.push(
                "validator.thresholdBps",
                "comparator and scoreable models need a threshold",
            ),
            Some(_) if !needs_threshold => defects.push(
                "validator.thresholdBps",
                "only comparator and scoreable models take a threshold",
            ),
            Some(t) if t > 10_000 => {
                defects.push("validator.thresholdBps", "must be at most 10000")
            }
            _ => {}
        }
        if spec.model == ValidationModel::Exact
            && self.determinism == DeterminismClass::Nondeterministic
        {
            defects.push(
                "validator.model",
                "exact validation cannot work for a nondeterministic capability",
            );
        }
    }

    fn check_evidence(&self, defects: &mut Defects) {
        let declared = self
            .output_schema
            .get("properties")
            .and_then(Value::as_object);
        for (i, path) in self.evidence.iter().enumerate() {
            let field = format!("evidence[{i}]");
            let top = path.split('.').next().unwrap_or_default();
            if top.is_empty() || path.split('.').any(str::is_empty) {
                defects.push(field, format!("{path:?} is not a dotted field path"));
            } else if let Some(props) = declared
                && !props.contains_key(top)
            {
                defects.push(field, format!("{top:?} is not a property of outputSchema"));
            } else if self.evidence[..i].contains(path) {
                defects.push(field, format!("{path:?} is listed twice"));
            }
        }
    }

    fn check_modes_and_limits(&self, defects: &mut Defects) {
        defects.check(
            !self.execution_modes.is_empty(),
            "executionModes",
            "must list at least one mode",
        );
        for (i, mode) in self.execution_modes.iter().enumerate() {
            if self.execution_modes[..i].contains(mode) {
                defects.push(
                    format!("executionModes[{i}]"),
                    format!("{mode:?} is listed twice"),
                );
            }
        }
        let limits = &self.limits;
        defects.check(
            (1..=MAX_DEADLINE_MS).contains(&limits.deadline_ms),
            "limits.deadlineMs",
            format!("must be between 1 and {MAX_DEADLINE_MS}"),
        );
        defects.check(
            (MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&limits.memory_bytes),
            "limits.memoryBytes",
            format!("must be between {MIN_MEMORY_BYTES} and {MAX_MEMORY_BYTES}"),
        );
        defects.check(
            (1..=MAX_OUTPUT_BYTES).contains(&limits.output_bytes),
            "limits.outputBytes",
            format!("must be between 1 and {MAX_OUTPUT_BYTES}"),
        );
        defects.check(
            limits.fuel != Some(0),
            "limits.fuel",
            "must be positive when set",
        );
        defects.check(
            self.pricing.price.0.micros() > 0,
            "pricing.price",
            "must be more than $0",
        );
        if let Some(perf) = &self.performance {
            defects.check(
                perf.p50_ms <= perf.p99_ms,
                "performance.p50Ms",
                "must not exceed p99Ms",
            );
            defects.check(
                perf.p99_ms <= limits.deadline_ms,
                "performance.p99Ms",
                "must not exceed limits.deadlineMs",
            );
        }
    }

    /// Compiles the input and output schemas for validating task data.
    pub fn compile_schemas(&self) -> Result<CompiledSchemas, ProtocolError> {
        let compile = |schema: &Value, field: &str| {
            jsonschema::validator_for(schema).map_err(|e| {
                ProtocolError::Invalid(vec![crate::Defect::new(
                    field,
                    format!("invalid JSON Schema: {e}"),
                )])
            })
        };
        Ok(CompiledSchemas {
            input: compile(&self.input_schema, "inputSchema")?,
            output: compile(&self.output_schema, "outputSchema")?,
        })
    }

    /// A valid starting manifest for a new capability (pure world, no artifact yet).
    pub fn template(id: &str, version: &str) -> Self {
        Self {
            manifest_version: MANIFEST_VERSION,
            id: id.to_string(),
            version: version.to_string(),
            description: format!("{id}: describe what this capability does."),
            tags: vec![id.split('.').next().unwrap_or(id).to_string()],
            input_schema: json!({
                "type": "object",
                "properties": {"text": {"type": "string", "maxLength": 100000}},
                "required": ["text"],
                "additionalProperties": false
            }),
            output_schema: json!({
                "type": "object",
                "properties": {"result": {"type": "string"}},
                "required": ["result"]
            }),
            runtime: Runtime {
                kind: RuntimeKind::WasmComponent,
                world: WORLD_PURE.to_string(),
                artifact_cid: None,
            },
            permissions: Permissions::default(),
            determinism: DeterminismClass::Deterministic,
            validator: ValidatorSpec {
                model: ValidationModel::Canonicalized,
                method: Some("jcs".to_string()),
                threshold_bps: None,
            },
            evidence: Vec::new(),
            pricing: Pricing {
                unit: PricingUnit::Task,
                price: "$0.001".parse().expect("valid price literal"),
            },
            execution_modes: vec![
                ExecutionMode::Single,
                ExecutionMode::Race,
                ExecutionMode::Quorum,
            ],
            limits: Limits {
                deadline_ms: 5_000,
                memory_bytes: 64 << 20,
                output_bytes: 1 << 20,
                fuel: None,
            },
            performance: Some(PerformanceTargets {
                p50_ms: 50,
                p99_ms: 500,
            }),
        }
    }
}

/// A manifest's schemas, compiled once for validating many inputs and outputs.
pub struct CompiledSchemas {
    input: jsonschema::Validator,
    output: jsonschema::Validator,
}

impl CompiledSchemas {
    /// Checks a task input against the input schema.
    pub fn validate_input(&self, input: &Value) -> Result<(), ProtocolError> {
        check_instance(&self.input, input, "input")
    }

    /// Checks an output against the output schema.
    pub fn validate_output(&self, output: &Value) -> Result<(), ProtocolError> {
        check_instance(&self.output, output, "output")
    }
}

fn check_instance(
    validator: &jsonschema::Validator,
    value: &Value,
    root: &str,
) -> Result<(), ProtocolError> {
    let mut defects = Defects::default();
    for error in validator.iter_errors(value).take(20) {
        let pointer = error.instance_path().to_string();
        let field = if pointer.is_empty() {
            root.to_string()
        } else {
            format!("{root}{}", pointer.replace('/', "."))
        };
        defects.push(field, error.to_string());
    }
    defects.into_result()
}

/// Checks a dotted capability identifier such as `web.page_to_markdown`.
pub fn check_capability_name(id: &str) -> Result<(), String> {
    let segments: Vec<&str> = id.split('.').collect();
    if segments.len() < 2 {
        return Err(format!(
            "{id:?} must have a namespace and a name, like example.extract_product"
        ));
    }
    for segment in segments {
        let mut chars = segment.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if !starts_with_letter
            || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "segment {segment:?} of {id:?} must start with a-z and hold only a-z, 0-9 and _"
            ));
        }
    }
    if id.len() > 128 {
        return Err("must be at most 128 characters".into());
    }
    Ok(())
}

/// The wire name of a validation model, e.g. `reputation-only`.
pub fn model_name(model: ValidationModel) -> String {
    serde_json::to_value(model)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn is_version(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    (parts.len() == 1 || parts.len() == 3)
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 9
                && p.bytes().all(|b| b.is_ascii_digit())
                && !(p.len() > 1 && p.starts_with('0'))
        })
}

fn check_tags(tags: &[String], defects: &mut Defects) {
    defects.check(tags.len() <= 16, "tags", "at most 16 tags");
    for (i, tag) in tags.iter().enumerate() {
        let ok = !tag.is_empty()
            && tag.len() <= 32
            && tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            defects.push(
                format!("tags[{i}]"),
                format!("{tag:?} must be 1-32 of a-z, 0-9, - and _"),
            );
        }
    }
}

fn check_object_schema(schema: &Value, field: &str, defects: &mut Defects) {
    if let Err(e) = jsonschema::meta::validate(schema) {
        let at = e.instance_path().to_string().replace('/', ".");
        defects.push(format!("{field}{at}"), format!("invalid JSON Schema: {e}"));
        return;
    }
    if let Err(e) = jsonschema::validator_for(schema) {
        defects.push(field, format!("invalid JSON Schema: {e}"));
        return;
    }
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        defects.push(field, "must describe a JSON object (\"type\": \"object\")");
    }
}

fn is_host_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let host = pattern.strip_prefix("*.").unwrap_or(pattern);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
