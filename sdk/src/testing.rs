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
