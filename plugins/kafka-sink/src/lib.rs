//! `kafka-sink`: writes each event as one Kafka record through the host's `kafka-producer`
//! capability (acks, idempotence, compression, TLS and SASL are the host's `[kafka]` settings).
//! Records follow the CloudEvents Kafka protocol binding.
//!
//! Config:
//! - `topic` (required): the topic to write to; one sink per route gives a topic per route.
//! - `key`: what keys the records (and so picks their partition): `id`, `source`, `type`,
//!   `subject` (the CloudEvents one), `routingkey` or another extension name, or `data.FIELD`
//!   (a field of the JSON data, dotted for nested fields; seed 003 keys by `data.identity`).
//!   Unset: no key. An event without the key is not delivered: it fails, naming the key.
//! - `mode`: `binary` (default): the value is the data, attributes are `ce_*` headers and
//!   `content-type` the data's media type. `structured`: the value is the CloudEvents JSON.
//! - `data_headers`: top-level fields of the JSON data copied into headers of the same name
//!   (e.g. `["identity", "operation"]`); a missing field is left out.
//!
//! A delivery waits for the broker's acknowledgement: give the plugin a `limits.timeout_ms` above
//! a handler's default 500 ms (the examples use 30000).
//!
//! Every record also carries the routing subject in the `eventyard-subject` header. Events that
//! cannot become records fail alone; a send the broker refuses fails the rest of the batch, as
//! retryable when the host says so.

use eventyard_sdk::kafka::{self, KafkaRecord};
use eventyard_sdk::{Config, DeliveryError, Error, Event, EventFailure, Sink};
use serde_json::Value;

/// The config keys this plugin reads.
const KEYS: [&str; 4] = ["topic", "key", "mode", "data_headers"];

/// Where a record's key comes from.
#[derive(Debug, PartialEq)]
enum KeySource {
    None,
    Id,
    Source,
    Type,
    Subject,
    Extension(String),
    /// A path into the JSON data.
    Data(Vec<String>),
}

impl KeySource {
    fn parse(text: Option<&str>) -> Result<KeySource, Error> {
        Ok(match text {
            None => KeySource::None,
            Some("id") => KeySource::Id,
            Some("source") => KeySource::Source,
            Some("type") => KeySource::Type,
            Some("subject") => KeySource::Subject,
            Some(path) if path.starts_with("data.") => {
                let fields: Vec<String> = path["data.".len()..].split('.').map(str::to_owned).collect();
                if fields.iter().any(String::is_empty) {
                    return Err(Error::permanent(format!("config: key `key`: `{path}` has an empty field name")));
                }
                KeySource::Data(fields)
            }
            Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) => {
                KeySource::Extension(name.to_owned())
            }
            Some(other) => {
                return Err(Error::permanent(format!(
                    "config: key `key`: `{other}` is not id, source, type, subject, an extension name or data.FIELD"
                )));
            }
        })
    }
}

struct KafkaSink {
    topic: String,
    key: KeySource,
    structured: bool,
    data_headers: Vec<String>,
}

/// A value as key or header bytes: strings as they are, other JSON as its text.
fn json_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(text) => text.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

impl KafkaSink {
    /// The record for `event`, or why there is none.
    fn record(&self, event: &Event) -> Result<KafkaRecord, String> {
        let needs_data = matches!(self.key, KeySource::Data(_)) || !self.data_headers.is_empty();
        let data: Option<Value> = if needs_data {
            Some(serde_json::from_slice(&event.data).map_err(|err| format!("data is not JSON: {err}"))?)
        } else {
            None
        };
        let c = &event.context;
        let key = match &self.key {
            KeySource::None => None,
            KeySource::Id => Some(c.id.clone().into_bytes()),
            KeySource::Source => Some(c.source.clone().into_bytes()),
            KeySource::Type => Some(c.type_.clone().into_bytes()),
            KeySource::Subject => Some(c.subject.clone().ok_or("has no subject to key by")?.into_bytes()),
            KeySource::Extension(name) => {
                Some(event.extension(name).ok_or_else(|| format!("has no `{name}` to key by"))?.as_bytes().to_vec())
            }
            KeySource::Data(path) => {
                let found = data.as_ref().and_then(|data| path.iter().try_fold(data, |value, field| value.get(field)));
                match found {
                    Some(Value::Null) | None => return Err(format!("data has no `{}` to key by", path.join("."))),
                    Some(value) => Some(json_bytes(value)),
                }
            }
        };
        let mut headers = vec![("eventyard-subject".to_owned(), event.subject.clone().into_bytes())];
        if let Some(Value::Object(fields)) = &data {
            for name in &self.data_headers {
                if let Some(value) = fields.get(name).filter(|v| !v.is_null()) {
                    headers.push((name.clone(), json_bytes(value)));
                }
            }
        }
        let value = if self.structured {
            headers.push(("content-type".into(), b"application/cloudevents+json; charset=UTF-8".to_vec()));
            serde_json::to_vec(&event.to_cloudevents_json()).map_err(|err| format!("cannot encode as JSON: {err}"))?
        } else {
            let attributes = [
                ("ce_specversion", Some(&c.specversion)),
                ("ce_id", Some(&c.id)),
                ("ce_source", Some(&c.source)),
                ("ce_type", Some(&c.type_)),
                ("ce_subject", c.subject.as_ref()),
                ("ce_time", c.time.as_ref()),
                ("ce_dataschema", c.dataschema.as_ref()),
                ("content-type", c.datacontenttype.as_ref()),
            ];
            for (name, value) in attributes {
                if let Some(value) = value {
                    headers.push((name.into(), value.clone().into_bytes()));
                }
            }
            for (name, value) in &event.extensions {
                headers.push((format!("ce_{name}"), value.clone().into_bytes()));
            }
            event.data.clone()
        };
        Ok(KafkaRecord { topic: self.topic.clone(), key, value, headers })
    }
}

