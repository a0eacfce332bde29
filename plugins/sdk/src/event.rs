//! Helpers on the WIT [`Event`]: building events, reading and writing JSON data, extensions, and
//! the CloudEvents structured JSON form that sinks write.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
pub use crate::wit::types::{Context, Event};

/// The extension that carries an event's routing key.
const ROUTING_KEY: &str = "routingkey";

impl Event {
    /// An event on `subject` with exactly the `id`, `source`, `type` and `data` given, and no other
    /// attribute. Calls no host function, so it also works in a plugin's native unit tests.
    pub fn from_parts(
        subject: impl Into<String>,
        id: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Event {
        Event {
            context: Context {
                id: id.into(),
                source: source.into(),
                type_: ty.into(),
                specversion: "1.0".into(),
                subject: None,
                time: None,
                datacontenttype: None,
                dataschema: None,
            },
            subject: subject.into(),
            extensions: Vec::new(),
            data: data.into(),
        }
    }

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

    /// The event in CloudEvents 1.0 structured JSON form, as sinks write it: `specversion`, `id`,
    /// `source`, `type`, then `subject`, `time`, `datacontenttype` and `dataschema` when set, and
    /// each extension as a top-level string attribute. An extension named like one of those
    /// attributes (or `data`, `data_base64`) is left out rather than overwrite it.
    ///
    /// `data` holds the payload as a JSON value when `datacontenttype` is a JSON media type
    /// (`application/json`, `text/json` or `*/*+json`, parameters allowed) and the payload parses;
    /// otherwise `data_base64` holds it base64-encoded. An empty payload gives neither. The routing
    /// subject is not part of the CloudEvents form. Object keys come out sorted, so equal events
    /// give equal JSON text.
    ///
    /// ```ignore
    /// let line = serde_json::to_string(&event.to_cloudevents_json())?;
    /// ```
    pub fn to_cloudevents_json(&self) -> serde_json::Value {
        use serde_json::{Map, Value};

        let c = &self.context;
        let mut out = Map::new();
        out.insert("specversion".into(), Value::String(c.specversion.clone()));
        out.insert("id".into(), Value::String(c.id.clone()));
        out.insert("source".into(), Value::String(c.source.clone()));
        out.insert("type".into(), Value::String(c.type_.clone()));
        let optional = [
            ("subject", &c.subject),
            ("time", &c.time),
            ("datacontenttype", &c.datacontenttype),
            ("dataschema", &c.dataschema),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                out.insert(name.into(), Value::String(value.clone()));
            }
        }
        for (name, value) in &self.extensions {
            if !RESERVED_ATTRIBUTES.contains(&name.as_str()) {
                out.insert(name.clone(), Value::String(value.clone()));
            }
        }
        if !self.data.is_empty() {
            let json = c
                .datacontenttype
                .as_deref()
                .filter(|media_type| is_json_media_type(media_type))
                .and_then(|_| serde_json::from_slice::<Value>(&self.data).ok());
            match json {
                Some(value) => out.insert("data".into(), value),
                None => out.insert("data_base64".into(), Value::String(BASE64.encode(&self.data))),
            };
        }
        Value::Object(out)
    }
}

/// Attribute names of the CloudEvents JSON form that an extension may not take over.
const RESERVED_ATTRIBUTES: [&str; 10] =
    ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"];

/// Whether a `datacontenttype` declares JSON data: `*/json` or `*/*+json` (CloudEvents JSON
/// format, 3.1.1), ignoring case and parameters such as `; charset=utf-8` — the host's rule.
fn is_json_media_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media_type.split_once('/').is_some_and(|(_, subtype)| subtype == "json" || subtype.ends_with("+json"))
}

/// A per-instance counter that keeps ids unique within one nanosecond.
fn next_sequence() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(datacontenttype: Option<&str>, data: &[u8]) -> Event {
        Event {
            subject: "orders.eu.created".into(),
            context: Context {
                id: "e-1".into(),
                source: "/shop".into(),
                type_: "com.example.order.created".into(),
                specversion: "1.0".into(),
                subject: Some("order-7".into()),
                time: Some("2022-07-12T07:08:09Z".into()),
                datacontenttype: datacontenttype.map(str::to_owned),
                dataschema: None,
            },
            extensions: vec![("routingkey".into(), "eu".into()), ("id".into(), "spoofed".into())],
            data: data.to_vec(),
        }
    }

    #[test]
    fn cloudevents_json_has_attributes_extensions_and_json_data() {
        let value = event(Some("application/cloudevents+json; charset=utf-8"), br#"{"n": 1}"#).to_cloudevents_json();
        assert_eq!(
            value,
            json!({
                "specversion": "1.0",
                "id": "e-1",
                "source": "/shop",
                "type": "com.example.order.created",
                "subject": "order-7",
                "time": "2022-07-12T07:08:09Z",
                "datacontenttype": "application/cloudevents+json; charset=utf-8",
                "routingkey": "eu",
                "data": {"n": 1},
            })
        );
    }

    #[test]
    fn cloudevents_json_falls_back_to_base64() {
        let base64_of = |e: &Event| e.to_cloudevents_json()["data_base64"].as_str().map(str::to_owned);
        assert_eq!(base64_of(&event(Some("application/json"), b"not json")).as_deref(), Some("bm90IGpzb24="));
        assert_eq!(base64_of(&event(None, b"{}")).as_deref(), Some("e30="));
        assert_eq!(base64_of(&event(Some("text/plain"), b"ab")).as_deref(), Some("YWI="));
        assert_eq!(base64_of(&event(Some("text/plain"), b"abc")).as_deref(), Some("YWJj"));
        let empty = event(Some("application/json"), b"").to_cloudevents_json();
        assert!(empty.get("data").is_none() && empty.get("data_base64").is_none());
        // Any `*/json` is JSON, as the host decodes it.
        assert_eq!(event(Some("vnd.acme/json"), b"{}").to_cloudevents_json()["data"], serde_json::json!({}));
    }
}
