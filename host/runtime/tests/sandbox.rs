//! The hostile-component suite: every misbehaviour is contained and the host stays healthy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use d402_protocol::{ContentHash, ContentId, canonical};
use d402_runtime::{
    LoadError, PageSource, ReplaySource, RunError, Runtime, RuntimeConfig, TaskInfo,
};
use d402_testkit::{component, fetch_permission, hostile_manifest, json_transform};
use serde_json::{Value, json};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

fn metered_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        fuel_metering: true,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn task() -> TaskInfo {
    TaskInfo {
        task_id: "task:test".into(),
    }
}

fn hostile(deadline_ms: u64) -> (d402_protocol::CapabilityManifest, Vec<u8>) {
    let bytes = component("hostile");
    (
        hostile_manifest(
            &bytes,
            deadline_ms,
            Some(fetch_permission(&["example.com"], 3)),
            "snapshot-deterministic",
        ),
        bytes,
    )
}

async fn run_hostile(
    rt: &Runtime,
    deadline_ms: u64,
    input: Value,
) -> Result<d402_runtime::RunReport, d402_runtime::RunFailure> {
    let (manifest, bytes) = hostile(deadline_ms);
    let cap = rt.load(&manifest, &bytes).unwrap();
    rt.run(&cap, &task(), &input, None).await
}

#[tokio::test]
async fn a_well_behaved_run_reports_output_and_evidence() {
    let rt = runtime();
    let report = run_hostile(&rt, 1000, json!({"behaviour": "echo", "text": "hi"}))
        .await
        .unwrap();
    assert_eq!(report.output, json!({"text": "hi"}));
    let expected = ContentHash::of(&canonical::to_vec(&json!({"text": "hi"})).unwrap());
    assert_eq!(report.evidence.content_hash, Some(expected));
    assert_eq!(
        report.evidence.artifact_cid,
        Some(ContentId::of_bytes(&component("hostile")))
    );
    assert_eq!(
        report.evidence.fuel_used, None,
        "metering is off by default"
    );
}

