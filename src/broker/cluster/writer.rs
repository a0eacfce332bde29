//! [`StreamWriter`]: stores a route's events in its stream, the broker subscriber that stands for a
//! route on the publishing side. A delivery returns once JetStream has stored the event on its
//! replicas, retrying through a failover until `publish_timeout`.
//!
//! Stores are pipelined across every publisher of the router — requests, batches, connections: up
//! to [`IN_FLIGHT`] messages wait for JetStream at once, and the events delivered meanwhile go out
//! together as the next message, a group ([`super::group`]). Under load the cluster stores,
//! delivers and acknowledges a few large messages instead of many small ones; a lone event goes out
//! at once, as a message of its own. It never decides where an event goes.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_trait::async_trait;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::group::Frame;
use super::stream::{RouteStream, StoredMessage, message_id};
use crate::broker::{Accepted, Refusal, Subscriber};
use crate::event::Event;

/// Messages of one route stream that wait for JetStream's acknowledgement at once.
const IN_FLIGHT: usize = 4;

/// Most bytes of events in one group (less where the cluster's `max_payload` is smaller).
const GROUP_BYTES: usize = 256 * 1024;

/// Most events in one group.
const GROUP_EVENTS: usize = 1024;

/// Deliveries that may wait for the writer before a delivery waits to be taken.
const QUEUE: usize = 4096;

/// Stores events in a route's stream; see the module docs.
pub struct StreamWriter {
    stream: String,
    queue: mpsc::Sender<Pending>,
}

/// One event waiting to be stored, and who waits for it.
struct Pending {
    frame: Frame,
    /// The message id JetStream checks duplicates by, when the event is stored alone.
    id: String,
    stored: oneshot::Sender<Result<Accepted, Refusal>>,
}

impl StreamWriter {
    /// A writer into `stream`, storing on its own task until the writer is dropped; `foreign` for a
    /// route only other routers run (learnt from the directory): if its stream is gone, so is the
    /// route, and the event is not refused for it.
    pub fn start(
        stream: RouteStream,
        jetstream: jetstream::Context,
        publish_timeout: Duration,
        foreign: bool,
    ) -> StreamWriter {
        let max_payload = jetstream.client().server_info().max_payload;
        let group_bytes = if max_payload == 0 { GROUP_BYTES } else { (max_payload / 2).min(GROUP_BYTES) };
        let (queue, taken) = mpsc::channel(QUEUE);
        let name = stream.name.clone();
        let store = Store { stream, jetstream, publish_timeout, foreign, group_id: uuid::Uuid::now_v7().to_string() };
        tokio::spawn(store.run(Grouping { taken, held: None, group_bytes }));
        StreamWriter { stream: name, queue }
    }
}

#[async_trait]
impl Subscriber for StreamWriter {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        let (stored, outcome) = oneshot::channel();
        let closed = || Refusal::Closed(format!("stream `{}`", self.stream));
        let pending = Pending { frame: Frame::of(event), id: message_id(event), stored };
        self.queue.send(pending).await.map_err(|_| closed())?;
        outcome.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// Takes the deliveries waiting for the writer in groups.
struct Grouping {
    taken: mpsc::Receiver<Pending>,
    /// A delivery that did not fit into the last group: the first of the next.
    held: Option<Pending>,
    group_bytes: usize,
}

impl Grouping {
    /// The next group: the first delivery, waited for, and every other one waiting already that
    /// fits. `None` once every writer handle is gone. Cancel-safe: nothing is taken across a wait.
    async fn next(&mut self) -> Option<Vec<Pending>> {
        let first = match self.held.take() {
            Some(held) => held,
            None => self.taken.recv().await?,
        };
        let mut size = first.frame.size();
        let mut group = vec![first];
        while group.len() < GROUP_EVENTS {
            let Ok(next) = self.taken.try_recv() else { break };
            size += next.frame.size();
            if size > self.group_bytes {
                self.held = Some(next);
                break;
            }
            group.push(next);
        }
        Some(group)
    }
}

/// The writer's task.
struct Store {
    stream: RouteStream,
    jetstream: jetstream::Context,
    publish_timeout: Duration,
    foreign: bool,
    /// Group messages are named `<group_id>:<n>` for JetStream's duplicate check.
    group_id: String,
}

impl Store {
    /// Stores groups, up to [`IN_FLIGHT`] at once, until every writer handle is gone and every
    /// store has its answer.
    async fn run(self, mut grouping: Grouping) {
        let mut storing = FuturesUnordered::new();
        let mut groups = 0u64;
        let mut open = true;
        while open || !storing.is_empty() {
            tokio::select! {
                group = grouping.next(), if open && storing.len() < IN_FLIGHT => match group {
                    Some(group) => {
                        groups += 1;
                        storing.push(self.store_group(group, groups));
                    }
                    None => open = false,
                },
                Some(()) = storing.next() => {}
            }
        }
    }

    /// Stores `group` (the `n`th) and tells each of its deliveries how that went.
    async fn store_group(&self, mut group: Vec<Pending>, n: u64) {
        let id = match &mut group[..] {
            [alone] => std::mem::take(&mut alone.id),
            _ => format!("{}:{n}", self.group_id),
        };
        let (frames, waiting): (Vec<Frame>, Vec<_>) = group.into_iter().map(|p| (p.frame, p.stored)).unzip();
        let message = self.stream.message(&frames, &id);
        drop(frames);
        let result = self.store(message).await;
        for stored in waiting {
            let _ = stored.send(result.clone());
        }
    }

    /// Stores `message`, trying again through a failover until `publish_timeout`: JetStream knows
    /// a message it already has by its id.
    async fn store(&self, message: StoredMessage) -> Result<Accepted, Refusal> {
        let deadline = Instant::now() + self.publish_timeout;
        let mut wait = Duration::from_millis(50);
        loop {
            let error = match self.try_store(&message).await {
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
            tracing::debug!(stream = %self.stream.name, error, "JetStream did not store the events yet, retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    async fn try_store(&self, message: &StoredMessage) -> Result<(), StoreError> {
        let publish = jetstream::message::PublishMessage::build()
            .headers(message.headers.clone())
            .payload(message.payload.clone());
        let ack = self.jetstream.send_publish(message.subject.clone(), publish).await?;
        ack.await.map(|_| ()).map_err(StoreError::from)
    }
}

/// Why JetStream did not store a message.
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
