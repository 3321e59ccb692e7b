//! Finds the built capability components to embed: `D402_BUILTIN_WASM_DIR`, else
//! `wasm32-wasip2/wasm/` in the cargo target directory (`CARGO_TARGET_DIR`, else the
//! workspace's `target/`), where `scripts/build-capabilities.sh` puts them. Fails with what
//! to run when they are missing.

use std::path::PathBuf;

const COMPONENTS: [(&str, &str); 2] = [
    ("D402_BUILTIN_PAGE_TO_MARKDOWN", "page_to_markdown.wasm"),
    ("D402_BUILTIN_JSON_TRANSFORM", "json_transform.wasm"),
];

fn main() {
    println!("cargo:rerun-if-env-changed=D402_BUILTIN_WASM_DIR");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let dir = match std::env::var_os("D402_BUILTIN_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("wasm32-wasip2/wasm"),
    };
    for (variable, file) in COMPONENTS {
        let path = dir.join(file);
        let Ok(path) = path.canonicalize() else {
            panic!(
                "the built-in capability component {} is missing: run scripts/build-capabilities.sh \
                 first (or set D402_BUILTIN_WASM_DIR to a directory holding {file})",
                path.display()
            );
        };
        println!("cargo:rerun-if-changed={}", path.display());
        println!("cargo:rustc-env={variable}={}", path.display());
    }
}
