//! Dead letters: an event that could not be handled or delivered, republished on `$DLQ.<name>`
//! (the route or sink that gave up) with the reason, attempts, the giver-up and the original
//! subject as extensions; a gateway client's stays in its account (`$A.<account>.$DLQ.<name>`).
//! Dead letters are events like any other, so a route can send them anywhere. [`DeadLetterStore`]
//! keeps the latest of them, bounded in bytes, for the operator to browse and replay; it never
//! replays anything itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::broker::account;
use crate::broker::{Accepted, Broker, Pattern, Refusal, Subscriber};
use crate::event::Event;

/// Subject prefix of dead letters.
pub const PREFIX: &str = "$DLQ.";

/// Why there are no dead letters to show or replay.
pub const STORE_OFF: &str = "the dead-letter store is off ([dead_letters] keep_bytes = 0)";

/// Publishes `event` on `$DLQ.<from>`. Returns false (after logging and counting in `lost`) when no
/// route took it; a dead letter that fails again is not dead-lettered twice, so it cannot loop.
/// A dead letter the broker refused marks its event not done ([`crate::completion`]): the event
/// is handed over again where that is possible, as if it had never been delivered.
pub async fn publish(
    broker: &dyn Broker,
    event: Event,
    from: &str,
    reason: &str,
    attempts: u32,
    lost: &AtomicU64,
) -> bool {
    publish_in("", broker, event, from, reason, attempts, lost).await
}

/// [`publish`] inside an account: on `<account prefix>$DLQ.<from>`, where only that account's
/// clients (and routes that name it) see it.
pub async fn publish_in(
    account_prefix: &str,
    broker: &dyn Broker,
    mut event: Event,
    from: &str,
    reason: &str,
    attempts: u32,
    lost: &AtomicU64,
) -> bool {
    let id = event.context.id.clone();
    let in_account = event.subject.strip_prefix(account_prefix).unwrap_or(&event.subject);
    if in_account.starts_with(PREFIX) || event.subject.starts_with(PREFIX) {
        lost.fetch_add(1, Ordering::Relaxed);
        tracing::error!(from, %id, reason, "dead letter undeliverable, dropped");
        return false;
    }
    let completion = event.completion.clone();
    let original = std::mem::replace(&mut event.subject, format!("{account_prefix}{PREFIX}{from}"));
    for (name, value) in [
        ("deadletterreason", reason.to_owned()),
        ("deadletterattempts", attempts.to_string()),
        ("deadlettersink", from.to_owned()),
        ("deadlettersubject", original),
    ] {
        event.extensions.retain(|(n, _)| n != name);
        event.extensions.push((name.to_owned(), value));
    }
    match MADE_BY_THE_ROUTER.scope((), broker.publish(event)).await {
        Ok(ack) if ack.delivered > 0 => true,
        Ok(_) => {
            lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(from, %id, reason, "dead letter has no route, dropped");
            false
        }
        Err(err) => {
            if let Some(completion) = completion {
                completion.fail();
            }
            lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(from, %id, reason, error = %err, "dead letter refused, dropped");
            false
        }
    }
}

tokio::task_local! {
    /// Set while [`publish_in`] publishes a dead letter it made: the store keeps only those, so a
    /// client that publishes on a `$DLQ` subject (anyone may, as on any subject of its account)
    /// can neither forge a dead letter an operator would replay into a sink, past its route's
    /// handlers, nor push real ones out of the store.
    static MADE_BY_THE_ROUTER: ();
}

/// The extensions a dead letter carries, in the order [`publish_in`] adds them.
pub const EXTENSIONS: [&str; 4] = ["deadletterreason", "deadletterattempts", "deadlettersink", "deadlettersubject"];

/// One dead letter the store keeps.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its number in the store, from 1, in the order they came.
    pub seq: u64,
    pub at: OffsetDateTime,
    /// The account whose dead letter it is.
    pub account: String,
    /// As published: on `$DLQ.<from>`, with the dead-letter extensions.
    pub event: Event,
    /// Each time it was sent back, and how that went.
    pub replays: Vec<Replay>,
}

