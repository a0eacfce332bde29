//! A live tap: a sample of the events on a subject pattern, for a person watching (the console).
//! A broker subscriber that lets every event by (`Passed`: a tap never changes where an event
//! goes or whether it counts as routed) and copies at most [`Tap::PER_SECOND`] a second into a
//! small buffer; what it skips is counted, never queued. An event it skips costs one atomic add.
//! Ends its subscription when dropped, so a tap costs nothing once nobody watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::broker::{Accepted, Broker, Pattern, Refusal, Subscriber, SubscriptionId};
use crate::event::Event;

/// Events waiting for the watcher before more are skipped.
const BUFFER: usize = 64;

/// A running tap: the events it samples arrive on [`Tap::next`].
pub struct Tap {
    events: mpsc::Receiver<Event>,
    sampler: Arc<Sampler>,
    broker: Arc<dyn Broker>,
    subscription: SubscriptionId,
    /// Opens the next second's window.
    clock: tokio::task::JoinHandle<()>,
}

impl Tap {
    /// The most events a second a tap passes on.
    pub const PER_SECOND: u32 = 50;

    /// Taps `pattern` on `broker`.
    pub fn start(broker: Arc<dyn Broker>, pattern: Pattern) -> Tap {
        let (send, events) = mpsc::channel(BUFFER);
        let sampler = Arc::new(Sampler { send, this_second: AtomicU64::new(0), skipped: AtomicU64::new(0) });
        let subscription = broker.subscribe(pattern, None, sampler.clone());
        let clock = tokio::spawn({
            let sampler = sampler.clone();
            async move {
                let mut seconds = tokio::time::interval(Duration::from_secs(1));
                seconds.tick().await;
                loop {
                    seconds.tick().await;
                    let seen = sampler.this_second.swap(0, Ordering::Relaxed);
                    let over = seen.saturating_sub(u64::from(Tap::PER_SECOND));
                    sampler.skipped.fetch_add(over, Ordering::Relaxed);
                }
            }
        });
        Tap { events, sampler, broker, subscription, clock }
    }

    /// The next event sampled.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Events matched but not passed on (over the rate, or the watcher behind).
    pub fn skipped(&self) -> u64 {
        let over = self.sampler.this_second.load(Ordering::Relaxed).saturating_sub(u64::from(Tap::PER_SECOND));
        self.sampler.skipped.load(Ordering::Relaxed) + over
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.broker.unsubscribe(self.subscription);
        self.clock.abort();
    }
}

/// The tap's subscriber: the first [`Tap::PER_SECOND`] events of each second go to a bounded
/// channel; the clock counts the rest as skipped when it opens the next second.
struct Sampler {
    send: mpsc::Sender<Event>,
    /// Events seen this second.
    this_second: AtomicU64,
    /// Events skipped in the seconds gone, and events the watcher was too far behind for.
    skipped: AtomicU64,
}

#[async_trait]
impl Subscriber for Sampler {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        if self.this_second.fetch_add(1, Ordering::Relaxed) < u64::from(Tap::PER_SECOND) {
            let mut sample = event.clone();
            sample.completion = None;
            if self.send.try_send(sample).is_err() {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Accepted::Passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::EmbeddedBroker;

    #[tokio::test]
    async fn a_tap_samples_its_subject_and_ends_with_its_watcher() {
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
        let mut tap = Tap::start(broker.clone(), Pattern::new("orders.>").expect("a pattern"));
        for i in 0..(Tap::PER_SECOND + 10) {
            let mut event = crate::event::full_event();
            event.subject = format!("orders.{i}");
            let ack = broker.publish(event).await.expect("published");
            assert_eq!(ack.delivered, 0, "a tap takes nothing");
        }
        let mut other = crate::event::full_event();
        other.subject = "payments.x".into();
        broker.publish(other).await.expect("published");
        assert_eq!(tap.next().await.map(|e| e.subject), Some("orders.0".into()));
        assert_eq!(tap.skipped(), 10, "over the rate");
        drop(tap);
        let mut late = crate::event::full_event();
        late.subject = "orders.late".into();
        broker.publish(late).await.expect("published after the tap ended");
    }
}
