//! Capability grants end to end, starting with outbound HTTP: the `http-probe` fixture sink POSTs
//! events through `wasi:http/outgoing-handler` to a real axum server on `127.0.0.1:0` started by
//! each test, and the host must let requests through only to the hosts in `Grants::http_hosts`,
//! refuse the plugin at load when it has no HTTP grant at all, and report the server's answers as
//! retryable or permanent delivery errors.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use common::{event, plugin};
use eventyard::event::Event;
use eventyard::plugin::{Plugin, PluginError, PluginRuntime, PluginSpec, Role, RuntimeOptions, WasmSink};
use eventyard::sink::{DeliveryError, Sink};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Bounds every network await in these tests: binding, and deliveries that make HTTP requests.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);
/// The path the fixture posts to.
const EVENTS_PATH: &str = "/events";

/// One request the test server received.
#[derive(Debug, Clone)]
struct Received {
    content_type: Option<String>,
    body: Bytes,
}

/// What the test server answers and what it has received so far.
struct Recorder {
    status: StatusCode,
    /// How long to wait before answering.
    delay: Duration,
    received: Mutex<Vec<Received>>,
}

/// A real HTTP server on `127.0.0.1:0` that records every POST to [`EVENTS_PATH`] and answers each
/// with a fixed status. Dropping it stops the server: the join set owns the serving task.
struct TestServer {
    addr: SocketAddr,
    recorder: Arc<Recorder>,
    _tasks: JoinSet<()>,
}

impl TestServer {
    /// Binds the listener before spawning the server, so the server is ready once this returns.
    async fn start(status: StatusCode) -> TestServer {
        TestServer::start_slow(status, Duration::ZERO).await
    }

    /// A server that waits `delay` before answering each request.
    async fn start_slow(status: StatusCode, delay: Duration) -> TestServer {
        let listener = tokio::time::timeout(NETWORK_TIMEOUT, TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("binding the test server timed out")
            .expect("test server binds 127.0.0.1:0");
        let addr = listener.local_addr().expect("test server has a local address");
        let recorder = Arc::new(Recorder { status, delay, received: Mutex::new(Vec::new()) });
        let app = Router::new().route(EVENTS_PATH, post(record)).with_state(recorder.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn(async move { axum::serve(listener, app).await.expect("test server runs") });
        TestServer { addr, recorder, _tasks: tasks }
    }

    /// The URL the fixture is configured to post to.
    fn url(&self) -> String {
        format!("http://{}{EVENTS_PATH}", self.addr)
    }

    /// The grant that lets the fixture reach this server: `127.0.0.1:<port>`.
    fn authority(&self) -> String {
        self.addr.to_string()
    }

    fn received(&self) -> Vec<Received> {
        self.recorder.received.lock().expect("recorder lock is never poisoned").clone()
    }
}

async fn record(State(recorder): State<Arc<Recorder>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    recorder.received.lock().expect("recorder lock is never poisoned").push(Received { content_type, body });
    tokio::time::sleep(recorder.delay).await;
    recorder.status
}

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
    let server = TestServer::start(StatusCode::OK).await;
    let runtime = runtime();
    let sink = sink(&runtime, probe(&server.url(), Some(vec![server.authority()]))).await;

    let batch: Vec<Event> = (0..3).map(order).collect();
    deliver(&sink, &batch).await.expect("delivery to a granted host succeeds");

    let received = server.received();
    assert_eq!(received.len(), 3, "{received:?}");
    for (i, request) in received.iter().enumerate() {
        assert_eq!(request.content_type.as_deref(), Some("application/cloudevents+json"));
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
    let server = TestServer::start(StatusCode::OK).await;
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
    let server = TestServer::start(StatusCode::OK).await;
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
        let server = TestServer::start(status).await;
        let sink = sink(&runtime, probe(&server.url(), Some(vec![server.authority()]))).await;
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
    let server = TestServer::start_slow(StatusCode::OK, Duration::from_secs(5)).await;
    let runtime = runtime();
    let mut spec = probe(&server.url(), Some(vec![server.authority()]));
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
