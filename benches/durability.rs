//! Durable embedded mode (`[durability]`), on this machine's two cores:
//! - events acknowledged and recovered after 20 random SIGKILLs of a router publishing over HTTP
//!   and NATS (every acknowledged event must reach the file sink after the restarts);
//! - throughput of the write-ahead log with each fsync policy, against the same load without it
//!   (1 KiB events, HTTP batches of 100, 8 clients, into a file sink), and the peer: async-nats
//!   publishing the same events into a one-node JetStream file stream; the same load as NATS PUBs
//!   through the gateway, with and without the log.
//!
//! Run: `cargo bench --bench benchmarks -- durability` (or `scripts/bench` for every benchmark).

use crate::common;

use common::bench_row as row;
use common::crash::{KillAt, kill_loop};
use common::load::{Over, Storing, batch_load, jetstream_direct, load};
use common::nats::NatsCluster;

const KILLS: usize = 20;

#[tokio::main]
pub async fn run() {
    let report = kill_loop(KILLS, KillAt::Random).await;
    let acknowledged = report.acknowledged.len();
    let recovered = report.acknowledged.intersection(&report.delivered.ids).count();
    let extra = report.delivered.ids.len() - recovered;
    let note =
        format!("{} over HTTP, {} over NATS; seed {}", report.over_http, acknowledged - report.over_http, report.seed);
    row(&format!("{KILLS} kills: events acknowledged"), acknowledged as f64, "events", &note);
    let note = format!("{recovered} of {acknowledged} acknowledged; {extra} delivered that no ack had covered");
    row(&format!("{KILLS} kills: events recovered"), recovered as f64, "events", &note);

    let (plain, _) = batch_load("").await;
    row("no durability, acknowledged", plain, "events/s", "in memory only; 1 KiB events, batches of 100, 8 clients");
    let wal = common::tempdir();
    for (policy, extra) in [("always", ""), ("interval", "interval_ms = 100\n")] {
        let dir = wal.path().join(policy);
        let head = format!("[durability]\ndir = \"{}\"\nfsync = \"{policy}\"\n{extra}", dir.display());
        let (acked, delivered) = batch_load(&head).await;
        let name = format!("fsync = \"{policy}\", acknowledged");
        row(&name, acked, "events/s", &format!("{:.2}x no durability; delivered {delivered:.0}/s", acked / plain));
    }
    // The same over the NATS gateway: PUBs acknowledged by the PONG after each batch of them.
    let (plain_nats, _) = load("", Over::Nats).await;
    row("NATS PUBs, no durability, acknowledged", plain_nats, "events/s", "batches of 100 PUBs then PING, 8 clients");
    let dir = wal.path().join("nats");
    let head = format!("[durability]\ndir = \"{}\"\nfsync = \"always\"\n", dir.display());
    let (acked, delivered) = load(&head, Over::Nats).await;
    let note = format!("{:.2}x no durability; delivered {delivered:.0}/s", acked / plain_nats);
    row("NATS PUBs, fsync = \"always\", acknowledged", acked, "events/s", &note);
    let jetstream = NatsCluster::start(1).await;
    let direct = jetstream_direct(&jetstream, 1, Storing::EventPerMessage).await;
    drop(jetstream);
    row("JetStream direct, 1 node, acknowledged", direct, "events/s", "async-nats into a file stream, the peer");
}
