//! CloudEvents 1.0 over HTTP: one request's content type, headers and body → [`Event`]s.
//!
//! Owns the four request shapes `POST /v1/events/{subject}` accepts and the validation of every
//! attribute they carry:
//! - **structured** (`application/cloudevents+json`): one JSON event object;
//! - **batched** (`application/cloudevents-batch+json`): a non-empty JSON array of event objects;
//! - **binary** (any other content type with a `ce-specversion` header): attributes in `ce-*`
//!   headers (quoted-string unescaped, then percent-decoded per the HTTP binding), `Content-Type`
//!   as `datacontenttype`, the body as data;
//! - **raw** (no `ce-*` header at all): the body as data, with `id` (UUIDv7), `source`, `type`,
//!   `specversion` and `time` filled by the host.
//!
//! Every event gets the path's routing subject, validated here once per request. The routing key
//! is the `routingkey` extension and is validated here too, since sinks may turn it into a path.
//!
//! Must never: do I/O or read the clock (the caller passes `now`), queue, route or answer HTTP
//! (the router maps [`DecodeError`] to a status and uses [`DecodeError::field`] in its 400 body),
//! or panic on any input. `data` is kept as sent: JSON `data` is the exact JSON text of the
//! member, and binary and raw bodies are shared with the request's buffer, not copied.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::event::{Context, Event, ROUTING_KEY_EXTENSION, is_json_media_type};

/// Media type of a structured-mode request: one CloudEvent as a JSON object.
pub const STRUCTURED_MEDIA_TYPE: &str = "application/cloudevents+json";
/// Media type of a batched-mode request: a JSON array of CloudEvents.
pub const BATCH_MEDIA_TYPE: &str = "application/cloudevents-batch+json";
/// The only CloudEvents version accepted, and the one raw events get.
pub const SPEC_VERSION: &str = "1.0";
/// Prefix of the headers that carry attributes in binary mode (lower-case).
pub const HEADER_PREFIX: &str = "ce-";
/// `source` of events built from a raw body.
pub const RAW_SOURCE: &str = "/eventyard/http";
/// `type` of events built from a raw body.
pub const RAW_TYPE: &str = "eventyard.raw";
/// Longest routing subject accepted, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;
/// Longest routing key accepted, in bytes.
pub const MAX_ROUTING_KEY_BYTES: usize = 256;
/// Longest extension attribute name accepted, in characters.
pub const MAX_EXTENSION_NAME_CHARS: usize = 20;

/// The `datacontenttype` implied for JSON `data` sent without one (JSON format, section 3.1.2).
const JSON_MEDIA_TYPE: &str = "application/json";
/// Values quoted in error messages are cut to this many characters.
const QUOTE_MAX_CHARS: usize = 64;

/// Standard base64 that accepts `data_base64` with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a request could not be decoded into events.
///
/// `index` is the event's position in a batch, `None` outside batched mode. Every variant but
/// [`DecodeError::HostClock`] is the client's fault (a 400, or 415 for
/// [`DecodeError::UnsupportedFormat`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The routing subject from the request path cannot be published to.
    #[error("invalid subject {}: {reason}", quote(.subject))]
    InvalidSubject {
        /// The subject as given in the path.
        subject: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The content type names a CloudEvents event format other than JSON.
    #[error(
        "unsupported cloudevents format {}: only {} and {} are accepted",
        quote(.media_type),
        STRUCTURED_MEDIA_TYPE,
        BATCH_MEDIA_TYPE
    )]
    UnsupportedFormat {
        /// The media type, lower-cased and without parameters.
        media_type: String,
    },
    /// A structured or batched body is not JSON.
    #[error("body is not valid json: {reason}")]
    NotJson {
        /// The JSON parser's complaint, with line and column.
        reason: String,
    },
    /// A batched body is JSON but not an array.
    #[error("batch body is not a json array")]
    NotAnArray,
    /// A batched body is an empty array; there would be nothing to accept.
    #[error("batch is empty")]
    EmptyBatch,
    /// A structured body, or an element of a batch, is JSON but not an object.
    #[error("{}", not_an_object_message(.index))]
    NotAnObject {
        /// Position in the batch.
        index: Option<usize>,
    },
    /// `specversion` is present but not `1.0`.
    #[error("{}unsupported specversion {}: only \"1.0\" is accepted", at(.index), quote(.found))]
    UnsupportedSpecVersion {
        /// Position in the batch.
        index: Option<usize>,
        /// The version the event claims.
        found: String,
    },
    /// A required attribute (`id`, `source`, `type`, `specversion`) is absent or null.
    #[error("{}missing required attribute {}", at(.index), quote(.name))]
    MissingAttribute {
        /// Position in the batch.
        index: Option<usize>,
        /// Attribute name, as in the JSON format (`ce-<name>` in binary mode).
        name: String,
    },
    /// An attribute, extension or `data_base64` is present but malformed.
    #[error("{}invalid attribute {}: {reason}", at(.index), quote(.name))]
    InvalidAttribute {
        /// Position in the batch.
        index: Option<usize>,
        /// Attribute name, as in the JSON format (`ce-<name>` in binary mode).
        name: String,
        /// Which rule it breaks, with the offending value where that is short and safe to show.
        reason: String,
    },
    /// An event has both `data` and `data_base64`.
    #[error("{}event has both \"data\" and \"data_base64\"", at(.index))]
    AmbiguousData {
        /// Position in the batch.
        index: Option<usize>,
    },
    /// The host's clock cannot be expressed as an RFC 3339 time or UUIDv7 (before 1970 or after
    /// 9999). The server's fault, not the client's.
    #[error("host clock is unusable for raw events: {reason}")]
    HostClock {
        /// What was wrong with it.
        reason: String,
    },
}

impl DecodeError {
    /// The JSON pointer of the offending member of the request body (`/id`, `/3/routingkey`,
    /// `/2` for a batch element that is not an object), for a 400 response.
    ///
    /// Binary-mode attributes use the same pointer as the JSON format would (`/time` for
    /// `ce-time`). `None` when the problem is not one member: the path subject, the content type,
    /// the whole body or the host clock.
    pub fn field(&self) -> Option<String> {
        match self {
            DecodeError::NotAnObject { index } => index.map(|i| format!("/{i}")),
            DecodeError::UnsupportedSpecVersion { index, .. } => Some(pointer(*index, "specversion")),
            DecodeError::MissingAttribute { index, name } | DecodeError::InvalidAttribute { index, name, .. } => {
                Some(pointer(*index, name))
            }
            DecodeError::AmbiguousData { index } => Some(pointer(*index, "data_base64")),
            DecodeError::InvalidSubject { .. }
            | DecodeError::UnsupportedFormat { .. }
            | DecodeError::NotJson { .. }
            | DecodeError::NotAnArray
            | DecodeError::EmptyBatch
            | DecodeError::HostClock { .. } => None,
        }
    }
}

/// Decodes one `POST /v1/events/{subject}` request into the events it carries, in order.
///
/// `subject` is the routing subject from the path and becomes every event's [`Event::subject`];
/// `content_type` is the `Content-Type` header; `headers` are all request headers with lower-case
/// names (only `ce-*` ones are read); `now` stamps raw events. The mode is chosen as the HTTP
/// binding says: a CloudEvents media type means structured or batched, whatever the headers; else
/// a `ce-specversion` header means binary; else a request with no `ce-*` header is raw, and one with
/// `ce-*` headers but no `ce-specversion` is a binary event missing `specversion`.
///
/// Either every event of the request is valid and returned, or the first problem found is.
pub fn decode(
    subject: &str,
    content_type: Option<&str>,
    headers: &[(String, String)],
    body: Bytes,
    now: SystemTime,
) -> Result<Vec<Event>, DecodeError> {
    decode_from(RAW_SOURCE, subject, content_type, headers, body, now)
}

/// [`decode`] for another transport: raw events get `raw_source` as their `source`.
pub fn decode_from(
    raw_source: &str,
    subject: &str,
    content_type: Option<&str>,
    headers: &[(String, String)],
    body: Bytes,
    now: SystemTime,
) -> Result<Vec<Event>, DecodeError> {
    validate_subject(subject)?;
    match mode(content_type, headers)? {
        Mode::Structured => Ok(vec![decode_structured(subject, &body)?]),
        Mode::Batch => decode_batch(subject, &body),
        Mode::Binary => Ok(vec![decode_binary(subject, content_type, headers, body)?]),
        Mode::Raw => Ok(vec![decode_raw(raw_source, subject.to_owned(), content_type, body, now)?]),
    }
}

