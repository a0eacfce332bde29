//! The rules every mode shares: required attributes present and non-empty, no control characters,
//! `time` in RFC 3339, extension names, the routing subject and the routing key; and how the errors
//! that break them are worded.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{DecodeError, MAX_EXTENSION_NAME_CHARS, MAX_ROUTING_KEY_BYTES, MAX_SUBJECT_BYTES, SPEC_VERSION};
use crate::event::{Context, ROUTING_KEY_EXTENSION};

/// Values quoted in error messages are cut to this many characters.
const QUOTE_MAX_CHARS: usize = 64;

/// One event's attributes as strings, before the rules shared by every mode are applied.
#[derive(Default)]
pub(super) struct Attributes {
    pub(super) specversion: Option<String>,
    pub(super) id: Option<String>,
    pub(super) source: Option<String>,
    pub(super) ty: Option<String>,
    pub(super) subject: Option<String>,
    pub(super) time: Option<String>,
    pub(super) datacontenttype: Option<String>,
    pub(super) dataschema: Option<String>,
    pub(super) extensions: Vec<(String, String)>,
}

pub(super) fn check_specversion(index: Option<usize>, specversion: Option<&str>) -> Result<(), DecodeError> {
    match specversion {
        None => Err(missing(index, "specversion")),
        Some(SPEC_VERSION) => Ok(()),
        Some(found) => Err(DecodeError::UnsupportedSpecVersion { index, found: found.to_owned() }),
    }
}

/// The rules every mode shares: required attributes present and non-empty, optional ones
/// non-empty when present, no control characters, `time` in RFC 3339, a valid routing key.
pub(super) fn build_context(
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
pub(super) fn check_text(index: Option<usize>, name: &str, value: &str) -> Result<(), DecodeError> {
    if value.is_empty() {
        return Err(invalid(index, name, "must not be empty".into()));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(index, name, format!("contains control character {c:?}")));
    }
    Ok(())
}

/// Extension names: lower-case ASCII letters and digits, 1 to 20 of them.
pub(super) fn validate_extension_name(index: Option<usize>, name: &str) -> Result<(), DecodeError> {
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
pub fn validate_subject(subject: &str) -> Result<(), DecodeError> {
    if plainly_valid_subject(subject) {
        return Ok(());
    }
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

/// The usual subject, told valid in one pass over its bytes: printable ASCII without `/` or `\\`,
/// tokens that are neither empty nor wildcards. Anything else goes through the checks that say
/// what is wrong (and that read non-ASCII text as characters).
fn plainly_valid_subject(subject: &str) -> bool {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_BYTES {
        return false;
    }
    let mut token_start = true;
    for (at, &byte) in subject.as_bytes().iter().enumerate() {
        match byte {
            b'.' if token_start => return false,
            b'.' => token_start = true,
            b'*' | b'>' if token_start && matches!(subject.as_bytes().get(at + 1), None | Some(b'.')) => return false,
            b'!'..=b'~' if byte != b'/' && byte != b'\\' => token_start = false,
            _ => return false,
        }
    }
    !token_start
}

/// The routing key may become a directory name in a sink, so it must be one safe path segment.
pub(super) fn validate_routing_key(key: &str) -> Result<(), String> {
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

pub(super) fn missing(index: Option<usize>, name: &str) -> DecodeError {
    DecodeError::MissingAttribute { index, name: name.to_owned() }
}

pub(super) fn invalid(index: Option<usize>, name: &str, reason: String) -> DecodeError {
    DecodeError::InvalidAttribute { index, name: name.to_owned(), reason }
}

/// A JSON pointer (RFC 6901) to member `name` of the event at `index`.
pub(super) fn pointer(index: Option<usize>, name: &str) -> String {
    let name = name.replace('~', "~0").replace('/', "~1");
    match index {
        Some(i) => format!("/{i}/{name}"),
        None => format!("/{name}"),
    }
}

/// The message prefix locating an event in a batch.
pub(super) fn at(index: &Option<usize>) -> String {
    index.map(|i| format!("event {i}: ")).unwrap_or_default()
}

pub(super) fn not_an_object_message(index: &Option<usize>) -> String {
    match index {
        Some(i) => format!("event {i}: not a json object"),
        None => "body is not a json object".into(),
    }
}

/// `value` quoted and escaped for a message, cut short when long.
pub(super) fn quote(value: &str) -> String {
    match value.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}
