//! Router throughput, end to end on this machine: the router runs in process; load comes from the
//! same process over real loopback sockets, so both share the machine's cores.
//!
//! - HTTP ingest → file sink: 1 KiB events in batches of 100 from concurrent clients; events/s
//!   acknowledged (202), p50/p99 acknowledgement latency, and events/s until the last one is on
//!   disk (fsync never, and batch), each beside a bare axum server's figure from the same run (the
//!   peer: reading the body and answering 202), the ratio, and the CPU time per event of both;
//!   ingest with no route; and events with 1 KiB of JSON `data` instead of `data_base64`. A
//!   second peer is the least a server doing the job does: a hand-rolled axum handler that splits
//!   each batch and appends its events to one file.
//! - publish → route → sink through the embedded broker with one Wasm handler (`passthrough`).
//!
//! Run: `cargo bench --bench benchmarks -- router` (or `scripts/bench` for every benchmark).
//! `BENCH_ONLY=file` (or `json`, for JSON data) runs only Eventyard with the file sink (fsync
//! never), for profiling.

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

/// One run of the load against a server.
struct Run {
    /// Events acknowledged per second.
    acknowledged: f64,
    /// Events per second until the last one was delivered (for the peer, acknowledged).
    delivered: f64,
    /// Every request's latency, sorted.
    latencies: Vec<Duration>,
    /// CPU time of this process (server and load together) per event, in microseconds: steadier
    /// than rates on a shared machine.
    cpu_per_event: f64,
}

/// Drives `CLIENTS` clients posting `body` (a batch of `BATCH` events) to `url` for `DURATION`.
async fn post_load(url: &str, body: &Bytes) -> Run {
    let client = reqwest::Client::new();
    let (started, cpu) = (Instant::now(), common::cpu_time(std::process::id()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
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
                assert_eq!(response.status(), 202, "the server accepts the load");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("client task"));
    }
    latencies.sort();
    let events = (latencies.len() * BATCH) as f64;
    let rate = events / started.elapsed().as_secs_f64();
    let cpu_per_event = (common::cpu_time(std::process::id()) - cpu).as_secs_f64() * 1e6 / events;
    Run { acknowledged: rate, delivered: rate, latencies, cpu_per_event }
}

/// `app`, an axum server of a peer, under the load.
async fn axum_under_load(app: axum::Router, body: &Bytes) -> Run {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let run = post_load(&format!("http://{addr}/v1/events/bench.load"), body).await;
    server.abort();
    run
}

/// The peer: a bare axum server that reads each request's body and answers 202, the ceiling of
/// HTTP ingest on this machine.
async fn bare_axum(body: &Bytes) -> Run {
    async fn take(_subject: axum::extract::Path<String>, body: axum::body::Body) -> axum::http::StatusCode {
        let _ = axum::body::to_bytes(body, 64 << 20).await;
        axum::http::StatusCode::ACCEPTED
    }
    let app = axum::Router::new().route("/v1/events/{subject}", axum::routing::post(take));
    axum_under_load(app, body).await
}

/// The second peer: the least a server doing this job does, hand-rolled on axum. It splits each
/// batch into its events' JSON texts (one serde_json pass, nothing checked) and appends them as
/// lines to one file before it answers 202: no routes, no queue, no validation, no formatting.
async fn hand_rolled_file_writer(body: &Bytes) -> Run {
    use std::io::Write as _;
    type File = Arc<std::sync::Mutex<std::fs::File>>;
    async fn take(
        axum::extract::State(file): axum::extract::State<File>,
        body: axum::body::Body,
    ) -> axum::http::StatusCode {
        let body = axum::body::to_bytes(body, 64 << 20).await.expect("the body");
        let events: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&body).expect("a batch");
        let mut lines = Vec::with_capacity(body.len() + events.len());
        for event in events {
            lines.extend_from_slice(event.get().as_bytes());
            lines.push(b'\n');
        }
        file.lock().expect("the file").write_all(&lines).expect("written");
        axum::http::StatusCode::ACCEPTED
    }
    let dir = common::tempdir();
    let file = std::fs::File::create(dir.path().join("events.jsonl")).expect("the file");
    let app = axum::Router::new()
        .route("/v1/events/{subject}", axum::routing::post(take))
        .with_state(Arc::new(std::sync::Mutex::new(file)));
    axum_under_load(app, body).await
}

/// Eventyard with `routes` (TOML for `[[route]]` and `[sinks.*]`, `{dir}` the scratch directory)
/// under the load, until every event is delivered.
async fn eventyard_under_load(routes: &str, body: &Bytes) -> Run {
    let dir = common::tempdir();
    let config = format!(
        "[plugins]\ndir = \"{dir}/plugins\"\ncache_dir = \"\"\n[http]\nlisten = \"127.0.0.1:0\"\n{routes}",
        dir = dir.path().display(),
        routes = routes.replace("{dir}", &dir.path().display().to_string()),
    );
    let config = Config::from_toml(&config).expect("bench config is valid");
    let running = eventyard::server::start(config).await.expect("router starts");
    let (started, cpu) = (Instant::now(), common::cpu_time(std::process::id()));
    let mut run = post_load(&format!("http://{}/v1/events/bench.load", running.http_addr), body).await;
    let events = (run.latencies.len() * BATCH) as f64;
    running.shutdown().await;
    run.delivered = events / started.elapsed().as_secs_f64();
    run.cpu_per_event = (common::cpu_time(std::process::id()) - cpu).as_secs_f64() * 1e6 / events;
    run
}