/// The HTTP content modes, plus the host's raw mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Structured,
    Batch,
    Binary,
    Raw,
}

fn mode(content_type: Option<&str>, headers: &[(String, String)]) -> Result<Mode, DecodeError> {
    if let Some(media_type) = content_type.map(media_type) {
        if media_type == STRUCTURED_MEDIA_TYPE {
            return Ok(Mode::Structured);
        }
        if media_type == BATCH_MEDIA_TYPE {
            return Ok(Mode::Batch);
        }
        if media_type == "application/cloudevents"
            || media_type.starts_with("application/cloudevents+")
            || media_type.starts_with("application/cloudevents-batch")
        {
            return Err(DecodeError::UnsupportedFormat { media_type });
        }
    }
    let mut any_attribute_header = false;
    for (name, _) in headers {
        if let Some(attribute) = attribute_header(name) {
            if attribute.eq_ignore_ascii_case("specversion") {
                return Ok(Mode::Binary);
            }
            any_attribute_header = true;
        }
    }
    if any_attribute_header {
        // A client that sends `ce-*` headers meant binary mode; taking its body as raw would
        // silently drop its attributes (its routing key among them).
        return Err(DecodeError::MissingAttribute { index: None, name: "specversion".into() });
    }
    Ok(Mode::Raw)
}

/// A content type's media type: lower-cased, without parameters or surrounding whitespace.
fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The attribute name of a binary-mode header (`ce-id` → `id`), if it is one.
fn attribute_header(name: &str) -> Option<&str> {
    let prefix = name.get(..HEADER_PREFIX.len())?;
    prefix.eq_ignore_ascii_case(HEADER_PREFIX).then(|| &name[HEADER_PREFIX.len()..])
}

// Both JSON modes parse the body once on the happy path; only when that fails is it parsed again
// to tell "not JSON" from "JSON of the wrong shape".

fn decode_structured(subject: &str, body: &Bytes) -> Result<Event, DecodeError> {
    match serde_json::from_slice::<RawObject>(body) {
        Ok(RawObject(members)) => decode_object(subject, members, None, body),
        Err(err) => Err(match serde_json::from_slice::<&RawValue>(body) {
            Ok(_) => DecodeError::NotAnObject { index: None },
            Err(_) => not_json(err),
        }),
    }
}

fn decode_batch(subject: &str, body: &Bytes) -> Result<Vec<Event>, DecodeError> {
    let objects: Vec<RawObject> = match serde_json::from_slice(body) {
        Ok(objects) => objects,
        Err(err) => return Err(batch_shape_error(body, err)),
    };
    if objects.is_empty() {
        return Err(DecodeError::EmptyBatch);
    }
    objects
        .into_iter()
        .enumerate()
        .map(|(i, RawObject(members))| decode_object(subject, members, Some(i), body))
        .collect()
}

/// Why a batch body that did not parse as an array of objects failed.
fn batch_shape_error(body: &[u8], err: serde_json::Error) -> DecodeError {
    if let Ok(elements) = serde_json::from_slice::<Vec<&RawValue>>(body) {
        if let Some(index) = elements.iter().position(|element| !element.get().starts_with('{')) {
            return DecodeError::NotAnObject { index: Some(index) };
        }
    } else if serde_json::from_slice::<&RawValue>(body).is_ok() {
        return DecodeError::NotAnArray;
    }
    not_json(err)
}

fn not_json(err: serde_json::Error) -> DecodeError {
    DecodeError::NotJson { reason: err.to_string() }
}

/// The members of one JSON object, in order, each value left as unparsed JSON text.
struct RawObject<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a json object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(32));
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(RawObject(members))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The members of an event object that are not extensions, each at most once.
#[derive(Default)]
struct KnownMembers<'a> {
    specversion: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    source: Option<&'a RawValue>,
    ty: Option<&'a RawValue>,
    subject: Option<&'a RawValue>,
    time: Option<&'a RawValue>,
    datacontenttype: Option<&'a RawValue>,
    dataschema: Option<&'a RawValue>,
    data: Option<&'a RawValue>,
    data_base64: Option<&'a RawValue>,
}

impl<'a> KnownMembers<'a> {
    fn slot(&mut self, name: &str) -> Option<&mut Option<&'a RawValue>> {
        Some(match name {
            "specversion" => &mut self.specversion,
            "id" => &mut self.id,
            "source" => &mut self.source,
            "type" => &mut self.ty,
            "subject" => &mut self.subject,
            "time" => &mut self.time,
            "datacontenttype" => &mut self.datacontenttype,
            "dataschema" => &mut self.dataschema,
            "data" => &mut self.data,
            "data_base64" => &mut self.data_base64,
            _ => return None,
        })
    }
}

/// One event's attributes as strings, before the rules shared by every mode are applied.
#[derive(Default)]
struct Attributes {
    specversion: Option<String>,
    id: Option<String>,
    source: Option<String>,
    ty: Option<String>,
    subject: Option<String>,
    time: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    extensions: Vec<(String, String)>,
}

/// Decodes the members of one JSON event object; `body` is the request buffer they were parsed
/// from, so `data` can share it.
fn decode_object(
    subject: &str,
    members: Vec<(String, &RawValue)>,
    index: Option<usize>,
    body: &Bytes,
) -> Result<Event, DecodeError> {
    let mut known = KnownMembers::default();
    let mut raw_extensions = Vec::new();
    let mut extension_names = HashSet::new();
    for (name, value) in members {
        let first = match known.slot(&name) {
            Some(slot) => slot.replace(value).is_none(),
            None => {
                let first = extension_names.insert(name.clone());
                if first {
                    raw_extensions.push((name.clone(), value));
                }
                first
            }
        };
        if !first {
            return Err(invalid(index, &name, "member appears more than once".into()));
        }
    }

    // The version decides how the rest is read, so it is checked first.
    let specversion = json_string(index, "specversion", known.specversion)?;
    check_specversion(index, specversion.as_deref())?;
    let mut attributes = Attributes {
        specversion,
        id: json_string(index, "id", known.id)?,
        source: json_string(index, "source", known.source)?,
        ty: json_string(index, "type", known.ty)?,
        subject: json_string(index, "subject", known.subject)?,
        time: json_string(index, "time", known.time)?,
        datacontenttype: json_string(index, "datacontenttype", known.datacontenttype)?,
        dataschema: json_string(index, "dataschema", known.dataschema)?,
        extensions: Vec::with_capacity(raw_extensions.len()),
    };
    for (name, value) in raw_extensions {
        validate_extension_name(index, &name)?;
        if let Some(value) = extension_value(index, &name, value)? {
            attributes.extensions.push((name, value));
        }
    }

    let data_base64 = known.data_base64.filter(|v| !is_null(v));
    let data = match (known.data, data_base64) {
        (Some(_), Some(_)) => return Err(DecodeError::AmbiguousData { index }),
        (None, Some(encoded)) => {
            let Some(encoded) = json_string(index, "data_base64", Some(encoded))? else {
                return Err(invalid(index, "data_base64", "must be a string".into()));
            };
            Bytes::from(
                BASE64.decode(encoded.as_bytes()).map_err(|err| invalid(index, "data_base64", base64_reason(err)))?,
            )
        }
        (Some(data), None) => {
            let json = attributes.datacontenttype.as_deref().is_none_or(is_json_media_type);
            if json {
                attributes.datacontenttype.get_or_insert_with(|| JSON_MEDIA_TYPE.into());
                share(body, data.get().as_bytes())
            } else if data.get().starts_with('"') {
                // Non-JSON data travels as a JSON string of its text (JSON format, 3.1.1).
                let text: String = serde_json::from_str(data.get())
                    .map_err(|err| invalid(index, "data", format!("bad json string: {err}")))?;
                Bytes::from(text)
            } else {
                share(body, data.get().as_bytes())
            }
        }
        (None, None) => Bytes::new(),
    };

    let (context, extensions) = build_context(index, attributes)?;
    Ok(Event { subject: subject.to_owned(), context, extensions, data, nats: None, completion: None })
}

fn is_null(value: &RawValue) -> bool {
    value.get() == "null"
}

/// A JSON member that must be a string; `null` counts as absent (JSON format, 2.2).
fn json_string(index: Option<usize>, name: &str, value: Option<&RawValue>) -> Result<Option<String>, DecodeError> {
    let Some(value) = value.filter(|v| !is_null(v)) else {
        return Ok(None);
    };
    if !value.get().starts_with('"') {
        return Err(invalid(index, name, format!("must be a string, found {}", json_kind(value))));
    }
    serde_json::from_str(value.get()).map(Some).map_err(|err| invalid(index, name, format!("bad json string: {err}")))
}

