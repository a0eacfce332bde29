//! Durable embedded mode end to end: real router processes with `[durability]`, killed with
//! SIGKILL while real HTTP and NATS clients publish, restarted on the same write-ahead log; a log
//! with a torn tail; a disk that fills up (a real tmpfs).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::router::RouterProcess;
use serde_json::json;

/// A router keeping its log in `{state}/wal` with `fsync`, the gateway on, and one route,
/// `orders.>`, into `sink` (a sink table's body, kind included).
fn config(state: &Path, fsync: &str, sink: &str) -> String {
    let state = state.display();
    format!(
        r#"
[durability]
dir = "{state}/wal"
fsync = "{fsync}"
segment_bytes = 65536

[service]
host = "127.0.0.1"
port = 0
drain_timeout_ms = 200

[http]
listen = "127.0.0.1:0"

[plugins]
dir = "{{dir}}/plugins"
watch = false

[[route]]
name = "orders"
subject = "orders.>"
sinks = ["out"]

[sinks.out]
{sink}
"#
    )
}

fn file_sink(state: &Path) -> String {
    format!("kind = \"file\"\nroot = \"{}/out\"\n", state.display())
}

/// A sink that cannot deliver (nothing listens), so every event stays unfinished in the log.
fn stalled_sink() -> String {
    let port = common::free_port();
    format!(
        "kind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\n[sinks.out.retry]\nmax_attempts = 1000\ninitial_backoff_ms = 1000\n"
    )
}

/// The ids of the events in the file sink under `{state}/out`. A line cut short by a kill is
/// skipped: the sink had not confirmed it, so the log replays its event.
fn delivered(state: &Path) -> (BTreeSet<String>, usize) {
    let (mut ids, mut torn) = (BTreeSet::new(), 0);
    for (_, bytes) in common::files_under(&state.join("out")) {
        for line in String::from_utf8_lossy(&bytes).lines() {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(event) => {
                    ids.insert(event["id"].as_str().expect("events have ids").to_owned());
                }
                Err(_) => torn += 1,
            }
        }
    }
    (ids, torn)
}

/// Waits until `/readyz` says the router is ready (it replays its log first).
async fn ready(router: &RouterProcess) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(router.url("/readyz")).await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "the router did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ordered(id: &str) -> serde_json::Value {
    json!({"specversion": "1.0", "id": id, "source": "/test", "type": "order", "data": {"id": id}})
}

/// Publishes `h0, h1, ...` over HTTP in batches of 10 until the router dies; returns the ids it
/// got a 202 for.
async fn publish_http(router_url: String, from: u64) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    for batch in (from..).step_by(10) {
        let events: Vec<_> = (batch..batch + 10).map(|n| ordered(&format!("h{n}"))).collect();
        let sent = client
            .post(format!("{router_url}/v1/events/orders.http"))
            .header("content-type", "application/cloudevents-batch+json")
            .body(serde_json::Value::from(events).to_string())
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 202 => acked.extend((batch..batch + 10).map(|n| format!("h{n}"))),
            Ok(response) if response.status() == 503 => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(response) => panic!("batch {batch} refused: {}", response.status()),
            Err(_) => return acked,
        }
    }
    unreachable!()
}

/// Publishes `n0, n1, ...` as binary-mode CloudEvents through the gateway over a plain NATS
/// protocol connection, 10 HPUBs and a PING at a time: the gateway answers PONG only after the
/// messages before it are in the log. Returns the ids whose PONG came, once the router is gone.
async fn publish_nats(gateway: std::net::SocketAddr, from: u64) -> Vec<String> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let mut acked = Vec::new();
    let Ok(stream) = tokio::net::TcpStream::connect(gateway).await else { return acked };
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    if !matches!(lines.next_line().await, Ok(Some(info)) if info.starts_with("INFO")) {
        return acked;
    }
    let connect = "CONNECT {\"verbose\":false,\"headers\":true,\"protocol\":1}\r\n";
    if write.write_all(connect.as_bytes()).await.is_err() {
        return acked;
    }
    for group in (from..).step_by(10) {
        let mut bytes = Vec::new();
        for n in group..group + 10 {
            let headers =
                format!("NATS/1.0\r\nce-specversion: 1.0\r\nce-id: n{n}\r\nce-source: /test\r\nce-type: order\r\n\r\n");
            let payload = "{}";
            bytes.extend_from_slice(
                format!(
                    "HPUB orders.nats {} {}\r\n{headers}{payload}\r\n",
                    headers.len(),
                    headers.len() + payload.len()
                )
                .as_bytes(),
            );
        }
        bytes.extend_from_slice(b"PING\r\n");
        if write.write_all(&bytes).await.is_err() {
            return acked;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await {
                Ok(Ok(Some(line))) if line == "PONG" => break,
                Ok(Ok(Some(line))) if line.starts_with("-ERR") => panic!("the gateway refused group {group}: {line}"),
                Ok(Ok(Some(_))) => continue,
                _ => return acked,
            }
        }
        acked.extend((group..group + 10).map(|n| format!("n{n}")));
    }
    unreachable!()
}

/// Starts the router, waits for it to be ready and returns it.
async fn start(config: &str) -> RouterProcess {
    let router = RouterProcess::start(config);
    ready(&router).await;
    router
}

