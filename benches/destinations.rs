//! Seed destinations through Eventyard against the same client writing directly, side by side on
//! this machine, 1 KiB events:
//! - Kafka: HTTP ingest → route → the `kafka-sink` plugin → the host's librdkafka producer → Tansu,
//!   timed until the topic holds every record; against that producer (same settings: acks=all,
//!   idempotent) sending the same records itself.
//! - REST: HTTP ingest → route → the `servicelog-sink` plugin (schema check,
//!   `wasi:http` POST per record) → a local HTTP server, timed until it has every record; against
//!   reqwest POSTing the same records one after another on a kept-alive connection.
//!
//! Prints events/s for each and the ratio Eventyard / direct.
//!
//! Run: `cargo bench --bench benchmarks -- destinations` (or `scripts/bench`). Needs `tansu` on PATH
//! (`scripts/setup --test` installs it); without it, only the REST rows print.

use std::process::Command;
use std::time::{Duration, Instant};

use eventyard::capability::{KafkaProducer as _, KafkaRecord};
use eventyard::kafka::{KafkaConnection, KafkaSettings};
use serde_json::{Value, json};

use crate::common;

use common::bench_row as row;

use common::http_server::HttpDestination;
use common::kafka::KafkaBroker;
use common::router::RouterProcess;

const KAFKA_EVENTS: usize = 20_000;
const REST_EVENTS: usize = 2_000;
/// The Kafka sink's acknowledged deliveries.
const KAFKA_DELIVERED: &str = "eventyard_sink_delivered_total{sink=\"kafka\"}";
/// Records sent (untimed) before the timed run.
const WARM_UP: usize = 100;
/// Events per HTTP ingest request.
const INGEST_BATCH: usize = 100;

/// A ServiceLog-ready report of about 1 KiB, number `n`.
fn report(n: usize) -> Value {
    json!({
        "cluster_uuid": "d484b150-3106-4d6a-96b4-e03c327a2f66",
        "summary": format!("report {n}"),
        "description": "x".repeat(800),
        "severity": "Warning",
        "timestamp": "2022-07-12T07:08:09Z",
    })
}

/// Posts `count` reports to the router in batches, from four concurrent senders.
async fn ingest(router: &RouterProcess, count: usize) {
    let client = reqwest::Client::new();
    let url = router.url("/v1/events/bench.reports");
    let batches: Vec<String> = (0..count)
        .collect::<Vec<_>>()
        .chunks(INGEST_BATCH)
        .map(|chunk| {
            let events: Vec<Value> = chunk
                .iter()
                .map(|&n| {
                    json!({"specversion": "1.0", "id": n.to_string(), "source": "/bench", "type": "report",
                           "datacontenttype": "application/json", "data": report(n)})
                })
                .collect();
            Value::Array(events).to_string()
        })
        .collect();
    let mut senders = tokio::task::JoinSet::new();
    for part in batches.chunks(batches.len().div_ceil(4)) {
        let (client, url, part) = (client.clone(), url.clone(), part.to_vec());
        senders.spawn(async move {
            for body in part {
                let response = common::post_batch(&client, &url, body).await;
                assert_eq!(response.status(), 202);
            }
        });
    }
    while senders.join_next().await.is_some() {}
}

fn kafka_settings(broker: &KafkaBroker) -> KafkaSettings {
    toml::from_str(&format!("brokers = [\"{}\"]", broker.bootstrap())).expect("settings")
}

