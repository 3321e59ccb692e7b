//! Host bindings generated from `wit/capability.wit`. The `web` world is a superset of
//! `pure` (same export, one more import), so one set of bindings serves both.

wasmtime::component::bindgen!({
    world: "web",
    path: "../../wit",
    imports: { default: async },
    exports: { default: async },
});

pub use d402::capability::{browser, log, types};
