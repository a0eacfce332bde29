//! [`SinkQueue`]: the bounded queue in front of each sink. When it is full, its
//! [`OverflowPolicy`] decides: wait for room (`block`, up to a timeout), refuse the new event
//! (`reject`), or drop one (`drop_oldest`, `drop_newest`). Every drop and refusal is counted.
//! Never unbounded; never drops without counting.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;

use crate::broker::Refusal;
use crate::event::Event;

/// What a full queue does with one more event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Make the publisher wait for room, up to the block timeout, then refuse (backpressure).
    #[default]
    Block,
    /// Refuse the new event at once; the publisher is told to retry later.
    Reject,
    /// Drop the oldest queued event to make room.
    DropOldest,
    /// Drop the new event (the publisher is not told).
    DropNewest,
}

/// Counters of one queue.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub accepted: AtomicU64,
    pub dropped_oldest: AtomicU64,
    pub dropped_newest: AtomicU64,
    pub refused: AtomicU64,
}

/// The bounded queue of one sink.
#[derive(Debug)]
pub struct SinkQueue {
    name: String,
    state: Mutex<State>,
    not_empty: Notify,
    not_full: Notify,
    closed: AtomicBool,
    pub stats: QueueStats,
}

/// The queued events and the limits that apply to them; the limits can change while the queue
/// runs (a config reload), the events stay.
#[derive(Debug)]
struct State {
    items: VecDeque<Event>,
    capacity: usize,
    policy: OverflowPolicy,
    block_timeout: Duration,
}

/// How long a refused publisher is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl SinkQueue {
    pub fn new(name: impl Into<String>, capacity: usize, policy: OverflowPolicy, block_timeout: Duration) -> Self {
        SinkQueue {
            name: name.into(),
            state: Mutex::new(State { items: VecDeque::new(), capacity: capacity.max(1), policy, block_timeout }),
            not_empty: Notify::new(),
            not_full: Notify::new(),
            closed: AtomicBool::new(false),
            stats: QueueStats::default(),
        }
    }

    /// Applies new limits; queued events stay, even beyond a smaller capacity (new ones then wait
    /// or are refused until there is room again).
    pub fn set_limits(&self, capacity: usize, policy: OverflowPolicy, block_timeout: Duration) {
        if let Ok(mut state) = self.state.lock() {
            state.capacity = capacity.max(1);
            state.policy = policy;
            state.block_timeout = block_timeout;
        }
        self.not_full.notify_waiters();
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn capacity(&self) -> usize {
        self.state.lock().map_or(0, |state| state.capacity)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.state.lock().map_or(0, |state| state.items.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn full(&self) -> Refusal {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        Refusal::Full { what: format!("queue of sink `{}`", self.name), retry_after: RETRY_AFTER }
    }

    fn closed(&self) -> Refusal {
        Refusal::Closed(format!("queue of sink `{}`", self.name))
    }

    /// Queues `event`, applying the overflow policy when the queue is full.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped while blocked, the event was not queued.
    pub async fn push(&self, event: Event) -> Result<(), Refusal> {
        let mut deadline = None;
        let mut event = Some(event);
        loop {
            let room = self.not_full.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut state = self.state.lock().map_err(|_| self.closed())?;
                if self.closed.load(Ordering::Acquire) {
                    return Err(self.closed());
                }
                if state.items.len() < state.capacity {
                    state.items.extend(event.take());
                    drop(state);
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    self.not_empty.notify_one();
                    return Ok(());
                }
                match state.policy {
                    OverflowPolicy::Block => {
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + state.block_timeout);
                    }
                    OverflowPolicy::Reject => return Err(self.full()),
                    OverflowPolicy::DropNewest => {
                        self.stats.dropped_newest.fetch_add(1, Ordering::Relaxed);
                        warn_dropped(&self.name, "drop_newest");
                        return Ok(());
                    }
                    OverflowPolicy::DropOldest => {
                        state.items.pop_front();
                        state.items.extend(event.take());
                        drop(state);
                        self.stats.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                        warn_dropped(&self.name, "drop_oldest");
                        self.not_empty.notify_one();
                        return Ok(());
                    }
                }
            }
            let until = deadline.unwrap_or_else(tokio::time::Instant::now);
            if tokio::time::timeout_at(until, room).await.is_err() {
                return Err(self.full());
            }
        }
    }

    /// Takes up to `max` events: waits for the first, then up to `linger` for more. `None` once the
    /// queue is closed and empty.
    ///
    /// # Cancel safety
    /// Cancel safe: events stay in the queue while the batch fills and leave it only in the poll
    /// that returns them, so dropping the future loses nothing.
    pub async fn pop_batch(&self, max: usize, linger: Duration) -> Option<Vec<Event>> {
        let max = max.max(1);
        let mut deadline = None;
        loop {
            let more = self.not_empty.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            {
                let mut state = self.state.lock().ok()?;
                let closed = self.closed.load(Ordering::Acquire);
                let lingered = deadline.is_some_and(|until| tokio::time::Instant::now() >= until);
                let queued = state.items.len();
                if queued >= max || (queued > 0 && (closed || lingered || linger.is_zero())) {
                    let batch: Vec<Event> = state.items.drain(..queued.min(max)).collect();
                    drop(state);
                    self.not_full.notify_waiters();
                    return Some(batch);
                }
                if closed {
                    return None;
                }
                if queued > 0 {
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
                }
            }
            match deadline {
                None => more.await,
                // Woken by a push or by the end of the linger; either way, look again.
                Some(until) => {
                    let _ = tokio::time::timeout_at(until, more).await;
                }
            }
        }
    }

    /// Takes every queued event out as undelivered (see [`abandon`]); returns how many there were.
    pub fn abandon_all(&self) -> usize {
        let left: Vec<Event> = match self.state.lock() {
            Ok(mut state) => state.items.drain(..).collect(),
            Err(_) => return 0,
        };
        let count = left.len();
        abandon(left);
        count
    }

    /// Refuses further events; `pop_batch` drains what is queued, then returns `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.not_empty.notify_waiters();
        self.not_empty.notify_one();
        self.not_full.notify_waiters();
    }
}

