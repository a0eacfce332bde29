//! Durable embedded mode end to end: real router processes with `[durability]`, killed with
//! SIGKILL while real HTTP and NATS clients publish, restarted on the same write-ahead log; a log
//! with a torn tail; a disk that fills up (a real tmpfs).

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::crash::{
    KillAt, config, file_sink, kill_during_recovery, kill_loop, ordered, stalled_sink, start, wait_delivered,
};
use common::http_server::HttpDestination;
use common::nats::RawClient;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_random_kills() {
    const KILLS: usize = 6;
    let report = kill_loop(KILLS, KillAt::Random).await;
    println!("{}", report.summary(KILLS, "at random"));
    assert!(
        report.over_http > 0 && report.acknowledged.len() > report.over_http,
        "both protocols got events acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_kills_during_segment_rotation() {
    const KILLS: usize = 20;
    let report = kill_loop(KILLS, KillAt::Rotation).await;
    println!("{}", report.summary(KILLS, "as a segment began"));
    assert!(
        report.over_http > 0 && report.acknowledged.len() > report.over_http,
        "both protocols got events acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_survives_kills_during_recovery() {
    const KILLS: usize = 20;
    let (report, while_recovering) = kill_during_recovery(KILLS).await;
    println!("{} ({while_recovering} before the replay was over)", report.summary(KILLS, "while recovering"));
    assert!(while_recovering > KILLS / 2, "most kills came during recovery: {while_recovering} of {KILLS}");
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
    assert_eq!(wait_delivered(state.path(), &want).await.ids, want);
    // Delivered and marked done: a second restart replays nothing.
    router.terminate(Duration::from_secs(10)).await;
    let mut router = start(&config(state.path(), "always", &file_sink(state.path()))).await;
    let line = router.wait_for_log("write-ahead log open", Duration::from_secs(5));
    assert!(line.contains("\"pending\":0"), "{line}");
    router.terminate(Duration::from_secs(10)).await;
}

/// The log's segment files under `{state}/wal`, oldest first, with the first seq their names give.
fn segments(state: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut found: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(state.join("wal"))
        .expect("the log directory reads")
        .flatten()
        .map(|entry| entry.path())
        .filter_map(|path| Some((path.file_stem()?.to_str()?.parse().ok()?, path)))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_segment_torn_in_its_first_frame_is_never_appended_behind() {
    let state = common::tempdir();
    let stalled = config(state.path(), "always", &stalled_sink());
    let mut router = start(&stalled).await;
    for id in ["a", "b", "c"] {
        assert_eq!(router.post_event("orders.x", &ordered(id)).await, 202);
    }
    router.kill();
    // The next run had begun its segment, after seqs 0-2, and died inside its first frame.
    let (first, _) = segments(state.path()).pop().expect("the log has a segment");
    let torn = state.path().join("wal").join(format!("{:020}.wal", first + 3));
    std::fs::write(&torn, [1, 200, 0, 0, 0, 7, 7]).expect("the torn segment is written");

    // A run that acknowledges more, then dies too.
    let mut router = start(&stalled).await;
    router.wait_for_log("skipped a torn or corrupt tail of the write-ahead log", Duration::from_secs(5));
    assert_eq!(router.metric("eventyard_wal_recovery_skipped_bytes").await, 7);
    for id in ["d", "e"] {
        assert_eq!(router.post_event("orders.x", &ordered(id)).await, 202);
    }
    router.kill();

    let mut router = start(&config(state.path(), "always", &file_sink(state.path()))).await;
    let want: BTreeSet<String> = ["a", "b", "c", "d", "e"].map(String::from).into();
    assert_eq!(wait_delivered(state.path(), &want).await.ids, want, "what came after the torn frame was kept");
    assert!(!router.has_logged("torn or corrupt"), "the torn frame was cut off once");
    router.terminate(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn an_event_the_log_cannot_read_back_is_refused_and_the_largest_it_can_survives_a_kill() {
    let state = common::tempdir();
    let stalled = config(state.path(), "always", &stalled_sink());
    let over = stalled.replace("[http]\n", "[http]\nmax_body = \"100MiB\"\n");
    let (code, _, err) = common::run_eventyard(&["check", "--config", &write_config(state.path(), &over)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("http.max_body") && err.contains("64 MiB"), "{err}");

    let at_limit = stalled.replace("[http]\n", "[http]\nmax_body = \"64MiB\"\n");
    let mut router = start(&at_limit).await;
    let big = vec![b'x'; 64 << 20];
    let response = reqwest::Client::new()
        .post(router.url("/v1/events/orders.big"))
        .header("content-type", "application/octet-stream")
        .header("ce-specversion", "1.0")
        .header("ce-id", "big")
        .header("ce-source", "/test")
        .header("ce-type", "order")
        .header("ce-padding", "p".repeat(16 << 10))
        .body(big)
        .send()
        .await
        .expect("the router answers");
    assert_eq!(response.status(), 202);
    router.kill();

    let mut router = start(&config(state.path(), "always", &file_sink(state.path()))).await;
    let want: BTreeSet<String> = ["big".to_owned()].into();
    assert_eq!(wait_delivered(state.path(), &want).await.ids, want, "a 64 MiB event survives the kill");
    router.terminate(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_slows_a_nats_publisher_and_its_pong_still_means_stored() {
    use tokio::io::AsyncReadExt as _;

    let state = common::tempdir();
    let port = common::free_port();
    let sink = format!(
        "kind = \"http\"\nurl = \"http://127.0.0.1:{port}/events\"\nqueue_size = 5\noverflow = \"reject\"\nbatch_size = 1\n\
         [sinks.out.retry]\nmax_attempts = 1000\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\n"
    );
    let mut router = start(&config(state.path(), "always", &sink)).await;
    let mut client = RawClient::connect(router.nats.expect("the gateway is on")).await;
    let pubs = "PUB orders.nats 2\r\n{}\r\n".repeat(20);
    client.send(format!("CONNECT {{\"verbose\":false}}\r\n{pubs}PING\r\n").as_bytes()).await;
    // One event in delivery and five queued: the rest wait, and so does the PONG.
    let mut answer = vec![0; 1024];
    let early = tokio::time::timeout(Duration::from_secs(1), client.stream.read(&mut answer)).await;
    assert!(
        early.is_err(),
        "no PONG while the queue is full: {:?}",
        early.map(|n| String::from_utf8_lossy(&answer[..n.unwrap_or(0)]).into_owned())
    );
    assert!(router.metric("eventyard_gateway_slowed_publishes_total").await > 0);
    assert_eq!(router.metric("eventyard_gateway_refused_publishes_total").await, 0);

    let destination = HttpDestination::start_on(port, vec![], axum::http::StatusCode::OK, Duration::ZERO).await;
    client.read_until("PONG\r\n", Duration::from_secs(20)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while destination.received().len() < 20 {
        assert!(tokio::time::Instant::now() < deadline, "{} of 20 arrived", destination.received().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    router.terminate(Duration::from_secs(10)).await;
}

/// Writes `config` as a file in `dir`; returns its path.
fn write_config(dir: &Path, config: &str) -> String {
    let path = dir.join("check.toml");
    std::fs::write(&path, config).expect("the config is written");
    path.display().to_string()
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

    // Over NATS: a run of PUBs is refused as a whole and counted, and the PONG after them still
    // comes; a verbose client is told its PUB was not stored.
    let mut nats = RawClient::connect(router.nats.expect("the gateway is on")).await;
    let payload = "x".repeat(64 << 10);
    let pubs = format!("PUB orders.x {len}\r\n{payload}\r\n", len = payload.len()).repeat(3);
    nats.send(format!("CONNECT {{\"verbose\":false}}\r\n{pubs}PING\r\n").as_bytes()).await;
    nats.read_until("PONG\r\n", Duration::from_secs(5)).await;
    assert_eq!(router.metric("eventyard_gateway_refused_publishes_total").await, 3);
    let mut verbose = RawClient::connect(router.nats.expect("the gateway is on")).await;
    let one = format!("PUB orders.x {len}\r\n{payload}\r\n", len = payload.len());
    verbose.send(format!("CONNECT {{\"verbose\":true}}\r\n{one}").as_bytes()).await;
    let answer = verbose.read_until("Publish Not Stored", Duration::from_secs(5)).await;
    assert!(!answer.contains("+OK\r\n+OK"), "the PUB was not acknowledged: {answer}");

    std::fs::remove_file(&filler).expect("the filler goes");
    assert_eq!(router.post_event("orders.x", &big).await, 202);
    assert_eq!(router.post_event("orders.x", &ordered("after")).await, 202);
    let want: BTreeSet<String> = ["before", "big", "after"].map(String::from).into();
    assert_eq!(wait_delivered(state.path(), &want).await.ids, want, "the refused event was not kept twice");
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
