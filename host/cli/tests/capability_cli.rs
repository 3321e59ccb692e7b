//! End-to-end tests of `d402 keygen` and `d402 capability …` through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn d402(dir: &Path, args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args(args)
        .current_dir(dir)
        .env_remove("D402_MAX_CREATOR_COMMISSION_BPS")
        .output()
        .expect("d402 runs");
    Run {
        status: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let run = d402(dir, args);
    assert_eq!(run.status, 0, "d402 {args:?} failed: {}", run.stderr);
    run.stdout
}

fn fails(dir: &Path, args: &[&str], expected: &str) -> Run {
    let run = d402(dir, args);
    assert_eq!(
        run.status, 1,
        "d402 {args:?} should exit 1; stdout: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains(expected),
        "d402 {args:?}: {:?} not in {:?}",
        expected,
        run.stderr
    );
    run
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let ws = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let manifest = ok(
            ws.path(),
            &[
                "capability",
                "template",
                "--id",
                "example.extract_product",
                "--version",
                "1",
            ],
        );
        std::fs::write(ws.file("capability.json"), manifest).unwrap();
        ws
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write_json(&self, name: &str, value: &Value) {
        std::fs::write(
            self.file(name),
            serde_json::to_string_pretty(value).unwrap(),
        )
        .unwrap();
    }
    fn read_json(&self, name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.file(name)).unwrap()).unwrap()
    }
    fn count(&self, dir: &str) -> usize {
        std::fs::read_dir(self.file(dir)).map_or(0, |entries| entries.count())
    }
}

#[test]
fn keygen_prints_the_address_of_the_key_it_writes() {
    let ws = Workspace::new();
    let address = ok(ws.path(), &["keygen", "--out", "k.json"]);
    let bytes: Vec<u8> = serde_json::from_value(ws.read_json("k.json")).unwrap();
    assert_eq!(bytes.len(), 64);
    assert_eq!(bs58_encode(&bytes[32..]), address.trim());
    fails(
        ws.path(),
        &["keygen", "--out", "k.json"],
        "refusing to overwrite",
    );
}