impl DeadLetter {
    /// The route or sink that gave up on it.
    pub fn from(&self) -> &str {
        self.event.extension("deadlettersink").unwrap_or_default()
    }

    pub fn reason(&self) -> &str {
        self.event.extension("deadletterreason").unwrap_or_default()
    }

    pub fn attempts(&self) -> u32 {
        self.event.extension("deadletterattempts").and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// The subject it had before it became a dead letter.
    pub fn subject(&self) -> &str {
        self.event.extension("deadlettersubject").unwrap_or_default()
    }

    /// The event as it was before it became a dead letter: its subject back, the dead-letter
    /// extensions gone; the id, source and everything else kept (a sink that dedupes by id sees
    /// a replay as the event it already has, if it has it).
    pub fn original(&self) -> Event {
        let mut event = self.event.clone();
        event.subject = self.subject().to_owned();
        event.extensions.retain(|(name, _)| !EXTENSIONS.contains(&name.as_str()));
        event.completion = None;
        event.nats = None;
        event
    }
}

/// A replay of a dead letter: when, where to (`sink:<name>`, `route:<name>` or `subject:<subject>`),
/// and the outcome (`queued`, or why not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub at: OffsetDateTime,
    pub target: String,
    pub outcome: Result<(), String>,
}

/// Which dead letters a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Given up by this route or sink.
    pub from: Option<String>,
    /// Whose reason contains this text.
    pub reason: Option<String>,
    /// Of this account.
    pub account: Option<String>,
}

impl Selection {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.from.as_ref().is_none_or(|from| letter.from() == from)
            && self.reason.as_ref().is_none_or(|reason| letter.reason().contains(reason.as_str()))
            && self.account.as_ref().is_none_or(|account| &letter.account == account)
    }
}

/// What to replay: dead letters by number, or every one a selection picks; through a named route,
/// or (none named) back where each one failed.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default)]
    pub seqs: Vec<u64>,
    pub from: Option<String>,
    pub reason: Option<String>,
    pub account: Option<String>,
    pub route: Option<String>,
}

impl ReplayRequest {
    /// The selection it names, if it names one rather than numbers.
    pub fn selection(&self) -> Option<Selection> {
        let selection =
            Selection { from: self.from.clone(), reason: self.reason.clone(), account: self.account.clone() };
        (selection != Selection::default()).then_some(selection)
    }
}

/// The store's counters.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Dead letters kept since start.
    pub kept: AtomicU64,
    /// Dead letters pushed out, the oldest first, to stay within the store's bytes.
    pub evicted: AtomicU64,
    /// Replays that put their dead letter back on its way, and those that could not.
    pub replayed: AtomicU64,
    pub replay_failures: AtomicU64,
}

#[derive(Debug, Default)]
struct Held {
    letters: VecDeque<DeadLetter>,
    bytes: usize,
    next_seq: u64,
}

/// The latest dead letters of every account, in memory, at most `max_bytes` of them (the oldest
/// go first). A broker subscriber of every `$DLQ` subject that keeps what [`publish_in`] made
/// (this router's own dead letters, not another router's of a cluster, not a client's publish): a
/// dead letter it keeps is taken, so it is never counted as lost for want of a route. Keeps
/// nothing across a restart.
pub struct DeadLetterStore {
    max_bytes: usize,
    held: Mutex<Held>,
    pub stats: StoreStats,
}

impl DeadLetterStore {
    pub fn new(max_bytes: usize) -> Arc<DeadLetterStore> {
        Arc::new(DeadLetterStore { max_bytes, held: Mutex::default(), stats: StoreStats::default() })
    }

