//! Logging through the host's `log` import. Lines are attached to the run's evidence.
//! Natively (tests), lines go to stderr.

pub use crate::bindings::d402::capability::log::Level;

/// Records one log line.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::d402::capability::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Records an info line.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Records a warning.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
