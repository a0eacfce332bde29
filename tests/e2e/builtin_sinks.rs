//! The built-in sinks end to end, through the `Sink` trait as the sink worker calls them:
//! `FileSink` writing seed 002's layout into a temporary directory (and the same bytes as the Wasm
//! `file-sink` plugin for the same batch), refusing paths that would leave its root, and
//! `HttpSink` against a real axum server on `127.0.0.1:0` answering 200, 500, 400, or too slowly.
//! `StdoutSink`'s lines are unit-tested beside it.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use common::http_server::{HttpDestination, Received};
use common::{event, files_under, plugin_runtime, tempdir, wasm_file_sink};
use eventyard::codec::structured;
use eventyard::event::Event;
use eventyard::sink::builtin::{FileSink, FileSinkConfig, FsyncPolicy, HttpSink, HttpSinkConfig};
use eventyard::sink::{DeliveryError, EventFailure, Sink};
use serde_json::{Value, json};

/// Bounds every delivery that makes HTTP requests.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

fn file_sink(root: &Path) -> FileSink {
    let config: FileSinkConfig =
        toml::from_str(&format!("root = {:?}", root.display().to_string())).expect("file sink config parses");
    assert_eq!(config.fsync, FsyncPolicy::Batch);
    FileSink::new("audit", config).expect("file sink builds")
}

fn http_sink(toml_text: &str) -> HttpSink {
    let config: HttpSinkConfig = toml::from_str(toml_text).expect("http sink config parses");
    HttpSink::new("hook", config).expect("http sink builds")
}

/// A destination answering `status` to every request.
async fn destination(status: StatusCode) -> HttpDestination {
    HttpDestination::start(Vec::new(), status, Duration::ZERO).await
}

/// The value of header `name` of `request`, when present and text.
fn header<'a>(request: &'a Received, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|value| value.to_str().ok())
}

/// The body of `request` as JSON.
fn body(request: &Received) -> Value {
    serde_json::from_slice(&request.body).expect("request body is JSON")
}

/// Delivers `batch`, failing the test if the delivery does not finish within [`NETWORK_TIMEOUT`].
async fn deliver(sink: &dyn Sink, batch: &[Event]) -> Result<(), DeliveryError> {
    tokio::time::timeout(NETWORK_TIMEOUT, sink.deliver(batch)).await.expect("delivery timed out")
}

/// An audit event of seed 002: `subject` is the topic, `key` the routing key.
fn audit(id: &str, subject: &str, key: Option<&str>, time: &str, data: Value) -> Event {
    let mut json =
        json!({"subject": subject, "id": id, "source": "/dss/node-1", "type": "dss.audit", "time": time, "data": data});
    if let Some(key) = key {
        json["extensions"] = json!([["routingkey", key]]);
    }
    event(json)
}

