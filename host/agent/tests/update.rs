//! Threshold-signed releases end to end: `d402 release keygen|manifest|sign` and
//! `d402-agent update check|apply`, with one test per attack: an untrusted key, k−1
//! signatures, k copies of one key's signature, an older sequence, an expired manifest,
//! an artifact whose hash or size differs, a manifest for another component or channel,
//! and kill -9 during apply (the old version intact).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{agent, d402, ok};

/// Release keys `names` (key.pem / key.json each).
fn keys(dir: &Path, names: &[&str]) {
    for name in names {
        ok(d402(
            dir,
            &[
                "release",
                "keygen",
                "--private-key-file",
                &format!("{name}.pem"),
                "--public-key-file",
                &format!("{name}.json"),
            ],
        ));
    }
}

/// An unsigned manifest `file` for `release/agent-bin` with these overrides.
fn manifest(dir: &Path, file: &str, component: &str, channel: &str, sequence: u64) {
    ok(d402(
        dir,
        &[
            "release",
            "manifest",
            "--component",
            component,
            "--package-name",
            "@d402/agent",
            "--version",
            "0.2.0",
            "--artifact-type",
            "binary",
            "--artifact",
            "release/agent-bin",
            "--channel",
            channel,
            "--sequence",
            &sequence.to_string(),
            "--expires-in-days",
            "30",
            "--output",
            file,
        ],
    ));
}

fn sign(dir: &Path, file: &str, key: &str) {
    ok(d402(
        dir,
        &[
            "release",
            "sign",
            "--file",
            file,
            "--private-key-file",
            &format!("{key}.pem"),
        ],
    ));
}

/// `update <verb> --manifest file` trusting k1 and k2 (both required).
fn update(dir: &Path, verb: &str, file: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "update",
        verb,
        "--manifest",
        file,
        "--trusted-key-file",
        "k1.json",
        "--trusted-key-file",
        "k2.json",
        "--install-dir",
        "installed",
    ];
    if verb == "check" {
        args.truncate(args.len() - 2);
    }
    args.extend(extra);
    agent(dir, &args)
}

fn refused(output: Output, why: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(why), "expected {why:?}: {stderr}");
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::fs::create_dir_all(path.join("release")).unwrap();
    std::fs::create_dir_all(path.join("installed")).unwrap();
    std::fs::write(path.join("release/agent-bin"), b"new agent build").unwrap();
    std::fs::write(path.join("installed/agent-bin"), b"old agent build").unwrap();
    keys(&path, &["k1", "k2", "k3"]);
    (dir, path)
}

#[test]
fn a_release_signed_by_k_trusted_keys_is_verified_then_applied_only_as_policy_allows() {
    let (_guard, dir) = setup();
    let dir = dir.as_path();
    manifest(dir, "release/release.json", "agent", "stable", 5);
    sign(dir, "release/release.json", "k1");
    sign(dir, "release/release.json", "k1"); // idempotent
    sign(dir, "release/release.json", "k2");
    let signed: Value =
        serde_json::from_slice(&std::fs::read(dir.join("release/release.json")).unwrap()).unwrap();
    assert_eq!(signed["signatures"].as_array().unwrap().len(), 2);

    let checked: Value = serde_json::from_str(&ok(update(
        dir,
        "check",
        "release/release.json",
        &["--json"],
    )))
    .unwrap();
    assert_eq!(
        (checked["decision"].as_str(), checked["sequence"].as_u64()),
        (Some("notify"), Some(5)),
        "{checked}"
    );
    assert!(checked["manifestCid"].as_str().unwrap().starts_with("bafk"));
    // The local policy only notifies: not applied without --force.
    let held = update(dir, "apply", "release/release.json", &[]);
    assert_eq!(held.status.code(), Some(2));
    assert_eq!(
        std::fs::read(dir.join("installed/agent-bin")).unwrap(),
        b"old agent build"
    );
    ok(update(
        dir,
        "apply",
        "release/release.json",
        &["--force", "true"],
    ));
    assert_eq!(
        std::fs::read(dir.join("installed/agent-bin")).unwrap(),
        b"new agent build"
    );
    assert_eq!(
        std::fs::read(dir.join("installed/agent-bin.previous")).unwrap(),
        b"old agent build"
    );
    // The same manifest again is a replay.
    refused(
        update(dir, "check", "release/release.json", &[]),
        "sequence 5 is not above 5",
    );
}

