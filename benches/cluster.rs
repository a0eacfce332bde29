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
//! Run: `cargo bench --bench benchmarks -- cluster` (or `scripts/bench` for every benchmark).

use crate::common;

use common::bench_row as row;
use common::load::{batch_load as load, jetstream_direct};

use common::nats::NatsCluster;

fn nats_broker(cluster: &NatsCluster, replicas: usize) -> String {
    format!("[broker]\nmode = \"nats\"\nservers = [{}]\nreplicas = {replicas}\n", cluster.servers_toml())
}

#[tokio::main]
pub async fn run() {
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