fn ids(lines: &[u8]) -> Vec<String> {
    std::str::from_utf8(lines)
        .expect("lines are UTF-8")
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("each line is JSON")["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn file_sink_writes_hour_directories_and_the_same_bytes_as_the_wasm_file_sink() {
    let mut batch = vec![
        audit("a1", "audit", Some("node-1"), "2024-03-05T07:08:09Z", json!({"user": "ada", "n": 1.5})),
        audit("a2", "audit", Some("node-2"), "2024-03-05T07:59:59.999Z", json!({"user": "bob"})),
        audit("a3", "audit", Some("node-1"), "2024-03-05T09:30:00+01:00", json!([1, "two", null])),
        audit("a4", "audit", None, "2024-03-05T08:00:00Z", json!({})),
        audit("a5", "audit.login", Some("node-1"), "2024-03-05T07:10:00Z", json!("text")),
    ];
    // Text, binary, no data, a CloudEvents subject, and an extension that tries to replace `id`.
    batch.push(event(json!({
        "subject": "audit", "id": "a6", "time": "2024-03-05T07:11:00Z", "ce_subject": "user/ada",
        "extensions": [["routingkey", "node-1"], ["id", "spoofed"], ["region", "eu"]], "data_text": "plain\ntext"
    })));
    batch.push(event(json!({
        "subject": "audit", "id": "a7", "time": "2024-03-05T07:12:00Z", "extensions": [["routingkey", "node-1"]],
        "datacontenttype": "application/octet-stream", "data_base64": "AP8Q"
    })));
    batch.push(event(json!({"subject": "audit", "id": "a8", "time": "2024-03-05T07:13:00Z", "extensions": [["routingkey", "node-1"]]})));

    let native_root = tempdir();
    let native = file_sink(native_root.path());
    deliver(&native, &batch[..3]).await.unwrap();
    deliver(&native, &batch[3..]).await.unwrap();

    let native_files = files_under(native_root.path());
    let paths: Vec<&PathBuf> = native_files.keys().collect();
    assert_eq!(
        paths,
        [
            Path::new("audit/_/2024/03/05/08/events.jsonl"),
            Path::new("audit/node-1/2024/03/05/07/events.jsonl"),
            Path::new("audit/node-1/2024/03/05/08/events.jsonl"),
            Path::new("audit/node-2/2024/03/05/07/events.jsonl"),
            Path::new("audit.login/node-1/2024/03/05/07/events.jsonl"),
        ]
    );
    assert_eq!(ids(&native_files[Path::new("audit/node-1/2024/03/05/07/events.jsonl")]), ["a1", "a6", "a7", "a8"]);
    assert_eq!(ids(&native_files[Path::new("audit/node-1/2024/03/05/08/events.jsonl")]), ["a3"]);
    let first = String::from_utf8(native_files[Path::new("audit/node-1/2024/03/05/07/events.jsonl")].clone()).unwrap();
    assert!(first.ends_with('\n') && first.lines().count() == 4, "{first}");
    let line: Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(
        line,
        json!({
            "specversion": "1.0", "id": "a1", "source": "/dss/node-1", "type": "dss.audit",
            "time": "2024-03-05T07:08:09Z", "datacontenttype": "application/json", "routingkey": "node-1",
            "data": {"user": "ada", "n": 1.5}
        })
    );
    let a6: Value = serde_json::from_str(first.lines().nth(1).unwrap()).unwrap();
    assert_eq!((&a6["id"], &a6["subject"], &a6["region"]), (&json!("a6"), &json!("user/ada"), &json!("eu")));
    assert_eq!(a6["data_base64"], "cGxhaW4KdGV4dA==");

    // The Wasm file-sink, given the same batch in the same two deliveries, writes the same files
    // byte for byte.
    let wasm_root = tempdir();
    let runtime = plugin_runtime();
    let wasm = wasm_file_sink(&runtime, wasm_root.path(), &[]).await;
    deliver(wasm.as_ref(), &batch[..3]).await.unwrap();
    deliver(wasm.as_ref(), &batch[3..]).await.unwrap();
    let wasm_files = files_under(wasm_root.path());
    assert_eq!(wasm_files.keys().collect::<Vec<_>>(), paths);
    for (path, bytes) in &native_files {
        assert_eq!(
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&wasm_files[path]),
            "{} differs between the native and the Wasm file sink",
            path.display()
        );
    }
}