/// A `>` route to a file sink with `fsync`.
fn file_route(fsync: &str) -> String {
    format!(
        "[[route]]\nname = \"all\"\nsubject = \">\"\nsinks = [\"files\"]\n[sinks.files]\nkind = \"file\"\n\
         root = \"{{dir}}/files\"\nfsync = \"{fsync}\"\nqueue_size = 1000000\nbatch_size = 1000\n"
    )
}

/// A request body: a batch of `BATCH` events, the `i`th with the members `data(i)` gives.
fn batch_body(data: impl Fn(usize) -> serde_json::Value) -> Bytes {
    let events: Vec<serde_json::Value> = (0..BATCH)
        .map(|i| {
            let mut event = serde_json::json!({
                "specversion": "1.0", "id": format!("e{i}"), "source": "/bench", "type": "bench.event",
                "time": "2026-11-23T10:00:00Z", "routingkey": "node-1",
            });
            event.as_object_mut().expect("an object").extend(data(i).as_object().expect("members").clone());
            event
        })
        .collect();
    Bytes::from(serde_json::to_vec(&events).expect("json"))
}

async fn http_to_file() {
    let body = batch_body(|_| serde_json::json!({"data_base64": common::base64_kib()}));
    let json_body =
        batch_body(|i| serde_json::json!({"datacontenttype": "application/json", "data": common::json_kib(i)}));
    let cpu = |run: &Run| format!("cpu {:.2} µs/event", run.cpu_per_event);
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        let run = eventyard_under_load(&file_route("never"), if only == "json" { &json_body } else { &body }).await;
        row("http ingest -> file sink, acknowledged", run.acknowledged, "events/s", "fsync never");
        row("http ingest -> file sink, on disk", run.delivered, "events/s", &cpu(&run));
        return;
    }
    let peer = bare_axum(&body).await;
    let versus = |peer: &Run, rate: f64, run: &Run| {
        format!(
            "bare axum {:.0} events/s; ratio {:.2}x; {} (bare axum {:.2})",
            peer.acknowledged,
            rate / peer.acknowledged,
            cpu(run),
            peer.cpu_per_event
        )
    };
    let vs = |rate: f64, run: &Run| versus(&peer, rate, run);
    row(
        "bare axum, reading the body, answering 202",
        peer.acknowledged,
        "events/s",
        &format!("the peer: HTTP ingest's ceiling here; {}", cpu(&peer)),
    );
    let floor = hand_rolled_file_writer(&body).await;
    row(
        "hand-rolled axum -> one file",
        floor.acknowledged,
        "events/s",
        &format!(
            "the least a server doing the job does (split, append, 202); {:.2}x bare axum; {}",
            floor.acknowledged / peer.acknowledged,
            cpu(&floor)
        ),
    );
    let no_route = eventyard_under_load("", &body).await;
    row("http ingest, no route", no_route.acknowledged, "events/s", &vs(no_route.acknowledged, &no_route));
    let never = eventyard_under_load(&file_route("never"), &body).await;
    row(
        "http ingest -> file sink, acknowledged",
        never.acknowledged,
        "events/s",
        &format!(
            "1 KiB events, batches of 100, 8 clients, fsync never; ratio {:.2}x",
            never.acknowledged / peer.acknowledged
        ),
    );
    row(
        "http ingest -> file sink, on disk",
        never.delivered,
        "events/s",
        &format!(
            "until the queue drained; {}; {:.2}x hand-rolled",
            vs(never.delivered, &never),
            never.delivered / floor.acknowledged
        ),
    );
    row(
        "http ingest ack latency p50",
        percentile(&never.latencies, 0.50).as_secs_f64() * 1e3,
        "ms",
        "per request of 100 events",
    );
    row(
        "http ingest ack latency p99",
        percentile(&never.latencies, 0.99).as_secs_f64() * 1e3,
        "ms",
        "per request of 100 events",
    );
    let batch = eventyard_under_load(&file_route("batch"), &body).await;
    row(
        "http ingest -> file sink, fsync batch, on disk",
        batch.delivered,
        "events/s",
        &format!("acknowledged {:.0} events/s; {}", batch.acknowledged, vs(batch.delivered, &batch)),
    );
    // Events with JSON data, as most CloudEvents carry: a file sink writes each as it arrived.
    let json_peer = bare_axum(&json_body).await;
    let json = eventyard_under_load(&file_route("never"), &json_body).await;
    row(
        "http ingest -> file sink, JSON data, on disk",
        json.delivered,
        "events/s",
        &format!("1 KiB `data` objects, fsync never; {}", versus(&json_peer, json.delivered, &json)),
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
    if std::env::var_os("BENCH_ONLY").is_none() {
        broker_with_wasm_handler().await;
    }
}