/// Waits until every id of `acked` is in the file sink; returns what it holds.
async fn wait_delivered(state: &Path, acked: &BTreeSet<String>) -> (BTreeSet<String>, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ids, torn) = delivered(state);
        let missing: Vec<&String> = acked.difference(&ids).collect();
        if missing.is_empty() {
            return (ids, torn);
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged events never arrived: {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_random_kills() {
    const KILLS: usize = 6;
    let state = common::tempdir();
    let config = config(state.path(), "always", &file_sink(state.path()));
    let seed = fastrand::u64(..);
    let mut random = fastrand::Rng::with_seed(seed);
    let mut acked = BTreeSet::new();
    for round in 0..KILLS {
        let mut router = start(&config).await;
        let from = (round as u64) * 1_000_000;
        let http = tokio::spawn(publish_http(format!("http://{}", router.http), from));
        let nats = tokio::spawn(publish_nats(router.nats.expect("the gateway is on"), from));
        tokio::time::sleep(Duration::from_millis(random.u64(150..700))).await;
        router.kill();
        acked.extend(http.await.expect("the HTTP publisher did not fail"));
        acked.extend(nats.await.expect("the NATS publisher did not fail"));
    }
    let mut router = start(&config).await;
    let (ids, torn) = wait_delivered(state.path(), &acked).await;
    let http = acked.iter().filter(|id| id.starts_with('h')).count();
    println!(
        "seed {seed}: {KILLS} kills, {} acknowledged ({http} over HTTP, {} over NATS), {} delivered, {} duplicates' worth of extra, {torn} torn sink lines",
        acked.len(),
        acked.len() - http,
        ids.len(),
        ids.len() - acked.len(),
    );
    assert!(http > 0 && acked.len() > http, "both protocols got events acknowledged");
    router.terminate(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_torn_log_tail_is_reported_and_the_events_before_it_are_replayed() {
    let state = common::tempdir();
    let mut router = start(&config(state.path(), "always", &stalled_sink())).await;
    for id in ["a", "b", "c"] {
        assert_eq!(router.post_event("orders.x", &ordered(id)).await, 202);
    }
    router.kill();
    // A write cut short by the crash: half a frame at the end of the newest segment.
    let segments = std::fs::read_dir(state.path().join("wal"))
        .expect("the log directory reads")
        .flatten()
        .map(|entry| entry.path());
    let newest = segments.filter(|p| p.extension().is_some_and(|e| e == "wal")).max().expect("the log has a segment");
    let mut bytes = std::fs::read(&newest).expect("the segment reads");
    bytes.extend_from_slice(&[1, 200, 0, 0, 0, 7, 7]);
    std::fs::write(&newest, bytes).expect("the segment is written");

    let mut router = start(&config(state.path(), "always", &file_sink(state.path()))).await;
    router.wait_for_log("skipped a torn or corrupt tail of the write-ahead log", Duration::from_secs(5));
    let want: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
    assert_eq!(wait_delivered(state.path(), &want).await.0, want);
    // Delivered and marked done: a second restart replays nothing.
    router.terminate(Duration::from_secs(10)).await;
    let mut router = start(&config(state.path(), "always", &file_sink(state.path()))).await;
    let line = router.wait_for_log("write-ahead log open", Duration::from_secs(5));
    assert!(line.contains("\"pending\":0"), "{line}");
    router.terminate(Duration::from_secs(10)).await;
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = common::tempdir();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "cannot mount a tmpfs (the suite runs as root)");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_events_with_503_and_takes_them_again_once_there_is_room() {
    let disk = Tmpfs::mount("256k");
    let state = common::tempdir();
    let config = config(state.path(), "always", &file_sink(state.path())).replace(
        &format!("dir = \"{}/wal\"", state.path().display()),
        &format!("dir = \"{}/wal\"", disk.0.path().display()),
    );
    let mut router = start(&config).await;
    assert_eq!(router.post_event("orders.x", &ordered("before")).await, 202);
    // Leave less room than one event takes.
    let filler = disk.0.path().join("filler");
    let free = fs_free(disk.0.path());
    std::fs::write(&filler, vec![0u8; free.saturating_sub(8 << 10) as usize]).expect("the filler is written");
    let big =
        json!({"specversion": "1.0", "id": "big", "source": "/test", "type": "order", "data": "x".repeat(64 << 10)});
    let response = reqwest::Client::new()
        .post(router.url("/v1/events/orders.x"))
        .header("content-type", "application/cloudevents+json")
        .body(big.to_string())
        .send()
        .await
        .expect("the router answers");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body = response.text().await.expect("the answer has a body");
    assert!(body.contains("write-ahead log") && body.contains("No space left"), "{body}");
    router.wait_for_log("the write-ahead log cannot write", Duration::from_secs(5));

    std::fs::remove_file(&filler).expect("the filler goes");
    assert_eq!(router.post_event("orders.x", &big).await, 202);
    assert_eq!(router.post_event("orders.x", &ordered("after")).await, 202);
    let want: BTreeSet<String> = ["before", "big", "after"].map(String::from).into();
    assert_eq!(wait_delivered(state.path(), &want).await.0, want, "the refused event was not kept twice");
    router.terminate(Duration::from_secs(10)).await;

    // The log the failed write was cut back from reads whole.
    let mut router = start(&config).await;
    let line = router.wait_for_log("write-ahead log open", Duration::from_secs(5));
    assert!(line.contains("\"pending\":0"), "{line}");
    assert!(!router.has_logged("torn or corrupt"), "a cut-back write left no torn tail");
    router.terminate(Duration::from_secs(10)).await;
}

/// Bytes free on the filesystem of `path`.
fn fs_free(path: &Path) -> u64 {
    let output = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().expect("df runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}