#[tokio::test]
async fn file_sink_refuses_escaping_subjects_and_routing_keys_per_event_and_writes_nothing_outside_root() {
    let outer = tempdir();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let sink = file_sink(&root);
    let t = "2024-03-05T07:08:09Z";
    let batch = [
        audit("ok-1", "audit", Some("node-1"), t, json!(1)),
        audit("key-up", "audit", Some("../etc"), t, json!(2)),
        audit("subject-up", "../etc", Some("node-1"), t, json!(3)),
        audit("key-abs", "audit", Some("/etc"), t, json!(4)),
        audit("key-dots", "audit", Some(".."), t, json!(5)),
        audit("subject-hidden", ".ssh", None, t, json!(6)),
        audit("key-backslash", "audit", Some("..\\etc"), t, json!(7)),
        audit("ok-2", "audit", Some("node-1"), t, json!(8)),
    ];
    let err = deliver(&sink, &batch).await.unwrap_err();
    let DeliveryError::Partial(failures) = err else { panic!("expected a partial failure, got {err:?}") };
    let failed: Vec<(usize, bool)> = failures.iter().map(|f| (f.index, f.retryable)).collect();
    assert_eq!(failed, [(1, false), (2, false), (3, false), (4, false), (5, false), (6, false)]);
    assert_eq!(
        failures[0],
        EventFailure {
            index: 1,
            message: "event \"key-up\": routing key \"../etc\" is refused as a path component: it contains \"/\""
                .into(),
            retryable: false,
        }
    );
    assert!(failures[1].message.starts_with("event \"subject-up\": subject \"../etc\""), "{}", failures[1].message);

    // Only the two good events were written, and nothing outside the root.
    let everything = files_under(outer.path());
    assert_eq!(everything.keys().collect::<Vec<_>>(), [Path::new("root/audit/node-1/2024/03/05/07/events.jsonl")]);
    assert_eq!(ids(everything.values().next().unwrap()), ["ok-1", "ok-2"]);

    // A batch of nothing but refused events fails as a whole, permanently.
    let err = deliver(&sink, &batch[1..3]).await.unwrap_err();
    assert!(matches!(&err, DeliveryError::Permanent(m) if m.contains("key-up")), "{err:?}");
}

#[tokio::test]
async fn http_sink_posts_each_event_as_cloudevents_json_with_its_headers() {
    let server = destination(StatusCode::OK).await;
    let sink = http_sink(&format!(
        "url = \"{}?key=q\"\nbearer_token = \"t0ken\"\n[headers]\nx-tenant = \"acme\"",
        server.url()
    ));
    let batch: Vec<Event> = (0..3)
        .map(|i| audit(&format!("e{i}"), "orders", Some("eu"), "2024-03-05T07:08:09Z", json!({"n": i})))
        .collect();
    deliver(&sink, &batch).await.unwrap();

    let received = server.received();
    assert_eq!(received.len(), 3);
    for (request, event) in received.iter().zip(&batch) {
        assert_eq!(request.path, "/events");
        assert_eq!(header(request, "content-type"), Some("application/cloudevents+json"));
        assert_eq!(header(request, "authorization"), Some("Bearer t0ken"));
        assert_eq!(header(request, "x-tenant"), Some("acme"));
        assert_eq!(body(request), structured::encode(event));
    }
    deliver(&sink, &[]).await.unwrap();
    assert_eq!(server.received().len(), 3, "an empty batch sends nothing");
}

#[tokio::test]
async fn http_sink_posts_a_whole_batch_as_a_json_array() {
    let server = destination(StatusCode::NO_CONTENT).await;
    let sink = http_sink(&format!("url = \"{}\"\nmode = \"batch\"", server.url()));
    let batch: Vec<Event> =
        (0..4).map(|i| audit(&format!("e{i}"), "orders", None, "2024-03-05T07:08:09Z", json!({"n": i}))).collect();
    deliver(&sink, &batch).await.unwrap();

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(header(&received[0], "content-type"), Some("application/cloudevents-batch+json"));
    assert_eq!(header(&received[0], "authorization"), None);
    assert_eq!(body(&received[0]), Value::Array(batch.iter().map(structured::encode).collect()));
}

