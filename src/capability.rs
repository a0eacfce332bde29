//! Capabilities the host lends to sinks: a Kafka producer and a NATS publisher whose connections
//! the host owns. The traits live here so the Kafka and broker modules can implement them without
//! knowing about Wasm; `plugin` hands them to the plugins whose config grants them. Never opens a
//! connection itself.

use std::sync::Arc;

use async_trait::async_trait;

/// One record for [`KafkaProducer::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A failed capability call, as the plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CapabilityError {
    pub message: String,
    pub retryable: bool,
}

/// Produces records to Kafka and returns once the broker acknowledged all of them.
#[async_trait]
pub trait KafkaProducer: Send + Sync {
    async fn send(&self, records: Vec<KafkaRecord>) -> Result<(), CapabilityError>;
}

/// Publishes messages on NATS subjects.
#[async_trait]
pub trait NatsPublisher: Send + Sync {
    async fn publish(
        &self,
        subject: String,
        headers: Vec<(String, String)>,
        payload: Vec<u8>,
    ) -> Result<(), CapabilityError>;
}

/// The connections the host lends, one of each at most; the runtime hands them to granted plugins.
#[derive(Clone, Default)]
pub struct HostServices {
    pub kafka: Option<Arc<dyn KafkaProducer>>,
    pub nats: Option<Arc<dyn NatsPublisher>>,
}
