//! What a rollout costs the routed path: the batch load of the broker benchmarks (1 KiB events,
//! HTTP batches of 100 from 8 clients for 5 s, into a file sink) through a Wasm handler (the
//! `versioned` fixture) on one in-process router, three ways in turns, three rounds: the handler
//! alone (the peer); a canary serving 5 % of the events; and a shadow answering a copy of every
//! event with its answers compared (the candidate is the same code with other settings, so the
//! answers agree, as a good new version's would). Neither rollout decides during the run.
//! Prints events/s acknowledged and delivered (medians), and each against the peer.
//!
//! Run: `cargo bench --bench benchmarks -- rollout`.

use crate::common;

use eventyard::config::Config;
use eventyard::reload::{ReloadReport, RolloutStep};

use crate::turns;
use common::load::{Over, load_config, load_on};

const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Candidate {
    None,
    Canary,
    Shadow,
}

/// The load's config with plugin `stage` on its route, given `settings`, rolled out as `rollout`
/// says (never deciding by itself).
fn config(dir: &str, settings: &str, rollout: &str) -> String {
    let route = "sinks = [\"files\"]\n[sinks.files]";
    load_config("", dir, false).replacen(route, &format!("handlers = [\"stage\"]\n{route}"), 1)
        + &format!(
            "[plugin.stage]\nworld = \"handler\"\nconfig = {{ {settings} }}\n\
             [plugin.stage.rollout]\n{rollout}\nautomatic = false\nmin_events = 1000000000\n"
        )
}

/// One round of the load on a fresh router; events/s acknowledged and delivered.
async fn round(candidate: Candidate) -> (f64, f64) {
    let dir = common::tempdir();
    let root = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("plugins")).expect("the plugin directory is made");
    std::fs::copy(common::plugin("versioned"), dir.path().join("plugins/stage.wasm")).expect("copied");
    let file = dir.path().join("eventyard.toml");
    let rollout = match candidate {
        Candidate::Shadow => "mode = \"shadow\"",
        _ => "mode = \"canary\"\nshare = 5",
    };
    std::fs::write(&file, config(&root, "version = \"1\"", rollout)).expect("config written");
    let running = eventyard::server::start(Config::from_file(&file).expect("bench config is valid"))
        .await
        .expect("router starts");
    if candidate != Candidate::None {
        std::fs::write(&file, config(&root, "version = \"1\", build = \"2\"", rollout)).expect("config written");
        let reports = running.reload().await;
        let started = reports.iter().any(|r| matches!(r, ReloadReport::Rollout(r) if r.step == RolloutStep::Started));
        assert!(started, "the candidate runs: {reports:?}");
    }
    let rates = load_on(running.http_addr, None, Over::Http).await;
    running.shutdown().await;
    rates
}

pub fn run() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let conditions = [
        (Candidate::None, "Wasm handler alone (peer)"),
        (Candidate::Canary, "canary on 5 % of events"),
        (Candidate::Shadow, "shadow on every event"),
    ];
    runtime.block_on(turns::compare("rollout", &conditions, ROUNDS, round));
}
