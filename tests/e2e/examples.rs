//! The seed systems in `examples/`, run as a user would run them: the example's own config (with
//! its listen ports moved to free ones) in the real binary, driven by real clients, checked at the
//! real destination.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use common::http_server::HttpDestination;
use common::kafka::KafkaBroker;
use common::nats::{Client, NatsCluster, NatsServer};
use common::object_stores::{Azurite, S3Server};
use common::router::{RouterProcess, eventually, json_lines_under};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Starts `examples/<name>/eventyard.toml` with each `(from, to)` of `local` replaced (ports,
/// certificate paths), and first-party `plugins` in its plugin directory (`(crate, plugin name)`).
fn example(name: &str, local: &[(&str, &str)], plugins: &[(&str, &str)]) -> RouterProcess {
    RouterProcess::start_with_plugins(&example_config(name, "eventyard.toml", local), plugins)
}

/// The text of `examples/<name>/<file>` with each `(from, to)` of `local` replaced.
fn example_config(name: &str, file: &str, local: &[(&str, &str)]) -> String {
    let path = common::repo_root().join("examples").join(name).join(file);
    let mut config = std::fs::read_to_string(&path).expect("the example has a config");
    for (from, to) in local {
        assert!(config.contains(from), "{} has no {from:?}", path.display());
        config = config.replace(from, to);
    }
    config
}

/// The dead letter among `dead` that `from` (a sink, route, source, or `gateway`) gave up.
fn dead_letter_from(dead: &[(String, Value)], from: &str) -> Value {
    let found = dead.iter().find(|(_, event)| event["deadlettersink"] == from);
    found.map(|(_, event)| event.clone()).unwrap_or_else(|| panic!("no dead letter from {from}: {dead:?}"))
}

/// Relative paths of the events under `root` whose file path starts with `prefix`.
fn under(root: &std::path::Path, prefix: &str) -> Vec<(String, Value)> {
    json_lines_under(root).into_iter().filter(|(path, _)| path.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dss_event_server_filters_by_topic_and_routing_key_into_hourly_files() {
    let router = example("dss-event-server", &[("127.0.0.1:10133", "127.0.0.1:0")], &[]);
    let send =
        |topic: &'static str, id: &'static str, routing_key: Option<&'static str>, token: Option<&'static str>| {
            let mut request = reqwest::Client::new()
                .post(router.url(&format!("/v1/events/{topic}")))
                .header("ce-specversion", "1.0")
                .header("ce-source", "/dss/node")
                .header("ce-type", "audit")
                .header("content-type", "application/json")
                .body(json!({"user": "ada", "action": id}).to_string());
            if !id.is_empty() {
                request = request.header("ce-id", id);
            }
            if let Some(key) = routing_key {
                request = request.header("ce-routingkey", key);
            }
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move { request.send().await.expect("the router answers") }
        };
    let token = Some("dss-audit-secret");
    assert_eq!(send("audit.login", "a1", Some("prod-a"), None).await.status(), 401, "authentication is on");
    assert_eq!(send("audit.login", "a1", Some("prod-a"), token).await.status(), 202);
    assert_eq!(send("audit.login", "a2", Some("dev-b"), token).await.status(), 202);
    assert_eq!(send("jobs.run", "j1", Some("prod-c"), token).await.status(), 202);
    // A malformed event (no id) is refused with the reason, and the next one still goes through.
    let malformed = send("audit.login", "", Some("prod-a"), token).await;
    assert_eq!(malformed.status(), 400);
    assert!(malformed.text().await.unwrap().contains("id"));
    assert_eq!(send("audit.logout", "a3", Some("prod-a"), token).await.status(), 202);
    // A routing key the destination will not turn into a directory (a hidden name): accepted,
    // then dead-lettered by the destination with the reason; the rest are written.
    assert_eq!(send("audit.login", "x1", Some(".hidden"), token).await.status(), 202);

    let audit = router.path("events/audit-trail");
    let production = router.path("events/production");
    eventually("both destinations written", WAIT, || {
        (json_lines_under(&audit).len() == 3 && json_lines_under(&production).len() == 3).then_some(())
    })
    .await;
    let ids = |lines: Vec<(String, Value)>| -> Vec<String> {
        let mut ids: Vec<String> = lines.iter().map(|(_, e)| e["id"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(json_lines_under(&audit)), ["a1", "a2", "a3"], "every audit topic, any node");
    assert_eq!(ids(json_lines_under(&production)), ["a1", "a3", "j1"], "prod-* nodes, any topic");
    let (path, _) = &under(&audit, "audit.login/dev-b/")[0];
    let hour: Vec<&str> = path.split('/').collect();
    assert_eq!(hour.len(), 7, "topic/routing-key/YYYY/mm/dd/HH/file: {path}");
    assert!(hour[2].len() == 4 && hour[3..6].iter().all(|part| part.len() == 2), "{path}");
    let dead = eventually("the unwritable event dead-lettered", WAIT, || {
        let dead = json_lines_under(&router.path("events/dead-letters"));
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    let unwritable = dead_letter_from(&dead, "audit-files");
    assert_eq!(unwritable["id"], "x1", "{unwritable}");
    assert!(unwritable["deadletterreason"].as_str().unwrap().contains(".hidden"), "{unwritable}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dss_event_server_archives_whole_objects_to_s3_and_azure_blob_storage() {
    let s3 = S3Server::start(&["dss-audit"]).await;
    let azure = Azurite::start().await;
    let endpoint = s3.endpoint();
    let local = [
        ("127.0.0.1:10133", "127.0.0.1:0"),
        ("http://127.0.0.1:9000", endpoint.as_str()),
        (r#"aws_access_key_id = "dss""#, r#"aws_access_key_id = "AK""#),
        (r#"aws_secret_access_key = "dss-secret""#, r#"aws_secret_access_key = "SK""#),
    ];
    let config = example_config("dss-event-server", "object-storage.toml", &local);
    let router = RouterProcess::start_with_env(&config, &[("AZURITE_BLOB_STORAGE_URL", &azure.url())]);
    let send = |topic: &'static str, id: &'static str, key: &'static str| {
        let request = reqwest::Client::new()
            .post(router.url(&format!("/v1/events/{topic}")))
            .bearer_auth("dss-audit-secret")
            .header("ce-specversion", "1.0")
            .header("ce-source", "/dss/node")
            .header("ce-type", "audit")
            .header("ce-id", id)
            .header("ce-routingkey", key)
            .header("content-type", "application/json")
            .body(json!({"user": "ada", "action": id}).to_string());
        async move { request.send().await.expect("the router answers").status() }
    };
    // The Azure container does not exist yet: the upload fails, is retried, and the event ends as
    // a dead letter with the reason, not lost.
    assert_eq!(send("jobs.run", "early", "prod-x").await, 202);
    let dead = eventually("the event the missing container refused dead-lettered", WAIT, || {
        let dead = json_lines_under(&router.path("events/dead-letters"));
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    let refused = dead_letter_from(&dead, "production-archive");
    assert_eq!(refused["id"], "early", "{refused}");
    assert!(refused["deadletterreason"].as_str().unwrap().contains("azure://dss-production/events"), "{refused}");
    azure.create_container("dss-production");
    for (topic, id, key) in [
        ("audit.login", "a1", "prod-a"),
        ("audit.login", "a2", "dev-b"),
        ("jobs.run", "j1", "prod-c"),
        ("audit.logout", "a3", "prod-a"),
    ] {
        assert_eq!(send(topic, id, key).await, 202);
    }

    // Every object is whole JSON lines; the ids in each store, and where they are.
    let ids = |objects: &serde_json::Map<String, Value>| -> Vec<(String, String)> {
        let mut ids: Vec<(String, String)> = objects
            .iter()
            .flat_map(|(name, text)| {
                let text = text.as_str().expect("text");
                assert!(text.ends_with('\n'), "{name}: a whole object ends its last line: {text:?}");
                text.lines()
                    .map(|line| {
                        let event: Value = serde_json::from_str(line).expect("a CloudEvents JSON line");
                        let directory = name.rsplit_once('/').map(|(dir, _)| dir.to_owned()).unwrap_or_default();
                        (event["id"].as_str().unwrap().to_owned(), directory)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        ids
    };
    let audit = eventually("the audit trail in S3", WAIT, || {
        let objects = s3.objects("dss-audit");
        (ids(&objects).len() == 3).then_some(objects)
    })
    .await;
    let production = eventually("production events in Azure Blob Storage", WAIT, || {
        let objects = azure.objects("dss-production");
        (ids(&objects).len() == 3).then_some(objects)
    })
    .await;
    let hour = time::OffsetDateTime::now_utc();
    let day = format!("{:04}/{:02}/{:02}", hour.year(), u8::from(hour.month()), hour.day());
    let audit_ids = ids(&audit);
    assert_eq!(audit_ids.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["a1", "a2", "a3"]);
    assert!(audit_ids[0].1.starts_with(&format!("events/audit.login/prod-a/{day}/")), "{audit_ids:?}");
    assert!(audit.keys().all(|name| name.ends_with(".jsonl")), "{:?}", audit.keys());
    let production_ids = ids(&production);
    assert_eq!(production_ids.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["a1", "a3", "j1"]);
    assert!(production_ids[2].1.starts_with(&format!("events/jobs.run/prod-c/{day}/")), "{production_ids:?}");
    assert!(production.keys().all(|name| name.ends_with(".jsonl.gz")), "gzipped: {:?}", production.keys());
    assert_eq!(json_lines_under(&router.path("events/dead-letters")).len(), 1, "nothing else given up");
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_system_events_are_watched_by_the_system_account() {
    let mut router =
        example("nats-system-events", &[("port = 4222", "port = 0"), ("127.0.0.1:10133", "127.0.0.1:0")], &[]);
    let nats = router.nats.expect("the example turns the gateway on");
    let mut watcher = Command::new("python3")
        .arg(common::repo_root().join("examples/nats-system-events/watch.py"))
        .arg(format!("nats://admin:changeit@{nats}"))
        .arg("6")
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs watch.py");
    let (send, lines) = std::sync::mpsc::channel::<Value>();
    let stdout = watcher.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = send.send(serde_json::from_str(&line).expect("watch.py prints JSON lines"));
        }
    });
    let mut seen = Vec::new();
    // watch.py subscribes, then asks PING, STATSZ, CONNZ and HEALTHZ: once those are printed it
    // is listening.
    while !seen.iter().any(|e: &Value| e["subject"] == "$SYS.REQ.SERVER.PING.HEALTHZ") {
        seen.push(lines.recv_timeout(WAIT).expect("watch.py answers"));
    }
    // As the seed's walk-through: a user of USERS connects and publishes `foo bar`, and stays
    // while watch.py asks about its account.
    let user = async_nats::ConnectOptions::with_user_and_password("a".into(), "a".into())
        .name("seed-001")
        .connect(nats.to_string())
        .await
        .expect("a connects");
    user.publish("foo", "bar".into()).await.expect("publish");
    user.flush().await.expect("flush");
    assert_eq!(Client::Js.run(&format!("nats://a:wrong@{nats}"), "connect_only", None)["connected"], false);
    // A malformed event from a user: told to the client, dead-lettered with the reason.
    let headers = json!({"ce-specversion": "0.3", "ce-id": "m1", "ce-source": "/a", "ce-type": "t"});
    let malformed = json!({"events": [{"subject": "orders", "headers": headers, "data": {}}], "expect_error": true});
    let refused = Client::Py.run(&format!("nats://a:a@{nats}"), "publish_events", Some(&malformed.to_string()));
    assert!(refused["errors"][0].as_str().unwrap().to_lowercase().contains("invalid publish"), "{refused}");
    while !seen.iter().any(|e: &Value| e["subject"] == "$SYS.REQ.ACCOUNT.PING.STATZ") {
        seen.push(lines.recv_timeout(WAIT).expect("watch.py asks about the account"));
    }
    drop(user);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The server going away is an event too.
    assert_eq!(router.terminate(WAIT).await, 0);
    while let Ok(event) = lines.recv_timeout(Duration::from_secs(6)) {
        seen.push(event);
    }
    let _ = watcher.wait();
    // The requests themselves are seen too, with empty bodies: the answers are the ones with data.
    let by_subject =
        |subject: &str| seen.iter().find(|e| e["subject"] == subject && !e["data"].is_null()).map(|e| &e["data"]);
    let subjects: Vec<&str> = seen.iter().filter_map(|e| e["subject"].as_str()).collect();
    for expected in ["$SYS.ACCOUNT.USERS.CONNECT", "$SYS.ACCOUNT.USERS.DISCONNECT", "$SYS.ACCOUNT.USERS.SERVER.CONNS"] {
        assert!(subjects.contains(&expected), "no {expected} in {subjects:?}");
    }
    let server_id = by_subject("$SYS.REQ.SERVER.PING").expect("PING answered")["server"]["id"].as_str().unwrap();
    for expected in [format!("$SYS.SERVER.{server_id}.CLIENT.AUTH.ERR"), format!("$SYS.SERVER.{server_id}.SHUTDOWN")] {
        assert!(subjects.contains(&expected.as_str()), "no {expected} in {subjects:?}");
    }
    assert!(!subjects.contains(&"foo"), "application subjects stay out of the system account: {subjects:?}");
    let connect = by_subject("$SYS.ACCOUNT.USERS.CONNECT").unwrap();
    assert_eq!((&connect["client"]["name"], &connect["client"]["acc"]), (&json!("seed-001"), &json!("USERS")));
    assert!(connect["client"].as_object().unwrap().values().all(|v| !v.is_null()), "nothing null: {connect}");
    let connz = by_subject("$SYS.REQ.ACCOUNT.USERS.CONNZ").expect("CONNZ answered");
    let connection = &connz["data"]["connections"][0];
    assert_eq!((&connection["name"], &connection["in_msgs"]), (&json!("seed-001"), &json!(1)), "{connz}");
    let statz = by_subject("$SYS.REQ.ACCOUNT.USERS.STATZ").expect("STATZ answered");
    assert_eq!(statz["data"]["account_statz"][0]["conns"], 1, "{statz}");
    let statsz = by_subject(&format!("$SYS.REQ.SERVER.{server_id}.STATSZ")).unwrap();
    assert!(statsz["statsz"]["mem"].as_u64().unwrap() > 0 && statsz["statsz"]["cpu"].is_number(), "{statsz}");
    assert_eq!(by_subject("$SYS.REQ.SERVER.PING.HEALTHZ").unwrap()["data"]["status"], "ok");
    let dead = json_lines_under(&router.path("events/dead-letters"));
    let malformed = dead_letter_from(&dead, "gateway");
    assert!(malformed["deadletterreason"].as_str().unwrap().contains("specversion"), "{malformed}");
    assert_eq!(malformed["deadlettersubject"], "$A.USERS.orders", "{malformed}");
}

/// The event types seed 000 lists, and the handler service each goes to.
const AUTOMATE_EVENT_TYPES: [(&str, &str); 10] = [
    ("compliance_ingest", "feed"),
    ("scanJobCreated", "feed"),
    ("scanJobUpdated", "feed"),
    ("scanJobDeleted", "feed"),
    ("profileCreated", "feed"),
    ("profileUpdate", "feed"),
    ("profileDeleted", "feed"),
    ("nodeTerminated", "feed"),
    ("cfgingest", "cfgingest"),
    ("event_feed", "event_feed"),
];

/// An Automate `EventMsg` (api/interservice/event/event.proto) in its JSON form, as a plain NATS
/// message on `automate.events`.
fn automate_event(id: &str, ty: &str) -> Value {
    let data = json!({
        "EventID": id,
        "Type": {"Name": ty},
        "Producer": {"ID": "urn:chef:compliance:scan-component", "ProducerName": "Scanner", "ProducerType": "system component"},
        "Tags": ["scanjobs"],
        "Published": "2026-12-07T10:00:00.5Z",
        "Actor": {"ID": "urn:mycompany:user:fred", "ObjectType": "User", "DisplayName": "Fred"},
        "Verb": "create",
        "Object": {"ID": id, "ObjectType": "ScanJob", "DisplayName": "nightly"},
        "Target": {"ID": "urn:chef:compliance:scan-component", "ObjectType": "System", "DisplayName": "Scanner"},
        "data": {"node": "web-1"},
    });
    json!({"subject": "automate.events", "data": data})
}

#[tokio::test(flavor = "multi_thread")]
async fn chef_event_gateway_takes_all_ten_event_types_from_external_clients_to_handlers_and_internal_clients() {
    let certs = common::tempdir();
    let pki = common::tls::pki(certs.path());
    let ok = StatusCode::OK;
    // The feed service refuses the first event it gets for good: it must end in dead letters.
    let feed = HttpDestination::start(vec![StatusCode::BAD_REQUEST], ok, Duration::ZERO).await;
    let cfgingest = HttpDestination::start(Vec::new(), ok, Duration::ZERO).await;
    let event_feed = HttpDestination::start(Vec::new(), ok, Duration::ZERO).await;
    let path = |p: &std::path::Path| p.display().to_string();
    let router = example(
        "chef-event-gateway",
        &[
            ("port = 10132", "port = 0"),
            ("port = 10140", "port = 0"),
            ("127.0.0.1:10133", "127.0.0.1:0"),
            ("certs/event-service.crt", &path(&pki.server.0)),
            ("certs/event-service.key", &path(&pki.server.1)),
            ("certs/Chef_Automate_FAKE_Dev.crt", &path(&pki.ca)),
            ("127.0.0.1:10121", &feed.addr.to_string()),
            ("127.0.0.1:10122", &cfgingest.addr.to_string()),
            ("127.0.0.1:10123", &event_feed.addr.to_string()),
        ],
        &[("subject-filter", "subject-filter")],
    );
    // An in-cluster client on the internal event service: no token, no TLS.
    let internal =
        async_nats::connect(router.listeners["internal"].to_string()).await.expect("internal clients connect");
    let mut consumed = internal.subscribe("automate.>").await.expect("subscribe");
    internal.flush().await.expect("flush");

    let url = format!("tls://localhost:{}", router.nats.expect("the example turns the gateway on").port());
    let publish = |token: &str, events: &Value, expect_error: bool| {
        let (cert, key) = &pki.client;
        let extra = json!({"ca": pki.ca, "cert": cert, "key": key, "token": token, "events": events,
                           "expect_error": expect_error});
        Client::Py.run(&url, "publish_events", Some(&extra.to_string()))
    };
    let mut events: Vec<Value> =
        AUTOMATE_EVENT_TYPES.iter().enumerate().map(|(i, (ty, _))| automate_event(&format!("ev-{i}"), ty)).collect();
    // A real Automate type the seed's handlers do not take.
    events.push(automate_event("ev-unhandled", "projectRulesUpdate"));
    let token = "automate-events-token";
    assert_eq!(publish("wrong-token", &json!(events), false)["connected"], false, "a valid token is required");
    // An event whose time is no time: the client is told (nats-py then closes), it is
    // dead-lettered with the reason, and the next connection's events go through.
    let mut malformed = automate_event("ev-bad", "cfgingest");
    malformed["data"]["Published"] = json!("last tuesday");
    let refused = publish(token, &json!([malformed]), true);
    assert!(refused["errors"][0].as_str().unwrap().to_lowercase().contains("invalid publish"), "{refused}");
    assert_eq!(publish(token, &json!(events), false), json!({"connected": true, "published": 11}));

    // The internal client gets every event, as it was published.
    let mut seen = Vec::new();
    while seen.len() < 11 {
        let next = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut consumed)).await;
        let message = next.expect("every event reaches the internal client").expect("subscribed");
        let data: Value = serde_json::from_slice(&message.payload).expect("the EventMsg as sent");
        seen.push(data["EventID"].as_str().unwrap().to_owned());
    }
    let expected: Vec<String> = events.iter().map(|e| e["data"]["EventID"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen, expected, "in order, once each");

    // Each handler service gets its types, with the attributes the message carries.
    let ids = |destination: &HttpDestination| -> Vec<(String, String)> {
        let bodies = destination.received().into_iter().map(|r| serde_json::from_slice::<Value>(&r.body).unwrap());
        bodies
            .map(|body| {
                assert_eq!(body["time"], "2026-12-07T10:00:00.5Z", "{body}");
                assert_eq!(body["source"], "urn:chef:compliance:scan-component", "{body}");
                assert_eq!(body["data"]["EventID"], body["id"], "{body}");
                (body["id"].as_str().unwrap().to_owned(), body["type"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let wanted = |handler: &str| -> Vec<(String, String)> {
        let types = AUTOMATE_EVENT_TYPES.iter().enumerate().filter(|(_, (_, h))| *h == handler);
        types.map(|(i, (ty, _))| (format!("ev-{i}"), ty.to_string())).collect()
    };
    eventually("every handler service served", WAIT, || {
        (ids(&feed).len() == 8 && ids(&cfgingest).len() == 1 && ids(&event_feed).len() == 1).then_some(())
    })
    .await;
    assert_eq!(ids(&feed), wanted("feed"), "the first was refused, the rest accepted");
    assert_eq!(ids(&cfgingest), wanted("cfgingest"));
    assert_eq!(ids(&event_feed), wanted("event_feed"));

    let dead = router.path("events/dead-letters");
    let dead = eventually("the refused, the unhandled and the malformed event dead-lettered", WAIT, || {
        let dead = json_lines_under(&dead);
        (dead.len() == 3).then_some(dead)
    })
    .await;
    let refused = dead_letter_from(&dead, "feed-service");
    assert_eq!(refused["id"], "ev-0", "{refused}");
    assert!(refused["deadletterreason"].as_str().unwrap().contains("400"), "{refused}");
    let unhandled = dead_letter_from(&dead, "unrouted");
    assert_eq!((&unhandled["id"], &unhandled["type"]), (&json!("ev-unhandled"), &json!("projectRulesUpdate")));
    assert_eq!(unhandled["deadlettersubject"], "automate.events", "{unhandled}");
    let malformed = dead_letter_from(&dead, "gateway");
    assert!(malformed["deadletterreason"].as_str().unwrap().contains("/Published"), "{malformed}");
    assert_eq!(malformed["deadlettersubject"], "automate.events", "{malformed}");
    assert_eq!(router.metric(r#"eventyard_unrouted_events_total{family="automate"}"#).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_exporter_decodes_bahamut_publications_over_mutual_tls_into_kafka_keyed_by_identity() {
    // The platform's NATS, as Aporeto runs it: TLS, and a certificate required of every client.
    let certs = common::tempdir();
    let pki = common::tls::pki(certs.path());
    let path = |p: &std::path::Path| p.display().to_string();
    let nats = NatsServer::start_requiring_client_certificates(&pki).await;
    let kafka = KafkaBroker::start().await;
    kafka.create_topic("aporeto-events", 3);
    let nats_url = nats.url().replace("nats://", "tls://");
    let (brokers, ca, cert, key) = (kafka.bootstrap(), path(&pki.ca), path(&pki.client.0), path(&pki.client.1));
    let local = [
        ("127.0.0.1:10133", "127.0.0.1:0"),
        ("tls://127.0.0.1:4222", nats_url.as_str()),
        ("127.0.0.1:9092", brokers.as_str()),
        ("certs/ca.pem", ca.as_str()),
        ("certs/client.pem", cert.as_str()),
        ("certs/client-key.pem", key.as_str()),
    ];
    let router = example("kafka-exporter", &local, &[("bahamut", "bahamut"), ("kafka-sink", "kafka-sink")]);

    // One publication on each of the six topics, in each encoding bahamut services use.
    let publication = |topic: &str, identity: &str, operation: &str, encoding: &str, entity: Value| {
        json!({"topic": topic, "identity": identity, "operation": operation, "encoding": encoding,
               "timestamp": "2026-12-07T10:00:00.250Z", "entity": entity})
    };
    let publications = [
        publication(
            "squall-events",
            "processingunit",
            "create",
            "msgpack",
            json!({"name": "nginx", "namespace": "/acme/prod"}),
        ),
        publication(
            "activities",
            "activity",
            "update",
            "json",
            json!({"message": "enforcer updated", "targetIdentity": "enforcer"}),
        ),
        publication(
            "external-auditreports",
            "auditreport",
            "create",
            "go-json",
            json!({"syscall": "execve", "processingUnitID": "pu-1"}),
        ),
        publication(
            "external-fileaccessreports",
            "fileaccessreport",
            "create",
            "msgpack",
            json!({"path": "/etc/shadow", "action": "Reject"}),
        ),
        publication(
            "external-flowreports",
            "flowreport",
            "create",
            "msgpack",
            json!({"sourceID": "pu-1", "destinationPort": 443, "action": "Accept"}),
        ),
        publication(
            "external-eventlogs",
            "eventlog",
            "create",
            "json",
            json!({"level": "Error", "content": "policy conflict"}),
        ),
        // Not a topic the exporter subscribes to.
        publication("internal-metrics", "metric", "create", "msgpack", json!({})),
    ];
    let mut messages = publications.to_vec();
    // Not a publication: dead-lettered by the bahamut handler with the reason; the rest go on.
    messages.insert(3, json!({"topic": "external-eventlogs", "raw": "{not json"}));
    let extra = json!({"publications": messages, "ca": ca, "cert": cert, "key": key});
    let published = Client::Py.run(&nats.url(), "publish_bahamut", Some(&extra.to_string()));
    assert_eq!(published["published"], 8, "{published}");

    let records = kafka.consume("aporeto-events", 6, WAIT);
    let mut forwarded: Vec<(String, Value)> = records
        .iter()
        .map(|r| {
            let header = |name: &str| r["headers"][name].as_str().unwrap_or_default().to_owned();
            let data: Value = serde_json::from_str(r["value"].as_str().unwrap()).expect("values are the JSON data");
            let (identity, operation) = (data["identity"].as_str().unwrap(), data["operation"].as_str().unwrap());
            assert_eq!(r["key"].as_str(), Some(identity), "keyed by identity: {r}");
            assert_eq!((header("identity"), header("operation")), (identity.to_owned(), operation.to_owned()), "{r}");
            assert_eq!(header("ce_type"), format!("{identity}.{operation}"), "{r}");
            assert_eq!(header("ce_time"), "2026-12-07T10:00:00.250Z", "the publication's time: {r}");
            assert_eq!(header("eventyard-subject"), data["topic"].as_str().unwrap(), "{r}");
            assert_eq!(header("content-type"), "application/json", "{r}");
            (identity.to_owned(), data)
        })
        .collect();
    forwarded.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected: Vec<(String, Value)> = publications[..6]
        .iter()
        .map(|p| {
            let data = json!({"identity": p["identity"], "operation": p["operation"], "timestamp": p["timestamp"],
                              "topic": p["topic"], "entity": p["entity"]});
            (p["identity"].as_str().unwrap().to_owned(), data)
        })
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(forwarded, expected, "each publication once, decoded whatever its encoding: {records:?}");

    // Every publication is logged on stdout.
    let logged = eventually("publications logged", WAIT, || {
        let lines = router.stdout_lines();
        (lines.len() >= 6).then_some(lines)
    })
    .await;
    assert_eq!(logged.len(), 6, "{logged:?}");
    assert!(logged.iter().any(|l| l.contains("external-flowreports") && l.contains("flowreport")), "{logged:?}");
    assert!(!logged.iter().any(|l| l.contains("internal-metrics")), "{logged:?}");

    let dead = eventually("the message that is not a publication dead-lettered", WAIT, || {
        let dead = json_lines_under(&router.path("events/dead-letters"));
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0].1["deadletterreason"].as_str().unwrap();
    assert!(reason.contains("not JSON"), "{dead:?}");
    assert_eq!(dead[0].1["deadlettersubject"], "external-eventlogs", "{dead:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn notification_targets_send_reports_to_kafka_and_to_service_log_with_mapped_severities() {
    let kafka = KafkaBroker::start().await;
    kafka.create_topic("platform.notifications.ingress", 1);
    // Service Log fails the first request, so one record is only delivered by a retry.
    let service_log =
        HttpDestination::start(vec![StatusCode::SERVICE_UNAVAILABLE], StatusCode::CREATED, Duration::ZERO).await;
    let (brokers, service_addr) = (kafka.bootstrap(), service_log.addr.to_string());
    let local = [
        ("127.0.0.1:10133", "127.0.0.1:0"),
        ("127.0.0.1:9092", brokers.as_str()),
        ("127.0.0.1:8000", service_addr.as_str()),
    ];
    let plugins = [
        ("jq", "jq"),
        ("kafka-sink", "kafka-sink"),
        ("severity-map", "severity-map"),
        ("servicelog-sink", "servicelog-sink"),
    ];
    let router = example("notification-targets", &local, &plugins);

    // Total risk as a level's name, or as CCX computes it: its number, 1 (Low) to 4 (Critical).
    let report = |rule: &str, total_risk: Value| {
        json!({"org_id": "11789772", "cluster_uuid": "d484b150-3106-4d6a-96b4-e03c327a2f66",
               "cluster_name": "prod-1", "description": format!("{rule} found"),
               "rule_id": format!("ccx_rules_ocp.external.rules.{rule}|{}", rule.to_uppercase()),
               "reason": format!("Rule *{rule}* matched."), "total_risk": total_risk,
               "link": format!("https://console.redhat.com/openshift/insights/advisor/recommendations/{rule}")})
    };
    let mut unmappable = report("upgrade", json!("Severe"));
    unmappable["description"] = json!("unmappable");
    let mut incomplete = report("disk", json!(1));
    for field in ["org_id", "cluster_uuid"] {
        incomplete.as_object_mut().unwrap().remove(field);
    }
    let reports = [
        ("ccx.reports.upgrade", report("upgrade", json!("Important"))),
        ("ccx.reports.etcd", report("etcd", json!(1))),
        // Unknown total risk: Service Log cannot take it; the notification backend can.
        ("ccx.reports.unknown", unmappable),
        // No organization and no cluster: neither target can take it.
        ("ccx.reports.disk", incomplete),
        ("ccx.reports.api", report("api", json!(4))),
    ];
    for (subject, data) in &reports {
        let sent = reqwest::Client::new()
            .post(router.url(&format!("/v1/events/{subject}")))
            .header("content-type", "application/json")
            .body(data.to_string())
            .send()
            .await
            .expect("the router answers");
        assert_eq!(sent.status(), 202, "{subject}");
    }

    // The notification backend: every report with an organization as a notification message
    // valid against the Action schema, keyed by the organization.
    let records = kafka.consume("platform.notifications.ingress", 4, WAIT);
    assert_eq!(records.len(), 4, "{records:?}");
    let messages: Vec<Value> =
        records.iter().map(|r| serde_json::from_str(r["value"].as_str().unwrap()).expect("JSON value")).collect();
    let action_schema = common::repo_root().join("examples/notification-targets/schemas/Action.json");
    for ((record, message), errors) in
        records.iter().zip(&messages).zip(common::schema_errors(&action_schema, &messages))
    {
        assert!(errors.is_empty(), "{message}: {errors:?}");
        assert_eq!(record["key"], "11789772", "{record}");
        assert_eq!(
            (message["version"].as_str(), message["event_type"].as_str()),
            (Some("2.0.0"), Some("new-recommendation"))
        );
        assert_eq!(message["context"]["display_name"], "prod-1", "{message}");
        let payload = &message["events"][0]["payload"];
        assert!(payload["rule_id"].as_str().unwrap().starts_with("ccx_rules_ocp.external.rules."), "{message}");
    }
    let risks: BTreeSet<&str> =
        messages.iter().map(|m| m["events"][0]["payload"]["total_risk"].as_str().unwrap()).collect();
    assert_eq!(risks, BTreeSet::from(["1", "4", "Important", "Severe"]));

    // Service Log: the three complete, mappable reports, each body valid against the schema.
    let received = eventually("three records delivered", WAIT, || {
        let received = service_log.received();
        (received.len() >= 4).then_some(received)
    })
    .await;
    assert_eq!(received.len(), 4, "three records, one of them twice (503, then retried)");
    let records: Vec<Value> =
        received.iter().map(|request| serde_json::from_slice(&request.body).expect("JSON bodies")).collect();
    let schema = common::repo_root().join("plugins/servicelog-sink/schema/cluster-log.schema.json");
    let errors = common::schema_errors(&schema, &records);
    let mut delivered = std::collections::BTreeMap::new();
    for ((request, record), errors) in received.iter().zip(&records).zip(errors) {
        assert_eq!(request.path, "/api/service_logs/v1/cluster_logs");
        assert_eq!(request.headers["authorization"], "Bearer ocm-offline-token");
        assert!(errors.is_empty(), "{record}: {errors:?}");
        assert_eq!(record["service_name"], "CCX Notification Service");
        assert_eq!(record["internal_only"], false, "{record}");
        let description = record["description"].as_str().unwrap();
        assert!(description.starts_with("Rule *") && description.contains("](https://console.redhat.com/"), "{record}");
        delivered
            .insert(record["summary"].as_str().unwrap().to_owned(), record["severity"].as_str().unwrap().to_owned());
    }
    let expected = [("api found", "Critical"), ("etcd found", "Info"), ("upgrade found", "Major")];
    assert_eq!(delivered, expected.map(|(s, v)| (s.to_owned(), v.to_owned())).into_iter().collect());

    // What neither could take, with the reasons.
    let dead = eventually("three dead letters", WAIT, || {
        let dead = json_lines_under(&router.path("events/dead-letters"));
        (dead.len() == 3).then_some(dead)
    })
    .await;
    let has = |from: &str, reason: &str| {
        dead_letter_from(&dead, from)["deadletterreason"].as_str().is_some_and(|r| r.contains(reason))
    };
    assert!(has("to-service-log", "unknown level \"Severe\""), "{dead:?}");
    assert!(has("service-log", "/cluster_uuid: is required"), "{dead:?}");
    assert!(has("notification-backend", "no `org_id`"), "{dead:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_routers_on_a_nats_cluster_share_the_work_and_dead_letters() {
    let cluster = NatsCluster::start(3).await;
    let servers = cluster.servers_toml();
    let local = [
        ("\"nats://127.0.0.1:4221\", \"nats://127.0.0.1:4222\", \"nats://127.0.0.1:4223\"", servers.as_str()),
        ("port = 10132", "port = 0"),
        ("127.0.0.1:10133", "127.0.0.1:0"),
    ];
    let routers =
        [example("two-routers-on-a-nats-cluster", &local, &[]), example("two-routers-on-a-nats-cluster", &local, &[])];
    let client = reqwest::Client::new();
    for n in 0..20 {
        let router = &routers[n % 2];
        // The last one has a routing key the file sink will not make a directory of.
        let key = if n == 19 { ".hidden" } else { "eu" };
        let event = json!({"specversion": "1.0", "id": format!("o{n}"), "source": "/shop", "type": "order",
                           "routingkey": key, "data": {"n": n}});
        let response = client
            .post(router.url("/v1/events/orders.new"))
            .header("content-type", "application/cloudevents+json")
            .body(event.to_string())
            .send()
            .await
            .expect("the router answers");
        assert_eq!(response.status(), 202, "stored on the cluster");
    }
    // And one over NATS, through the second router's gateway.
    let nats = async_nats::connect(routers[1].nats_url()).await.expect("the gateway admits a client");
    nats.publish("orders.new", "{\"n\": 20}".into()).await.expect("publishes");
    nats.flush().await.expect("flushes");

    let written = |router: &RouterProcess| json_lines_under(&router.path("run/router-1/orders"));
    let per_router = eventually("every order written once, by one router or the other", WAIT, || {
        let counts = [written(&routers[0]).len(), written(&routers[1]).len()];
        (counts[0] + counts[1] == 20).then_some(counts)
    })
    .await;
    assert!(per_router.iter().all(|count| *count > 0), "both routers took a share: {per_router:?}");
    let dead = eventually("the unwritable order dead-lettered", WAIT, || {
        let dead: Vec<(String, Value)> =
            routers.iter().flat_map(|router| json_lines_under(&router.path("run/router-1/dead-letters"))).collect();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    let unwritable = dead_letter_from(&dead, "order-files");
    assert_eq!(unwritable["id"], "o19", "{unwritable}");
    assert_eq!(dead.len(), 1, "dead-lettered once");
}