/// Marks `events` as not delivered, so whoever handed them over hands them over again (cluster
/// mode: JetStream redelivers them). Events dropped by an overflow policy are not abandoned: the
/// policy says they may be lost.
pub fn abandon(events: impl IntoIterator<Item = Event>) {
    for event in events {
        if let Some(completion) = &event.completion {
            completion.fail();
        }
    }
}

/// Logs a drop at most about once a second per queue (the counter has every drop).
fn warn_dropped(queue: &str, policy: &str) {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::time::Instant;
    static LAST: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    let Ok(mut last) = LAST.get_or_init(Default::default).lock() else { return };
    let now = Instant::now();
    let due = last.get(queue).is_none_or(|at| now.duration_since(*at) >= Duration::from_secs(1));
    if due {
        last.insert(queue.to_owned(), now);
        tracing::warn!(sink = queue, policy, "sink queue full, dropping events");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::EventJson;

    fn event(n: usize) -> Event {
        serde_json::from_value::<EventJson>(serde_json::json!({"subject": "s", "id": n.to_string()}))
            .unwrap()
            .into_event(String::new)
            .unwrap()
    }

    fn ids(batch: &[Event]) -> Vec<String> {
        batch.iter().map(|e| e.context.id.clone()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn reject_and_drop_policies_keep_the_bound_and_count() {
        let reject = SinkQueue::new("r", 2, OverflowPolicy::Reject, Duration::ZERO);
        reject.push(event(1)).await.unwrap();
        reject.push(event(2)).await.unwrap();
        assert!(matches!(reject.push(event(3)).await, Err(Refusal::Full { .. })));
        assert_eq!(reject.stats.refused.load(Ordering::Relaxed), 1);

        let oldest = SinkQueue::new("o", 2, OverflowPolicy::DropOldest, Duration::ZERO);
        for n in 1..=4 {
            oldest.push(event(n)).await.unwrap();
        }
        assert_eq!(ids(&oldest.pop_batch(10, Duration::ZERO).await.unwrap()), ["3", "4"]);
        assert_eq!(oldest.stats.dropped_oldest.load(Ordering::Relaxed), 2);

        let newest = SinkQueue::new("n", 2, OverflowPolicy::DropNewest, Duration::ZERO);
        for n in 1..=4 {
            newest.push(event(n)).await.unwrap();
        }
        assert_eq!(ids(&newest.pop_batch(10, Duration::ZERO).await.unwrap()), ["1", "2"]);
        assert_eq!(newest.stats.dropped_newest.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn block_waits_for_room_then_times_out() {
        let queue = Arc::new(SinkQueue::new("b", 1, OverflowPolicy::Block, Duration::from_secs(5)));
        queue.push(event(1)).await.unwrap();
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.push(event(2)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "a full blocking queue makes the publisher wait");
        assert_eq!(ids(&queue.pop_batch(1, Duration::ZERO).await.unwrap()), ["1"]);
        waiting.await.unwrap().unwrap();
        assert_eq!(ids(&queue.pop_batch(1, Duration::ZERO).await.unwrap()), ["2"]);

        queue.push(event(3)).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(matches!(queue.push(event(4)).await, Err(Refusal::Full { .. })));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn batches_fill_up_to_max_or_until_linger_ends() {
        let queue = Arc::new(SinkQueue::new("l", 100, OverflowPolicy::Block, Duration::ZERO));
        for n in 0..5 {
            queue.push(event(n)).await.unwrap();
        }
        assert_eq!(queue.pop_batch(3, Duration::from_secs(1)).await.unwrap().len(), 3);
        let started = tokio::time::Instant::now();
        let producer = tokio::spawn({
            let queue = queue.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                queue.push(event(9)).await.unwrap();
            }
        });
        let batch = queue.pop_batch(10, Duration::from_millis(500)).await.unwrap();
        assert_eq!(ids(&batch), ["3", "4", "9"]);
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        producer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn new_limits_apply_to_a_running_queue_and_keep_its_events() {
        let queue = Arc::new(SinkQueue::new("g", 1, OverflowPolicy::Block, Duration::from_secs(60)));
        queue.push(event(1)).await.unwrap();
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.push(event(2)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        queue.set_limits(2, OverflowPolicy::Reject, Duration::ZERO);
        waiting.await.unwrap().unwrap();
        assert!(matches!(queue.push(event(3)).await, Err(Refusal::Full { .. })), "the new policy applies");
        queue.set_limits(1, OverflowPolicy::Reject, Duration::ZERO);
        assert_eq!(queue.len(), 2, "a smaller capacity drops nothing already queued");
        assert_eq!(ids(&queue.pop_batch(10, Duration::ZERO).await.unwrap()), ["1", "2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_dropped_while_it_fills_leaves_its_events_queued() {
        let queue = SinkQueue::new("d", 10, OverflowPolicy::Block, Duration::ZERO);
        queue.push(event(1)).await.unwrap();
        let filling = tokio::time::timeout(Duration::from_millis(100), queue.pop_batch(5, Duration::from_secs(1)));
        assert!(filling.await.is_err(), "still lingering when dropped");
        assert_eq!(ids(&queue.pop_batch(5, Duration::ZERO).await.unwrap()), ["1"]);
    }

    #[tokio::test]
    async fn delivered_copies_complete_an_event_and_an_abandoned_one_fails_it() {
        use crate::completion::{Completion, Outcome};
        let queue = SinkQueue::new("q", 4, OverflowPolicy::Reject, Duration::ZERO);
        let (delivered, mut delivered_outcome) = Completion::new();
        let (abandoned, mut abandoned_outcome) = Completion::new();
        for (n, completion) in [(1, delivered), (2, abandoned)] {
            let mut event = event(n);
            event.completion = Some(completion);
            queue.push(event).await.unwrap();
        }
        drop(queue.pop_batch(1, Duration::ZERO).await.unwrap());
        assert_eq!(delivered_outcome.try_recv(), Ok(Outcome::Done));
        assert_eq!(queue.abandon_all(), 1);
        assert_eq!(abandoned_outcome.try_recv(), Ok(Outcome::Failed));
    }

    #[tokio::test(start_paused = true)]
    async fn close_refuses_new_events_and_drains_the_rest() {
        let queue = Arc::new(SinkQueue::new("c", 10, OverflowPolicy::Block, Duration::ZERO));
        queue.push(event(1)).await.unwrap();
        let consumer = tokio::spawn({
            let queue = queue.clone();
            async move {
                let mut seen = Vec::new();
                while let Some(batch) = queue.pop_batch(10, Duration::from_secs(60)).await {
                    seen.extend(ids(&batch));
                }
                seen
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        queue.push(event(2)).await.unwrap();
        queue.close();
        assert!(matches!(queue.push(event(3)).await, Err(Refusal::Closed(_))));
        assert_eq!(consumer.await.unwrap(), ["1", "2"]);
    }
}
