//! Route streams: one JetStream stream per route, with work-queue retention, replicated, holding
//! each event on `<prefix>.route.<route>.<subject>` until a router has finished it. This module
//! makes the stream and its durable pull consumer ready, writes events in ([`StreamWriter`], a
//! broker [`Subscriber`], so a publish is acknowledged only once JetStream has every copy it
//! needs) and turns stored messages back into events. It never runs a route.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;

use super::connect::ClusterError;
use super::settings::BrokerSettings;
use crate::broker::{Accepted, Refusal, Subscriber};
use crate::codec::nats as binding;
use crate::event::Event;

/// The durable consumer every router of a cluster shares on a route's stream.
const CONSUMER: &str = "eventyard";

/// How long making a route stream ready may keep trying.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How far back JetStream recognises a publish it already stored (by `Nats-Msg-Id`).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where one route's events live in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStream {
    /// The stream's name: `<prefix>_route_<route>`.
    pub name: String,
    /// Its subjects' first tokens: `<prefix>.route.<route>.`; an event's subject follows.
    pub subject_prefix: String,
}

impl RouteStream {
    pub fn new(prefix: &str, route: &str) -> RouteStream {
        RouteStream { name: format!("{prefix}_route_{route}"), subject_prefix: format!("{prefix}.route.{route}.") }
    }

