//! [`EmbeddedBroker`]: the in-process broker. Subscriptions live in a [`SubscriptionIndex`] behind a
//! read-write lock (publishes read, subscribes write); a queue group's member is chosen round-robin.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::{Broker, Pattern, PublishAck, PublishError, Subscriber, SubscriptionId, SubscriptionIndex};
use crate::event::Event;

struct Entry {
    queue_group: Option<String>,
    subscriber: Arc<dyn Subscriber>,
}

#[derive(Default)]
struct State {
    index: SubscriptionIndex<Arc<Entry>>,
    patterns: HashMap<u64, Pattern>,
}

/// The in-process broker.
#[derive(Default)]
pub struct EmbeddedBroker {
    state: RwLock<State>,
    next_id: AtomicU64,
    /// Spreads queue-group deliveries over members.
    round_robin: AtomicU64,
}

impl EmbeddedBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscribers an event on `subject` goes to: every plain subscription, and one member of
    /// each queue group.
    fn targets(&self, subject: &str) -> Vec<Arc<dyn Subscriber>> {
        let Ok(state) = self.state.read() else { return Vec::new() };
        let mut plain = Vec::new();
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
        plain
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    async fn publish(&self, event: Event) -> Result<PublishAck, PublishError> {
        let targets = self.targets(&event.subject);
        for subscriber in &targets {
            subscriber.deliver(&event).await?;
        }
        Ok(PublishAck { delivered: targets.len() })
    }

    fn subscribe(
        &self,
        pattern: Pattern,
        queue_group: Option<String>,
        subscriber: Arc<dyn Subscriber>,
    ) -> SubscriptionId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut state) = self.state.write() {
            state.index.insert(&pattern, id, Arc::new(Entry { queue_group, subscriber }));
            state.patterns.insert(id, pattern);
        }
        SubscriptionId(id)
    }

    fn unsubscribe(&self, id: SubscriptionId) {
        if let Ok(mut state) = self.state.write()
            && let Some(pattern) = state.patterns.remove(&id.0)
        {
            state.index.remove(&pattern, id.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::broker::Refusal;
    use crate::event::EventJson;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    #[async_trait]
    impl Subscriber for Collect {
        async fn deliver(&self, event: &Event) -> Result<(), Refusal> {
            self.0.lock().unwrap().push(event.subject.clone());
            Ok(())
        }
    }

    struct Full;

    #[async_trait]
    impl Subscriber for Full {
        async fn deliver(&self, _: &Event) -> Result<(), Refusal> {
            Err(Refusal::Full { what: "queue x".into(), retry_after: std::time::Duration::from_secs(1) })
        }
    }

    fn event(subject: &str) -> Event {
        serde_json::from_value::<EventJson>(serde_json::json!({"subject": subject}))
            .unwrap()
            .into_event(|| "1".into())
            .unwrap()
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

    #[tokio::test]
    async fn a_refusal_fails_the_publish() {
        let broker = EmbeddedBroker::new();
        broker.subscribe(Pattern::new("a").unwrap(), None, Arc::new(Full));
        let err = broker.publish(event("a")).await.unwrap_err();
        assert!(matches!(err, PublishError::Refused(Refusal::Full { .. })));
    }
}
