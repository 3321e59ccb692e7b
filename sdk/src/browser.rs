//! Fetching pages through the host's privileged `browser` import (feature `browser`).
//!
//! The host checks every request against the manifest's permission (allowed hosts, request
//! budget, byte cap, public addresses only). Natively (tests), requests are answered from
//! pages registered with [`crate::testing::serve_page`].

pub use crate::bindings::d402::capability::browser::{FetchError, FetchRequest, Page, RenderMode};

/// Fetches a page.
pub fn fetch(request: &FetchRequest) -> Result<Page, FetchError> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::d402::capability::browser::fetch(request);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::fetch_test_page(request);
}
