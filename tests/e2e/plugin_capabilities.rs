//! Capability grants end to end. Outbound HTTP: the `http-probe` fixture sink POSTs events through
//! `wasi:http/outgoing-handler` to a real axum server on `127.0.0.1:0` started by each test, and
//! the host must let requests through only to the hosts in `Grants::http_hosts`, refuse the plugin
//! at load when it has no HTTP grant at all, and report the server's answers as retryable or
//! permanent delivery errors. Kafka: the `kafka-probe` fixture sends through the host's producer
//! to a real Kafka-protocol broker, only to the topics its grant lists.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::http_server::HttpDestination;
use common::kafka::KafkaBroker;
use common::{event, plugin};
use eventyard::capability::HostServices;
use eventyard::event::Event;
use eventyard::kafka::{KafkaConnection, KafkaSettings};
use eventyard::plugin::{Plugin, PluginError, PluginRuntime, PluginSpec, Role, RuntimeOptions, Topics, WasmSink};
use eventyard::sink::{DeliveryError, Sink};
use serde_json::{Value, json};

/// Bounds every network await in these tests: binding, and deliveries that make HTTP requests.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeOptions { pool_instances: 16, ..RuntimeOptions::default() }).expect("runtime starts")
}

/// The `http-probe` sink posting to `url`, granted outbound HTTP to `http_hosts` when given.
fn probe(url: &str, http_hosts: Option<Vec<String>>) -> PluginSpec {
    let mut spec = PluginSpec::new("http-probe", plugin("http-probe"), Role::Sink);
    spec.config = vec![("url".into(), url.into())];
    spec.grants.http_hosts = http_hosts;
    spec
}

async fn sink(runtime: &PluginRuntime, spec: PluginSpec) -> Arc<WasmSink> {
    match runtime.load(spec).await {
        Ok(Plugin::Sink(sink)) => sink,
        Ok(_) => panic!("loaded a plugin of another role"),
        Err(err) => panic!("load failed: {err}"),
    }
}

/// Delivers `batch`, failing the test if the delivery does not finish within [`NETWORK_TIMEOUT`].
async fn deliver(sink: &WasmSink, batch: &[Event]) -> Result<(), DeliveryError> {
    tokio::time::timeout(NETWORK_TIMEOUT, sink.deliver(batch)).await.expect("delivery timed out")
}

fn order(i: usize) -> Event {
    event(json!({
        "subject": "orders.eu.created", "id": format!("order-{i}"), "type": "order.created",
        "extensions": [["routingkey", "node-1"]], "data": {"n": i}
    }))
}

#[tokio::test]
async fn a_granted_host_receives_each_event_as_cloudevents_json() {
    let server = HttpDestination::start(vec![], StatusCode::OK, Duration::ZERO).await;
    let runtime = runtime();
    let sink = sink(&runtime, probe(&server.url(), Some(vec![server.addr.to_string()]))).await;

    let batch: Vec<Event> = (0..3).map(order).collect();
    deliver(&sink, &batch).await.expect("delivery to a granted host succeeds");

    let received = server.received();
    assert_eq!(received.len(), 3, "{received:?}");
    for (i, request) in received.iter().enumerate() {
        assert_eq!(
            request.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/cloudevents+json")
        );
        let body: Value = serde_json::from_slice(&request.body).expect("body is JSON");
        assert_eq!(
            body,
            json!({
                "specversion": "1.0", "id": format!("order-{i}"), "source": "eventyard", "type": "order.created",
                "datacontenttype": "application/json", "routingkey": "node-1", "data": {"n": i}
            })
        );
    }
}

#[tokio::test]
async fn a_host_outside_the_grant_is_denied_and_never_reached() {
    let server = HttpDestination::start(vec![], StatusCode::OK, Duration::ZERO).await;
    let runtime = runtime();
    // Another host, and the server's host on another port: neither grant covers the server.
    let other_port = if server.addr.port() == 1 { 2 } else { 1 };
    for hosts in [vec!["example.invalid".to_owned()], vec![format!("127.0.0.1:{other_port}")]] {
        let sink = sink(&runtime, probe(&server.url(), Some(hosts.clone()))).await;
        let err = deliver(&sink, &[order(0)]).await.expect_err("delivery outside the grant fails");
        assert!(
            matches!(&err, DeliveryError::Retryable(message) if message.contains("HttpRequestDenied")),
            "granted {hosts:?}: {err}"
        );
    }
    assert!(server.received().is_empty(), "{:?}", server.received());
}

