//! A deliberately misbehaving capability for the sandbox's containment tests. The input's
//! `behaviour` picks what it does; none of it should ever hurt the host.

use d402_sdk::browser::{FetchRequest, RenderMode, fetch};
use d402_sdk::{Capability, RunError, TaskContext};
use serde::Deserialize;
use serde_json::{Value, json};

/// Input: which misbehaviour to perform.
#[derive(Deserialize)]
#[serde(tag = "behaviour", rename_all = "kebab-case")]
pub enum Input {
    /// Return the input text (a well-behaved run).
    Echo {
        /// Text to echo.
        text: String,
    },
    /// Spin forever.
    Loop,
    /// Allocate and touch memory until something gives.
    MemoryBomb {
        /// Bytes per allocation step.
        step: usize,
    },
    /// Return an output of `bytes` bytes.
    OutputFlood {
        /// Output size.
        bytes: usize,
    },
    /// Print to stdout without end.
    StdoutFlood,
    /// Panic with a message.
    Panic,
    /// Report the clock and a random number (to check determinism).
    Entropy,
    /// Grow linear memory by one page, count its bytes that are not zero (fresh memory must be
    /// all zeros, whatever an earlier run left there), then fill it for the next run to find.
    Residue,
    /// Fetch a page through the browser import and return its evidence.
    Fetch {
        /// URL to fetch.
        url: String,
    },
    /// Fetch `count` pages (to exhaust the request budget).
    FetchMany {
        /// URL to fetch.
        url: String,
        /// How many times.
        count: u32,
    },
}

/// The capability.
pub struct Hostile;

impl Capability for Hostile {
    type Input = Input;
    type Output = Value;

    fn run(_ctx: &TaskContext, input: Input) -> Result<Value, RunError> {
        match input {
            Input::Echo { text } => Ok(json!({ "text": text })),
            Input::Loop => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            Input::MemoryBomb { step } => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; step.max(1)]);
                    std::hint::black_box(&hoard);
                }
            }
            Input::OutputFlood { bytes } => Ok(json!({ "text": "x".repeat(bytes) })),
            Input::StdoutFlood => loop {
                println!("{}", "flood ".repeat(1000));
            },
            Input::Residue => residue(),
            Input::Panic => panic!("hostile capability panicked on purpose"),
            Input::Entropy => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                let mut map = std::collections::HashMap::new();
                map.insert("a", 1);
                map.insert("b", 2);
                let order: Vec<&str> = map.keys().copied().collect();
                Ok(json!({ "now": now, "hashOrder": order }))
            }
            Input::Fetch { url } => {
                let page =
                    fetch(&request(&url)).map_err(|e| RunError::UpstreamFailure(e.to_string()))?;
                Ok(json!({
                    "finalUrl": page.final_url,
                    "status": page.status,
                    "bytes": page.body.len(),
                    "snapshotCid": page.snapshot_cid,
                    "body": String::from_utf8_lossy(&page.body),
                }))
            }
            Input::FetchMany { url, count } => {
                for i in 0..count {
                    fetch(&request(&url))
                        .map_err(|e| RunError::UpstreamFailure(format!("fetch {i}: {e}")))?;
                }
                Ok(json!({ "fetched": count }))
            }
        }
    }
}

fn request(url: &str) -> FetchRequest {
    FetchRequest {
        url: url.to_string(),
        render: RenderMode::Never,
        timeout_ms: 5_000,
    }
}

d402_sdk::export_capability!(Hostile);

/// [`Input::Residue`]: the page past the current end of linear memory, read and then dirtied.
#[cfg(target_arch = "wasm32")]
fn residue() -> Result<Value, RunError> {
    const PAGE: usize = 65536;
    let old_pages = core::arch::wasm32::memory_grow(0, 1);
    if old_pages == usize::MAX {
        return Err(RunError::Internal("memory.grow refused one page".into()));
    }
    let offset = old_pages * PAGE;
    // SAFETY: the page was just added to linear memory; nothing else (the allocator included)
    // knows of it, so this is the only reference.
    let page = unsafe { std::slice::from_raw_parts_mut(offset as *mut u8, PAGE) };
    let dirty = page.iter().filter(|&&b| b != 0).count();
    page.fill(0xA5);
    Ok(json!({ "dirtyBytes": dirty, "offset": offset }))
}

/// [`Input::Residue`] needs a wasm linear memory.
#[cfg(not(target_arch = "wasm32"))]
fn residue() -> Result<Value, RunError> {
    Err(RunError::Internal(
        "residue runs only inside the sandbox".into(),
    ))
}
