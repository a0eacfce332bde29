//! Overload: twice the load the sink sustains, offered open-loop for `OVERLOAD_SECONDS` (default
//! 60), against a router in durable mode (fsync `always`, `[service] queue_bytes` of 64 MiB, the
//! sink queue's `block` policy), and side by side the peer: a one-node JetStream file stream held
//! to the same 64 MiB (`discard = new`), drained by a consumer at the same sustained rate.
//! For each: events offered, acknowledged, refused, delivered, lost (must be 0), p99 latency of an
//! acknowledgement (or refusal) and peak resident memory.
//!
//! The sink's rate is set by its destination: an HTTP server that takes 20 ms per batch of 100.
//! The sustained rate is measured first, by saturating the router for 5 s.
//!
//! Run: `cargo bench --bench benchmarks -- overload` (or `scripts/bench` for every benchmark).

use crate::common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::http::StatusCode;
use futures_util::StreamExt as _;

use common::bench_row as row;
use common::http_server::HttpDestination;
use common::memory::peak_resident;
use common::nats::NatsCluster;
use common::router::RouterProcess;

/// Events per HTTP request; the peer publishes the same events one by one.
const BATCH: usize = 10;
const BOUND: usize = 64 << 20;
/// Requests (or JetStream publishes) in flight at most, so an open-loop generator cannot grow
/// without end when the system under test stops answering.
const IN_FLIGHT: usize = 512;

/// What one side did under the overload.
#[derive(Default)]
struct Outcome {
    offered: u64,
    acknowledged: BTreeSet<String>,
    refused: u64,
    delivered: BTreeSet<String>,
    latencies: Vec<Duration>,
    peak_rss: u64,
}

impl Outcome {
    fn lost(&self) -> usize {
        self.acknowledged.difference(&self.delivered).count()
    }

    fn p99(&mut self) -> Duration {
        self.latencies.sort();
        self.latencies.get(self.latencies.len() * 99 / 100).copied().unwrap_or_default()
    }
}

fn event(id: &str) -> serde_json::Value {
    serde_json::json!({"specversion": "1.0", "id": id, "source": "/overload", "type": "order", "data_base64": common::base64_kib()})
}

/// The ids in the bodies the destination received (batches of CloudEvents).
fn received_ids(destination: &HttpDestination) -> BTreeSet<String> {
    destination
        .received()
        .iter()
        .flat_map(|request| serde_json::from_slice::<Vec<serde_json::Value>>(&request.body).expect("a JSON batch"))
        .map(|event| event["id"].as_str().expect("events have ids").to_owned())
        .collect()
}

fn router_config(state: &std::path::Path, url: &str) -> String {
    format!(
        r#"
[durability]
dir = "{state}/wal"
fsync = "always"
[service]
nats = false
queue_bytes = "{BOUND}"
[http]
listen = "127.0.0.1:0"
max_connections = 4096
[plugins]
dir = "{{dir}}/plugins"
[[route]]
name = "orders"
subject = "orders.>"
sinks = ["slow"]
[sinks.slow]
kind = "http"
url = "{url}"
mode = "batch"
batch_size = 100
linger_ms = 5
overflow = "block"
block_timeout_ms = 500
[sinks.slow.retry]
max_attempts = 1000
"#,
        state = state.display()
    )
}

