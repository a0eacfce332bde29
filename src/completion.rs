//! [`Completion`]: tells whoever handed the router an event when every copy of it is done with —
//! delivered by its sinks, dead-lettered, or dropped on purpose (a filter, a `fail_closed` policy,
//! a lossy overflow policy) — or that one copy was not (abandoned at shutdown, a dead letter that
//! could not be published). Cluster mode acks a JetStream message on the first and naks it on the
//! second; durable embedded mode marks the event done in its write-ahead log on the first and keeps
//! it there, to replay at the next start, on the second; plain embedded mode has no completions.
//!
//! Every clone of an event shares its completion; the outcome is reported once, when the last
//! clone is gone. It never blocks and never does I/O itself: the outcome goes down a channel
//! (durable embedded mode: to the write-ahead log's thread).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::oneshot;

/// How the copies of an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every copy was delivered, dead-lettered or dropped by policy.
    Done,
    /// At least one copy was neither: the event must be handed over again.
    Failed,
}

/// Shared by every copy of one event; see the module docs.
#[derive(Clone)]
pub struct Completion(Arc<Inner>);

/// What hears the outcome.
type Report = Box<dyn FnOnce(Outcome) + Send>;

struct Inner {
    failed: AtomicBool,
    report: std::sync::Mutex<Option<Report>>,
}

impl Completion {
    /// A completion and the receiver its outcome arrives on.
    pub fn new() -> (Completion, oneshot::Receiver<Outcome>) {
        let (report, outcome) = oneshot::channel();
        let completion = Completion::calling(move |result| {
            let _ = report.send(result);
        });
        (completion, outcome)
    }

    /// A completion that calls `report` with the outcome, on the thread that drops the last copy;
    /// `report` must not block.
    pub fn calling(report: impl FnOnce(Outcome) + Send + 'static) -> Completion {
        let report: Report = Box::new(report);
        Completion(Arc::new(Inner { failed: AtomicBool::new(false), report: std::sync::Mutex::new(Some(report)) }))
    }

    /// Marks the event as not done: when the last copy is gone the outcome is [`Outcome::Failed`].
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Release);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let outcome = if self.failed.load(Ordering::Acquire) { Outcome::Failed } else { Outcome::Done };
        if let Some(report) = self.report.get_mut().ok().and_then(Option::take) {
            report(outcome);
        }
    }
}

/// Equal whatever they track: an event's identity is its content.
impl PartialEq for Completion {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Completion {}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").field("failed", &self.0.failed.load(Ordering::Relaxed)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_comes_when_the_last_copy_is_gone() {
        let (completion, mut outcome) = Completion::new();
        let copy = completion.clone();
        drop(completion);
        assert!(outcome.try_recv().is_err(), "a copy is still out");
        drop(copy);
        assert_eq!(outcome.try_recv(), Ok(Outcome::Done));
    }

    #[test]
    fn one_failed_copy_fails_the_event() {
        let (completion, mut outcome) = Completion::new();
        let copy = completion.clone();
        copy.fail();
        drop(copy);
        drop(completion);
        assert_eq!(outcome.try_recv(), Ok(Outcome::Failed));
    }
}
