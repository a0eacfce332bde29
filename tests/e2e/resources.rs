//! Resource bounds of a real router process under load: a sink that stalls holds memory to its
//! queue's size however much is published at it, and idle NATS clients cost a bounded amount each.

use crate::common;

use std::time::Duration;

use common::memory::{per_idle_connection, resident};
use common::router::RouterProcess;

/// Queue of the stalled sink, in events.
const QUEUE: usize = 2000;

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_sink_holds_memory_to_its_queue_size() {
    let port = common::free_port();
    let router = RouterProcess::start(&format!(
        r#"
[http]
listen = "127.0.0.1:0"
[plugins]
dir = "{{dir}}/plugins"
[[route]]
name = "orders"
subject = "orders.>"
sinks = ["stalled"]
[sinks.stalled]
kind = "http"
url = "http://127.0.0.1:{port}/"
queue_size = {QUEUE}
overflow = "reject"
[sinks.stalled.retry]
max_attempts = 1000
initial_backoff_ms = 1000
"#
    ));
    let client = reqwest::Client::new();
    let batch: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            serde_json::json!({"specversion": "1.0", "id": i.to_string(), "source": "/load", "type": "t", "data_base64": common::base64_kib()})
        })
        .collect();
    let body = bytes::Bytes::from(serde_json::to_vec(&batch).expect("json"));
    let publish = async |batches: usize| {
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..batches {
            let response = client
                .post(router.url("/v1/events/orders.load"))
                .header("content-type", "application/cloudevents-batch+json")
                .body(body.clone())
                .send()
                .await
                .expect("the router answers");
            match response.status().as_u16() {
                202 => accepted += 100,
                429 => {
                    let answer: serde_json::Value = response.json().await.expect("a JSON answer");
                    accepted += answer["accepted"].as_u64().expect("it says how many were accepted");
                    refused += 1;
                }
                status => panic!("unexpected {status}"),
            }
        }
        (accepted, refused)
    };
    // Fill the queue, then measure while ten times as much again is published at it.
    let (filled, _) = publish(QUEUE / 100 + 5).await;
    assert!(filled >= QUEUE as u64, "the queue takes its size (and the sink holds one batch): {filled}");
    // Two rounds at the full queue, 20 MB of events each: the first warms the allocator (request
    // buffers on every worker thread; it grew the router by up to 19 MB once), the second must not
    // grow it: a router that kept refused events would grow by their 20 MB again.
    let (warm_up, _) = publish(QUEUE / 10).await;
    let before = resident(router.pid());
    let (accepted, refused) = publish(QUEUE / 10).await;
    let grown = resident(router.pid()).saturating_sub(before);
    println!("queue of {QUEUE} full: {accepted} more accepted, {refused} batches refused, resident grew {grown} bytes");
    assert_eq!(warm_up + accepted, 0, "a full queue takes nothing");
    assert!(grown < 8 << 20, "a stalled sink grew the router by {grown} bytes (queue of {QUEUE} events of 1 KiB)");
    assert_eq!(router.metric("eventyard_queue_depth_events{sink=\"stalled\"}").await, QUEUE as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_nats_clients_cost_a_bounded_amount_each() {
    const CLIENTS: usize = 2000;
    let router = RouterProcess::start(
        "[service]\nhost = \"127.0.0.1\"\nport = 0\nlistener_limit = 10000\n[http]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndir = \"{dir}/plugins\"\n",
    );
    let each = per_idle_connection(router.pid(), router.nats.expect("the gateway is on"), CLIENTS).await;
    println!("{CLIENTS} idle NATS clients: {each:.0} bytes of resident memory each");
    assert!(each < 32.0 * 1024.0, "an idle client costs {each:.0} bytes");
}

/// `[service] queue_bytes` of the byte-bound test.
const BOUND: u64 = 256 << 20;
/// What the router holds beyond its queues, as docs/operations.md states it: the process itself
/// (about 30 MiB), the requests being read and sent, and pages the allocator has not given back.
const OVERHEAD: u64 = 160 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_mib_events_keep_the_router_within_its_byte_bound_and_all_arrive_once_the_sink_is_back() {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use common::http_server::HttpDestination;
    use common::memory::peak_resident;

    let port = common::free_port();
    let mut router = RouterProcess::start(&format!(
        r#"
[service]
nats = false
queue_bytes = "256MiB"
[http]
listen = "127.0.0.1:0"
max_body = "2MiB"
[plugins]
dir = "{{dir}}/plugins"
[[route]]
name = "orders"
subject = "orders.>"
sinks = ["down"]
[sinks.down]
kind = "http"
url = "http://127.0.0.1:{port}/events"
overflow = "block"
block_timeout_ms = 200
[sinks.down.retry]
max_attempts = 1000
initial_backoff_ms = 50
max_backoff_ms = 200
max_elapsed_ms = 600000
"#
    ));
    let base = resident(router.pid());
    let client = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let data = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    let publishers: Vec<_> = (0..4)
        .map(|publisher| {
            let (client, url, data) = (client.clone(), router.url("/v1/events/orders.big"), data.clone());
            let (acknowledged, refused) = (acknowledged.clone(), refused.clone());
            tokio::spawn(async move {
                // Until the bound has pushed back on the publishers for a while (at most a minute).
                let until = tokio::time::Instant::now() + Duration::from_secs(60);
                for n in 0.. {
                    let pushed_back = refused.load(std::sync::atomic::Ordering::Relaxed) >= 40;
                    if pushed_back || tokio::time::Instant::now() > until {
                        break;
                    }
                    let id = format!("p{publisher}-{n}");
                    let response = client
                        .post(&url)
                        .header("content-type", "application/octet-stream")
                        .header("ce-specversion", "1.0")
                        .header("ce-id", &id)
                        .header("ce-source", "/load")
                        .header("ce-type", "big")
                        .body(data.clone())
                        .send()
                        .await
                        .expect("the router answers");
                    match response.status().as_u16() {
                        202 => {
                            acknowledged.lock().expect("not poisoned").insert(id);
                        }
                        429 => {
                            assert!(response.headers().contains_key("retry-after"));
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        status => panic!("unexpected {status}"),
                    }
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("the publisher did not fail");
    }
    let peak = peak_resident(router.pid());
    let held = router.metric("eventyard_queues_bytes").await;
    let acknowledged = acknowledged.lock().expect("not poisoned").clone();
    let refused = refused.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "sink down: {} events of 1 MiB acknowledged, {refused} refused with 429; queues hold {held} bytes of a {BOUND} bound; resident {base} at start, peak {peak}",
        acknowledged.len()
    );
    assert!(refused > 0, "publishers got backpressure");
    assert!(held <= BOUND, "the queues hold {held} bytes, over the bound");
    assert!(peak < BOUND + OVERHEAD, "peak resident {peak} bytes, over {BOUND} + {OVERHEAD}");

    // The sink comes back: every acknowledged event arrives.
    let destination = HttpDestination::start_on(port, vec![], axum::http::StatusCode::OK, Duration::ZERO).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: BTreeSet<String> = destination
            .received()
            .iter()
            .map(|request| serde_json::from_slice::<serde_json::Value>(&request.body).expect("a JSON event"))
            .map(|event| event["id"].as_str().expect("events have ids").to_owned())
            .collect();
        if acknowledged.is_subset(&delivered) {
            break;
        }
        let missing = acknowledged.difference(&delivered).count();
        if tokio::time::Instant::now() > deadline {
            let logs = router.logs().iter().rev().take(5).cloned().collect::<Vec<_>>();
            panic!("{missing} acknowledged events never arrived; the router's last words: {logs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
