//! SSRF suite: with the development switch OFF, nothing private is reachable — not
//! directly, not through redirects, not through DNS, not from a rendered page. Each refusal
//! is checked against a server that counts its requests, and each scenario has a positive
//! control (the same setup with the target deemed public succeeds), so a broken check fails.

mod common;

use common::{Reply, Server, assert_denied, fetch, live_source, logs, strict_config};
use d402_runtime::RenderMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_literals_and_localhost_are_refused() {
    logs();
    let server = Server::start("127.0.0.1", |_| Reply::html("secret")).await;
    let (source, _dir) = live_source(strict_config(&[]));
    let port = server.port();
    let cases = [
        (format!("http://127.0.0.1:{port}/"), "loopback"),
        (format!("http://localhost:{port}/"), "loopback"),
        (format!("http://LOCALHOST.:{port}/"), "loopback"),
        (format!("http://2130706433:{port}/"), "loopback"),
        (format!("http://0x7f.0.0.1:{port}/"), "loopback"),
        (format!("http://[::1]:{port}/"), "loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}/"), "127.0.0.1"),
        (format!("http://[::ffff:7f00:1]:{port}/"), "127.0.0.1"),
        (format!("http://[::127.0.0.1]:{port}/"), "127.0.0.1"),
        (format!("http://[64:ff9b::7f00:1]:{port}/"), "127.0.0.1"),
        ("http://10.0.0.1/".to_string(), "10.0.0.1"),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "metadata",
        ),
        ("http://100.100.100.200/".to_string(), "metadata"),
        ("http://[fd00:ec2::254]/".to_string(), "metadata"),
        ("http://0.0.0.0:8080/".to_string(), "0.0.0.0"),
        ("http://[fe80::1]/".to_string(), "link-local"),
    ];
    for (url, needle) in &cases {
        for mode in [RenderMode::Never, RenderMode::Auto, RenderMode::Always] {
            let result = fetch(&source, url, mode).await;
            match &result {
                Err(d402_runtime::FetchFailure::Denied(_)) => {}
                other => panic!("{url} ({mode:?}): expected a denial, got {other:?}"),
            }
            assert_denied(result, needle);
        }
    }
    assert_eq!(server.hits(), 0, "the private server must see no request");
    assert_eq!(
        source.pool().launches(),
        0,
        "refused URLs never start Chromium"
    );

    // Control: the same server is reachable once its address counts as public.
    let (open, _dir) = source_public(&["127.0.0.1"]);
    let page = fetch(
        &open,
        &format!("http://127.0.0.1:{port}/"),
        RenderMode::Never,
    )
    .await
    .unwrap();
    assert_eq!(page.body, b"secret");
    assert_eq!(server.hits(), 1);
}

fn source_public(public: &[&str]) -> (d402_browser::LiveSource, tempfile::TempDir) {
    live_source(strict_config(public))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_bad_schemes_and_ports_are_refused() {
    let (source, _dir) = live_source(strict_config(&["127.0.0.1"]));
    assert_denied(
        fetch(&source, "http://user:pw@127.0.0.1:8080/", RenderMode::Never).await,
        "credentials",
    );
    assert_denied(
        fetch(&source, "http://127.0.0.1:22/", RenderMode::Never).await,
        "port 22",
    );
    assert!(matches!(
        fetch(&source, "file:///etc/passwd", RenderMode::Never).await,
        Err(d402_runtime::FetchFailure::InvalidUrl(_))
    ));
    assert!(matches!(
        fetch(&source, "gopher://127.0.0.1:7070/", RenderMode::Always).await,
        Err(d402_runtime::FetchFailure::InvalidUrl(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_a_private_address_is_refused() {
    logs();
    let private = Server::start("127.0.0.2", |_| Reply::html("internal admin")).await;
    let target = private.url("/admin");
    let named = format!("http://internal.test:{}/admin", private.port());
    let public = Server::start("127.0.0.1", move |path| match path {
        "/to-ip" => Reply::redirect(target.clone()),
        _ => Reply::redirect(named.clone()),
    })
    .await;
    let mut config = strict_config(&["127.0.0.1"]);
    config.dns_overrides = vec![("internal.test".into(), vec!["127.0.0.2".parse().unwrap()])];
    let (source, _dir) = live_source(config.clone());

    assert_denied(
        fetch(&source, &public.url("/to-ip"), RenderMode::Never).await,
        "127.0.0.2",
    );
    assert_denied(
        fetch(&source, &public.url("/to-name"), RenderMode::Never).await,
        "internal.test resolves to a refused address",
    );
    assert_eq!(public.hits(), 2, "the first hop is public and was fetched");
    assert_eq!(private.hits(), 0, "the redirect target must see no request");

    // Control: with the second address public too, both redirects are followed.
    config
        .public_test_addresses
        .push("127.0.0.2".parse().unwrap());
    let (open, _dir2) = live_source(config);
    for path in ["/to-ip", "/to-name"] {
        let page = fetch(&open, &public.url(path), RenderMode::Never)
            .await
            .unwrap();
        assert_eq!(page.body, b"internal admin");
        assert!(page.final_url.ends_with("/admin"), "{}", page.final_url);
    }
    assert_eq!(private.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_a_private_address_is_refused() {
    let server = Server::start("127.0.0.1", |_| Reply::html("secret")).await;
    let url = format!("http://rebind.test:{}/", server.port());
    let mut config = strict_config(&[]);
    config.dns_overrides = vec![(
        "rebind.test".into(),
        vec!["8.8.8.8".parse().unwrap(), "127.0.0.1".parse().unwrap()],
    )];
    let (source, _dir) = live_source(config.clone());
    // One private address among public ones refuses the name.
    assert_denied(fetch(&source, &url, RenderMode::Never).await, "127.0.0.1");
    assert_denied(fetch(&source, &url, RenderMode::Always).await, "127.0.0.1");
    assert_eq!(server.hits(), 0);

    // Control: the connection goes to the override's (pinned) address.
    config.dns_overrides = vec![("rebind.test".into(), vec!["127.0.0.1".parse().unwrap()])];
    config.public_test_addresses = vec!["127.0.0.1".parse().unwrap()];
    let (open, _dir2) = live_source(config);
    assert_eq!(
        fetch(&open, &url, RenderMode::Never).await.unwrap().body,
        b"secret"
    );
    assert_eq!(server.hits(), 1);
}
