//! Cost of the Wasm boundary: three handlers as Wasm plugins against their native twins through
//! the same `Handler` trait — `passthrough` (keeps every event), `subject-filter` (reads the subject
//! and keeps the event) and `severity-map` (parses the JSON data, maps a field, writes the data
//! back) — and `severity-map` again in Python and JavaScript, all on plugin contract 0.2. The
//! same run measures contract 0.1: `passthrough` and the `contract-0.1` test fixture (which stamps
//! an extension) built from one source against the SDKs of both contracts. Events carry 64 B, 1 KiB and 64 KiB
//! of JSON data; one event per call and batches of 64. Variants run interleaved, several rounds,
//! and the median is printed, since timings on a shared 2-core machine vary by tens of percent.
//!
//! Each figure is one line `wasm-overhead plugin=<name> size=<bytes> mode=<single|batch64>
//! contract=<version> ns=<overhead per event>`, the overhead being the plugin's time per event less
//! its native twin's from the same round; the table above the lines has both times.
//!
//! Run: `cargo bench --bench benchmarks -- passthrough`; `BENCH_ONLY=<plugin>:<size>:<mode>` (say
//! `passthrough:1024:batch64`, or a start of it: `severity-map-python`) runs only those cases.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use eventyard::broker::Pattern;
use eventyard::event::Event;
use eventyard::plugin::{Plugin, PluginRuntime, PluginSpec, Role, RuntimeOptions};
use eventyard::route::{Handler, HandlerError};

const BATCH: usize = 64;
const ROUNDS: usize = 7;
const ROUND_TIME: Duration = Duration::from_millis(150);
const SIZES: [usize; 3] = [64, 1024, 64 * 1024];

/// The native twin of `passthrough`.
struct NativePassthrough;

#[async_trait]
impl Handler for NativePassthrough {
    async fn handle(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
        Ok(vec![event])
    }
}

/// The native twin of `subject-filter` configured with `allow = ["orders.>"]`.
struct NativeSubjectFilter(Pattern);

#[async_trait]
impl Handler for NativeSubjectFilter {
    async fn handle(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
        Ok(if self.0.matches(&event.subject) { vec![event] } else { Vec::new() })
    }
}

/// The plugin's own mapping, compiled natively.
#[path = "../plugins/severity-map/src/mapping.rs"]
mod severity_mapping;

/// The native twin of `severity-map` with its defaults (`severity` mapped in place): the plugin's
/// mapping code, and the same event handling around it.
struct NativeSeverityMap(severity_mapping::SeverityMap);

#[async_trait]
impl Handler for NativeSeverityMap {
    async fn handle(&self, mut event: Event) -> Result<Vec<Event>, HandlerError> {
        let data = self.0.map(&event.data).map_err(|message| HandlerError::Rejected { message, retryable: false })?;
        event.data = Bytes::from(data);
        event.context.datacontenttype.get_or_insert_with(|| "application/json".into());
        Ok(vec![event])
    }
}

/// The native twin of the `contract-0.1` test fixture without config: stamps the `contract`
/// extension.
struct NativeStamp;

#[async_trait]
impl Handler for NativeStamp {
    async fn handle(&self, mut event: Event) -> Result<Vec<Event>, HandlerError> {
        match event.extensions.iter_mut().find(|(name, _)| name == "contract") {
            Some(entry) => entry.1 = "0.2.0".into(),
            None => event.extensions.push(("contract".into(), "0.2.0".into())),
        }
        Ok(vec![event])
    }
}

/// One handler measured: its name in the figures, the contract it speaks, the component and its
/// native twin.
struct Case {
    name: &'static str,
    contract: &'static str,
    wasm: Arc<dyn Handler>,
    native: Arc<dyn Handler>,
}

