//! The router end to end: the real `eventyard serve` binary, real HTTP requests, real files and a
//! real HTTP destination. Covers the seed 002 flow, the three CloudEvents modes, bad input,
//! overflow policies, retries and dead letters, and a SIGTERM under load.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use common::http_server::HttpDestination;
use common::router::{RouterProcess, eventually, json_lines_under};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().expect("client builds")
}

/// A structured event with a time and, optionally, a routing key.
fn ce(id: &str, routing_key: Option<&str>, data: Value) -> Value {
    let mut event = json!({
        "specversion": "1.0", "id": id, "source": "/tests", "type": "test.event",
        "time": "2024-03-05T07:08:09Z", "data": data,
    });
    if let Some(key) = routing_key {
        event["routingkey"] = json!(key);
    }
    event
}

async fn post(
    router: &RouterProcess,
    subject: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client()
        .post(router.url(&format!("/v1/events/{subject}")))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the router answers")
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_002_events_reach_their_destinations_by_topic_routing_key_and_hour() {
    let router = RouterProcess::start(
        r#"
[plugins]
dir = "{dir}/plugins"
cache_dir = ""
[http]
listen = "127.0.0.1:0"

[[route]]
name = "audit"
subject = "audit"
routing_key = ["node-*"]
sinks = ["audit-files"]

[[route]]
name = "billing"
subject = "billing.>"
sinks = ["billing-files"]

[sinks.audit-files]
kind = "file"
root = "{dir}/audit"

[sinks.billing-files]
kind = "file"
root = "{dir}/billing"
"#,
    );
    // Structured: routed by routing key.
    let ok = post(&router, "audit", STRUCTURED, ce("a1", Some("node-1"), json!({"n": 1})).to_string()).await;
    assert_eq!(ok.status(), 202);
    assert_eq!(ok.json::<Value>().await.unwrap(), json!({"accepted": 1}));
    let other = post(&router, "audit", STRUCTURED, ce("a2", Some("laptop"), json!({"n": 2})).to_string()).await;
    assert_eq!(other.status(), 202, "accepted, though no route takes its routing key");
    // Batched: three events in one request.
    let batch = json!([ce("b1", Some("eu"), json!(1)), ce("b2", None, json!(2)), ce("b3", Some("eu"), json!(3))]);
    assert_eq!(post(&router, "billing.invoices", BATCH, batch.to_string()).await.status(), 202);
    // Binary: attributes in ce- headers, the body is the data.
    let binary = client()
        .post(router.url("/v1/events/billing.refunds"))
        .header("content-type", "text/plain")
        .header("ce-specversion", "1.0")
        .header("ce-id", "c1")
        .header("ce-source", "/tests")
        .header("ce-type", "test.event")
        .header("ce-time", "2024-03-05T08:00:00Z")
        .header("ce-routingkey", "eu")
        .body("refund of 5 %")
        .send()
        .await
        .unwrap();
    assert_eq!(binary.status(), 202);

    let audit = router.path("audit");
    let lines =
        eventually("the audit event on disk", WAIT, || Some(json_lines_under(&audit)).filter(|l| !l.is_empty())).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, "audit/node-1/2024/03/05/07/events.jsonl");
    assert_eq!(lines[0].1["id"], "a1");
    assert_eq!(lines[0].1["data"], json!({"n": 1}));

    let billing = router.path("billing");
    let lines =
        eventually("four billing events on disk", WAIT, || Some(json_lines_under(&billing)).filter(|l| l.len() == 4))
            .await;
    let files: BTreeSet<&str> = lines.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        files,
        BTreeSet::from([
            "billing.invoices/_/2024/03/05/07/events.jsonl",
            "billing.invoices/eu/2024/03/05/07/events.jsonl",
            "billing.refunds/eu/2024/03/05/08/events.jsonl",
        ])
    );
    let refund = lines.iter().find(|(_, e)| e["id"] == "c1").unwrap();
    assert_eq!(refund.1["data_base64"], "cmVmdW5kIG9mIDUgJQ==", "text/plain data is kept byte for byte");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_answered_clearly_and_good_events_still_land() {
    let router = RouterProcess::start(
        r#"
[http]
listen = "127.0.0.1:0"
max_body = "1KiB"
[[route]]
name = "all"
subject = ">"
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{dir}/files"
"#,
    );
    let bad = |status: u16, field: &'static str| {
        move |(code, body): (u16, Value)| {
            assert_eq!(code, status, "{body}");
            if !field.is_empty() {
                assert_eq!(body["field"], field, "{body}");
            }
        }
    };
    async fn send(router: &RouterProcess, subject: &str, content_type: &str, body: String) -> (u16, Value) {
        let response = post(router, subject, content_type, body).await;
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(Value::Null))
    }
    bad(400, "")(send(&router, "a", STRUCTURED, "{not json".into()).await);
    bad(400, "/id")(
        send(&router, "a", STRUCTURED, json!({"specversion": "1.0", "source": "/s", "type": "t"}).to_string()).await,
    );
    bad(400, "")(send(&router, "a", BATCH, ce("x", None, json!(1)).to_string()).await);
    bad(400, "")(send(&router, "a..b", STRUCTURED, ce("x", None, json!(1)).to_string()).await);
    bad(400, "/routingkey")(send(&router, "a", STRUCTURED, ce("x", Some("../etc"), json!(1)).to_string()).await);
    bad(400, "")(send(&router, "a%2Fetc", STRUCTURED, ce("x", None, json!(1)).to_string()).await);
    bad(415, "")(send(&router, "a", "application/cloudevents+xml", "<event/>".into()).await);
    let (code, _) = send(&router, "a", STRUCTURED, ce("x", None, json!("y".repeat(2048))).to_string()).await;
    assert_eq!(code, 413);

    assert_eq!(send(&router, "a", STRUCTURED, ce("good", Some("k"), json!(1)).to_string()).await.0, 202);
    let files = router.path("files");
    let lines =
        eventually("the good event on disk", WAIT, || Some(json_lines_under(&files)).filter(|l| !l.is_empty())).await;
    assert_eq!(lines.len(), 1, "only the good event was accepted: {lines:?}");
    assert_eq!(lines[0].1["id"], "good");
}

