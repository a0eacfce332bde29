//! The host's Kafka producer: `[kafka]` settings ([`KafkaSettings`]) and the one connection
//! ([`KafkaConnection`]) that sinks granted `capabilities.kafka` send through. Built on librdkafka
//! (the `rdkafka` crate), which gives acks from all in-sync replicas, the idempotent producer,
//! compression, TLS and SASL. Never decides what a record holds: the sink plugin does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use serde::Deserialize;

use crate::capability::{CapabilityError, KafkaProducer, KafkaRecord};

/// `[kafka]`: how the host connects to Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Which acknowledgement completes a send.
    #[serde(default)]
    pub acks: Acks,
    /// Retries that never duplicate or reorder a record (needs `acks = "all"`).
    #[serde(default = "yes")]
    pub idempotent: bool,
    #[serde(default)]
    pub compression: Compression,
    /// How long the producer waits to fill a request.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// How long one record may take to be acknowledged, retries included.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
    /// Further librdkafka properties, passed as they are (they win over the keys above).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

/// `[kafka.tls]`: present, the connection uses TLS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTls {
    /// CA bundle that signs the brokers' certificates; default: the system's.
    pub ca_path: Option<PathBuf>,
    /// Client certificate and key, for brokers that require mutual TLS.
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
}

/// `[kafka.sasl]`
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

/// Never prints the password.
impl std::fmt::Debug for KafkaSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSasl").field("mechanism", &self.mechanism).field("username", &self.username).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acks {
    /// Every in-sync replica has the record.
    #[default]
    All,
    /// The partition leader has it.
    Leader,
    /// Sent, not acknowledged.
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

fn default_client_id() -> String {
    "eventyard".into()
}

fn yes() -> bool {
    true
}

fn default_linger_ms() -> u64 {
    5
}

fn default_delivery_timeout_ms() -> u64 {
    30_000
}

impl KafkaSettings {
    /// Problems with the settings, as `(key under [kafka], reason)`.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.brokers.is_empty() {
            problems.push(("brokers", "lists no broker".into()));
        }
        if let Some(bad) = self.brokers.iter().find(|b| b.is_empty() || b.contains('/') || !b.contains(':')) {
            problems.push(("brokers", format!("`{bad}` is not host:port")));
        }
        if self.idempotent && self.acks != Acks::All {
            problems.push(("idempotent", "the idempotent producer needs acks = \"all\"".into()));
        }
        if !(1..=3_600_000).contains(&self.delivery_timeout_ms) {
            problems.push(("delivery_timeout_ms", "must be between 1 and 3600000".into()));
        }
        if self.linger_ms > 60_000 {
            problems.push(("linger_ms", "must be at most 60000".into()));
        }
        if let Some(tls) = &self.tls
            && tls.cert_path.is_some() != tls.key_path.is_some()
        {
            problems.push(("tls", "cert_path and key_path go together".into()));
        }
        problems
    }

    /// The librdkafka properties these settings mean.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        let acks = match self.acks {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        };
        let compression = match self.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        };
        config
            .set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            .set("acks", acks)
            .set("enable.idempotence", self.idempotent.to_string())
            .set("compression.type", compression)
            .set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string());
        let protocol = match (&self.tls, &self.sasl) {
            (None, None) => "plaintext",
            (Some(_), None) => "ssl",
            (None, Some(_)) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("ssl.ca.location", &tls.ca_path),
                ("ssl.certificate.location", &tls.cert_path),
                ("ssl.key.location", &tls.key_path),
            ] {
                if let Some(path) = path {
                    config.set(key, path.display().to_string());
                }
            }
        }
        if let Some(sasl) = &self.sasl {
            let mechanism = match sasl.mechanism {
                SaslMechanism::Plain => "PLAIN",
                SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            config
                .set("sasl.mechanism", mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        for (key, value) in &self.librdkafka_options {
            config.set(key, value);
        }
        config
    }
}

/// The host's Kafka producer. Cheap to share; librdkafka batches, retries and reconnects inside.
pub struct KafkaConnection {
    producer: FutureProducer,
}

impl KafkaConnection {
    /// Creates the producer. Brokers are reached in the background: one that is down makes sends
    /// fail as retryable, not the router fail to start.
    pub fn new(settings: &KafkaSettings) -> anyhow::Result<KafkaConnection> {
        let producer = settings
            .client_config()
            .create()
            .map_err(|err| anyhow::anyhow!("[kafka]: librdkafka refused the settings: {err}"))?;
        Ok(KafkaConnection { producer })
    }

    /// Asks the brokers for their metadata, to log early whether they are reachable.
    pub async fn probe(&self, timeout: Duration) -> Result<usize, KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout).map(|m| m.brokers().len()))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }
}

/// True when sending the same record again later may succeed.
fn retryable(err: &KafkaError) -> bool {
    !matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::InvalidArgument,
        )
    )
}

#[async_trait]
impl KafkaProducer for KafkaConnection {
    async fn send(&self, records: Vec<KafkaRecord>) -> Result<(), CapabilityError> {
        let mut pending = Vec::with_capacity(records.len());
        for record in &records {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header { key, value: Some(value) });
            }
            let mut future = FutureRecord::to(&record.topic).payload(&record.value).headers(headers);
            if let Some(key) = &record.key {
                future = future.key(key);
            }
            // Queues the record; while librdkafka's own queue is full, waits for room.
            let delivery = loop {
                match self.producer.send_result(future) {
                    Ok(delivery) => break delivery,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        future = returned;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((err, _)) => {
                        let message = format!("kafka: topic `{}`: {err}", record.topic);
                        return Err(CapabilityError { message, retryable: retryable(&err) });
                    }
                }
            };
            pending.push(delivery);
        }
        let mut first_error = None;
        for (delivery, record) in pending.into_iter().zip(&records) {
            let outcome = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((err, _))) => CapabilityError {
                    message: format!("kafka: topic `{}`: {err}", record.topic),
                    retryable: retryable(&err),
                },
                Err(_canceled) => CapabilityError {
                    message: "kafka: the producer shut down before the broker answered".into(),
                    retryable: true,
                },
            };
            first_error.get_or_insert(outcome);
        }
        first_error.map_or(Ok(()), Err)
    }
}