/// The JSON type of a value, named for messages.
fn json_kind(value: &RawValue) -> &'static str {
    match value.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// An extension value as a string. The CloudEvents type system allows strings, booleans and
/// integers (whole numbers in the 32-bit range); `null` means absent.
fn extension_value(index: Option<usize>, name: &str, value: &RawValue) -> Result<Option<String>, DecodeError> {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'"') => json_string(index, name, Some(value)),
        Some(b'n') => Ok(None),
        Some(b't' | b'f') => Ok(Some(text.to_owned())),
        Some(b'{' | b'[') => {
            Err(invalid(index, name, format!("must be a string, number or boolean, found {}", json_kind(value))))
        }
        _ => match text.parse::<i32>() {
            Ok(number) => Ok(Some(number.to_string())),
            Err(_) => Err(invalid(
                index,
                name,
                format!("number {} is not a cloudevents integer (whole, 32-bit); send it as a string", quote(text)),
            )),
        },
    }
}

fn base64_reason(err: base64::DecodeError) -> String {
    match err {
        base64::DecodeError::InvalidByte(offset, byte) => {
            format!("not base64: invalid byte {byte:#04x} at offset {offset}")
        }
        base64::DecodeError::InvalidLength(length) => format!("not base64: {length} symbols is not a valid length"),
        base64::DecodeError::InvalidLastSymbol(offset, byte) => {
            format!("not base64: invalid last symbol {byte:#04x} at offset {offset}")
        }
        base64::DecodeError::InvalidPadding => "not base64: invalid padding".into(),
    }
}

/// The binary-mode event: attributes from `ce-*` headers, data from the body.
fn decode_binary(
    subject: &str,
    content_type: Option<&str>,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<Event, DecodeError> {
    let mut attributes = Attributes::default();
    let mut extension_names = HashSet::new();
    for (header, raw_value) in headers {
        let Some(name) = attribute_header(header) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        let value = header_value(raw_value).map_err(|reason| invalid(None, &name, reason))?;
        let slot = match name.as_str() {
            "specversion" => &mut attributes.specversion,
            "id" => &mut attributes.id,
            "source" => &mut attributes.source,
            "type" => &mut attributes.ty,
            "subject" => &mut attributes.subject,
            "time" => &mut attributes.time,
            "dataschema" => &mut attributes.dataschema,
            // `data` is the body in binary mode; as an extension it would shadow the payload.
            "data" => return Err(invalid(None, &name, "is the body in binary mode, not a header".into())),
            "datacontenttype" => {
                return Err(invalid(
                    None,
                    &name,
                    "must be sent as content-type in binary mode, not as ce-datacontenttype".into(),
                ));
            }
            _ => {
                validate_extension_name(None, &name)?;
                if !extension_names.insert(name.clone()) {
                    return Err(invalid(None, &name, format!("header {HEADER_PREFIX}{name} appears more than once")));
                }
                attributes.extensions.push((name, value));
                continue;
            }
        };
        if slot.replace(value).is_some() {
            return Err(invalid(None, &name, format!("header {HEADER_PREFIX}{name} appears more than once")));
        }
    }
    check_specversion(None, attributes.specversion.as_deref())?;
    attributes.datacontenttype = content_type.map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    let (context, extensions) = build_context(None, attributes)?;
    Ok(Event { subject: subject.to_owned(), context, extensions, data: body, nats: None, completion: None })
}

/// A binary-mode header value as the attribute's string: surrounding whitespace dropped,
/// double-quoted strings unescaped (RFC 7230, 3.2.6), then one round of percent-decoding whose
/// result must be UTF-8 (HTTP binding, 3.1.3.2).
fn header_value(value: &str) -> Result<String, String> {
    let value = value.trim_matches([' ', '\t']);
    if !value.contains(['"', '%']) {
        return Ok(value.to_owned());
    }
    let mut unquoted = String::with_capacity(value.len());
    let mut chars = value.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => match chars.next() {
                Some(escaped) => unquoted.push(escaped),
                None => return Err("header value ends inside a backslash escape".into()),
            },
            _ => unquoted.push(c),
        }
    }
    if quoted {
        return Err("header value has an unterminated double-quoted string".into());
    }
    let bytes = unquoted.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte != b'%' {
            decoded.push(byte);
            i += 1;
            continue;
        }
        let high = bytes.get(i + 1).and_then(|b| hex_digit(*b));
        let low = bytes.get(i + 2).and_then(|b| hex_digit(*b));
        let (Some(high), Some(low)) = (high, low) else {
            let end = bytes.len().min(i + 3);
            let escape = String::from_utf8_lossy(&bytes[i..end]);
            return Err(format!("invalid percent-encoding {escape:?} at byte {i}"));
        };
        decoded.push((high << 4) | low);
        i += 3;
    }
    String::from_utf8(decoded).map_err(|_| "percent-decoded header value is not valid utf-8".into())
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The raw-mode event: the body as data, every required attribute filled by the host.
/// A raw event on `subject` (checked) with `body` as its data and no content type: how a
/// transport without attributes (a NATS message without headers) carries one, at the least cost.
pub fn raw(source: &str, subject: String, body: Bytes, now: SystemTime) -> Result<Event, DecodeError> {
    validate_subject(&subject)?;
    decode_raw(source, subject, None, body, now)
}

/// A raw event whose data has the media type `content_type`, for sources whose plain messages are
/// all of one kind. JSON data (`*/json`, `*/*+json`) must parse, or the message is not an event.
pub fn raw_of_type(
    source: &str,
    subject: String,
    content_type: &str,
    body: Bytes,
    now: SystemTime,
) -> Result<Event, DecodeError> {
    validate_subject(&subject)?;
    if is_json_media_type(content_type) {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map_err(|err| DecodeError::NotJson { reason: err.to_string() })?;
    }
    decode_raw(source, subject, Some(content_type), body, now)
}

fn decode_raw(
    source: &str,
    subject: String,
    content_type: Option<&str>,
    body: Bytes,
    now: SystemTime,
) -> Result<Event, DecodeError> {
    // The host makes every attribute but the content type, valid by construction: only that one
    // is checked. This is the gateway's hot path for plain NATS messages.
    let since_epoch = now
        .duration_since(UNIX_EPOCH)
        .map_err(|err| DecodeError::HostClock { reason: format!("{:?} before 1970", err.duration()) })?;
    let datacontenttype = content_type.map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    if let Some(content_type) = &datacontenttype {
        check_text(None, "datacontenttype", content_type)?;
    }
    let context = Context {
        id: raw_event_id(since_epoch).hyphenated().to_string(),
        source: source.to_owned(),
        ty: RAW_TYPE.to_owned(),
        specversion: SPEC_VERSION.to_owned(),
        subject: None,
        time: Some(rfc3339(since_epoch)?),
        datacontenttype,
        dataschema: None,
    };
    Ok(Event { subject, context, extensions: Vec::new(), data: body, nats: None, completion: None })
}

/// A UUIDv7 for a raw event: the millisecond, then 74 bits that start random each millisecond
/// and count up within it, per thread (`fastrand`, seeded once per thread), so one thread's ids
/// sort in the order they were made and no event costs a system call. Ids are not secrets.
fn raw_event_id(since_epoch: Duration) -> Uuid {
    const COUNTER_BITS: u32 = 74;
    thread_local! {
        static LAST: std::cell::Cell<(u64, u128)> = const { std::cell::Cell::new((0, 0)) };
    }
    let millis = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX) & ((1 << 48) - 1);
    let (last_millis, last_counter) = LAST.get();
    let (millis, counter) = if millis <= last_millis && last_counter + 1 < 1 << COUNTER_BITS {
        (last_millis, last_counter + 1)
    } else {
        // A fresh start leaves half the range for counting up.
        (millis.max(last_millis + 1), fastrand::u128(..1 << (COUNTER_BITS - 1)))
    };
    LAST.set((millis, counter));
    let (rand_a, rand_b) = (counter >> 62, counter & ((1 << 62) - 1));
    Uuid::from_u128((u128::from(millis) << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)
}

