//! [`SinkQueue`]: the bounded queue in front of each sink, bounded in events and in bytes — its
//! own bytes, and the router's [`MemoryBudget`] that every queue shares. The bytes of an event
//! stay counted while its sink delivers it (a [`Batch`] gives them back when it is dropped), so a
//! stalled sink's retries count too. When a bound is reached, the queue's [`OverflowPolicy`]
//! decides: wait for room (`block`, up to a timeout), refuse the new event (`reject`), or drop one
//! (`drop_oldest`, `drop_newest`). Every drop and refusal is counted. Never unbounded; never drops
//! without counting.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Drop the oldest queued events to make room.
    DropOldest,
    /// Drop the new event (the publisher is not told).
    DropNewest,
}

/// The bounds of one queue and what it does when they are reached; changeable while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Events queued (not counting those being delivered).
    pub events: usize,
    /// Bytes queued and being delivered ([`Event::size`]).
    pub bytes: usize,
    pub overflow: OverflowPolicy,
    pub block_timeout: Duration,
}

impl QueueLimits {
    /// Bounded in events only (the router's budget still applies).
    pub fn events(events: usize, overflow: OverflowPolicy, block_timeout: Duration) -> QueueLimits {
        QueueLimits { events, bytes: usize::MAX, overflow, block_timeout }
    }
}

/// The bytes all sink queues of a router hold together may not pass `[service] queue_bytes`.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
    room: Notify,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget { limit: AtomicUsize::new(limit), used: AtomicUsize::new(0), room: Notify::new() })
    }

    /// A budget no event ever exceeds, for a queue on its own (tests, tools).
    pub fn unbounded() -> Arc<MemoryBudget> {
        MemoryBudget::new(usize::MAX)
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
        self.room.notify_waiters();
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Bytes held by every queue now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit, or if nothing is held (one event larger than the whole budget
    /// still passes alone).
    fn take(&self, bytes: usize) -> bool {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used.saturating_add(bytes) <= limit).then_some(used + bytes)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.room.notify_waiters();
    }
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
    budget: Arc<MemoryBudget>,
    not_empty: Notify,
    not_full: Notify,
    closed: AtomicBool,
    pub stats: QueueStats,
}

/// The queued events, the bytes held, and the limits that apply; the limits can change while the
/// queue runs (a config reload), the events stay.
#[derive(Debug)]
struct State {
    /// Each event with the bytes it was counted for.
    items: VecDeque<(Event, usize)>,
    /// Bytes of the queued events.
    queued: usize,
    /// Bytes of the queued events and of the batches being delivered.
    held: usize,
    limits: QueueLimits,
}

impl State {
    /// Whether an event of `bytes` fits this queue's own bounds.
    fn fits(&self, bytes: usize) -> bool {
        self.items.len() < self.limits.events
            && (self.held == 0 || self.held.saturating_add(bytes) <= self.limits.bytes)
    }
}

