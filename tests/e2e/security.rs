//! The trust boundary, tried as an attacker would: every way in (NATS clients of every account,
//! raw protocol bytes, HTTP callers, a reload that takes credentials away) against accounts,
//! permissions, the admin API and the limits that hold before anyone has authenticated. Real
//! nats-py and nats.js clients, raw sockets and an HTTP client against the real binary; each test
//! reproduces one hole of issue 18 and fails without its fix.

use crate::common;

use std::time::Duration;

use common::nats::{Client, RawClient};
use common::router::{RouterProcess, eventually, json_lines_under};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// Accounts USERS, OTHER and SYS (the system account), a token for the global account, and users
/// with the permissions under test.
const USERS: &str = r#"
[service.auth]
tokens = ["team-token"]
system_account = "SYS"
[[service.auth.users]]
user = "a"
password = "a"
account = "USERS"
[[service.auth.users]]
user = "b"
password = "b"
account = "OTHER"
[[service.auth.users]]
user = "admin"
password = "admin"
account = "SYS"
[[service.auth.users]]
user = "deny"
password = "deny"
permissions = { subscribe = { deny = ["orders.secret"] } }
[[service.auth.users]]
user = "narrow"
password = "narrow"
permissions = { subscribe = ["orders.*"] }
[[service.auth.users]]
user = "worker"
password = "worker"
permissions = { subscribe = ["jobs.> workers"] }
[[service.auth.users]]
user = "svc"
password = "svc"
permissions = { subscribe = ["svc.>"], allow_responses = true }
"#;

/// A router with the gateway on port 0, `[service]` keys `service`, the users above (`auth`), and
/// `extra` appended; `orders.>` goes to file sink `files`, dead letters to `dead`.
fn config(service: &str, auth: &str, extra: &str) -> String {
    format!(
        r#"
[service]
host = "127.0.0.1"
port = 0
{service}
{auth}
[http]
listen = "127.0.0.1:0"
[plugins]
dir = "{{dir}}/plugins"
[[route]]
name = "orders"
subject = "orders.>"
sinks = ["files"]
[[route]]
name = "dead-letters"
subject = "$DLQ.>"
sinks = ["dead"]
[sinks.files]
kind = "file"
root = "{{dir}}/files"
[sinks.dead]
kind = "file"
root = "{{dir}}/dead"
path = "{{subject}}"
{extra}"#
    )
}

fn router() -> RouterProcess {
    RouterProcess::start(&config("", USERS, ""))
}

fn user(name: &str) -> Value {
    json!({"user": name, "pass": name})
}

fn token() -> Value {
    json!({"token": "team-token"})
}

/// Runs the `probe` scenario with `client`: what a connection as `spec["as"]` sees.
fn probe(client: Client, router: &RouterProcess, spec: Value) -> Value {
    client.run(&router.nats_url(), "probe", Some(&spec.to_string()))
}

/// The subjects a probe received.
fn received(result: &Value) -> Vec<String> {
    let got = result["got"].as_array().unwrap_or_else(|| panic!("no messages in {result}"));
    got.iter()
        .map(|message| format!("{} via {}", message["subject"].as_str().expect("a subject"), message["via"]))
        .collect()
}

