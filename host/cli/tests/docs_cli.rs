//! `docs/capability-authors.md`, followed literally: every ```sh block of the document is
//! extracted and run, in order, in one empty directory, from `capability new` to paid
//! tasks on a running node and `capability publish`; then what the document says came of
//! it is checked.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The ```sh blocks of a Markdown document, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Kills the node the document started, if a step failed before the document stopped it.
struct StopNode<'a>(&'a Path);

impl Drop for StopNode<'_> {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("state/node/node.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_capability_authors_guide_runs_as_written() {
    let guide = d402_testkit::repo_path("docs/capability-authors.md");
    let blocks = sh_blocks(&std::fs::read_to_string(guide).unwrap());
    assert!(blocks.len() >= 8, "the guide's commands: {blocks:?}");
    let script = format!("set -euo pipefail\nset -x\n{}", blocks.concat());
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _stop = StopNode(dir);
    let bin = Path::new(env!("CARGO_BIN_EXE_d402")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let output = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        // The generated crate shares a target directory with the other tests that build it
        // (the guide's `cp` honours CARGO_TARGET_DIR).
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("outside-crates"),
        )
        .env_remove("D402_STATE")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the guide failed:\n{}\nnode log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
    );

    // What the guide says came of it.
    assert_eq!(
        read_json(&dir.join("task.json"))["task"]["status"],
        "accepted"
    );
    assert_eq!(
        read_json(&dir.join("http-task.json"))["task"]["status"],
        "accepted"
    );
    let creator = std::fs::read_to_string(dir.join("creator.address")).unwrap();
    let buyer = std::fs::read_to_string(dir.join("buyer.address")).unwrap();
    let balances = read_json(&dir.join("balances.json"));
    let account = |address: &str| {
        balances
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == address.trim())
            .unwrap_or_else(|| panic!("{address} in {balances}"))
            .clone()
    };
    assert_eq!(
        account(&creator)["earnedMicros"],
        200,
        "two commissions of $0.0001"
    );
    assert_eq!(
        account(&buyer)["balanceMicros"],
        998_000,
        "two tasks at $0.001"
    );
    let node_log = std::fs::read_to_string(dir.join("node.log")).unwrap();
    assert_eq!(
        node_log.matches("payment accepted").count(),
        2,
        "{node_log}"
    );
    assert!(
        std::fs::read_dir(dir.join("state/quick/registrations"))
            .unwrap()
            .count()
            == 1,
        "publish installed one registration"
    );
    assert!(!dir.join("word-count/state").exists());
}
