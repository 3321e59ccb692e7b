//! Running `d402` and `d402-agent` in the agent's process-level tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `d402` binary, built beside this package's binary by the workspace test run.
pub fn d402_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_d402-agent")).with_file_name("d402");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p d402-cli`",
        path.display()
    );
    path
}

/// `d402 ARGS` in `dir`.
pub fn d402(dir: &Path, args: &[&str]) -> Output {
    Command::new(d402_binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `d402-agent --config agent/config.toml ARGS` in `dir`.
pub fn agent(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_d402-agent"))
        .args(["--config", "agent/config.toml"])
        .args(args)
        .current_dir(dir)
        .env_remove("D402_BUYER_KEYPAIR")
        .output()
        .unwrap()
}

/// The stdout of a command that must succeed.
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
