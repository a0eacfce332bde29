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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// One event as it travels through the router.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Attribute names of the CloudEvents JSON form that an extension may not take over.
const RESERVED_ATTRIBUTES: [&str; 10] =
    ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"];

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
        std::mem::size_of::<Event>()
            + required.iter().sum::<usize>()
            + optional.iter().sum::<usize>()
            + extensions
            + envelope
            + self.data.len()
    }

    /// The value of extension `name`, if set.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The routing key (the [`ROUTING_KEY_EXTENSION`] extension), if set.
    pub fn routing_key(&self) -> Option<&str> {
        self.extension(ROUTING_KEY_EXTENSION)
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
    /// This is a port of `eventyard_sdk::Event::to_cloudevents_json` (plugins/sdk/src/event.rs):
    /// the built-in sinks and the Wasm `file-sink` must write the same bytes for the same event, so
    /// a change to one is a change to both.
    pub fn to_cloudevents_json(&self) -> serde_json::Value {
        use serde_json::{Map, Value};

        let c = &self.context;
        let mut out = Map::new();
        out.insert("specversion".into(), Value::String(c.specversion.clone()));
        out.insert("id".into(), Value::String(c.id.clone()));
        out.insert("source".into(), Value::String(c.source.clone()));
        out.insert("type".into(), Value::String(c.ty.clone()));
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

/// Whether a `datacontenttype` declares JSON data: `*/json` or `*/*+json` (CloudEvents JSON
/// format, 3.1.1), ignoring case and parameters such as `; charset=utf-8`. The one rule for
/// decoding and for writing events.
pub fn is_json_media_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media_type.split_once('/').is_some_and(|(_, subtype)| subtype == "json" || subtype.ends_with("+json"))
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

    /// The event of the SDK's own `to_cloudevents_json` tests (plugins/sdk/src/event.rs), on the
    /// host type.
    fn sdk_test_event(datacontenttype: Option<&str>, data: &[u8]) -> Event {
        Event {
            subject: "orders.eu.created".into(),
            context: Context {
                id: "e-1".into(),
                source: "/shop".into(),
                ty: "com.example.order.created".into(),
                specversion: "1.0".into(),
                subject: Some("order-7".into()),
                time: Some("2022-07-12T07:08:09Z".into()),
                datacontenttype: datacontenttype.map(str::to_owned),
                dataschema: None,
            },
            extensions: vec![("routingkey".into(), "eu".into()), ("id".into(), "spoofed".into())],
            data: Bytes::copy_from_slice(data),
            nats: None,
            completion: None,
        }
    }

    #[test]
    fn data_decoded_as_json_is_written_as_json() {
        // `vnd.acme/json` is JSON to the decoder (`*/json`), so it is written as `data` too.
        for media_type in ["vnd.acme/json", "application/json; charset=utf-8", "application/ld+json", "TEXT/JSON"] {
            let value = sdk_test_event(Some(media_type), br#"{"n": 1}"#).to_cloudevents_json();
            assert_eq!(value["data"], serde_json::json!({"n": 1}), "{media_type}");
        }
        assert!(!is_json_media_type("application/jsonl") && !is_json_media_type("json"));
    }

    #[test]
    fn cloudevents_json_matches_the_sdk_output_for_the_same_event() {
        // The expected value is the SDK's, from its test of the same name; the end-to-end test
        // `tests/e2e/builtin_sinks.rs` also compares bytes written by the Wasm file-sink.
        let value =
            sdk_test_event(Some("application/cloudevents+json; charset=utf-8"), br#"{"n": 1}"#).to_cloudevents_json();
        let expected = serde_json::json!({
            "specversion": "1.0",
            "id": "e-1",
            "source": "/shop",
            "type": "com.example.order.created",
            "subject": "order-7",
            "time": "2022-07-12T07:08:09Z",
            "datacontenttype": "application/cloudevents+json; charset=utf-8",
            "routingkey": "eu",
            "data": {"n": 1},
        });
        assert_eq!(value, expected);
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"data":{"n":1},"datacontenttype":"application/cloudevents+json; charset=utf-8","id":"e-1","routingkey":"eu","source":"/shop","specversion":"1.0","subject":"order-7","time":"2022-07-12T07:08:09Z","type":"com.example.order.created"}"#
        );
    }

    #[test]
    fn cloudevents_json_falls_back_to_base64_like_the_sdk() {
        let base64_of = |e: &Event| e.to_cloudevents_json()["data_base64"].as_str().map(str::to_owned);
        assert_eq!(base64_of(&sdk_test_event(Some("application/json"), b"not json")).as_deref(), Some("bm90IGpzb24="));
        assert_eq!(base64_of(&sdk_test_event(None, b"{}")).as_deref(), Some("e30="));
        assert_eq!(base64_of(&sdk_test_event(Some("text/plain"), b"ab")).as_deref(), Some("YWI="));
        assert_eq!(base64_of(&sdk_test_event(Some("TEXT/JSON"), br#""s""#)), None);
        let empty = sdk_test_event(Some("application/json"), b"").to_cloudevents_json();
        assert!(empty.get("data").is_none() && empty.get("data_base64").is_none());
        assert_eq!(sdk_test_event(None, b"").routing_key(), Some("eu"));
    }

    #[test]
    fn json_form_rejects_ambiguous_data_and_unknown_fields() {
        let both: EventJson = serde_json::from_str(r#"{"subject":"a","data":1,"data_text":"x"}"#).unwrap();
        assert_eq!(both.into_event(String::new), Err(EventJsonError::AmbiguousData));
        assert!(serde_json::from_str::<EventJson>(r#"{"subject":"a","bogus":1}"#).is_err());
    }
}