#[test]
fn each_attack_on_a_release_is_refused() {
    let (_guard, dir) = setup();
    let dir = dir.as_path();
    let check = |file: &str| update(dir, "check", file, &[]);

    manifest(dir, "release/untrusted.json", "agent", "stable", 7);
    sign(dir, "release/untrusted.json", "k1");
    sign(dir, "release/untrusted.json", "k3");
    refused(
        check("release/untrusted.json"),
        "1 trusted signature(s), 2 required",
    );

    manifest(dir, "release/short.json", "agent", "stable", 7);
    sign(dir, "release/short.json", "k1");
    refused(
        check("release/short.json"),
        "1 trusted signature(s), 2 required",
    );

    // Two copies of k1's signature are one signature.
    let mut copies: Value =
        serde_json::from_slice(&std::fs::read(dir.join("release/short.json")).unwrap()).unwrap();
    let entry = copies["signatures"][0].clone();
    copies["signatures"].as_array_mut().unwrap().push(entry);
    std::fs::write(dir.join("release/copies.json"), copies.to_string()).unwrap();
    refused(
        check("release/copies.json"),
        "1 trusted signature(s), 2 required",
    );

    // Expired: the expiry moved into the past and signed again by both keys.
    manifest(dir, "release/expired.json", "agent", "stable", 7);
    let mut expired: Value =
        serde_json::from_slice(&std::fs::read(dir.join("release/expired.json")).unwrap()).unwrap();
    expired["payload"]["expiresAt"] = "2020-01-01T00:00:00.000Z".into();
    std::fs::write(dir.join("release/expired.json"), expired.to_string()).unwrap();
    sign(dir, "release/expired.json", "k1");
    sign(dir, "release/expired.json", "k2");
    refused(check("release/expired.json"), "expired");

    for (file, component, channel, why) in [
        (
            "release/node.json",
            "node",
            "stable",
            "for component \"node\"",
        ),
        ("release/beta.json", "agent", "beta", "for channel \"beta\""),
    ] {
        manifest(dir, file, component, channel, 7);
        sign(dir, file, "k1");
        sign(dir, file, "k2");
        refused(check(file), why);
    }

    manifest(dir, "release/good.json", "agent", "stable", 7);
    sign(dir, "release/good.json", "k1");
    sign(dir, "release/good.json", "k2");
    ok(check("release/good.json"));
    std::fs::write(dir.join("release/agent-bin"), b"NEW agent build").unwrap();
    refused(check("release/good.json"), "SHA-256");
    std::fs::write(dir.join("release/agent-bin"), b"new agent build!").unwrap();
    refused(
        check("release/good.json"),
        "is 16 bytes, the manifest says 15",
    );
    std::fs::write(dir.join("release/agent-bin"), b"new agent build").unwrap();

    // After 7 is applied, an older sequence is a rollback.
    ok(update(
        dir,
        "apply",
        "release/good.json",
        &["--force", "true"],
    ));
    manifest(dir, "release/older.json", "agent", "stable", 6);
    sign(dir, "release/older.json", "k1");
    sign(dir, "release/older.json", "k2");
    refused(check("release/older.json"), "sequence 6 is not above 7");
}

#[test]
fn a_kill_during_apply_leaves_the_old_version_or_the_new_one_whole() {
    let (_guard, dir) = setup();
    let dir = dir.as_path();
    let old: Vec<u8> = (0..48 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let new: Vec<u8> = (0..48 * 1024 * 1024).map(|i| (i % 241) as u8).collect();
    std::fs::write(dir.join("release/agent-bin"), &new).unwrap();
    manifest(dir, "release/big.json", "agent", "stable", 9);
    sign(dir, "release/big.json", "k1");
    sign(dir, "release/big.json", "k2");
    let mut interrupted = 0;
    for delay_ms in [5, 40, 120, 300] {
        std::fs::write(dir.join("installed/agent-bin"), &old).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_d402-agent"))
            .args([
                "--config",
                "agent/config.toml",
                "update",
                "apply",
                "--manifest",
                "release/big.json",
            ])
            .args([
                "--trusted-key-file",
                "k1.json",
                "--trusted-key-file",
                "k2.json",
                "--install-dir",
                "installed",
                "--force",
                "true",
            ])
            .current_dir(dir)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let installed = std::fs::read(dir.join("installed/agent-bin")).unwrap();
        assert!(
            installed == old || installed == new,
            "a torn install after {delay_ms} ms"
        );
        if installed == new {
            // It completed before the kill: reset the accepted sequence for the next round.
            let _ = std::fs::remove_file(dir.join("agent/releases.json"));
        } else {
            interrupted += 1;
        }
    }
    assert!(
        interrupted > 0,
        "no kill landed before the swap: the test proved nothing"
    );
}
