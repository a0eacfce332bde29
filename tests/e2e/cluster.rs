//! Cluster mode end to end: real `nats-server` nodes with JetStream on loopback, real router
//! processes in `[broker] mode = "nats"`, events over HTTP and NATS.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::nats::{NatsCluster, NatsServer, RawClient};
use common::router::{RouterProcess, eventually, json_lines_under};
use futures_util::StreamExt as _;
use serde_json::json;

/// A router on `servers` with one route, `orders.>` into a file sink under `{dir}/out`.
fn router_config(servers: &str, extra: &str) -> String {
    format!(
        r#"
[broker]
mode = "nats"
servers = [{servers}]
ack_wait_ms = 2000
{extra}

[service]
host = "127.0.0.1"
port = 0

[http]
listen = "127.0.0.1:0"

[plugins]
dir = "{{dir}}/plugins"
watch = false

[[route]]
name = "orders"
subject = "orders.>"
sinks = ["out"]

[sinks.out]
kind = "file"
root = "{{dir}}/out"
"#
    )
}

/// How often each numbered event reached the sinks of `routers`.
fn arrivals(routers: &[&RouterProcess]) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for router in routers {
        for (_, event) in json_lines_under(&router.path("out")) {
            let n: u64 = event["id"].as_str().and_then(|id| id.parse().ok()).expect("events are numbered");
            *seen.entry(n).or_default() += 1;
        }
    }
    seen
}

fn numbered(n: u64) -> serde_json::Value {
    json!({"specversion": "1.0", "id": n.to_string(), "source": "/load", "type": "n", "data": {"n": n}})
}

/// Waits up to a minute for events `0..n` to reach the sinks of `routers`; returns how often each
/// arrived, the missing ones, and the number of duplicates.
async fn arrivals_of(routers: &[&RouterProcess], n: u64) -> (BTreeMap<u64, usize>, Vec<u64>, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen = arrivals(routers);
        if seen.len() as u64 == n || Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let missing: Vec<u64> = (0..n).filter(|n| !seen.contains_key(n)).collect();
    let duplicates = seen.values().map(|count| count - 1).sum();
    (seen, missing, duplicates)
}

/// Posts numbered event `n`, trying each router in turn until one accepts it (202); returns the
/// refusals and errors it met on the way.
async fn publish(client: &reqwest::Client, urls: &[String], n: u64) -> u64 {
    let body = numbered(n).to_string();
    post_until_accepted(client, urls, n as usize, "application/cloudevents+json", body).await
}