/// `since_epoch` as an RFC 3339 UTC time, to the nanosecond. The date and time to the second are
/// formatted once per second per thread.
fn rfc3339(since_epoch: Duration) -> Result<String, DecodeError> {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, prefix)| {
        if *cached != seconds {
            let at = i64::try_from(seconds)
                .ok()
                .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
                .ok_or_else(|| DecodeError::HostClock {
                    reason: format!("{since_epoch:?} after 1970 is out of range"),
                })?;
            let formatted = at.format(&Rfc3339).map_err(|err| DecodeError::HostClock { reason: err.to_string() })?;
            // `...:SS` and the `Z` that ends a whole-second time.
            *prefix = formatted.trim_end_matches('Z').to_owned();
            *cached = seconds;
        }
        let mut time = String::with_capacity(prefix.len() + 11);
        time.push_str(prefix);
        let nanos = since_epoch.subsec_nanos();
        if nanos > 0 {
            // The fraction without trailing zeros, as `time` writes it.
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(nanos);
            time.push('.');
            time.extend(std::iter::repeat_n('0', 9 - digits.len()));
            time.push_str(digits.trim_end_matches('0'));
        }
        time.push('Z');
        Ok(time)
    })
}

fn check_specversion(index: Option<usize>, specversion: Option<&str>) -> Result<(), DecodeError> {
    match specversion {
        None => Err(missing(index, "specversion")),
        Some(SPEC_VERSION) => Ok(()),
        Some(found) => Err(DecodeError::UnsupportedSpecVersion { index, found: found.to_owned() }),
    }
}

/// The rules every mode shares: required attributes present and non-empty, optional ones
/// non-empty when present, no control characters, `time` in RFC 3339, a valid routing key.
fn build_context(
    index: Option<usize>,
    attributes: Attributes,
) -> Result<(Context, Vec<(String, String)>), DecodeError> {
    let Attributes { specversion, id, source, ty, subject, time, datacontenttype, dataschema, extensions } = attributes;
    check_specversion(index, specversion.as_deref())?;
    let required = |name: &str, value: Option<String>| -> Result<String, DecodeError> {
        let value = value.ok_or_else(|| missing(index, name))?;
        check_text(index, name, &value)?;
        Ok(value)
    };
    let optional = |name: &str, value: Option<String>| -> Result<Option<String>, DecodeError> {
        if let Some(value) = &value {
            check_text(index, name, value)?;
        }
        Ok(value)
    };
    let context = Context {
        id: required("id", id)?,
        source: required("source", source)?,
        ty: required("type", ty)?,
        specversion: SPEC_VERSION.to_owned(),
        subject: optional("subject", subject)?,
        time: optional("time", time)?,
        datacontenttype: optional("datacontenttype", datacontenttype)?,
        dataschema: optional("dataschema", dataschema)?,
    };
    if let Some(time) = &context.time
        && OffsetDateTime::parse(time, &Rfc3339).is_err()
    {
        return Err(invalid(index, "time", format!("{} is not an rfc 3339 timestamp", quote(time))));
    }
    for (name, value) in &extensions {
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(invalid(index, name, format!("contains control character {c:?}")));
        }
        if name == ROUTING_KEY_EXTENSION {
            validate_routing_key(value).map_err(|reason| invalid(index, name, reason))?;
        }
    }
    Ok((context, extensions))
}

/// A context attribute string: non-empty, and free of the control characters the CloudEvents
/// type system forbids (U+0000–U+001F, U+007F–U+009F), which could not travel in a header.
fn check_text(index: Option<usize>, name: &str, value: &str) -> Result<(), DecodeError> {
    if value.is_empty() {
        return Err(invalid(index, name, "must not be empty".into()));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(index, name, format!("contains control character {c:?}")));
    }
    Ok(())
}

/// Extension names: lower-case ASCII letters and digits, 1 to 20 of them.
fn validate_extension_name(index: Option<usize>, name: &str) -> Result<(), DecodeError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_EXTENSION_NAME_CHARS
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(invalid(
            index,
            name,
            format!("extension names must be 1 to {MAX_EXTENSION_NAME_CHARS} characters of a-z and 0-9"),
        ))
    }
}

/// The routing subject: a literal NATS subject, since publishing needs one.
fn validate_subject(subject: &str) -> Result<(), DecodeError> {
    let reason = if subject.is_empty() {
        Some("must not be empty".to_owned())
    } else if subject.len() > MAX_SUBJECT_BYTES {
        Some(format!("{} bytes, at most {MAX_SUBJECT_BYTES} allowed", subject.len()))
    } else if let Some(c) = subject.chars().find(|c| c.is_whitespace() || c.is_control()) {
        Some(format!("contains whitespace or control character {c:?}"))
    } else if subject.split('.').any(str::is_empty) {
        Some("empty token".to_owned())
    } else if let Some(c) = subject.chars().find(|c| matches!(c, '/' | '\\')) {
        // The subject becomes the topic directory of file sinks (seed 002): one path segment only.
        Some(format!("contains {c:?}; subjects are dot-separated, not paths"))
    } else {
        subject
            .split('.')
            .find(|token| *token == "*" || *token == ">")
            .map(|token| format!("wildcard token {token:?}: publishing needs a literal subject"))
    };
    match reason {
        Some(reason) => Err(DecodeError::InvalidSubject { subject: subject.to_owned(), reason }),
        None => Ok(()),
    }
}

/// The routing key may become a directory name in a sink, so it must be one safe path segment.
fn validate_routing_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        Err("must not be empty".into())
    } else if key.len() > MAX_ROUTING_KEY_BYTES {
        Err(format!("{} bytes, at most {MAX_ROUTING_KEY_BYTES} allowed", key.len()))
    } else if let Some(c) = key.chars().find(|c| matches!(c, '/' | '\\' | '\0')) {
        Err(format!("{} contains {c:?}", quote(key)))
    } else if key == "." || key == ".." {
        Err(format!("{} is not allowed", quote(key)))
    } else {
        Ok(())
    }
}

fn missing(index: Option<usize>, name: &str) -> DecodeError {
    DecodeError::MissingAttribute { index, name: name.to_owned() }
}

fn invalid(index: Option<usize>, name: &str, reason: String) -> DecodeError {
    DecodeError::InvalidAttribute { index, name: name.to_owned(), reason }
}

