//! The router as a client of an external NATS server (seed 003): a `[sources.NAME]` of kind
//! `nats` brings the server's subjects into routes, and a sink of kind `nats` publishes events
//! there. Against a real nats-server, with the real binary.

use crate::common;

use std::time::Duration;

use common::nats::{NatsServer, RawClient};
use common::router::{RouterProcess, eventually, json_lines_under};
use eventyard::nats_client::NatsTls;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_source_feeds_routes_and_a_nats_sink_publishes_with_cloudevents_headers() {
    let upstream = NatsServer::start().await;
    let router = RouterProcess::start(&format!(
        r#"
[http]
listen = "127.0.0.1:0"
[plugins]
dir = "{{dir}}/plugins"
[sources.aporeto]
kind = "nats"
servers = ["{url}"]
subjects = ["squall-events", "activities", "external.>"]
[[route]]
name = "exported"
subject = ">"
sinks = ["files"]
[[route]]
name = "dead-letters"
subject = "$DLQ.>"
sinks = ["dead"]
[[route]]
name = "outbound"
subject = "orders.>"
sinks = ["upstream"]
[sinks.files]
kind = "file"
root = "{{dir}}/files"
[sinks.dead]
kind = "file"
root = "{{dir}}/dead"
[sinks.upstream]
kind = "nats"
servers = ["{url}"]
"#,
        url = upstream.url()
    ));

    let mut upstream_client = RawClient::connect(upstream.addr).await;
    upstream_client.send(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB orders.> 1\r\nPING\r\n").await;
    upstream_client.read_until("PONG\r\n", WAIT).await;

    // The source subscribes in the background: probe until a message comes through.
    let files = router.path("files");
    let deadline = tokio::time::Instant::now() + WAIT;
    while json_lines_under(&files).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the source never took a message");
        upstream_client.send(b"PUB activities 7\r\n\"probe\"\r\nPING\r\n").await;
        upstream_client.read_until("PONG\r\n", WAIT).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let activity = json!({"identity": "enforcer", "operation": "create"}).to_string();
    let binary =
        "NATS/1.0\r\nce-specversion: 1.0\r\nce-id: flow-1\r\nce-source: /enforcer\r\nce-type: flowreport\r\n\r\n";
    let broken = "NATS/1.0\r\nce-id: broken-1\r\n\r\n";
    let mut wire = format!("PUB squall-events {}\r\n{activity}\r\n", activity.len());
    wire += &format!("HPUB external.flowreports {} {}\r\n{binary}{{}}\r\n", binary.len(), binary.len() + 2);
    wire += &format!("HPUB external.eventlogs {} {}\r\n{broken}{{}}\r\n", broken.len(), broken.len() + 2);
    upstream_client.send(wire.as_bytes()).await;

    let lines = eventually("the source's events on disk", WAIT, || {
        let lines = json_lines_under(&files);
        let subjects = |prefix: &str| lines.iter().any(|(path, _)| path.starts_with(prefix));
        (subjects("squall-events/") && subjects("external.flowreports/")).then_some(lines)
    })
    .await;
    let squall = lines.iter().find(|(path, _)| path.starts_with("squall-events/")).map(|(_, e)| e).unwrap();
    // No content type on a plain NATS message: its payload travels as bytes.
    let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &activity);
    assert_eq!(squall["data_base64"], payload, "{squall}");
    assert_eq!(squall["source"], "/eventyard/nats");
    let flow = lines.iter().find(|(path, _)| path.starts_with("external.flowreports/")).map(|(_, e)| e).unwrap();
    assert_eq!((flow["id"].as_str(), flow["type"].as_str()), (Some("flow-1"), Some("flowreport")), "{flow}");
    assert!(!lines.iter().any(|(path, _)| path.starts_with("external.eventlogs/")), "the broken message is no event");
    let dead = router.path("dead");
    let dead =
        eventually("the broken message dead-lettered", WAIT, || json_lines_under(&dead).into_iter().next()).await.1;
    assert_eq!(dead["deadlettersubject"], "external.eventlogs", "{dead}");
    assert!(dead["deadletterreason"].as_str().unwrap().contains("specversion"), "{dead}");

    // The other way: an HTTP event routed to the NATS sink reaches the upstream server's subscriber.
    let event =
        json!({"specversion": "1.0", "id": "o-1", "source": "/shop", "type": "order.created", "data": {"n": 1}});
    assert_eq!(router.post_event("orders.eu", &event).await, 202);
    let message = upstream_client.read_until("{\"n\":1}\r\n", WAIT).await;
    assert!(message.contains("HMSG orders.eu 1 "), "{message}");
    assert!(message.contains("ce-id: o-1\r\n") && message.contains("ce-type: order.created\r\n"), "{message}");
}

