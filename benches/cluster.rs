//! Cluster mode against embedded mode, side by side on this machine: the same router config, the
//! same load (HTTP ingest of 1 KiB events in batches of 100 from concurrent clients, into a file
//! sink), once on the embedded broker and once on NATS clusters of real `nats-server` nodes with
//! JetStream on loopback (three nodes with three replicas, and one node with one). Everything —
//! the load, the router, every NATS node — shares the machine's two cores.
//!
//! Figures: events/s acknowledged (202: in every queue, or stored by JetStream), and events/s until
//! the sink delivered the last one; the peer is async-nats publishing the same events straight into
//! JetStream on the same cluster, the ceiling of what a router can get stored there.
//!
//! Run: `cargo bench --bench cluster` (or `scripts/bench` for every benchmark).

#[path = "../tests/common/mod.rs"]
mod common;

use common::bench_row as row;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::nats::NatsCluster;
use eventyard::config::Config;
use futures_util::StreamExt as _;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 100;
const CLIENTS: usize = 8;
const DURATION: Duration = Duration::from_secs(5);

/// Events/s acknowledged and events/s delivered by a router whose config starts with `broker`.
async fn load(broker: &str) -> (f64, f64) {
    let dir = common::tempdir();
    let config = Config::from_toml(&format!(
        r#"
{broker}
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
"#,
        dir = dir.path().display()
    ))
    .expect("bench config is valid");
    let running = eventyard::server::start(config).await.expect("router starts");
    let base = format!("http://{}", running.http_addr);
    let url = format!("{base}/v1/events/bench.load");
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let mut sent = 0;
            while started.elapsed() < DURATION {
                // Ids unique across the run: JetStream would take a repeated one as a retry.
                let events: Vec<serde_json::Value> = (0..BATCH)
                    .map(|i| {
                        serde_json::json!({
                            "specversion": "1.0", "id": format!("c{c}-{sent}-{i}"), "source": "/bench",
                            "type": "bench.event", "time": "2026-11-23T10:00:00Z", "data_base64": common::base64_kib(),
                        })
                    })
                    .collect();
                let body = Bytes::from(serde_json::to_vec(&events).expect("json"));
                let response = client
                    .post(&url)
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
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
    while delivered(&client, &base).await < total as u64 {
        assert!(Instant::now() < deadline, "the sink did not get every event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_in = started.elapsed();
    running.shutdown().await;
    (total as f64 / acknowledged_in.as_secs_f64(), total as f64 / delivered_in.as_secs_f64())
}

async fn delivered(client: &reqwest::Client, base: &str) -> u64 {
    let metrics = client.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("eventyard_sink_delivered_total{sink=\"files\"} "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// The peer: async-nats publishing the same 1 KiB events (their JSON as the payload, a message id
/// each) straight into a work-queue stream with `replicas`, from as many clients as the load has,
/// each with as many publishes in flight as a router has per batch. Events/s acknowledged.
async fn jetstream_direct(cluster: &NatsCluster, replicas: usize) -> f64 {
    let jetstream = async_nats::jetstream::new(cluster.client().await);
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "bench_direct".into(),
            subjects: vec!["bench.direct.>".into()],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .expect("the stream is made");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let jetstream = jetstream.clone();
        tasks.spawn(async move {
            let mut sent = 0;
            while started.elapsed() < DURATION {
                let acks = futures_util::stream::iter(0..BATCH)
                    .map(|i| {
                        let event = serde_json::json!({
                            "specversion": "1.0", "id": format!("c{c}-{sent}-{i}"), "source": "/bench",
                            "type": "bench.event", "time": "2026-11-23T10:00:00Z", "data_base64": common::base64_kib(),
                        });
                        let publish = async_nats::jetstream::message::PublishMessage::build()
                            .payload(event.to_string().into())
                            .message_id(format!("c{c}-{sent}-{i}"));
                        let jetstream = jetstream.clone();
                        async move { jetstream.send_publish("bench.direct.load", publish).await.expect("sent").await }
                    })
                    .buffered(64);
                let acked: Vec<_> = acks.collect().await;
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

fn nats_broker(cluster: &NatsCluster, replicas: usize) -> String {
    format!("[broker]\nmode = \"nats\"\nservers = [{}]\nreplicas = {replicas}\n", cluster.servers_toml())
}

#[tokio::main]
async fn main() {
    let (embedded_ack, embedded_delivered) = load("").await;
    let note = "1 KiB events, batches of 100, 8 clients";
    row("embedded, acknowledged", embedded_ack, "events/s", note);
    row("embedded, delivered", embedded_delivered, "events/s", "until the sink had the last one");
    for (nodes, replicas) in [(3, 3), (1, 1)] {
        let name = format!("{nodes} node(s), R{replicas}");
        let cluster = NatsCluster::start(nodes).await;
        let (ack, delivered) = load(&nats_broker(&cluster, replicas)).await;
        let direct = jetstream_direct(&cluster, replicas).await;
        drop(cluster);
        let ratios = format!("{:.2}x embedded, {:.2}x JetStream direct", ack / embedded_ack, ack / direct);
        row(&format!("cluster {name}, acknowledged"), ack, "events/s", &format!("stored by JetStream; {ratios}"));
        let ratio = format!("{:.2}x embedded", delivered / embedded_delivered);
        row(&format!("cluster {name}, delivered"), delivered, "events/s", &format!("acked after the sink; {ratio}"));
        row(
            &format!("JetStream direct {name}, acknowledged"),
            direct,
            "events/s",
            "async-nats, same events, 64 in flight per client",
        );
    }
}
