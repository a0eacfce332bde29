//! [`Fault`]: the ways a call into a handler, sink or auth policy can fail without answering.
//!
//! A fault is the host's finding (a trap, a timeout, a memory or fuel limit, a quarantine), never
//! the extension's own answer: a guest's `error` value is a result, not a fault. Every role's error
//! type wraps this one so routes, sinks and auth treat native and Wasm extensions alike.

use std::time::Duration;

/// Why an extension produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The guest trapped (a panic, an unreachable, a bad memory access); the message has the detail.
    #[error("trapped: {0}")]
    Trap(String),
    /// The call ran past the plugin's `timeout_ms` and was interrupted.
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The guest tried to grow its memory past the plugin's `memory_limit`.
    #[error("exceeded its memory limit of {0} bytes")]
    OutOfMemory(usize),
    /// The call used up the plugin's `fuel`.
    #[error("ran out of fuel ({0} units)")]
    OutOfFuel(u64),
    /// The plugin faulted repeatedly and is not called until its backoff ends.
    #[error("quarantined for another {} ms after repeated faults", .0.as_millis())]
    Quarantined(Duration),
    /// The extension could not be made ready (for example, a fresh instance failed `init`).
    #[error("unavailable: {0}")]
    Unavailable(String),
}