/// A client of `url` over TLS as the router's sources and sinks connect (`NatsTls::apply`).
async fn tls_client(url: &str, tls: NatsTls) -> Result<async_nats::Client, String> {
    tls.apply(async_nats::ConnectOptions::new()).connect(url).await.map_err(|err| err.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_source_and_sink_reach_a_server_that_requires_tls_and_client_certificates() {
    let certs = common::tempdir();
    let pki = common::tls::pki(certs.path());
    let path = |p: &std::path::Path| p.display().to_string();
    let upstream = NatsServer::start_requiring_client_certificates(&pki).await;
    assert!(
        tls_client(&upstream.url(), NatsTls { ca_path: Some(pki.ca.clone()), ..NatsTls::default() }).await.is_err(),
        "the server refuses a client without a certificate"
    );
    let identity = NatsTls {
        ca_path: Some(pki.ca.clone()),
        cert_path: Some(pki.client.0.clone()),
        key_path: Some(pki.client.1.clone()),
    };
    // Roots from `ca_path` replace the system's: a server whose certificate does not chain to them
    // (here the CA named is a client's certificate) is refused.
    let wrong_ca = NatsTls { ca_path: Some(pki.stranger.0.clone()), ..identity.clone() };
    assert!(tls_client(&upstream.url(), wrong_ca).await.is_err(), "a server the CA did not sign is refused");
    let client = tls_client(&upstream.url(), identity).await.expect("a client with its certificate connects");

    let tls = format!(
        r#"tls = {{ ca_path = "{}", cert_path = "{}", key_path = "{}" }}"#,
        path(&pki.ca),
        path(&pki.client.0),
        path(&pki.client.1)
    );
    let _router = RouterProcess::start(&format!(
        r#"
[http]
listen = "127.0.0.1:0"
[plugins]
dir = "{{dir}}/plugins"
[sources.aporeto]
kind = "nats"
servers = ["{url}"]
subjects = ["squall-events"]
{tls}
[[route]]
name = "back-upstream"
subject = "squall-events"
sinks = ["upstream"]
[sinks.upstream]
kind = "nats"
servers = ["{url}"]
subject = "exported"
{tls}
"#,
        url = upstream.url()
    ));

    // Through the source over TLS, a route, and the sink over TLS, back to this client.
    let mut exported = client.subscribe("exported").await.expect("subscribe");
    client.flush().await.expect("flush");
    // The source subscribes in the background: publish until a message comes back.
    let deadline = tokio::time::Instant::now() + WAIT;
    let message = loop {
        assert!(tokio::time::Instant::now() < deadline, "no message came back through the router");
        client.publish("squall-events", "{\"identity\":\"enforcer\"}".into()).await.expect("publish");
        let next = tokio::time::timeout(Duration::from_millis(200), futures_util::StreamExt::next(&mut exported));
        if let Ok(Some(message)) = next.await {
            break message;
        }
    };
    // A plain message stays plain, on the sink's subject.
    assert_eq!((message.subject.as_str(), message.headers), ("exported", None));
    assert_eq!(&message.payload[..], b"{\"identity\":\"enforcer\"}");
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_messages_take_their_attributes_from_their_content_over_http_and_from_a_source() {
    let upstream = NatsServer::start().await;
    let router = RouterProcess::start(&format!(
        r#"
[http]
listen = "127.0.0.1:0"
[plugins]
dir = "{{dir}}/plugins"
[[http.raw]]
subjects = "orders.>"
id = "/order/id"
type = "/kind"
routingkey = {{ header = "X-Region" }}
[sources.upstream]
kind = "nats"
servers = ["{url}"]
subjects = ["shipments"]
raw = {{ id = "/id", type = {{ header = "Kind" }} }}
[[route]]
name = "european-orders"
subject = "orders.>"
routing_key = ["eu-*"]
sinks = ["files"]
[[route]]
name = "shipments"
subject = "shipments"
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{{dir}}/files"
"#,
        url = upstream.url()
    ));
    let post = |subject: &str, region: &str, body: serde_json::Value| {
        let request = reqwest::Client::new().post(router.url(&format!("/v1/events/{subject}")));
        request.header("X-Region", region).body(body.to_string()).send()
    };
    let order = |id: serde_json::Value| json!({"order": {"id": id}, "kind": "order.created"});
    assert_eq!(post("orders.new", "eu-west", order(json!("o-1"))).await.unwrap().status(), 202);
    // Not European: the route lets it by, so no route takes it; counted, not kept (no [unrouted]).
    assert_eq!(post("orders.new", "us-east", order(json!("o-2"))).await.unwrap().status(), 202);
    // An id that is no text is refused with where it was looked for.
    let refused = post("orders.new", "eu-west", order(json!({"n": 3}))).await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("/order/id"));
    // No rule for this subject: the host's attributes.
    assert_eq!(post("other.thing", "eu-west", order(json!("o-4"))).await.unwrap().status(), 202);

    let client = async_nats::connect(upstream.url()).await.expect("connect upstream");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Kind", "shipment.sent");
    let files = router.path("files");
    let written = eventually("the order and the shipment written", WAIT, || {
        let written = json_lines_under(&files);
        if written.len() < 2 {
            // The source subscribes in the background: publish until the shipment arrives.
            let (client, headers) = (client.clone(), headers.clone());
            tokio::spawn(
                async move { client.publish_with_headers("shipments", headers, r#"{"id": "s-1"}"#.into()).await },
            );
        }
        (written.len() >= 2).then_some(written)
    })
    .await;
    let order = written.iter().map(|(_, e)| e).find(|e| e["id"] == "o-1").expect("the order");
    assert_eq!((&order["type"], &order["routingkey"]), (&json!("order.created"), &json!("eu-west")), "{order}");
    let shipment = written.iter().map(|(_, e)| e).find(|e| e["id"] == "s-1").expect("the shipment");
    assert_eq!(shipment["type"], "shipment.sent", "{shipment}");
    assert_eq!(router.metric(r#"eventyard_unrouted_events_total{family="orders"}"#).await, 1);
    assert_eq!(router.metric(r#"eventyard_unrouted_events_total{family="other"}"#).await, 1);
}
