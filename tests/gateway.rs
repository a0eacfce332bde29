//! The NATS gateway end to end: the real binary with `[service]` on, driven by the real nats-py
//! client and by a raw protocol client over TCP.

mod common;

use std::time::Duration;

use common::nats::{RawClient, nats_py};
use common::router::{RouterProcess, eventually, json_lines_under};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// A router with the gateway on port 0, `orders.>` routed to file sink `files`; `service` adds keys
/// to `[service]` and `extra` is appended.
fn router(service: &str, extra: &str) -> RouterProcess {
    RouterProcess::start(&format!(
        r#"
[service]
host = "127.0.0.1"
port = 0
max_payload = "64KiB"
{service}
[http]
listen = "127.0.0.1:0"
[plugins]
dir = "{{dir}}/plugins"
[[route]]
name = "orders"
subject = "orders.>"
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{{dir}}/files"
{extra}"#
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_py_publishes_subscribes_in_queue_groups_and_makes_requests() {
    let router = router("", "");
    let url = router.nats_url();

    let pubsub = nats_py(&url, "pubsub", None);
    let got = pubsub["got"].as_array().unwrap();
    assert_eq!(got.len(), 10, "{pubsub}");
    assert_eq!(got[0], json!({"subject": "greet.n0", "data": "hello 0", "headers": null}));
    assert_eq!(got[9]["headers"], json!({"X-Trace": "abc"}), "headers arrive as sent");

    let queue = nats_py(&url, "queue_group", None);
    let (a, b) = (queue["a"].as_u64().unwrap(), queue["b"].as_u64().unwrap());
    assert_eq!(a + b, 100, "each message to one member: {queue}");
    assert!(a > 0 && b > 0, "both members get work: {queue}");

    let request = nats_py(&url, "request_reply", None);
    assert_eq!(request, json!({"reply": "PING", "no_responders": true}));

    let payload = nats_py(&url, "max_payload", None);
    assert_eq!(payload["max_payload"], 64 * 1024);
    assert!(payload["raised"].as_str().is_some_and(|e| e.contains("MaxPayload")), "{payload}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_messages_enter_routes_and_http_events_reach_nats_subscribers() {
    let router = router("", "");
    let mut client = RawClient::connect(router.nats.unwrap()).await;
    client.send(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB orders.> 1\r\nPING\r\n").await;
    client.read_until("PONG\r\n", WAIT).await;

    let event = json!({"specversion": "1.0", "id": "h1", "source": "/shop", "type": "order.created", "data": {"n": 1}});
    let response = reqwest::Client::new()
        .post(router.url("/v1/events/orders.eu"))
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let message = client.read_until("{\"n\":1}\r\n", WAIT).await;
    assert!(message.starts_with("HMSG orders.eu 1 "), "{message}");
    assert!(message.contains("ce-id: h1\r\n") && message.contains("content-type: application/json\r\n"), "{message}");

    client.send(b"PUB orders.us 11\r\nhello world\r\n").await;
    client.read_until("MSG orders.us 1 11\r\nhello world\r\n", WAIT).await;
    let files = router.path("files");
    let lines = eventually("both events on disk", WAIT, || {
        let lines = json_lines_under(&files);
        (lines.len() == 2).then_some(lines)
    })
    .await;
    let nats_event = lines.iter().map(|(_, e)| e).find(|e| e["source"] == "/eventyard/nats").expect("the NATS event");
    assert_eq!(nats_event["data_base64"], "aGVsbG8gd29ybGQ=");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_the_listener_limit_and_malformed_input() {
    let router = router("listener_limit = 3\n[service.auth]\ntokens = [\"s3cret\"]", "");
    let url = router.nats_url();
    assert_eq!(nats_py(&url, "connect_only", Some("s3cret"))["connected"], true);
    let wrong = nats_py(&url, "connect_only", Some("wrong"));
    assert_eq!(wrong["connected"], false);
    assert!(wrong.to_string().contains("Authorization Violation"), "{wrong}");

    let addr = router.nats.unwrap();
    let mut first = RawClient::connect(addr).await;
    first.send(b"CONNECT {\"verbose\":false,\"auth_token\":\"s3cret\"}\r\nPING\r\n").await;
    first.read_until("PONG\r\n", WAIT).await;
    let mut unauthenticated = RawClient::connect(addr).await;
    unauthenticated.send(b"SUB x 1\r\n").await;
    assert!(unauthenticated.read_to_close(WAIT).await.contains("-ERR 'Authorization Violation'"));
    let mut second = RawClient::connect(addr).await;
    let _third = RawClient::connect(addr).await;
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut refused = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut over, &mut refused).await.unwrap();
    assert!(refused.contains("-ERR 'maximum connections exceeded'"), "{refused}");

    second.send(b"CONNECT {\"verbose\":false,\"auth_token\":\"s3cret\"}\r\nPUB x 3\r\ntoo long\r\n").await;
    assert!(second.read_to_close(WAIT).await.contains("-ERR 'Unknown Protocol Operation'"));
    first.send(b"PING\r\n").await;
    first.read_until("PONG\r\n", WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_consumer_is_disconnected_and_the_rest_keep_flowing() {
    let router = router("max_pending = \"256KiB\"", "");
    let addr = router.nats.unwrap();
    let mut slow = RawClient::connect(addr).await;
    slow.send(b"CONNECT {\"verbose\":false}\r\nSUB flood 1\r\nPING\r\n").await;
    slow.read_until("PONG\r\n", WAIT).await;
    let mut publisher = RawClient::connect(addr).await;
    publisher.send(b"CONNECT {\"verbose\":false}\r\n").await;
    let message = format!("PUB flood 16384\r\n{}\r\n", "x".repeat(16384));
    // Far more than the slow client's pending limit and its socket buffers can hold.
    for _ in 0..4096 {
        publisher.send(message.as_bytes()).await;
    }
    publisher.send(b"PING\r\n").await;
    publisher.read_until("PONG\r\n", Duration::from_secs(30)).await;
    // The slow client is cut off (its `-ERR` goes out only if its socket has room for it).
    slow.read_to_close(Duration::from_secs(30)).await;
    let metrics = reqwest::get(router.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("eventyard_gateway_slow_consumers_total 1"), "{metrics}");
}

/// Seed 001's accounts: users `a` (account USERS, may not publish to `secret.>`), `b` (account
/// OTHER) and `admin` (the system account, bcrypt password `changeit`).
const ACCOUNTS: &str = r#"statsz_interval_ms = 200
[service.auth]
system_account = "SYS"
[[service.auth.users]]
user = "a"
password = "a"
account = "USERS"
permissions = { publish = { deny = ["secret.>"] } }
[[service.auth.users]]
user = "b"
password = "b"
account = "OTHER"
[[service.auth.users]]
user = "admin"
password = "$2b$04$2yvbzhPFjp./whAkBP94qe9FEkduJm1/DICL3RwiGXCCvdvOfbyP."
account = "SYS"
"#;

fn with_user(router: &RouterProcess, user: &str) -> String {
    format!("nats://{user}:{user}@{}", router.nats.expect("the gateway is on"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_account_sees_connects_disconnects_statsz_and_answers_ping() {
    let router = router(ACCOUNTS, "");
    let admin = format!("nats://admin:changeit@{}", router.nats.unwrap());
    let result = nats_py(&admin, "system_events", Some(&with_user(&router, "a")));
    let seen = result["seen"].as_array().unwrap();
    let subjects: Vec<&str> = seen.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    let connect = seen.iter().find(|e| e["subject"] == "$SYS.ACCOUNT.USERS.CONNECT").expect("a CONNECT event");
    assert_eq!(connect["data"]["type"], "io.nats.server.advisory.v1.client_connect");
    assert_eq!(connect["data"]["client"]["name"], "seed-001-user");
    assert_eq!(connect["data"]["client"]["user"], "a");
    let disconnect = seen.iter().find(|e| e["subject"] == "$SYS.ACCOUNT.USERS.DISCONNECT").expect("a DISCONNECT");
    assert_eq!(disconnect["data"]["received"]["msgs"], 1, "{disconnect}");
    assert!(subjects.contains(&"$SYS.SERVER.ACCOUNT.USERS.CONNS"), "{subjects:?}");
    assert!(subjects.iter().any(|s| s.starts_with("$SYS.SERVER.") && s.ends_with(".STATSZ")), "{subjects:?}");
    assert!(result["ping"]["statsz"]["connections"].as_u64().unwrap() >= 1, "{result}");
    assert!(!subjects.contains(&"foo"), "application messages stay out of the system account");

    let wrong = nats_py(&format!("nats://a:wrong@{}", router.nats.unwrap()), "connect_only", None);
    assert_eq!(wrong["connected"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_are_enforced_and_accounts_are_isolated() {
    let router = router(ACCOUNTS, "");
    let denied = nats_py(&with_user(&router, "a"), "permissions", None);
    // nats-py reports server errors in lower case.
    let errors = denied["errors"].to_string().to_lowercase();
    assert!(errors.contains(r#"permissions violation for publish to \"secret.plans\""#), "{errors}");
    assert!(errors.contains(r#"permissions violation for subscription to \"$sys.>\""#), "{errors}");

    let got = nats_py(&with_user(&router, "a"), "isolation", Some(&with_user(&router, "b")));
    assert_eq!(got, json!({"a": ["from a"], "b": ["from b"]}));
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_certificates_from_the_ca_only() {
    let certs = common::tempdir();
    let pki = common::tls::pki(certs.path());
    let router = router(
        "",
        &format!(
            "[tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\nroot_ca_path = \"{}\"\n",
            pki.server.0.display(),
            pki.server.1.display(),
            pki.ca.display()
        ),
    );
    let url = format!("tls://127.0.0.1:{}", router.nats.expect("the gateway is on").port());
    let connect = |(cert, key): &(std::path::PathBuf, std::path::PathBuf)| {
        let paths = json!({"ca": pki.ca, "cert": cert, "key": key}).to_string();
        nats_py(&url, "tls_connect", Some(&paths))
    };
    assert_eq!(connect(&pki.client), json!({"connected": true, "data": "over tls"}));
    for refused in [&pki.untrusted, &pki.expired] {
        let result = connect(refused);
        assert_eq!(result["connected"], false, "{result}");
    }
    let mut plain = RawClient::connect(router.nats.expect("the gateway is on")).await;
    plain.send(b"CONNECT {}\r\nPING\r\n").await;
    assert!(!plain.read_to_close(WAIT).await.contains("PONG"), "a client that skips TLS gets nowhere");
}