/// How long a refused publisher is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl SinkQueue {
    pub fn new(name: impl Into<String>, limits: QueueLimits, budget: Arc<MemoryBudget>) -> Self {
        let limits = QueueLimits { events: limits.events.max(1), ..limits };
        SinkQueue {
            name: name.into(),
            state: Mutex::new(State { items: VecDeque::new(), queued: 0, held: 0, limits }),
            budget,
            not_empty: Notify::new(),
            not_full: Notify::new(),
            closed: AtomicBool::new(false),
            stats: QueueStats::default(),
        }
    }

    /// Applies new limits; queued events stay, even beyond smaller bounds (new ones then wait or
    /// are refused until there is room again).
    pub fn set_limits(&self, limits: QueueLimits) {
        if let Ok(mut state) = self.state.lock() {
            state.limits = QueueLimits { events: limits.events.max(1), ..limits };
        }
        self.not_full.notify_waiters();
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn limits(&self) -> Option<QueueLimits> {
        self.state.lock().ok().map(|state| state.limits)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.state.lock().map_or(0, |state| state.items.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the events waiting and of those being delivered.
    pub fn held_bytes(&self) -> usize {
        self.state.lock().map_or(0, |state| state.held)
    }

    fn full(&self) -> Refusal {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        Refusal::Full { what: format!("queue of sink `{}`", self.name), retry_after: RETRY_AFTER }
    }

    fn closed(&self) -> Refusal {
        Refusal::Closed(format!("queue of sink `{}`", self.name))
    }

    /// Queues `event` if it fits this queue's bounds and the router's budget; false if not.
    fn try_queue(&self, state: &mut State, event: &mut Option<Event>, bytes: usize) -> bool {
        if !state.fits(bytes) || !self.budget.take(bytes) {
            return false;
        }
        state.held += bytes;
        state.queued += bytes;
        state.items.extend(event.take().map(|event| (event, bytes)));
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Queues `event` if the queue, open, has room for it (`None`), or hands back the locked state
    /// for the overflow policy; refused once the queue is closed.
    fn queue_if_room(&self, event: &mut Option<Event>, bytes: usize) -> Result<Option<MutexGuard<'_, State>>, Refusal> {
        let mut state = self.state.lock().map_err(|_| self.closed())?;
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed());
        }
        if !self.try_queue(&mut state, event, bytes) {
            return Ok(Some(state));
        }
        drop(state);
        self.not_empty.notify_one();
        Ok(None)
    }

    /// Queues `event`, applying the overflow policy when a bound is reached.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped while blocked, the event was not queued.
    pub async fn push(&self, event: Event) -> Result<(), Refusal> {
        let bytes = event.size();
        let mut deadline = None;
        let mut event = Some(event);
        // The usual case, room at once, without registering as a waiter on either `Notify` (each
        // registration and its removal take their lock). Otherwise the loop registers first and
        // then looks again, so no room made in between is missed.
        if self.queue_if_room(&mut event, bytes)?.is_none() {
            return Ok(());
        }
        loop {
            let (room, budget_room) = (self.not_full.notified(), self.budget.room.notified());
            tokio::pin!(room, budget_room);
            room.as_mut().enable();
            budget_room.as_mut().enable();
            {
                let Some(mut state) = self.queue_if_room(&mut event, bytes)? else {
                    return Ok(());
                };
                match state.limits.overflow {
                    OverflowPolicy::Block => {
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + state.limits.block_timeout);
                    }
                    OverflowPolicy::Reject => return Err(self.full()),
                    OverflowPolicy::DropNewest => {
                        self.stats.dropped_newest.fetch_add(1, Ordering::Relaxed);
                        warn_dropped(&self.name, "drop_newest");
                        return Ok(());
                    }
                    OverflowPolicy::DropOldest => {
                        let mut dropped = 0;
                        while let Some((_, old)) = state.items.pop_front() {
                            state.held -= old;
                            state.queued -= old;
                            self.budget.give_back(old);
                            dropped += 1;
                            if self.try_queue(&mut state, &mut event, bytes) {
                                break;
                            }
                        }
                        drop(state);
                        self.stats.dropped_oldest.fetch_add(dropped, Ordering::Relaxed);
                        if event.is_some() {
                            // Nothing of this queue's is left to drop: the router's budget is
                            // held by other queues.
                            self.stats.dropped_newest.fetch_add(1, Ordering::Relaxed);
                        } else {
                            self.not_empty.notify_one();
                        }
                        warn_dropped(&self.name, "drop_oldest");
                        return Ok(());
                    }
                }
            }
            let until = deadline.unwrap_or_else(tokio::time::Instant::now);
            let room = async {
                tokio::select! {
                    _ = room => {}
                    _ = budget_room => {}
                }
            };
            if tokio::time::timeout_at(until, room).await.is_err() {
                return Err(self.full());
            }
        }
    }

    /// Takes up to `max_events` events and, past the first, `max_bytes` bytes: waits for the
    /// first, then up to `linger` for more. `None` once the queue is closed and empty. The batch
    /// holds the events' bytes until it is dropped.
    ///
    /// # Cancel safety
    /// Cancel safe: events stay in the queue while the batch fills and leave it only in the poll
    /// that returns them, so dropping the future loses nothing.
    pub async fn pop_batch(self: &Arc<Self>, max_events: usize, max_bytes: usize, linger: Duration) -> Option<Batch> {
        let max_events = max_events.max(1);
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
                let full = queued >= max_events || state.queued >= max_bytes;
                if full || (queued > 0 && (closed || lingered || linger.is_zero())) {
                    let (mut events, mut bytes) = (Vec::new(), 0);
                    while let Some((_, size)) = state.items.front() {
                        if events.len() == max_events || (bytes > 0 && bytes + size > max_bytes) {
                            break;
                        }
                        bytes += size;
                        events.extend(state.items.pop_front().map(|(event, _)| event));
                    }
                    state.queued -= bytes;
                    drop(state);
                    self.not_full.notify_waiters();
                    return Some(Batch { events, held: Held { queue: self.clone(), bytes } });
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

    /// Gives back bytes a batch held.
    fn release(&self, bytes: usize) {
        if let Ok(mut state) = self.state.lock() {
            state.held -= bytes;
        }
        self.budget.give_back(bytes);
        self.not_full.notify_waiters();
    }

    /// Takes every queued event out as undelivered (see [`abandon`]); returns how many there were.
    pub fn abandon_all(&self) -> usize {
        let (left, bytes): (Vec<(Event, usize)>, usize) = match self.state.lock() {
            Ok(mut state) => {
                let bytes = std::mem::take(&mut state.queued);
                state.held -= bytes;
                (state.items.drain(..).collect(), bytes)
            }
            Err(_) => return 0,
        };
        let count = left.len();
        abandon(left.into_iter().map(|(event, _)| event));
        self.budget.give_back(bytes);
        self.not_full.notify_waiters();
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

/// Events taken from a queue for delivery; their bytes stay counted against the queue and the
/// router's budget until the batch is dropped.
pub struct Batch {
    events: Vec<Event>,
    held: Held,
}

impl Batch {
    /// The events, and what keeps their bytes counted until it is dropped.
    pub fn into_parts(self) -> (Vec<Event>, Held) {
        (self.events, self.held)
    }
}

impl Deref for Batch {
    type Target = [Event];

    fn deref(&self) -> &[Event] {
        &self.events
    }
}

/// Bytes a batch holds of its queue and of the router's budget, given back when dropped.
pub struct Held {
    queue: Arc<SinkQueue>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.queue.release(self.bytes);
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

    fn queue(name: &str, events: usize, overflow: OverflowPolicy, block_timeout: Duration) -> Arc<SinkQueue> {
        Arc::new(SinkQueue::new(name, QueueLimits::events(events, overflow, block_timeout), MemoryBudget::unbounded()))
    }

    fn ids(batch: &[Event]) -> Vec<String> {
        batch.iter().map(|e| e.context.id.clone()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn reject_and_drop_policies_keep_the_bound_and_count() {
        let reject = queue("r", 2, OverflowPolicy::Reject, Duration::ZERO);
        reject.push(event(1)).await.unwrap();
        reject.push(event(2)).await.unwrap();
        assert!(matches!(reject.push(event(3)).await, Err(Refusal::Full { .. })));
        assert_eq!(reject.stats.refused.load(Ordering::Relaxed), 1);

        let oldest = queue("o", 2, OverflowPolicy::DropOldest, Duration::ZERO);
        for n in 1..=4 {
            oldest.push(event(n)).await.unwrap();
        }
        assert_eq!(ids(&oldest.pop_batch(10, usize::MAX, Duration::ZERO).await.unwrap()), ["3", "4"]);
        assert_eq!(oldest.stats.dropped_oldest.load(Ordering::Relaxed), 2);

        let newest = queue("n", 2, OverflowPolicy::DropNewest, Duration::ZERO);
        for n in 1..=4 {
            newest.push(event(n)).await.unwrap();
        }
        assert_eq!(ids(&newest.pop_batch(10, usize::MAX, Duration::ZERO).await.unwrap()), ["1", "2"]);
        assert_eq!(newest.stats.dropped_newest.load(Ordering::Relaxed), 2);
    }

    fn sized(n: usize, bytes: usize) -> Event {
        let mut event = event(n);
        event.data = bytes::Bytes::from(vec![b'x'; bytes - event.size()]);
        assert_eq!(event.size(), bytes);
        event
    }

    fn bounded(name: &str, bytes: usize, overflow: OverflowPolicy, budget: &Arc<MemoryBudget>) -> Arc<SinkQueue> {
        let limits = QueueLimits { events: 1000, bytes, overflow, block_timeout: Duration::from_secs(5) };
        Arc::new(SinkQueue::new(name, limits, budget.clone()))
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_stay_counted_until_the_batch_delivering_them_is_dropped() {
        let budget = MemoryBudget::unbounded();
        let queue = bounded("b", 3000, OverflowPolicy::Reject, &budget);
        for n in 0..3 {
            queue.push(sized(n, 1000)).await.unwrap();
        }
        assert!(matches!(queue.push(sized(3, 1000)).await, Err(Refusal::Full { .. })));
        let batch = queue.pop_batch(2, usize::MAX, Duration::ZERO).await.unwrap();
        assert_eq!((queue.len(), queue.held_bytes(), budget.used()), (1, 3000, 3000), "in delivery still counts");
        assert!(matches!(queue.push(sized(3, 1000)).await, Err(Refusal::Full { .. })));
        drop(batch);
        assert_eq!((queue.held_bytes(), budget.used()), (1000, 1000));
        queue.push(sized(3, 1000)).await.unwrap();
        // A batch stops at its byte bound, and always takes one event.
        assert_eq!(queue.pop_batch(10, 1500, Duration::from_secs(1)).await.unwrap().len(), 1);
        assert_eq!(queue.pop_batch(10, 10, Duration::ZERO).await.unwrap().len(), 1);

        // One event larger than the bound passes once the queue holds nothing.
        let empty = bounded("e", 100, OverflowPolicy::Reject, &budget);
        empty.push(sized(9, 500)).await.unwrap();
        assert!(matches!(empty.push(sized(10, 500)).await, Err(Refusal::Full { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn the_routers_budget_bounds_every_queue_together() {
        let budget = MemoryBudget::new(2500);
        let (a, b) = (
            bounded("a", usize::MAX, OverflowPolicy::Block, &budget),
            bounded("b", usize::MAX, OverflowPolicy::DropOldest, &budget),
        );
        a.push(sized(0, 1000)).await.unwrap();
        b.push(sized(1, 1000)).await.unwrap();
        // The budget is held by `a` too: `b` drops its own oldest to make room.
        b.push(sized(2, 1000)).await.unwrap();
        assert_eq!((b.stats.dropped_oldest.load(Ordering::Relaxed), budget.used()), (1, 2000));

        // `a` blocks until `b`'s delivery gives its bytes back.
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.push(sized(3, 1000)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "the router's budget is full");
        drop(b.pop_batch(10, usize::MAX, Duration::ZERO).await.unwrap());
        waiting.await.unwrap().unwrap();
        assert_eq!(budget.used(), 2000);

        // A drop_oldest queue with nothing of its own to drop drops the new event.
        b.push(sized(4, 1000)).await.unwrap();
        assert_eq!(budget.used(), 2000, "nothing of b's was queued, and a holds the budget");
        assert_eq!(b.stats.dropped_newest.load(Ordering::Relaxed), 1);
        assert_eq!(a.abandon_all(), 2);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn block_waits_for_room_then_times_out() {
        let queue = queue("b", 1, OverflowPolicy::Block, Duration::from_secs(5));
        queue.push(event(1)).await.unwrap();
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.push(event(2)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "a full blocking queue makes the publisher wait");
        assert_eq!(ids(&queue.pop_batch(1, usize::MAX, Duration::ZERO).await.unwrap()), ["1"]);
        waiting.await.unwrap().unwrap();
        assert_eq!(ids(&queue.pop_batch(1, usize::MAX, Duration::ZERO).await.unwrap()), ["2"]);

        queue.push(event(3)).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(matches!(queue.push(event(4)).await, Err(Refusal::Full { .. })));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn batches_fill_up_to_max_or_until_linger_ends() {
        let queue = queue("l", 100, OverflowPolicy::Block, Duration::ZERO);
        for n in 0..5 {
            queue.push(event(n)).await.unwrap();
        }
        assert_eq!(queue.pop_batch(3, usize::MAX, Duration::from_secs(1)).await.unwrap().len(), 3);
        let started = tokio::time::Instant::now();
        let producer = tokio::spawn({
            let queue = queue.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                queue.push(event(9)).await.unwrap();
            }
        });
        let batch = queue.pop_batch(10, usize::MAX, Duration::from_millis(500)).await.unwrap();
        assert_eq!(ids(&batch), ["3", "4", "9"]);
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        producer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn new_limits_apply_to_a_running_queue_and_keep_its_events() {
        let queue = queue("g", 1, OverflowPolicy::Block, Duration::from_secs(60));
        queue.push(event(1)).await.unwrap();
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.push(event(2)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        queue.set_limits(QueueLimits::events(2, OverflowPolicy::Reject, Duration::ZERO));
        waiting.await.unwrap().unwrap();
        assert!(matches!(queue.push(event(3)).await, Err(Refusal::Full { .. })), "the new policy applies");
        queue.set_limits(QueueLimits::events(1, OverflowPolicy::Reject, Duration::ZERO));
        assert_eq!(queue.len(), 2, "a smaller capacity drops nothing already queued");
        assert_eq!(ids(&queue.pop_batch(10, usize::MAX, Duration::ZERO).await.unwrap()), ["1", "2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_dropped_while_it_fills_leaves_its_events_queued() {
        let queue = queue("d", 10, OverflowPolicy::Block, Duration::ZERO);
        queue.push(event(1)).await.unwrap();
        let filling =
            tokio::time::timeout(Duration::from_millis(100), queue.pop_batch(5, usize::MAX, Duration::from_secs(1)));
        assert!(filling.await.is_err(), "still lingering when dropped");
        assert_eq!(ids(&queue.pop_batch(5, usize::MAX, Duration::ZERO).await.unwrap()), ["1"]);
    }

    #[tokio::test]
    async fn delivered_copies_complete_an_event_and_an_abandoned_one_fails_it() {
        use crate::completion::{Completion, Outcome};
        let queue = queue("q", 4, OverflowPolicy::Reject, Duration::ZERO);
        let (delivered, mut delivered_outcome) = Completion::new();
        let (abandoned, mut abandoned_outcome) = Completion::new();
        for (n, completion) in [(1, delivered), (2, abandoned)] {
            let mut event = event(n);
            event.completion = Some(completion);
            queue.push(event).await.unwrap();
        }
        drop(queue.pop_batch(1, usize::MAX, Duration::ZERO).await.unwrap());
        assert_eq!(delivered_outcome.try_recv(), Ok(Outcome::Done));
        assert_eq!(queue.abandon_all(), 1);
        assert_eq!(abandoned_outcome.try_recv(), Ok(Outcome::Failed));
    }

    #[tokio::test(start_paused = true)]
    async fn close_refuses_new_events_and_drains_the_rest() {
        let queue = queue("c", 10, OverflowPolicy::Block, Duration::ZERO);
        queue.push(event(1)).await.unwrap();
        let consumer = tokio::spawn({
            let queue = queue.clone();
            async move {
                let mut seen = Vec::new();
                while let Some(batch) = queue.pop_batch(10, usize::MAX, Duration::from_secs(60)).await {
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