#[tokio::test]
async fn http_server_errors_are_retryable_and_stop_the_batch() {
    let batch: Vec<Event> =
        (0..3).map(|i| audit(&format!("e{i}"), "orders", None, "2024-03-05T07:08:09Z", json!(i))).collect();

    // A 500 on the first event: nothing delivered, the whole batch is retried, nothing more sent.
    let down = destination(StatusCode::INTERNAL_SERVER_ERROR).await;
    let err = deliver(&http_sink(&format!("url = \"{}\"", down.url())), &batch).await.unwrap_err();
    assert!(matches!(&err, DeliveryError::Retryable(m) if m.contains("answered 500 Internal Server Error")), "{err:?}");
    assert_eq!(down.received().len(), 1);
    let err = deliver(&http_sink(&format!("url = \"{}\"\nmode = \"batch\"", down.url())), &batch).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // A 503 on the second event: the first is delivered, the second and third come back retryable.
    let flaky =
        HttpDestination::start(vec![StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE], StatusCode::OK, Duration::ZERO)
            .await;
    let err = deliver(&http_sink(&format!("url = \"{}\"", flaky.url())), &batch).await.unwrap_err();
    let DeliveryError::Partial(failures) = err else { panic!("expected a partial failure, got {err:?}") };
    assert_eq!(failures.iter().map(|f| (f.index, f.retryable)).collect::<Vec<_>>(), [(1, true), (2, true)]);
    assert!(failures[0].message.contains("503"), "{}", failures[0].message);
    assert!(failures[1].message.contains("not sent"), "{}", failures[1].message);
    assert_eq!(flaky.received().len(), 2);

    // 429 and 408 are retryable too.
    for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::REQUEST_TIMEOUT] {
        let busy = destination(status).await;
        let err =
            deliver(&http_sink(&format!("url = \"{}\"\nmode = \"batch\"", busy.url())), &batch).await.unwrap_err();
        assert!(err.is_retryable(), "{status}: {err:?}");
    }
}

#[tokio::test]
async fn http_client_errors_are_permanent_for_their_event_only() {
    let batch: Vec<Event> =
        (0..3).map(|i| audit(&format!("e{i}"), "orders", None, "2024-03-05T07:08:09Z", json!(i))).collect();

    let strict = destination(StatusCode::BAD_REQUEST).await;
    let err = deliver(&http_sink(&format!("url = \"{}\"\nmode = \"batch\"", strict.url())), &batch).await.unwrap_err();
    assert!(matches!(&err, DeliveryError::Permanent(m) if m.contains("answered 400 Bad Request")), "{err:?}");

    // In event mode a 400 fails that event; the events after it are still sent and delivered.
    let picky =
        HttpDestination::start(vec![StatusCode::OK, StatusCode::BAD_REQUEST], StatusCode::OK, Duration::ZERO).await;
    let err = deliver(&http_sink(&format!("url = \"{}\"", picky.url())), &batch).await.unwrap_err();
    let DeliveryError::Partial(failures) = err else { panic!("expected a partial failure, got {err:?}") };
    assert_eq!(failures.len(), 1);
    assert_eq!((failures[0].index, failures[0].retryable), (1, false));
    assert!(failures[0].message.starts_with("event \"e1\": POST http://"), "{}", failures[0].message);
    assert_eq!(picky.received().len(), 3);
}

#[tokio::test]
async fn a_slow_or_missing_server_is_retryable() {
    let batch = [audit("e0", "orders", None, "2024-03-05T07:08:09Z", json!(0))];
    let slow = HttpDestination::start(Vec::new(), StatusCode::OK, Duration::from_secs(5)).await;
    let sink = http_sink(&format!("url = \"{}\"\ntimeout_ms = 200", slow.url()));
    let started = std::time::Instant::now();
    let err = deliver(&sink, &batch).await.unwrap_err();
    assert!(matches!(&err, DeliveryError::Retryable(m) if m.contains("timed out after 200 ms")), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "the timeout bounds the request: {:?}", started.elapsed());
    assert_eq!(slow.received().len(), 1, "the server saw the request");

    // Nothing listens on a port that was just freed.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let sink = http_sink(&format!("url = \"http://127.0.0.1:{port}/e\"\ntimeout_ms = 2000"));
    let err = deliver(&sink, &batch).await.unwrap_err();
    assert!(matches!(&err, DeliveryError::Retryable(m) if m.contains("cannot connect")), "{err:?}");
}
