//! Router throughput, end to end on this machine: the router runs in process; load comes from the
//! same process over real loopback sockets, so both share the machine's cores.
//!
//! - HTTP ingest → file sink: 1 KiB events in batches of 100 from concurrent clients; events/s
//!   acknowledged (202), p50/p99 acknowledgement latency, and events/s until the last one is on disk.
//! - publish → route → sink through the embedded broker with one Wasm handler (`passthrough`).
//!
//! Run: `cargo bench --bench benchmarks -- router` (or `scripts/bench` for every benchmark).

use crate::common;

use common::bench_row as row;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use eventyard::broker::{Broker, EmbeddedBroker, Pattern};
use eventyard::config::Config;
use eventyard::event::Event;
use eventyard::plugin::{Plugin, PluginRuntime, PluginSpec, Role, RuntimeOptions};
use eventyard::queue::{MemoryBudget, OverflowPolicy, QueueLimits, SinkQueue};
use eventyard::route::{ChainStep, FailurePolicy, Route};
use eventyard::sink::worker::{Delivery, RetryPolicy, SinkStats, SinkWorker};
use eventyard::sink::{DeliveryError, Sink};
use eventyard::slot::Slot;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 100;
const CLIENTS: usize = 8;
const DURATION: Duration = Duration::from_secs(5);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn http_to_file() {
    let dir = common::tempdir();
    let config = Config::from_toml(&format!(
        r#"
[plugins]
dir = "{dir}/plugins"
cache_dir = ""
[http]
listen = "127.0.0.1:0"
[[route]]
name = "all"
subject = ">"
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{dir}/files"
fsync = "never"
queue_size = 1000000
batch_size = 1000
"#,
        dir = dir.path().display()
    ))
    .expect("bench config is valid");
    let running = eventyard::server::start(config).await.expect("router starts");
    let url = format!("http://{}/v1/events/bench.load", running.http_addr);
    let events: Vec<serde_json::Value> = (0..BATCH)
        .map(|i| {
            serde_json::json!({
                "specversion": "1.0", "id": format!("e{i}"), "source": "/bench", "type": "bench.event",
                "time": "2026-11-23T10:00:00Z", "routingkey": "node-1", "data_base64": common::base64_kib(),
            })
        })
        .collect();
    let body = Bytes::from(serde_json::to_vec(&events).expect("json"));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < DURATION {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 202, "the router accepts the load");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("client task"));
    }
    let accepted_in = started.elapsed();
    let total = latencies.len() * BATCH;
    running.shutdown().await;
    let on_disk_in = started.elapsed();
    latencies.sort();
    row(
        "http ingest -> file sink, acknowledged",
        total as f64 / accepted_in.as_secs_f64(),
        "events/s",
        "1 KiB events, batches of 100, 8 clients; target 100000",
    );
    row(
        "http ingest -> file sink, on disk",
        total as f64 / on_disk_in.as_secs_f64(),
        "events/s",
        "until the queue drained",
    );
    row(
        "http ingest ack latency p50",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        "ms",
        "per request of 100 events",
    );
    row(
        "http ingest ack latency p99",
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        "ms",
        "per request of 100 events",
    );
}

/// Counts what it is given.
struct CountingSink(AtomicU64);

#[async_trait]
impl Sink for CountingSink {
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

async fn broker_with_wasm_handler() {
    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let Ok(Plugin::Handler(handler)) =
        runtime.load(PluginSpec::new("passthrough", common::plugin("passthrough"), Role::Handler)).await
    else {
        panic!("passthrough loads as a handler");
    };
    let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
    let queue = Arc::new(SinkQueue::new(
        "count",
        QueueLimits::events(1_000_000, OverflowPolicy::Block, Duration::from_secs(10)),
        MemoryBudget::unbounded(),
    ));
    let sink = Arc::new(CountingSink(AtomicU64::new(0)));
    let delivery = Delivery {
        sink: sink.clone(),
        batch_size: 1000,
        batch_bytes: usize::MAX,
        linger: Duration::from_millis(1),
        retry: RetryPolicy::default(),
    };
    let worker = SinkWorker {
        name: "count".into(),
        delivery: Arc::new(Slot::new(Arc::new(delivery))),
        queue: queue.clone(),
        broker: broker.clone(),
        stats: Arc::new(SinkStats::default()),
    };
    let worker = tokio::spawn(worker.run(CancellationToken::new()));
    let route = Arc::new(Route {
        name: "bench".into(),
        subject: Pattern::new("bench.>").expect("pattern"),
        routing_key: None,
        chain: vec![ChainStep {
            name: "passthrough".into(),
            handler: handler.clone(),
            policy: FailurePolicy::FailClosed,
        }],
        sinks: vec![queue.clone()],
        broker: broker.clone(),
        stats: Default::default(),
    });
    broker.subscribe(route.subject.clone(), None, route);
    let mut event =
        common::event(serde_json::json!({"subject": "bench.load", "type": "bench.event", "source": "/bench"}));
    event.data = Bytes::from(vec![b'x'; 1024]);
    let count = 200_000u64;
    let started = Instant::now();
    for _ in 0..count {
        broker.publish(event.clone()).await.expect("publish");
    }
    queue.close();
    worker.await.expect("worker");
    let elapsed = started.elapsed();
    assert_eq!(sink.0.load(Ordering::Relaxed), count);
    row(
        "publish -> wasm handler -> sink (embedded broker)",
        count as f64 / elapsed.as_secs_f64(),
        "events/s",
        "1 KiB events, passthrough plugin, one publisher",
    );
}

#[tokio::main]
pub async fn run() {
    http_to_file().await;
    broker_with_wasm_handler().await;
}
