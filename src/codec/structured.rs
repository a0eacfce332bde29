//! Structured mode: one CloudEvent as a JSON object, a batch as a JSON array of them, and the
//! structured JSON form sinks write ([`encode`]).

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::validate::{Attributes, build_context, check_specversion, invalid, quote, validate_extension_name};
use super::{DecodeError, is_json_media_type};
use crate::event::Event;

/// Attribute names of the CloudEvents JSON form that an extension may not take over.
const RESERVED_ATTRIBUTES: [&str; 10] =
    ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"];

/// The `datacontenttype` implied for JSON `data` sent without one (JSON format, section 3.1.2).
const JSON_MEDIA_TYPE: &str = "application/json";

/// Standard base64, padded when written, read with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
pub fn encode(event: &Event) -> serde_json::Value {
    use serde_json::Value;

    let members = members(event).into_iter().map(|(name, value)| {
        let value = match value {
            Member::Text(text) => Value::String(text.to_owned()),
            Member::Json(json) => json,
            Member::Base64(bytes) => Value::String(BASE64.encode(bytes)),
        };
        (name.to_owned(), value)
    });
    // A map: keys sorted, and of a key given twice, the last value.
    Value::Object(members.collect())
}

/// A member's value in the structured form.
enum Member<'a> {
    Text(&'a str),
    Json(serde_json::Value),
    Base64(&'a [u8]),
}

/// The members of `event`'s structured form, in the order [`encode`] describes (unsorted; a
/// name may come twice, the last one counting).
fn members(event: &Event) -> Vec<(&str, Member<'_>)> {
    let c = &event.context;
    let mut members: Vec<(&str, Member<'_>)> = Vec::with_capacity(9 + event.extensions.len());
    for (name, value) in [("specversion", &c.specversion), ("id", &c.id), ("source", &c.source), ("type", &c.ty)] {
        members.push((name, Member::Text(value)));
    }
    let optional = [
        ("subject", &c.subject),
        ("time", &c.time),
        ("datacontenttype", &c.datacontenttype),
        ("dataschema", &c.dataschema),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            members.push((name, Member::Text(value)));
        }
    }
    for (name, value) in &event.extensions {
        if !RESERVED_ATTRIBUTES.contains(&name.as_str()) {
            members.push((name, Member::Text(value)));
        }
    }
    if !event.data.is_empty() {
        let json = c
            .datacontenttype
            .as_deref()
            .filter(|media_type| is_json_media_type(media_type))
            .and_then(|_| serde_json::from_slice::<serde_json::Value>(&event.data).ok());
        members.push(match json {
            Some(value) => ("data", Member::Json(value)),
            None => ("data_base64", Member::Base64(&event.data)),
        });
    }
    members
}

/// [`encode`]'s JSON text, appended to `out`, without building the JSON value: the same bytes as
/// `encode(event).to_string()`, at a fraction of the allocations, and `data_base64` written
/// straight into `out`. The hot path of the file and object sinks. An event still as it arrived
/// in structured JSON is written as it arrived ([`Event::arrived_json`]): the same JSON value,
/// its members in the sender's order.
pub fn write(event: &Event, out: &mut Vec<u8>) {
    if let Some(text) = event.arrived_json() {
        out.extend_from_slice(text);
        return;
    }
    let mut members = members(event);
    // As the map `encode` builds: keys sorted, and of a key given twice, the last value.
    members.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    let mut first = true;
    for (i, (name, value)) in members.iter().enumerate() {
        if members.get(i + 1).is_some_and(|next| next.0 == *name) {
            continue;
        }
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        match value {
            Member::Text(text) => {
                let _ = serde_json::to_writer(&mut *out, text);
            }
            Member::Json(json) => {
                let _ = serde_json::to_writer(&mut *out, json);
            }
            Member::Base64(bytes) => {
                out.push(b'"');
                base64_simd::STANDARD.encode_append(bytes, out);
                out.push(b'"');
            }
        }
    }
    out.push(b'}');
}

// Both JSON modes parse the body once on the happy path; only when that fails is it parsed again
// to tell "not JSON" from "JSON of the wrong shape".

pub(super) fn decode_one(subject: &str, body: &Bytes) -> Result<Event, DecodeError> {
    match serde_json::from_slice::<RawObject>(body) {
        Ok(RawObject(members)) => decode_object(subject, members, None, body),
        Err(err) => Err(match serde_json::from_slice::<&RawValue>(body) {
            Ok(_) => DecodeError::NotAnObject { index: None },
            Err(_) => not_json(err),
        }),
    }
}

pub(super) fn decode_batch(subject: &str, body: &Bytes) -> Result<Vec<Event>, DecodeError> {
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

/// The members of one JSON object, in order, each value left as unparsed JSON text. A name is
/// borrowed from the body unless it has escapes.
struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a json object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).clamp(8, 32));
                while let Some(MemberName(name)) = map.next_key()? {
                    members.push((name, map.next_value::<&'de RawValue>()?));
                }
                Ok(RawObject(members))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// A member's name, borrowed when the body holds it as it is (no escapes). `Cow<str>`'s own
/// `Deserialize` always copies.
struct MemberName<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> Visitor<'de> for NameVisitor {
            type Value = MemberName<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Borrowed(name)))
            }

            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(name.to_owned())))
            }
        }

        deserializer.deserialize_str(NameVisitor)
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