/// Posts batches of `BATCH` events at `rate` events/s (open loop) for `duration`; every answer's
/// latency and what it acknowledged go into `outcome`. With `rate` 0, as fast as answers come.
async fn offer_http(router: &RouterProcess, rate: f64, duration: Duration, prefix: &str) -> Outcome {
    let client = reqwest::Client::builder().pool_max_idle_per_host(IN_FLIGHT).build().expect("client builds");
    let url = router.url("/v1/events/orders.load");
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0.. {
        if rate > 0.0 {
            let due = started + Duration::from_secs_f64(n as f64 * BATCH as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if started.elapsed() >= duration {
            break;
        }
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let ids: Vec<String> = (0..BATCH).map(|i| format!("{prefix}{n}-{i}")).collect();
        let body = serde_json::Value::from(ids.iter().map(|id| event(id)).collect::<Vec<_>>()).to_string();
        let (client, url, outcome) = (client.clone(), url.clone(), outcome.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let response = common::post_batch(&client, &url, body).await;
            let status = response.status();
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            let accepted = match status.as_u16() {
                202 => BATCH,
                429 | 503 => answer["accepted"].as_u64().unwrap_or(0) as usize,
                other => panic!("unexpected {other}: {answer}"),
            };
            let mut outcome = outcome.lock().expect("not poisoned");
            outcome.latencies.push(sent.elapsed());
            outcome.offered += BATCH as u64;
            outcome.refused += (BATCH - accepted) as u64;
            outcome.acknowledged.extend(ids.into_iter().take(accepted));
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    Arc::into_inner(outcome).expect("every task is done").into_inner().expect("not poisoned")
}

/// Waits until `delivered()` covers `acknowledged`, or until `patience` passes without progress.
async fn drain(acknowledged: &BTreeSet<String>, delivered: impl Fn() -> BTreeSet<String>) -> BTreeSet<String> {
    let mut last = (0, Instant::now());
    loop {
        let found = delivered();
        let missing = acknowledged.difference(&found).count();
        if missing == 0 || last.1.elapsed() > Duration::from_secs(20) {
            return found;
        }
        if found.len() != last.0 {
            last = (found.len(), Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn eventyard(duration: Duration) -> (f64, Outcome) {
    let destination = HttpDestination::start(vec![], StatusCode::OK, Duration::from_millis(20)).await;
    let state = common::tempdir();
    let router = RouterProcess::start(&router_config(state.path(), &destination.url()));
    common::crash::ready(&router).await;
    // The sustained rate: what the sink delivers while the router is saturated.
    let before = received_ids(&destination).len();
    let saturate = Duration::from_secs(5);
    let warmup = offer_http(&router, 0.0, saturate, "w").await;
    let sustained = (received_ids(&destination).len() - before) as f64 / saturate.as_secs_f64();
    drain(&warmup.acknowledged, || received_ids(&destination)).await;

    let mut outcome = offer_http(&router, 2.0 * sustained, duration, "o").await;
    let offered = |id: &String| id.starts_with('o');
    let delivered = || received_ids(&destination).into_iter().filter(offered).collect();
    outcome.delivered = drain(&outcome.acknowledged, delivered).await;
    outcome.peak_rss = peak_resident(router.pid());
    (sustained, outcome)
}

/// The peer: JetStream, bounded to `BOUND` bytes with `discard = new`, publishes acknowledged one
/// by one at `rate`, and a consumer that takes `sustained` events/s.
async fn jetstream_peer(rate: f64, sustained: f64, duration: Duration) -> Outcome {
    let cluster = NatsCluster::start(1).await;
    let js = jetstream::new(cluster.client().await);
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "overload".into(),
            subjects: vec!["overload.>".into()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            max_bytes: BOUND as i64,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .expect("the stream is made");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("slow".into()),
            // A message handed to a fetch that had expired comes again well within `drain`'s patience.
            ack_wait: Duration::from_secs(2),
            ..Default::default()
        })
        .await
        .expect("the consumer is made");
    let delivered = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let consuming = tokio::spawn({
        let (delivered, stop) = (delivered.clone(), stop.clone());
        async move {
            // Batches of 100 every 100/sustained seconds: the same rate as the router's sink.
            let every = Duration::from_secs_f64(100.0 / sustained);
            while !stop.is_cancelled() {
                let tick = Instant::now();
                let mut batch = consumer.fetch().max_messages(100).expires(every).messages().await.expect("fetch");
                while let Some(Ok(message)) = batch.next().await {
                    let event: serde_json::Value = serde_json::from_slice(&message.payload).expect("an event");
                    message.ack().await.expect("acked");
                    delivered.lock().expect("not poisoned").insert(event["id"].as_str().expect("an id").to_owned());
                }
                tokio::time::sleep(every.saturating_sub(tick.elapsed())).await;
            }
        }
    });

    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0.. {
        tokio::time::sleep_until((started + Duration::from_secs_f64(n as f64 / rate)).into()).await;
        if started.elapsed() >= duration {
            break;
        }
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (js, outcome) = (js.clone(), outcome.clone());
        tasks.spawn(async move {
            let id = format!("j{n}");
            let sent = Instant::now();
            let acked = match js.publish("overload.load", event(&id).to_string().into()).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            let mut outcome = outcome.lock().expect("not poisoned");
            outcome.latencies.push(sent.elapsed());
            outcome.offered += 1;
            if acked {
                outcome.acknowledged.insert(id);
            } else {
                outcome.refused += 1;
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut outcome = Arc::into_inner(outcome).expect("every task is done").into_inner().expect("not poisoned");
    outcome.delivered = drain(&outcome.acknowledged, || delivered.lock().expect("not poisoned").clone()).await;
    stop.cancel();
    let _ = consuming.await;
    outcome.peak_rss = cluster.nodes[0].as_ref().map_or(0, |node| peak_resident(node.pid()));
    outcome
}

#[tokio::main]
pub async fn run() {
    let seconds = std::env::var("OVERLOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let duration = Duration::from_secs(seconds);
    let (sustained, mut ours) = eventyard(duration).await;
    let mut theirs = jetstream_peer(2.0 * sustained, sustained, duration).await;
    let note = format!("what the sink delivers with the router saturated; offered at 2x for {seconds} s");
    row("sustained (sink) rate", sustained, "events/s", &note);
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}x", a / b) } else { "-".into() };
    for (name, value, unit, peer) in [
        ("offered", ours.offered as f64, "events", theirs.offered as f64),
        ("acknowledged", ours.acknowledged.len() as f64, "events", theirs.acknowledged.len() as f64),
        ("refused (429/503; peer: publish errors)", ours.refused as f64, "events", theirs.refused as f64),
        ("delivered", ours.delivered.len() as f64, "events", theirs.delivered.len() as f64),
        ("lost (acknowledged, never delivered)", ours.lost() as f64, "events", theirs.lost() as f64),
        ("p99 latency of an answer", ours.p99().as_secs_f64() * 1e3, "ms", theirs.p99().as_secs_f64() * 1e3),
        ("peak resident memory", (ours.peak_rss >> 20) as f64, "MiB", (theirs.peak_rss >> 20) as f64),
    ] {
        let note = format!("JetStream (64 MiB, discard new): {peer:.1}; {}", ratio(value, peer));
        row(&format!("2x overload: {name}"), value, unit, &note);
    }
    assert_eq!(ours.lost(), 0, "an acknowledged event was lost");
}