/// Posts `body` to the routers at `urls`, from the `first`th on, trying each in turn until one
/// accepts it (202); returns the refusals and errors it met on the way.
async fn post_until_accepted(
    client: &reqwest::Client,
    urls: &[String],
    first: usize,
    content_type: &str,
    body: String,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (retries, url) in urls.iter().cycle().skip(first % urls.len()).enumerate() {
        let response = client
            .post(url)
            .header("content-type", content_type)
            .timeout(Duration::from_secs(20))
            .body(body.clone())
            .send()
            .await;
        if response.is_ok_and(|r| r.status() == 202) {
            return retries as u64;
        }
        assert!(Instant::now() < deadline, "no router accepted {body:.60} within a minute");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!("the router list cycles")
}

/// Waits until every node of `cluster` knows of a subscriber to cluster subject `subject`: a
/// router's plain subscription has spread through the cluster. Until then a request there fails at
/// once with "no responders"; after, it goes unanswered. The request is a CloudEvent of version
/// 0.3, which no router decodes, so no client gets it.
async fn wait_for_interest(cluster: &NatsCluster, subject: &str) {
    let mut nodes = Vec::new();
    for url in cluster.urls() {
        nodes.push(async_nats::connect(url.as_str()).await.expect("a node accepts a client"));
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-specversion", "0.3");
    let (nodes, headers) = (&nodes, &headers);
    let what = format!("a subscriber to {subject} on every NATS node");
    common::eventually_async(&what, Duration::from_secs(20), move || async move {
        let asked = nodes.iter().map(|node| {
            let request = async_nats::Request::new().headers(headers.clone()).timeout(Some(Duration::from_millis(100)));
            node.send_request(subject.to_owned(), request)
        });
        let answers = futures_util::future::join_all(asked).await;
        let heard = |answer: &Result<async_nats::Message, async_nats::RequestError>| match answer {
            Ok(_) => true,
            Err(err) => err.kind() == async_nats::RequestErrorKind::TimedOut,
        };
        answers.iter().all(heard).then_some(())
    })
    .await;
}

/// Two routers share one route's work on a three-node cluster; during the run one router is
/// SIGKILLed and one NATS node stopped. Every acknowledged event reaches a sink at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_lose_nothing_when_a_router_and_a_nats_node_die() {
    const N: u64 = 600;
    let mut cluster = NatsCluster::start(3).await;
    let config = router_config(&cluster.servers_toml(), "");
    let mut doomed = RouterProcess::start(&config);
    let survivor = RouterProcess::start(&config);
    let urls = [doomed.url("/v1/events/orders.new"), survivor.url("/v1/events/orders.new")];

    let client = reqwest::Client::new();
    let mut retries = 0;
    for n in 0..N {
        if n == N / 3 {
            doomed.kill();
        }
        if n == N / 2 {
            cluster.stop(0);
        }
        retries += publish(&client, &urls, n).await;
    }

    let (seen, missing, duplicates) = arrivals_of(&[&doomed, &survivor], N).await;
    println!(
        "cluster failover: {N} events acknowledged, {} delivered, {duplicates} duplicates, {retries} publish retries",
        seen.len()
    );
    assert!(missing.is_empty(), "events lost: {missing:?}");
    assert!(seen.keys().all(|n| *n < N), "only published events arrive");
}

/// Under load a router stores the events of many publishes as one message of the route stream (a
/// group). Groups are kept as lone events are: with concurrent batches on two routers and one of
/// them SIGKILLed mid-run, every acknowledged event reaches a sink, and the stream holds fewer
/// messages than events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_in_groups_survive_a_router_killed_mid_run() {
    const CLIENTS: u64 = 8;
    const BATCHES: u64 = 25;
    const SIZE: u64 = 50;
    const N: u64 = CLIENTS * BATCHES * SIZE;
    let cluster = NatsCluster::start(3).await;
    let config = router_config(&cluster.servers_toml(), "");
    let mut doomed = RouterProcess::start(&config);
    let survivor = RouterProcess::start(&config);
    let urls = vec![doomed.url("/v1/events/orders.new"), survivor.url("/v1/events/orders.new")];

    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut publishers = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (urls, accepted) = (urls.clone(), accepted.clone());
        publishers.spawn(async move {
            let client = reqwest::Client::new();
            let mut retries = 0;
            for b in 0..BATCHES {
                let first = (c * BATCHES + b) * SIZE;
                let batch = serde_json::Value::from((first..first + SIZE).map(numbered).collect::<Vec<_>>());
                let batch_type = "application/cloudevents-batch+json";
                retries += post_until_accepted(&client, &urls, (c + b) as usize, batch_type, batch.to_string()).await;
                accepted.fetch_add(SIZE, std::sync::atomic::Ordering::Relaxed);
            }
            retries
        });
    }
    eventually("a third of the load accepted", Duration::from_secs(60), || {
        (accepted.load(std::sync::atomic::Ordering::Relaxed) >= N / 3).then_some(())
    })
    .await;
    doomed.kill();
    let retries: u64 = publishers.join_all().await.into_iter().sum();

    let (_, missing, duplicates) = arrivals_of(&[&doomed, &survivor], N).await;
    let jetstream = async_nats::jetstream::new(cluster.client().await);
    let mut stream = jetstream.get_stream("eventyard_route_orders").await.expect("the route's stream");
    let messages = stream.info().await.expect("stream info").state.last_sequence;
    println!(
        "groups: {N} events acknowledged in {messages} stored messages, {duplicates} duplicates, {retries} retries"
    );
    assert!(missing.is_empty(), "{} events lost, the first: {:?}", missing.len(), &missing[..missing.len().min(20)]);
    assert!(messages < N / 4, "{N} events were stored in {messages} messages: hardly grouped");
}

