//! [`SinkWorker`]: drains one sink's queue. Takes batches (by size and linger), delivers them
//! through the [`Sink`] trait, retries what failed retryably with exponential backoff and full
//! jitter up to `max_attempts` or `max_elapsed`, and dead-letters the rest on `$DLQ.<sink>`
//! ([`crate::dead_letter`]). Permanent failures dead-letter at once.
//! It never chooses routes and never retries a permanent error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{DeliveryError, Sink};
use crate::broker::Broker;
use crate::dead_letter;
use crate::event::Event;
use crate::queue::SinkQueue;
use crate::slot::Slot;
use crate::telemetry::metrics::Histogram;

/// How a sink retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`: uniform in `[0, min(max, initial * 2^(attempt-1))]`
    /// ("full jitter"), so retrying clients spread out instead of stampeding.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
        let cap = exp.min(self.max_backoff);
        Duration::from_nanos(fastrand::u64(..=cap.as_nanos() as u64))
    }
}

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub delivered: AtomicU64,
    /// Attempts that failed (each retry of a batch counts).
    pub failed_attempts: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Dead letters that could not be published (no route takes `$DLQ.<sink>`, or it refused).
    pub dead_letters_lost: AtomicU64,
    /// Events given up at shutdown, undelivered.
    pub abandoned: AtomicU64,
    /// Time per delivery attempt.
    pub delivery_seconds: Histogram,
    /// The last delivery error, and when (Unix seconds).
    pub last_error: std::sync::Mutex<Option<(i64, String)>>,
}

impl SinkStats {
    fn failed(&self, reason: &str) {
        let at = time::OffsetDateTime::now_utc().unix_timestamp();
        *self.last_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((at, reason.to_owned()));
    }

