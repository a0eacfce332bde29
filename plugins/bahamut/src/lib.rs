//! `bahamut`: a handler that decodes what Aporeto's services publish on NATS (seed 003): a bahamut
//! `Publication` envelope carrying an elemental `Event`, into JSON data an exporter can route,
//! log and key by.
//!
//! On the wire (bahamut's NATS pub/sub): the publication is MessagePack (older bahamut: JSON) with
//! `topic`, `encoding` and `data`; `data` is the elemental event, encoded as `encoding` says
//! (`application/msgpack`, the default, or `application/json`; JSON when absent). The event has
//! `identity` (the kind of object), `type` (the operation: `create`, `update`, `delete`, `error`),
//! `timestamp`, `encoding` and `entity`, the object itself in that encoding. A bare elemental
//! event (no envelope) is taken as well.
//!
//! Output: the event's data becomes
//! `{"identity", "operation", "timestamp", "topic", "entity"}` (JSON; `topic` only from an
//! envelope; the entity decoded to JSON, MessagePack binary as base64 text), its type
//! `<identity>.<operation>` and its time the event's timestamp. A message that is none of these
//! is a permanent failure naming the event and what is wrong, so the route dead-letters it.
//! No config.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use eventyard_sdk::{Config, Error, Event, Handler, Outcome, clock};
use rmpv::Value as Pack;
use serde_json::{Map, Value};

/// elemental's MessagePack encoding type.
const MSGPACK: &str = "application/msgpack";
/// MessagePack's extension type for timestamps.
const TIMESTAMP_EXT: i8 = -1;

/// Whether `bytes` are JSON: the first non-blank byte opens an object. MessagePack otherwise.
fn is_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Whether elemental's encoding `name` is MessagePack (absent: JSON, as older bahamut sends).
fn is_msgpack(name: Option<&str>) -> bool {
    name.is_some_and(|name| name.eq_ignore_ascii_case(MSGPACK))
}

/// One MessagePack value filling all of `bytes`.
fn unpack(bytes: &[u8]) -> Result<Pack, String> {
    let mut reader = bytes;
    let value = rmpv::decode::read_value(&mut reader).map_err(|err| format!("not MessagePack: {err}"))?;
    if !reader.is_empty() {
        return Err(format!("not MessagePack: {} bytes after the value", reader.len()));
    }
    Ok(value)
}

/// A MessagePack value as JSON: map keys as text, binary as base64, timestamps as RFC 3339.
fn json(value: Pack) -> Result<Value, String> {
    Ok(match value {
        Pack::Nil => Value::Null,
        Pack::Boolean(b) => Value::Bool(b),
        Pack::Integer(n) => match (n.as_u64(), n.as_i64()) {
            (Some(n), _) => Value::from(n),
            (None, Some(n)) => Value::from(n),
            (None, None) => return Err("an integer out of range".into()),
        },
        Pack::F32(f) => Value::from(f64::from(f)),
        Pack::F64(f) => Value::from(f),
        Pack::String(text) => Value::String(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        Pack::Binary(bytes) => Value::String(BASE64.encode(bytes)),
        Pack::Array(items) => Value::Array(items.into_iter().map(json).collect::<Result<_, _>>()?),
        Pack::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                map.insert(key_text(key), json(value)?);
            }
            Value::Object(map)
        }
        Pack::Ext(TIMESTAMP_EXT, bytes) => Value::String(timestamp(&bytes)?),
        Pack::Ext(kind, _) => return Err(format!("a MessagePack extension of type {kind}")),
    })
}

fn key_text(key: Pack) -> String {
    match key {
        Pack::String(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        other => other.to_string(),
    }
}

/// A MessagePack timestamp (4, 8 or 12 bytes) as RFC 3339, UTC.
fn timestamp(bytes: &[u8]) -> Result<String, String> {
    let (seconds, nanos) = match bytes.len() {
        4 => (i64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])), 0),
        8 => {
            let word = u64::from_be_bytes(bytes.try_into().map_err(|_| "a bad timestamp")?);
            ((word & 0x3_ffff_ffff) as i64, (word >> 34) as u32)
        }
        12 => {
            let nanos = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            (i64::from_be_bytes(bytes[4..].try_into().map_err(|_| "a bad timestamp")?), nanos)
        }
        n => return Err(format!("a timestamp of {n} bytes")),
    };
    let seconds = u64::try_from(seconds).map_err(|_| "a timestamp before 1970")?;
    Ok(clock::rfc3339(seconds * 1_000_000_000 + u64::from(nanos)))
}

/// The fields of a MessagePack map, keys as text.
fn entries(value: Pack, what: &str) -> Result<Vec<(String, Pack)>, String> {
    match value {
        Pack::Map(entries) => Ok(entries.into_iter().map(|(k, v)| (key_text(k), v)).collect()),
        _ => Err(format!("{what} is not a MessagePack map")),
    }
}

/// An elemental event's fields, whichever encoding carried them.
struct Elemental {
    identity: Option<String>,
    operation: Option<String>,
    timestamp: Option<Value>,
    entity: Value,
}

impl Elemental {
    /// From JSON: the entity is JSON itself.
    fn from_json(mut event: Map<String, Value>) -> Elemental {
        let mut text = |field: &str| match event.remove(field) {
            Some(Value::String(text)) => Some(text),
            _ => None,
        };
        let (identity, operation) = (text("identity"), text("type"));
        Elemental {
            identity,
            operation,
            timestamp: event.remove("timestamp"),
            entity: event.remove("entity").unwrap_or_default(),
        }
    }

