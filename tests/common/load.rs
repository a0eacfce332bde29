//! Load for tests and benchmarks: a publisher that sends numbered events over HTTP, one request at
//! a time, for as long as it runs, and the check that every number arrived exactly once; the
//! batch load the broker benchmarks share, and its JetStream peer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventyard::config::Config;
use futures_util::StreamExt as _;

use serde_json::{Value, json};

/// Publishes events numbered 0, 1, 2, ... (the number is the event id and `data.n`) until
/// [`finish`](Self::finish). Every publish must be accepted (202): a reload may not refuse events.
pub struct NumberedPublisher {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl NumberedPublisher {
    /// Starts publishing to `url` (`http://.../v1/events/SUBJECT`).
    pub fn start(url: String) -> NumberedPublisher {
        NumberedPublisher::start_with(url, json!({}))
    }

    /// Starts publishing to `url` events whose data holds `fields` besides `n`.
    pub fn start_with(url: String, fields: Value) -> NumberedPublisher {
        NumberedPublisher::start_shaped(url, fields, |_, _| {})
    }

    /// Starts publishing to `url` events whose data holds `fields` besides `n`, each event made
    /// over by `shape(n, event)` (an extension, another type) before it is sent.
    pub fn start_shaped(url: String, fields: Value, shape: fn(u64, &mut Value)) -> NumberedPublisher {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, sent) = (stop.clone(), sent.clone());
            async move {
                let client = reqwest::Client::new();
                let mut data = fields;
                while !stop.load(Ordering::Relaxed) {
                    let n = sent.load(Ordering::Relaxed);
                    data["n"] = json!(n);
                    let mut event = json!({"specversion": "1.0", "id": n.to_string(), "source": "/load", "type": "n", "data": data});
                    shape(n, &mut event);
                    let response = client
                        .post(&url)
                        .header("content-type", "application/cloudevents+json")
                        .body(event.to_string())
                        .send()
                        .await
                        .expect("the router answers");
                    let status = response.status();
                    assert_eq!(status, 202, "event {n} refused: {}", response.text().await.unwrap_or_default());
                    sent.store(n + 1, Ordering::Relaxed);
                }
            }
        });
        NumberedPublisher { stop, sent, task }
    }

    /// Events accepted so far: numbers `0..sent()`.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops publishing; returns how many events were accepted.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the publisher did not fail");
        self.sent.load(Ordering::Relaxed)
    }
}

/// Events keyed by their number (their id); panics on a duplicate.
pub fn by_number<'a>(events: impl IntoIterator<Item = &'a Value>) -> BTreeMap<u64, Value> {
    let mut numbered = BTreeMap::new();
    for event in events {
        let n: u64 = event["id"].as_str().and_then(|id| id.parse().ok()).expect("events are numbered");
        assert!(numbered.insert(n, event.clone()).is_none(), "event {n} arrived twice");
    }
    numbered
}

/// How long the numbered-load helpers wait for events on disk.
const ON_DISK: Duration = Duration::from_secs(60);

/// Waits until `root` holds at least `count` events.
pub async fn written(root: &std::path::Path, count: usize) {
    super::router::eventually(&format!("{count} events under {}", root.display()), ON_DISK, || {
        (super::router::json_lines_under(root).len() >= count).then_some(())
    })
    .await;
}

/// Stops `load` and returns every event it sent, in order of number, once all are under `root`;
/// panics on one missing or written twice.
pub async fn all_delivered(load: NumberedPublisher, root: &std::path::Path) -> Vec<Value> {
    let sent = load.finish().await;
    let lines = super::router::eventually("every event on disk", ON_DISK, || {
        let lines = super::router::json_lines_under(root);
        (lines.len() as u64 >= sent).then_some(lines)
    })
    .await;
    let numbered = by_number(lines.iter().map(|(_, event)| event));
    assert_eq!(numbered.len() as u64, sent, "no event missing");
    numbered.into_values().collect()
}

pub const BATCH: usize = 100;
pub const CLIENTS: usize = 8;
pub const DURATION: Duration = Duration::from_secs(5);