#[tokio::test]
async fn a_plugin_importing_outbound_http_without_a_grant_is_refused_at_load() {
    let server = HttpDestination::start(vec![], StatusCode::OK, Duration::ZERO).await;
    let err = match runtime().load(probe(&server.url(), None)).await {
        Ok(_) => panic!("load succeeded but should have been refused"),
        Err(err) => err,
    };
    let text = err.to_string();
    match &err {
        PluginError::CapabilityNotGranted { name, capability, import } => {
            assert_eq!(name, "http-probe");
            assert_eq!(capability, "http");
            assert!(import.starts_with("wasi:http/outgoing-handler@0.2."), "{import}");
        }
        other => panic!("expected CapabilityNotGranted, got {other:?}"),
    }
    assert!(text.contains("`http`") && text.contains("wasi:http/outgoing-handler"), "{text}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn server_errors_are_retryable_and_client_errors_permanent() {
    let runtime = runtime();
    for status in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::TOO_MANY_REQUESTS, StatusCode::BAD_REQUEST] {
        let server = HttpDestination::start(vec![], status, Duration::ZERO).await;
        let sink = sink(&runtime, probe(&server.url(), Some(vec![server.addr.to_string()]))).await;
        let err = deliver(&sink, &[order(0)]).await.expect_err("a non-2xx answer fails the delivery");
        let code = status.as_u16();
        match (&err, code) {
            (DeliveryError::Retryable(message), 500 | 429) | (DeliveryError::Permanent(message), 400) => {
                assert!(message.contains(&format!("status {code}")), "{message}")
            }
            _ => panic!("status {code}: wrong classification: {err:?}"),
        }
        assert_eq!(server.received().len(), 1, "status {code}: the request reached the server once");
    }
}

#[tokio::test]
async fn a_slow_destination_cannot_hold_a_call_past_the_plugin_timeout() {
    let server = HttpDestination::start(vec![], StatusCode::OK, Duration::from_secs(5)).await;
    let runtime = runtime();
    let mut spec = probe(&server.url(), Some(vec![server.addr.to_string()]));
    spec.limits.timeout = Duration::from_millis(300);
    let sink = sink(&runtime, spec).await;
    let started = std::time::Instant::now();
    let err = deliver(&sink, &[order(0)]).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, DeliveryError::Fault(eventyard::fault::Fault::Timeout(_))), "{err}");
    assert!(elapsed < Duration::from_secs(2), "the call waited {elapsed:?}");
    // A timeout is a retryable fault: nothing is known to be delivered.
    assert!(err.is_retryable());
}

/// A runtime lending a producer for `brokers` (`[kafka]` with its defaults and `extra` lines).
fn kafka_runtime(brokers: &str, extra: &str) -> PluginRuntime {
    let settings: KafkaSettings =
        toml::from_str(&format!("brokers = [\"{brokers}\"]\ndelivery_timeout_ms = 3000\n{extra}"))
            .expect("settings parse");
    let kafka = KafkaConnection::new(&settings).expect("the producer is made");
    runtime().with_services(HostServices { kafka: Some(Arc::new(kafka)), nats: None })
}

fn kafka_probe(topic: &str, grant: Topics) -> PluginSpec {
    let mut spec = PluginSpec::new("kafka-probe", plugin("kafka-probe"), Role::Sink);
    spec.config = vec![("topic".into(), topic.into())];
    spec.grants.kafka = Some(grant);
    // A send waits for the broker's acknowledgement, longer than a handler's default 500 ms.
    spec.limits.timeout = Duration::from_secs(10);
    spec
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_records_reach_the_broker_only_for_granted_topics() {
    let broker = KafkaBroker::start().await;
    broker.create_topic("orders", 1);
    let runtime = kafka_runtime(&broker.bootstrap(), "");

    let granted = sink(&runtime, kafka_probe("orders", Topics::Only(vec!["orders".into()]))).await;
    deliver(&granted, &[order(1), order(2)]).await.expect("delivered");
    let records = broker.consume("orders", 2, NETWORK_TIMEOUT);
    let ids: Vec<&str> = records.iter().map(|r| r["headers"]["ce_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["order-1", "order-2"], "{records:?}");
    assert_eq!(records[0]["key"], "node-1", "keyed by routing key: {records:?}");

    let other = sink(&runtime, kafka_probe("payments", Topics::Only(vec!["orders".into()]))).await;
    let err = deliver(&other, &[order(3)]).await.unwrap_err();
    assert!(err.to_string().contains("not granted: Kafka topic `payments`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_is_down_fails_deliveries_as_retryable() {
    let runtime = kafka_runtime(&format!("127.0.0.1:{}", common::free_port()), "");
    let sink = sink(&runtime, kafka_probe("orders", Topics::Any)).await;
    match deliver(&sink, &[order(1)]).await {
        Err(DeliveryError::Retryable(reason)) => assert!(reason.contains("kafka"), "{reason}"),
        other => panic!("expected a retryable failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_record_batches_arrive_whole() {
    let broker = KafkaBroker::start().await;
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        broker.create_topic(codec, 1);
        let runtime = kafka_runtime(&broker.bootstrap(), &format!("compression = \"{codec}\""));
        let sink = sink(&runtime, kafka_probe(codec, Topics::Any)).await;
        let batch: Vec<Event> = (0..50).map(order).collect();
        deliver(&sink, &batch).await.unwrap_or_else(|err| panic!("{codec}: {err}"));
        let records = broker.consume(codec, 50, NETWORK_TIMEOUT);
        assert_eq!(records.len(), 50, "{codec}: {records:?}");
        let value: Value = serde_json::from_str(records[49]["value"].as_str().unwrap()).expect("JSON");
        assert_eq!(value["id"], "order-49", "{codec}");
    }
}
