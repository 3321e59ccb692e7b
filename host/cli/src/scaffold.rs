//! `d402 capability new`: a working capability crate and manifest from a template.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use d402_protocol::CapabilityManifest;

use crate::files::write_json;

const CARGO_TOML: &str = include_str!("../templates/new-capability/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../templates/new-capability/lib.rs.tmpl");

/// Where this build of `d402` finds the SDK when `--sdk-path` is not given.
fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk")
}

/// Creates `<dir>/<name>/` with Cargo.toml, src/lib.rs and manifest.json.
pub fn new_capability(
    name: &str,
    id: Option<&str>,
    dir: &Path,
    sdk_path: Option<&Path>,
) -> anyhow::Result<()> {
    let valid_name = !name.is_empty()
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid_name {
        bail!("NAME {name:?}: use lowercase letters, digits, - and _, starting with a letter");
    }
    let lib = name.replace('-', "_");
    let id = id.map_or_else(|| format!("local.{lib}"), str::to_string);
    let manifest = CapabilityManifest::template(&id, "1");
    manifest
        .validate()
        .with_context(|| format!("--id {id:?} is not a valid capability id"))?;
    let sdk = sdk_path.map_or_else(default_sdk_path, Path::to_path_buf);
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("the d402 SDK is not at {} (pass --sdk-path)", sdk.display()))?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let fill = |template: &str| {
        template
            .replace("{{crate}}", name)
            .replace("{{lib}}", &lib)
            .replace("{{id}}", &id)
            .replace("{{sdk_path}}", &sdk.display().to_string())
    };
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::write(root.join("Cargo.toml"), fill(CARGO_TOML))?;
    std::fs::write(root.join("src/lib.rs"), fill(LIB_RS))?;
    std::fs::write(root.join(".gitignore"), "/target\n")?;
    write_json(&root.join("manifest.json"), &manifest)?;
    println!("created {} ({id}@1)", root.display());
    println!(
        "build:  cd {} && cargo build --release --target wasm32-wasip2",
        root.display()
    );
    println!(
        "run:    d402 capability run --manifest manifest.json --wasm target/wasm32-wasip2/release/{lib}.wasm --input '{{\"text\":\"a b c\"}}'"
    );
    Ok(())
}
