//! [`EmbeddedBroker`]: the in-process broker. Subscriptions live in a [`SubscriptionIndex`] behind a
//! read-write lock (publishes read, subscribes write); a queue group's member is chosen round-robin.
//! Each publish holds a token of the current subscription epoch while it delivers, so a
//! replacement of subscriptions can tell when the last publish that saw the old set is done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use async_trait::async_trait;
use smallvec::SmallVec;

use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::{
    Accepted, Broker, NewSubscription, Pattern, PublishAck, PublishError, Refusal, Settled, Subscriber, SubscriptionId,
    SubscriptionIndex,
};
use crate::codec::nats::PlainMessage;
use crate::event::Event;

/// The subscribers one publish goes to; most publishes have a few, kept off the heap.
type Targets = SmallVec<[Arc<dyn Subscriber>; 4]>;

struct Entry {
    queue_group: Option<String>,
    subscriber: Arc<dyn Subscriber>,
}

#[derive(Default)]
struct State {
    index: SubscriptionIndex<Arc<Entry>>,
    patterns: HashMap<u64, Pattern>,
    /// Publishes in flight that chose their targets from the current set of subscriptions.
    epoch: TaskTracker,
}

/// The in-process broker.
#[derive(Default)]
pub struct EmbeddedBroker {
    state: RwLock<State>,
    next_id: AtomicU64,
    /// Spreads queue-group deliveries over members.
    round_robin: AtomicU64,
    /// Gets what no route took ([`Broker::set_unrouted`]).
    unrouted: OnceLock<Arc<dyn Subscriber>>,
}

/// Whether an event on `subject` that no route took is worth telling about: the router's own
/// subjects, not an account's, a system subject or a reply to a request.
fn routable(subject: &str) -> bool {
    !subject.starts_with('$') && !subject.starts_with("_INBOX.")
}

impl EmbeddedBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscribers an event on `subject` goes to: every plain subscription, and one member of
    /// each queue group.
    fn targets(&self, subject: &str) -> (Targets, Option<TaskTrackerToken>) {
        let Ok(state) = self.state.read() else { return (Targets::new(), None) };
        let in_flight = state.epoch.token();
        let mut plain = Targets::new();
        let mut groups: HashMap<&str, Vec<&Arc<Entry>>> = HashMap::new();
        state.index.for_each_match(subject, |_, entry| match &entry.queue_group {
            None => plain.push(entry.subscriber.clone()),
            Some(group) => groups.entry(group.as_str()).or_default().push(entry),
        });
        if !groups.is_empty() {
            let turn = self.round_robin.fetch_add(1, Ordering::Relaxed) as usize;
            for members in groups.values() {
                plain.push(members[turn % members.len()].subscriber.clone());
            }
        }
        (plain, Some(in_flight))
    }

    fn insert(state: &mut State, id: u64, subscription: NewSubscription) {
        let NewSubscription { pattern, queue_group, subscriber, durable: _ } = subscription;
        state.index.insert(&pattern, id, Arc::new(Entry { queue_group, subscriber }));
        state.patterns.insert(id, pattern);
    }

    fn remove(state: &mut State, id: SubscriptionId) {
        if let Some(pattern) = state.patterns.remove(&id.0) {
            state.index.remove(&pattern, id.0);
        }
    }

    /// Delivers `publication` to every subscriber of its subject, then, if no route took it, to
    /// the unrouted subscriber.
    async fn publish_to_all(&self, mut publication: Publication<'_>) -> Result<PublishAck, PublishError> {
        let (targets, _in_flight) = self.targets(publication.subject());
        let (mut delivered, mut routed) = (0, false);
        for subscriber in &targets {
            match publication.deliver_to(subscriber.as_ref()).await? {
                Accepted::Routed => (delivered, routed) = (delivered + 1, true),
                Accepted::Delivered => delivered += 1,
                Accepted::Passed => {}
            }
        }
        if !routed
            && let Some(unrouted) = self.unrouted.get()
            && routable(publication.subject())
        {
            publication.deliver_to(unrouted.as_ref()).await?;
        }
        Ok(PublishAck { delivered, elsewhere: false })
    }
}

