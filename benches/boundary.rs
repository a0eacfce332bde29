//! What the trust boundary costs (issue 18): the gateway's pub → sub throughput and the batch loads
//! of HTTP and NATS into a file sink, against this build and against another `eventyard` binary,
//! side by side in one run: rounds alternate between the two, best of three each, and each row
//! prints this build's figure, the other's and the ratio.
//!
//! Run: `EVENTYARD_BEFORE=/path/to/eventyard cargo bench --bench benchmarks -- boundary`, the other binary built
//! from the commit to compare with (`git worktree add /tmp/before <commit>`, then
//! `cargo build --release` there). Without `EVENTYARD_BEFORE`, this build's figures only.

use std::path::{Path, PathBuf};

use crate::common;

use common::bench_row as row;
use common::load::{Over, load_config, load_on, nats_throughput};
use common::router::RouterProcess;

const ROUNDS: usize = 3;

/// What one row measures.
#[derive(Clone, Copy)]
enum Load {
    /// One publisher, one subscriber, no route: messages of this size.
    Gateway(usize),
    /// Batches of 1 KiB events into a file sink.
    Batches(Over),
}

/// Runs `load` once on a router started from `binary`; the figure, per second, and for the gateway
/// the router's CPU time per message in microseconds (steadier than rates on a shared machine).
async fn measure(binary: &Path, load: Load) -> (f64, Option<f64>) {
    let config = match load {
        Load::Gateway(_) => {
            "[service]\nhost = \"127.0.0.1\"\nport = 0\n[http]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndir = \"{dir}/plugins\"\n"
                .to_owned()
        }
        Load::Batches(over) => load_config("", "{dir}", over == Over::Nats),
    };
    let router = RouterProcess::start_binary(binary, &config);
    match load {
        Load::Gateway(size) => {
            const COUNT: usize = 200_000;
            let cpu = common::cpu_time(router.pid());
            let (rate, _) = nats_throughput(router.nats.expect("the gateway is on").port(), size, COUNT).await;
            let cpu = (common::cpu_time(router.pid()) - cpu).as_secs_f64() * 1e6 / COUNT as f64;
            (rate, Some(cpu))
        }
        Load::Batches(over) => (load_on(router.http, router.nats, over).await.0, None),
    }
}

pub fn run() {
    let this = PathBuf::from(env!("CARGO_BIN_EXE_eventyard"));
    let before = std::env::var_os("EVENTYARD_BEFORE").map(PathBuf::from);
    if before.is_none() {
        println!("| EVENTYARD_BEFORE not set: this build's figures only | | | |");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let rows = [
            ("gateway pub -> sub, 16 B", Load::Gateway(16), "msg/s"),
            ("gateway pub -> sub, 1 KiB", Load::Gateway(1024), "msg/s"),
            ("HTTP batches of 100 -> file sink, acknowledged", Load::Batches(Over::Http), "events/s"),
            ("NATS PUB batches of 100 -> file sink, acknowledged", Load::Batches(Over::Nats), "events/s"),
        ];
        for (name, load, unit) in rows {
            let (mut ours, mut theirs) = (0f64, 0f64);
            // The least router CPU per message of the rounds, this build's and the other's.
            let (mut our_cpu, mut their_cpu) = (f64::MAX, f64::MAX);
            for _ in 0..ROUNDS {
                let (rate, cpu) = measure(&this, load).await;
                (ours, our_cpu) = (ours.max(rate), our_cpu.min(cpu.unwrap_or(f64::MAX)));
                if let Some(before) = &before {
                    let (rate, cpu) = measure(before, load).await;
                    (theirs, their_cpu) = (theirs.max(rate), their_cpu.min(cpu.unwrap_or(f64::MAX)));
                }
            }
            let cpu = |cpu: f64| if cpu < f64::MAX { format!("; router cpu {cpu:.2} µs/msg") } else { String::new() };
            let note = match &before {
                Some(_) => format!(
                    "before: {theirs:.0} {unit}; ratio {:.2}x; best of {ROUNDS}, alternating{} (before{})",
                    ours / theirs,
                    cpu(our_cpu),
                    cpu(their_cpu).trim_start_matches(';'),
                ),
                None => format!("best of {ROUNDS}{}", cpu(our_cpu)),
            };
            row(name, ours, unit, &note);
        }
    });
}
