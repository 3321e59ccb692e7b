//! Plain fetching limits and snapshot recording.

mod common;

use std::time::{Duration, Instant};

use common::{Reply, Server, fetch, live_source, spec, strict_config};
use d402_browser::{SnapshotSource, load_snapshot};
use d402_protocol::ContentId;
use d402_runtime::{FetchFailure, PageSource, RenderMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_capped() {
    let server = Server::start("127.0.0.1", |path| {
        let n: u32 = path.trim_start_matches("/r/").parse().unwrap_or(0);
        if n >= 10 {
            Reply::html("end")
        } else {
            Reply::redirect(format!("/r/{}", n + 1))
        }
    })
    .await;
    let mut config = strict_config(&["127.0.0.1"]);
    config.max_redirects = 3;
    let (source, _dir) = live_source(config);
    // Exactly three redirects are followed...
    let page = fetch(&source, &server.url("/r/7"), RenderMode::Never)
        .await
        .unwrap();
    assert_eq!(
        (page.body.as_slice(), page.status),
        (b"end".as_slice(), 200)
    );
    assert_eq!(page.final_url, server.url("/r/10"));
    // ...a fourth is not.
    match fetch(&source, &server.url("/r/0"), RenderMode::Never).await {
        Err(FetchFailure::Upstream(m)) => assert!(m.contains("more than 3 redirects"), "{m}"),
        other => panic!("expected the redirect cap, got {other:?}"),
    }
    assert_eq!(server.hits(), 4 + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_capped() {
    let server = Server::start("127.0.0.1", |path| match path {
        "/big" => Reply::html("x".repeat(10_000)),
        "/endless" => Reply::Endless,
        _ => Reply::html("x".repeat(1000)),
    })
    .await;
    let (source, _dir) = live_source(strict_config(&["127.0.0.1"]));
    let capped = |url: String| {
        let mut s = spec(&url, RenderMode::Never);
        s.max_bytes = 1000;
        s
    };
    assert_eq!(
        source
            .fetch(capped(server.url("/exact")))
            .await
            .unwrap()
            .body
            .len(),
        1000
    );
    assert!(matches!(
        source.fetch(capped(server.url("/big"))).await,
        Err(FetchFailure::TooLarge(_))
    ));
    // No Content-Length and no end: only a streaming cap stops this (else it times out).
    let started = Instant::now();
    let result = source.fetch(capped(server.url("/endless"))).await;
    assert!(
        matches!(result, Err(FetchFailure::TooLarge(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_servers_time_out() {
    let server = Server::start("127.0.0.1", |_| Reply::Hang).await;
    let (source, _dir) = live_source(strict_config(&["127.0.0.1"]));
    let mut s = spec(&server.url("/"), RenderMode::Never);
    s.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = source.fetch(s).await;
    assert!(
        matches!(result, Err(FetchFailure::Timeout(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_round_trip() {
    let server = Server::start("127.0.0.1", |_| {
        Reply::html("<html><body>snap</body></html>")
    })
    .await;
    let (source, _dir) = live_source(strict_config(&["127.0.0.1"]));
    let url = server.url("/page?q=1");
    let page = fetch(&source, &url, RenderMode::Never).await.unwrap();
    assert!(!page.rendered);
    assert!(
        page.snapshotter_version.starts_with("d402-fetch/"),
        "{}",
        page.snapshotter_version
    );
    assert_eq!(page.content_type, "text/html; charset=utf-8");

    let (record, body) = load_snapshot(source.store(), &page.snapshot_cid).unwrap();
    assert_eq!(body, page.body);
    assert_eq!(record.url, url);
    assert_eq!(record.body_cid, ContentId::of_bytes(&page.body));
    assert_eq!(
        ContentId::of_json(&record).unwrap(),
        page.snapshot_cid,
        "the record CID is its canonical JSON's"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&source.store().get(&page.snapshot_cid).unwrap()).unwrap();
    for key in [
        "url",
        "finalUrl",
        "status",
        "contentType",
        "rendered",
        "snapshotterVersion",
        "fetchedAt",
        "bodyCid",
    ] {
        assert!(json.get(key).is_some(), "record lacks {key}: {json}");
    }

    let replay = SnapshotSource::load(source.store(), &[page.snapshot_cid]).unwrap();
    assert_eq!(
        replay.fetch(spec(&url, RenderMode::Never)).await.unwrap(),
        page
    );
    assert!(matches!(
        replay
            .fetch(spec(&server.url("/other"), RenderMode::Never))
            .await,
        Err(FetchFailure::Upstream(_))
    ));
    let mut small = spec(&url, RenderMode::Never);
    small.max_bytes = 3;
    assert!(matches!(
        replay.fetch(small).await,
        Err(FetchFailure::TooLarge(_))
    ));
    assert_eq!(server.hits(), 1, "replay never touches the network");
}
