//! The CloudEvents 1.0 codec: bytes and headers in, [`Event`]s out, and back. Every way in (HTTP
//! ingest, the NATS gateway, sources, the cluster broker) decodes with it and every sink that writes
//! the CloudEvents form encodes with it, so an event means the same wherever it came from.
//!
//! Split by mode:
//! - [`structured`]: one JSON event object (`application/cloudevents+json`), a batch of them
//!   (`application/cloudevents-batch+json`), and the structured JSON form sinks write;
//! - `binary`: attributes in `ce-*` headers (quoted-string unescaped, then percent-decoded per the
//!   HTTP binding), `Content-Type` as `datacontenttype`, the body as data;
//! - `raw`: no `ce-*` header at all: the body as data, with `id` (UUIDv7), `source`, `type`,
//!   `specversion` and `time` filled by the host;
//! - [`nats`]: the NATS binding (a message's header block, reply subject and publisher) and the
//!   conversion between header blocks and async-nats header maps;
//! - `validate`: the rules every mode shares (required attributes, `time`, extension names, the
//!   routing subject and the routing key, which sinks may turn into a path).
//!
//! Must never: do I/O or read the clock (callers pass `now`, but for the NATS binding, which
//! stamps raw messages as they arrive), queue, route or answer a client (callers map
//! [`DecodeError`] to a status and use [`DecodeError::field`] in a 400 body), or panic on any
//! input. `data` is kept as sent: JSON `data` is the exact JSON text of the member, and binary and
//! raw bodies are shared with the request's buffer, not copied.

mod binary;
pub mod nats;
mod raw;
mod raw_attributes;
pub mod structured;
#[cfg(test)]
mod tests;
mod validate;

use std::time::SystemTime;

use bytes::Bytes;

use crate::event::Event;
pub use raw::{raw, raw_of_type};
pub use raw_attributes::{Locator, RawAttributes};
pub use validate::validate_subject;
use validate::{at, not_an_object_message, pointer, quote};

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

/// Whether a `datacontenttype` declares JSON data: `*/json` or `*/*+json` (CloudEvents JSON
/// format, 3.1.1), ignoring case and parameters such as `; charset=utf-8`. The one rule for
/// decoding and for writing events.
pub fn is_json_media_type(content_type: &str) -> bool {
    let media_type = media_type(content_type);
    media_type.split_once('/').is_some_and(|(_, subtype)| subtype == "json" || subtype.ends_with("+json"))
}

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
        Mode::Structured => Ok(vec![structured::decode_one(subject, &body)?]),
        Mode::Batch => structured::decode_batch(subject, &body),
        Mode::Binary => Ok(vec![binary::decode(subject, content_type, headers, body)?]),
        Mode::Raw => Ok(vec![raw::decode(raw_source, subject.to_owned(), content_type, body, now)?]),
    }
}

/// True when a message with this content type and these headers is decoded in raw mode: neither a
/// CloudEvents media type nor any `ce-` header.
pub fn is_raw(content_type: Option<&str>, headers: &[(String, String)]) -> bool {
    matches!(mode(content_type, headers), Ok(Mode::Raw))
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
pub(super) fn attribute_header(name: &str) -> Option<&str> {
    let prefix = name.get(..HEADER_PREFIX.len())?;
    prefix.eq_ignore_ascii_case(HEADER_PREFIX).then(|| &name[HEADER_PREFIX.len()..])
}
