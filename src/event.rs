//! The [`Event`]: CloudEvents 1.0 context, extensions, the routing subject and the payload.
//!
//! Owns the in-memory shape of one event and its JSON form for tools. Knows nothing of routes,
//! transports or Wasm; `plugin` converts to and from the WIT record at its boundary.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::sync::Arc;

use crate::completion::Completion;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// CloudEvents 1.0 context attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Context {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub specversion: String,
    /// The CloudEvents `subject` attribute (what the event is about), not the routing subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
}

/// One event as it travels through the router. Two events are equal when everything but
/// [`Event::arrived`] is: how an event arrived does not make it another event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Routing address, a NATS-style dotted subject.
    pub subject: String,
    pub context: Context,
    /// CloudEvents extension attributes, in arrival order.
    pub extensions: Vec<(String, String)>,
    pub data: Bytes,
    /// The NATS message it arrived as, when a NATS client published it.
    pub nats: Option<Arc<NatsEnvelope>>,
    /// Who hears when every copy of it is done with (cluster mode: the JetStream message to ack).
    pub completion: Option<Completion>,
    /// The CloudEvents JSON text it arrived as, when the codec kept it (see [`ArrivedJson`]).
    pub arrived: Option<Arc<ArrivedJson>>,
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        let Event { subject, context, extensions, data, nats, completion, arrived: _ } = self;
        (subject, context, extensions, data, nats, completion)
            == (&other.subject, &other.context, &other.extensions, &other.data, &other.nats, &other.completion)
    }
}

impl Eq for Event {}

/// An event's structured JSON text as it arrived, which JSON-line sinks write as it is instead of
/// encoding the event again. The codec keeps it only where it is the same JSON value as the
/// event's encoding (`codec::structured::encode`), and it counts only while the event still
/// matches it: anyone may change an event's fields, so [`Event::arrived_json`] checks, rather
/// than trusting every change to drop it.
#[derive(Debug)]
pub struct ArrivedJson {
    text: Bytes,
    /// The data as decoded. Holding it keeps its buffer alive, so data that still starts at the
    /// same address with the same length is this data.
    data: Bytes,
    /// A fingerprint of the context and extensions as decoded.
    attributes: u64,
}

impl ArrivedJson {
    fn attributes(event: &Event) -> u64 {
        use std::hash::BuildHasher as _;
        foldhash::fast::FixedState::with_seed(0x6576_656e_7479_6172).hash_one((&event.context, &event.extensions))
    }
}

/// What a NATS message carried besides its subject and payload, kept so NATS subscribers receive
/// the message as it was sent and can answer requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsEnvelope {
    /// Where replies go (request/reply through an inbox subject).
    pub reply: Option<String>,
    /// The header block as sent (`NATS/1.0\r\n...\r\n\r\n`), if the message had one.
    pub headers: Option<Bytes>,
    /// The gateway connection that published it (a connection with `echo: false` skips its own).
    pub client: u64,
}

/// The extension that carries an event's routing key (seed 002's second path level).
pub const ROUTING_KEY_EXTENSION: &str = "routingkey";

impl Event {
    /// About how many bytes the event holds in memory: its data, attributes and NATS envelope,
    /// and the fixed part. What queues count against their byte bounds. Copies of one event share
    /// its data, so counting each copy in full overstates, never understates, what is held.
    pub fn size(&self) -> usize {
        let c = &self.context;
        let required = [&self.subject, &c.id, &c.source, &c.ty, &c.specversion].map(|text| text.len());
        let optional =
            [&c.subject, &c.time, &c.datacontenttype, &c.dataschema].map(|text| text.as_ref().map_or(0, String::len));
        let extensions: usize = self.extensions.iter().map(|(name, value)| name.len() + value.len()).sum();
        let envelope = self.nats.as_ref().map_or(0, |nats| {
            std::mem::size_of::<NatsEnvelope>()
                + nats.reply.as_ref().map_or(0, String::len)
                + nats.headers.as_ref().map_or(0, Bytes::len)
        });
        // The arrived text holds the attributes again; JSON data it shares with `data`.
        let arrived = self.arrived.as_ref().map_or(0, |arrived| {
            std::mem::size_of::<ArrivedJson>() + arrived.text.len().saturating_sub(arrived.data.len())
        });
        std::mem::size_of::<Event>()
            + arrived
            + required.iter().sum::<usize>()
            + optional.iter().sum::<usize>()
            + extensions
            + envelope
            + self.data.len()
    }

    /// Keeps `text` as the JSON this event arrived as (for the codec, which knows it is the same
    /// JSON value as the event's encoding).
    pub fn keep_arrived(&mut self, text: Bytes) {
        let attributes = ArrivedJson::attributes(self);
        self.arrived = Some(Arc::new(ArrivedJson { text, data: self.data.clone(), attributes }));
    }

    /// The JSON text this event arrived as, while it is unchanged since.
    pub fn arrived_json(&self) -> Option<&[u8]> {
        let arrived = self.arrived.as_deref()?;
        let same_data = arrived.data.as_ptr() == self.data.as_ptr() && arrived.data.len() == self.data.len();
        (same_data && arrived.attributes == ArrivedJson::attributes(self)).then_some(&arrived.text[..])
    }

    /// The value of extension `name`, if set.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A context attribute by its CloudEvents name, else the extension of that name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        let c = &self.context;
        match name {
            "id" => Some(&c.id),
            "source" => Some(&c.source),
            "type" => Some(&c.ty),
            "specversion" => Some(&c.specversion),
            "subject" => c.subject.as_deref(),
            "time" => c.time.as_deref(),
            "datacontenttype" => c.datacontenttype.as_deref(),
            "dataschema" => c.dataschema.as_deref(),
            _ => self.extension(name),
        }
    }

    /// The routing key (the [`ROUTING_KEY_EXTENSION`] extension), if set.
    pub fn routing_key(&self) -> Option<&str> {
        self.extension(ROUTING_KEY_EXTENSION)
    }
}