fn bs58_encode(bytes: &[u8]) -> String {
    // Tiny base58 encoder, independent of the implementation under test.
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::new();
    for &byte in bytes {
        let mut carry = byte as u32;
        for digit in digits.iter_mut() {
            carry += (*digit as u32) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n('1', zeros)
        .chain(digits.iter().rev().map(|&d| ALPHABET[d as usize] as char))
        .collect()
}

#[test]
fn template_validates_and_its_cid_is_stable() {
    let ws = Workspace::new();
    let first = ok(
        ws.path(),
        &["capability", "validate", "--file", "capability.json"],
    );
    let second = ok(
        ws.path(),
        &["capability", "validate", "--file", "capability.json"],
    );
    assert_eq!(first, second);
    assert!(first.trim().starts_with("bafkrei"), "{first}");
}

#[test]
fn bad_manifests_exit_1_naming_the_problem() {
    let ws = Workspace::new();
    std::fs::write(ws.file("broken.json"), "{\"manifestVersion\": 1,").unwrap();
    fails(
        ws.path(),
        &["capability", "validate", "--file", "broken.json"],
        "broken.json is not valid",
    );

    let mut manifest = ws.read_json("capability.json");
    manifest["surprise"] = Value::Bool(true);
    ws.write_json("unknown.json", &manifest);
    fails(
        ws.path(),
        &["capability", "validate", "--file", "unknown.json"],
        "unknown field `surprise`",
    );

    let mut manifest = ws.read_json("capability.json");
    manifest["outputSchema"]["properties"]["result"]["type"] = Value::from(42);
    ws.write_json("schema.json", &manifest);
    fails(
        ws.path(),
        &["capability", "validate", "--file", "schema.json"],
        "outputSchema.properties.result.type",
    );

    let mut manifest = ws.read_json("capability.json");
    manifest["runtime"]["artifactCid"] = Value::from("sha256:1234");
    ws.write_json("cid.json", &manifest);
    fails(
        ws.path(),
        &["capability", "validate", "--file", "cid.json"],
        "invalid content id",
    );

    fails(
        ws.path(),
        &["capability", "validate", "--file", "missing.json"],
        "cannot read missing.json",
    );
}

#[test]
fn validate_with_wasm_checks_the_pinned_artifact() {
    let ws = Workspace::new();
    std::fs::write(ws.file("a.wasm"), b"\0asm component bytes").unwrap();
    fails(
        ws.path(),
        &[
            "capability",
            "validate",
            "--file",
            "capability.json",
            "--wasm",
            "a.wasm",
        ],
        "runtime.artifactCid: not set",
    );
    let mut manifest = ws.read_json("capability.json");
    manifest["runtime"]["artifactCid"] =
        Value::from(d402_protocol::ContentId::of_bytes(b"\0asm component bytes").to_string());
    ws.write_json("pinned.json", &manifest);
    ok(
        ws.path(),
        &[
            "capability",
            "validate",
            "--file",
            "pinned.json",
            "--wasm",
            "a.wasm",
        ],
    );
    std::fs::write(ws.file("b.wasm"), b"\0asm other bytes").unwrap();
    fails(
        ws.path(),
        &[
            "capability",
            "validate",
            "--file",
            "pinned.json",
            "--wasm",
            "b.wasm",
        ],
        "pins",
    );
}

#[test]
fn register_then_verify_and_tampering_is_caught() {
    let ws = Workspace::new();
    let creator = ok(ws.path(), &["keygen", "--out", "creator.json"]);
    let out = ok(
        ws.path(),
        &[
            "capability",
            "register",
            "--file",
            "capability.json",
            "--state",
            "pub",
            "--namespace",
            "example",
            "--commission-bps",
            "1000",
            "--commission-wallet",
            creator.trim(),
        ],
    );
    let envelope: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(envelope["type"], "capability-registration");
    assert_eq!(
        envelope["payload"]["creatorCommission"]["schema"],
        "d402.creator_commission@1"
    );
    assert_eq!(ws.count("pub/registrations"), 1);
    ws.write_json("reg.json", &envelope);
    let report = ok(
        ws.path(),
        &[
            "capability",
            "verify",
            "--file",
            "reg.json",
            "--manifest",
            "capability.json",
        ],
    );
    assert!(report.contains("signature      ok"), "{report}");

    let mut tampered = envelope.clone();
    tampered["payload"]["creatorCommission"]["rateBps"] = Value::from(1500);
    ws.write_json("tampered.json", &tampered);
    fails(
        ws.path(),
        &["capability", "verify", "--file", "tampered.json"],
        "signature does not verify",
    );

    let other_key = ok(ws.path(), &["keygen", "--out", "other.json"]);
    let mut wrong_key = envelope.clone();
    wrong_key["signer"] = Value::from(other_key.trim());
    ws.write_json("wrongkey.json", &wrong_key);
    fails(
        ws.path(),
        &["capability", "verify", "--file", "wrongkey.json"],
        "signature does not verify",
    );

    let mut manifest = ws.read_json("capability.json");
    manifest["description"] = Value::from("a different capability");
    ws.write_json("other-manifest.json", &manifest);
    fails(
        ws.path(),
        &[
            "capability",
            "verify",
            "--file",
            "reg.json",
            "--manifest",
            "other-manifest.json",
        ],
        "manifestCid",
    );

    // A gateway with a lower cap refuses the same registration.
    let run = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args(["capability", "verify", "--file", "reg.json"])
        .current_dir(ws.path())
        .env("D402_MAX_CREATOR_COMMISSION_BPS", "500")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("above the cap of 500 bps"));
}

#[test]
fn commission_above_the_cap_writes_nothing() {
    let ws = Workspace::new();
    let creator = ok(ws.path(), &["keygen", "--out", "creator.json"]);
    fails(
        ws.path(),
        &[
            "capability",
            "register",
            "--file",
            "capability.json",
            "--state",
            "pub",
            "--namespace",
            "example",
            "--commission-bps",
            "2500",
            "--commission-wallet",
            creator.trim(),
        ],
        "above the cap of 2000 bps",
    );
    assert_eq!(ws.count("pub/registrations"), 0);
    fails(
        ws.path(),
        &[
            "capability",
            "register",
            "--file",
            "capability.json",
            "--state",
            "pub",
            "--namespace",
            "web",
        ],
        "belongs to namespace \"example\"",
    );
}

#[test]
fn namespace_proof_from_the_owner_is_embedded_and_verified() {
    let ws = Workspace::new();
    ok(ws.path(), &["keygen", "--out", "owner.json"]);
    let publisher = ok(ws.path(), &["keygen", "--out", "publisher.json"]);
    ok(
        ws.path(),
        &[
            "capability",
            "namespace-proof",
            "--namespace",
            "example",
            "--key",
            "owner.json",
            "--delegate",
            publisher.trim(),
            "--out",
            "proof.json",
        ],
    );
    let out = ok(
        ws.path(),
        &[
            "capability",
            "register",
            "--file",
            "capability.json",
            "--state",
            "pub",
            "--namespace",
            "example",
            "--key",
            "publisher.json",
            "--namespace-proof",
            "proof.json",
        ],
    );
    std::fs::write(ws.file("reg.json"), out).unwrap();
    let report = ok(ws.path(), &["capability", "verify", "--file", "reg.json"]);
    assert!(report.contains("namespace      ok"), "{report}");

    // A proof delegating to someone else does not let this publisher register.
    ok(
        ws.path(),
        &[
            "capability",
            "namespace-proof",
            "--namespace",
            "example",
            "--key",
            "owner.json",
            "--out",
            "self.json",
        ],
    );
    fails(
        ws.path(),
        &[
            "capability",
            "register",
            "--file",
            "capability.json",
            "--state",
            "pub2",
            "--namespace",
            "example",
            "--key",
            "publisher.json",
            "--namespace-proof",
            "self.json",
        ],
        "namespaceProof.delegate",
    );
}

#[test]
fn implementation_packages_install_only_when_everything_matches() {
    let ws = Workspace::new();
    ok(ws.path(), &["keygen", "--out", "publisher.json"]);
    std::fs::write(ws.file("cap.wasm"), b"\0asm pretend component").unwrap();
    ok(
        ws.path(),
        &[
            "capability",
            "implementation",
            "create",
            "--manifest",
            "capability.json",
            "--wasm",
            "cap.wasm",
            "--key",
            "publisher.json",
            "--out",
            "impl.json",
        ],
    );
    std::fs::write(ws.file("evil.wasm"), b"\0asm swapped component").unwrap();
    fails(
        ws.path(),
        &[
            "capability",
            "implementation",
            "install",
            "--file",
            "impl.json",
            "--wasm",
            "evil.wasm",
            "--manifest",
            "capability.json",
            "--state",
            "node",
        ],
        "artifactCid",
    );
    assert_eq!(ws.count("node/blobs"), 0);

    let stranger = ok(ws.path(), &["keygen", "--out", "stranger.json"]);
    fails(
        ws.path(),
        &[
            "capability",
            "implementation",
            "install",
            "--file",
            "impl.json",
            "--wasm",
            "cap.wasm",
            "--manifest",
            "capability.json",
            "--state",
            "node",
            "--trusted-publisher",
            stranger.trim(),
        ],
        "not one of the trusted publishers",
    );
    assert_eq!(ws.count("node/blobs"), 0);

    let out = ok(
        ws.path(),
        &[
            "capability",
            "implementation",
            "install",
            "--file",
            "impl.json",
            "--wasm",
            "cap.wasm",
            "--manifest",
            "capability.json",
            "--state",
            "node",
        ],
    );
    assert!(out.contains("installed example.extract_product@1"), "{out}");
    let cid = d402_protocol::ContentId::of_bytes(b"\0asm pretend component");
    assert_eq!(
        std::fs::read(ws.file(&format!("node/blobs/{cid}"))).unwrap(),
        b"\0asm pretend component"
    );
}

#[test]
fn every_command_has_help() {
    let ws = Workspace::new();
    for args in [
        vec!["--help"],
        vec!["keygen", "--help"],
        vec!["capability", "--help"],
        vec!["capability", "register", "--help"],
        vec!["capability", "implementation", "install", "--help"],
        vec!["capability", "run", "--help"],
        vec!["capability", "new", "--help"],
        vec!["node", "--help"],
        vec!["task", "--help"],
        vec!["http-task", "--help"],
        vec!["faucet", "--help"],
        vec!["bench", "sandbox", "--help"],
        vec!["bench", "extract", "--help"],
        vec!["bench", "gateway", "--help"],
    ] {
        let out = ok(ws.path(), &args);
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
}

#[test]
fn bench_extract_runs_the_component_and_native_code_on_the_same_pages() {
    let ws = Workspace::new();
    let pages = d402_testkit::repo_path("capabilities/page-to-markdown/extractor/tests/pages");
    let page_count = std::fs::read_dir(&pages)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "html")
        })
        .count();
    let manifest = d402_testkit::manifest_path("page-to-markdown");
    let wasm = d402_testkit::components_dir().join("page_to_markdown.wasm");
    let (pages, manifest, wasm) = (
        pages.display().to_string(),
        manifest.display().to_string(),
        wasm.display().to_string(),
    );
    let run = |rounds: &str| {
        d402(
            ws.path(),
            &[
                "bench",
                "extract",
                "--pages",
                &pages,
                "--manifest",
                &manifest,
                "--wasm",
                &wasm,
                "--rounds",
                rounds,
            ],
        )
    };
    let bench = run("2");
    assert_eq!(bench.status, 0, "{}", bench.stderr);
    // Blocked pages fail on both paths alike; every other page gives the same markdown.
    assert!(
        bench.stdout.contains(&format!(
            "on {page_count} pages ({page_count} identical outputs"
        )),
        "{}",
        bench.stdout
    );
    assert!(
        bench.stdout.contains("median of 2 rounds"),
        "{}",
        bench.stdout
    );
    let none = run("0");
    assert_eq!(none.status, 2, "{}", none.stdout);
    assert!(none.stderr.contains("--rounds"), "{}", none.stderr);
}
