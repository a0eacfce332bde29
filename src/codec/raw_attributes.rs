//! Attributes of raw messages from their content: where a way in (a NATS listener, a source, an
//! HTTP subject) finds `id`, `type`, `time`, `source`, `subject` and the routing key of a message
//! that carries no CloudEvents attributes — a JSON pointer into its data, or one of its headers.
//! What is not found keeps the host's value ([`super::raw`]); what is found must be a valid
//! attribute, or the message is not an event and says why. Data read through a pointer is JSON,
//! and says so when it had no content type. Reads the event; never routes it.

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::DecodeError;
use super::validate::{check_text, invalid, quote, validate_routing_key};
use crate::event::{Event, ROUTING_KEY_EXTENSION};

/// Where one attribute of a raw message is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Locator {
    /// A JSON pointer (RFC 6901) into the data: `/type/name`.
    Pointer(String),
    /// A message header, any case: `{ header = "Event-Type" }`.
    Header { header: String },
}

/// `raw = { type = "/type/name", id = "/event_id", ... }`: the attributes a raw message gets
/// from its content. Unset ones keep the host's values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttributes {
    pub id: Option<Locator>,
    #[serde(rename = "type")]
    pub ty: Option<Locator>,
    pub time: Option<Locator>,
    pub source: Option<Locator>,
    pub subject: Option<Locator>,
    pub routingkey: Option<Locator>,
}

impl RawAttributes {
    fn each(&self) -> [(&'static str, Option<&Locator>); 6] {
        [
            ("id", self.id.as_ref()),
            ("type", self.ty.as_ref()),
            ("time", self.time.as_ref()),
            ("source", self.source.as_ref()),
            ("subject", self.subject.as_ref()),
            (ROUTING_KEY_EXTENSION, self.routingkey.as_ref()),
        ]
    }

    /// Problems with the settings, as (attribute, reason).
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (name, locator) in self.each() {
            match locator {
                Some(Locator::Pointer(pointer)) if !pointer.is_empty() && !pointer.starts_with('/') => {
                    problems.push((name, format!("`{pointer}` is not a JSON pointer (one starts with `/`)")));
                }
                Some(Locator::Header { header }) if header.is_empty() || header.contains([':', ' ']) => {
                    problems.push((name, format!("`{header}` is not a header name")));
                }
                _ => {}
            }
        }
        problems
    }

    /// Sets the attributes of the raw `event` from its data and its message's headers
    /// (`header(name)`, any case), or says which one found is not valid.
    pub fn apply(&self, event: &mut Event, header: impl Fn(&str) -> Option<String>) -> Result<(), DecodeError> {
        let needs_data = self.each().iter().any(|(_, locator)| matches!(locator, Some(Locator::Pointer(_))));
        let data: Value = if needs_data {
            let data =
                serde_json::from_slice(&event.data).map_err(|err| DecodeError::NotJson { reason: err.to_string() })?;
            // Read as JSON, it is JSON.
            event.context.datacontenttype.get_or_insert_with(|| "application/json".to_owned());
            data
        } else {
            Value::Null
        };
        for (name, locator) in self.each() {
            let Some(locator) = locator else { continue };
            let (value, from) = match locator {
                Locator::Pointer(pointer) => (text(name, pointer, data.pointer(pointer))?, pointer.as_str()),
                Locator::Header { header: name } => (header(name), name.as_str()),
            };
            let Some(value) = value else { continue };
            let from = |reason: String| invalid(None, name, format!("{} from {from}: {reason}", quote(&value)));
            check_text(None, name, &value).map_err(|_| from("empty, or has control characters".into()))?;
            let context = &mut event.context;
            match name {
                "id" => context.id = value,
                "type" => context.ty = value,
                "source" => context.source = value,
                "subject" => context.subject = Some(value),
                "time" => {
                    OffsetDateTime::parse(&value, &Rfc3339).map_err(|_| from("not an RFC 3339 time".into()))?;
                    context.time = Some(value);
                }
                _ => {
                    validate_routing_key(&value).map_err(from)?;
                    event.extensions.retain(|(extension, _)| extension != ROUTING_KEY_EXTENSION);
                    event.extensions.push((ROUTING_KEY_EXTENSION.to_owned(), value));
                }
            }
        }
        Ok(())
    }
}

/// The text of the value at `pointer`: a string as it is, a number in JSON; none when absent or
/// null.
fn text(name: &str, pointer: &str, value: Option<&Value>) -> Result<Option<String>, DecodeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(other) => {
            let kind = match other {
                Value::Bool(_) => "a boolean",
                Value::Array(_) => "an array",
                _ => "an object",
            };
            Err(invalid(None, name, format!("{pointer} is {kind}, not text")))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn raw(data: &str) -> Event {
        super::super::raw("/eventyard/nats", "automate.events".into(), data.to_owned().into(), SystemTime::now())
            .unwrap()
    }

    fn automate() -> RawAttributes {
        RawAttributes {
            id: Some(Locator::Pointer("/event_id".into())),
            ty: Some(Locator::Pointer("/type/name".into())),
            time: Some(Locator::Pointer("/published".into())),
            source: Some(Locator::Pointer("/producer/id".into())),
            subject: None,
            routingkey: Some(Locator::Header { header: "Node".into() }),
        }
    }

    #[test]
    fn attributes_come_from_the_data_and_headers_and_what_is_missing_keeps_the_hosts() {
        let mut event =
            raw(r#"{"event_id": "e-1", "type": {"name": "scanJobCreated"}, "published": "2026-12-07T10:00:00Z",
                "producer": {"id": "urn:chef:compliance"}}"#);
        automate().apply(&mut event, |name| (name == "Node").then(|| "node-1".to_owned())).unwrap();
        let c = &event.context;
        assert_eq!((c.id.as_str(), c.ty.as_str(), c.source.as_str()), ("e-1", "scanJobCreated", "urn:chef:compliance"));
        assert_eq!((c.time.as_deref(), event.extension("routingkey")), (Some("2026-12-07T10:00:00Z"), Some("node-1")));
        assert_eq!(c.datacontenttype.as_deref(), Some("application/json"));

        let mut bare = raw(r#"{"event_id": 7}"#);
        automate().apply(&mut bare, |_| None).unwrap();
        assert_eq!(
            (bare.context.id.as_str(), bare.context.ty.as_str()),
            ("7", "eventyard.raw"),
            "a number id; the rest kept"
        );
        assert_eq!(bare.context.source, "/eventyard/nats");
        assert!(bare.extension("routingkey").is_none());
    }

    #[test]
    fn a_value_found_that_is_no_valid_attribute_is_refused_with_where_it_came_from() {
        for (data, header, reason) in [
            ("not json", None, "not valid json"),
            (r#"{"type": {"name": true}}"#, None, "/type/name is a boolean"),
            (r#"{"type": {"name": ""}}"#, None, "from /type/name"),
            (r#"{"published": "yesterday"}"#, None, "\"yesterday\" from /published: not an rfc 3339 time"),
            ("{}", Some("../etc"), "from Node"),
        ] {
            let err = automate().apply(&mut raw(data), |_| header.map(str::to_owned)).unwrap_err();
            assert!(err.to_string().to_lowercase().contains(&reason.to_lowercase()), "{data}: {err}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let mut attributes = automate();
        assert!(attributes.check().is_empty());
        attributes.ty = Some(Locator::Pointer("type.name".into()));
        attributes.routingkey = Some(Locator::Header { header: "A B".into() });
        let problems: Vec<&str> = attributes.check().iter().map(|(name, _)| *name).collect();
        assert_eq!(problems, ["type", "routingkey"]);
    }
}
