//! The NATS gateway against nats-server, side by side on this machine with the same client
//! (async-nats): publish → subscribe throughput for 16 B and 1 KiB messages (one publisher
//! connection, one subscriber connection, until the subscriber has every message), and the
//! latency of one message at a time from publish to delivery. Both servers run as their own
//! processes; the client runs here. Prints each figure and the ratio Eventyard / nats-server,
//! and for both, the messages the subscriber never saw (async-nats drops some under load, against
//! nats-server as well; a NATS subscriber gets at most once) — and for Eventyard, from its metrics,
//! the messages its gateway never received and those it received but did not write (must be 0).
//!
//! Run: `cargo bench --bench benchmarks -- gateway` (or `scripts/bench`). Needs `nats-server` on PATH
//! (`scripts/setup --test` installs it); without it, only Eventyard's figures print.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::common;

use common::bench_row as row;
use common::load::nats_throughput;

use common::nats::NatsServer;
use common::router::RouterProcess;

const LATENCY_SAMPLES: usize = 2000;

const IN_MESSAGES: &str = "eventyard_gateway_in_messages_total";
const OUT_MESSAGES: &str = "eventyard_gateway_out_messages_total";

/// Eventyard with its gateway on, on free ports.
fn eventyard() -> RouterProcess {
    RouterProcess::start(
        "[service]\nhost = \"127.0.0.1\"\nport = 0\n[http]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndir = \"{dir}/plugins\"\n",
    )
}

/// nats-server, when it is installed.
async fn nats_server() -> Option<NatsServer> {
    if NatsServer::installed() { Some(NatsServer::start().await) } else { None }
}

/// Publish-to-delivery latency, one message at a time: p50 and p99 in microseconds, and how many
/// messages never arrived (left out of the figures).
async fn latency(port: u16, size: usize) -> (f64, f64, usize) {
    let url = format!("nats://127.0.0.1:{port}");
    let subscriber = async_nats::connect(&url).await.expect("subscriber connects");
    let publisher = async_nats::connect(&url).await.expect("publisher connects");
    let mut messages = subscriber.subscribe("bench.latency").await.expect("subscribe");
    subscriber.flush().await.expect("flush");
    let payload = Bytes::from(vec![b'x'; size]);
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    let mut lost = 0;
    for _ in 0..LATENCY_SAMPLES {
        let sent = Instant::now();
        publisher.publish("bench.latency", payload.clone()).await.expect("publish");
        publisher.flush().await.expect("flush");
        if tokio::time::timeout(Duration::from_secs(2), messages.next()).await.is_err() {
            lost += 1;
            continue;
        }
        samples.push(sent.elapsed());
    }
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6;
    (at(0.5), at(0.99), lost)
}