/// How the batch load reaches the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Each batch one HTTP request (a CloudEvents batch), answered 202.
    Http,
    /// Each batch [`BATCH`] PUBs of plain 1 KiB payloads on one NATS connection, then a PING whose
    /// PONG acknowledges them (the gateway takes the PUBs before it answers the PING).
    Nats,
}

/// The load of the benchmarks that compare brokers: 1 KiB events in batches of [`BATCH`] from
/// [`CLIENTS`] clients for [`DURATION`], into a file sink, on an in-process router whose config
/// starts with `broker`. Returns events/s acknowledged and events/s until the sink had the last.
pub async fn batch_load(broker: &str) -> (f64, f64) {
    load(broker, Over::Http).await
}

/// The config of [`load`]: `broker` first, then the gateway (on when `nats`), HTTP and a route of
/// `bench.>` to the file sink `files` under `dir`.
pub fn load_config(broker: &str, dir: &str, nats: bool) -> String {
    format!(
        r#"
{broker}
[service]
nats = {nats}
host = "127.0.0.1"
port = 0
[plugins]
dir = "{dir}/plugins"
cache_dir = ""
[http]
listen = "127.0.0.1:0"
[[route]]
name = "bench"
subject = "bench.>"
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{dir}/files"
fsync = "never"
queue_size = 100000
batch_size = 1000
# A full queue holds publishers back rather than refusing them: NATS PUBs have no answer to refuse.
block_timeout_ms = 60000
"#,
    )
}

/// [`batch_load`], the batches sent `over` HTTP or NATS.
pub async fn load(broker: &str, over: Over) -> (f64, f64) {
    let dir = super::tempdir();
    let config = load_config(broker, &dir.path().display().to_string(), over == Over::Nats);
    let config = Config::from_toml(&config).expect("bench config is valid");
    let running = eventyard::server::start(config).await.expect("router starts");
    let rates = load_on(running.http_addr, running.nats_addr, over).await;
    running.shutdown().await;
    rates
}

