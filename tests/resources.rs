//! Resource bounds of a real router process under load: a sink that stalls holds memory to its
//! queue's size however much is published at it, and idle NATS clients cost a bounded amount each.

mod common;

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
    let before = resident(router.pid());
    let (accepted, refused) = publish(QUEUE / 10).await;
    let grown = resident(router.pid()).saturating_sub(before);
    println!("queue of {QUEUE} full: {accepted} more accepted, {refused} batches refused, resident grew {grown} bytes");
    assert_eq!(accepted, 0, "a full queue takes nothing");
    assert!(grown < 16 << 20, "a stalled sink grew the router by {grown} bytes (queue of {QUEUE} events of 1 KiB)");
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
    tokio::time::sleep(Duration::from_millis(100)).await;
}
