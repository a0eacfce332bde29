//! [`DurableBroker`]: the embedded broker with a write-ahead log — durable embedded mode,
//! `[durability]`. An event bound for a route (a durable subscription) is appended to the log
//! ([`crate::wal::LogWriter`]) before the broker delivers it, so the publisher's acknowledgement
//! means "on disk" (or "with the OS", as the fsync policy says); it carries a [`Completion`] that
//! marks it done in the log once every copy of it is delivered, dead-lettered or dropped by policy.
//! At start, [`DurableBroker::replay`] delivers what the log holds that was never marked done.
//!
//! Events that no route takes (those for NATS clients only, `$SYS` events) are not logged: core
//! NATS promises them at most once. A route's subscriber is wrapped so that an event reaching it
//! unlogged (published while a reload was adding the route) is logged right there: no event is on
//! a route's queues without a record. Never decides where an event goes; `inner` does.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Accepted, Broker, EmbeddedBroker, NewSubscription, Pattern, PublishAck, PublishError, Refusal, Settled, Subscriber,
    SubscriptionId, SubscriptionIndex,
};
use crate::completion::{Completion, Outcome};
use crate::event::Event;
use crate::wal::{self, AppendError, LogWriter, PendingEvents, Seq};

/// Events read back from the log ahead of their delivery in a replay.
const REPLAY_AHEAD: usize = 64;

/// The routes, as the log sees them: what an event needs a record for, and where a replay goes.
#[derive(Default)]
struct Routes {
    index: SubscriptionIndex<Arc<dyn Subscriber>>,
    patterns: HashMap<u64, Pattern>,
}

impl Routes {
    fn remove(&mut self, id: SubscriptionId) {
        if let Some(pattern) = self.patterns.remove(&id.0) {
            self.index.remove(&pattern, id.0);
        }
    }
}

/// The embedded broker with a write-ahead log; see the module docs.
pub struct DurableBroker {
    inner: EmbeddedBroker,
    log: LogWriter,
    routes: RwLock<Routes>,
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Events handed to their routes again.
    pub delivered: usize,
    /// Events no route of the config takes now: kept in the log for a config that has one.
    pub unrouted: usize,
}

impl DurableBroker {
    /// A broker whose routed events go through `log`.
    pub fn new(log: LogWriter) -> DurableBroker {
        DurableBroker { inner: EmbeddedBroker::new(), log, routes: Default::default() }
    }

    /// Delivers `pending` (what [`wal::WriteAheadLog::open`] found) to the routes that take each
    /// event now, waiting out full queues. The log is read back on a blocking thread a few events
    /// ahead of delivery, so a log larger than memory replays in bounded memory. Each event is
    /// marked done in the log as any other, once its copies are; one that no route takes stays in
    /// the log. Stops early, leaving the rest in the log, when a route is closing (the router is
    /// shutting down).
    pub async fn replay(&self, pending: PendingEvents) -> Replayed {
        let (read, mut events) = tokio::sync::mpsc::channel(REPLAY_AHEAD);
        let reader = tokio::task::spawn_blocking(move || {
            for found in pending {
                if read.blocking_send(found).is_err() {
                    break;
                }
            }
        });
        let mut replayed = Replayed::default();
        while let Some((seq, mut event)) = events.recv().await {
            let completion = completion(&self.log, seq);
            let targets = self.routes_for(&event.subject);
            if targets.is_empty() {
                completion.fail();
                replayed.unrouted += 1;
                continue;
            }
            event.completion = Some(completion);
            for route in targets {
                if !deliver_patiently(&*route, &event).await {
                    if let Some(completion) = &event.completion {
                        completion.fail();
                    }
                    drop(events);
                    let _ = reader.await;
                    return replayed;
                }
            }
            replayed.delivered += 1;
        }
        let _ = reader.await;
        replayed
    }

    /// Commits and syncs what the log was given so far (at shutdown).
    pub async fn sync(&self) -> Result<(), AppendError> {
        self.log.sync().await
    }

    /// The routes an event on `subject` goes to.
    fn routes_for(&self, subject: &str) -> Vec<Arc<dyn Subscriber>> {
        let routes = self.routes.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut found = Vec::new();
        routes.index.for_each_match(subject, |_, route| found.push(route.clone()));
        found
    }

    fn is_routed(&self, subject: &str) -> bool {
        let routes = self.routes.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut routed = false;
        routes.index.for_each_match(subject, |_, _| routed = true);
        routed
    }