#[tokio::test]
async fn infinite_loop_is_stopped_within_the_deadline() {
    let rt = runtime();
    let (manifest, bytes) = hostile(300);
    let cap = rt.load(&manifest, &bytes).unwrap();
    let started = Instant::now();
    let failure = rt
        .run(&cap, &task(), &json!({"behaviour": "loop"}), None)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(failure.error, RunError::DeadlineExceeded(_)),
        "{:?}",
        failure.error
    );
    assert!(
        elapsed >= Duration::from_millis(300),
        "stopped early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(400),
        "stopped late: {elapsed:?}"
    );
    // The host is fine: the next run works.
    assert!(
        run_hostile(&rt, 1000, json!({"behaviour": "echo", "text": "after"}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn fuel_limits_stop_a_loop_deterministically() {
    let rt = metered_runtime();
    let (mut manifest, bytes) = hostile(5000);
    manifest.limits.fuel = Some(5_000_000);
    let cap = rt.load(&manifest, &bytes).unwrap();
    let failure = rt
        .run(&cap, &task(), &json!({"behaviour": "loop"}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(failure.error, RunError::FuelExhausted(_)),
        "{:?}",
        failure.error
    );
    assert_eq!(failure.evidence.fuel_used, Some(5_000_000));
    // A node without metering refuses a manifest that needs it.
    assert!(
        matches!(runtime().load(&manifest, &bytes), Err(LoadError::Policy(m)) if m.contains("fuel"))
    );
}

#[tokio::test]
async fn memory_bomb_traps_at_the_cap() {
    let rt = runtime();
    let failure = run_hostile(
        &rt,
        5000,
        json!({"behaviour": "memory-bomb", "step": 1048576}),
    )
    .await
    .unwrap_err();
    match failure.error {
        RunError::MemoryLimit(message) => assert!(message.contains("bytes"), "{message}"),
        other => panic!("expected a memory limit, got {other:?}"),
    }
}

#[tokio::test]
async fn a_run_never_sees_memory_an_earlier_run_wrote() {
    // One slot, so every run reuses the same pooled linear memory, which stays resident
    // between runs (RuntimeConfig::resident_memory_bytes) and must come back zeroed.
    let rt = Runtime::new(RuntimeConfig {
        max_concurrent_runs: 1,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let residue = json!({"behaviour": "residue"});
    let first = run_hostile(&rt, 5000, residue.clone()).await.unwrap();
    // A memory bomb in between dirties the whole slot, far past the resident part.
    let bomb = json!({"behaviour": "memory-bomb", "step": 1048576});
    run_hostile(&rt, 5000, bomb).await.unwrap_err();
    let second = run_hostile(&rt, 5000, residue).await.unwrap();
    for run in [&first, &second] {
        assert_eq!(run.output["dirtyBytes"], 0, "{}", run.output);
    }
    // The second run read the very bytes the first one filled.
    assert_eq!(second.output["offset"], first.output["offset"]);
}

#[tokio::test]
async fn output_flood_is_rejected_at_the_cap() {
    let rt = runtime();
    let failure = run_hostile(
        &rt,
        5000,
        json!({"behaviour": "output-flood", "bytes": 200000}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(failure.error, RunError::OutputTooLarge(ref m) if m.contains("65536")),
        "{:?}",
        failure.error
    );
    assert!(failure.evidence.content_hash.is_none());
}

#[tokio::test]
async fn stdout_flood_is_capped_and_contained() {
    let rt = runtime();
    let failure = run_hostile(&rt, 5000, json!({"behaviour": "stdout-flood"}))
        .await
        .unwrap_err();
    assert!(failure.evidence.stdout.len() <= RuntimeConfig::default().stdio_cap_bytes);
    assert!(
        failure.evidence.stdout.starts_with("flood"),
        "stdout was not captured"
    );
    assert!(
        matches!(failure.error, RunError::Trap(_)),
        "{:?}",
        failure.error
    );
}

#[tokio::test]
async fn guest_panic_is_a_typed_error() {
    let rt = runtime();
    let failure = run_hostile(&rt, 5000, json!({"behaviour": "panic"}))
        .await
        .unwrap_err();
    match failure.error {
        RunError::Trap(message) => assert!(message.contains("panicked on purpose"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn undeclared_import_is_refused_at_load_naming_import_and_permission() {
    let rt = runtime();
    let bytes = component("hostile");
    let manifest = hostile_manifest(&bytes, 1000, None, "snapshot-deterministic");
    let error = rt.load(&manifest, &bytes).err().expect("load must fail");
    let message = error.to_string();
    assert!(message.contains("d402:capability/browser"), "{message}");
    assert!(message.contains("browser.fetch"), "{message}");
}

#[test]
fn artifact_with_wrong_digest_is_refused() {
    let rt = runtime();
    let (mut manifest, bytes) = hostile(1000);
    manifest.runtime.artifact_cid = Some(ContentId::of_bytes(b"some other component"));
    assert!(matches!(
        rt.load(&manifest, &bytes),
        Err(LoadError::DigestMismatch { .. })
    ));

    // From a blob store whose file was swapped after it was stored.
    let dir = tempfile::tempdir().unwrap();
    let blobs = d402_blobstore::BlobStore::open(dir.path()).unwrap();
    let (manifest, bytes) = hostile(1000);
    let cid = blobs.put(&bytes).unwrap();
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(blobs.path_of(&cid), &tampered).unwrap();
    assert!(matches!(
        rt.load_from_store(&manifest, cid, &blobs),
        Err(LoadError::DigestMismatch { .. })
    ));
    // A manifest pinning another artifact than the package names.
    let other = ContentId::of_bytes(b"another component");
    assert!(matches!(
        rt.load_from_store(&manifest, other, &blobs),
        Err(LoadError::DigestMismatch { .. })
    ));
}

#[test]
fn garbage_bytes_are_not_a_component() {
    let rt = runtime();
    let garbage = b"\0asm\x0d\0\x01\0 definitely not a component".to_vec();
    let manifest = hostile_manifest(&garbage, 1000, None, "deterministic");
    assert!(matches!(
        rt.load(&manifest, &garbage),
        Err(LoadError::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_looping_guest_does_not_stall_ninety_nine_others() {
    let rt = Arc::new(runtime());
    let (manifest, bytes) = hostile(3000);
    let cap = rt.load(&manifest, &bytes).unwrap();
    let started = Instant::now();
    let looping = {
        let (rt, cap) = (rt.clone(), cap.clone());
        tokio::spawn(async move {
            rt.run(&cap, &task(), &json!({"behaviour": "loop"}), None)
                .await
        })
    };
    let mut others = Vec::new();
    for i in 0..99 {
        let (rt, cap) = (rt.clone(), cap.clone());
        others.push(tokio::spawn(async move {
            let result = rt
                .run(
                    &cap,
                    &task(),
                    &json!({"behaviour": "echo", "text": format!("run {i}")}),
                    None,
                )
                .await;
            (result, started.elapsed())
        }));
    }
    for (i, handle) in others.into_iter().enumerate() {
        let (result, finished_after) = handle.await.unwrap();
        assert_eq!(result.unwrap().output, json!({"text": format!("run {i}")}));
        assert!(
            finished_after < Duration::from_millis(2000),
            "run {i} finished after {finished_after:?}"
        );
    }
    let looped = looping.await.unwrap().unwrap_err();
    assert!(
        matches!(looped.error, RunError::DeadlineExceeded(_)),
        "{:?}",
        looped.error
    );
}

#[tokio::test]
async fn deterministic_classes_get_fixed_clocks_and_seeded_randomness() {
    let rt = runtime();
    let first = run_hostile(&rt, 1000, json!({"behaviour": "entropy"}))
        .await
        .unwrap();
    let second = run_hostile(&rt, 1000, json!({"behaviour": "entropy"}))
        .await
        .unwrap();
    assert_eq!(first.output["now"], json!(0));
    assert_eq!(first.output, second.output);

    let bytes = component("hostile");
    let mut manifest = hostile_manifest(
        &bytes,
        1000,
        Some(fetch_permission(&["example.com"], 1)),
        "nondeterministic",
    );
    manifest.validator = serde_json::from_value(json!({"model": "reputation-only"})).unwrap();
    let cap = rt.load(&manifest, &bytes).unwrap();
    let live = rt
        .run(&cap, &task(), &json!({"behaviour": "entropy"}), None)
        .await
        .unwrap();
    assert!(live.output["now"].as_u64().unwrap() > 1_700_000_000_000_000_000);
}

fn replay() -> Arc<dyn PageSource> {
    let mut source = ReplaySource::new();
    source.insert_html(
        "https://example.com/a",
        b"<html><body><p>Recorded page</p></body></html>".to_vec(),
    );
    Arc::new(source)
}

#[tokio::test]
async fn replay_mode_gives_byte_identical_output() {
    let rt = runtime();
    let (manifest, bytes) = hostile(2000);
    let cap = rt.load(&manifest, &bytes).unwrap();
    let input = json!({"behaviour": "fetch", "url": "https://example.com/a"});
    let first = rt.run(&cap, &task(), &input, Some(replay())).await.unwrap();
    let second = rt.run(&cap, &task(), &input, Some(replay())).await.unwrap();
    assert_eq!(
        canonical::to_vec(&first.output).unwrap(),
        canonical::to_vec(&second.output).unwrap()
    );
    assert_eq!(first.evidence.content_hash, second.evidence.content_hash);
    let snapshot = ContentId::of_bytes(b"<html><body><p>Recorded page</p></body></html>");
    assert_eq!(first.evidence.snapshot_cids, vec![snapshot]);
    assert_eq!(first.output["snapshotCid"], json!(snapshot.to_string()));
}

#[tokio::test]
async fn browser_calls_are_checked_by_the_host() {
    let rt = runtime();
    let (manifest, bytes) = hostile(2000);
    let cap = rt.load(&manifest, &bytes).unwrap();
    let denied_host = rt
        .run(
            &cap,
            &task(),
            &json!({"behaviour": "fetch", "url": "https://evil.example.net/"}),
            Some(replay()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&denied_host.error, RunError::UpstreamFailure(m) if m.contains("allowedHosts")),
        "{:?}",
        denied_host.error
    );

    let bad_scheme = rt
        .run(
            &cap,
            &task(),
            &json!({"behaviour": "fetch", "url": "file:///etc/passwd"}),
            Some(replay()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&bad_scheme.error, RunError::UpstreamFailure(m) if m.contains("http")),
        "{:?}",
        bad_scheme.error
    );

    let over_budget = rt
        .run(
            &cap,
            &task(),
            &json!({"behaviour": "fetch-many", "url": "https://example.com/a", "count": 4}),
            Some(replay()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&over_budget.error, RunError::UpstreamFailure(m) if m.contains("fetch 3") && m.contains("budget")),
        "{:?}",
        over_budget.error
    );
}

#[tokio::test]
async fn input_failing_the_schema_never_reaches_the_guest() {
    let rt = runtime();
    let failure = run_hostile(&rt, 1000, json!({"text": "no behaviour"}))
        .await
        .unwrap_err();
    assert!(
        matches!(failure.error, RunError::InvalidInput(ref m) if m.contains("behaviour")),
        "{:?}",
        failure.error
    );
    assert_eq!(failure.evidence.fuel_used, None);
}

#[tokio::test]
async fn pure_capability_runs_and_is_deterministic() {
    let rt = metered_runtime();
    let (manifest, bytes) = json_transform();
    let cap = rt.load(&manifest, &bytes).unwrap();
    let input = json!({"value": {"a": [1, {"b": "x"}]}, "select": ["a.1.b", "a.7"]});
    let report = rt.run(&cap, &task(), &input, None).await.unwrap();
    assert_eq!(
        report.output,
        json!({"result": {"a.1.b": "x"}, "missing": ["a.7"]})
    );
    let again = rt.run(&cap, &task(), &input, None).await.unwrap();
    assert_eq!(report.evidence.content_hash, again.evidence.content_hash);
    assert!(report.evidence.fuel_used.unwrap() > 0);
    assert_eq!(
        report.evidence.fuel_used, again.evidence.fuel_used,
        "fuel is deterministic"
    );
}

#[test]
fn compiled_code_is_cached_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        compile_cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let (manifest, bytes) = json_transform();
    let first = Runtime::new(config.clone()).unwrap();
    assert!(!first.load(&manifest, &bytes).unwrap().from_compile_cache());
    let restarted = Runtime::new(config).unwrap();
    assert!(
        restarted
            .load(&manifest, &bytes)
            .unwrap()
            .from_compile_cache()
    );
}