/// The load of [`load`] on a router that already runs [`load_config`] (in this process or not).
pub async fn load_on(http: std::net::SocketAddr, nats: Option<std::net::SocketAddr>, over: Over) -> (f64, f64) {
    let base = format!("http://{http}");
    let url = format!("{base}/v1/events/bench.load");
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        if over == Over::Nats {
            let gateway = nats.expect("the gateway is on");
            tasks.spawn(nats_batches(gateway, started));
            continue;
        }
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let mut sent = 0;
            while started.elapsed() < DURATION {
                // Ids unique across the run: JetStream would take a repeated one as a retry.
                let events: Vec<serde_json::Value> = (0..BATCH)
                    .map(|i| {
                        serde_json::json!({
                            "specversion": "1.0", "id": format!("c{c}-{sent}-{i}"), "source": "/bench",
                            "type": "bench.event", "time": "2026-11-23T10:00:00Z", "data_base64": super::base64_kib(),
                        })
                    })
                    .collect();
                let body = Bytes::from(serde_json::to_vec(&events).expect("json"));
                let response = super::post_batch(&client, &url, body).await;
                assert_eq!(response.status(), 202, "the router accepts the load");
                sent += 1;
            }
            sent * BATCH
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.expect("client task");
    }
    let acknowledged_in = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered_so_far(&client, &base).await < total as u64 {
        assert!(Instant::now() < deadline, "the sink did not get every event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_in = started.elapsed();
    (total as f64 / acknowledged_in.as_secs_f64(), total as f64 / delivered_in.as_secs_f64())
}

/// One client of [`Over::Nats`]: batches of PUBs, each acknowledged by a PING's PONG, until
/// [`DURATION`] has passed since `started`. Returns how many events it published.
async fn nats_batches(gateway: std::net::SocketAddr, started: Instant) -> usize {
    let mut client = super::nats::RawClient::connect(gateway).await;
    client.send(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n").await;
    let payload = vec![b'x'; 1024];
    let mut batch = Vec::with_capacity(BATCH * (payload.len() + 32) + 6);
    for _ in 0..BATCH {
        batch.extend_from_slice(format!("PUB bench.load {}\r\n", payload.len()).as_bytes());
        batch.extend_from_slice(&payload);
        batch.extend_from_slice(b"\r\n");
    }
    batch.extend_from_slice(b"PING\r\n");
    let mut sent = 0;
    while started.elapsed() < DURATION {
        client.send(&batch).await;
        client.read_until("PONG\r\n", Duration::from_secs(60)).await;
        sent += BATCH;
    }
    sent
}

/// Messages per second from one async-nats publisher to one subscriber on the server at `port`,
/// from the first publish to the last message received, and how many the subscriber never saw.
pub async fn nats_throughput(port: u16, size: usize, count: usize) -> (f64, usize) {
    let url = format!("nats://127.0.0.1:{port}");
    // Room for every message: a full client-side buffer drops messages.
    let subscriber = async_nats::ConnectOptions::new()
        .subscription_capacity(count + 1024)
        .connect(&url)
        .await
        .expect("subscriber connects");
    let publisher = async_nats::connect(&url).await.expect("publisher connects");
    let mut messages = subscriber.subscribe("bench.throughput").await.expect("subscribe");
    subscriber.flush().await.expect("flush");
    let payload = Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    let receiving = tokio::spawn(async move {
        let (mut received, mut last) = (0, Instant::now());
        while received < count {
            match tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
                Ok(Some(_)) => (received, last) = (received + 1, Instant::now()),
                _ => break,
            }
        }
        (received, last)
    });
    for _ in 0..count {
        publisher.publish("bench.throughput", payload.clone()).await.expect("publish");
    }
    publisher.flush().await.expect("flush");
    let (received, last) = receiving.await.expect("receiver");
    (received as f64 / (last - started).as_secs_f64(), count - received)
}

async fn delivered_so_far(client: &reqwest::Client, base: &str) -> u64 {
    let metrics = client.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("eventyard_sink_delivered_total{sink=\"files\"} "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// How the JetStream peer stores a client's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storing {
    /// A message per event (a message id each), with as many publishes in flight as a router has
    /// per batch.
    EventPerMessage,
    /// The whole batch as one message (its JSON array), one in flight: what a client that groups
    /// its own events gets.
    BatchPerMessage,
}

/// The peer: async-nats publishing the same 1 KiB events (their JSON as the payload) straight into
/// a work-queue stream with `replicas`, from as many clients as the load has, `storing` them one way
/// or the other. Events/s acknowledged.
pub async fn jetstream_direct(cluster: &super::nats::NatsCluster, replicas: usize, storing: Storing) -> f64 {
    let jetstream = async_nats::jetstream::new(cluster.client().await);
    let name = format!("bench_{storing:?}");
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .expect("the stream is made");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (jetstream, subject) = (jetstream.clone(), format!("{name}.load"));
        tasks.spawn(async move {
            let mut sent = 0;
            while started.elapsed() < DURATION {
                let events = (0..BATCH).map(|i| {
                    serde_json::json!({
                        "specversion": "1.0", "id": format!("c{c}-{sent}-{i}"), "source": "/bench",
                        "type": "bench.event", "time": "2026-11-23T10:00:00Z", "data_base64": super::base64_kib(),
                    })
                });
                let publish = |payload: String, id: String| {
                    let publish =
                        async_nats::jetstream::message::PublishMessage::build().payload(payload.into()).message_id(id);
                    let (jetstream, subject) = (jetstream.clone(), subject.clone());
                    async move { jetstream.send_publish(subject, publish).await.expect("sent").await }
                };
                let acked: Vec<_> = match storing {
                    Storing::EventPerMessage => {
                        let publishes =
                            events.enumerate().map(|(i, event)| publish(event.to_string(), format!("c{c}-{sent}-{i}")));
                        futures_util::stream::iter(publishes).buffered(64).collect().await
                    }
                    Storing::BatchPerMessage => {
                        let batch = serde_json::Value::from(events.collect::<Vec<_>>());
                        vec![publish(batch.to_string(), format!("c{c}-{sent}")).await]
                    }
                };
                assert!(acked.iter().all(Result::is_ok), "JetStream stores the load");
                sent += 1;
            }
            sent * BATCH
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.expect("client task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}
