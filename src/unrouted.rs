//! Events no route took: published on the router's own subjects, they matched no route, or every
//! route they matched let them by (a routing key, a handler's filter). Each is counted under its
//! subject family, the subject's first token, for `/metrics`; with `[unrouted] dead_letter = true`
//! it is also kept as a dead letter on `$DLQ.unrouted`, so an event the routes do not want is never
//! dropped without a trace. The broker hands them over ([`Broker::set_unrouted`]); this module never
//! decides where an event goes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use async_trait::async_trait;

use crate::broker::{Accepted, Broker, Refusal, Subscriber};
use crate::codec::nats::PlainMessage;
use crate::event::Event;

/// Unrouted events are dead-lettered on `$DLQ.unrouted`.
pub const DEAD_LETTER_NAME: &str = "unrouted";

/// Families counted by name; events of any further family are counted under [`OTHER_FAMILY`], so
/// publishers cannot grow the metrics without bound.
const MAX_FAMILIES: usize = 256;
const OTHER_FAMILY: &str = "_other";

/// The counts, and whether to dead-letter, of events no route took.
pub struct UnroutedEvents {
    /// Where dead letters are published: the router's broker (weak: the broker holds this).
    broker: Weak<dyn Broker>,
    dead_letter: AtomicBool,
    /// Counts by family; a publish that only counts takes the read lock (gateway-only traffic
    /// comes through here with every message).
    families: RwLock<BTreeMap<String, AtomicU64>>,
    /// Dead letters of unrouted events that no route took either.
    pub dead_letters_lost: AtomicU64,
}

impl UnroutedEvents {
    /// Starts counting what `broker` reports unrouted; `dead_letter` as `[unrouted]` says.
    pub fn attach(broker: &Arc<dyn Broker>, dead_letter: bool) -> Arc<UnroutedEvents> {
        let unrouted = Arc::new(UnroutedEvents {
            broker: Arc::downgrade(broker),
            dead_letter: AtomicBool::new(dead_letter),
            families: RwLock::default(),
            dead_letters_lost: AtomicU64::new(0),
        });
        broker.set_unrouted(unrouted.clone());
        unrouted
    }

    /// After a reload: whether unrouted events are dead-lettered from now on.
    pub fn set_dead_letter(&self, on: bool) {
        self.dead_letter.store(on, Ordering::Relaxed);
    }

    /// Unrouted events so far, by subject family.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let families = self.families.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        families.iter().map(|(family, count)| (family.clone(), count.load(Ordering::Relaxed))).collect()
    }

    fn count(&self, subject: &str) {
        let family = subject.split('.').next().unwrap_or(subject);
        {
            let families = self.families.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let known =
                families.get(family).or_else(|| families.get(OTHER_FAMILY).filter(|_| families.len() > MAX_FAMILIES));
            if let Some(count) = known {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut families = self.families.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let family = if families.len() < MAX_FAMILIES || families.contains_key(family) { family } else { OTHER_FAMILY };
        families.entry(family.to_owned()).or_default().fetch_add(1, Ordering::Relaxed);
    }
}

impl UnroutedEvents {
    /// Counting alone never waits; a dead letter does, and needs the event.
    fn count_only(&self, subject: &str) -> Option<Result<Accepted, Refusal>> {
        if self.dead_letter.load(Ordering::Relaxed) {
            return None;
        }
        self.count(subject);
        Some(Ok(Accepted::Passed))
    }
}

#[async_trait]
impl Subscriber for UnroutedEvents {
    fn deliver_now(&self, event: &Event) -> Option<Result<Accepted, Refusal>> {
        self.count_only(&event.subject)
    }

    fn deliver_message_now(&self, message: &PlainMessage) -> Option<Result<Accepted, Refusal>> {
        self.count_only(&message.subject)
    }

    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        self.count(&event.subject);
        if self.dead_letter.load(Ordering::Relaxed)
            && let Some(broker) = self.broker.upgrade()
        {
            let (lost, reason) = (&self.dead_letters_lost, "no route took the event");
            crate::dead_letter::publish(&*broker, event.clone(), DEAD_LETTER_NAME, reason, 0, lost).await;
        }
        Ok(Accepted::Passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Collect, EmbeddedBroker, Pattern, test_event as event};

    #[tokio::test]
    async fn unrouted_events_are_counted_by_family_and_dead_lettered_when_asked() {
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
        let unrouted = UnroutedEvents::attach(&broker, false);
        let dead = Arc::new(Collect::default());
        broker.subscribe(Pattern::new("$DLQ.>").unwrap(), None, dead.clone());
        broker.publish(event("automate.a")).await.unwrap();
        unrouted.set_dead_letter(true);
        broker.publish(event("automate.b")).await.unwrap();
        broker.publish(event("other")).await.unwrap();
        assert_eq!(unrouted.counts(), [("automate".to_owned(), 2), ("other".to_owned(), 1)]);
        let dead = dead.0.lock().unwrap();
        let subjects: Vec<&str> = dead.iter().map(|e| e.extension("deadlettersubject").unwrap()).collect();
        assert_eq!(subjects, ["automate.b", "other"], "dead letters once asked, none before");
        assert_eq!(dead[0].subject, "$DLQ.unrouted");
    }

    #[test]
    fn families_stop_growing_at_the_bound() {
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
        let unrouted = UnroutedEvents::attach(&broker, false);
        for i in 0..MAX_FAMILIES + 10 {
            unrouted.count(&format!("f{i}.x"));
        }
        let counts = unrouted.counts();
        assert_eq!(counts.len(), MAX_FAMILIES + 1);
        assert!(counts.contains(&(OTHER_FAMILY.to_owned(), 10)), "{counts:?}");
    }
}
