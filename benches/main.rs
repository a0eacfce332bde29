//! Every benchmark of Eventyard, one module each, in one binary (the dependencies are linked once,
//! as for `tests/e2e`). Each module's `//!` says what it measures against which peer.
//!
//! Run: `cargo bench --bench benchmarks -- NAME...` (no name: all of them, in the order below), or
//! `scripts/bench` for every benchmark as one table. `cargo test` builds this binary and runs it
//! without `--bench`: then it only lists the benchmarks, so the suite compiles and lints them
//! without spending minutes measuring.

#[path = "../tests/common/mod.rs"]
mod common;

mod boundary;
mod cluster;
mod codec;
mod console;
mod destinations;
mod durability;
mod footprint;
mod gateway;
mod overload;
mod passthrough;
mod polyglot;
mod reload;
mod rollout;
mod router;
mod turns;

// The allocator the `eventyard` binary uses, so the figures match the router's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Each benchmark by the name it is run with.
const BENCHMARKS: &[(&str, fn())] = &[
    ("passthrough", passthrough::run),
    ("polyglot", polyglot::run),
    ("codec", codec::run),
    ("router", router::run),
    ("reload", reload::run),
    ("gateway", gateway::run),
    ("footprint", footprint::run),
    ("destinations", destinations::run),
    ("cluster", cluster::run),
    ("durability", durability::run),
    ("overload", overload::run),
    ("boundary", boundary::run),
    ("console", console::run),
    ("rollout", rollout::run),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listed = || BENCHMARKS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
    if !args.iter().any(|arg| arg == "--bench") {
        println!("benchmarks: {} (run with `cargo bench --bench benchmarks -- NAME`)", listed());
        return;
    }
    let chosen: Vec<&str> = args.iter().filter(|arg| !arg.starts_with('-')).map(String::as_str).collect();
    if let Some(unknown) = chosen.iter().find(|name| !BENCHMARKS.iter().any(|(known, _)| known == *name)) {
        eprintln!("benchmarks: no benchmark `{unknown}`; there are {}", listed());
        std::process::exit(2);
    }
    for (name, run) in BENCHMARKS {
        if chosen.is_empty() || chosen.contains(name) {
            run();
        }
    }
}
