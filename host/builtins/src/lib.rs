//! The capabilities every d402 binary carries, so a node on an empty state directory serves
//! something with no install step: their manifests as published in `capabilities/` and
//! their components as built by `scripts/build-capabilities.sh` (embedded at build time; the
//! node installs them digest-checked, like any package).

/// A built-in capability.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Its folder under `capabilities/`.
    pub name: &'static str,
    /// The manifest JSON text.
    pub manifest: &'static str,
    /// The component bytes.
    pub wasm: &'static [u8],
}

/// Every built-in capability; the first is the node's default.
pub const BUILTINS: [Builtin; 2] = [
    Builtin {
        name: "page-to-markdown",
        manifest: include_str!("../../../capabilities/page-to-markdown/manifest.json"),
        wasm: include_bytes!(env!("D402_BUILTIN_PAGE_TO_MARKDOWN")),
    },
    Builtin {
        name: "json-transform",
        manifest: include_str!("../../../capabilities/json-transform/manifest.json"),
        wasm: include_bytes!(env!("D402_BUILTIN_JSON_TRANSFORM")),
    },
];
