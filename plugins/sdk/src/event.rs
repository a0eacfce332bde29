//! Helpers on the WIT [`Event`]: building events, reading and writing JSON data, extensions.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::wit::types::{Context, Event};
use crate::Error;

/// The extension that carries an event's routing key.
const ROUTING_KEY: &str = "routingkey";

impl Event {
    /// A new event on `subject` with CloudEvents `type` and raw `data`; `id`, `source` and `time`
    /// are filled from the host clock and the subject.
    pub fn new(subject: impl Into<String>, ty: impl Into<String>, data: impl Into<Vec<u8>>) -> Event {
        let subject = subject.into();
        let now = crate::clock::now_nanos();
        Event {
            context: Context {
                id: format!("{now:x}-{:x}", next_sequence()),
                source: format!("eventyard:plugin/{subject}"),
                type_: ty.into(),
                specversion: "1.0".into(),
                subject: None,
                time: Some(crate::clock::rfc3339(now)),
                datacontenttype: None,
                dataschema: None,
            },
            subject,
            extensions: Vec::new(),
            data: data.into(),
        }
    }

    /// A new event like [`Event::new`] whose data is `value` as JSON.
    pub fn new_json(subject: impl Into<String>, ty: impl Into<String>, value: &impl Serialize) -> Result<Event, Error> {
        let mut event = Event::new(subject, ty, Vec::new());
        event.set_json(value)?;
        Ok(event)
    }

    /// Parses `data` as JSON into `T`; a permanent error says why it does not fit.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.data)
            .map_err(|err| Error::permanent(format!("event {}: data is not the expected JSON: {err}", self.context.id)))
    }

    /// Replaces `data` with `value` as JSON and sets `datacontenttype` to `application/json`.
    pub fn set_json(&mut self, value: &impl Serialize) -> Result<(), Error> {
        self.data = serde_json::to_vec(value)
            .map_err(|err| Error::permanent(format!("event {}: cannot encode JSON data: {err}", self.context.id)))?;
        self.context.datacontenttype = Some("application/json".into());
        Ok(())
    }

    /// The value of extension `name`, if set.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Sets extension `name` to `value`, replacing an earlier value.
    pub fn set_extension(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.extensions.iter_mut().find(|(key, _)| *key == name) {
            Some(entry) => entry.1 = value,
            None => self.extensions.push((name, value)),
        }
    }

    /// Removes extension `name` and returns its value.
    pub fn remove_extension(&mut self, name: &str) -> Option<String> {
        let at = self.extensions.iter().position(|(key, _)| key == name)?;
        Some(self.extensions.remove(at).1)
    }

    /// The routing key (the `routingkey` extension), if set.
    pub fn routing_key(&self) -> Option<&str> {
        self.extension(ROUTING_KEY)
    }
}

/// A per-instance counter that keeps ids unique within one nanosecond.
fn next_sequence() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}