pub fn run() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let router = eventyard();
        let eventyard_port = router.nats.expect("the gateway is on").port();
        let nats = nats_server().await;
        if nats.is_none() {
            println!("| nats-server not found: Eventyard's figures only | | | |");
        }
        for (size, count) in [(16, 500_000), (1024, 200_000)] {
            // Interleave the servers, best of three each, so both see the same machine.
            // Messages the client never saw are counted for both servers: the client drops some
            // under load against either.
            let (mut ours, mut theirs, mut our_lost, mut their_lost) = (0f64, 0f64, 0, 0);
            let (mut not_received, mut not_written) = (0, 0);
            // Each server's least CPU time per message over the rounds, in microseconds.
            let (mut our_cpu, mut their_cpu) = (f64::MAX, f64::MAX);
            for _ in 0..3 {
                if let Some(server) = &nats {
                    let cpu = common::cpu_time(server.pid());
                    let (rate, lost) = nats_throughput(server.addr.port(), size, count).await;
                    (theirs, their_lost) = (theirs.max(rate), their_lost + lost);
                    their_cpu = their_cpu.min(per_message(common::cpu_time(server.pid()) - cpu, count));
                }
                let before = (
                    router.metric(IN_MESSAGES).await,
                    router.metric(OUT_MESSAGES).await,
                );
                let cpu = common::cpu_time(router.pid());
                let (rate, lost) = nats_throughput(eventyard_port, size, count).await;
                (ours, our_lost) = (ours.max(rate), our_lost + lost);
                our_cpu = our_cpu.min(per_message(common::cpu_time(router.pid()) - cpu, count));
                let received = router.metric(IN_MESSAGES).await - before.0;
                let written = router.metric(OUT_MESSAGES).await - before.1;
                not_received += count as u64 - received.min(count as u64);
                not_written += received - written.min(received);
            }
            let note = if nats.is_some() {
                format!(
                    "nats-server {theirs:.0} msg/s; ratio {:.2}x; server cpu {our_cpu:.2} µs/msg, nats-server \
                     {their_cpu:.2} ({:.2}x); unseen of {}: {our_lost} / {their_lost}; \
                     gateway: not received {not_received}, received but not written {not_written}",
                    ours / theirs,
                    our_cpu / their_cpu,
                    3 * count
                )
            } else {
                format!(
                    "no nats-server to compare; unseen of {}: {our_lost}; gateway: not received {not_received}, \
                     received but not written {not_written}",
                    3 * count
                )
            };
            let slow = router.metric("eventyard_gateway_slow_consumers_total").await;
            row(&format!("gateway pub -> sub, {size} B"), ours, "msg/s", &format!("{note}; slow consumers so far: {slow}"));
            let (p50, p99, lost) = latency(eventyard_port, size).await;
            let note = match nats.as_ref().map(|server| server.addr.port()) {
                Some(port) => {
                    let (their_p50, their_p99, their_lost) = latency(port, size).await;
                    format!(
                        "p99 {p99:.0} µs; nats-server p50 {their_p50:.0} µs, p99 {their_p99:.0} µs; unseen {lost} / {their_lost}"
                    )
                }
                None => format!("p99 {p99:.0} µs; unseen {lost}"),
            };
            row(&format!("gateway publish -> delivery latency, {size} B"), p50, "µs p50", &note);
        }
        routed_to_files(nats.as_ref()).await;
    });
}

/// `cpu` spent on `count` messages, in microseconds each.
fn per_message(cpu: Duration, count: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / count as f64
}

/// Publish → subscribe of 1 KiB messages through a router whose `>` route also writes every
/// message to a file sink (fsync never), against nats-server with the subscriber alone.
async fn routed_to_files(nats: Option<&NatsServer>) {
    const COUNT: usize = 200_000;
    let router = RouterProcess::start(
        "[service]\nhost = \"127.0.0.1\"\nport = 0\nevent_limit = 1000000\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [plugins]\ndir = \"{dir}/plugins\"\n[[route]]\nname = \"all\"\nsubject = \">\"\nsinks = [\"files\"]\n\
         [sinks.files]\nkind = \"file\"\nroot = \"{dir}\"\nfsync = \"never\"\nbatch_size = 1000\n",
    );
    let port = router.nats.expect("the gateway is on").port();
    let (mut ours, mut theirs) = (0f64, 0f64);
    for _ in 0..3 {
        if let Some(server) = nats {
            theirs = theirs.max(nats_throughput(server.addr.port(), 1024, COUNT).await.0);
        }
        ours = ours.max(nats_throughput(port, 1024, COUNT).await.0);
    }
    // Until the files have every message the router received.
    let received = router.metric(IN_MESSAGES).await;
    while router.metric("eventyard_sink_delivered_total{sink=\"files\"}").await < received {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let note = match nats {
        Some(_) => {
            format!("nats-server {theirs:.0} msg/s (no route); ratio {:.2}x; every message also on disk", ours / theirs)
        }
        None => "no nats-server to compare; every message also on disk".to_owned(),
    };
    row("gateway pub -> sub, 1 KiB, `>` route to files", ours, "msg/s", &note);
}
