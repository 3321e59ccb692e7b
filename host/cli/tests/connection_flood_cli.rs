//! 25,000 idle and half-open connections from one client machine do not stop a real
//! `d402 node` process from answering `/healthz`. One process may hold only 20,000 file
//! descriptors here, so the flood comes from two helper processes (python3) that each open
//! 12,500 connections and hold them until the test ends.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{NodeProcess, install};

/// Opens `count` connections to `port`; every fourth sends half a request line. Prints
/// `ready <opened>` and holds them until stdin closes.
const FLOOD: &str = r#"
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held, opened = [], 0
for i in range(count):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        if i % 4 == 0:
            s.send(b"GET /healthz HTTP/1.1\r\nHo")
        opened += 1
    except OSError:
        pass
    held.append(s)
print("ready", opened, flush=True)
sys.stdin.read()
"#;

struct Flood(Child);

impl Flood {
    fn start(port: &str, count: usize) -> (Self, usize) {
        let mut child = Command::new("python3")
            .args(["-c", FLOOD, port, &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the flood helper");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let opened = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("flood helper said {line:?}"));
        (Self(child), opened)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.0.stdin.take().map(|mut s| s.flush());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn healthz_answers_through_25000_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    install(dir, "json-transform", "json_transform.wasm");
    let node = NodeProcess::start(
        dir,
        &[
            "--capability",
            "util.json_transform@1",
            "--http-max-connections",
            "1024",
        ],
    );
    let port = node.base.rsplit(':').next().unwrap().to_string();
    let (first, a) = Flood::start(&port, 12_500);
    let (second, b) = Flood::start(&port, 12_500);
    assert!(
        a + b >= 24_000,
        "the flood opened only {} of 25,000 connections",
        a + b
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let client = d402_client::http_client();
        for _ in 0..5 {
            let response = tokio::time::timeout(
                Duration::from_secs(10),
                client.get(format!("{}/healthz", node.base)).send(),
            )
            .await
            .expect("/healthz answers within 10 s while 25,000 connections are held")
            .expect("/healthz answers while 25,000 connections are held");
            assert_eq!(response.status(), 200);
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "five /healthz took {:?}",
        started.elapsed()
    );
    drop((first, second));
}
