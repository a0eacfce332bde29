//! What watching costs: the batch load of the broker benchmarks (1 KiB events, HTTP batches of
//! 100 from 8 clients for 5 s, into a file sink) on one in-process router, three ways in turns,
//! three rounds: the peer, the admin API and console off; the console on and nobody watching; and
//! one browser's worth of watching — the snapshot every second (as the console polls it), the
//! dead letters every 5 s, and a live tap open on the loaded subject itself (the worst case: every
//! event meets the tap's sampler). Prints events/s acknowledged and delivered (medians), and each
//! against the peer.
//!
//! Run: `cargo bench --bench benchmarks -- console`.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use eventyard::config::Config;

use crate::turns;
use common::load::{Over, load_config, load_on};
use common::router::{ADMIN, ADMIN_TOKEN};

const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Watching {
    ConsoleOff,
    Nobody,
    OneBrowser,
}

/// One browser watching `base`: the snapshot each second, the dead letters each fifth, a tap on
/// `bench.>` read as it streams. Returns how many tapped bytes and snapshots it read.
async fn browser(base: String, stop: Arc<AtomicBool>) -> (u64, u64) {
    let client = reqwest::Client::new();
    let tapped = Arc::new(AtomicU64::new(0));
    let tap = tokio::spawn({
        let (client, url, tapped) = (client.clone(), format!("{base}/v1/admin/tap?subject=bench.%3E"), tapped.clone());
        async move {
            let mut response = client.get(url).bearer_auth(ADMIN_TOKEN).send().await.expect("the tap opens");
            while let Ok(Some(chunk)) = response.chunk().await {
                tapped.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
    });
    let mut snapshots = 0;
    while !stop.load(Ordering::Relaxed) {
        let snapshot = client.get(format!("{base}/v1/admin/snapshot")).bearer_auth(ADMIN_TOKEN).send().await;
        assert!(snapshot.is_ok_and(|s| s.status() == 200), "the snapshot answers");
        if snapshots % 5 == 0 {
            let _ = client.get(format!("{base}/v1/admin/dead-letters")).bearer_auth(ADMIN_TOKEN).send().await;
        }
        snapshots += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tap.abort();
    (tapped.load(Ordering::Relaxed), snapshots)
}

/// One round of the load on a fresh router; events/s acknowledged and delivered.
async fn round(watching: Watching) -> (f64, f64) {
    let dir = common::tempdir();
    let mut config = load_config("", &dir.path().display().to_string(), false);
    if watching != Watching::ConsoleOff {
        config.push_str(ADMIN);
    }
    let config = Config::from_toml(&config).expect("bench config is valid");
    let running = eventyard::server::start(config).await.expect("router starts");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = (watching == Watching::OneBrowser)
        .then(|| tokio::spawn(browser(format!("http://{}", running.http_addr), stop.clone())));
    let rates = load_on(running.http_addr, None, Over::Http).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(watcher) = watcher {
        let (tapped, snapshots) = watcher.await.expect("the browser watched");
        assert!(
            tapped > 0 && snapshots >= 4,
            "the browser saw the router: {tapped} bytes tapped, {snapshots} snapshots"
        );
    }
    running.shutdown().await;
    rates
}

pub fn run() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let conditions = [
        (Watching::ConsoleOff, "console off (peer)"),
        (Watching::Nobody, "console on, nobody watching"),
        (Watching::OneBrowser, "one browser watching + tap"),
    ];
    runtime.block_on(turns::compare("console", &conditions, ROUNDS, round));
}
