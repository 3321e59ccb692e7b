//! Helpers for testing capabilities natively with `cargo test`.

use crate::TaskContext;

/// A task context for tests.
pub fn context(capability_id: &str) -> TaskContext {
    TaskContext {
        task_id: "task:test".to_string(),
        capability_id: capability_id.to_string(),
        manifest_cid: String::new(),
        deadline_ms: 10_000,
    }
}

/// Why [`check_against_manifest`] failed: which side does not match the manifest.
#[cfg(feature = "schema-check")]
#[derive(Debug)]
pub enum SchemaMismatch {
    /// The manifest is not JSON with object `inputSchema` and `outputSchema`.
    Manifest(String),
    /// The sample input does not satisfy `inputSchema` (the host would refuse it).
    Input(String),
    /// Schema-valid input that the Rust `Input` type does not accept.
    InputType(String),
    /// The capability failed on the sample.
    Run(crate::RunError),
    /// The output of the Rust `Output` type does not satisfy `outputSchema`.
    Output(String),
}

#[cfg(feature = "schema-check")]
impl std::fmt::Display for SchemaMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Manifest(e) => write!(f, "manifest: {e}"),
            Self::Input(e) => write!(f, "the sample input does not match inputSchema: {e}"),
            Self::InputType(e) => write!(
                f,
                "inputSchema accepts the sample but the Input type does not: {e}"
            ),
            Self::Run(e) => write!(f, "the capability failed on the sample: {e:?}"),
            Self::Output(e) => write!(f, "the Output does not match outputSchema: {e}"),
        }
    }
}

/// Checks a capability's Rust types against its manifest's schemas with a sample input
/// (JSON text): the sample must satisfy `inputSchema` (as the host checks before the guest
/// runs), the `Input` type must accept it, and the `Output` the capability returns must
/// satisfy `outputSchema` (as the host checks after). Returns the output as JSON.
#[cfg(feature = "schema-check")]
pub fn check_against_manifest<C: crate::Capability>(
    manifest_json: &str,
    input_json: &str,
) -> Result<serde_json::Value, SchemaMismatch> {
    let manifest: serde_json::Value =
        serde_json::from_str(manifest_json).map_err(|e| SchemaMismatch::Manifest(e.to_string()))?;
    let validator = |key: &str| {
        jsonschema::validator_for(&manifest[key])
            .map_err(|e| SchemaMismatch::Manifest(format!("{key}: {e}")))
    };
    let (inputs, outputs) = (validator("inputSchema")?, validator("outputSchema")?);
    let input: serde_json::Value =
        serde_json::from_str(input_json).map_err(|e| SchemaMismatch::Input(e.to_string()))?;
    if let Some(error) = inputs.iter_errors(&input).next() {
        return Err(SchemaMismatch::Input(format!(
            "{} at {}",
            error,
            error.instance_path()
        )));
    }
    let typed: C::Input =
        serde_json::from_value(input).map_err(|e| SchemaMismatch::InputType(e.to_string()))?;
    let output = C::run(&context("schema-check"), typed).map_err(SchemaMismatch::Run)?;
    let output =
        serde_json::to_value(&output).map_err(|e| SchemaMismatch::Output(e.to_string()))?;
    if let Some(error) = outputs.iter_errors(&output).next() {
        return Err(SchemaMismatch::Output(format!(
            "{} at {}",
            error,
            error.instance_path()
        )));
    }
    Ok(output)
}

#[cfg(all(feature = "browser", not(target_arch = "wasm32")))]
mod pages {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use crate::browser::{FetchError, FetchRequest, Page};

    thread_local! {
        static PAGES: RefCell<HashMap<String, Page>> = RefCell::new(HashMap::new());
    }

    /// Serves `body` as an HTML page at `url` to this thread's native test fetches.
    pub fn serve_page(url: &str, body: &[u8]) {
        let page = Page {
            final_url: url.to_string(),
            status: 200,
            content_type: "text/html; charset=utf-8".to_string(),
            body: body.to_vec(),
            rendered: false,
            snapshot_cid: String::new(),
            snapshotter_version: "d402-sdk-test".to_string(),
            fetched_at: "1970-01-01T00:00:00.000Z".to_string(),
        };
        PAGES.with(|pages| pages.borrow_mut().insert(url.to_string(), page));
    }

    pub(crate) fn fetch_test_page(request: &FetchRequest) -> Result<Page, FetchError> {
        PAGES
            .with(|pages| pages.borrow().get(&request.url).cloned())
            .ok_or_else(|| {
                FetchError::Upstream(format!("no test page registered for {}", request.url))
            })
    }
}

#[cfg(all(feature = "browser", not(target_arch = "wasm32")))]
pub(crate) use pages::fetch_test_page;
#[cfg(all(feature = "browser", not(target_arch = "wasm32")))]
pub use pages::serve_page;
