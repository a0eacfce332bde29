//! Sinks: the [`Sink`] role and how a delivery can fail ([`DeliveryError`]).
//!
//! Native sinks and Wasm sinks implement the same trait. This module classifies failures so the
//! sink worker knows what to retry; it never chooses routes.

pub mod builtin;
pub mod worker;

use async_trait::async_trait;

use crate::event::Event;
use crate::fault::Fault;
use crate::slot::Slot;

/// One event of a batch that was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFailure {
    /// Position in the batch.
    pub index: usize,
    pub message: String,
    pub retryable: bool,
}

/// Why a batch was not (fully) delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Nothing was delivered; the whole batch may be retried.
    #[error("delivery failed: {0}")]
    Retryable(String),
    /// Nothing was delivered and retrying will not help.
    #[error("delivery failed permanently: {0}")]
    Permanent(String),
    /// Only these events failed; the others were delivered.
    #[error("{} event(s) of the batch failed", .0.len())]
    Partial(Vec<EventFailure>),
    /// The sink could not answer; nothing is known to be delivered, so the batch is retried.
    #[error("sink {0}")]
    Fault(#[from] Fault),
}

impl DeliveryError {
    /// True when the whole batch may be tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable(_) | DeliveryError::Fault(_))
    }
}

/// Delivers batches of events to a destination.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Delivers `batch`; `Ok` only once every event is at the destination.
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError>;
}

#[async_trait]
impl Sink for Slot<dyn Sink> {
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        let (_, sink) = self.current();
        sink.deliver(batch).await
    }
}
