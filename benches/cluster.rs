//! Cluster mode against embedded mode, side by side on this machine: the same router config, the
//! same load (HTTP ingest of 1 KiB events in batches of 100 from concurrent clients, into a file
//! sink), once on the embedded broker and once on NATS clusters of real `nats-server` nodes with
//! JetStream on loopback (three nodes with three replicas, and one node with one). Everything —
//! the load, the router, every NATS node — shares the machine's two cores.
//!
//! Figures: events/s acknowledged (202: in every queue, or stored by JetStream), and events/s until
//! the sink delivered the last one. The peer is async-nats publishing the same events straight into
//! JetStream on the same cluster, a message per event; beside it, the same client storing each
//! batch as one message, the ceiling of a router that groups events as Eventyard does (which also
//! pulls, delivers and acknowledges them in the same run).
//!
//! Run: `cargo bench --bench benchmarks -- cluster` (or `scripts/bench` for every benchmark).
//! `BENCH_ONLY=r3` (or `r1`) runs only that cluster, Eventyard then JetStream direct, for profiling.

use crate::common;

use common::bench_row as row;
use common::load::{Storing, batch_load as load, jetstream_direct};

use common::nats::NatsCluster;

fn nats_broker(cluster: &NatsCluster, replicas: usize) -> String {
    format!("[broker]\nmode = \"nats\"\nservers = [{}]\nreplicas = {replicas}\n", cluster.servers_toml())
}

#[tokio::main]
pub async fn run() {
    let only = std::env::var("BENCH_ONLY").ok();
    let (embedded_ack, embedded_delivered) = match only {
        None => load("").await,
        Some(_) => (f64::NAN, f64::NAN),
    };
    let note = "1 KiB events, batches of 100, 8 clients";
    row("embedded, acknowledged", embedded_ack, "events/s", note);
    row("embedded, delivered", embedded_delivered, "events/s", "until the sink had the last one");
    for (nodes, replicas) in [(3, 3), (1, 1)] {
        if only.as_ref().is_some_and(|only| *only != format!("r{replicas}")) {
            continue;
        }
        let name = format!("{nodes} node(s), R{replicas}");
        let cluster = NatsCluster::start(nodes).await;
        let (ack, delivered) = load(&nats_broker(&cluster, replicas)).await;
        let direct = jetstream_direct(&cluster, replicas, Storing::EventPerMessage).await;
        let grouped = jetstream_direct(&cluster, replicas, Storing::BatchPerMessage).await;
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
        row(
            &format!("JetStream direct {name}, batched"),
            grouped,
            "events/s",
            &format!("async-nats, each batch of 100 as one message; Eventyard {:.2}x of it", ack / grouped),
        );
    }
}