/// Both routers pull the route: the work is shared, and a publish to either reaches NATS clients
/// of the other; the reload report of one reaches the system account on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_share_routes_and_subscribers_across_the_cluster() {
    let cluster = NatsCluster::start(3).await;
    let system = "[service.auth]\nsystem_account = \"SYS\"\n[[service.auth.users]]\nuser = \"sys\"\npassword = \"sys\"\naccount = \"SYS\"\n[[service.auth.users]]\nuser = \"app\"\npassword = \"app\"\n";
    let config = router_config(&cluster.servers_toml(), "").replace("[http]", &format!("{system}\n[http]"))
        + common::router::ADMIN;
    let (first, mut second) = (RouterProcess::start(&config), RouterProcess::start(&config));

    let app = async_nats::ConnectOptions::with_user_and_password("app".into(), "app".into())
        .connect(second.nats_url())
        .await
        .expect("the gateway admits app");
    let mut orders = app.subscribe("orders.>").await.expect("subscribes");
    let sys = async_nats::ConnectOptions::with_user_and_password("sys".into(), "sys".into())
        .connect(second.nats_url())
        .await
        .expect("the gateway admits the system account");
    let mut reloads = sys.subscribe("$SYS.EVENTYARD.RELOAD").await.expect("subscribes");
    app.flush().await.expect("flushes");
    sys.flush().await.expect("flushes");
    // Subscriptions reach the other router through the cluster, which takes a moment. (Reload
    // reports reach the second router through its own subscription, made when it started.)
    wait_for_interest(&cluster, "eventyard.event.orders.probe").await;

    let client = reqwest::Client::new();
    for n in 0..40 {
        publish(&client, &[first.url("/v1/events/orders.new")], n).await;
    }
    let message = tokio::time::timeout(Duration::from_secs(10), orders.next())
        .await
        .expect("a client of the second router gets what the first accepted")
        .expect("a message");
    assert_eq!(message.subject.as_str(), "orders.new");
    assert_eq!(message.headers.as_ref().and_then(|h| h.get("ce-source")).map(|v| v.as_str()), Some("/load"));

    let deadline = Instant::now() + Duration::from_secs(20);
    while arrivals(&[&first, &second]).len() < 40 {
        assert!(Instant::now() < deadline, "not every event reached a sink");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (a, b) = (arrivals(&[&first]).len(), arrivals(&[&second]).len());
    println!("shared work: first router {a} events, second {b}");
    assert_eq!(a + b, 40, "each event once");

    // A route added by a reload on the first router only, as when a config change rolls from router
    // to router. Its reload report reaches the system account on the second router.
    let jobs = "[[route]]\nname = \"jobs\"\nsubject = \"jobs.>\"\nsinks = [\"out\"]\n";
    let config_file = first.path("eventyard.toml");
    let text = std::fs::read_to_string(&config_file).expect("the config is there");
    std::fs::write(&config_file, format!("{jobs}{text}")).expect("the config is rewritten");
    let status = first.admin("/v1/admin/reload").await.status();
    assert!(status.is_success());
    let report = tokio::time::timeout(Duration::from_secs(10), reloads.next())
        .await
        .expect("the first router's reload report reaches the system account on the second")
        .expect("a message");
    let report: serde_json::Value = serde_json::from_slice(&report.payload).expect("JSON");
    assert_eq!((report["kind"].as_str(), report["result"].as_str()), (Some("config"), Some("ok")), "{report}");
    assert_eq!(report["changes"]["routes_added"], json!(["jobs"]), "{report}");

    // The second router learns the new route from the cluster's route directory: what it accepts
    // for the route is stored, and the first router delivers it. The route the reload kept pulls
    // into its new chain.
    eventually("the second router to learn the jobs route", Duration::from_secs(20), || {
        let learned = |line: &String| {
            line.contains("storing events for a route another router runs") && line.contains(r#""route":"jobs""#)
        };
        second.logs().iter().any(learned).then_some(())
    })
    .await;
    for n in 100..110 {
        publish(&client, &[second.url("/v1/events/jobs.run")], n).await;
        publish(&client, &[second.url("/v1/events/orders.new"), first.url("/v1/events/orders.new")], n + 100).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while arrivals(&[&first, &second]).len() < 60 {
        assert!(Instant::now() < deadline, "events after the reload did not all arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A queue group spans the routers: each message reaches one member, whichever router it is on; a
/// plain subscriber gets each message once, whether it came from its own router or another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_span_the_routers_and_plain_subscribers_get_each_message_once() {
    let cluster = NatsCluster::start(3).await;
    let config = router_config(&cluster.servers_toml(), "");
    let (first, second) = (RouterProcess::start(&config), RouterProcess::start(&config));
    let (a, b) = (
        async_nats::connect(first.nats_url()).await.expect("connects"),
        async_nats::connect(second.nats_url()).await.expect("connects"),
    );
    let mut on_first = a.queue_subscribe("jobs.>", "workers".into()).await.expect("subscribes");
    let mut on_second = b.queue_subscribe("jobs.>", "workers".into()).await.expect("subscribes");
    let mut plain = a.subscribe("jobs.>").await.expect("subscribes");
    a.flush().await.expect("flushes");
    b.flush().await.expect("flushes");
    // Subscriptions spread through the cluster: wait until every node knows of a subscriber to
    // `jobs.>` (the three go out together).
    wait_for_interest(&cluster, "eventyard.event.jobs.probe").await;

    for n in 0..40 {
        let publisher = if n % 2 == 0 { &a } else { &b };
        publisher.publish(format!("jobs.{n}"), "job".into()).await.expect("publishes");
    }
    a.flush().await.expect("flushes");
    b.flush().await.expect("flushes");

    let mut taken = [0, 0];
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while taken[0] + taken[1] < 40 || seen < 40 {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::select! {
            Some(_) = on_first.next() => taken[0] += 1,
            Some(_) = on_second.next() => taken[1] += 1,
            Some(_) = plain.next() => seen += 1,
            _ = tokio::time::sleep(left) => panic!("taken {taken:?}, seen {seen} of 40"),
        }
    }
    // Nothing more comes: no message went to two members, none reached the plain subscriber twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for subscription in [&mut on_first, &mut on_second, &mut plain] {
        let extra = tokio::time::timeout(Duration::from_millis(10), subscription.next()).await;
        assert!(extra.is_err(), "a message arrived twice");
    }
    println!("queue group across routers: {taken:?}");
    assert!(taken.iter().all(|n| *n > 0), "both routers' members took messages: {taken:?}");
}

#[tokio::test]
async fn no_reachable_server_is_a_clear_error() {
    let port = common::free_port();
    let stderr = RouterProcess::start_failure(&router_config(
        &format!("\"nats://127.0.0.1:{port}\""),
        "connect_timeout_ms = 500",
    ));
    assert!(stderr.contains("no NATS server of") && stderr.contains("is reachable"), "{stderr}");
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error() {
    let server = NatsServer::start_with(
        common::free_port(),
        &["-js".into(), "--user".into(), "ey".into(), "--pass".into(), "right".into()],
    )
    .await;
    let stderr = RouterProcess::start_failure(&router_config(
        &format!("\"{}\"", server.url()),
        "user = \"ey\"\npassword = \"wrong\"",
    ));
    assert!(stderr.contains("refused the credentials"), "{stderr}");
}

#[tokio::test]
async fn jetstream_disabled_is_a_clear_error() {
    let server = NatsServer::start().await;
    let stderr = RouterProcess::start_failure(&router_config(&format!("\"{}\"", server.url()), ""));
    assert!(stderr.contains("JetStream is not available") && stderr.contains("-js"), "{stderr}");
}

#[tokio::test]
async fn a_stream_with_other_settings_is_a_clear_error() {
    let dir = common::tempdir();
    let server =
        NatsServer::start_with(common::free_port(), &["-js".into(), "-sd".into(), dir.path().display().to_string()])
            .await;
    let client = async_nats::connect(server.url()).await.expect("connects");
    async_nats::jetstream::new(client)
        .create_stream(async_nats::jetstream::stream::Config {
            name: "eventyard_route_orders".into(),
            subjects: vec!["eventyard.route.orders.>".into()],
            ..Default::default()
        })
        .await
        .expect("the stream is made");
    let stderr = RouterProcess::start_failure(&router_config(&format!("\"{}\"", server.url()), "replicas = 1"));
    assert!(
        stderr.contains("stream `eventyard_route_orders` exists with settings") && stderr.contains("WorkQueue"),
        "{stderr}"
    );
}

#[tokio::test]
async fn more_replicas_than_servers_is_a_clear_error() {
    let dir = common::tempdir();
    let args = ["-js".into(), "-sd".into(), dir.path().display().to_string()];
    let server = NatsServer::start_with(common::free_port(), &args).await;
    let stderr = RouterProcess::start_failure(&router_config(&format!("\"{}\"", server.url()), "replicas = 3"));
    assert!(
        stderr.contains("JetStream refused to create stream") && stderr.contains("`replicas` may not exceed"),
        "{stderr}"
    );
}

/// `202` and `+OK` mean "stored by JetStream": with the cluster gone, HTTP answers 503 and a
/// verbose NATS client gets -ERR instead of +OK; the router stays up, takes events again once the
/// cluster is back, and a retried event is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jetstream_publishes_are_refused_and_a_retry_is_stored_once() {
    let dir = common::tempdir();
    let port = common::free_port();
    let args = ["-js".to_owned(), "-sd".to_owned(), dir.path().display().to_string()];
    let server = NatsServer::start_with(port, &args).await;
    let config = router_config(&format!("\"{}\"", server.url()), "replicas = 1\npublish_timeout_ms = 1000");
    let router = RouterProcess::start(&config);
    let event = |id: &str| json!({"specversion": "1.0", "id": id, "source": "/t", "type": "t"});
    assert_eq!(router.post_event("orders.new", &event("stored")).await, 202);
    let mut nats = RawClient::connect(router.nats.expect("the gateway listens")).await;
    nats.send(b"CONNECT {\"verbose\":true}\r\n").await;
    nats.read_until("+OK\r\n", Duration::from_secs(5)).await;
    nats.send(b"PUB orders.nats 2\r\nhi\r\n").await;
    nats.read_until("+OK\r\n", Duration::from_secs(5)).await;
    // Delivered and acknowledged before the server goes: a message whose ack is still on its way when
    // the server dies comes again after the restart (at least once), which is not what this tests.
    let delivered = || json_lines_under(&router.path("out")).iter().any(|(_, e)| e["id"] == "stored");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !delivered() {
        assert!(Instant::now() < deadline, "the stored event was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    drop(server);
    assert_eq!(router.post_event("orders.new", &event("refused")).await, 503);
    nats.send(b"PUB orders.nats 2\r\nhi\r\n").await;
    let refused = nats.read_until("\r\n", Duration::from_secs(10)).await;
    assert!(refused.starts_with("-ERR 'Publish Not Stored"), "{refused}");

    // A 503 is no promise that nothing was stored (the publish may still reach JetStream once it is
    // back): the client retries with the same id, and JetStream stores it once.
    let _server = NatsServer::start_with(port, &args).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while router.post_event("orders.new", &event("refused")).await != 202 {
        assert!(Instant::now() < deadline, "the router did not take events again once JetStream was back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let count = |ids: &[String], id: &str| ids.iter().filter(|seen| *seen == id).count();
    let mut ids: Vec<String> = Vec::new();
    while count(&ids, "stored") + count(&ids, "refused") < 2 {
        assert!(Instant::now() < deadline, "stored events were not delivered: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lines = json_lines_under(&router.path("out"));
        ids = lines.iter().map(|(_, e)| e["id"].as_str().unwrap_or_default().to_owned()).collect();
    }
    // A check that nothing more comes: the sleep gives a second copy of either event time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = json_lines_under(&router.path("out"));
    let ids: Vec<String> = lines.iter().map(|(_, e)| e["id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!((count(&ids, "stored"), count(&ids, "refused")), (1, 1), "each event once: {ids:?}");
}

/// The other ways in: a token over mutual TLS, and an nkey. Each router starts and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_mutual_tls_and_an_nkey_are_accepted() {
    let dir = common::tempdir();
    let pki = common::tls::pki(dir.path());
    let path = |p: &std::path::Path| p.display().to_string();
    let tls_args: Vec<String> = [
        "-js",
        "-sd",
        &path(&dir.path().join("tls-store")),
        "--auth",
        "s3cret",
        "--tlsverify",
        "--tlscert",
        &path(&pki.server.0),
        "--tlskey",
        &path(&pki.server.1),
        "--tlscacert",
        &path(&pki.ca),
    ]
    .map(str::to_owned)
    .to_vec();
    let tls_server = NatsServer::start_with(common::free_port(), &tls_args).await;
    let tls = format!(
        "replicas = 1\ntoken = \"s3cret\"\n[broker.tls]\nca_path = \"{}\"\ncert_path = \"{}\"\nkey_path = \"{}\"",
        path(&pki.ca),
        path(&pki.client.0),
        path(&pki.client.1)
    );

    let user = nkeys::KeyPair::new_user();
    let port = common::free_port();
    let server_config = dir.path().join("nkey.conf");
    let store = path(&dir.path().join("nkey-store"));
    let public = user.public_key();
    let text =
        format!("jetstream {{ store_dir: \"{store}\" }}\nauthorization {{ users = [ {{ nkey: \"{public}\" }} ] }}\n");
    std::fs::write(&server_config, text).expect("the server config is written");
    let nkey_server = NatsServer::start_with(port, &["-c".into(), path(&server_config)]).await;
    let nkey = format!("replicas = 1\nnkey = \"{}\"", user.seed().expect("a seed"));

    for (server, extra) in [(&tls_server, tls), (&nkey_server, nkey)] {
        let url = server.url().replace("nats://", if extra.contains("tls") { "tls://" } else { "nats://" });
        let router = RouterProcess::start(&router_config(&format!("\"{url}\""), &extra));
        let event = json!({"specversion": "1.0", "id": "in", "source": "/t", "type": "t"});
        assert_eq!(router.post_event("orders.new", &event).await, 202);
        let deadline = Instant::now() + Duration::from_secs(10);
        while json_lines_under(&router.path("out")).is_empty() {
            assert!(Instant::now() < deadline, "the event was not delivered through {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
