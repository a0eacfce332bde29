//! Built-in sinks: native [`Sink`](crate::sink::Sink)s that need no plugin.
//!
//! - [`file`]: [`FileSink`], CloudEvents JSON lines in files under `root`, one directory per
//!   subject, routing key and hour (seed 002); the same layout and bytes as the Wasm `file-sink`.
//! - [`stdout`]: [`StdoutSink`], one line per event on standard output, JSON or text (seed 003).
//! - [`http`]: [`HttpSink`], POSTs each event, or the whole batch, as CloudEvents JSON.
//! - [`nats`]: [`NatsSink`], publishes each event to an external NATS server (seed 003).
//! - [`object`]: [`ObjectSink`], JSON-lines objects in S3, Azure Blob Storage or Google Cloud
//!   Storage under the file sink's path template, one object per directory a batch touches (seed 002).
//!
//! Each sink is built from its serde config (`XSinkConfig`, read from the TOML config) by
//! `XSink::new(name, config)`, which checks the config and fails with a [`SinkBuildError`] naming
//! the sink and the key. Delivery failures follow one rule for every built-in, in [`outcome`]:
//! when every event of a batch failed and all alike, the whole batch is
//! [`DeliveryError::Retryable`] or [`DeliveryError::Permanent`]; otherwise the failed events come
//! back in [`DeliveryError::Partial`].
//!
//! This module never chooses routes, retries, or dead-letters: the sink worker does, from the
//! errors these sinks classify. Nothing here imports `plugin`.

pub mod file;
pub mod http;
pub mod nats;
pub mod object;
pub mod stdout;

use std::path::PathBuf;

pub use file::{FileSink, FileSinkConfig, FsyncPolicy};
pub use http::{HttpMode, HttpSink, HttpSinkConfig, Secret};
pub use nats::{NatsSink, NatsSinkConfig};
pub use object::{ObjectSink, ObjectSinkConfig};
pub use stdout::{StdoutFormat, StdoutSink, StdoutSinkConfig};

use crate::event::Event;
use crate::sink::{DeliveryError, EventFailure};

/// Why a built-in sink could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    /// A config value is invalid; `key` is the config key, `reason` says why.
    #[error("sink \"{sink}\": key `{key}`: {reason}")]
    Config {
        /// The sink's configured name.
        sink: String,
        /// The config key holding the bad value.
        key: &'static str,
        /// What is wrong with it, naming the value.
        reason: String,
    },
    /// A file the config names could not be read.
    #[error("sink \"{sink}\": key `{key}`: cannot read {}: {source}", path.display())]
    Read {
        /// The sink's configured name.
        sink: String,
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SinkBuildError {
    /// A [`SinkBuildError::Config`] for `sink`'s key `key`.
    pub(crate) fn config(sink: &str, key: &'static str, reason: impl Into<String>) -> SinkBuildError {
        SinkBuildError::Config { sink: sink.to_owned(), key, reason: reason.into() }
    }
}

/// A failure of the event at `index` of `batch`, its message naming the event's id.
pub(crate) fn event_failure(batch: &[Event], index: usize, reason: &str, retryable: bool) -> EventFailure {
    let id = batch.get(index).map_or("?", |event| event.context.id.as_str());
    EventFailure { index, message: format!("event \"{id}\": {reason}"), retryable }
}

/// The result of delivering a batch of `len` events of which `failures` failed (any order).
///
/// No failure is `Ok`. When every event failed and all are retryable (or all permanent), the batch
/// as a whole is `Retryable` (or `Permanent`), with the first failure's message and how many more
/// there were: nothing was delivered, and one verdict says so. Otherwise the failures, sorted by
/// index, are `Partial`.
pub(crate) fn outcome(len: usize, mut failures: Vec<EventFailure>) -> Result<(), DeliveryError> {
    if failures.is_empty() {
        return Ok(());
    }
    failures.sort_by_key(|failure| failure.index);
    let all_failed = failures.len() == len;
    let retryable = failures.iter().filter(|failure| failure.retryable).count();
    if all_failed && (retryable == len || retryable == 0) {
        let more = len - 1;
        let mut message = failures.swap_remove(0).message;
        if more > 0 {
            message.push_str(&format!(" (and {more} more event(s))"));
        }
        return Err(if retryable == len {
            DeliveryError::Retryable(message)
        } else {
            DeliveryError::Permanent(message)
        });
    }
    Err(DeliveryError::Partial(failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(index: usize, retryable: bool) -> EventFailure {
        EventFailure { index, message: format!("event \"{index}\": broken"), retryable }
    }

    #[test]
    fn outcome_is_one_verdict_when_all_failed_alike_and_partial_otherwise() {
        assert_eq!(outcome(3, vec![]), Ok(()));
        assert_eq!(
            outcome(2, vec![failure(1, true), failure(0, true)]),
            Err(DeliveryError::Retryable("event \"0\": broken (and 1 more event(s))".into()))
        );
        assert_eq!(outcome(1, vec![failure(0, false)]), Err(DeliveryError::Permanent("event \"0\": broken".into())));
        assert_eq!(
            outcome(2, vec![failure(1, false), failure(0, true)]),
            Err(DeliveryError::Partial(vec![failure(0, true), failure(1, false)]))
        );
        assert_eq!(outcome(3, vec![failure(2, true)]), Err(DeliveryError::Partial(vec![failure(2, true)])));
    }
}
