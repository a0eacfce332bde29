//! Cost of the Wasm boundary: the `passthrough` handler as a Wasm plugin against the same handler
//! native, through the same `Handler` trait, at 64 B, 1 KiB and 64 KiB payloads, one event per call
//! and in batches of 64. Variants run interleaved, several rounds, and the median is printed, since
//! timings on a shared 2-core machine vary by tens of percent from run to run.
//!
//! Run: `cargo bench --bench benchmarks -- passthrough`; `BENCH_ONLY=1024:batch` (payload bytes, `one` or `batch`)
//! runs a single case, for profiling.

use crate::common;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use eventyard::event::Event;
use eventyard::plugin::{Plugin, PluginRuntime, PluginSpec, Role, RuntimeOptions};
use eventyard::route::{Handler, HandlerError};

/// The native twin of the `passthrough` plugin.
struct NativePassthrough;

#[async_trait]
impl Handler for NativePassthrough {
    async fn handle(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
        Ok(vec![event])
    }
}

const BATCH: usize = 64;
const ROUNDS: usize = 7;
const ROUND_TIME: Duration = Duration::from_millis(150);

fn sample_event(payload: usize) -> Event {
    let mut event = common::event(serde_json::json!({
        "subject": "orders.eu.created",
        "type": "com.example.order.created",
        "source": "/bench",
        "time": "2026-11-23T10:00:00Z",
        "extensions": [["routingkey", "node-1"]],
    }));
    event.data = Bytes::from(vec![b'x'; payload]);
    event
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

#[tokio::main(flavor = "current_thread")]
pub async fn run() {
    let wasm_path = common::plugin("passthrough");
    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");

    let started = Instant::now();
    let Ok(Plugin::Handler(wasm)) = runtime.load(PluginSpec::new("passthrough", &wasm_path, Role::Handler)).await
    else {
        panic!("passthrough did not load as a handler");
    };
    let cold_load = started.elapsed();
    let native = NativePassthrough;

    println!("passthrough handler, Wasm plugin vs native, ns per event (median of {ROUNDS} rounds)");
    println!("machine: {}", machine());
    println!("{:<9} {:<14} {:>10} {:>10} {:>12} {:>7}", "payload", "mode", "native", "wasm", "overhead", "ratio");
    let only = std::env::var("BENCH_ONLY").ok();
    for payload in [64, 1024, 64 * 1024] {
        let event = sample_event(payload);
        for batched in [false, true] {
            let case = format!("{payload}:{}", if batched { "batch" } else { "one" });
            if only.as_ref().is_some_and(|only| *only != case) {
                continue;
            }
            let (mut native_ns, mut wasm_ns) = (Vec::new(), Vec::new());
            common::ns_per_event(wasm.as_ref(), &event, batched.then_some(BATCH), ROUND_TIME).await; // warm-up
            for _ in 0..ROUNDS {
                native_ns.push(common::ns_per_event(&native, &event, batched.then_some(BATCH), ROUND_TIME).await);
                wasm_ns.push(common::ns_per_event(wasm.as_ref(), &event, batched.then_some(BATCH), ROUND_TIME).await);
            }
            let (n, w) = (common::median(native_ns), common::median(wasm_ns));
            let mode = if batched { format!("batch of {BATCH}") } else { "one per call".to_string() };
            let size = if payload >= 1024 { format!("{} KiB", payload / 1024) } else { format!("{payload} B") };
            println!("{size:<9} {mode:<14} {n:>10.0} {w:>10.0} {:>12.0} {:>6.1}x", w - n, w / n);
        }
    }
    println!("first load (compile + instantiate + init), no cache: {:.1} ms", cold_load.as_secs_f64() * 1e3);
}