impl Sink for KafkaSink {
    fn init(config: Config) -> Result<Self, Error> {
        config.deny_unknown(&KEYS)?;
        let topic = config.require("topic")?.to_owned();
        if topic.is_empty() {
            return Err(Error::permanent("config: key `topic` is empty"));
        }
        let structured = match config.get("mode") {
            None | Some("binary") => false,
            Some("structured") => true,
            Some(other) => {
                return Err(Error::permanent(format!("config: key `mode`: `{other}` is not `binary` or `structured`")));
            }
        };
        Ok(KafkaSink {
            topic,
            key: KeySource::parse(config.get("key"))?,
            structured,
            data_headers: config.list("data_headers")?,
        })
    }

    fn deliver(&mut self, batch: Vec<Event>) -> Result<(), DeliveryError> {
        let mut records = Vec::with_capacity(batch.len());
        let mut sent = Vec::with_capacity(batch.len());
        let mut failed = Vec::new();
        for (index, event) in batch.iter().enumerate() {
            match self.record(event) {
                Ok(record) => {
                    records.push(record);
                    sent.push(index as u32);
                }
                Err(reason) => failed.push(EventFailure {
                    index: index as u32,
                    message: format!("event \"{}\": {reason}", event.context.id),
                    retryable: false,
                }),
            }
        }
        if !records.is_empty()
            && let Err(err) = kafka::send(&records)
        {
            if failed.is_empty() {
                return Err(DeliveryError::from(err));
            }
            let why = |index| EventFailure { index, message: err.message.clone(), retryable: err.retryable };
            failed.extend(sent.into_iter().map(why));
            failed.sort_by_key(|f| f.index);
        }
        if failed.is_empty() { Ok(()) } else { Err(DeliveryError::Partial(failed)) }
    }
}

eventyard_sdk::export_sink!(KafkaSink);

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(config: &[(&str, &str)]) -> Result<KafkaSink, Error> {
        KafkaSink::init(Config::new(config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    }

    fn header<'a>(record: &'a KafkaRecord, name: &str) -> Option<&'a [u8]> {
        record.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    #[test]
    fn binary_mode_keys_by_a_data_field_and_carries_attributes_as_headers() {
        let sink = sink(&[("topic", "audit"), ("key", "data.identity"), ("data_headers", "identity,operation")])
            .expect("config is valid");
        let mut event = Event::from_parts(
            "activities",
            "e-1",
            "/aporeto",
            "com.aporeto.activity",
            br#"{"identity":"enforcer","operation":"create"}"#.to_vec(),
        );
        event.set_extension("routingkey", "eu");
        let record = sink.record(&event).expect("a record");
        assert_eq!(record.topic, "audit");
        assert_eq!(record.key.as_deref(), Some(&b"enforcer"[..]));
        assert_eq!(record.value, event.data);
        assert_eq!(header(&record, "ce_type"), Some(&b"com.aporeto.activity"[..]));
        assert_eq!(header(&record, "ce_routingkey"), Some(&b"eu"[..]));
        assert_eq!(header(&record, "operation"), Some(&b"create"[..]));
        assert_eq!(header(&record, "eventyard-subject"), Some(&b"activities"[..]));
    }

    #[test]
    fn an_event_without_its_key_fails_alone_with_the_reason() {
        let sink = sink(&[("topic", "t"), ("key", "data.identity")]).expect("config is valid");
        let err = sink.record(&Event::from_parts("a", "e-2", "/s", "t", b"{}".to_vec())).expect_err("no identity");
        assert!(err.contains("no `identity`"), "{err}");
        let err = sink.record(&Event::from_parts("a", "e-3", "/s", "t", b"not json".to_vec())).expect_err("not JSON");
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn structured_mode_sends_the_cloudevents_json() {
        let sink = sink(&[("topic", "t"), ("mode", "structured"), ("key", "id")]).expect("config is valid");
        let event = Event::from_parts("a", "e-4", "/s", "t", b"x".to_vec());
        let record = sink.record(&event).expect("a record");
        let json: Value = serde_json::from_slice(&record.value).expect("JSON value");
        assert_eq!(json["id"], event.context.id.as_str());
        assert_eq!(record.key.as_deref(), Some(event.context.id.as_bytes()));
    }

    #[test]
    fn bad_config_is_refused_at_init() {
        assert!(sink(&[]).is_err());
        assert!(sink(&[("topic", "t"), ("mode", "avro")]).is_err());
        assert!(sink(&[("topic", "t"), ("key", "data..x")]).is_err());
        assert!(sink(&[("topic", "t"), ("key", "Weird Key")]).is_err());
        assert!(sink(&[("topic", "t"), ("partition", "1")]).is_err());
    }
}