/// Decodes the members of one JSON event object; `body` is the request buffer they were parsed
/// from, so `data` can share it.
fn decode_object(
    subject: &str,
    members: Vec<(Cow<'_, str>, &RawValue)>,
    index: Option<usize>,
    body: &Bytes,
) -> Result<Event, DecodeError> {
    let span = object_span(body, &members);
    let no_nulls = members.iter().all(|(_, value)| !is_null(value));
    let mut known = KnownMembers::default();
    let mut raw_extensions: Vec<(Cow<'_, str>, &RawValue)> = Vec::new();
    for (name, value) in members {
        let first = match known.slot(&name) {
            Some(slot) => slot.replace(value).is_none(),
            // Events carry a few extensions: a scan costs less than hashing them.
            None if raw_extensions.iter().any(|(seen, _)| *seen == name) => false,
            None => {
                raw_extensions.push((name, value));
                continue;
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
    let string_extensions = raw_extensions.iter().all(|(_, value)| value.get().starts_with('"'));
    for (name, value) in raw_extensions {
        validate_extension_name(index, &name)?;
        if let Some(value) = extension_value(index, &name, value)? {
            attributes.extensions.push((name.into_owned(), value));
        }
    }

    let data_base64 = known.data_base64.filter(|v| !is_null(v));
    let data = match (known.data, data_base64) {
        (Some(_), Some(_)) => return Err(DecodeError::AmbiguousData { index }),
        (None, Some(encoded)) => {
            let Some(encoded) = json_str(index, "data_base64", Some(encoded))? else {
                return Err(invalid(index, "data_base64", "must be a string".into()));
            };
            Bytes::from(decode_base64(encoded.as_bytes()).map_err(|reason| invalid(index, "data_base64", reason))?)
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

    // Whether `encode` gives the same JSON value as the object: no member dropped as null, every
    // extension a string, and data in the member `encode` puts it in. Base64 data is not kept
    // twice (decoded and as text): for it, the text would cost more memory than it saves time.
    let data_as_encoded = match (known.data, known.data_base64) {
        (None, None) => true,
        (Some(_), None) => {
            known.datacontenttype.is_some() && attributes.datacontenttype.as_deref().is_some_and(is_json_media_type)
        }
        _ => false,
    };
    let (context, extensions) = build_context(index, attributes)?;
    let mut event =
        Event { subject: subject.to_owned(), context, extensions, data, nats: None, completion: None, arrived: None };
    if let Some(span) = span.filter(|_| no_nulls && string_extensions && data_as_encoded) {
        // A line of a JSON-lines file must be one line.
        let text = body.slice(span);
        if memchr::memchr2(b'\n', b'\r', &text).is_none() {
            event.keep_arrived(text);
        }
    }
    Ok(event)
}

/// Where in `body` the object with these members lies, braces included; `None` when that cannot
/// be told (no members, or the first name has escapes and so is not borrowed from the body).
fn object_span(body: &[u8], members: &[(Cow<'_, str>, &RawValue)]) -> Option<std::ops::Range<usize>> {
    let (Some((Cow::Borrowed(first), _)), Some((_, last))) = (members.first(), members.last()) else {
        return None;
    };
    let offset =
        |part: &str| (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize).filter(|&at| at <= body.len());
    // The name's opening quote, then whitespace, then the brace.
    let before = body.get(..offset(first)?.checked_sub(1)?)?;
    let open = before.iter().rposition(|b| !b.is_ascii_whitespace()).filter(|&at| before[at] == b'{')?;
    let after = offset(last.get())? + last.get().len();
    let close = after + body.get(after..)?.iter().position(|b| !b.is_ascii_whitespace())?;
    (body[close] == b'}').then_some(open..close + 1)
}

fn is_null(value: &RawValue) -> bool {
    value.get() == "null"
}

/// A JSON member that must be a string; `null` counts as absent (JSON format, 2.2).
fn json_string(index: Option<usize>, name: &str, value: Option<&RawValue>) -> Result<Option<String>, DecodeError> {
    Ok(json_str(index, name, value)?.map(Cow::into_owned))
}

/// [`json_string`], borrowed from the body when the string has no escapes (the usual case: the
/// text between the quotes is the string).
fn json_str<'a>(
    index: Option<usize>,
    name: &str,
    value: Option<&'a RawValue>,
) -> Result<Option<Cow<'a, str>>, DecodeError> {
    let Some(value) = value.filter(|v| !is_null(v)) else {
        return Ok(None);
    };
    let text = value.get();
    if !text.starts_with('"') {
        return Err(invalid(index, name, format!("must be a string, found {}", json_kind(value))));
    }
    // A raw value is valid JSON, so a string without a backslash is its quotes around its text.
    if !text.contains('\\') {
        return Ok(Some(Cow::Borrowed(&text[1..text.len() - 1])));
    }
    serde_json::from_str(text).map(Some).map_err(|err| invalid(index, name, format!("bad json string: {err}")))
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

/// Standard base64 with or without padding, as [`BASE64`] reads it, through SIMD; the reason
/// when it is not base64.
fn decode_base64(text: &[u8]) -> Result<Vec<u8>, String> {
    let padded = text.len().is_multiple_of(4);
    let simd = if padded { base64_simd::STANDARD } else { base64_simd::STANDARD_NO_PAD };
    // SIMD for speed; the other decoder words the reason, and is the reference for what is valid.
    simd.decode_to_vec(text).or_else(|_| BASE64.decode(text).map_err(base64_reason))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Context;

    #[test]
    fn simd_base64_accepts_and_refuses_exactly_what_the_reference_decoder_does() {
        // Every string of up to 6 symbols over an alphabet with each kind of symbol: letters whose
        // low bits are clear and set, digits, `+`, `/`, padding, whitespace and a stray byte.
        let alphabet = b"AQgw09+/=\n-";
        let mut texts = vec![Vec::new()];
        for _ in 0..6 {
            let longer: Vec<Vec<u8>> = texts
                .iter()
                .filter(|text| text.len() == texts.last().map_or(0, Vec::len))
                .flat_map(|text| alphabet.iter().map(move |&b| [text.as_slice(), &[b]].concat()))
                .collect();
            texts.extend(longer);
        }
        let long = base64_simd::STANDARD.encode_to_string(vec![7u8; 1000]);
        texts.push(long.clone().into_bytes());
        texts.push(long.trim_end_matches('=').as_bytes().to_vec());
        for text in texts {
            assert_eq!(decode_base64(&text).ok(), BASE64.decode(&text).ok(), "{:?}", String::from_utf8_lossy(&text));
        }
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
            arrived: None,
        }
    }

    #[test]
    fn written_text_is_the_encoded_values_text_byte_for_byte() {
        let mut events = vec![
            sdk_test_event(Some("application/json"), br#"{"b": [1, 2.5, "x\"y"], "a": null}"#),
            sdk_test_event(None, b"\x00\xff binary \"quoted\" \n"),
            sdk_test_event(Some("application/json"), b"not json after all"),
            sdk_test_event(None, b""),
            sdk_test_event(None, &[7; 1025]),
        ];
        let mut odd = sdk_test_event(Some("text/plain"), "ünïcödé \u{1F600} \t".as_bytes());
        odd.context.subject = None;
        odd.context.dataschema = Some("https://schema/\"q\"".into());
        odd.extensions.extend([
            ("zz".into(), "last".into()),
            ("aa".into(), "a\u{7f}".into()),
            ("zz".into(), "twice".into()),
        ]);
        events.push(odd);
        for event in events {
            let mut written = Vec::new();
            write(&event, &mut written);
            assert_eq!(String::from_utf8(written).unwrap(), encode(&event).to_string(), "{event:?}");
        }
    }

    /// The event of a structured body, and the text it kept as it arrived, if any.
    fn arrived(body: &str) -> (Event, Option<String>) {
        let event = decode_one("a.b", &Bytes::from(body.to_owned())).expect("a valid event");
        let text = event.arrived_json().map(|text| String::from_utf8(text.to_vec()).unwrap());
        (event, text)
    }

    #[test]
    fn the_text_an_event_arrived_as_is_kept_only_where_it_is_the_encoded_value() {
        let head = r#""specversion":"1.0","id":"1","source":"/s","type":"t""#;
        let kept = [
            format!(r#"{{{head}}}"#),
            format!(r#"{{ {head}, "datacontenttype": "application/json", "data": {{"z": 1, "a": [true, null]}} }}"#),
            format!(r#"{{{head},"routingkey":"k","note":"caf\u00e9 \"q\"","time":"2026-12-07T15:00:00Z"}}"#),
            format!(r#"{{{head},"datacontenttype":"text/json","data":"a JSON string"}}"#),
        ];
        for body in &kept {
            let (event, text) = arrived(body);
            assert_eq!(text.as_deref(), Some(body.trim()), "kept as it came");
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(value, encode(&event), "the same JSON value as the encoding: {body}");
            let mut written = Vec::new();
            write(&event, &mut written);
            assert_eq!(String::from_utf8(written).unwrap(), body.trim(), "written as it came");
        }
        let not_kept = [
            // `data` without a content type: the encoding adds `application/json`.
            format!(r#"{{{head},"data":{{"n":1}}}}"#),
            // Text data travels as a string here, as base64 in the encoding.
            format!(r#"{{{head},"datacontenttype":"text/plain","data":"hello"}}"#),
            // Base64 data would be held twice.
            format!(r#"{{{head},"data_base64":"aGk="}}"#),
            // A null member is absent from the encoding; a number extension is a string there.
            format!(r#"{{{head},"subject":null}}"#),
            format!(r#"{{{head},"count":5}}"#),
            // A line break would split a JSON-lines file's line.
            format!("{{{head},\n\"routingkey\":\"k\"}}"),
            // A first name with an escape is not where the body has it.
            r#"{"spec\u0076ersion":"1.0","id":"1","source":"/s","type":"t"}"#.to_owned(),
        ];
        for body in &not_kept {
            let (event, text) = arrived(body);
            assert_eq!(text, None, "{body}");
            let mut written = Vec::new();
            write(&event, &mut written);
            assert_eq!(String::from_utf8(written).unwrap(), encode(&event).to_string());
        }
    }

    #[test]
    fn each_event_of_a_batch_keeps_its_own_object() {
        let body = r#"[ {"specversion":"1.0","id":"1","source":"/s","type":"t"} ,
            {"specversion":"1.0","id":"2","source":"/s","type":"t","routingkey":"k"}]"#;
        let events = decode_batch("a.b", &Bytes::from(body)).unwrap();
        let texts: Vec<&[u8]> = events.iter().map(|event| event.arrived_json().unwrap()).collect();
        assert_eq!(
            texts,
            [
                &br#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#[..],
                br#"{"specversion":"1.0","id":"2","source":"/s","type":"t","routingkey":"k"}"#
            ]
        );
    }

    #[test]
    fn a_changed_event_is_encoded_again_and_a_copy_keeps_the_text() {
        let body = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/json","data":{"n":1}}"#;
        let (event, _) = arrived(body);
        assert!(event.clone().arrived_json().is_some(), "a copy is the same event");
        let changes: [fn(&mut Event); 5] = [
            |event| event.extensions.push(("deadletterreason".into(), "x".into())),
            |event| event.context.id = "2".into(),
            |event| event.context.time = Some("2026-12-07T15:00:00Z".into()),
            |event| event.data = Bytes::from_static(br#"{"n":2}"#),
            // Other data of the same length, at another address.
            |event| event.data = Bytes::from(event.data.to_vec()),
        ];
        for change in changes {
            let mut changed = event.clone();
            change(&mut changed);
            assert_eq!(changed.arrived_json(), None);
            let mut written = Vec::new();
            write(&changed, &mut written);
            assert_eq!(String::from_utf8(written).unwrap(), encode(&changed).to_string());
        }
        let mut bare = event.clone();
        bare.arrived = None;
        assert_eq!(bare, event, "how an event arrived does not make it another event");
        assert!(event.size() > bare.size(), "the kept text counts against queues' byte bounds");
    }

    #[test]
    fn data_decoded_as_json_is_written_as_json() {
        // `vnd.acme/json` is JSON to the decoder (`*/json`), so it is written as `data` too.
        for media_type in ["vnd.acme/json", "application/json; charset=utf-8", "application/ld+json", "TEXT/JSON"] {
            let value = encode(&sdk_test_event(Some(media_type), br#"{"n": 1}"#));
            assert_eq!(value["data"], serde_json::json!({"n": 1}), "{media_type}");
        }
        assert!(!is_json_media_type("application/jsonl") && !is_json_media_type("json"));
    }

    #[test]
    fn cloudevents_json_matches_the_sdk_output_for_the_same_event() {
        // The expected value is the SDK's, from its test of the same name; the end-to-end test
        // `tests/e2e/builtin_sinks.rs` also compares bytes written by the Wasm file-sink.
        let value = encode(&sdk_test_event(Some("application/cloudevents+json; charset=utf-8"), br#"{"n": 1}"#));
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
        let base64_of = |e: &Event| encode(e)["data_base64"].as_str().map(str::to_owned);
        assert_eq!(base64_of(&sdk_test_event(Some("application/json"), b"not json")).as_deref(), Some("bm90IGpzb24="));
        assert_eq!(base64_of(&sdk_test_event(None, b"{}")).as_deref(), Some("e30="));
        assert_eq!(base64_of(&sdk_test_event(Some("text/plain"), b"ab")).as_deref(), Some("YWI="));
        assert_eq!(base64_of(&sdk_test_event(Some("TEXT/JSON"), br#""s""#)), None);
        let empty = encode(&sdk_test_event(Some("application/json"), b""));
        assert!(empty.get("data").is_none() && empty.get("data_base64").is_none());
        assert_eq!(sdk_test_event(None, b"").routing_key(), Some("eu"));
    }
}
