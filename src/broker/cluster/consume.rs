//! [`RouteConsumer`]: one router's share of a route's work. Pulls the route's stream through the
//! durable consumer every router shares, hands each event of a message (one, or a group) to the
//! route (the current [`Subscriber`], which a reload may swap), and acknowledges the message only
//! once every copy of its events is done with ([`crate::completion`]): delivered or dead-lettered
//! by every sink. A message with an event the route refused, or a copy abandoned, is nak'ed and
//! JetStream redelivers it, to this router or another; one still being worked on is kept ours by
//! progress acks every half of `ack_wait`. A router that dies acks nothing, and its events go to
//! the others after `ack_wait`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message, consumer::PullConsumer};
use futures_util::StreamExt as _;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::stream::RouteStream;
use crate::broker::Subscriber;
use crate::completion::{Completion, Outcome};

/// How long a nak'ed event waits before JetStream offers it again.
const REDELIVERY_DELAY: Duration = Duration::from_secs(1);

/// Most bytes one pull asks for (at least two of the cluster's largest messages): what a router
/// holds of a route stream besides what its queues hold.
const PULL_BYTES: usize = 4 * 1024 * 1024;

/// A running consumer of one route stream.
pub struct RouteConsumer {
    /// The route events go to; a reload that keeps the route puts the new one here.
    pub subscriber: Arc<RwLock<Arc<dyn Subscriber>>>,
    pub stop: CancellationToken,
}

impl RouteConsumer {
    /// Starts pulling `consumer` into `subscriber` on `tasks`; acks are tracked on `acks`.
    /// `max_payload` is the cluster's largest message.
    pub fn start(
        stream: RouteStream,
        consumer: PullConsumer,
        subscriber: Arc<dyn Subscriber>,
        ack_wait: Duration,
        max_payload: usize,
        tasks: &TaskTracker,
        acks: TaskTracker,
    ) -> RouteConsumer {
        let subscriber = Arc::new(RwLock::new(subscriber));
        let stop = CancellationToken::new();
        let pull_bytes = PULL_BYTES.max(2 * max_payload);
        let pull = Pull { stream, consumer, subscriber: subscriber.clone(), ack_wait, pull_bytes, acks };
        tasks.spawn(pull.run(stop.clone()));
        RouteConsumer { subscriber, stop }
    }
}

struct Pull {
    stream: RouteStream,
    consumer: PullConsumer,
    subscriber: Arc<RwLock<Arc<dyn Subscriber>>>,
    ack_wait: Duration,
    pull_bytes: usize,
    acks: TaskTracker,
}

impl Pull {
    /// Pulls until `stop`; reopens the pull after an error (a server gone, a failover).
    async fn run(self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let messages = tokio::select! {
                _ = stop.cancelled() => return,
                messages = self.consumer.stream().max_bytes_per_batch(self.pull_bytes).messages() => messages,
            };
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(stream = %self.stream.name, error = %err, "cannot pull the route stream yet");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => self.handle(message).await,
                    Some(Err(err)) => {
                        tracing::debug!(stream = %self.stream.name, error = %err, "pull interrupted");
                    }
                    None => break,
                }
            }
        }
    }

    /// Hands the events of one stored message to the route and leaves the message's
    /// acknowledgement to a task that waits for the completion of all of them.
    async fn handle(&self, message: Message) {
        let events = match self.stream.decode(&message) {
            Ok(events) => events,
            Err(reason) => {
                // Not an event a router stored: redelivering it cannot help.
                tracing::error!(stream = %self.stream.name, subject = %message.subject, reason, "dropping a stored message that is no event");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        let (completion, outcome) = Completion::new();
        let subscriber = match self.subscriber.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for mut event in events {
            event.completion = Some(completion.clone());
            if let Err(refusal) = subscriber.deliver(&event).await {
                // The whole message comes again: the events of it the route took, a second time.
                tracing::debug!(stream = %self.stream.name, %refusal, "route refused a stored event; JetStream redelivers its message");
                completion.fail();
                break;
            }
        }
        drop(completion);
        self.acks.spawn(acknowledge(message, outcome, self.ack_wait));
    }
}

/// Acks `message` once its event is done with, naks it if a copy failed; says "still working"
/// every half of `ack_wait` until then.
async fn acknowledge(message: Message, outcome: oneshot::Receiver<Outcome>, ack_wait: Duration) {
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + ack_wait / 2, ack_wait / 2);
    tokio::pin!(outcome);
    let kind = loop {
        tokio::select! {
            outcome = &mut outcome => break match outcome {
                Ok(Outcome::Done) => AckKind::Ack,
                Ok(Outcome::Failed) | Err(_) => AckKind::Nak(Some(REDELIVERY_DELAY)),
            },
            _ = progress.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    };
    if let Err(err) = message.ack_with(kind).await {
        // JetStream redelivers it after `ack_wait`: a duplicate at worst, never a loss.
        tracing::warn!(error = %err, "could not acknowledge a stored event");
    }
}
