//! Durable embedded mode under crashes, for the tests and the benchmark: a router config with
//! `[durability]`, publishers over HTTP and NATS that count what the router acknowledged until it
//! dies, and the loop that kills the router with SIGKILL at random moments.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::router::RouterProcess;

/// A router keeping its log in `{state}/wal` with `fsync`, the gateway on, and one route,
/// `orders.>`, into `sink` (a sink table's body, kind included).
pub fn config(state: &Path, fsync: &str, sink: &str) -> String {
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

pub fn file_sink(state: &Path) -> String {
    format!("kind = \"file\"\nroot = \"{}/out\"\n", state.display())
}

/// A sink that cannot deliver (nothing listens), so every event stays unfinished in the log.
pub fn stalled_sink() -> String {
    let port = super::free_port();
    format!(
        "kind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\n[sinks.out.retry]\nmax_attempts = 1000\ninitial_backoff_ms = 1000\n"
    )
}

/// The ids of the events in the file sink under `{state}/out`, and how many lines were cut short
/// by a kill (skipped: the sink had not confirmed them, so the log replays their events) and how
/// many repeat an id already seen (an event delivered again after a kill: at least once).
pub fn delivered(state: &Path) -> Delivered {
    let mut found = Delivered::default();
    for (_, bytes) in super::files_under(&state.join("out")) {
        for line in String::from_utf8_lossy(&bytes).lines() {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(event) => {
                    if !found.ids.insert(event["id"].as_str().expect("events have ids").to_owned()) {
                        found.duplicates += 1;
                    }
                }
                Err(_) => found.torn += 1,
            }
        }
    }
    found
}

/// What the file sink holds; see [`delivered`].
#[derive(Default)]
pub struct Delivered {
    pub ids: BTreeSet<String>,
    pub torn: usize,
    pub duplicates: usize,
}

/// Waits until `/readyz` says the router is ready (it replays its log first).
pub async fn ready(router: &RouterProcess) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(router.url("/readyz")).await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "the router did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn ordered(id: &str) -> serde_json::Value {
    json!({"specversion": "1.0", "id": id, "source": "/test", "type": "order", "data": {"id": id}})
}