/// `part` as a [`Bytes`] sharing `body`'s buffer when it lies inside it, else a copy.
fn share(body: &Bytes, part: &[u8]) -> Bytes {
    let start = body.as_ptr() as usize;
    let part_start = part.as_ptr() as usize;
    if part_start >= start && part_start + part.len() <= start + body.len() {
        body.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// A JSON pointer (RFC 6901) to member `name` of the event at `index`.
fn pointer(index: Option<usize>, name: &str) -> String {
    let name = name.replace('~', "~0").replace('/', "~1");
    match index {
        Some(i) => format!("/{i}/{name}"),
        None => format!("/{name}"),
    }
}

/// The message prefix locating an event in a batch.
fn at(index: &Option<usize>) -> String {
    index.map(|i| format!("event {i}: ")).unwrap_or_default()
}

fn not_an_object_message(index: &Option<usize>) -> String {
    match index {
        Some(i) => format!("event {i}: not a json object"),
        None => "body is not a json object".into(),
    }
}

/// `value` quoted and escaped for a message, cut short when long.
fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    use std::time::Duration;

    const SUBJECT: &str = "orders.created";

    fn now() -> SystemTime {
        // 2024-05-06T07:08:09.5Z
        UNIX_EPOCH + Duration::from_millis(1_714_979_289_500)
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn structured(body: &str) -> Result<Vec<Event>, DecodeError> {
        decode(SUBJECT, Some(STRUCTURED_MEDIA_TYPE), &[], Bytes::from(body.to_owned()), now())
    }

    fn batch(body: &str) -> Result<Vec<Event>, DecodeError> {
        decode(SUBJECT, Some(BATCH_MEDIA_TYPE), &[], Bytes::from(body.to_owned()), now())
    }

    fn binary(pairs: &[(&str, &str)], body: &'static [u8]) -> Result<Vec<Event>, DecodeError> {
        decode(SUBJECT, Some("text/plain"), &headers(pairs), Bytes::from_static(body), now())
    }

    fn one(result: Result<Vec<Event>, DecodeError>) -> Event {
        let mut events = result.expect("decodes");
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    const MINIMAL: &str = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#;

    #[test]
    fn structured_full_event() {
        let body = r#"{
            "specversion": "1.0", "id": "A234-1234-1234", "source": "/mycontext", "type": "com.example.someevent",
            "subject": "larger-context", "time": "2018-04-05T17:31:00Z", "datacontenttype": "application/json",
            "dataschema": "https://example.com/schema.json", "comexampleextension1": "value",
            "comexampleothervalue": 5, "flag": true, "routingkey": "eu-west", "unsetextension": null,
            "data": {"appinfoA" : "abc", "appinfoB": 123}
        }"#;
        let event =
            one(decode(SUBJECT, Some("Application/CloudEvents+JSON; charset=utf-8"), &[], Bytes::from(body), now()));
        assert_eq!(event.subject, SUBJECT);
        let c = &event.context;
        assert_eq!(
            (c.id.as_str(), c.source.as_str(), c.ty.as_str(), c.specversion.as_str()),
            ("A234-1234-1234", "/mycontext", "com.example.someevent", "1.0")
        );
        assert_eq!(c.subject.as_deref(), Some("larger-context"));
        assert_eq!(c.time.as_deref(), Some("2018-04-05T17:31:00Z"));
        assert_eq!(c.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(c.dataschema.as_deref(), Some("https://example.com/schema.json"));
        assert_eq!(
            event.extensions,
            headers(&[
                ("comexampleextension1", "value"),
                ("comexampleothervalue", "5"),
                ("flag", "true"),
                ("routingkey", "eu-west")
            ])
        );
        assert_eq!(event.extension(ROUTING_KEY_EXTENSION), Some("eu-west"));
        // The exact JSON text of the member, whitespace and key order included.
        assert_eq!(&event.data[..], br#"{"appinfoA" : "abc", "appinfoB": 123}"#);
    }

    #[test]
    fn structured_minimal_event() {
        let event = one(structured(MINIMAL));
        let expected = Event {
            subject: SUBJECT.into(),
            context: Context {
                id: "1".into(),
                source: "/s".into(),
                ty: "t".into(),
                specversion: "1.0".into(),
                subject: None,
                time: None,
                datacontenttype: None,
                dataschema: None,
            },
            extensions: vec![],
            data: Bytes::new(),
            nats: None,
            completion: None,
        };
        assert_eq!(event, expected);
    }

    #[test]
    fn structured_wins_over_ce_headers() {
        let event = one(decode(
            SUBJECT,
            Some(STRUCTURED_MEDIA_TYPE),
            &headers(&[("ce-specversion", "1.0"), ("ce-id", "from-header")]),
            Bytes::from_static(MINIMAL.as_bytes()),
            now(),
        ));
        assert_eq!(event.context.id, "1");
    }

    #[test]
    fn null_attributes_are_absent_but_null_data_is_a_payload() {
        let event = one(structured(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":null,"time":null,
                "datacontenttype":null,"dataschema":null,"data_base64":null,"data":null}"#,
        ));
        assert_eq!(event.context.subject, None);
        assert_eq!(event.context.time, None);
        assert_eq!(event.context.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(&event.data[..], b"null");
    }

    #[test]
    fn json_data_keeps_its_text_and_non_json_data_is_its_string() {
        let json_string = one(structured(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"hi"}"#));
        assert_eq!(&json_string.data[..], br#""hi""#);
        let plus_json = one(structured(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/cloudevents+json","data":"hi"}"#,
        ));
        assert_eq!(&plus_json.data[..], br#""hi""#);
        let xml = one(structured(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/xml",
                "data":"<much wow=\"xml\"/>"}"#,
        ));
        assert_eq!(&xml.data[..], br#"<much wow="xml"/>"#);
        assert_eq!(xml.context.datacontenttype.as_deref(), Some("application/xml"));
        let number_as_text = one(structured(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":42}"#,
        ));
        assert_eq!(&number_as_text.data[..], b"42");
    }

    #[test]
    fn structured_data_shares_the_request_buffer() {
        let body = Bytes::from(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":[1,2,3]}"#);
        let event = one(decode(SUBJECT, Some(STRUCTURED_MEDIA_TYPE), &[], body.clone(), now()));
        let (start, end) = (body.as_ptr() as usize, body.as_ptr() as usize + body.len());
        let data = event.data.as_ptr() as usize;
        assert!(data >= start && data + event.data.len() <= end);
        assert_eq!(&event.data[..], b"[1,2,3]");
    }

    #[test]
    fn extension_values_follow_the_type_system() {
        let event = one(structured(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","a":-2147483648,"b":2147483647,"c":false,"d":"","e":-0}"#,
        ));
        assert_eq!(
            event.extensions,
            headers(&[("a", "-2147483648"), ("b", "2147483647"), ("c", "false"), ("d", ""), ("e", "0")])
        );
        for bad in ["1.5", "1e3", "2147483648", "[1]", r#"{"x":1}"#] {
            let body = format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","num":{bad}}}"#);
            let err = structured(&body).unwrap_err();
            assert_eq!(err.field().as_deref(), Some("/num"), "{bad}: {err}");
        }
    }

    #[test]
    fn batch_full_and_minimal_events() {
        let body = format!(
            r#"[{MINIMAL}, {{"specversion":"1.0","id":"2","source":"/s","type":"t","time":"2018-04-05T17:31:00.123+02:00",
                "datacontenttype":"application/vnd.apache.thrift.binary","data_base64":"AAEC","routingkey":"k"}}]"#
        );
        let events =
            decode(SUBJECT, Some("application/cloudevents-batch+json; charset=UTF-8"), &[], Bytes::from(body), now())
                .expect("decodes");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].context.id, "1");
        assert!(events[0].data.is_empty());
        assert_eq!(events[1].context.id, "2");
        assert_eq!(&events[1].data[..], &[0, 1, 2]);
        assert_eq!(events[1].context.datacontenttype.as_deref(), Some("application/vnd.apache.thrift.binary"));
        assert_eq!(events[1].extension("routingkey"), Some("k"));
        assert!(events.iter().all(|e| e.subject == SUBJECT));
    }

    #[test]
    fn batch_of_100() {
        let elements: Vec<String> = (0..100)
            .map(|i| {
                format!(r#"{{"specversion":"1.0","id":"{i}","source":"/s","type":"t","seq":{i},"data":{{"n":{i}}}}}"#)
            })
            .collect();
        let events = batch(&format!("[{}]", elements.join(","))).expect("decodes");
        assert_eq!(events.len(), 100);
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.subject, SUBJECT);
            assert_eq!(event.context.id, i.to_string());
            assert_eq!(event.extension("seq"), Some(i.to_string().as_str()));
            assert_eq!(event.data, Bytes::from(format!(r#"{{"n":{i}}}"#)));
        }
        // An error in the last element names it.
        let mut bad = elements.clone();
        bad[99] = r#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#.into();
        let err = batch(&format!("[{}]", bad.join(","))).unwrap_err();
        assert_eq!(err.field().as_deref(), Some("/99/id"));
        assert!(err.to_string().starts_with("event 99: "), "{err}");
    }

    #[test]
    fn binary_full_event() {
        let event = one(decode(
            SUBJECT,
            Some("application/json; charset=utf-8"),
            &headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "1234-1234-1234"),
                ("ce-source", "/mycontext/subcontext"),
                ("ce-type", "com.example.someevent"),
                ("ce-subject", "larger-context"),
                ("ce-time", "2018-04-05T03:56:24Z"),
                ("ce-dataschema", "https://example.com/schema.json"),
                ("ce-comexampleextension1", "value"),
                ("ce-routingkey", "tenant-7"),
                ("host", "example.com"),
                ("content-length", "14"),
            ]),
            Bytes::from_static(br#"{"appinfoA":1}"#),
            now(),
        ));
        let c = &event.context;
        assert_eq!(
            (c.id.as_str(), c.source.as_str(), c.ty.as_str(), c.specversion.as_str()),
            ("1234-1234-1234", "/mycontext/subcontext", "com.example.someevent", "1.0")
        );
        assert_eq!(c.subject.as_deref(), Some("larger-context"));
        assert_eq!(c.time.as_deref(), Some("2018-04-05T03:56:24Z"));
        assert_eq!(c.dataschema.as_deref(), Some("https://example.com/schema.json"));
        assert_eq!(c.datacontenttype.as_deref(), Some("application/json; charset=utf-8"));
        assert_eq!(event.extensions, headers(&[("comexampleextension1", "value"), ("routingkey", "tenant-7")]));
        assert_eq!(&event.data[..], br#"{"appinfoA":1}"#);
        assert_eq!(event.subject, SUBJECT);
    }

    #[test]
    fn binary_minimal_event() {
        let event = one(decode(
            SUBJECT,
            None,
            &headers(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")]),
            Bytes::new(),
            now(),
        ));
        assert_eq!(event.context.datacontenttype, None);
        assert_eq!(event.context.time, None);
        assert!(event.extensions.is_empty() && event.data.is_empty());
    }

    #[test]
    fn binary_headers_are_percent_decoded() {
        let base = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")];
        let decoded = |value: &'static str| {
            let mut pairs = base.to_vec();
            pairs.push(("ce-source", value));
            binary(&pairs, b"").map(|mut events| events.remove(0).context.source)
        };
        // The binding's own example, upper- and lower-case hex, and needless encoding.
        assert_eq!(decoded("Euro%20%E2%82%AC%20%F0%9F%98%80").unwrap(), "Euro \u{20ac} \u{1f600}");
        assert_eq!(decoded("Euro%20%e2%82%ac").unwrap(), "Euro \u{20ac}");
        assert_eq!(decoded("%2Fa%2fb").unwrap(), "/a/b");
        assert_eq!(decoded("100%25").unwrap(), "100%");
        // Older senders quote instead; quoted strings are unescaped before percent-decoding.
        assert_eq!(decoded(r#""say \"hi\" now""#).unwrap(), r#"say "hi" now"#);
        assert_eq!(decoded(r#""a%20b""#).unwrap(), "a b");
        assert_eq!(decoded("  padded\t").unwrap(), "padded");
        // Overlong UTF-8 (U+0020 as %C0%A0), broken escapes and quotes, and decoded control characters.
        for bad in ["%C0%A0", "%E2%82", "%zz", "abc%2", "abc%", r#""open"#, r#""tail\"#, "a%00b", "%0A"] {
            let err = decoded(bad).unwrap_err();
            assert!(matches!(&err, DecodeError::InvalidAttribute { name, .. } if name == "source"), "{bad}: {err}");
            assert_eq!(err.field().as_deref(), Some("/source"));
        }
        // Extensions are decoded too.
        let mut pairs = base.to_vec();
        pairs.extend([("ce-source", "/s"), ("ce-note", "caf%C3%A9%20%22ok%22")]);
        assert_eq!(one(binary(&pairs, b"")).extension("note"), Some("café \"ok\""));
    }

    #[test]
    fn raw_full_and_minimal_events() {
        let event = one(decode(
            SUBJECT,
            Some("text/csv; charset=utf-8"),
            &headers(&[("user-agent", "curl")]),
            Bytes::from_static(b"a,b\n1,2\n"),
            now(),
        ));
        let c = &event.context;
        assert_eq!((c.source.as_str(), c.ty.as_str(), c.specversion.as_str()), (RAW_SOURCE, RAW_TYPE, "1.0"));
        assert_eq!(c.time.as_deref(), Some("2024-05-06T07:08:09.5Z"));
        assert_eq!(c.datacontenttype.as_deref(), Some("text/csv; charset=utf-8"));
        assert_eq!(c.subject, None);
        assert_eq!(c.dataschema, None);
        assert!(event.extensions.is_empty());
        assert_eq!(&event.data[..], b"a,b\n1,2\n");
        let id = Uuid::parse_str(&c.id).expect("id is a uuid");
        assert_eq!(id.get_version_num(), 7);

        let minimal = one(decode(SUBJECT, None, &[], Bytes::new(), UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(minimal.context.time.as_deref(), Some("1970-01-01T00:00:01Z"));
        assert_eq!(minimal.context.datacontenttype, None);
        assert!(minimal.data.is_empty());
    }

    #[test]
    fn raw_times_are_what_the_time_crate_writes() {
        for nanos in [0, 1, 500_000_000, 123_456_789, 999_999_999, 1_700_000_000_000_000_001, 1_763_912_049_000_010_000]
        {
            let since_epoch = Duration::from_nanos(nanos);
            let expected =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap().format(&Rfc3339).unwrap();
            assert_eq!(rfc3339(since_epoch).unwrap(), expected);
        }
    }

    #[test]
    fn raw_ids_are_unique_and_increase() {
        let ids: Vec<Uuid> = (0..1000)
            .map(|_| {
                let event = one(decode(SUBJECT, None, &[], Bytes::new(), now()));
                Uuid::parse_str(&event.context.id).expect("id is a uuid")
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn raw_json_body_is_not_structured() {
        let event = one(decode(SUBJECT, Some("application/json"), &[], Bytes::from_static(MINIMAL.as_bytes()), now()));
        assert_eq!(event.context.ty, RAW_TYPE);
        assert_eq!(&event.data[..], MINIMAL.as_bytes());
    }

    #[test]
    fn unicode_everywhere() {
        let subject = "заказы.créés.注文";
        let body = r#"{"specversion":"1.0","id":"ид-1","source":"/quelle/ü","type":"tipo.ñ","subject":"件名 🎉",
            "note":"naïve ☃","data":{"text":"こんにちは","escaped":"\u00e9"}}"#;
        let event = one(decode(subject, Some(STRUCTURED_MEDIA_TYPE), &[], Bytes::from(body), now()));
        assert_eq!(event.subject, subject);
        assert_eq!(event.context.id, "ид-1");
        assert_eq!(event.context.subject.as_deref(), Some("件名 🎉"));
        assert_eq!(event.extension("note"), Some("naïve ☃"));
        assert_eq!(&event.data[..], r#"{"text":"こんにちは","escaped":"\u00e9"}"#.as_bytes());

        // Binary mode: UTF-8 sent percent-encoded.
        let event = one(decode(
            subject,
            None,
            &headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "%D0%B8%D0%B4-1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("ce-routingkey", "%E6%9D%B1%E4%BA%AC"),
            ]),
            Bytes::from("données"),
            now(),
        ));
        assert_eq!(event.context.id, "ид-1");
        assert_eq!(event.extension("routingkey"), Some("東京"));
        assert_eq!(&event.data[..], "données".as_bytes());
        // A 255-byte subject of 2-byte letters plus one byte is fine; one more byte is not.
        let long = format!("{}a", "é".repeat(127));
        assert_eq!(long.len(), 255);
        assert!(decode(&long, None, &[], Bytes::new(), now()).is_ok());
        assert!(decode(&format!("{long}ab"), None, &[], Bytes::new(), now()).is_err());
    }

    #[test]
    fn data_base64_round_trips() {
        let mut rng = XorShift(0x5eed_0001);
        for len in [0usize, 1, 2, 3, 4, 255, 256, 4097] {
            let bytes: Vec<u8> = if len == 256 { (0..=255).collect() } else { rng.bytes(len) };
            for encoded in [STANDARD.encode(&bytes), STANDARD_NO_PAD.encode(&bytes)] {
                let body = format!(
                    r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/octet-stream","data_base64":"{encoded}"}}"#
                );
                let event = one(structured(&body));
                assert_eq!(&event.data[..], &bytes[..], "length {len}");
                assert_eq!(event.context.datacontenttype.as_deref(), Some("application/octet-stream"));
            }
        }
        // Without a datacontenttype, binary data gets none (application/json is only implied for `data`).
        let event = one(structured(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AA=="}"#));
        assert_eq!(event.context.datacontenttype, None);
        assert_eq!(&event.data[..], &[0]);
    }

    /// One request expected to fail, what it must fail with, and the field it must name.
    struct Failing {
        subject: &'static str,
        content_type: Option<&'static str>,
        headers: &'static [(&'static str, &'static str)],
        body: String,
        field: Option<&'static str>,
        check: fn(&DecodeError) -> bool,
    }

    fn json(body: &str) -> Failing {
        Failing {
            subject: SUBJECT,
            content_type: Some(STRUCTURED_MEDIA_TYPE),
            headers: &[],
            body: body.into(),
            field: None,
            check: |_| false,
        }
    }

    fn event_with(extra: &str) -> String {
        format!(r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t",{extra}}}"#)
    }

    impl Failing {
        fn field(mut self, field: &'static str) -> Self {
            self.field = Some(field);
            self
        }
        fn check(mut self, check: fn(&DecodeError) -> bool) -> Self {
            self.check = check;
            self
        }
        fn content_type(mut self, content_type: Option<&'static str>) -> Self {
            self.content_type = content_type;
            self
        }
        fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
            self.headers = headers;
            self
        }
        fn subject(mut self, subject: &'static str) -> Self {
            self.subject = subject;
            self
        }
    }

    const BINARY_BASE: &[(&str, &str)] =
        &[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")];

    #[test]
    fn every_error_names_its_field() {
        use DecodeError as E;
        let cases = vec![
            json(MINIMAL)
                .subject("a..b")
                .check(|e| matches!(e, E::InvalidSubject { reason, .. } if reason == "empty token")),
            json(MINIMAL).content_type(Some("application/cloudevents+xml")).check(
                |e| matches!(e, E::UnsupportedFormat { media_type } if media_type == "application/cloudevents+xml"),
            ),
            json(MINIMAL)
                .content_type(Some("application/cloudevents-batch+avro"))
                .check(|e| matches!(e, E::UnsupportedFormat { .. })),
            json("{\"id\": ").check(|e| matches!(e, E::NotJson { .. })),
            json("{} trailing").check(|e| matches!(e, E::NotJson { .. })),
            json(&format!("[{MINIMAL}")).content_type(Some(BATCH_MEDIA_TYPE)).check(|e| matches!(e, E::NotJson { .. })),
            json(MINIMAL).content_type(Some(BATCH_MEDIA_TYPE)).check(|e| matches!(e, E::NotAnArray)),
            json(" [ ] ").content_type(Some(BATCH_MEDIA_TYPE)).check(|e| matches!(e, E::EmptyBatch)),
            json("[1, 2]").check(|e| matches!(e, E::NotAnObject { index: None })),
            json(&format!("[{MINIMAL}, \"x\"]"))
                .content_type(Some(BATCH_MEDIA_TYPE))
                .field("/1")
                .check(|e| matches!(e, E::NotAnObject { index: Some(1) })),
            json(r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#)
                .field("/specversion")
                .check(|e| matches!(e, E::UnsupportedSpecVersion { index: None, found } if found == "0.3")),
            json(&format!(r#"[{MINIMAL},{MINIMAL},{{"specversion":"2.0"}}]"#))
                .content_type(Some(BATCH_MEDIA_TYPE))
                .field("/2/specversion")
                .check(|e| matches!(e, E::UnsupportedSpecVersion { index: Some(2), .. })),
            json(r#"{"id":"1","source":"/s","type":"t"}"#)
                .field("/specversion")
                .check(|e| matches!(e, E::MissingAttribute { name, .. } if name == "specversion")),
            json(r#"{"specversion":"1.0","id":null,"source":"/s","type":"t"}"#)
                .field("/id")
                .check(|e| matches!(e, E::MissingAttribute { name, .. } if name == "id")),
            json(r#"{"specversion":"1.0","id":"1","type":"t"}"#)
                .field("/source")
                .check(|e| matches!(e, E::MissingAttribute { name, .. } if name == "source")),
            json(r#"{"specversion":"1.0","id":"1","source":"/s"}"#)
                .field("/type")
                .check(|e| matches!(e, E::MissingAttribute { name, .. } if name == "type")),
            json(r#"{"specversion":1.0,"id":"1","source":"/s","type":"t"}"#).field("/specversion").check(
                |e| matches!(e, E::InvalidAttribute { reason, .. } if reason == "must be a string, found a number"),
            ),
            json(r#"{"specversion":"1.0","id":7,"source":"/s","type":"t"}"#)
                .field("/id")
                .check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(r#"{"specversion":"1.0","id":"1","source":"","type":"t"}"#)
                .field("/source")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason == "must not be empty")),
            json(r#"{"specversion":"1.0","id":"1","source":"/s","type":"a\nb"}"#)
                .field("/type")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason.contains("control character"))),
            json(&event_with(r#""subject":"""#)).field("/subject").check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(&event_with(r#""time":"yesterday""#))
                .field("/time")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason.contains("rfc 3339"))),
            json(&event_with(r#""time":"2018-04-05 17:31:00""#))
                .field("/time")
                .check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(&event_with(r#""datacontenttype":["a"]"#))
                .field("/datacontenttype")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason.ends_with("an array"))),
            json(&event_with(r#""dataschema":{}"#))
                .field("/dataschema")
                .check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(&event_with(r#""Upper":"x""#))
                .field("/Upper")
                .check(|e| matches!(e, E::InvalidAttribute { name, .. } if name == "Upper")),
            json(&event_with(r#""a/b~c":"x""#)).field("/a~1b~0c").check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(&event_with(r#""abcdefghijklmnopqrstu":"x""#))
                .field("/abcdefghijklmnopqrstu")
                .check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(&event_with(r#""":"x""#)).field("/").check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(&event_with(r#""ext":{"a":1}"#))
                .field("/ext")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason.contains("found an object"))),
            json(&event_with(r#""ext":"a","ext":"b""#))
                .field("/ext")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason.contains("more than once"))),
            json(&event_with(r#""id":"2""#)).field("/id").check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(&event_with(r#""data_base64":"!!!!""#))
                .field("/data_base64")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason.starts_with("not base64"))),
            json(&event_with(r#""data_base64":12"#))
                .field("/data_base64")
                .check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(&event_with(r#""data":null,"data_base64":"AA==""#))
                .field("/data_base64")
                .check(|e| matches!(e, E::AmbiguousData { index: None })),
            json(&event_with(r#""datacontenttype":"text/plain","data":"\ud800""#))
                .field("/data")
                .check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(&event_with(r#""routingkey":"..""#))
                .field("/routingkey")
                .check(|e| matches!(e, E::InvalidAttribute { name, .. } if name == "routingkey")),
            json(MINIMAL)
                .content_type(Some("text/plain"))
                .headers(&[("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")])
                .field("/specversion")
                .check(|e| matches!(e, E::MissingAttribute { index: None, name } if name == "specversion")),
            json(MINIMAL)
                .content_type(Some("text/plain"))
                .headers(&[("ce-specversion", "1.0"), ("ce-source", "/s"), ("ce-type", "t")])
                .field("/id")
                .check(|e| matches!(e, E::MissingAttribute { name, .. } if name == "id")),
            json(MINIMAL)
                .content_type(Some("text/plain"))
                .headers(&[("ce-specversion", "0.3")])
                .field("/specversion")
                .check(|e| matches!(e, E::UnsupportedSpecVersion { .. })),
            json(MINIMAL)
                .content_type(Some("text/plain"))
                .headers(&[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", "t"),
                    ("ce-datacontenttype", "a/b"),
                ])
                .field("/datacontenttype")
                .check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(MINIMAL)
                .content_type(Some("text/plain"))
                .headers(&[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-id", "2"),
                    ("ce-source", "/s"),
                    ("ce-type", "t"),
                ])
                .field("/id")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason.contains("more than once"))),
            json(MINIMAL)
                .content_type(Some("text/plain"))
                .headers(&[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", "t"),
                    ("ce-data_x", "1"),
                ])
                .field("/data_x")
                .check(|e| matches!(e, E::InvalidAttribute { .. })),
            json(MINIMAL)
                .content_type(Some("text/plain"))
                .headers(&[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", "t"),
                    ("ce-data", "x"),
                ])
                .field("/data")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason.contains("body"))),
            json(MINIMAL)
                .content_type(Some("text/plain"))
                .headers(&[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", "t"),
                    ("ce-routingkey", "a%2Fb"),
                ])
                .field("/routingkey")
                .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason.contains("'/'"))),
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let err = decode(case.subject, case.content_type, &headers(case.headers), Bytes::from(case.body), now())
                .expect_err(&format!("case {i} must fail"));
            assert!((case.check)(&err), "case {i}: unexpected {err:?}");
            assert_eq!(err.field().as_deref(), case.field, "case {i}: {err}");
            assert_message_style(&err);
        }
        // Binary mode with everything present is fine, so the cases above fail for their one reason.
        assert!(decode(SUBJECT, Some("text/plain"), &headers(BINARY_BASE), Bytes::new(), now()).is_ok());
        // The host clock is the one error that is not the client's.
        let err = decode(SUBJECT, None, &[], Bytes::new(), UNIX_EPOCH - Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, DecodeError::HostClock { .. }), "{err:?}");
        assert_eq!(err.field(), None);
        let far = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert!(matches!(decode(SUBJECT, None, &[], Bytes::new(), far), Err(DecodeError::HostClock { .. })));
    }

    #[test]
    fn messages_name_the_field_and_value() {
        let err =
            batch(&format!(r#"[{MINIMAL},{{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"soon"}}]"#))
                .unwrap_err();
        assert_eq!(err.to_string(), r#"event 1: invalid attribute "time": "soon" is not an rfc 3339 timestamp"#);
        let err = decode("a.*.c", None, &[], Bytes::new(), now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid subject "a.*.c": wildcard token "*": publishing needs a literal subject"#
        );
        let err = structured(&event_with(r#""routingkey":"a\\b""#)).unwrap_err();
        assert_eq!(err.to_string(), r#"invalid attribute "routingkey": "a\\b" contains '\\'"#);
        let err = structured(r#"{"specversion":"1.0","source":"/s","type":"t"}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"missing required attribute "id""#);
        let err = structured(&"x".repeat(1000)).unwrap_err();
        assert!(err.to_string().starts_with("body is not valid json: "), "{err}");
        // Long values are cut short.
        let err = decode(&"a".repeat(300), None, &[], Bytes::new(), now()).unwrap_err();
        assert!(err.to_string().len() < 150, "{err}");
    }

    #[test]
    fn subject_rules() {
        for good in ["a", "orders.created", "a-b_c.D9", "a*b.c>d", "$SYS.x", "é.ü"] {
            assert!(validate_subject(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_SUBJECT_BYTES);
        assert!(validate_subject(&long).is_ok());
        let too_long = "a".repeat(MAX_SUBJECT_BYTES + 1);
        for bad in
            ["", ".", "a.", ".a", "a..b", "a b", "a\tb", "a\u{a0}b", "a\0b", "*", "a.*", ">", "a.>", "a.*.b", &too_long]
        {
            let err = validate_subject(bad).unwrap_err();
            assert!(matches!(&err, DecodeError::InvalidSubject { subject, .. } if subject == bad), "{bad:?}");
            assert_eq!(err.field(), None);
        }
    }

    #[test]
    fn routing_key_rules() {
        let long = "k".repeat(MAX_ROUTING_KEY_BYTES);
        for good in ["k", "tenant-7", "a.b", "...", ".hidden", "東京", long.as_str()] {
            assert!(validate_routing_key(good).is_ok(), "{good}");
        }
        let too_long = "k".repeat(MAX_ROUTING_KEY_BYTES + 1);
        for bad in ["", ".", "..", "a/b", "/", "a\\b", "a\0b", too_long.as_str()] {
            assert!(validate_routing_key(bad).is_err(), "{bad:?}");
        }
        // Through decode, in both modes, a number is stringified and checked like any key.
        let event = one(structured(&event_with(r#""routingkey":42"#)));
        assert_eq!(event.extension("routingkey"), Some("42"));
        let err = structured(&event_with(r#""routingkey":"""#)).unwrap_err();
        assert_eq!(err.field().as_deref(), Some("/routingkey"));
    }

    fn assert_message_style(err: &DecodeError) {
        let message = err.to_string();
        assert!(!message.is_empty());
        assert!(!message.ends_with('.'), "{message}");
        assert!(!message.starts_with(|c: char| c.is_uppercase()), "{message}");
    }

    /// A seeded xorshift64 generator: reproducible input without a new dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    const NAMES: &[&str] = &[
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
        "routingkey",
        "ext1",
        "Bad",
        "",
        "a/b",
        "toolongextensionname1",
    ];
    const STRINGS: &[&str] = &[
        "1.0",
        "0.3",
        "",
        "x",
        "/s",
        "2018-04-05T17:31:00Z",
        "2018-04-05T17:31:00.5+01:00",
        "not a time",
        "AAEC",
        "AA",
        "!!",
        "application/json",
        "text/plain",
        "application/xml",
        "..",
        "a/b",
        "tenant-7",
        "é☃🎉",
        "\u{0}",
        "\n",
        "%41",
        "%zz",
        "\"",
        "\\",
    ];
    const CONTENT_TYPES: &[Option<&str>] = &[
        Some(STRUCTURED_MEDIA_TYPE),
        Some(BATCH_MEDIA_TYPE),
        Some("application/cloudevents+json; charset=utf-8"),
        Some("application/cloudevents+xml"),
        Some("application/json"),
        Some("text/plain"),
        Some(""),
        None,
    ];
    const SUBJECTS: &[&str] = &[SUBJECT, "a", "é.ü", "", "a..b", "a.*", "a b", ">"];

    fn random_string(rng: &mut XorShift) -> String {
        if rng.chance(80) {
            rng.pick(STRINGS).to_string()
        } else {
            let len = rng.below(12);
            String::from_utf8_lossy(&rng.bytes(len)).into_owned()
        }
    }

    fn random_value(rng: &mut XorShift, depth: usize) -> serde_json::Value {
        use serde_json::Value;
        let kinds = if depth == 0 { 5 } else { 7 };
        match rng.below(kinds) {
            0 => Value::Null,
            1 => Value::Bool(rng.chance(50)),
            2 => Value::from(rng.next() as i64 >> rng.below(64)),
            3 => Value::from(f64::from(rng.next() as u32) / 7.0),
            4 => Value::String(random_string(rng)),
            5 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth - 1)).collect()),
            _ => Value::Object((0..rng.below(4)).map(|_| (random_string(rng), random_value(rng, depth - 1))).collect()),
        }
    }

    /// An event object that is valid most of the time, with random damage.
    fn random_event(rng: &mut XorShift) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        for (name, value) in [("specversion", "1.0"), ("id", "id-1"), ("source", "/s"), ("type", "t")] {
            if rng.chance(95) {
                object.insert(name.into(), value.into());
            }
        }
        for _ in 0..rng.below(5) {
            let name = rng.pick(NAMES).to_string();
            let value = if rng.chance(60) { random_string(rng).into() } else { random_value(rng, 2) };
            object.insert(name, value);
        }
        if rng.chance(30) {
            object.insert("data".into(), random_value(rng, 3));
        }
        serde_json::Value::Object(object)
    }

    fn random_headers(rng: &mut XorShift) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if rng.chance(70) {
            for (name, value) in BINARY_BASE {
                if rng.chance(95) {
                    headers.push((name.to_string(), value.to_string()));
                }
            }
        }
        for _ in 0..rng.below(4) {
            let name = if rng.chance(80) { format!("ce-{}", rng.pick(NAMES)) } else { "x-other".into() };
            headers.push((name, random_string(rng)));
        }
        headers
    }

    #[test]
    fn random_requests_never_panic_and_keep_the_path_subject() {
        let mut rng = XorShift(0x00c0_ffee_d15c_0bad);
        let (mut accepted, mut rejected) = (0, 0);
        for round in 0..2000 {
            let subject = if rng.chance(85) { *rng.pick(SUBJECTS) } else { SUBJECT };
            let content_type = *rng.pick(CONTENT_TYPES);
            let headers = if rng.chance(40) { random_headers(&mut rng) } else { Vec::new() };
            let body: Vec<u8> = match rng.below(5) {
                0 => {
                    let len = rng.below(64);
                    rng.bytes(len)
                }
                1 => random_value(&mut rng, 4).to_string().into_bytes(),
                2 => random_event(&mut rng).to_string().into_bytes(),
                3 => {
                    let events: Vec<_> = (0..rng.below(4)).map(|_| random_event(&mut rng)).collect();
                    serde_json::Value::Array(events).to_string().into_bytes()
                }
                _ => {
                    // A valid-looking event with a few bytes damaged or cut off.
                    let mut text = random_event(&mut rng).to_string().into_bytes();
                    for _ in 0..rng.below(3) {
                        if !text.is_empty() {
                            let at = rng.below(text.len());
                            text[at] = rng.next() as u8;
                        }
                    }
                    if rng.chance(30) {
                        text.truncate(rng.below(text.len() + 1));
                    }
                    text
                }
            };
            match decode(subject, content_type, &headers, Bytes::from(body), now()) {
                Ok(events) => {
                    accepted += 1;
                    assert!(!events.is_empty(), "round {round}");
                    assert!(validate_subject(subject).is_ok(), "round {round}: accepted subject {subject:?}");
                    for event in &events {
                        assert_eq!(event.subject, subject, "round {round}");
                        let c = &event.context;
                        assert_eq!(c.specversion, SPEC_VERSION);
                        assert!(!c.id.is_empty() && !c.source.is_empty() && !c.ty.is_empty(), "round {round}");
                        for (name, _) in &event.extensions {
                            assert!(validate_extension_name(None, name).is_ok(), "round {round}: {name:?}");
                        }
                        if let Some(key) = event.extension(ROUTING_KEY_EXTENSION) {
                            assert!(validate_routing_key(key).is_ok(), "round {round}: {key:?}");
                        }
                    }
                }
                Err(err) => {
                    rejected += 1;
                    assert_message_style(&err);
                    if let Some(field) = err.field() {
                        assert!(field.starts_with('/'), "round {round}: {field}");
                    }
                }
            }
        }
        // Both paths must be exercised for the test to mean anything.
        assert!(accepted > 200 && rejected > 200, "accepted {accepted}, rejected {rejected}");
    }
}
