//! The same handler, `severity-map`, in Rust, Python (componentize-py) and JavaScript
//! (componentize-js): per-event cost through the host, one event per call and in batches of 64,
//! and cold start: compiling the component and making its first instance, and the same load from
//! the compiled-artifact cache (`[plugins] cache_dir`, what a router restart or a reload of a file
//! seen before pays). Rounds run
//! interleaved and the median is printed, since timings on a shared 2-core machine vary.
//!
//! Run: `cargo bench --bench benchmarks -- polyglot` (or `scripts/bench` for every benchmark).

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bench_row as row;
use eventyard::event::Event;
use eventyard::plugin::{Plugin, PluginRuntime, PluginSpec, Role, RuntimeOptions};
use eventyard::route::Handler;

const BATCH: usize = 64;
const ROUNDS: usize = 5;
const ROUND_TIME: Duration = Duration::from_millis(300);

/// Loads `path` as a handler; returns it and how long the load took.
async fn load(runtime: &PluginRuntime, path: &Path) -> (Arc<dyn Handler>, Duration) {
    let started = Instant::now();
    let spec = PluginSpec::new(path.display().to_string(), path, Role::Handler);
    let Ok(Plugin::Handler(handler)) = runtime.load(spec).await else {
        panic!("{} loads as a handler", path.display())
    };
    // The first call makes the first instance (and runs `init`).
    assert!(handler.handle(sample()).await.is_ok());
    (handler, started.elapsed())
}

fn sample() -> Event {
    common::event(serde_json::json!({
        "subject": "risk.eu",
        "type": "com.redhat.insights.risk",
        "source": "/bench",
        "data": {"severity": "Important", "cluster": "3f0c8e2a-6a44-4c9c-9c6f-0d3b5a6e7f10", "rule": "ccx.rules.a|B"},
    }))
}

#[tokio::main]
pub async fn run() {
    let plugins: [(&str, PathBuf); 3] = [
        ("Rust", common::plugin("severity-map")),
        ("Python", common::polyglot_plugin("python/severity-map")),
        ("JavaScript", common::polyglot_plugin("js/severity-map")),
    ];
    let cache = common::tempdir();
    let options =
        RuntimeOptions { pool_instances: 16, cache_dir: Some(cache.path().to_owned()), ..RuntimeOptions::default() };
    let runtime = PluginRuntime::new(options.clone()).expect("runtime starts");
    let mut handlers = Vec::new();
    for (language, path) in &plugins {
        let size = std::fs::metadata(path).expect("built").len();
        let (handler, cold) = load(&runtime, path).await;
        // A runtime of its own, so nothing but the artifact on disk is shared.
        let (_, cached) = load(&PluginRuntime::new(options.clone()).expect("runtime starts"), path).await;
        let note = format!(
            "{:.1} MB component; from the artifact cache: {:.1} ms",
            size as f64 / 1e6,
            cached.as_secs_f64() * 1e3
        );
        row(&format!("{language}: cold start (compile + instantiate)"), cold.as_secs_f64() * 1e3, "ms", &note);
        handlers.push((*language, handler));
    }
    let event = sample();
    for batched in [false, true] {
        let mut samples = vec![Vec::new(); handlers.len()];
        for _ in 0..ROUNDS {
            for (i, (_, handler)) in handlers.iter().enumerate() {
                samples[i]
                    .push(common::ns_per_event(handler.as_ref(), &event, batched.then_some(BATCH), ROUND_TIME).await);
            }
        }
        let medians: Vec<f64> = samples.into_iter().map(common::median).collect();
        let calls = if batched { format!("batches of {BATCH}") } else { "one event per call".to_owned() };
        for ((language, _), ns) in handlers.iter().zip(&medians) {
            let note = format!("{calls}; {:.1}x Rust", ns / medians[0]);
            row(
                &format!("{language}: per event, {}", if batched { "batched" } else { "one per call" }),
                ns / 1e3,
                "µs",
                &note,
            );
        }
    }
}
