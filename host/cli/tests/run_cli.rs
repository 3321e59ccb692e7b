//! `d402 capability run` and `d402 capability new` through the real binary, on real
//! components built by scripts/build-capabilities.sh.

use std::path::Path;
use std::process::Command;

use d402_protocol::ContentId;
use d402_testkit::{
    component, components_dir, fetch_permission, hostile_manifest, manifest_path, repo_path,
};
use serde_json::{Value, json};

fn d402(dir: &Path, args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args(args)
        .current_dir(dir)
        .env("D402_STATE", dir.join("state"))
        .output()
        .expect("d402 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), json, stderr)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn runs_a_pure_capability_and_prints_result_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = components_dir().join("json_transform.wasm");
    let manifest = manifest_path("json-transform");
    let input = r#"{"value": {"k": [5, 6]}, "select": ["k.1"]}"#;
    let args = [
        "capability",
        "run",
        "--manifest",
        path(&manifest),
        "--wasm",
        path(&wasm),
        "--input",
        input,
    ];
    let (code, out, stderr) = d402(dir.path(), &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out["result"], json!({"result": {"k.1": 6}, "missing": []}));
    assert_eq!(
        out["evidence"]["artifactCid"],
        json!(ContentId::of_bytes(&component("json_transform")).to_string())
    );
    assert!(
        out["evidence"]["contentHash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(out["evidence"]["elapsedUs"].as_u64().unwrap() > 0);

    let (code, out, _) = d402(
        dir.path(),
        &[
            "capability",
            "run",
            "--manifest",
            path(&manifest),
            "--wasm",
            path(&wasm),
            "--input",
            r#"{"select": 3}"#,
        ],
    );
    assert_eq!(code, 2);
    assert_eq!(out["error"]["kind"], "invalid-input");

    let (code, _, stderr) = d402(
        dir.path(),
        &[
            "capability",
            "run",
            "--manifest",
            path(&manifest),
            "--wasm",
            path(&wasm),
            "--input",
            "{oops",
        ],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("--input is not valid JSON"), "{stderr}");
}

#[test]
fn snapshots_serve_the_browser_import_and_replays_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component("hostile");
    let manifest = hostile_manifest(
        &bytes,
        2000,
        Some(fetch_permission(&["example.com"], 2)),
        "snapshot-deterministic",
    );
    std::fs::write(
        dir.path().join("m.json"),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("page.html"), "<p>saved page</p>").unwrap();
    let wasm = components_dir().join("hostile.wasm");
    let args = [
        "capability",
        "run",
        "--manifest",
        "m.json",
        "--wasm",
        path(&wasm),
        "--input",
        r#"{"behaviour": "fetch", "url": "https://example.com/a"}"#,
        "--snapshot",
        "https://example.com/a=page.html",
    ];
    let (code, first, stderr) = d402(dir.path(), &args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["result"]["body"], "<p>saved page</p>");
    assert_eq!(
        first["evidence"]["snapshotCids"],
        json!([ContentId::of_bytes(b"<p>saved page</p>").to_string()])
    );
    let (_, second, _) = d402(dir.path(), &args);
    assert_eq!(first["result"], second["result"]);
    assert_eq!(
        first["evidence"]["contentHash"],
        second["evidence"]["contentHash"]
    );
}

#[test]
fn a_pinned_manifest_refuses_another_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component("hostile");
    let manifest = hostile_manifest(
        &bytes,
        2000,
        Some(fetch_permission(&["example.com"], 2)),
        "snapshot-deterministic",
    );
    std::fs::write(
        dir.path().join("m.json"),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    let other = components_dir().join("json_transform.wasm");
    let (code, _, stderr) = d402(
        dir.path(),
        &[
            "capability",
            "run",
            "--manifest",
            "m.json",
            "--wasm",
            path(&other),
            "--input",
            "{}",
        ],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("artifact digest mismatch"), "{stderr}");
}

#[test]
fn installed_capabilities_run_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = components_dir().join("json_transform.wasm");
    let manifest = path(&manifest_path("json-transform")).to_string();
    let run = |args: &[&str]| {
        let (code, out, stderr) = d402(dir.path(), args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        out
    };
    run(&["keygen", "--out", "publisher.json"]);
    run(&[
        "capability",
        "implementation",
        "create",
        "--manifest",
        &manifest,
        "--wasm",
        path(&wasm),
        "--key",
        "publisher.json",
        "--out",
        "impl.json",
    ]);
    run(&[
        "capability",
        "implementation",
        "install",
        "--file",
        "impl.json",
        "--wasm",
        path(&wasm),
        "--manifest",
        &manifest,
        "--state",
        "state",
    ]);
    let out = run(&[
        "capability",
        "run",
        "--capability",
        "util.json_transform@1",
        "--input",
        r#"{"value": [1], "select": ["0"]}"#,
    ]);
    assert_eq!(out["result"]["result"], json!({"0": 1}));
    let (code, _, stderr) = d402(
        dir.path(),
        &[
            "capability",
            "run",
            "--capability",
            "util.missing@1",
            "--input",
            "{}",
        ],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("not installed"), "{stderr}");
}

/// The target dir the outside-the-repository crates share: beside the workspace's own, so the
/// builds land on the build disk (not a small /tmp) and the second build reuses the first's deps.
fn outside_target_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("outside-crates")
}

/// Runs `cargo <args>` in `crate_dir` against the shared outside target dir.
fn cargo(crate_dir: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", outside_target_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Builds the crate in `crate_dir` with `cargo <args>` and returns the component path.
fn cargo_build(crate_dir: &Path, args: &[&str], artifact: &str) -> std::path::PathBuf {
    cargo(crate_dir, args);
    outside_target_dir().join(artifact)
}

fn new_crate(dir: &Path) -> std::path::PathBuf {
    let (code, _, stderr) = d402(
        dir,
        &[
            "capability",
            "new",
            "word-count",
            "--id",
            "example.word_count",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    dir.join("word-count")
}

fn assert_counts_words(crate_dir: &Path, wasm: &Path) {
    let (code, out, stderr) = d402(
        crate_dir,
        &[
            "capability",
            "run",
            "--manifest",
            "manifest.json",
            "--wasm",
            path(wasm),
            "--input",
            r#"{"text": "one two three"}"#,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out["result"], json!({"result": "3 words"}));
    let (code, out, _) = d402(
        crate_dir,
        &[
            "capability",
            "run",
            "--manifest",
            "manifest.json",
            "--wasm",
            path(wasm),
            "--input",
            r#"{"text": "  "}"#,
        ],
    );
    assert_eq!(code, 2);
    assert_eq!(
        out["error"],
        json!({"kind": "invalid-input", "message": "text is empty"})
    );
}

#[test]
fn a_new_capability_crate_builds_outside_the_repository_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = new_crate(dir.path());
    assert_eq!(
        std::fs::read_to_string(crate_dir.join(".gitignore")).unwrap(),
        "/target\n"
    );
    // The generated unit tests run natively against the SDK's test helpers, one of them
    // checking the Rust types against the manifest's schemas.
    let test = cargo(&crate_dir, &["test"]);
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(stdout.contains("counts_words ... ok"), "{stdout}");
    assert!(
        stdout.contains("types_match_the_manifest_schemas ... ok"),
        "{stdout}"
    );
    let wasm = cargo_build(
        &crate_dir,
        &["build", "--release", "--target", "wasm32-wasip2"],
        "wasm32-wasip2/release/word_count.wasm",
    );
    assert_counts_words(&crate_dir, &wasm);
    assert!(
        !crate_dir.join("state").exists(),
        "capability run writes no state directory into the crate"
    );

    // A manifest whose output schema the Output type does not satisfy fails `cargo test`,
    // naming the side that disagrees.
    let manifest_path = crate_dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["outputSchema"]["required"] = json!(["result", "count"]);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let output = Command::new(env!("CARGO"))
        .args(["test", "types_match"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", outside_target_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains("the Output does not match outputSchema") && stdout.contains("count"),
        "{stdout}"
    );
}

/// The second build path. scripts/test.sh installs cargo-component.
#[test]
fn the_same_crate_builds_with_cargo_component() {
    let dir = tempfile::tempdir().unwrap();
    let crate_dir = new_crate(dir.path());
    let wasm = cargo_build(
        &crate_dir,
        &["component", "build", "--release"],
        "wasm32-wasip1/release/word_count.wasm",
    );
    let header = std::fs::read(&wasm).unwrap();
    assert_eq!(
        &header[..8],
        b"\0asm\x0d\x00\x01\x00",
        "cargo component must produce a component"
    );
    assert_counts_words(&crate_dir, &wasm);
}

#[test]
fn page_to_markdown_converts_a_saved_page_and_rejects_a_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_path("page-to-markdown");
    let wasm = components_dir().join("page_to_markdown.wasm");
    let pages = repo_path("capabilities/page-to-markdown/extractor/tests/pages");
    // The URL carries `=` in its query: `--snapshot URL=FILE` splits before the file.
    let url = "https://news.example.com/story?id=7&section=world/europe";
    let input = json!({ "url": url }).to_string();
    let run = |page: &str| {
        let snapshot = format!("{url}={}", pages.join(page).display());
        d402(
            dir.path(),
            &[
                "capability",
                "run",
                "--manifest",
                path(&manifest),
                "--wasm",
                path(&wasm),
                "--input",
                &input,
                "--snapshot",
                &snapshot,
            ],
        )
    };
    let (code, out, stderr) = run("news-article.html");
    assert_eq!(code, 0, "{stderr}");
    let result = &out["result"];
    let markdown = result["markdown"].as_str().unwrap();
    assert!(markdown.starts_with("# "), "{markdown}");
    let digest = d402_protocol::ContentHash::of(markdown.as_bytes()).to_string();
    assert_eq!(result["contentHash"], json!(digest));
    assert_eq!(result["snapshotCid"], out["evidence"]["snapshotCids"][0]);
    assert_eq!(result["evidence"]["converter"], "d402-page-extractor");
    assert_eq!(result["evidence"]["httpStatus"], 200);
    assert_eq!(result["url"], url);

    let (code, out, _) = run("cloudflare-challenge.html");
    assert_eq!(code, 2);
    assert_eq!(out["error"]["kind"], "blocked");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cloudflare"),
        "{out}"
    );
}

#[test]
fn live_fetches_refuse_loopback_unless_the_development_flag_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let url = d402_testkit::serve_html(include_str!(
        "../../../capabilities/page-to-markdown/extractor/tests/pages/news-article.html"
    ));
    let manifest = manifest_path("page-to-markdown");
    let wasm = components_dir().join("page_to_markdown.wasm");
    let input = json!({"url": url, "render": "never"}).to_string();
    let base = [
        "capability",
        "run",
        "--manifest",
        path(&manifest),
        "--wasm",
        path(&wasm),
        "--input",
        &input,
    ];

    let (code, out, _) = d402(dir.path(), &base);
    assert_eq!(code, 2, "{out}");
    assert_eq!(out["error"]["kind"], "upstream-failure");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{out}"
    );

    assert!(
        !dir.path().join("state").exists(),
        "without a node state, capability run writes nothing"
    );
    // With a node state, the run records its pages there.
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    let mut allowed = base.to_vec();
    allowed.push("--allow-private-addresses");
    let (code, out, stderr) = d402(dir.path(), &allowed);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        out["result"]["markdown"]
            .as_str()
            .unwrap()
            .starts_with("# "),
        "{out}"
    );
    assert_eq!(out["result"]["evidence"]["rendered"], false);
    // The page was recorded as a content-addressed snapshot in the node's store.
    let snapshot = out["result"]["snapshotCid"].as_str().unwrap();
    assert!(
        dir.path().join("state/blobs").join(snapshot).is_file(),
        "snapshot {snapshot} not stored"
    );
}

#[test]
fn an_uninstalled_capability_runs_from_the_source_tree_build() {
    let state = tempfile::tempdir().unwrap();
    let page = repo_path("capabilities/page-to-markdown/extractor/tests/pages/news-article.html");
    let output = Command::new(env!("CARGO_BIN_EXE_d402"))
        .args([
            "capability",
            "run",
            "--capability",
            "web.page_to_markdown@1",
            "--input",
            r#"{"url": "https://news.example.com/story"}"#,
            "--snapshot",
            &format!("https://news.example.com/story={}", page.display()),
            "--state",
            path(state.path()),
        ])
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("using this source tree's build"),
        "{stderr}"
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        out["result"]["markdown"]
            .as_str()
            .unwrap()
            .starts_with("# ")
    );
    // Elsewhere (no checkout) the same call names what is missing.
    let elsewhere = d402(
        state.path(),
        &[
            "capability",
            "run",
            "--capability",
            "web.page_to_markdown@1",
            "--input",
            "{}",
        ],
    );
    assert_eq!(elsewhere.0, 1);
    assert!(elsewhere.2.contains("installed in"), "{}", elsewhere.2);
}
