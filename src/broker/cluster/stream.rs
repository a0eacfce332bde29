//! Route streams: one JetStream stream per route, with work-queue retention, replicated, holding
//! each event on `<prefix>.route.<route>.<subject>` until a router has finished it. This module
//! makes the stream and its durable pull consumer ready and says what a stored message is: the
//! message that holds one event or a group of them ([`super::group`]), and the events a message
//! holds. It never stores nor runs anything itself ([`super::writer`], [`super::consume`]).

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;

use super::connect::ClusterError;
use super::group::{self, Frame, GROUP_HEADER};
use super::settings::BrokerSettings;
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

    /// The message that stores `frames` under the message id `id`: for one event, its data with its
    /// context as `ce-` headers (CloudEvents binary mode) on `<prefix>.route.<route>.<subject>`; for
    /// several, a group on the first one's subject.
    pub fn message(&self, frames: &[Frame], id: &str) -> StoredMessage {
        let (first, payload, mut headers) = match frames {
            [alone] => (alone, alone.data.clone(), binding::header_map(&alone.headers)),
            [first, ..] => {
                let mut headers = HeaderMap::new();
                headers.insert(GROUP_HEADER, frames.len().to_string().as_str());
                (first, group::encode(frames), headers)
            }
            [] => unreachable!("a stored message holds at least one event"),
        };
        headers.insert("Nats-Msg-Id", id);
        StoredMessage { subject: format!("{}{}", self.subject_prefix, first.subject), headers, payload }
    }

    /// The events a stored message holds, in the order they were stored.
    pub fn decode(&self, message: &async_nats::Message) -> Result<Vec<Event>, String> {
        let subject = message
            .subject
            .strip_prefix(self.subject_prefix.as_str())
            .ok_or_else(|| format!("subject `{}` is outside stream `{}`", message.subject, self.name))?;
        let grouped = message.headers.as_ref().and_then(|headers| headers.get(GROUP_HEADER));
        let Some(count) = grouped else {
            let headers = message.headers.as_ref().map(binding::header_block);
            return Ok(vec![stored_event(subject.to_owned(), headers, message.payload.clone())?]);
        };
        let count = count.as_str().parse().map_err(|_| format!("`{GROUP_HEADER}: {count}` is no number"))?;
        group::decode(message.payload.clone(), count)?
            .into_iter()
            .map(|frame| stored_event(frame.subject, Some(frame.headers), frame.data))
            .collect()
    }
}

/// A message as a router stores it in a route stream.
pub struct StoredMessage {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// The event of `subject`, its context a header block and its data `payload`, as a router stored it.
fn stored_event(subject: String, headers: Option<Bytes>, payload: Bytes) -> Result<Event, String> {
    let mut events = binding::decode(subject, None, headers, payload, 0).map_err(|err| err.to_string())?;
    let mut event = match events.len() {
        1 => events.remove(0),
        n => return Err(format!("a stored event decodes to {n} events, not one")),
    };
    // Stored by a router, not sent by a NATS client: it goes on with its context, not as it came.
    event.nats = None;
    Ok(event)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(message: StoredMessage) -> async_nats::Message {
        let StoredMessage { subject, headers, payload } = message;
        let length = payload.len();
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload,
            headers: Some(headers),
            status: None,
            description: None,
            length,
        }
    }

    #[test]
    fn a_stored_event_comes_back_as_it_was() {
        let event = crate::event::full_event();
        let stream = RouteStream::new("eventyard", "all");
        assert_eq!(stream.name, "eventyard_route_all");
        assert_eq!(message_id(&event), "/dss e1");
        let message = stream.message(&[Frame::of(&event)], &message_id(&event));
        assert_eq!(message.subject, format!("eventyard.route.all.{}", event.subject));
        assert_eq!(message.headers.get("Nats-Msg-Id").unwrap().as_str(), "/dss e1");
        assert_eq!(message.headers.get("ce-id").unwrap().as_str(), "e1", "one event is stored in binary mode");
        assert_eq!(stream.decode(&stored(message)).unwrap(), [event]);
    }

    #[test]
    fn a_group_comes_back_as_its_events_in_order() {
        let stream = RouteStream::new("eventyard", "all");
        let events: Vec<Event> = (0..3)
            .map(|n| {
                let mut event = crate::event::full_event();
                event.context.id = format!("e{n}");
                event.subject = format!("orders.{n}");
                event.data = Bytes::from(vec![n as u8; n * 100]);
                event
            })
            .collect();
        let frames: Vec<Frame> = events.iter().map(Frame::of).collect();
        let message = stream.message(&frames, "writer:7");
        assert_eq!(message.subject, "eventyard.route.all.orders.0");
        assert_eq!(message.headers.get(GROUP_HEADER).unwrap().as_str(), "3");
        assert_eq!(stream.decode(&stored(message)).unwrap(), events);
    }

    #[test]
    fn a_group_that_lies_about_its_size_is_refused() {
        let stream = RouteStream::new("eventyard", "all");
        let frames = vec![Frame::of(&crate::event::full_event()); 2];
        let mut message = stream.message(&frames, "w:1");
        message.headers.insert(GROUP_HEADER, "3");
        assert!(stream.decode(&stored(message)).unwrap_err().contains("holds 2"));
        let mut message = stream.message(&frames, "w:2");
        message.headers.insert(GROUP_HEADER, "two");
        assert!(stream.decode(&stored(message)).unwrap_err().contains("no number"));
    }
}
