//! The broker: who receives an event published on a subject. One trait, [`Broker`], with NATS's
//! verbs; the embedded, in-process implementation is [`EmbeddedBroker`], [`DurableBroker`] is the
//! same with a write-ahead log (durable embedded mode), and [`NatsBroker`]
//! (cluster mode) implements the same trait on a NATS cluster with JetStream.
//!
//! A subscriber is anything that accepts events ([`Subscriber`]): a route, a NATS client
//! connection, a dead-letter watcher. A publish returns once every matching subscription has
//! accepted the event (or one of them refused it), so an acknowledgement to a client means the
//! event is on every queue it belongs to. The broker knows nothing of Wasm, HTTP or sinks.

pub mod account;
pub mod cluster;
mod durable;
mod embedded;
mod index;
pub mod subject;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use cluster::NatsBroker;
pub use durable::{DurableBroker, Replayed};
pub use embedded::EmbeddedBroker;
pub use index::SubscriptionIndex;
pub use subject::{Pattern, Subject, SubjectError};

use crate::codec::nats::PlainMessage;
use crate::event::Event;

/// Identifies one subscription for [`Broker::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub u64);

/// Why a subscriber did not take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its queue is full; the publisher may try again after `retry_after`.
    #[error("{what} is full")]
    Full { what: String, retry_after: Duration },
    /// It is shutting down and takes no more events.
    #[error("{0} is closed")]
    Closed(String),
    /// The event is larger than what it keeps events in takes (durable mode: a log frame).
    #[error("an event of {size} bytes is larger than the {limit} bytes the router keeps")]
    TooLarge { size: usize, limit: usize },
    /// What it keeps events in (cluster mode: JetStream) did not confirm it has the event.
    #[error("{what} is unavailable: {reason}")]
    Unavailable { what: String, reason: String },
}

/// Takes events from the broker.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Accepts `event`; returns only once the event is safely queued (or refused), saying whether
    /// it took the event or let it by.
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal>;

    /// [`Subscriber::deliver`] at once, for a subscriber that this time need not wait (a client's
    /// outbound buffer, a counter); `None` when it must be delivered to. Spares the broker a boxed
    /// future per delivery on the gateway's hot path. Whoever implements it implements `deliver`
    /// with it, so the two cannot differ.
    fn deliver_now(&self, _event: &Event) -> Option<Result<Accepted, Refusal>> {
        None
    }

    /// [`Subscriber::deliver_now`] of a plain NATS message, taken as it is, for a subscriber that
    /// needs no event for it (a NATS client's subscription writes the message, a counter counts
    /// it); `None` when it needs the event, which the broker then makes. Whoever implements it
    /// delivers what `deliver_now` delivers of the event the message stands for.
    fn deliver_message_now(&self, _message: &PlainMessage) -> Option<Result<Accepted, Refusal>> {
        None
    }
}

/// Delivers `event` to `subscriber`: at once when it can take it so, else awaited.
pub(crate) async fn deliver(subscriber: &dyn Subscriber, event: &Event) -> Result<Accepted, Refusal> {
    match subscriber.deliver_now(event) {
        Some(accepted) => accepted,
        None => subscriber.deliver(event).await,
    }
}

/// What a subscriber did with an event it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A route took the event: queued it for its sinks, or stored it for them (cluster mode).
    Routed,
    /// It went to a client or to the router's own system subscribers.
    Delivered,
    /// It let the event by: not for it after all (a route's routing key or handlers filtered it
    /// out, a client's permissions or `echo` kept it from the client).
    Passed,
}

/// The event `message` stands for. Its subject is checked before it is published, so what can
/// still fail is the host's clock: the router cannot take the message then.
fn event_of(message: PlainMessage) -> Result<Event, Refusal> {
    message.into_event().map_err(|err| Refusal::Unavailable { what: "the event".into(), reason: err.to_string() })
}

/// What a successful publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// How many subscriptions of this router took the event (routes and clients).
    pub delivered: usize,
    /// The event also went to other routers of a cluster, whose subscribers this router cannot
    /// count.
    pub elsewhere: bool,
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// A subscription refused the event. Subscriptions before it may have accepted it, so a
    /// publisher that retries delivers those again: at least once, never lost.
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
}