/// What one publish delivers: an event, or a plain NATS message and, once a subscriber needed
/// it, the event made of it.
enum Publication<'a> {
    Event(&'a Event),
    Message(&'a PlainMessage, Option<Box<Event>>),
}

impl Publication<'_> {
    fn subject(&self) -> &str {
        match self {
            Publication::Event(event) => &event.subject,
            Publication::Message(message, _) => &message.subject,
        }
    }

    async fn deliver_to(&mut self, subscriber: &dyn Subscriber) -> Result<Accepted, Refusal> {
        match self {
            Publication::Event(event) => super::deliver(subscriber, event).await,
            Publication::Message(message, made) => {
                if let Some(accepted) = subscriber.deliver_message_now(message) {
                    return accepted;
                }
                let event = match made {
                    Some(event) => event,
                    None => made.insert(Box::new(super::event_of((*message).clone())?)),
                };
                super::deliver(subscriber, event).await
            }
        }
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    async fn publish(&self, event: Event) -> Result<PublishAck, PublishError> {
        self.publish_to_all(Publication::Event(&event)).await
    }

    async fn publish_message(&self, message: PlainMessage) -> Result<PublishAck, PublishError> {
        self.publish_to_all(Publication::Message(&message, None)).await
    }

    fn subscribe(
        &self,
        pattern: Pattern,
        queue_group: Option<String>,
        subscriber: Arc<dyn Subscriber>,
    ) -> SubscriptionId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut state) = self.state.write() {
            Self::insert(&mut state, id, NewSubscription { pattern, queue_group, subscriber, durable: None });
        }
        SubscriptionId(id)
    }

    fn unsubscribe(&self, id: SubscriptionId) {
        if let Ok(mut state) = self.state.write() {
            Self::remove(&mut state, id);
        }
    }

    fn replace_subscriptions(
        &self,
        remove: &[SubscriptionId],
        add: Vec<NewSubscription>,
    ) -> (Vec<SubscriptionId>, Settled) {
        let ids: Vec<u64> = add.iter().map(|_| self.next_id.fetch_add(1, Ordering::Relaxed)).collect();
        let old_epoch = match self.state.write() {
            Ok(mut state) => {
                for id in remove {
                    Self::remove(&mut state, *id);
                }
                for (id, subscription) in ids.iter().zip(add) {
                    Self::insert(&mut state, *id, subscription);
                }
                std::mem::take(&mut state.epoch)
            }
            Err(_) => TaskTracker::new(),
        };
        old_epoch.close();
        let settled = Box::pin(async move { old_epoch.wait().await });
        (ids.into_iter().map(SubscriptionId).collect(), settled)
    }

    fn set_unrouted(&self, subscriber: Arc<dyn Subscriber>) {
        if self.unrouted.set(subscriber).is_err() {
            tracing::warn!("the broker already hands unrouted events to a subscriber");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    #[async_trait]
    impl Subscriber for Collect {
        async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
            self.0.lock().unwrap().push(event.subject.clone());
            Ok(Accepted::Routed)
        }
    }

    struct Full;

    #[async_trait]
    impl Subscriber for Full {
        async fn deliver(&self, _: &Event) -> Result<Accepted, Refusal> {
            Err(Refusal::Full { what: "queue x".into(), retry_after: std::time::Duration::from_secs(1) })
        }
    }

    use crate::broker::test_event as event;

    /// Takes plain messages as they are, and counts what came as a message and as an event.
    #[derive(Default)]
    struct Passer {
        messages: AtomicU64,
        events: AtomicU64,
    }

    #[async_trait]
    impl Subscriber for Passer {
        async fn deliver(&self, _: &Event) -> Result<Accepted, Refusal> {
            self.events.fetch_add(1, Ordering::Relaxed);
            Ok(Accepted::Delivered)
        }

        fn deliver_message_now(&self, _: &PlainMessage) -> Option<Result<Accepted, Refusal>> {
            self.messages.fetch_add(1, Ordering::Relaxed);
            Some(Ok(Accepted::Delivered))
        }
    }

    #[tokio::test]
    async fn a_plain_message_becomes_an_event_only_for_a_subscriber_that_needs_one() {
        let broker = EmbeddedBroker::new();
        let (passers, route) =
            ([Arc::new(Passer::default()), Arc::new(Passer::default())], Arc::new(crate::broker::Collect::default()));
        broker.subscribe(Pattern::new("orders.*").unwrap(), None, passers[0].clone());
        broker.subscribe(Pattern::new(">").unwrap(), None, passers[1].clone());
        broker.subscribe(Pattern::new("orders.>").unwrap(), None, route.clone());
        let message = |subject: &str| PlainMessage {
            subject: subject.into(),
            reply: Some("_INBOX.1".into()),
            payload: bytes::Bytes::from_static(b"hi"),
            client: 7,
        };
        let ack = broker.publish_message(message("audit.x")).await.unwrap();
        assert_eq!(ack.delivered, 1);
        assert_eq!(passers[1].messages.load(Ordering::Relaxed), 1);
        assert!(route.0.lock().unwrap().is_empty());

        let ack = broker.publish_message(message("orders.new")).await.unwrap();
        assert_eq!(ack.delivered, 3);
        let counts = |p: &Passer| (p.messages.load(Ordering::Relaxed), p.events.load(Ordering::Relaxed));
        assert_eq!((counts(&passers[0]), counts(&passers[1])), ((1, 0), (2, 0)), "NATS clients get the message");
        let events = route.0.lock().unwrap().clone();
        let [event] = &events[..] else { panic!("the route gets one event: {events:?}") };
        let expected = message("orders.new").into_event().unwrap();
        assert_eq!((&event.subject, &event.data, &event.nats), (&expected.subject, &expected.data, &expected.nats));
        assert_eq!(
            (event.context.source.as_str(), event.context.ty.as_str()),
            ("/eventyard/nats", crate::codec::RAW_TYPE)
        );

        // Publishers check subjects first; a message that still makes no event is refused.
        let invalid = broker.publish_message(message("orders.\u{0}")).await;
        assert!(matches!(invalid, Err(PublishError::Refused(Refusal::Unavailable { .. }))), "{invalid:?}");
        assert_eq!(route.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn publishes_reach_matching_subscribers_and_one_member_per_queue_group() {
        let broker = EmbeddedBroker::new();
        let (all, orders, q1, q2) = (
            Arc::new(Collect::default()),
            Arc::new(Collect::default()),
            Arc::new(Collect::default()),
            Arc::new(Collect::default()),
        );
        broker.subscribe(Pattern::new(">").unwrap(), None, all.clone());
        let sub = broker.subscribe(Pattern::new("orders.*").unwrap(), None, orders.clone());
        broker.subscribe(Pattern::new("orders.>").unwrap(), Some("workers".into()), q1.clone());
        broker.subscribe(Pattern::new("orders.>").unwrap(), Some("workers".into()), q2.clone());

        for i in 0..10 {
            let ack = broker.publish(event(&format!("orders.{i}"))).await.unwrap();
            assert_eq!(ack.delivered, 3);
        }
        assert_eq!(broker.publish(event("users.1")).await.unwrap().delivered, 1);
        assert_eq!(all.0.lock().unwrap().len(), 11);
        assert_eq!(orders.0.lock().unwrap().len(), 10);
        assert_eq!(q1.0.lock().unwrap().len() + q2.0.lock().unwrap().len(), 10);
        assert_eq!(q1.0.lock().unwrap().len(), 5, "round robin spreads the group's work");

        broker.unsubscribe(sub);
        assert_eq!(broker.publish(event("orders.x")).await.unwrap().delivered, 2);
    }

    /// Takes events slowly, so a publish is still in flight while subscriptions change.
    #[derive(Default)]
    struct Slow(Mutex<Vec<String>>);

    #[async_trait]
    impl Subscriber for Slow {
        async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            self.0.lock().unwrap().push(event.subject.clone());
            Ok(Accepted::Routed)
        }
    }

    /// Accepts every event as the given kind of subscriber would.
    struct Answer(Accepted);

    #[async_trait]
    impl Subscriber for Answer {
        async fn deliver(&self, _: &Event) -> Result<Accepted, Refusal> {
            Ok(self.0)
        }
    }

    #[tokio::test]
    async fn what_no_route_takes_goes_to_the_unrouted_subscriber() {
        let broker = EmbeddedBroker::new();
        let unrouted = Arc::new(Collect::default());
        broker.set_unrouted(unrouted.clone());
        let pattern = |p: &str| Pattern::new(p).unwrap();
        broker.subscribe(pattern("orders.>"), None, Arc::new(Answer(Accepted::Routed)));
        broker.subscribe(pattern("filtered.>"), None, Arc::new(Answer(Accepted::Passed)));
        broker.subscribe(pattern("watched.>"), None, Arc::new(Answer(Accepted::Delivered)));
        for subject in ["orders.a", "filtered.b", "watched.c", "nobody.d", "$SYS.x", "$A.T.y", "_INBOX.z"] {
            broker.publish(event(subject)).await.unwrap();
        }
        let told = unrouted.0.lock().unwrap().clone();
        assert_eq!(told, ["filtered.b", "watched.c", "nobody.d"], "a client's delivery is not a route's");
        assert_eq!(broker.publish(event("watched.e")).await.unwrap().delivered, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn replaced_subscriptions_switch_at_once_and_settle_after_publishes_in_flight() {
        let broker = Arc::new(EmbeddedBroker::new());
        let (old, new) = (Arc::new(Slow::default()), Arc::new(Collect::default()));
        let old_id = broker.subscribe(Pattern::new("a.>").unwrap(), None, old.clone());
        let in_flight = tokio::spawn({
            let broker = broker.clone();
            async move { broker.publish(event("a.1")).await }
        });
        tokio::task::yield_now().await;
        let add = NewSubscription {
            pattern: Pattern::new("a.>").unwrap(),
            queue_group: None,
            subscriber: new.clone(),
            durable: None,
        };
        let (ids, settled) = broker.replace_subscriptions(&[old_id], vec![add]);
        assert_eq!(ids.len(), 1);
        assert_eq!(broker.publish(event("a.2")).await.unwrap().delivered, 1);
        let settled = tokio::spawn(settled);
        tokio::task::yield_now().await;
        assert!(!settled.is_finished(), "a publish to the old subscription is still in flight");
        in_flight.await.unwrap().unwrap();
        settled.await.unwrap();
        assert_eq!(*old.0.lock().unwrap(), ["a.1"]);
        assert_eq!(*new.0.lock().unwrap(), ["a.2"]);
    }

    #[tokio::test]
    async fn a_refusal_fails_the_publish() {
        let broker = EmbeddedBroker::new();
        broker.subscribe(Pattern::new("a").unwrap(), None, Arc::new(Full));
        let err = broker.publish(event("a")).await.unwrap_err();
        assert!(matches!(err, PublishError::Refused(Refusal::Full { .. })));
    }
}
