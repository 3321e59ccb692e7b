//! Which imports a component may have: deny by default.

use d402_protocol::{CapabilityManifest, PERMISSION_BROWSER_FETCH, PERMISSION_BROWSER_RENDER};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// WASI interfaces every component may import: streams for stdio, the (empty) environment,
/// exit, clocks and randomness (both fixed for deterministic classes), and the filesystem
/// interfaces with no preopened directory (nothing to open). No sockets, no HTTP.
const WASI_ALWAYS: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// d402 interfaces every component may import.
const D402_ALWAYS: &[&str] = &["d402:capability/types", "d402:capability/log"];

/// The privileged browser interface.
pub const BROWSER_INTERFACE: &str = "d402:capability/browser";

/// Refuses the component if it imports anything `manifest` does not permit, naming the
/// import and the missing permission.
pub fn check(
    component: &Component,
    engine: &Engine,
    manifest: &CapabilityManifest,
) -> Result<(), LoadError> {
    let granted = manifest.permissions.granted();
    for (name, _) in component.component_type().imports(engine) {
        let unversioned = name.split('@').next().unwrap_or(name);
        if WASI_ALWAYS.contains(&unversioned) || D402_ALWAYS.contains(&unversioned) {
            continue;
        }
        if unversioned == BROWSER_INTERFACE {
            if granted.contains(&PERMISSION_BROWSER_FETCH)
                || granted.contains(&PERMISSION_BROWSER_RENDER)
            {
                continue;
            }
            return Err(LoadError::ForbiddenImport {
                import: name.to_string(),
                reason: format!(
                    "but its manifest declares neither the {PERMISSION_BROWSER_FETCH} nor the {PERMISSION_BROWSER_RENDER} permission"
                ),
            });
        }
        let reason =
            if unversioned.starts_with("wasi:sockets/") || unversioned.starts_with("wasi:http/") {
                "but capabilities get no network access except through the browser permission"
                    .to_string()
            } else {
                "which no d402 permission provides".to_string()
            };
        return Err(LoadError::ForbiddenImport {
            import: name.to_string(),
            reason,
        });
    }
    Ok(())
}