/// Publishes events to subscriptions by subject.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Delivers `event` to every subscription whose pattern matches `event.subject` (one member of
    /// each queue group) and returns once all of them have accepted it.
    async fn publish(&self, event: Event) -> Result<PublishAck, PublishError>;

    /// Publishes `events` in order. A failure says how many were accepted before the first that was
    /// not, and why that one was not; those after it may have been accepted too, so a publisher
    /// that retries from the first refused delivers them again (at least once, never lost).
    /// Backends whose publishes wait on the network override this to overlap them.
    async fn publish_all(&self, events: Vec<Event>) -> Result<(), (usize, PublishError)> {
        for (accepted, event) in events.into_iter().enumerate() {
            self.publish(event).await.map_err(|err| (accepted, err))?;
        }
        Ok(())
    }

    /// [`Broker::publish`] of the event `message` stands for ([`PlainMessage::into_event`]). A
    /// broker may make that event only for a subscriber that needs it: NATS clients take the
    /// message as it is.
    async fn publish_message(&self, message: PlainMessage) -> Result<PublishAck, PublishError> {
        self.publish(event_of(message)?).await
    }

    /// Subscribes `subscriber` to `pattern`; with a `queue_group`, each event goes to one member.
    fn subscribe(
        &self,
        pattern: Pattern,
        queue_group: Option<String>,
        subscriber: Arc<dyn Subscriber>,
    ) -> SubscriptionId;

    /// Ends a subscription; events published afterwards no longer reach it.
    fn unsubscribe(&self, id: SubscriptionId);

    /// Ends the `remove` subscriptions and starts the `add` ones in one step: every publish sees
    /// either all of the old set or all of the new, so an event reaches exactly one of them. Returns
    /// the new ids (in `add`'s order) and a future that completes once every publish that could
    /// still reach a removed subscription has finished.
    fn replace_subscriptions(
        &self,
        remove: &[SubscriptionId],
        add: Vec<NewSubscription>,
    ) -> (Vec<SubscriptionId>, Settled);

    /// Makes ready what the durable subscriptions among `add` need before
    /// [`replace_subscriptions`](Broker::replace_subscriptions) starts them (cluster mode: their
    /// JetStream streams and consumers), so that starting them cannot fail. The embedded broker
    /// needs nothing.
    async fn prepare(&self, add: &[NewSubscription]) -> Result<(), PrepareError> {
        let _ = add;
        Ok(())
    }

    /// True when an accepted publish is already stored beyond this process (cluster mode), so a
    /// NATS client's `+OK` waits for the publish instead of preceding it as nats-server's does.
    fn stores_publishes(&self) -> bool {
        false
    }

    /// Hands `subscriber` every event of the router's own subjects (the global account's, but
    /// `$` ones and `_INBOX.` replies) that no route took, once its publish is done with it.
    fn set_unrouted(&self, subscriber: Arc<dyn Subscriber>);
}

/// A subscription to start: pattern, queue group and subscriber, as [`Broker::subscribe`] takes them.
pub struct NewSubscription {
    pub pattern: Pattern,
    pub queue_group: Option<String>,
    pub subscriber: Arc<dyn Subscriber>,
    /// A name under which the subscription's events are kept until its subscriber is done with
    /// them (see [`crate::completion`]), shared by every router of a cluster: a route. The embedded
    /// broker keeps nothing and treats it as a plain subscription.
    pub durable: Option<String>,
}

/// Why the broker could not make a durable subscription ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("durable subscription `{name}`: {reason}")]
pub struct PrepareError {
    pub name: String,
    pub reason: String,
}

/// Completes once the publishes that began before a subscription change have finished.
pub type Settled = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// An event on `subject` with id `1` and nothing else set, for unit tests.
#[cfg(test)]
pub fn test_event(subject: &str) -> Event {
    let json = serde_json::json!({"subject": subject});
    let event = serde_json::from_value::<crate::event::EventJson>(json).expect("valid event JSON");
    event.into_event(|| "1".into()).expect("an event")
}

/// A subscriber that keeps every event it gets, for unit tests.
#[cfg(test)]
#[derive(Default)]
pub struct Collect(pub std::sync::Mutex<Vec<Event>>);

#[cfg(test)]
#[async_trait]
impl Subscriber for Collect {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        self.0.lock().expect("never poisoned").push(event.clone());
        Ok(Accepted::Routed)
    }
}
