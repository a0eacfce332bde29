//! The codec's cost per event on the HTTP → file path, without sockets: decoding a batch of 100
//! 1 KiB CloudEvents from its request body, and writing each event as the file sink's JSON line;
//! once with binary data (`data_base64`), once with JSON data (`data`, an object of 1 KiB). Peers from the same run: one serde_json pass over the same body into raw
//! values (the least any JSON reader does with it), and copying each event's text as it came.
//! Rounds alternate between the variants; medians are printed.
//!
//! Run: `cargo bench --bench benchmarks -- codec`.

use crate::common;

use common::bench_row as row;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::value::RawValue;

const BATCH: usize = 100;
const ROUNDS: usize = 7;
const ROUND_TIME: Duration = Duration::from_millis(200);

/// Nanoseconds per event of `work`, which handles `BATCH` events a call: the median of `ROUNDS`
/// rounds of `ROUND_TIME`, each measured after the others' rounds of the same index.
fn per_event(rounds: &mut Vec<f64>, mut work: impl FnMut()) {
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < ROUND_TIME {
        work();
        calls += 1;
    }
    rounds.push(started.elapsed().as_nanos() as f64 / (calls as f64 * BATCH as f64));
}

fn median(mut rounds: Vec<f64>) -> f64 {
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

pub fn run() {
    measure("data_base64", |i| {
        serde_json::json!({
            "specversion": "1.0", "id": format!("e{i}"), "source": "/bench", "type": "bench.event",
            "time": "2026-11-23T10:00:00Z", "routingkey": "node-1", "data_base64": common::base64_kib(),
        })
    });
    measure("json data", |i| {
        serde_json::json!({
            "specversion": "1.0", "id": format!("e{i}"), "source": "/bench", "type": "bench.event",
            "time": "2026-11-23T10:00:00Z", "routingkey": "node-1", "datacontenttype": "application/json",
            "data": common::json_kib(i),
        })
    });
}

/// The rows for batches of events made by `event`.
fn measure(kind: &str, event: impl Fn(usize) -> serde_json::Value) {
    let objects: Vec<String> = (0..BATCH).map(|i| event(i).to_string()).collect();
    let body = Bytes::from(format!("[{}]", objects.join(",")));
    let decode = || {
        eventyard::codec::decode(
            "bench.load",
            Some("application/cloudevents-batch+json"),
            &[],
            body.clone(),
            SystemTime::now(),
        )
        .expect("the batch decodes")
    };
    let events = decode();

    let (mut scan, mut decoded, mut copied, mut written) = (vec![], vec![], vec![], vec![]);
    let mut out = Vec::with_capacity(body.len() * 2);
    for _ in 0..ROUNDS {
        per_event(&mut scan, || {
            let values: Vec<&RawValue> = serde_json::from_slice(&body).expect("json");
            std::hint::black_box(values);
        });
        per_event(&mut decoded, || {
            std::hint::black_box(decode());
        });
        per_event(&mut copied, || {
            out.clear();
            for object in &objects {
                out.extend_from_slice(object.as_bytes());
                out.push(b'\n');
            }
            std::hint::black_box(&out);
        });
        per_event(&mut written, || {
            out.clear();
            for event in &events {
                eventyard::codec::structured::write(event, &mut out);
                out.push(b'\n');
            }
            std::hint::black_box(&out);
        });
    }
    let (scan, decoded, copied, written) = (median(scan), median(decoded), median(copied), median(written));
    row(&format!("{kind}: json scan of the body (peer)"), scan, "ns/event", "serde_json into raw values: one pass");
    row(&format!("{kind}: decode, batch of 100"), decoded, "ns/event", &format!("{:.1}x the scan", decoded / scan));
    row(
        &format!("{kind}: copy of each event's text (peer)"),
        copied,
        "ns/event",
        "the event as it came, and a newline",
    );
    row(
        &format!("{kind}: structured write of each event"),
        written,
        "ns/event",
        &format!("the file sink's line; {:.1}x the copy", written / copied),
    );
}