    /// Subscribes the store to every dead-letter subject of `broker`: the global account's and
    /// every other account's.
    pub fn subscribe(self: &Arc<Self>, broker: &dyn Broker) {
        let every = format!("{PREFIX}>");
        for pattern in [account::in_every_account(&every), every] {
            match Pattern::new(pattern) {
                Ok(pattern) => {
                    broker.subscribe(pattern, None, self.clone());
                }
                Err(err) => tracing::error!(error = %err, "the dead-letter store cannot subscribe"),
            }
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `event`, a dead letter of `account`, pushing out the oldest to make room. One larger
    /// than the whole store is not kept (and counted as evicted).
    pub fn keep(&self, account: &str, mut event: Event) {
        event.completion = None;
        let bytes = event.size();
        let mut held = self.held();
        held.next_seq += 1;
        self.stats.kept.fetch_add(1, Ordering::Relaxed);
        if bytes > self.max_bytes {
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        while held.bytes + bytes > self.max_bytes
            && let Some(oldest) = held.letters.pop_front()
        {
            held.bytes -= oldest.event.size();
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
        held.bytes += bytes;
        let seq = held.next_seq;
        let at = OffsetDateTime::now_utc();
        held.letters.push_back(DeadLetter { seq, at, account: account.to_owned(), event, replays: Vec::new() });
    }

    /// The dead letters `selection` picks, newest first, at most `limit`; and how many it picks in
    /// all.
    pub fn list(&self, selection: &Selection, limit: usize) -> (Vec<DeadLetter>, usize) {
        let held = self.held();
        let picked: Vec<&DeadLetter> = held.letters.iter().rev().filter(|l| selection.matches(l)).collect();
        (picked.iter().take(limit).map(|letter| (*letter).clone()).collect(), picked.len())
    }

    /// The dead letters `request` names, oldest first: its numbers still kept, or every one its
    /// selection picks. Naming neither is an error, so nothing is replayed by accident.
    pub fn picked(&self, request: &ReplayRequest) -> Result<Vec<DeadLetter>, String> {
        let held = self.held();
        match (request.seqs.is_empty(), request.selection()) {
            (false, None) => Ok(held.letters.iter().filter(|l| request.seqs.contains(&l.seq)).cloned().collect()),
            (true, Some(selection)) => Ok(held.letters.iter().filter(|l| selection.matches(l)).cloned().collect()),
            (false, Some(_)) => Err("name dead letters either by number (`seqs`) or by selection, not both".into()),
            (true, None) => Err("name the dead letters to replay: `seqs`, or `from`, `reason` or `account`".into()),
        }
    }

    pub fn get(&self, seq: u64) -> Option<DeadLetter> {
        let held = self.held();
        held.letters.binary_search_by_key(&seq, |letter| letter.seq).ok().map(|at| held.letters[at].clone())
    }

    /// Records a replay of dead letter `seq` (if it is still kept) and counts it.
    pub fn record(&self, seq: u64, replay: Replay) {
        let counter = if replay.outcome.is_ok() { &self.stats.replayed } else { &self.stats.replay_failures };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held();
        if let Ok(at) = held.letters.binary_search_by_key(&seq, |letter| letter.seq) {
            held.letters[at].replays.push(replay);
        }
    }

    /// How many dead letters and bytes the store holds, and its bound.
    pub fn usage(&self) -> (usize, usize, usize) {
        let held = self.held();
        (held.letters.len(), held.bytes, self.max_bytes)
    }
}

#[async_trait]
impl Subscriber for DeadLetterStore {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        if MADE_BY_THE_ROUTER.try_with(|_| ()).is_err() {
            return Ok(Accepted::Passed);
        }
        self.keep(account::split(&event.subject).0, event.clone());
        Ok(Accepted::Delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(from: &str, reason: &str, data: usize) -> Event {
        let mut event = crate::event::full_event();
        event.subject = format!("{PREFIX}{from}");
        event.data = vec![b'x'; data].into();
        for (name, value) in [("deadletterreason", reason), ("deadletterattempts", "3"), ("deadlettersink", from)] {
            event.extensions.push((name.into(), value.into()));
        }
        event.extensions.push(("deadlettersubject".into(), "orders.eu".into()));
        event
    }

    #[test]
    fn the_store_keeps_the_newest_within_its_bytes() {
        let one = dead_letter("files", "disk full 0", 1000).size();
        let store = DeadLetterStore::new(one * 3);
        for i in 0..5 {
            store.keep(account::GLOBAL_ACCOUNT, dead_letter("files", &format!("disk full {i}"), 1000));
        }
        let (letters, total) = store.list(&Selection::default(), 10);
        let seqs: Vec<u64> = letters.iter().map(|l| l.seq).collect();
        assert_eq!((seqs, total), (vec![5, 4, 3], 3));
        assert_eq!(store.stats.evicted.load(Ordering::Relaxed), 2);
        assert_eq!(store.usage(), (3, one * 3, one * 3));
        store.keep(account::GLOBAL_ACCOUNT, dead_letter("files", "huge", one * 4));
        assert_eq!(store.usage().0, 3, "one larger than the store is not kept, and pushes nothing out");
        assert!(store.get(1).is_none() && store.get(4).is_some());
    }

    #[test]
    fn listings_select_by_sink_reason_and_account_and_replays_are_recorded() {
        let store = DeadLetterStore::new(1 << 20);
        store.keep(account::GLOBAL_ACCOUNT, dead_letter("files", "disk full", 10));
        store.keep("TEAM", dead_letter("rest", "503 Service Unavailable", 10));
        store.keep(account::GLOBAL_ACCOUNT, dead_letter("rest", "connection refused", 10));
        let pick = |from: Option<&str>, reason: Option<&str>, account: Option<&str>| {
            let selection = Selection {
                from: from.map(str::to_owned),
                reason: reason.map(str::to_owned),
                account: account.map(str::to_owned),
            };
            store.list(&selection, 10).0.iter().map(|l| l.seq).collect::<Vec<_>>()
        };
        assert_eq!(pick(Some("rest"), None, None), [3, 2]);
        assert_eq!(pick(None, Some("503"), None), [2]);
        assert_eq!(pick(None, None, Some("TEAM")), [2]);
        let at = OffsetDateTime::now_utc();
        store.record(2, Replay { at, target: "sink:rest".into(), outcome: Ok(()) });
        assert_eq!(store.get(2).map(|l| l.replays.len()), Some(1));
        assert_eq!(store.stats.replayed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_store_keeps_the_routers_dead_letters_not_a_publish_on_a_dead_letter_subject() {
        let broker = crate::broker::EmbeddedBroker::new();
        let store = DeadLetterStore::new(1 << 20);
        store.subscribe(&broker);
        let forged = dead_letter("files", "forged", 10);
        let ack = broker.publish(forged).await.expect("published");
        assert_eq!((ack.delivered, store.usage().0), (0, 0), "a publish on $DLQ is not a dead letter");
        let mut event = crate::event::full_event();
        event.subject = "$A.TEAM.orders".into();
        let lost = AtomicU64::new(0);
        assert!(publish_in("$A.TEAM.", &broker, event, "files", "disk full", 3, &lost).await);
        let (letters, _) = store.list(&Selection::default(), 10);
        assert_eq!(
            letters.iter().map(|l| (l.account.as_str(), l.from(), l.subject())).collect::<Vec<_>>(),
            [("TEAM", "files", "$A.TEAM.orders")]
        );
    }

    #[test]
    fn the_original_is_the_event_before_it_became_a_dead_letter() {
        let store = DeadLetterStore::new(1 << 20);
        let event = dead_letter("files", "disk full", 10);
        let id = event.context.id.clone();
        store.keep(account::GLOBAL_ACCOUNT, event);
        let original = store.get(1).map(|l| l.original()).expect("kept");
        assert_eq!((original.subject.as_str(), original.context.id), ("orders.eu", id));
        assert!(original.extensions.iter().all(|(name, _)| !name.starts_with("deadletter")));
    }
}