fn errors(result: &Value) -> String {
    result["errors"].to_string().to_lowercase().replace('_', " ")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_global_account_reaches_no_other_account() {
    let router = router();
    for client in Client::BOTH {
        // A token holder (the global account) tries to read every account and the system events.
        let spy = probe(
            client,
            &router,
            json!({
                "as": token(),
                "subscribe": ["$A.>", "$A.USERS.>", "$A.SYS.>", ">"],
                "publishers": [{"as": user("a"), "messages": [{"subject": "orders.users", "data": "private"}]}],
            }),
        );
        assert_eq!(received(&spy), Vec::<String>::new(), "{client:?}: {spy}");
        let errors = errors(&spy);
        assert!(errors.contains(r#"subscription to \"$a.>\""#), "{client:?}: {errors}");

        // ... and to write into account USERS.
        let victim = probe(
            client,
            &router,
            json!({
                "as": user("a"),
                "subscribe": [">"],
                "publishers": [{"as": token(), "messages": [{"subject": "$A.USERS.orders.y", "data": "forged"}]}],
            }),
        );
        assert_eq!(received(&victim), Vec::<String>::new(), "{client:?}: {victim}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accounts_dead_letters_stay_in_that_account() {
    let router = router();
    let nats = router.nats.unwrap();
    let mut global = RawClient::connect(nats).await;
    global.send(b"CONNECT {\"auth_token\":\"team-token\",\"verbose\":false}\r\nSUB $DLQ.> 1\r\nPING\r\n").await;
    global.read_until("PONG\r\n", WAIT).await;
    let mut users = RawClient::connect(nats).await;
    let connect = b"CONNECT {\"user\":\"a\",\"pass\":\"a\",\"verbose\":false,\"headers\":true}\r\nSUB $DLQ.> 1\r\n";
    users.send(connect).await;
    // A CloudEvent with a version nobody speaks: refused and dead-lettered, payload and all.
    let headers = "NATS/1.0\r\nce-specversion: 0.3\r\nce-id: m1\r\nce-source: /a\r\nce-type: t\r\n\r\n";
    let payload = "card 4111-1111";
    let hpub =
        format!("HPUB orders.x {} {}\r\n{headers}{payload}\r\nPING\r\n", headers.len(), headers.len() + payload.len());
    users.send(hpub.as_bytes()).await;
    let seen = users.read_until("PONG\r\n", WAIT).await;
    assert!(seen.contains("MSG $DLQ.gateway 1"), "the account's own dead letter: {seen}");
    global.send(b"PING\r\n").await;
    let leaked = global.read_until("PONG\r\n", WAIT).await;
    assert!(!leaked.contains("MSG") && !leaked.contains("4111"), "another account's dead letter: {leaked}");
    // The global account's route of `$DLQ.>` does not see it either. A check that nothing arrives:
    // the sleep gives a leaked dead letter time to reach the sink.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(json_lines_under(&router.path("dead")).is_empty(), "a global route saw another account's dead letter");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_publishers_cannot_forge_reload_reports_or_system_events() {
    let router = router();
    let system = tokio::spawn({
        let url = router.nats_url();
        async move {
            tokio::task::spawn_blocking(move || {
                Client::Py.run(&url, "probe", Some(&json!({"as": user("admin"), "subscribe": ["$SYS.>"]}).to_string()))
            })
            .await
            .unwrap()
        }
    });
    let event = json!({"specversion": "1.0", "id": "f1", "source": "/evil", "type": "forged"});
    for subject in ["$SYS.EVENTYARD.RELOAD", "$A.SYS.$SYS.ACCOUNT.USERS.CONNECT", "$A.USERS.orders.x", "$DLQ.files"] {
        assert_eq!(router.post_event(subject, &event).await, 403, "POST to {subject}");
    }
    assert_eq!(router.post_event("orders.fine", &event).await, 202);
    let watched = system.await.unwrap();
    let forged: Vec<&Value> =
        watched["got"].as_array().unwrap().iter().filter(|m| m["data"].as_str().unwrap().contains("forged")).collect();
    assert!(forged.is_empty(), "the system account saw a forged event: {forged:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_denies_hold_through_wildcards() {
    let router = router();
    for client in Client::BOTH {
        let messages = [("orders.secret", "secret"), ("orders.public", "public")];
        let messages: Vec<Value> = messages.iter().map(|(s, d)| json!({"subject": s, "data": d})).collect();
        let seen = probe(
            client,
            &router,
            json!({"as": user("deny"), "subscribe": ["orders.*", ">"], "publishers": [{"as": token(), "messages": messages}]}),
        );
        let mut got = received(&seen);
        got.sort();
        assert_eq!(got, [r#"orders.public via ">""#, r#"orders.public via "orders.*""#], "{client:?}: {seen}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_wider_than_its_allow_is_refused() {
    let router = router();
    for client in Client::BOTH {
        let messages = [("orders.deep.secret", "deep"), ("orders.eu", "eu")];
        let messages: Vec<Value> = messages.iter().map(|(s, d)| json!({"subject": s, "data": d})).collect();
        let seen = probe(
            client,
            &router,
            json!({"as": user("narrow"), "subscribe": ["orders.>", "orders.*"], "publishers": [{"as": token(), "messages": messages}]}),
        );
        assert_eq!(received(&seen), [r#"orders.eu via "orders.*""#], "{client:?}: {seen}");
        assert!(errors(&seen).contains(r#"subscription to \"orders.>\""#), "{client:?}: {seen}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_permissions_admit_only_their_group() {
    let router = router();
    let mut worker = RawClient::connect(router.nats.unwrap()).await;
    worker.send(b"CONNECT {\"user\":\"worker\",\"pass\":\"worker\",\"verbose\":true}\r\n").await;
    worker.read_until("+OK\r\n", WAIT).await;
    worker.send(b"SUB jobs.a 1\r\n").await;
    let plain = worker.read_until("\r\n", WAIT).await;
    assert_eq!(plain, "-ERR 'Permissions Violation for Subscription to \"jobs.a\"'\r\n");
    worker.send(b"SUB jobs.a others 2\r\n").await;
    let other = worker.read_until("\r\n", WAIT).await;
    assert_eq!(other, "-ERR 'Permissions Violation for Subscription to \"jobs.a\" using queue \"others\"'\r\n");
    worker.send(b"SUB jobs.a workers 3\r\n").await;
    assert_eq!(worker.read_until("\r\n", WAIT).await, "+OK\r\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_responses_admits_one_answer_to_a_request_received() {
    let router = router();
    let nats = router.nats.unwrap();
    let mut service = RawClient::connect(nats).await;
    service.send(b"CONNECT {\"user\":\"svc\",\"pass\":\"svc\",\"verbose\":false}\r\nSUB svc.req 1\r\nPING\r\n").await;
    service.read_until("PONG\r\n", WAIT).await;
    let mut requester = RawClient::connect(nats).await;
    requester.send(b"CONNECT {\"auth_token\":\"team-token\",\"verbose\":false}\r\nSUB _INBOX.r1 9\r\n").await;
    requester.send(b"PUB svc.req _INBOX.r1 2\r\nhi\r\nPING\r\n").await;
    requester.read_until("PONG\r\n", WAIT).await;
    service.read_until("MSG svc.req 1 _INBOX.r1 2\r\nhi\r\n", WAIT).await;
    service
        .send(b"PUB other.subject 1\r\nx\r\nPUB _INBOX.r1 6\r\nanswer\r\nPUB _INBOX.r1 5\r\nagain\r\nPING\r\n")
        .await;
    let told = service.read_until("PONG\r\n", WAIT).await;
    assert!(told.contains("Permissions Violation for Publish to \"other.subject\""), "{told}");
    assert_eq!(told.matches("Permissions Violation for Publish to \"_INBOX.r1\"").count(), 1, "one answer: {told}");
    let answered = requester.read_until("answer\r\n", WAIT).await;
    assert!(answered.contains("MSG _INBOX.r1 9 6"), "{answered}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_revokes_removed_credentials_and_narrowed_permissions() {
    let auth = |token: &str, narrow: &str| {
        format!(
            "[service.auth]\ntokens = [\"{token}\"]\n[[service.auth.users]]\nuser = \"narrow\"\npassword = \"narrow\"\npermissions = {{ subscribe = [\"{narrow}\"] }}\n[http.auth]\ntokens = [\"{token}\"]\n"
        )
    };
    let mut router = RouterProcess::start(&config("", &auth("old-token", "orders.*"), ""));
    let nats = router.nats.unwrap();
    let mut holder = RawClient::connect(nats).await;
    holder.send(b"CONNECT {\"auth_token\":\"old-token\",\"verbose\":false}\r\nSUB orders.> 1\r\nPING\r\n").await;
    holder.read_until("PONG\r\n", WAIT).await;
    let mut narrow = RawClient::connect(nats).await;
    narrow
        .send(b"CONNECT {\"user\":\"narrow\",\"pass\":\"narrow\",\"verbose\":false}\r\nSUB orders.* 1\r\nPING\r\n")
        .await;
    narrow.read_until("PONG\r\n", WAIT).await;
    let mut reconnecting = RawClient::connect(nats).await;
    reconnecting.send(b"CONNECT {\"auth_token\":\"old-token\",\"verbose\":false}\r\nPING\r\n").await;
    reconnecting.read_until("PONG\r\n", WAIT).await;
    let url = router.url("/v1/events/orders.http");
    let post = |token: &'static str| {
        let url = url.clone();
        async move {
            let event = json!({"specversion": "1.0", "id": "h", "source": "/t", "type": "t"});
            let client = reqwest::Client::new();
            let request = client.post(url).bearer_auth(token).header("content-type", "application/cloudevents+json");
            request.body(event.to_string()).send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(post("old-token").await, 202);

    let after = config("", &auth("new-token", "users.*"), "");
    std::fs::write(router.path("eventyard.toml"), after.replace("{dir}", &router.dir.path().display().to_string()))
        .unwrap();
    let status = std::process::Command::new("kill").args(["-HUP", &router.pid().to_string()]).status().unwrap();
    assert!(status.success());
    router.wait_for_log("reloaded", WAIT);

    let closed = holder.read_to_close(WAIT).await;
    assert!(closed.ends_with("-ERR 'Authorization Violation'\r\n"), "the removed token's connection: {closed:?}");
    // It got the HTTP event above; then its subscription ends.
    narrow.read_until("-ERR 'Permissions Violation for Subscription to \"orders.*\"'\r\n", WAIT).await;
    reconnecting.send(b"CONNECT {\"auth_token\":\"old-token\",\"verbose\":true}\r\n").await;
    let refused = reconnecting.read_to_close(WAIT).await;
    assert!(refused.contains("-ERR 'Authorization Violation'") && !refused.contains("+OK"), "{refused:?}");
    assert_eq!(post("old-token").await, 403, "the removed HTTP token stops working at once");
    assert_eq!(post("new-token").await, 202);
    // The narrowed user's subscription is gone: nothing on orders.* reaches it any more.
    let mut publisher = RawClient::connect(nats).await;
    publisher
        .send(b"CONNECT {\"auth_token\":\"new-token\",\"verbose\":false}\r\nPUB orders.x 1\r\nx\r\nPING\r\n")
        .await;
    publisher.read_until("PONG\r\n", WAIT).await;
    narrow.send(b"PING\r\n").await;
    let after = narrow.read_until("PONG\r\n", WAIT).await;
    assert!(!after.contains("MSG"), "{after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_needs_its_own_credential() {
    let open = router();
    let client = reqwest::Client::new();
    assert_eq!(client.post(open.url("/v1/admin/reload")).send().await.unwrap().status(), 403, "off without [admin]");
    assert_eq!(client.get(open.url("/v1/admin/plugins")).send().await.unwrap().status(), 403);
    assert_eq!(client.get(open.url("/metrics")).send().await.unwrap().status(), 200);

    let admin = "[admin]\ntokens = [\"admin-secret\"]\nprotect_metrics = true\n";
    let guarded = RouterProcess::start(&config("", USERS, admin));
    let reload = |token: Option<&'static str>| {
        let request = client.post(guarded.url("/v1/admin/reload"));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(reload(None).await, 401);
    assert_eq!(reload(Some("team-token")).await, 403, "a publisher's token is no admin's");
    assert_eq!(reload(Some("admin-secret")).await, 200);
    assert_eq!(client.get(guarded.url("/metrics")).send().await.unwrap().status(), 401);
    let metrics = client.get(guarded.url("/metrics")).bearer_auth("admin-secret").send().await.unwrap();
    assert_eq!(metrics.status(), 200);
}

/// Reads what the server sends until it closes (or `wait` passes); returns it and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(wait, stream.read_to_end(&mut seen)).await.is_ok();
    (String::from_utf8_lossy(&seen).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_connections_are_capped_and_slow_or_idle_ones_closed() {
    let limits = "max_connections = 3\nheader_timeout_ms = 500\nbody_timeout_ms = 500\nidle_timeout_ms = 1000\n";
    let router = RouterProcess::start(&config("", "", "").replacen("[http]\n", &format!("[http]\n{limits}"), 1));
    // Half a request line, half a body, and a finished request left open.
    let mut headers = TcpStream::connect(router.http).await.unwrap();
    headers.write_all(b"POST /v1/events/orders.x HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut body = TcpStream::connect(router.http).await.unwrap();
    body.write_all(b"POST /v1/events/orders.x HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(router.http).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    // The router takes connections in order: once the last one is answered, all three hold a seat.
    let mut answered = vec![0; 4096];
    let read = tokio::time::timeout(WAIT, idle.read(&mut answered)).await.expect("the keep-alive request is answered");
    answered.truncate(read.unwrap());
    let mut over = TcpStream::connect(router.http).await.unwrap();
    let (answer, closed) = read_until_closed(&mut over, WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 503") && closed, "a fourth connection: {answer:?}");

    let (answer, closed) = read_until_closed(&mut headers, WAIT).await;
    assert!(closed, "a request whose headers never end is closed: {answer:?}");
    let (answer, closed) = read_until_closed(&mut body, WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 408") && closed, "a body that never ends: {answer:?}");
    let (rest, closed) = read_until_closed(&mut idle, WAIT).await;
    let answer = String::from_utf8_lossy(&answered).into_owned() + &rest;
    assert!(answer.starts_with("HTTP/1.1 200") && closed, "an idle keep-alive connection: {answer:?}");
    // The seats are back.
    let status = reqwest::get(router.url("/healthz")).await.unwrap().status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_limits_hold_before_and_after_auth() {
    let router = RouterProcess::start(&config("max_subscriptions = 2\nmax_connections_per_account = 2\n", USERS, ""));
    let nats = router.nats.unwrap();
    // Before CONNECT, a PUB is refused at its first line: its body is never awaited.
    let mut stranger = RawClient::connect(nats).await;
    stranger.send(b"PUB orders.x 1000000\r\n").await;
    let refused = stranger.read_to_close(WAIT).await;
    assert!(refused.ends_with("-ERR 'Authorization Violation'\r\n"), "{refused:?}");

    let mut subscriber = RawClient::connect(nats).await;
    subscriber
        .send(b"CONNECT {\"user\":\"a\",\"pass\":\"a\",\"verbose\":false}\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
        .await;
    let told = subscriber.read_until("PONG\r\n", WAIT).await;
    assert!(told.contains("-ERR 'Maximum Subscriptions Exceeded'"), "{told}");

    let _second = {
        let mut client = RawClient::connect(nats).await;
        client.send(b"CONNECT {\"user\":\"a\",\"pass\":\"a\",\"verbose\":false}\r\nPING\r\n").await;
        client.read_until("PONG\r\n", WAIT).await;
        client
    };
    let mut third = RawClient::connect(nats).await;
    third.send(b"CONNECT {\"user\":\"a\",\"pass\":\"a\",\"verbose\":false}\r\nPING\r\n").await;
    let refused = third.read_to_close(WAIT).await;
    assert!(refused.contains("maximum account active connections exceeded"), "{refused:?}");
    // Other accounts are not held back by USERS's connections.
    let mut other = RawClient::connect(nats).await;
    other.send(b"CONNECT {\"user\":\"b\",\"pass\":\"b\",\"verbose\":false}\r\nPING\r\n").await;
    other.read_until("PONG\r\n", WAIT).await;
}

/// Connects a raw client to `addr` with CONNECT `options` (JSON) and PINGs: the server's answer,
/// up to the PONG or the close.
async fn raw_connect(addr: std::net::SocketAddr, options: Value) -> (RawClient, String) {
    let mut client = RawClient::connect(addr).await;
    client.send(format!("CONNECT {options}\r\nPING\r\n").as_bytes()).await;
    let answer = client.read_until_any(&["PONG\r\n", "'\r\n"], WAIT).await;
    (client, answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_nats_listener_keeps_its_own_auth_while_accounts_and_limits_span_them_all() {
    // The main listener with USERS; `partners` admits one user of account USERS and nobody else;
    // `internal` admits anyone, in the global account.
    let listeners = r#"
[service.listeners.partners]
host = "127.0.0.1"
port = 0
[[service.listeners.partners.auth.users]]
user = "p"
password = "p"
account = "USERS"
[service.listeners.internal]
host = "127.0.0.1"
port = 0
"#;
    let router = RouterProcess::start(&config("max_connections_per_account = 2\n", USERS, listeners));
    let (main, partners, internal) = (router.nats.unwrap(), router.listeners["partners"], router.listeners["internal"]);
    let (_, info) = raw_connect(partners, json!({"verbose": false})).await;
    assert!(info.contains("Authorization Violation"), "partners needs its own credentials: {info}");
    assert!(RawClient::connect(partners).await.info.contains(r#""auth_required":true"#));
    assert!(RawClient::connect(internal).await.info.contains(r#""auth_required":false"#));
    // The main listener's credentials open nothing on `partners`.
    for foreign in [json!({"auth_token": "team-token"}), json!({"user": "a", "pass": "a"})] {
        let (_, answer) = raw_connect(partners, foreign.clone()).await;
        assert!(answer.contains("Authorization Violation"), "{foreign} on partners: {answer}");
    }
    // ... nor `partners`' on the main listener.
    let (_, answer) = raw_connect(main, json!({"user": "p", "pass": "p"})).await;
    assert!(answer.contains("Authorization Violation"), "{answer}");

    // One account over two listeners: what `p` publishes, `a` receives; the global account on
    // `internal` sees none of it, and its own publish does not reach USERS.
    let (mut a, answer) = raw_connect(main, json!({"user": "a", "pass": "a", "verbose": false})).await;
    assert!(answer.contains("PONG"), "{answer}");
    a.send(b"SUB orders.> 1\r\nPING\r\n").await;
    a.read_until("PONG\r\n", WAIT).await;
    let (mut spy, _) = raw_connect(internal, json!({"verbose": false})).await;
    spy.send(b"SUB > 1\r\nPUB orders.global 6\r\nglobal\r\nPING\r\n").await;
    spy.read_until("PONG\r\n", WAIT).await;
    let (mut p, answer) = raw_connect(partners, json!({"user": "p", "pass": "p", "verbose": false})).await;
    assert!(answer.contains("PONG"), "{answer}");
    p.send(b"PUB orders.shared 5\r\nhello\r\nPING\r\n").await;
    p.read_until("PONG\r\n", WAIT).await;
    let got = a.read_until("hello\r\n", WAIT).await;
    assert!(got.contains("MSG orders.shared 1 5"), "{got}");
    spy.send(b"PING\r\n").await;
    let seen = spy.read_until("PONG\r\n", WAIT).await;
    assert!(!seen.contains("hello"), "the global account read USERS' message: {seen}");
    a.send(b"PING\r\n").await;
    let seen = a.read_until("PONG\r\n", WAIT).await;
    assert!(!seen.contains("global"), "USERS read the global account's message: {seen}");

    // The account's connection limit counts both listeners: `a` and `p` hold USERS' two seats.
    let (_, answer) = raw_connect(main, json!({"user": "a", "pass": "a"})).await;
    assert!(answer.contains("maximum account active connections exceeded"), "{answer}");
    drop(p);
    let mut rejoined = String::new();
    for _ in 0..50 {
        let (_, answer) = raw_connect(main, json!({"user": "a", "pass": "a", "verbose": false})).await;
        rejoined = answer;
        if rejoined.contains("PONG") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rejoined.contains("PONG"), "the seat `p` left is free again: {rejoined}");

    // `listener_limit` is one limit over every listener.
    let internal = "[service.listeners.internal]\nhost = \"127.0.0.1\"\nport = 0\n";
    let router = RouterProcess::start(&config("listener_limit = 1\n", "", internal));
    let (_held, answer) = raw_connect(router.nats.unwrap(), json!({"verbose": false})).await;
    assert!(answer.contains("PONG"), "{answer}");
    let refused = RawClient::connect(router.listeners["internal"]).await.read_to_close(WAIT).await;
    assert!(refused.contains("maximum connections exceeded"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_ingest_takes_events_and_can_require_client_certificates() {
    let certs = common::tempdir();
    let pki = common::tls::pki(certs.path());
    let tls = format!(
        "[http.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\nroot_ca_path = \"{}\"\n",
        pki.server.0.display(),
        pki.server.1.display(),
        pki.ca.display()
    );
    let router = RouterProcess::start(&config("", "", &tls));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let identity = |(cert, key): &(std::path::PathBuf, std::path::PathBuf)| {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        reqwest::Identity::from_pem(&pem).unwrap()
    };
    let url = format!("https://127.0.0.1:{}/v1/events/orders.tls", router.http.port());
    let event = json!({"specversion": "1.0", "id": "t1", "source": "/tls", "type": "t"}).to_string();
    let client = reqwest::Client::builder().add_root_certificate(ca.clone()).identity(identity(&pki.client)).build();
    let sent = client.unwrap().post(&url).header("content-type", "application/cloudevents+json").body(event.clone());
    assert_eq!(sent.send().await.unwrap().status(), 202);
    let anonymous = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    assert!(anonymous.post(&url).body(event).send().await.is_err(), "no client certificate, no connection");
    let files = router.path("files");
    eventually("the event over HTTPS", WAIT, || (json_lines_under(&files).len() == 1).then_some(())).await;
    let plain = reqwest::get(router.url("/healthz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP is not served");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_name_too_long_for_the_filesystem_is_dead_lettered_not_retried() {
    let router = router();
    // HTTP takes subjects of up to 256 bytes; a file or directory name may have 255.
    let subject = format!("orders.{}", "x".repeat(249));
    let event = json!({"specversion": "1.0", "id": "long", "source": "/t", "type": "t"});
    assert_eq!(router.post_event(&subject, &event).await, 202);
    let dead = router.path("dead");
    let letters = eventually("the dead letter", WAIT, || {
        let letters = json_lines_under(&dead);
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let letter = &letters[0].1;
    assert_eq!(letter["deadletterattempts"], "1", "{letter}");
    assert!(letter["deadletterreason"].as_str().unwrap().contains("longer than 255 bytes"), "{letter}");
}