    fn config(&self, settings: &BrokerSettings) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![format!("{}>", self.subject_prefix)],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            duplicate_window: DUPLICATE_WINDOW,
            // Limits, if an operator sets some, refuse new events rather than drop stored ones.
            discard: stream::DiscardPolicy::New,
            description: Some("Eventyard route: events waiting for a router (work queue)".into()),
            ..Default::default()
        }
    }

    /// Creates the stream, or checks the one that exists, and its consumer. Keeps trying for a
    /// while what may pass (a cluster still electing its leaders, another router creating the same
    /// stream at the same moment); a stream with other settings fails at once.
    pub async fn ready(
        &self,
        jetstream: &jetstream::Context,
        settings: &BrokerSettings,
    ) -> Result<consumer::PullConsumer, ClusterError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.try_ready(jetstream, settings).await {
                Err(ClusterError::Other(reason)) if Instant::now() < deadline => {
                    tracing::info!(stream = %self.name, reason, "route stream not ready yet, trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn try_ready(
        &self,
        jetstream: &jetstream::Context,
        settings: &BrokerSettings,
    ) -> Result<consumer::PullConsumer, ClusterError> {
        let wanted = self.config(settings);
        let incompatible = |reason: String| ClusterError::IncompatibleStream { stream: self.name.clone(), reason };
        let stream = open_or_create(jetstream, wanted.clone()).await?;
        let found = &stream.cached_info().config;
        if found.retention != wanted.retention {
            return Err(incompatible(format!("its retention is {:?}, not WorkQueue", found.retention)));
        }
        if found.subjects != wanted.subjects {
            return Err(incompatible(format!("its subjects are {:?}, not {:?}", found.subjects, wanted.subjects)));
        }
        if found.num_replicas != wanted.num_replicas {
            tracing::warn!(stream = %self.name, found = found.num_replicas, configured = wanted.num_replicas, "route stream keeps its replica count");
        }
        let config = consumer::pull::Config {
            durable_name: Some(CONSUMER.into()),
            description: Some("Eventyard routers sharing this route's work".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: settings.ack_wait(),
            max_deliver: -1,
            max_ack_pending: settings.max_ack_pending as i64,
            ..Default::default()
        };
        stream.get_or_create_consumer(CONSUMER, config).await.map_err(|err| self.failed("making the consumer of", err))
    }

    fn failed(&self, what: &str, err: impl std::fmt::Display) -> ClusterError {
        ClusterError::Other(format!("{what} stream `{}`: {err}", self.name))
    }

    /// The event a stored message holds: its subject after the stream's prefix, its context from
    /// the `ce-` headers (CloudEvents binary mode), its data the payload.
    pub fn decode(&self, message: &async_nats::Message) -> Result<Event, String> {
        let subject = message
            .subject
            .strip_prefix(self.subject_prefix.as_str())
            .ok_or_else(|| format!("subject `{}` is outside stream `{}`", message.subject, self.name))?;
        let headers = message.headers.as_ref().map(binding::header_block);
        let mut events = binding::decode(subject.to_owned(), None, headers, message.payload.clone(), 0)
            .map_err(|err| err.to_string())?;
        let mut event = match events.len() {
            1 => events.remove(0),
            n => return Err(format!("a stored message holds {n} events, not one")),
        };
        // Stored by a router, not sent by a NATS client: it goes on with its context, not as it came.
        event.nats = None;
        Ok(event)
    }
}

/// The stream `config` names: the one that exists, or a new one (or the one another router made at
/// the same moment). JetStream's considered refusal — more replicas than servers, limits — is final.
pub async fn open_or_create(
    jetstream: &jetstream::Context,
    config: stream::Config,
) -> Result<jetstream::stream::Stream, ClusterError> {
    let name = config.name.clone();
    let failed =
        |what: &str, err: &dyn std::fmt::Display| ClusterError::Other(format!("{what} stream `{name}`: {err}"));
    match jetstream.get_stream(&name).await {
        Ok(stream) => return Ok(stream),
        Err(err) if matches!(err.kind(), GetStreamErrorKind::JetStream(error) if error.code() == 404) => {}
        Err(err) => return Err(failed("looking up", &err)),
    }
    if let Err(err) = jetstream.create_stream(config).await {
        if let Ok(stream) = jetstream.get_stream(&name).await {
            return Ok(stream);
        }
        return Err(match err.kind() {
            CreateStreamErrorKind::JetStream(error) if error.code() != 503 => {
                ClusterError::StreamRefused { stream: name.clone(), reason: error.to_string() }
            }
            _ => failed("creating", &err),
        });
    }
    jetstream.get_stream(&name).await.map_err(|err| failed("opening", &err))
}

/// The `Nats-Msg-Id` of an event: CloudEvents ids are unique per source, so both name it.
pub fn message_id(event: &Event) -> String {
    format!("{} {}", event.context.source, event.context.id)
}

/// An event as a stored message's headers: its context in CloudEvents binary mode.
fn stored_headers(event: &Event) -> HeaderMap {
    let mut headers = binding::header_map(&binding::context_headers(event));
    headers.insert("Nats-Msg-Id", message_id(event).as_str());
    headers
}

/// Writes a route's events into its stream: the broker subscription that stands for a route on
/// the publishing side. Returns once JetStream has stored the event (on its replicas), retrying
/// through a failover until `publish_timeout`.
pub struct StreamWriter {
    pub stream: RouteStream,
    pub jetstream: jetstream::Context,
    pub publish_timeout: Duration,
    /// A route another router runs (learnt from the directory): if its stream is gone, so is the
    /// route, and the event is not refused for it.
    pub foreign: bool,
}

#[async_trait]
impl Subscriber for StreamWriter {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        let subject = format!("{}{}", self.stream.subject_prefix, event.subject);
        let headers = stored_headers(event);
        let deadline = Instant::now() + self.publish_timeout;
        let mut wait = Duration::from_millis(50);
        loop {
            let error = match self.store(&subject, headers.clone(), event.data.clone()).await {
                Ok(()) => return Ok(Accepted::Routed),
                Err(StoreError::Missing) if self.foreign => {
                    tracing::warn!(stream = %self.stream.name, "the directory names a route whose stream is gone");
                    return Ok(Accepted::Passed);
                }
                Err(error) => error.to_string(),
            };
            if Instant::now() + wait >= deadline {
                return Err(Refusal::Unavailable { what: format!("stream `{}`", self.stream.name), reason: error });
            }
            tracing::debug!(stream = %self.stream.name, error, "JetStream did not store the event yet, retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }
}

impl StreamWriter {
    async fn store(&self, subject: &str, headers: HeaderMap, payload: Bytes) -> Result<(), StoreError> {
        let publish = PublishMessage::build().headers(headers).payload(payload);
        let ack = self.jetstream.send_publish(subject.to_owned(), publish).await?;
        ack.await.map(|_| ()).map_err(StoreError::from)
    }
}

/// Why JetStream did not store an event.
#[derive(Debug, thiserror::Error)]
enum StoreError {
    #[error("no stream takes the subject")]
    Missing,
    #[error("{0}")]
    Failed(String),
}

impl From<jetstream::context::PublishError> for StoreError {
    fn from(err: jetstream::context::PublishError) -> Self {
        match err.kind() {
            jetstream::context::PublishErrorKind::StreamNotFound => StoreError::Missing,
            _ => StoreError::Failed(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_event_comes_back_as_it_was() {
        let event = crate::event::full_event();
        let stream = RouteStream::new("eventyard", "all");
        assert_eq!(stream.name, "eventyard_route_all");
        let message = async_nats::Message {
            subject: format!("{}{}", stream.subject_prefix, event.subject).into(),
            reply: None,
            payload: event.data.clone(),
            headers: Some(stored_headers(&event)),
            status: None,
            description: None,
            length: 0,
        };
        assert_eq!(message_id(&event), "/dss e1");
        assert_eq!(stream.decode(&message).unwrap(), event);
    }
}
