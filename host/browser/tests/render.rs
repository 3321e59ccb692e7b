//! Rendering with the real Chromium (`/usr/bin/chromium`, or `D402_CHROMIUM`).

mod common;

use common::{Reply, Server, assert_denied, fetch, live_source, logs, spec, strict_config};
use d402_browser::SnapshotSource;
use d402_runtime::{PageSource, RenderMode};

const MARKER: &str = "Written by script 4242";

fn spa() -> String {
    format!(
        r#"<!doctype html><html><head><title>spa</title></head><body><div id="root"></div>
<script>document.getElementById('root').textContent = '{MARKER}';</script></body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_content_appears_only_when_rendered() {
    logs();
    let article = format!(
        "<html><body><article>{}</article><script>var x = 1;</script></body></html>",
        "Plain words. ".repeat(100)
    );
    let server = Server::start("127.0.0.1", move |path| {
        if path == "/article" {
            Reply::html(article.clone())
        } else {
            Reply::html(spa())
        }
    })
    .await;
    let (source, _dir) = live_source(strict_config(&["127.0.0.1"]));
    let url = server.url("/app");

    let never = fetch(&source, &url, RenderMode::Never).await.unwrap();
    assert!(!never.rendered);
    assert!(!String::from_utf8_lossy(&never.body).contains(&format!(">{MARKER}<")));

    for mode in [RenderMode::Always, RenderMode::Auto] {
        let page = fetch(&source, &url, mode).await.unwrap();
        let html = String::from_utf8(page.body.clone()).unwrap();
        assert!(page.rendered, "{mode:?}");
        assert!(
            html.contains(&format!(r#"<div id="root">{MARKER}</div>"#)),
            "{mode:?}: {html}"
        );
        assert_eq!(page.status, 200);
        assert_eq!(page.final_url, url);
        assert!(
            page.snapshotter_version.starts_with("d402-render/")
                && page.snapshotter_version.contains("chromium "),
            "{}",
            page.snapshotter_version
        );
    }
    // A page with plenty of text is not rendered in Auto mode.
    let auto = fetch(&source, &server.url("/article"), RenderMode::Auto)
        .await
        .unwrap();
    assert!(!auto.rendered);
    assert_eq!(
        source.pool().launches(),
        1,
        "one Chromium serves every render"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_pages_cannot_reach_private_addresses() {
    logs();
    let private = Server::start("127.0.0.2", |_| Reply::html("internal")).await;
    let p = private.port();
    let page = format!(
        r#"<!doctype html><html><body><div id="out">pending</div>
<img src="http://127.0.0.2:{p}/pixel.png">
<img src="http://private.test:{p}/named.png">
<iframe src="http://127.0.0.2:{p}/frame"></iframe>
<script>
Promise.allSettled([
  fetch('http://127.0.0.2:{p}/api', {{mode: 'no-cors'}}),
  fetch('https://127.0.0.2:{p}/tls', {{mode: 'no-cors'}}),
  new Promise((ok, bad) => {{ const ws = new WebSocket('ws://127.0.0.2:{p}/ws'); ws.onopen = ok; ws.onerror = bad; }}),
]).then(r => document.getElementById('out').textContent = 'done: ' + r.map(x => x.status).join(','));
</script></body></html>"#
    );
    let public = Server::start("127.0.0.1", move |_| Reply::html(page.clone())).await;
    let mut config = strict_config(&["127.0.0.1"]);
    config.dns_overrides = vec![("private.test".into(), vec!["127.0.0.2".parse().unwrap()])];
    let (source, _dir) = live_source(config.clone());
    let rendered = fetch(&source, &public.url("/"), RenderMode::Always)
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&rendered.body).to_string();
    // Plain-HTTP refusals are answered 403 by the proxy (an opaque `no-cors` response);
    // https and WebSocket tunnels fail outright.
    assert!(html.contains("done: fulfilled,rejected,rejected"), "{html}");
    assert_eq!(
        private.hits(),
        0,
        "the private server got requests: {:?}",
        private.requests()
    );

    // Control: the same page reaches the server once its address counts as public, so the
    // zero above is the proxy's doing.
    config
        .public_test_addresses
        .push("127.0.0.2".parse().unwrap());
    let (open, _dir2) = live_source(config);
    assert!(
        fetch(&open, &public.url("/"), RenderMode::Always)
            .await
            .unwrap()
            .rendered
    );
    let seen = private.requests();
    for path in ["/pixel.png", "/named.png", "/frame", "/api"] {
        assert!(
            seen.iter().any(|p| p == path),
            "{path} not requested: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendered_redirect_to_a_private_address_is_refused() {
    let private = Server::start("127.0.0.2", |_| Reply::html("internal")).await;
    let target = private.url("/admin");
    let public = Server::start("127.0.0.1", move |_| Reply::redirect(target.clone())).await;
    let (source, _dir) = live_source(strict_config(&["127.0.0.1"]));
    assert_denied(
        fetch(&source, &public.url("/"), RenderMode::Always).await,
        "127.0.0.2",
    );
    assert_eq!(private.hits(), 0);
    assert_eq!(public.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_snapshots_replay_identically() {
    let server = Server::start("127.0.0.1", |_| Reply::html(spa())).await;
    let (source, _dir) = live_source(strict_config(&["127.0.0.1"]));
    let url = server.url("/");
    let page = fetch(&source, &url, RenderMode::Always).await.unwrap();
    let replay = SnapshotSource::load(source.store(), &[page.snapshot_cid]).unwrap();
    assert_eq!(
        replay.fetch(spec(&url, RenderMode::Always)).await.unwrap(),
        page
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_relaunches_a_killed_chromium() {
    logs();
    let server = Server::start("127.0.0.1", |_| Reply::html(spa())).await;
    let (source, _dir) = live_source(strict_config(&["127.0.0.1"]));
    let url = server.url("/");
    assert!(
        fetch(&source, &url, RenderMode::Always)
            .await
            .unwrap()
            .rendered
    );
    let first = source
        .pool()
        .chromium_pid()
        .await
        .expect("Chromium is running");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let page = source.fetch(spec(&url, RenderMode::Always)).await.unwrap();
    assert!(String::from_utf8_lossy(&page.body).contains(MARKER));
    assert_eq!(source.pool().launches(), 2);
    let second = source
        .pool()
        .chromium_pid()
        .await
        .expect("Chromium is running again");
    assert_ne!(first, second);
}
