//! The d402 capability SDK.
//!
//! A capability is a Rust library crate (`crate-type = ["cdylib"]`) built with
//! `cargo build --target wasm32-wasip2`. It implements [`Capability`] with serde input and
//! output types and exports it with [`export_capability!`]:
//!
//! ```ignore
//! use d402_sdk::{Capability, RunError, TaskContext};
//!
//! struct Shout;
//! impl Capability for Shout {
//!     type Input = String;
//!     type Output = String;
//!     fn run(_ctx: &TaskContext, input: String) -> Result<String, RunError> {
//!         Ok(input.to_uppercase())
//!     }
//! }
//! d402_sdk::export_capability!(Shout);
//! ```
//!
//! Without features the SDK targets the `pure` WIT world (only `log`); the `browser`
//! feature selects the `web` world and adds [`browser`]. On native targets the host imports
//! are replaced by test doubles (see [`testing`]), so `cargo test` runs capability logic
//! natively.

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub mod bindings {
    #[cfg(not(feature = "browser"))]
    wit_bindgen::generate!({
        world: "pure",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "d402_sdk::bindings",
    });
    #[cfg(feature = "browser")]
    wit_bindgen::generate!({
        world: "web",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "d402_sdk::bindings",
    });
}

#[cfg(feature = "browser")]
pub mod browser;
pub mod log;
pub mod testing;

pub use bindings::d402::capability::types::{RunError, TaskContext};

/// A capability: typed input in, typed output out.
pub trait Capability {
    /// The task input, deserialised from the JSON the buyer sent (already schema-checked
    /// by the host).
    type Input: DeserializeOwned;
    /// The output, serialised to JSON for the buyer.
    type Output: Serialize;

    /// Runs the capability.
    fn run(ctx: &TaskContext, input: Self::Input) -> Result<Self::Output, RunError>;
}

/// Decodes JSON input, runs `C`, encodes its output. Used by [`export_capability!`]; call it
/// directly to test a capability natively with JSON text.
pub fn run_json<C: Capability>(ctx: &TaskContext, input: &str) -> Result<String, RunError> {
    let input: C::Input = serde_json::from_str(input).map_err(|e| {
        RunError::InvalidInput(format!("input does not match the capability's type: {e}"))
    })?;
    let output = C::run(ctx, input)?;
    serde_json::to_string(&output)
        .map_err(|e| RunError::Internal(format!("cannot encode output: {e}")))
}

/// Exports a [`Capability`] implementation as the component's `capability.run`.
#[macro_export]
macro_rules! export_capability {
    ($capability:ty) => {
        #[doc(hidden)]
        pub struct __D402Export;

        impl $crate::bindings::exports::d402::capability::capability::Guest for __D402Export {
            fn run(
                context: $crate::TaskContext,
                input: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::RunError> {
                $crate::run_json::<$capability>(&context, &input)
            }
        }

        // Component exports exist only in the wasm build; native builds (tests, cdylib)
        // cannot carry WIT export names such as `d402:capability/capability@0.1.0#run`.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_world!(__D402Export with_types_in $crate::bindings);
    };
}
