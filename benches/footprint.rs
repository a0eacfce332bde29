//! Memory, beside nats-server on this machine: the resident memory one idle NATS connection costs
//! (2,000 clients that connected, exchanged a PING and stay idle), and one queued 1 KiB event
//! costs (100,000 events published over NATS to a route whose sink cannot deliver, against
//! nats-server holding them in a JetStream stream in memory). Each figure is the growth of the
//! server process's resident set divided by the count; both servers run as their own processes.
//!
//! Run: `cargo bench --bench benchmarks -- footprint`. Needs `nats-server` on PATH.

use std::time::Duration;

use bytes::Bytes;

use crate::common;

use common::bench_row as row;
use common::memory::{growth, per_idle_connection};
use common::nats::NatsServer;
use common::router::RouterProcess;

const IDLE_CONNECTIONS: usize = 2000;
const EVENTS: usize = 100_000;
const PAYLOAD: usize = 1024;

/// Publishes `EVENTS` messages of `PAYLOAD` bytes on `bench.queued` to `port` and flushes.
async fn publish(port: u16) {
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}")).await.expect("connect");
    let payload = Bytes::from(vec![b'x'; PAYLOAD]);
    for _ in 0..EVENTS {
        client.publish("bench.queued", payload.clone()).await.expect("publish");
    }
    client.flush().await.expect("flush");
}

/// Eventyard with a `>` route to a sink that cannot deliver (nothing listens where it sends), so
/// every event stays on its queue.
fn stuck_router() -> RouterProcess {
    RouterProcess::start(&format!(
        "[service]\nhost = \"127.0.0.1\"\nport = 0\nevent_limit = {limit}\nqueue_bytes = \"2GiB\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndir = \"{{dir}}/plugins\"\n\
         [[route]]\nname = \"all\"\nsubject = \">\"\nsinks = [\"stuck\"]\n\
         [sinks.stuck]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nbatch_size = 1\n\
         [sinks.stuck.retry]\nmax_attempts = 1000\ninitial_backoff_ms = 600000\nmax_backoff_ms = 600000\n",
        limit = EVENTS * 2,
        port = common::free_port(),
    ))
}

#[tokio::main]
pub async fn run() {
    if NatsServer::installed() {
        row_pair("memory per idle NATS connection", "bytes", connection_cost().await);
        row_pair("memory per queued 1 KiB event", "bytes", queued_event_cost().await);
    } else {
        println!("| nats-server not found: no footprint figures | | | |");
    }
}

/// Eventyard's and nats-server's bytes per idle connection.
async fn connection_cost() -> (f64, f64) {
    let router = RouterProcess::start(
        "[service]\nhost = \"127.0.0.1\"\nport = 0\nlistener_limit = 10000\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [plugins]\ndir = \"{dir}/plugins\"\n",
    );
    let ours = per_idle_connection(router.pid(), router.nats.expect("the gateway is on"), IDLE_CONNECTIONS).await;
    drop(router);
    let server = NatsServer::start().await;
    (ours, per_idle_connection(server.pid(), server.addr, IDLE_CONNECTIONS).await)
}

/// Eventyard's bytes per event on a sink queue, and nats-server's per message in a memory stream.
async fn queued_event_cost() -> (f64, f64) {
    let router = stuck_router();
    let (ours, ()) = growth(router.pid(), async {
        publish(router.nats.expect("gateway").port()).await;
        // Every event is on the queue (one more is with the sink, retrying).
        while router.metric("eventyard_queue_depth_events{sink=\"stuck\"}").await < EVENTS as u64 - 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let store = common::tempdir();
    let args = ["-js".to_owned(), "-sd".to_owned(), store.path().display().to_string()];
    let nats = NatsServer::start_with(common::free_port(), &args).await;
    let client = async_nats::connect(format!("nats://{}", nats.addr)).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "queued".into(),
            subjects: vec!["bench.>".into()],
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("a memory stream");
    let (theirs, ()) = growth(nats.pid(), async {
        publish(nats.addr.port()).await;
        let mut stream = stream;
        while stream.info().await.expect("stream info").state.messages < EVENTS as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    (ours as f64 / EVENTS as f64, theirs as f64 / EVENTS as f64)
}

fn row_pair(name: &str, unit: &str, (ours, theirs): (f64, f64)) {
    row(name, ours, unit, &format!("nats-server {theirs:.0} {unit}; ratio {:.2}x", ours / theirs));
}
