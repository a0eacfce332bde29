//! [`Slot`]: a handler, sink or auth policy that can be replaced while it runs. Each call takes the
//! current generation's `Arc` and keeps it to the end, so calls in flight finish on the old
//! generation while new calls go to the new one: every event is handled once, by one generation.
//! A slot implements the same role trait as what it holds, so routes never know they hold one.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::auth::{AuthPolicy, AuthRequest, Decision};
use crate::event::Event;
use crate::route::{Handler, HandlerError};
use crate::sink::{DeliveryError, Sink};

/// A replaceable `Arc<T>` with a generation number.
pub struct Slot<T: ?Sized> {
    current: RwLock<(u64, Arc<T>)>,
    /// The current generation, for those who act when it changes ([`Slot::watch`]).
    generation: tokio::sync::watch::Sender<u64>,
}

impl<T: ?Sized> Slot<T> {
    /// A slot holding `value` as generation 1.
    pub fn new(value: Arc<T>) -> Self {
        Slot { current: RwLock::new((1, value)), generation: tokio::sync::watch::Sender::new(1) }
    }

    /// Tells of every replacement: the receiver sees each new generation number.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The current generation and its value.
    pub fn current(&self) -> (u64, Arc<T>) {
        match self.current.read() {
            Ok(current) => (current.0, current.1.clone()),
            Err(poisoned) => {
                let current = poisoned.into_inner();
                (current.0, current.1.clone())
            }
        }
    }

    /// Makes `value` the next generation; returns (old, new) generation numbers.
    pub fn replace(&self, value: Arc<T>) -> (u64, u64) {
        let mut current = match self.current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        let old = current.0;
        *current = (old + 1, value);
        drop(current);
        self.generation.send_replace(old + 1);
        (old, old + 1)
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

#[async_trait]
impl Sink for Slot<dyn Sink> {
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        let (_, sink) = self.current();
        sink.deliver(batch).await
    }
}

#[async_trait]
impl AuthPolicy for Slot<dyn AuthPolicy> {
    async fn authorize(&self, request: &AuthRequest) -> Decision {
        let (_, policy) = self.current();
        policy.authorize(request).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::EventJson;

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

    fn event() -> Event {
        serde_json::from_value::<EventJson>(serde_json::json!({"subject": "a"}))
            .unwrap()
            .into_event(String::new)
            .unwrap()
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