    /// From MessagePack: the entity is bytes in the event's `encoding`.
    fn from_msgpack(event: Vec<(String, Pack)>) -> Result<Elemental, String> {
        let (mut elemental, mut encoding, mut entity) =
            (Elemental { identity: None, operation: None, timestamp: None, entity: Value::Null }, None, None);
        for (field, value) in event {
            let text = || value.as_str().map(str::to_owned);
            match field.as_str() {
                "identity" => elemental.identity = text(),
                "type" => elemental.operation = text(),
                "encoding" => encoding = text(),
                "timestamp" => elemental.timestamp = Some(json(value)?),
                "entity" => entity = Some(value),
                _ => {}
            }
        }
        elemental.entity = match entity {
            Some(Pack::Binary(bytes)) if is_msgpack(encoding.as_deref()) => {
                json(unpack(&bytes).map_err(|err| format!("the entity is {err}"))?)?
            }
            Some(Pack::Binary(bytes)) => {
                serde_json::from_slice(&bytes).map_err(|err| format!("the entity is not JSON: {err}"))?
            }
            Some(other) => json(other)?,
            None => Value::Null,
        };
        Ok(elemental)
    }
}

/// The elemental event in `message` (a publication, or an event on its own) and the
/// publication's topic, or why it is not one.
fn decode(message: &[u8]) -> Result<(Elemental, Option<String>), String> {
    if is_json(message) {
        let outer: Map<String, Value> = serde_json::from_slice(message).map_err(|err| format!("not JSON: {err}"))?;
        if outer.contains_key("identity") {
            return Ok((Elemental::from_json(outer), None));
        }
        let text = |field: &str| outer.get(field).and_then(Value::as_str).map(str::to_owned);
        let (topic, encoding) = (text("topic"), text("encoding"));
        return match outer.get("data") {
            // Older bahamut: the event as JSON inside the JSON envelope.
            Some(Value::Object(event)) => Ok((Elemental::from_json(event.clone()), topic)),
            // A publication marshalled to JSON as Go does: its `data` bytes as base64.
            Some(Value::String(encoded)) => {
                let data =
                    BASE64.decode(encoded).map_err(|err| format!("the publication's data is not base64: {err}"))?;
                Ok((elemental(&data, encoding.as_deref())?, topic))
            }
            _ => Err("a JSON publication without an elemental event in `data`".into()),
        };
    }
    let outer = entries(unpack(message)?, "the message")?;
    if outer.iter().any(|(field, _)| field == "identity") {
        return Ok((Elemental::from_msgpack(outer)?, None));
    }
    let (mut topic, mut encoding, mut data) = (None, None, None);
    for (field, value) in outer {
        match field.as_str() {
            "topic" => topic = value.as_str().map(str::to_owned),
            "encoding" => encoding = value.as_str().map(str::to_owned),
            "data" => data = Some(value),
            _ => {}
        }
    }
    let data = match data {
        Some(Pack::Binary(bytes)) => bytes,
        Some(Pack::String(text)) => text.as_bytes().to_vec(),
        _ => return Err("a publication without data".into()),
    };
    Ok((elemental(&data, encoding.as_deref())?, topic))
}

/// The elemental event in a publication's `data`, encoded as the publication's `encoding` says.
fn elemental(data: &[u8], encoding: Option<&str>) -> Result<Elemental, String> {
    if is_msgpack(encoding) {
        return Elemental::from_msgpack(entries(unpack(data)?, "the publication's data")?);
    }
    let event = serde_json::from_slice(data).map_err(|err| format!("the publication's data is not JSON: {err}"))?;
    Ok(Elemental::from_json(event))
}

struct Bahamut;

impl Handler for Bahamut {
    fn init(config: Config) -> Result<Self, Error> {
        config.deny_unknown(&[])?;
        Ok(Bahamut)
    }

    fn handle(&mut self, mut event: Event) -> Result<Outcome, Error> {
        let fail = |reason: String| Error::permanent(format!("event \"{}\": {reason}", event.context.id));
        let (elemental, topic) = decode(&event.data).map_err(fail)?;
        let identity = elemental.identity.ok_or_else(|| fail("an elemental event without `identity`".into()))?;
        let operation = elemental.operation.ok_or_else(|| fail("an elemental event without `type`".into()))?;
        let mut data = Map::new();
        if let Some(Value::String(time)) = &elemental.timestamp {
            event.context.time = Some(time.clone());
        }
        event.context.type_ = format!("{identity}.{operation}");
        data.insert("identity".into(), Value::String(identity));
        data.insert("operation".into(), Value::String(operation));
        if let Some(timestamp) = elemental.timestamp {
            data.insert("timestamp".into(), timestamp);
        }
        if let Some(topic) = topic {
            data.insert("topic".into(), Value::String(topic));
        }
        data.insert("entity".into(), elemental.entity);
        event.data = Value::Object(data).to_string().into_bytes();
        event.context.datacontenttype = Some("application/json".into());
        Ok(event.into())
    }
}

eventyard_sdk::export_handler!(Bahamut);

#[cfg(test)]
mod tests;
