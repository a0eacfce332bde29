//! Binary mode: the attributes in `ce-*` headers, `Content-Type` as `datacontenttype`, the body as
//! data (HTTP binding 3.1, NATS binding 3.1).

use std::collections::HashSet;

use bytes::Bytes;

use super::validate::{Attributes, build_context, check_specversion, invalid, validate_extension_name};
use super::{DecodeError, HEADER_PREFIX, attribute_header};
use crate::event::Event;

/// The binary-mode event: attributes from `ce-*` headers, data from the body.
pub(super) fn decode(
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
    Ok(Event {
        subject: subject.to_owned(),
        context,
        extensions,
        data: body,
        nats: None,
        completion: None,
        arrived: None,
    })
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
