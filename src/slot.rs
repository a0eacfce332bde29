//! [`Slot`]: a handler, sink or auth policy that can be replaced while it runs. Each call takes the
//! current generation's `Arc` and keeps it to the end, so calls in flight finish on the old
//! generation while new calls go to the new one: every event is handled once, by one generation.
//! A slot implements the same role trait as what it holds (beside each trait: `route`, `sink`,
//! `auth`), so routes never know they hold one. Knows nothing of any role.

use std::sync::{Arc, RwLock};

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

    /// Puts `value` in the slot as the same generation: for a wrapper around what the generation
    /// is (a rollout around the serving version), or to take such a wrapper out again.
    pub fn set(&self, value: Arc<T>) {
        match self.current.write() {
            Ok(mut current) => current.1 = value,
            Err(poisoned) => poisoned.into_inner().1 = value,
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