async fn kafka_rows() {
    let installed = Command::new("tansu").arg("--version").output().is_ok_and(|out| out.status.success());
    if !installed {
        println!("| tansu not found: no Kafka rows | | | |");
        return;
    }
    let broker = KafkaBroker::start().await;
    broker.create_topic("direct", 1);
    broker.create_topic("via-eventyard", 1);

    // Direct: the host's producer, the same records.
    let producer = KafkaConnection::new(&kafka_settings(&broker)).expect("producer");
    let records: Vec<KafkaRecord> = (0..KAFKA_EVENTS)
        .map(|n| KafkaRecord {
            topic: "direct".into(),
            key: None,
            value: report(n).to_string().into_bytes(),
            headers: vec![],
        })
        .collect();
    // Connected and with its producer id first, as the router's producer is when events come.
    producer.send(records[..WARM_UP].to_vec()).await.expect("direct warm-up");
    // Every record queued at once, then every acknowledgement awaited: librdkafka at its best.
    let started = Instant::now();
    producer.send(records).await.expect("direct send");
    let direct = KAFKA_EVENTS as f64 / started.elapsed().as_secs_f64();

    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndir = \"{{dir}}/plugins\"\n[kafka]\nbrokers = [\"{}\"]\n\
         [plugin.kafka-sink]\nconfig = {{ topic = \"via-eventyard\" }}\n[plugin.kafka-sink.capabilities]\nkafka = true\n[plugin.kafka-sink.limits]\ntimeout_ms = 30000\n\
         [[route]]\nname = \"to-kafka\"\nsubject = \"bench.>\"\nsinks = [\"kafka\"]\n\
         [sinks.kafka]\nkind = \"plugin\"\nplugin = \"kafka-sink\"\nbatch_size = 2000\n",
        broker.bootstrap()
    );
    let router = RouterProcess::start_with_plugins(&config, &[("kafka-sink", "kafka-sink")]);
    // Timed until the sink has Kafka's acknowledgement of every record, as the direct run is.
    ingest(&router, WARM_UP).await;
    while router.metric(KAFKA_DELIVERED).await < WARM_UP as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    ingest(&router, KAFKA_EVENTS).await;
    let ingested = started.elapsed();
    while router.metric(KAFKA_DELIVERED).await < (WARM_UP + KAFKA_EVENTS) as u64 {
        assert!(started.elapsed() < Duration::from_secs(120), "Kafka never acknowledged every record");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let ours = KAFKA_EVENTS as f64 / elapsed.as_secs_f64();
    for topic in ["direct", "via-eventyard"] {
        let records = broker.consume(topic, WARM_UP + KAFKA_EVENTS, Duration::from_secs(60)).len();
        assert_eq!(records, WARM_UP + KAFKA_EVENTS, "records in {topic}");
    }
    row("kafka: direct (librdkafka, acks=all)", direct, "events/s", "");
    let note = format!(
        "{:.2}x direct; HTTP ingest took {:.0}% of the time",
        ours / direct,
        100.0 * ingested.as_secs_f64() / elapsed.as_secs_f64()
    );
    row("kafka: HTTP → Eventyard → kafka-sink", ours, "events/s", &note);
}

async fn rest_rows() {
    let server = HttpDestination::start(vec![], axum::http::StatusCode::CREATED, Duration::ZERO).await;
    // Direct: one client, one record at a time, as the sink posts them.
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/service_logs/v1/cluster_logs", server.addr);
    let bodies: Vec<String> = (0..REST_EVENTS).map(|n| report(n).to_string()).collect();
    let started = Instant::now();
    for body in &bodies {
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .bearer_auth("token")
            .body(body.clone())
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_success());
    }
    let direct = REST_EVENTS as f64 / started.elapsed().as_secs_f64();

    let server = HttpDestination::start(vec![], axum::http::StatusCode::CREATED, Duration::ZERO).await;
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndir = \"{{dir}}/plugins\"\n\
         [plugin.servicelog-sink]\nconfig = {{ url = \"http://{addr}/api/service_logs/v1/cluster_logs\", token = \"token\", service_name = \"bench\" }}\n\
         [plugin.servicelog-sink.capabilities]\nhttp = [\"{addr}\"]\n[plugin.servicelog-sink.limits]\ntimeout_ms = 30000\n\
         [[route]]\nname = \"to-service-log\"\nsubject = \"bench.>\"\nsinks = [\"service-log\"]\n\
         [sinks.service-log]\nkind = \"plugin\"\nplugin = \"servicelog-sink\"\n",
        addr = server.addr
    );
    let router = RouterProcess::start_with_plugins(&config, &[("servicelog-sink", "servicelog-sink")]);
    let started = Instant::now();
    ingest(&router, REST_EVENTS).await;
    while server.received().len() < REST_EVENTS {
        assert!(started.elapsed() < Duration::from_secs(120), "the server never got every record");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ours = REST_EVENTS as f64 / started.elapsed().as_secs_f64();
    row("rest: direct (reqwest, kept-alive)", direct, "events/s", "");
    row("rest: HTTP → Eventyard → servicelog-sink", ours, "events/s", &format!("{:.2}x direct", ours / direct));
}

pub fn run() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        kafka_rows().await;
        rest_rows().await;
    });
}
