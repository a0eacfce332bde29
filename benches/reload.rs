//! Hot swaps under load, in process on this machine: a publisher sends numbered events over HTTP
//! without pause while the `stage` handler is swapped back and forth between two plugins
//! (`passthrough` and `json-transform`, which marks what it handles) 100 times. Prints the time
//! from the file's rename to the first event the new version handled reaching a real HTTP
//! destination, and how many events were lost or duplicated over all the swaps.
//!
//! Two triggers, each on its own router: the directory watcher (which waits for the directory to
//! be quiet for `QUIET` first, so a half-written file is never loaded) and `Running::reload` right
//! after the rename (what `POST /v1/admin/reload` and SIGHUP do).
//!
//! Run: `cargo bench --bench benchmarks -- reload` (or `scripts/bench` for every benchmark).

use crate::common;

use common::bench_row as row;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::http_server::HttpDestination;
use common::load::NumberedPublisher;
use common::replace_file;
use eventyard::config::Config;
use eventyard::reload::watch::QUIET;

const SWAPS: usize = 100;
/// The longest one swap may take before the benchmark gives up.
const SWAP_TIMEOUT: Duration = Duration::from_secs(30);

/// Every event the destination received, as (number, handled by `json-transform`), in arrival
/// order; `parsed` requests are skipped and the count updated.
fn arrived(destination: &HttpDestination, parsed: &mut usize, into: &mut Vec<(u64, bool)>) {
    let received = destination.received();
    for request in &received[*parsed..] {
        let batch: Vec<serde_json::Value> = serde_json::from_slice(&request.body).expect("batches are JSON arrays");
        for event in batch {
            let n = event["id"].as_str().and_then(|id| id.parse().ok()).expect("numbered");
            into.push((n, event["data"]["stage"] == "b"));
        }
    }
    *parsed = received.len();
}

struct Outcome {
    latencies: Vec<Duration>,
    sent: u64,
    lost: u64,
    duplicated: u64,
}

async fn swaps(watch: bool) -> Outcome {
    let dir = common::tempdir();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    let stage = plugins.join("stage.wasm");
    std::fs::copy(common::plugin("passthrough"), &stage).expect("copy");
    let destination = HttpDestination::start(Vec::new(), StatusCode::OK, Duration::ZERO).await;
    let config = Config::from_toml(&format!(
        r#"
[plugins]
dir = "{plugins}"
cache_dir = "{dir}/cache"
watch = {watch}
[plugin.stage]
world = "handler"
config = {{ set = {{ stage = "b" }} }}
[http]
listen = "127.0.0.1:0"
[[route]]
name = "all"
subject = "numbers"
handlers = ["stage"]
sinks = ["out"]
[sinks.out]
kind = "http"
url = "{url}"
mode = "batch"
"#,
        plugins = plugins.display(),
        dir = dir.path().display(),
        url = destination.url(),
    ))
    .expect("bench config is valid");
    let running = eventyard::server::start(config).await.expect("router starts");
    let load = NumberedPublisher::start(format!("http://{}/v1/events/numbers", running.http_addr));
    let (mut parsed, mut events) = (0, Vec::new());
    let versions = [common::plugin("json-transform"), common::plugin("passthrough")];
    let mut latencies = Vec::new();
    for swap in 0..SWAPS {
        arrived(&destination, &mut parsed, &mut events);
        let before = events.len();
        let marks = swap % 2 == 0;
        let started = Instant::now();
        replace_file(&versions[swap % 2], &stage);
        if !watch {
            running.reload().await;
        }
        loop {
            arrived(&destination, &mut parsed, &mut events);
            if events[before..].iter().any(|(_, marked)| *marked == marks) {
                break;
            }
            assert!(started.elapsed() < SWAP_TIMEOUT, "swap {swap} never took effect");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(started.elapsed());
    }
    let sent = load.finish().await;
    let deadline = Instant::now() + SWAP_TIMEOUT;
    while (events.len() as u64) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        arrived(&destination, &mut parsed, &mut events);
    }
    running.shutdown().await;
    arrived(&destination, &mut parsed, &mut events);
    let mut numbers: Vec<u64> = events.iter().map(|(n, _)| *n).collect();
    numbers.sort_unstable();
    let total = numbers.len() as u64;
    numbers.dedup();
    let lost = (0..sent).filter(|n| numbers.binary_search(n).is_err()).count() as u64;
    Outcome { latencies, sent, lost, duplicated: total - numbers.len() as u64 }
}

fn report(trigger: &str, outcome: &Outcome) {
    let mut sorted = outcome.latencies.clone();
    sorted.sort_unstable();
    let at = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3;
    let note = format!("p99 {:.1} ms, max {:.1} ms (the first swap compiles)", at(0.99), at(1.0));
    row(&format!("rename -> first new output ({trigger})"), at(0.5), "ms p50", &note);
    let note = format!("{} numbered events published during the swaps", outcome.sent);
    row(&format!("lost over {SWAPS} swaps ({trigger})"), outcome.lost as f64, "events", &note);
    row(&format!("duplicated over {SWAPS} swaps ({trigger})"), outcome.duplicated as f64, "events", &note);
}

pub fn run() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let called = swaps(false).await;
        report("reload call", &called);
        let watched = swaps(true).await;
        report(&format!("watcher, {} ms quiet", QUIET.as_millis()), &watched);
        assert_eq!(called.lost + watched.lost, 0, "a swap lost events");
    });
}
