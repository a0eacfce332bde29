//! The NATS gateway end to end: the real binary with `[service]` on, driven by the real nats-py
//! and nats.js clients and by a raw protocol client over TCP.

use crate::common;

use std::time::Duration;

use common::nats::{Client, RawClient};
use common::router::{RouterProcess, eventually, json_lines_under};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// A router with the gateway on port 0, `orders.>` routed to file sink `files`; `service` adds keys
/// to `[service]` and `extra` is appended.
fn router(service: &str, extra: &str) -> RouterProcess {
    router_with_plugins(service, extra, &[])
}

/// [`router`] with first-party `plugins` in its plugin directory.
fn router_with_plugins(service: &str, extra: &str, plugins: &[(&str, &str)]) -> RouterProcess {
    RouterProcess::start_with_plugins(
        &format!(
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
        ),
        plugins,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn real_clients_publish_subscribe_in_queue_groups_and_make_requests() {
    let router = router("", "");
    let url = router.nats_url();
    for client in Client::BOTH {
        let pubsub = client.run(&url, "pubsub", None);
        let got = pubsub["got"].as_array().unwrap();
        assert_eq!(got.len(), 10, "{client:?}: {pubsub}");
        assert_eq!(got[0], json!({"subject": "greet.n0", "data": "hello 0", "headers": null}), "{client:?}");
        assert_eq!(got[9]["headers"], json!({"X-Trace": "abc"}), "{client:?}: headers arrive as sent");

        let queue = client.run(&url, "queue_group", None);
        let (a, b) = (queue["a"].as_u64().unwrap(), queue["b"].as_u64().unwrap());
        assert_eq!(a + b, 100, "{client:?}: each message to one member: {queue}");
        assert!(a > 0 && b > 0, "{client:?}: both members get work: {queue}");

        let request = client.run(&url, "request_reply", None);
        assert_eq!(request, json!({"reply": "PING", "no_responders": true}), "{client:?}");

        // nats-py raises MaxPayloadError, nats.js MAX_PAYLOAD_EXCEEDED.
        let payload = client.run(&url, "max_payload", None);
        assert_eq!(payload["max_payload"], 64 * 1024, "{client:?}");
        let raised = payload["raised"].as_str().unwrap_or_default().to_lowercase().replace('_', "");
        assert!(raised.contains("maxpayload"), "{client:?}: {payload}");
    }
}

/// Also: a plain message no route takes reaches NATS subscribers as it came, and is counted as
/// unrouted.
#[tokio::test(flavor = "multi_thread")]
async fn nats_messages_enter_routes_and_http_events_reach_nats_subscribers() {
    let router = router("", "");
    let mut client = RawClient::connect(router.nats.unwrap()).await;
    client.send(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB orders.> 1\r\nSUB misc.> 2\r\nPING\r\n").await;
    client.read_until("PONG\r\n", WAIT).await;

    let event = json!({"specversion": "1.0", "id": "h1", "source": "/shop", "type": "order.created", "data": {"n": 1}});
    assert_eq!(router.post_event("orders.eu", &event).await, 202);
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

    client.send(b"PUB misc.x _INBOX.r 2\r\nhi\r\n").await;
    client.read_until("MSG misc.x 2 _INBOX.r 2\r\nhi\r\n", WAIT).await;
    assert_eq!(router.metric(r#"eventyard_unrouted_events_total{family="misc"}"#).await, 1);
    assert_eq!(json_lines_under(&files).len(), 2, "no route took it");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_the_listener_limit_and_malformed_input() {
    let router = router("listener_limit = 3\n[service.auth]\ntokens = [\"s3cret\"]", "");
    let url = router.nats_url();
    for client in Client::BOTH {
        assert_eq!(client.run(&url, "connect_only", Some("s3cret"))["connected"], true, "{client:?}");
        let wrong = client.run(&url, "connect_only", Some("wrong"));
        assert_eq!(wrong["connected"], false, "{client:?}");
        assert!(wrong.to_string().contains("Authorization Violation"), "{client:?}: {wrong}");
    }

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

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_answering_pings_is_closed_as_stale() {
    let router = router("ping_interval_ms = 100\nmax_pings_out = 2", "");
    let addr = router.nats.unwrap();
    let mut silent = RawClient::connect(addr).await;
    silent.send(b"CONNECT {\"verbose\":false}\r\n").await;
    let mut alive = RawClient::connect(addr).await;
    alive.send(b"CONNECT {\"verbose\":false}\r\n").await;
    silent.read_until("PING\r\n", WAIT).await;
    // Far past two unanswered PINGs, the client that answers stays.
    for _ in 0..6 {
        alive.read_until("PING\r\n", WAIT).await;
        alive.send(b"PONG\r\n").await;
    }
    assert!(silent.read_to_close(WAIT).await.ends_with("-ERR 'Stale Connection'\r\n"));
    alive.send(b"PING\r\n").await;
    alive.read_until("PONG\r\n", WAIT).await;
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

/// Checks that `client`'s `permissions` scenario was refused both its publish to `secret.plans` and
/// its subscription to `$SYS.>`. nats-py reports server errors in lower case; nats.js as
/// `PERMISSIONS_VIOLATION: publish to "..."`.
fn assert_permission_errors(client: Client, result: &serde_json::Value) {
    let errors = result["errors"].to_string().to_lowercase().replace('_', " ");
    assert!(errors.contains("permissions violation"), "{client:?}: {errors}");
    assert!(errors.contains(r#"publish to \"secret.plans\""#), "{client:?}: {errors}");
    assert!(errors.contains(r#"subscription to \"$sys.>\""#), "{client:?}: {errors}");
}

fn with_user(router: &RouterProcess, user: &str) -> String {
    format!("nats://{user}:{user}@{}", router.nats.expect("the gateway is on"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_account_sees_every_system_event_and_its_requests_are_answered() {
    let router = router(ACCOUNTS, common::router::ADMIN);
    let admin = format!("nats://admin:changeit@{}", router.nats.unwrap());
    let extra = json!({
        "user": with_user(&router, "a"),
        "wrong": format!("nats://a:wrong@{}", router.nats.unwrap()),
        "reload": router.url("/v1/admin/reload"),
        "admin_token": common::router::ADMIN_TOKEN,
        "config": router.path("eventyard.toml"),
    });
    let result = Client::Py.run(&admin, "system_events", Some(&extra.to_string()));
    let seen = result["seen"].as_array().unwrap();
    let subject_of = |e: &serde_json::Value| e["subject"].as_str().unwrap().to_owned();
    let subjects: Vec<String> = seen.iter().map(subject_of).collect();
    let connect = seen.iter().find(|e| e["subject"] == "$SYS.ACCOUNT.USERS.CONNECT").expect("a CONNECT event");
    assert_eq!(connect["data"]["type"], "io.nats.server.advisory.v1.client_connect");
    assert_eq!(connect["data"]["client"]["name"], "seed-001-user");
    assert_eq!(connect["data"]["client"]["user"], "a");
    let disconnect = seen.iter().find(|e| e["subject"] == "$SYS.ACCOUNT.USERS.DISCONNECT").expect("a DISCONNECT");
    // Counted from the client's side, as nats-server does: the one message it published was sent.
    assert_eq!(disconnect["data"]["sent"]["msgs"], 1, "{disconnect}");
    assert_eq!(disconnect["data"]["received"]["msgs"], 0, "{disconnect}");
    assert!(disconnect["data"]["client"]["stop"].is_string(), "{disconnect}");
    assert!(subjects.iter().any(|s| s == "$SYS.SERVER.ACCOUNT.USERS.CONNS"), "{subjects:?}");
    assert!(subjects.iter().any(|s| s.starts_with("$SYS.SERVER.") && s.ends_with(".STATSZ")), "{subjects:?}");
    assert!(result["ping"]["statsz"]["connections"].as_u64().unwrap() >= 1, "{result}");
    assert_eq!(result["statsz"]["server"]["id"], result["ping"]["server"]["id"], "{result}");
    assert!(result["statsz"]["statsz"]["received"]["msgs"].as_u64().unwrap() >= 1, "{result}");
    let auth_error = seen.iter().find(|e| subject_of(e).ends_with(".CLIENT.AUTH.ERR")).expect("an AUTH.ERR event");
    assert_eq!(auth_error["data"]["client"]["user"], "a", "{auth_error}");
    let reload = seen.iter().find(|e| e["subject"] == "$SYS.EVENTYARD.RELOAD").expect("the reload report");
    assert_eq!(reload["data"]["kind"], "config", "{reload}");
    assert!(!subjects.iter().any(|s| s == "foo"), "application messages stay out of the system account");

    for client in Client::BOTH {
        let wrong = client.run(&format!("nats://a:wrong@{}", router.nats.unwrap()), "connect_only", None);
        assert_eq!(wrong["connected"], false, "{client:?}");
        let right = client.run(&with_user(&router, "b"), "connect_only", None);
        assert_eq!(right["connected"], true, "{client:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_are_enforced_and_accounts_are_isolated() {
    let router = router(ACCOUNTS, "");
    for client in Client::BOTH {
        let denied = client.run(&with_user(&router, "a"), "permissions", None);
        assert_permission_errors(client, &denied);
    }

    let got = Client::Py.run(&with_user(&router, "a"), "isolation", Some(&with_user(&router, "b")));
    assert_eq!(got, json!({"a": ["from a"], "b": ["from b"]}));
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_certificates_from_the_ca_only_and_can_name_the_user() {
    let certs = common::tempdir();
    let pki = common::tls::pki(certs.path());
    let tls = |more: &str| {
        format!(
            "[tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\nroot_ca_path = \"{}\"\n{more}",
            pki.server.0.display(),
            pki.server.1.display(),
            pki.ca.display()
        )
    };
    let connect = |router: &RouterProcess, client: Client, (cert, key): &(std::path::PathBuf, std::path::PathBuf)| {
        let url = format!("tls://127.0.0.1:{}", router.nats.expect("the gateway is on").port());
        let paths = json!({"ca": pki.ca, "cert": cert, "key": key}).to_string();
        client.run(&url, "tls_connect", Some(&paths))
    };

    let verified = router("", &tls(""));
    for client in Client::BOTH {
        assert_eq!(
            connect(&verified, client, &pki.client),
            json!({"connected": true, "data": "over tls"}),
            "{client:?}"
        );
        for refused in [&pki.untrusted, &pki.expired] {
            let result = connect(&verified, client, refused);
            assert_eq!(result["connected"], false, "{client:?}: {result}");
        }
    }
    let mut plain = RawClient::connect(verified.nats.expect("the gateway is on")).await;
    plain.send(b"CONNECT {}\r\nPING\r\n").await;
    assert!(!plain.read_to_close(WAIT).await.contains("PONG"), "a client that skips TLS gets nowhere");

    // With verify_and_map the certificate's subject names the user; no password is asked.
    let mut mapped = router(
        "[service.auth]\n[[service.auth.users]]\nuser = \"CN=client\"\npermissions = { publish = [\"tls.>\"] }\n",
        &tls("verify_and_map = true\n"),
    );
    for client in Client::BOTH {
        assert_eq!(connect(&mapped, client, &pki.client)["connected"], true, "{client:?}");
        let stranger = connect(&mapped, client, &pki.stranger);
        assert_eq!(stranger["connected"], false, "{client:?}: a trusted certificate that names no user: {stranger}");
    }
    mapped.wait_for_log("no user is named by the certificate", WAIT);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasm_auth_policy_decides_each_connection_its_account_and_permissions() {
    let tokens = r#"[
        { token = "orders", account = "$G", publish = { allow = ["orders.>", "_INBOX.>"] } },
        { token = "team", account = "TEAM" },
    ]"#;
    let policy = format!("[plugin.token-auth]\nconfig = {{ tokens = {tokens} }}\n");
    let router =
        router_with_plugins("[service.auth]\npolicy = \"token-auth\"", &policy, &[("token-auth", "token-auth")]);
    let url = router.nats_url();
    for client in Client::BOTH {
        assert_eq!(client.run(&url, "connect_only", Some("orders"))["connected"], true, "{client:?}");
        let wrong = client.run(&url, "connect_only", Some("wrong"));
        assert_eq!(wrong["connected"], false, "{client:?}: {wrong}");
    }

    let addr = router.nats.unwrap();
    let mut team = RawClient::connect(addr).await;
    team.send(b"CONNECT {\"verbose\":false,\"auth_token\":\"team\"}\r\nSUB orders.> 1\r\nPING\r\n").await;
    team.read_until("PONG\r\n", WAIT).await;
    let mut orders = RawClient::connect(addr).await;
    orders.send(b"CONNECT {\"verbose\":false,\"auth_token\":\"orders\"}\r\nPUB secret.x 1\r\nx\r\n").await;
    orders.read_until("-ERR 'Permissions Violation for Publish to \"secret.x\"'\r\n", WAIT).await;
    orders.send(b"PUB orders.eu 5\r\nhello\r\nPING\r\n").await;
    orders.read_until("PONG\r\n", WAIT).await;
    let files = router.path("files");
    let lines =
        eventually("the order on disk", WAIT, || Some(json_lines_under(&files)).filter(|l| !l.is_empty())).await;
    assert!(lines[0].0.starts_with("orders.eu/"), "the global account's publish reaches the route: {lines:?}");
    // The TEAM account is isolated: its subscription to orders.> saw nothing.
    team.send(b"PING\r\n").await;
    let seen = team.read_until("PONG\r\n", WAIT).await;
    assert!(!seen.contains("MSG"), "{seen}");
}