    /// The last delivery error and when it happened (Unix seconds), if any.
    pub fn last_error(&self) -> Option<(i64, String)> {
        self.last_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// How a worker delivers: the sink with its batching and retry settings. A config reload replaces
/// it whole; a batch in hand finishes with the settings it started with.
pub struct Delivery {
    pub sink: Arc<dyn Sink>,
    pub batch_size: usize,
    /// Most bytes per delivery past its first event.
    pub batch_bytes: usize,
    pub linger: Duration,
    pub retry: RetryPolicy,
}

/// Drains one sink's queue.
pub struct SinkWorker {
    pub name: String,
    pub delivery: Arc<Slot<Delivery>>,
    pub queue: Arc<SinkQueue>,
    /// Where dead letters are published.
    pub broker: Arc<dyn Broker>,
    pub stats: Arc<SinkStats>,
}

impl SinkWorker {
    /// Delivers until the queue is closed and drained, or `stop` is cancelled (then whatever is in
    /// hand is counted as abandoned).
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let (_, delivery) = self.delivery.current();
            let batch = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                batch = self.queue.pop_batch(delivery.batch_size, delivery.batch_bytes, delivery.linger) => batch,
            };
            let Some(batch) = batch else { break };
            // The batch's bytes stay counted against the queue until its delivery is over.
            let (events, held) = batch.into_parts();
            self.deliver(&delivery, events, &stop).await;
            drop(held);
        }
        let left = self.queue.abandon_all();
        if left > 0 {
            self.stats.abandoned.fetch_add(left as u64, Ordering::Relaxed);
            tracing::error!(sink = %self.name, events = left, "stopped with events still queued");
        }
    }

    /// Delivers one batch, retrying and dead-lettering as the failures say.
    async fn deliver(&self, delivery: &Delivery, batch: Vec<Event>, stop: &CancellationToken) {
        let started = Instant::now();
        let mut pending = batch;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let call = Instant::now();
            let result = delivery.sink.deliver(&pending).await;
            self.stats.delivery_seconds.record(call.elapsed());
            let reason = match result {
                Ok(()) => {
                    self.stats.delivered.fetch_add(pending.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err(DeliveryError::Permanent(reason)) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    return self.dead_letter(pending, &reason, attempt).await;
                }
                Err(DeliveryError::Partial(failures)) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    let mut failed: Vec<Option<(String, bool)>> = vec![None; pending.len()];
                    for failure in failures {
                        if let Some(slot) = failed.get_mut(failure.index) {
                            *slot = Some((failure.message, failure.retryable));
                        }
                    }
                    let mut retry = Vec::new();
                    let mut delivered = 0;
                    for (event, outcome) in pending.into_iter().zip(failed) {
                        match outcome {
                            None => delivered += 1,
                            Some((_, true)) => retry.push(event),
                            Some((message, false)) => self.dead_letter(vec![event], &message, attempt).await,
                        }
                    }
                    self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
                    pending = retry;
                    if pending.is_empty() {
                        return;
                    }
                    format!("{} event(s) of the batch failed", pending.len())
                }
                Err(err) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    err.to_string()
                }
            };
            self.stats.failed(&reason);
            if attempt >= delivery.retry.max_attempts || started.elapsed() >= delivery.retry.max_elapsed {
                return self.dead_letter(pending, &reason, attempt).await;
            }
            let wait = delivery.retry.backoff(attempt);
            tracing::warn!(sink = %self.name, attempt, wait_ms = wait.as_millis() as u64, error = %reason, "delivery failed, retrying");
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    self.stats.abandoned.fetch_add(pending.len() as u64, Ordering::Relaxed);
                    tracing::error!(sink = %self.name, events = pending.len(), "shutdown while retrying, events abandoned");
                    return crate::queue::abandon(pending);
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Publishes each event on `$DLQ.<sink>` (see [`crate::dead_letter`]).
    async fn dead_letter(&self, events: Vec<Event>, reason: &str, attempts: u32) {
        self.stats.failed(reason);
        for event in events {
            self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            dead_letter::publish(
                self.broker.as_ref(),
                event,
                &self.name,
                reason,
                attempts,
                &self.stats.dead_letters_lost,
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::broker::{Collect, EmbeddedBroker, Pattern};
    use crate::event::EventJson;
    use crate::queue::{MemoryBudget, OverflowPolicy, QueueLimits};
    use crate::sink::EventFailure;

    /// Fails its first `failures` calls with `error`, then accepts; records what it accepted.
    struct Flaky {
        failures: Mutex<u32>,
        error: DeliveryError,
        accepted: Mutex<Vec<String>>,
        calls: AtomicU64,
    }

    #[async_trait]
    impl Sink for Flaky {
        async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                if let DeliveryError::Partial(list) = &self.error {
                    let failed: Vec<usize> = list.iter().map(|f| f.index).collect();
                    let mut accepted = self.accepted.lock().unwrap();
                    accepted.extend(
                        batch
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| !failed.contains(i))
                            .map(|(_, e)| e.context.id.clone()),
                    );
                }
                return Err(self.error.clone());
            }
            self.accepted.lock().unwrap().extend(batch.iter().map(|e| e.context.id.clone()));
            Ok(())
        }
    }

    fn event(id: &str) -> Event {
        serde_json::from_value::<EventJson>(serde_json::json!({"subject": "orders.x", "id": id}))
            .unwrap()
            .into_event(String::new)
            .unwrap()
    }

    async fn run(sink: Arc<Flaky>, events: &[&str], retry: RetryPolicy) -> (Arc<SinkStats>, Vec<Event>) {
        let broker = Arc::new(EmbeddedBroker::new());
        let dead = Arc::new(Collect::default());
        broker.subscribe(Pattern::new("$DLQ.>").unwrap(), None, dead.clone());
        let queue = Arc::new(SinkQueue::new(
            "out",
            QueueLimits::events(100, OverflowPolicy::Block, Duration::ZERO),
            MemoryBudget::unbounded(),
        ));
        for id in events {
            queue.push(event(id)).await.unwrap();
        }
        queue.close();
        let stats = Arc::new(SinkStats::default());
        let delivery = Delivery { sink, batch_size: 10, batch_bytes: usize::MAX, linger: Duration::ZERO, retry };
        let worker = SinkWorker {
            name: "out".into(),
            delivery: Arc::new(Slot::new(Arc::new(delivery))),
            queue,
            broker,
            stats: stats.clone(),
        };
        worker.run(CancellationToken::new()).await;
        let dead = dead.0.lock().unwrap().clone();
        (stats, dead)
    }

    fn flaky(failures: u32, error: DeliveryError) -> Arc<Flaky> {
        Arc::new(Flaky { failures: Mutex::new(failures), error, accepted: Mutex::default(), calls: AtomicU64::new(0) })
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_are_retried_until_delivered() {
        let sink = flaky(3, DeliveryError::Retryable("busy".into()));
        let (stats, dead) = run(sink.clone(), &["a", "b"], RetryPolicy::default()).await;
        assert_eq!(*sink.accepted.lock().unwrap(), ["a", "b"]);
        assert_eq!(sink.calls.load(Ordering::Relaxed), 4);
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 2);
        assert!(dead.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_retries_dead_letter_with_reason_attempts_and_sink() {
        let sink = flaky(100, DeliveryError::Retryable("busy".into()));
        let retry = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        let (stats, dead) = run(sink.clone(), &["a"], retry).await;
        assert_eq!(sink.calls.load(Ordering::Relaxed), 3);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].subject, "$DLQ.out");
        assert_eq!(dead[0].extension("deadletterreason"), Some("delivery failed: busy"));
        assert_eq!(dead[0].extension("deadletterattempts"), Some("3"));
        assert_eq!(dead[0].extension("deadlettersink"), Some("out"));
        assert_eq!(dead[0].extension("deadlettersubject"), Some("orders.x"));
        assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_dead_letter_at_once() {
        let sink = flaky(1, DeliveryError::Permanent("schema".into()));
        let (_, dead) = run(sink.clone(), &["a"], RetryPolicy::default()).await;
        assert_eq!(sink.calls.load(Ordering::Relaxed), 1);
        assert_eq!(dead[0].extension("deadletterreason"), Some("schema"));
    }

    #[tokio::test(start_paused = true)]
    async fn partial_failures_retry_only_the_retryable_events() {
        let failures = vec![
            EventFailure { index: 1, message: "later".into(), retryable: true },
            EventFailure { index: 2, message: "never".into(), retryable: false },
        ];
        let sink = flaky(1, DeliveryError::Partial(failures));
        let (stats, dead) = run(sink.clone(), &["a", "b", "c"], RetryPolicy::default()).await;
        assert_eq!(*sink.accepted.lock().unwrap(), ["a", "b"]);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].context.id, "c");
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_cap() {
        let retry = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        for attempt in 1..10 {
            let cap = Duration::from_millis(100 * 2u64.pow(attempt - 1)).min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(retry.backoff(attempt) <= cap);
            }
        }
    }
}