/// An event on `orders.eu.created` whose data is a JSON object of `size` bytes with a
/// `severity` the severity map knows.
fn sample_event(size: usize) -> Event {
    let mut event = common::event(serde_json::json!({
        "subject": "orders.eu.created",
        "type": "com.example.order.created",
        "source": "/bench",
        "time": "2026-11-23T10:00:00Z",
        "datacontenttype": "application/json",
        "extensions": [["routingkey", "node-1"]],
    }));
    let padding = "x".repeat(size.saturating_sub(37));
    let data = serde_json::json!({"severity": "Important", "padding": padding});
    event.data = Bytes::from(serde_json::to_vec(&data).expect("JSON"));
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

/// Loads the component at `path` as handler `name` with `config`.
async fn load(
    runtime: &PluginRuntime,
    name: &str,
    path: &std::path::Path,
    config: &[(&str, &str)],
) -> Arc<dyn Handler> {
    let mut spec = PluginSpec::new(name, path, Role::Handler);
    spec.config = config.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    let Ok(Plugin::Handler(handler)) = runtime.load(spec).await else { panic!("{name} did not load as a handler") };
    handler
}

#[tokio::main(flavor = "current_thread")]
pub async fn run() {
    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let started = Instant::now();
    let passthrough = load(&runtime, "passthrough", &common::plugin("passthrough"), &[]).await;
    let cold_load = started.elapsed();
    let allow = [("allow", r#"["orders.>"]"#)];
    let filter = load(&runtime, "subject-filter", &common::plugin("subject-filter"), &allow).await;
    let severity = load(&runtime, "severity-map", &common::plugin("severity-map"), &[]).await;
    let native_map: Arc<dyn Handler> =
        Arc::new(NativeSeverityMap(severity_mapping::SeverityMap::new("severity", "severity")));
    let native_filter = Arc::new(NativeSubjectFilter(Pattern::new("orders.>").expect("a pattern")));
    let mut cases = vec![
        Case { name: "passthrough", contract: "0.2", wasm: passthrough, native: Arc::new(NativePassthrough) },
        Case { name: "subject-filter", contract: "0.2", wasm: filter, native: native_filter },
        Case { name: "severity-map", contract: "0.2", wasm: severity, native: native_map.clone() },
    ];
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted =
        |name: &str| only.as_ref().is_none_or(|only| only.starts_with(name) || name.starts_with(only.as_str()));
    // The same sources built against the SDK of contract 0.1.0 (the one the `contract-0.1` fixture
    // carries), so both contracts are measured in one run: passthrough, and the fixture itself.
    if wanted("passthrough") {
        let source = common::repo_root().join("plugins/passthrough");
        let built = common::build_with_sdk("passthrough-contract-0-1", &source, &common::sdk_0_1());
        let wasm = load(&runtime, "passthrough-0.1", &built, &[]).await;
        cases.push(Case { name: "passthrough", contract: "0.1", wasm, native: Arc::new(NativePassthrough) });
    }
    if wanted("contract-fixture") {
        for (contract, built) in [("0.1", common::contract_0_1_component()), ("0.2", common::contract_0_1_rebuilt())] {
            let wasm = load(&runtime, "contract-fixture", &built, &[]).await;
            cases.push(Case { name: "contract-fixture", contract, wasm, native: Arc::new(NativeStamp) });
        }
    }
    for (name, dir) in [("severity-map-python", "python/severity-map"), ("severity-map-javascript", "js/severity-map")]
    {
        // Built with their toolchains (slow, and noise in a profile) only when measured.
        if wanted(name) {
            let wasm = load(&runtime, name, &common::polyglot_plugin(dir), &[]).await;
            cases.push(Case { name, contract: "0.2", wasm, native: native_map.clone() });
        }
    }

    println!("Wasm handlers against their native twins, ns per event (median of {ROUNDS} rounds)");
    println!("machine: {}", machine());
    println!(
        "{:<24} {:>8} {:>8} {:<8} {:>10} {:>10} {:>10} {:>7}",
        "plugin", "contract", "size", "mode", "native", "wasm", "overhead", "ratio"
    );
    let mut lines = Vec::new();
    for case in &cases {
        for size in SIZES {
            let event = sample_event(size);
            for batch in [None, Some(BATCH)] {
                let mode = if batch.is_some() { "batch64" } else { "single" };
                if only.as_ref().is_some_and(|only| !format!("{}:{size}:{mode}", case.name).starts_with(only.as_str()))
                {
                    continue;
                }
                common::ns_per_event(case.wasm.as_ref(), &event, batch, ROUND_TIME).await; // warm-up
                let (mut native_ns, mut wasm_ns) = (Vec::new(), Vec::new());
                for _ in 0..ROUNDS {
                    native_ns.push(common::ns_per_event(case.native.as_ref(), &event, batch, ROUND_TIME).await);
                    wasm_ns.push(common::ns_per_event(case.wasm.as_ref(), &event, batch, ROUND_TIME).await);
                }
                let (native, wasm) = (common::median(native_ns), common::median(wasm_ns));
                let (name, contract) = (case.name, case.contract);
                println!(
                    "{name:<24} {contract:>8} {size:>8} {mode:<8} {native:>10.0} {wasm:>10.0} {:>10.0} {:>6.1}x",
                    wasm - native,
                    wasm / native
                );
                lines.push(format!(
                    "wasm-overhead plugin={name} size={size} mode={mode} contract={contract} ns={:.0}",
                    wasm - native
                ));
            }
        }
    }
    println!();
    for line in lines {
        println!("{line}");
    }
    println!(
        "first load of passthrough (compile + instantiate + init), no cache: {:.1} ms",
        cold_load.as_secs_f64() * 1e3
    );
}
