//! [`NatsSink`]: publishes each event to an external NATS server (seed 003's other direction), as
//! the CloudEvents NATS binding says: the data as the payload and the context as `ce-` headers
//! (binary mode); a message that came from a NATS client goes out with its own headers, as sent.
//!
//! Core NATS has no acknowledgement: a batch counts as delivered once the server has answered a
//! flush after it, so every message reached the server. Owns the client connection; never retries
//! or dead-letters itself (the sink worker does).

use async_trait::async_trait;
use serde::Deserialize;

use super::SinkBuildError;
use crate::broker::Subject;
use crate::codec::nats::{header_map, headers_of};
use crate::event::Event;
use crate::nats_client::{NatsConnection, NatsTls};
use crate::sink::{DeliveryError, Sink};

/// Config of a [`NatsSink`] (TOML, under the sink's table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    pub servers: Vec<String>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// TLS to the server (required when set): `ca_path`, `cert_path`, `key_path`.
    pub tls: Option<NatsTls>,
    /// Publish every event on this subject; default: the event's own subject.
    pub subject: Option<String>,
}

impl NatsSinkConfig {
    fn connection(&self) -> NatsConnection {
        NatsConnection {
            servers: self.servers.clone(),
            token: self.token.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            tls: self.tls.clone(),
        }
    }
}

/// Publishes events to a NATS server.
pub struct NatsSink {
    client: async_nats::Client,
    subject: Option<String>,
}

impl NatsSink {
    /// Checks the config and starts connecting (in the background: a server that is down makes
    /// deliveries fail and retry, not the router fail to start).
    pub async fn connect(name: &str, config: NatsSinkConfig) -> Result<NatsSink, SinkBuildError> {
        let connection = config.connection();
        connection.check().map_err(|(key, reason)| SinkBuildError::config(name, key, reason))?;
        if let Some(subject) = &config.subject
            && let Err(err) = Subject::new(subject.as_str())
        {
            return Err(SinkBuildError::config(name, "subject", format!("`{subject}`: {err}")));
        }
        let client = connection
            .connect(&format!("sink {name}"))
            .await
            .map_err(|err| SinkBuildError::config(name, "servers", format!("{err:#}")))?;
        Ok(NatsSink { client, subject: config.subject })
    }
}

#[async_trait]
impl Sink for NatsSink {
    /// Publishes the batch in order, then flushes: `Ok` once the server has all of it. Any failure
    /// (no connection, say) fails the whole batch as retryable; a retry may publish some events
    /// twice, as at-least-once delivery does.
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        for event in batch {
            let subject = self.subject.clone().unwrap_or_else(|| event.subject.clone());
            let headers = headers_of(event).map(|block| header_map(&block)).unwrap_or_default();
            self.client
                .publish_with_headers(subject, headers, event.data.clone())
                .await
                .map_err(|err| DeliveryError::Retryable(format!("cannot publish to NATS: {err}")))?;
        }
        self.client.flush().await.map_err(|err| DeliveryError::Retryable(format!("NATS flush failed: {err}")))
    }
}
