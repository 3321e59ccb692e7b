//! Finds the built capability components to embed: `D402_BUILTIN_WASM_DIR`, else the
//! workspace's `target/wasm32-wasip2/wasm/` (where `scripts/build-capabilities.sh` puts
//! them). Fails with what to run when they are missing.

use std::path::PathBuf;

const COMPONENTS: [(&str, &str); 2] = [
    ("D402_BUILTIN_PAGE_TO_MARKDOWN", "page_to_markdown.wasm"),
    ("D402_BUILTIN_JSON_TRANSFORM", "json_transform.wasm"),
];

fn main() {
    println!("cargo:rerun-if-env-changed=D402_BUILTIN_WASM_DIR");
    let dir = match std::env::var_os("D402_BUILTIN_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm32-wasip2/wasm"),
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