/// The JSON form of an event used by the CLI and fixture files: CloudEvents structured JSON with
/// `subject` as the routing subject, `ce_subject` for the CloudEvents subject, extensions in
/// `extensions`, and data as JSON (`data`), text (`data_text`) or base64 (`data_base64`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventJson {
    pub subject: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(rename = "type", default)]
    pub ty: Option<String>,
    #[serde(default)]
    pub specversion: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
}

/// Why an [`EventJson`] could not become an [`Event`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventJsonError {
    #[error("event has more than one of `data`, `data_text`, `data_base64`")]
    AmbiguousData,
    #[error("event field `data_base64` is not valid base64")]
    BadBase64,
    #[error("event field `subject` is empty")]
    EmptySubject,
}

impl EventJson {
    /// Builds the event, filling a missing `id` with `default_id`, `source` with `eventyard`,
    /// `type` with `eventyard.raw` and `specversion` with `1.0`.
    pub fn into_event(self, default_id: impl FnOnce() -> String) -> Result<Event, EventJsonError> {
        if self.subject.is_empty() {
            return Err(EventJsonError::EmptySubject);
        }
        let given = [self.data.is_some(), self.data_text.is_some(), self.data_base64.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(EventJsonError::AmbiguousData);
        }
        let mut datacontenttype = self.datacontenttype;
        let data = if let Some(value) = self.data {
            datacontenttype.get_or_insert_with(|| "application/json".into());
            Bytes::from(value.to_string())
        } else if let Some(text) = self.data_text {
            Bytes::from(text)
        } else if let Some(b64) = self.data_base64 {
            Bytes::from(BASE64.decode(b64.as_bytes()).map_err(|_| EventJsonError::BadBase64)?)
        } else {
            Bytes::new()
        };
        Ok(Event {
            subject: self.subject,
            context: Context {
                id: self.id.unwrap_or_else(default_id),
                source: self.source.unwrap_or_else(|| "eventyard".into()),
                ty: self.ty.unwrap_or_else(|| "eventyard.raw".into()),
                specversion: self.specversion.unwrap_or_else(|| "1.0".into()),
                subject: self.ce_subject,
                time: self.time,
                datacontenttype,
                dataschema: self.dataschema,
            },
            extensions: self.extensions,
            data,
            nats: None,
            completion: None,
            arrived: None,
        })
    }

    /// The JSON form of `event`; data is JSON when its content type says so and it parses,
    /// text when it is UTF-8, base64 otherwise.
    pub fn from_event(event: &Event) -> EventJson {
        let is_json = event.context.datacontenttype.as_deref().is_some_and(|t| t.contains("json"));
        let (mut data, mut data_text, mut data_base64) = (None, None, None);
        if !event.data.is_empty() {
            match (is_json, std::str::from_utf8(&event.data)) {
                (true, Ok(text)) => match serde_json::from_str(text) {
                    Ok(value) => data = Some(value),
                    Err(_) => data_text = Some(text.to_owned()),
                },
                (false, Ok(text)) => data_text = Some(text.to_owned()),
                (_, Err(_)) => data_base64 = Some(BASE64.encode(&event.data)),
            }
        }
        let c = &event.context;
        EventJson {
            subject: event.subject.clone(),
            id: Some(c.id.clone()),
            source: Some(c.source.clone()),
            ty: Some(c.ty.clone()),
            specversion: Some(c.specversion.clone()),
            ce_subject: c.subject.clone(),
            time: c.time.clone(),
            datacontenttype: c.datacontenttype.clone(),
            dataschema: c.dataschema.clone(),
            extensions: event.extensions.clone(),
            data,
            data_text,
            data_base64,
        }
    }
}

/// An event with every kind of field set (context, an extension, JSON data), for the unit tests
/// of what turns events into bytes and back.
#[cfg(test)]
pub fn full_event() -> Event {
    serde_json::from_value::<EventJson>(serde_json::json!({
        "subject": "audit.logins", "id": "e1", "source": "/dss", "type": "audit.login",
        "time": "2026-11-23T10:15:00Z", "extensions": [["routingkey", "node-1"]], "data": {"user": "ada"}
    }))
    .expect("valid event JSON")
    .into_event(|| unreachable!("the id is given"))
    .expect("a valid event")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_round_trips_and_fills_defaults() {
        let json: EventJson = serde_json::from_str(r#"{"subject":"a.b","data":{"x":1}}"#).unwrap();
        let event = json.into_event(|| "id-1".into()).unwrap();
        assert_eq!(event.context.id, "id-1");
        assert_eq!(event.context.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(&event.data[..], br#"{"x":1}"#);
        let back = EventJson::from_event(&event);
        assert_eq!(back.data, Some(serde_json::json!({"x": 1})));
        assert_eq!(back.into_event(|| unreachable!()).unwrap(), event);
    }

    #[test]
    fn json_form_rejects_ambiguous_data_and_unknown_fields() {
        let both: EventJson = serde_json::from_str(r#"{"subject":"a","data":1,"data_text":"x"}"#).unwrap();
        assert_eq!(both.into_event(String::new), Err(EventJsonError::AmbiguousData));
        assert!(serde_json::from_str::<EventJson>(r#"{"subject":"a","bogus":1}"#).is_err());
    }
}