    /// Logs those of `events` a route takes that carry no completion yet, in one group, and gives
    /// each its completion.
    async fn log_routed(&self, events: &mut [Event]) -> Result<(), Refusal> {
        let routed: Vec<usize> = (0..events.len())
            .filter(|&i| events[i].completion.is_none() && self.is_routed(&events[i].subject))
            .collect();
        if routed.is_empty() {
            return Ok(());
        }
        let records = routed.iter().map(|&i| record(&events[i])).collect::<Result<_, _>>()?;
        let seqs = self.log.append(records).await.map_err(unavailable)?;
        for (i, seq) in routed.into_iter().zip(seqs) {
            events[i].completion = Some(completion(&self.log, seq));
        }
        Ok(())
    }
}

/// The completion of logged event `seq`: done marks it done; failed leaves it for the next start.
fn completion(log: &LogWriter, seq: Seq) -> Completion {
    let log = log.clone();
    Completion::calling(move |outcome| match outcome {
        Outcome::Done => log.done(seq),
        Outcome::Failed => tracing::debug!(seq, "event kept in the write-ahead log for the next start"),
    })
}

/// `event`'s log record, or the refusal of an event too large for the log.
fn record(event: &Event) -> Result<Vec<u8>, Refusal> {
    wal::encode(event).map_err(|err| Refusal::TooLarge { size: err.size, limit: wal::MAX_RECORD })
}

fn unavailable(err: AppendError) -> Refusal {
    Refusal::Unavailable { what: "the write-ahead log".into(), reason: err.message }
}

/// Delivers `event` to `route`, waiting while its queues are full; false if the route is closing.
async fn deliver_patiently(route: &dyn Subscriber, event: &Event) -> bool {
    loop {
        match route.deliver(event).await {
            Ok(_) => return true,
            Err(Refusal::Closed(_)) => return false,
            Err(Refusal::Full { retry_after, .. }) => tokio::time::sleep(retry_after.min(Duration::from_secs(1))).await,
            Err(Refusal::Unavailable { .. }) => tokio::time::sleep(Duration::from_secs(1)).await,
            // Never logged, so never replayed; a route refuses it only for its own reasons.
            Err(Refusal::TooLarge { .. }) => return true,
        }
    }
}

/// A route's subscriber inside the embedded broker: logs an event that reaches it unlogged.
struct Logged {
    route: Arc<dyn Subscriber>,
    log: LogWriter,
}

#[async_trait]
impl Subscriber for Logged {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        if event.completion.is_some() {
            return self.route.deliver(event).await;
        }
        let seq = self.log.append(vec![record(event)?]).await.map_err(unavailable)?;
        let mut event = event.clone();
        event.completion = Some(completion(&self.log, seq[0]));
        self.route.deliver(&event).await
    }
}

#[async_trait]
impl Broker for DurableBroker {
    async fn publish(&self, event: Event) -> Result<PublishAck, PublishError> {
        let mut events = [event];
        self.log_routed(&mut events).await?;
        let [event] = events;
        self.inner.publish(event).await
    }

    async fn publish_all(&self, mut events: Vec<Event>) -> Result<(), (usize, PublishError)> {
        self.log_routed(&mut events).await.map_err(|refusal| (0, refusal.into()))?;
        self.inner.publish_all(events).await
    }

    fn subscribe(
        &self,
        pattern: Pattern,
        queue_group: Option<String>,
        subscriber: Arc<dyn Subscriber>,
    ) -> SubscriptionId {
        self.inner.subscribe(pattern, queue_group, subscriber)
    }

    fn unsubscribe(&self, id: SubscriptionId) {
        self.inner.unsubscribe(id);
        self.routes.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(id);
    }

    fn replace_subscriptions(
        &self,
        remove: &[SubscriptionId],
        add: Vec<NewSubscription>,
    ) -> (Vec<SubscriptionId>, Settled) {
        let mut durable = Vec::new();
        let add: Vec<NewSubscription> = add
            .into_iter()
            .map(|mut subscription| {
                let route = subscription.subscriber.clone();
                durable.push(subscription.durable.is_some().then(|| (subscription.pattern.clone(), route.clone())));
                if subscription.durable.is_some() {
                    subscription.subscriber = Arc::new(Logged { route, log: self.log.clone() });
                }
                subscription
            })
            .collect();
        let (ids, settled) = self.inner.replace_subscriptions(remove, add);
        let mut routes = self.routes.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for id in remove {
            routes.remove(*id);
        }
        for (id, route) in ids.iter().zip(durable) {
            if let Some((pattern, route)) = route {
                routes.index.insert(&pattern, id.0, route);
                routes.patterns.insert(id.0, pattern);
            }
        }
        drop(routes);
        (ids, settled)
    }

