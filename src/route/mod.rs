//! Routes: the [`Handler`] role, what a route does when a handler fails ([`FailurePolicy`]), the
//! running [`Route`] that ties a subject to a handler chain and sink queues, and the [`Rollout`]
//! of a new handler version beside the serving one.
//!
//! A route holds `Arc<dyn Handler>` and never knows whether a native type or a Wasm plugin is
//! behind it. This module decides what happens to an event; it never delivers or retries.

mod chain;
mod rollout;

use async_trait::async_trait;
use serde::Deserialize;

pub use chain::{ChainStep, KeyFilter, Route, RouteStats};
pub use rollout::{
    Difference, Rollout, RolloutFigures, RolloutMode, RolloutRules, RolloutSettings, Verdict, VersionFigures,
};

use crate::event::Event;
use crate::fault::Fault;
use crate::slot::Slot;

/// Why a handler gave no events for an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The handler answered with an error for this event.
    #[error("handler rejected the event: {message}")]
    Rejected { message: String, retryable: bool },
    /// The handler could not answer at all.
    #[error("handler {0}")]
    Fault(#[from] Fault),
}

/// Filters, transforms or fans out events: no events drops the input, one passes or transforms it,
/// several fan it out.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Handles one event.
    async fn handle(&self, event: Event) -> Result<Vec<Event>, HandlerError>;

    /// Handles a batch, one result per input in order. Implementations with a per-call cost
    /// (Wasm) override this to pay it once per batch.
    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<Vec<Event>, HandlerError>> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            results.push(self.handle(event).await);
        }
        results
    }
}

#[async_trait]
impl Handler for Slot<dyn Handler> {
    async fn handle(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
        let (_, handler) = self.current();
        handler.handle(event).await
    }

    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<Vec<Event>, HandlerError>> {
        let (_, handler) = self.current();
        handler.handle_batch(events).await
    }
}

/// What a route does with an event its handler failed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Pass the event on unchanged, as if the handler were not there.
    FailOpen,
    /// Drop the event and count it.
    #[default]
    FailClosed,
    /// Send the event to the route's dead letters with the reason.
    DeadLetter,
}

/// The fate of one input event after a handler and its failure policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// These events go on down the chain (none: dropped by the handler itself).
    Forward(Vec<Event>),
    /// The handler failed and the policy drops the event.
    Drop { reason: String },
    /// The handler failed and the policy dead-letters the event.
    DeadLetter { event: Box<Event>, reason: String },
}

impl FailurePolicy {
    /// Whether the route must keep a copy of the input to apply this policy after a failure.
    pub fn needs_input(self) -> bool {
        !matches!(self, FailurePolicy::FailClosed)
    }

    /// Decides the fate of `input` given the handler's `result`. `input` is needed (see
    /// [`FailurePolicy::needs_input`]) only when the handler failed and the policy keeps the event.
    pub fn apply(self, input: Option<Event>, result: Result<Vec<Event>, HandlerError>) -> Disposition {
        let error = match result {
            Ok(events) => return Disposition::Forward(events),
            Err(error) => error.to_string(),
        };
        match (self, input) {
            (FailurePolicy::FailOpen, Some(event)) => Disposition::Forward(vec![event]),
            (FailurePolicy::DeadLetter, Some(event)) => {
                Disposition::DeadLetter { event: Box::new(event), reason: error }
            }
            _ => Disposition::Drop { reason: error },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::event::EventJson;

    fn event() -> Event {
        serde_json::from_str::<EventJson>(r#"{"subject":"a.b","data_text":"x"}"#)
            .unwrap()
            .into_event(|| "1".into())
            .unwrap()
    }

    #[test]
    fn policies_decide_the_fate_of_a_failed_event() {
        let failed = || Err(HandlerError::Fault(Fault::Trap("boom".into())));
        assert_eq!(FailurePolicy::FailOpen.apply(Some(event()), failed()), Disposition::Forward(vec![event()]));
        assert!(
            matches!(FailurePolicy::FailClosed.apply(None, failed()), Disposition::Drop { reason } if reason.contains("boom"))
        );
        assert!(matches!(
            FailurePolicy::DeadLetter.apply(Some(event()), failed()),
            Disposition::DeadLetter { event: e, reason } if *e == event() && reason.contains("trapped")
        ));
        assert_eq!(FailurePolicy::FailClosed.apply(None, Ok(vec![])), Disposition::Forward(vec![]));
    }

    /// Tags events with its name, slowly.
    struct Tag(&'static str);

    #[async_trait]
    impl Handler for Tag {
        async fn handle(&self, mut event: Event) -> Result<Vec<Event>, HandlerError> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            event.extensions.push(("tag".into(), self.0.into()));
            Ok(vec![event])
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_in_flight_finish_on_the_old_generation_and_new_calls_use_the_new() {
        let slot: Arc<Slot<dyn Handler>> = Arc::new(Slot::new(Arc::new(Tag("old"))));
        let in_flight = tokio::spawn({
            let slot = slot.clone();
            async move { slot.handle(event()).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(slot.replace(Arc::new(Tag("new"))), (1, 2));
        let after = slot.handle(event()).await.unwrap();
        let before = in_flight.await.unwrap().unwrap();
        assert_eq!(before[0].extension("tag"), Some("old"));
        assert_eq!(after[0].extension("tag"), Some("new"));
        assert_eq!(slot.current().0, 2);
    }
}