/// Publishes `h0, h1, ...` over HTTP in batches of 10 until the router dies; returns the ids it
/// got a 202 for.
pub async fn publish_http(router_url: String, from: u64) -> Vec<String> {
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
pub async fn publish_nats(gateway: std::net::SocketAddr, from: u64) -> Vec<String> {
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
pub async fn start(config: &str) -> RouterProcess {
    let router = RouterProcess::start(config);
    ready(&router).await;
    router
}

/// Waits until every id of `acked` is in the file sink; returns what it holds.
pub async fn wait_delivered(state: &Path, acked: &BTreeSet<String>) -> Delivered {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = delivered(state);
        let missing: Vec<&String> = acked.difference(&found.ids).collect();
        if missing.is_empty() {
            return found;
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

/// What a kill loop found.
pub struct KillReport {
    pub seed: u64,
    pub acknowledged: BTreeSet<String>,
    /// Over HTTP; the rest came through the NATS gateway.
    pub over_http: usize,
    pub delivered: Delivered,
}

impl KillReport {
    fn new(seed: u64, acknowledged: BTreeSet<String>, delivered: Delivered) -> KillReport {
        let over_http = acknowledged.iter().filter(|id| id.starts_with('h')).count();
        KillReport { seed, acknowledged, over_http, delivered }
    }

    /// One line for the test's output.
    pub fn summary(&self, kills: usize, at: &str) -> String {
        format!(
            "seed {}: {kills} kills {at}, {} acknowledged ({} over HTTP, {} over NATS), {} delivered, {} duplicates, {} torn sink lines",
            self.seed,
            self.acknowledged.len(),
            self.over_http,
            self.acknowledged.len() - self.over_http,
            self.delivered.ids.len(),
            self.delivered.duplicates,
            self.delivered.torn,
        )
    }
}

/// When [`kill_loop`] kills the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillAt {
    /// After a random 150-700 ms.
    Random,
    /// After a random 50-300 ms, as soon as the log begins a new segment file: in the middle of
    /// the rotation, or of the first writes to the new segment.
    Rotation,
}

/// Starts a router with `[durability]` (fsync `always`) on one state directory `kills` times,
/// publishes over HTTP and NATS, and kills it with SIGKILL as `at` says; then starts it once more
/// and waits until the file sink has every acknowledged event (panics if one never comes).
pub async fn kill_loop(kills: usize, at: KillAt) -> KillReport {
    let state = super::tempdir();
    let mut config = config(state.path(), "always", &file_sink(state.path()));
    if at == KillAt::Rotation {
        config = config.replace("segment_bytes = 65536", "segment_bytes = 8192");
    }
    let seed = fastrand::u64(..);
    let mut random = fastrand::Rng::with_seed(seed);
    let mut acknowledged = BTreeSet::new();
    for round in 0..kills {
        let router = start(&config).await;
        let from = (round as u64) * 1_000_000;
        let until = async {
            match at {
                KillAt::Random => tokio::time::sleep(Duration::from_millis(random.u64(150..700))).await,
                KillAt::Rotation => {
                    tokio::time::sleep(Duration::from_millis(random.u64(50..300))).await;
                    next_segment(state.path()).await;
                }
            }
        };
        acknowledged.extend(publish_then_kill(router, from, until).await);
    }
    let mut router = start(&config).await;
    let delivered = wait_delivered(state.path(), &acknowledged).await;
    router.terminate(Duration::from_secs(10)).await;
    KillReport::new(seed, acknowledged, delivered)
}

/// Publishes over HTTP and NATS, ids from `from` on, until `until` is over, then kills the router
/// with SIGKILL; returns the ids it acknowledged.
async fn publish_then_kill(mut router: RouterProcess, from: u64, until: impl Future<Output = ()>) -> Vec<String> {
    let http = tokio::spawn(publish_http(format!("http://{}", router.http), from));
    let nats = tokio::spawn(publish_nats(router.nats.expect("the gateway is on"), from));
    until.await;
    router.kill();
    let mut acknowledged = http.await.expect("the HTTP publisher did not fail");
    acknowledged.extend(nats.await.expect("the NATS publisher did not fail"));
    acknowledged
}

/// Returns as soon as the log under `{state}/wal` has a segment newer than it has now.
async fn next_segment(state: &Path) {
    let newest = || {
        std::fs::read_dir(state.join("wal"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.path().file_stem()?.to_str()?.parse::<u64>().ok())
            .max()
    };
    let now = newest();
    let deadline = Instant::now() + Duration::from_secs(10);
    while newest() == now {
        assert!(Instant::now() < deadline, "the log began no new segment");
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// Fills a log with events a stalled sink never takes, then starts a router on it `kills` times
/// and kills it with SIGKILL a random 0-600 ms after it was started — while it reads the log back,
/// cuts a torn tail off, or replays — then starts it once more and waits until the file sink has
/// every acknowledged event. Returns the report and how many kills came before the router was
/// ready (in the middle of recovery).
pub async fn kill_during_recovery(kills: usize) -> (KillReport, usize) {
    let state = super::tempdir();
    let seed = fastrand::u64(..);
    let mut random = fastrand::Rng::with_seed(seed);
    let router = start(&config(state.path(), "always", &stalled_sink())).await;
    let filled = tokio::time::sleep(Duration::from_millis(1500));
    let acknowledged: BTreeSet<String> = publish_then_kill(router, 0, filled).await.into_iter().collect();

    let config = config(state.path(), "always", &file_sink(state.path()));
    let mut while_recovering = 0;
    for _ in 0..kills {
        let mut router = RouterProcess::launch(&config);
        tokio::time::sleep(Duration::from_millis(random.u64(0..600))).await;
        if !router.has_logged_now("replayed the events the write-ahead log held") {
            while_recovering += 1;
        }
        router.kill();
    }
    let mut router = start(&config).await;
    let delivered = wait_delivered(state.path(), &acknowledged).await;
    router.terminate(Duration::from_secs(10)).await;
    (KillReport::new(seed, acknowledged, delivered), while_recovering)
}