    /// A client's acknowledgement waits for the log.
    fn stores_publishes(&self) -> bool {
        true
    }

    fn set_unrouted(&self, subscriber: Arc<dyn Subscriber>) {
        self.inner.set_unrouted(subscriber);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Collect;
    use crate::event::EventJson;
    use crate::wal::{FsyncPolicy, WalSettings, WriteAheadLog};

    fn event(subject: &str, id: &str) -> Event {
        serde_json::from_value::<EventJson>(serde_json::json!({"subject": subject, "id": id}))
            .unwrap()
            .into_event(|| unreachable!())
            .unwrap()
    }

    fn open(dir: &std::path::Path) -> (DurableBroker, PendingEvents) {
        let settings = WalSettings { dir: dir.to_path_buf(), fsync: FsyncPolicy::Always, segment_bytes: 1 << 20 };
        let (log, recovery) = WriteAheadLog::open(settings).unwrap();
        (DurableBroker::new(LogWriter::start(log).unwrap()), recovery.pending)
    }

    fn ids(pending: PendingEvents) -> Vec<String> {
        pending.map(|(_, e)| e.context.id).collect()
    }

    fn route(broker: &DurableBroker, pattern: &str) -> Arc<Collect> {
        let route = Arc::new(Collect::default());
        let subscription = NewSubscription {
            pattern: Pattern::new(pattern).unwrap(),
            queue_group: None,
            subscriber: route.clone(),
            durable: Some("r".into()),
        };
        let _ = broker.replace_subscriptions(&[], vec![subscription]);
        route
    }

    #[tokio::test]
    async fn routed_events_stay_in_the_log_until_every_copy_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, _) = open(dir.path());
        let orders = route(&broker, "orders.>");
        let plain = Arc::new(Collect::default());
        broker.subscribe(Pattern::new(">").unwrap(), None, plain.clone());
        broker.publish_all(vec![event("orders.1", "a"), event("users.1", "b"), event("orders.2", "c")]).await.unwrap();
        assert_eq!(plain.0.lock().unwrap().len(), 3);
        assert!(plain.0.lock().unwrap()[1].completion.is_none(), "no route takes it: not logged");

        // Delivered copies of "a": done. "c" is still on the route's queue.
        orders.0.lock().unwrap().remove(0);
        plain.0.lock().unwrap().clear();
        broker.sync().await.unwrap();
        let (_, pending) = open(dir.path());
        assert_eq!(ids(pending), ["c"]);
    }

    #[tokio::test]
    async fn a_replay_hands_what_was_pending_to_the_routes_that_take_it() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, _) = open(dir.path());
        let kept = route(&broker, "orders.>");
        broker.publish(event("orders.1", "a")).await.unwrap();
        broker.publish(event("orders.2", "b")).await.unwrap();
        broker.sync().await.unwrap();

        let (broker, pending) = open(dir.path());
        assert_eq!(pending.len(), 2);
        let orders = route(&broker, "orders.1");
        assert_eq!(broker.replay(pending).await, Replayed { delivered: 1, unrouted: 1 });
        assert_eq!(orders.0.lock().unwrap()[0].context.id, "a");
        orders.0.lock().unwrap().clear();
        broker.sync().await.unwrap();
        let (_, pending) = open(dir.path());
        assert_eq!(ids(pending), ["b"], "an event no route takes stays in the log");
        drop(kept);
    }

    #[tokio::test]
    async fn an_event_too_large_for_the_log_is_refused_and_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, _) = open(dir.path());
        let orders = route(&broker, "orders.>");
        let mut big = event("orders.1", "big");
        big.data = bytes::Bytes::from(vec![b'x'; wal::MAX_RECORD]);
        let refused = broker.publish(big).await;
        assert!(matches!(refused, Err(PublishError::Refused(Refusal::TooLarge { limit: wal::MAX_RECORD, .. }))));
        assert!(orders.0.lock().unwrap().is_empty(), "not delivered either");
        broker.sync().await.unwrap();
        let (_, pending) = open(dir.path());
        assert!(pending.is_empty());
    }

    #[tokio::test]
    async fn an_event_reaching_a_route_unlogged_is_logged_there() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, _) = open(dir.path());
        let orders = route(&broker, "orders.>");
        let logged = Logged { route: orders.clone(), log: broker.log.clone() };
        logged.deliver(&event("orders.1", "a")).await.unwrap();
        assert!(orders.0.lock().unwrap()[0].completion.is_some());
        broker.sync().await.unwrap();
        let (_, pending) = open(dir.path());
        assert_eq!(ids(pending), ["a"]);
    }
}