#[test]
fn an_unknown_config_key_stops_the_router_before_it_starts() {
    let dir = common::tempdir();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[http]\nlisten = \"127.0.0.1:0\"\nlisten_port = 3\n").unwrap();
    let (code, _, err) = common::run_eventyard(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 3") && err.contains("listen_port"), "{err}");
}

/// A router whose only sink posts to `destination`, one event per batch, with `sink_settings`.
fn router_to(destination: &HttpDestination, sink_settings: &str) -> RouterProcess {
    RouterProcess::start(&format!(
        r#"
[http]
listen = "127.0.0.1:0"
[[route]]
name = "all"
subject = ">"
sinks = ["hook"]
[[route]]
name = "dlq"
subject = "$DLQ.>"
sinks = ["dead"]
[sinks.hook]
kind = "http"
url = "{url}"
batch_size = 1
linger_ms = 0
{sink_settings}
[sinks.dead]
kind = "file"
root = "{{dir}}/dead"
"#,
        url = destination.url()
    ))
}

/// Posts event `{prefix}0` and waits until `destination` holds it in flight, so that the queue
/// behind it is empty: the next `queue_size` events queue and the rest overflow.
async fn one_in_flight(router: &RouterProcess, destination: &HttpDestination, prefix: &str) {
    let before = destination.received().len();
    assert_eq!(
        post(router, "orders", STRUCTURED, ce(&format!("{prefix}0"), None, json!(0)).to_string()).await.status(),
        202
    );
    eventually("the first event in flight", WAIT, || (destination.received().len() > before).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_queues_follow_their_overflow_policy() {
    // The destination takes 3 s per request: one event in flight, then the queue of 2 fills.
    let slow = HttpDestination::start(vec![], StatusCode::OK, Duration::from_secs(3)).await;

    let router = router_to(&slow, "queue_size = 2\noverflow = \"reject\"");
    one_in_flight(&router, &slow, "r").await;
    let mut statuses = Vec::new();
    for i in 1..6 {
        let response = post(&router, "orders", STRUCTURED, ce(&format!("r{i}"), None, json!(i)).to_string()).await;
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"), "429 says when to retry");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 429, 429, 429], "2 queued behind the one in flight");
    drop(router);

    let router = router_to(&slow, "queue_size = 2\noverflow = \"block\"\nblock_timeout_ms = 300");
    one_in_flight(&router, &slow, "b").await;
    for i in 1..3 {
        assert_eq!(
            post(&router, "orders", STRUCTURED, ce(&format!("b{i}"), None, json!(i)).to_string()).await.status(),
            202
        );
    }
    let started = std::time::Instant::now();
    let blocked = post(&router, "orders", STRUCTURED, ce("b3", None, json!(3)).to_string()).await;
    assert_eq!(blocked.status(), 429);
    assert!(started.elapsed() >= Duration::from_millis(300), "block waited {:?}", started.elapsed());
    drop(router);

    for policy in ["drop_oldest", "drop_newest"] {
        let router = router_to(&slow, &format!("queue_size = 2\noverflow = \"{policy}\""));
        one_in_flight(&router, &slow, "d").await;
        for i in 1..6 {
            assert_eq!(
                post(&router, "orders", STRUCTURED, ce(&format!("d{i}"), None, json!(i)).to_string()).await.status(),
                202
            );
        }
        let metrics = client().get(router.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let dropped = format!("eventyard_queue_dropped_total{{sink=\"hook\",policy=\"{policy}\"}} 3");
        assert!(metrics.contains(&dropped), "{policy}: {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_deliveries_are_retried_then_dead_lettered_with_their_reason() {
    // 500 then 200: delivered on the second attempt.
    let flaky = HttpDestination::start(vec![StatusCode::INTERNAL_SERVER_ERROR], StatusCode::OK, Duration::ZERO).await;
    let router = router_to(&flaky, "[sinks.hook.retry]\ninitial_backoff_ms = 10");
    assert_eq!(post(&router, "orders", STRUCTURED, ce("f1", None, json!(1)).to_string()).await.status(), 202);
    eventually("two requests for one event", WAIT, || (flaky.received().len() == 2).then_some(())).await;
    let bodies: Vec<Value> = flaky.received().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert!(bodies.iter().all(|b| b["id"] == "f1"));
    drop(router);

    // Always 500: three attempts, then a dead letter with the reason.
    let broken = HttpDestination::start(vec![], StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO).await;
    let router = router_to(&broken, "[sinks.hook.retry]\nmax_attempts = 3\ninitial_backoff_ms = 10");
    assert_eq!(post(&router, "orders", STRUCTURED, ce("x1", Some("eu"), json!(1)).to_string()).await.status(), 202);
    let dead = router.path("dead");
    let lines = eventually("a dead letter", WAIT, || Some(json_lines_under(&dead)).filter(|l| !l.is_empty())).await;
    assert_eq!(broken.received().len(), 3);
    let (file, letter) = &lines[0];
    assert!(file.starts_with("$DLQ.hook/eu/"), "{file}");
    assert_eq!(letter["id"], "x1");
    assert_eq!(letter["deadlettersink"], "hook");
    assert_eq!(letter["deadletterattempts"], "3");
    assert_eq!(letter["deadlettersubject"], "orders");
    assert!(letter["deadletterreason"].as_str().unwrap().contains("500"), "{letter}");

    // A permanent failure is dead-lettered at once.
    let refusing = HttpDestination::start(vec![], StatusCode::BAD_REQUEST, Duration::ZERO).await;
    let router = router_to(&refusing, "");
    assert_eq!(post(&router, "orders", STRUCTURED, ce("p1", None, json!(1)).to_string()).await.status(), 202);
    let dead = router.path("dead");
    eventually("a dead letter", WAIT, || Some(json_lines_under(&dead)).filter(|l| !l.is_empty())).await;
    assert_eq!(refusing.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_loses_no_accepted_event() {
    let mut router = RouterProcess::start(
        r#"
[http]
listen = "127.0.0.1:0"
[[route]]
name = "all"
subject = ">"
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{dir}/files"
"#,
    );
    let url = router.url("/v1/events/load.test");
    let publisher = tokio::spawn(async move {
        let client = client();
        let mut acknowledged = Vec::new();
        for round in 0..10_000 {
            let batch: Vec<Value> = (0..50).map(|i| ce(&format!("{round}-{i}"), None, json!(i))).collect();
            let sent =
                client.post(&url).header("content-type", BATCH).body(Value::Array(batch).to_string()).send().await;
            match sent {
                Ok(response) if response.status() == 202 => {
                    acknowledged.extend((0..50).map(|i| format!("{round}-{i}")))
                }
                // Shutting down: refused, or the listener is gone. Nothing acknowledged is lost.
                _ => break,
            }
        }
        acknowledged
    });
    let files = router.path("files");
    eventually("events flowing", WAIT, || (json_lines_under(&files).len() > 500).then_some(())).await;
    let code = router.terminate(WAIT).await;
    let acknowledged = publisher.await.unwrap();
    assert_eq!(code, 0, "logs:\n{}", router.logs().join("\n"));
    assert!(acknowledged.len() >= 500);
    let written: BTreeSet<String> =
        json_lines_under(&files).into_iter().map(|(_, e)| e["id"].as_str().unwrap().to_owned()).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !written.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_guard_http_ingest() {
    let mut router = RouterProcess::start(
        r#"
[http]
listen = "127.0.0.1:0"
[http.auth]
tokens = ["s3cret"]
[[route]]
name = "all"
subject = ">"
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{dir}/files"
"#,
    );
    let send = |token: Option<&'static str>| {
        let mut request = client()
            .post(router.url("/v1/events/a"))
            .header("content-type", STRUCTURED)
            .body(ce("t1", None, json!(1)).to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(None).await, 401);
    assert_eq!(send(Some("wrong")).await, 403);
    assert_eq!(send(Some("s3cret")).await, 202);
    assert!(router.logs().iter().all(|l| !l.contains("s3cret")), "the token never reaches the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasm_auth_policy_decides_who_publishes_where_and_handlers_run_in_the_chain() {
    let plugins = common::tempdir();
    std::fs::copy(common::plugin("token-auth"), plugins.path().join("token_auth.wasm")).unwrap();
    std::fs::copy(common::plugin("severity-map"), plugins.path().join("severity_map.wasm")).unwrap();
    let router = RouterProcess::start(&format!(
        r#"
[plugins]
dir = "{plugins}"
cache_dir = ""
[plugin.token-auth]
# The global account ("$G") is where routes are; a grant of another account publishes into that
# account's own subjects, which no route of the global account sees.
config = {{ tokens = [
    {{ token = "feed", account = "$G", publish = {{ allow = ["feed.>"] }} }},
    {{ token = "team", account = "TEAM", publish = {{ allow = ["feed.>"] }} }},
    {{ token = "ops", account = "SYS", publish = {{ allow = [] }} }},
] }}
[admin]
policy = "token-auth"
account = "SYS"
[http]
listen = "127.0.0.1:0"
[http.auth]
policy = "token-auth"
[[route]]
name = "feed"
subject = "feed.>"
handlers = ["severity-map"]
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{{dir}}/files"
"#,
        plugins = plugins.path().display()
    ));
    let send = |subject: &'static str, token: Option<&'static str>| {
        let mut request = client()
            .post(router.url(&format!("/v1/events/{subject}")))
            .header("content-type", STRUCTURED)
            .body(ce("s1", None, json!({"severity": "Important"})).to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send("feed.reports", None).await, 401);
    assert_eq!(send("feed.reports", Some("nope")).await, 403);
    assert_eq!(send("admin.reports", Some("feed")).await, 403, "the grant allows feed.> only");
    assert_eq!(send("feed.reports", Some("team")).await, 202, "taken, into account TEAM");
    assert_eq!(send("feed.reports", Some("feed")).await, 202);
    // The same policy names administrators: those it grants the `[admin] account`.
    for (token, status) in [("ops", 200), ("feed", 403), ("nope", 403)] {
        let reload = client().post(router.url("/v1/admin/reload")).bearer_auth(token).send().await.unwrap();
        assert_eq!(reload.status(), status, "admin reload with token {token}");
    }

    let files = router.path("files");
    let lines = eventually("the mapped event", WAIT, || Some(json_lines_under(&files)).filter(|l| !l.is_empty())).await;
    assert_eq!(lines[0].1["data"], json!({"severity": "Major"}), "severity-map ran in the route's chain");

    // The sink counts a delivery once its write returned, a moment after the line is readable.
    let delivered = r#"eventyard_sink_delivered_total{sink="files"}"#;
    common::eventually_async("the delivery counted", WAIT, || async {
        (router.metric(delivered).await == 1).then_some(())
    })
    .await;
    let metrics = client().get(router.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for expected in [
        "eventyard_route_matched_total{route=\"feed\"} 1",
        "eventyard_plugin_calls_total{plugin=\"severity-map\"} 1",
        "eventyard_sink_delivered_total{sink=\"files\"} 1",
        "eventyard_queue_depth_events{sink=\"files\"} 0",
        "eventyard_sink_delivery_seconds_count{sink=\"files\"} 1",
    ] {
        assert!(metrics.contains(expected), "{expected} missing from:\n{metrics}");
    }
    assert_eq!(client().get(router.url("/readyz")).send().await.unwrap().status(), 200);
}
