//! The codec's tests: every mode, every error and its field, and random requests.

use super::raw::rfc3339;
use super::validate::{validate_extension_name, validate_routing_key, validate_subject};
use super::*;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::event::{Context, ROUTING_KEY_EXTENSION};

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
        arrived: None,
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
        .map(|i| format!(r#"{{"specversion":"1.0","id":"{i}","source":"/s","type":"t","seq":{i},"data":{{"n":{i}}}}}"#))
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
    for nanos in [0, 1, 500_000_000, 123_456_789, 999_999_999, 1_700_000_000_000_000_001, 1_763_912_049_000_010_000] {
        let since_epoch = Duration::from_nanos(nanos);
        let expected = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap().format(&Rfc3339).unwrap();
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
        json(MINIMAL)
            .content_type(Some("application/cloudevents+xml"))
            .check(|e| matches!(e, E::UnsupportedFormat { media_type } if media_type == "application/cloudevents+xml")),
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
        json(r#"{"specversion":1.0,"id":"1","source":"/s","type":"t"}"#)
            .field("/specversion")
            .check(|e| matches!(e, E::InvalidAttribute { reason, .. } if reason == "must be a string, found a number")),
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
        json(&event_with(r#""dataschema":{}"#)).field("/dataschema").check(|e| matches!(e, E::InvalidAttribute { .. })),
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
    let err = batch(&format!(r#"[{MINIMAL},{{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"soon"}}]"#))
        .unwrap_err();
    assert_eq!(err.to_string(), r#"event 1: invalid attribute "time": "soon" is not an rfc 3339 timestamp"#);
    let err = decode("a.*.c", None, &[], Bytes::new(), now()).unwrap_err();
    assert_eq!(err.to_string(), r#"invalid subject "a.*.c": wildcard token "*": publishing needs a literal subject"#);
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
    for good in ["a", "orders.created", "a-b_c.D9", "a*b.c>d", "*a.>b", "$SYS.x", "é.ü", "~!.\"#"] {
        assert!(validate_subject(good).is_ok(), "{good}");
    }
    let long = "a".repeat(MAX_SUBJECT_BYTES);
    assert!(validate_subject(&long).is_ok());
    let too_long = "a".repeat(MAX_SUBJECT_BYTES + 1);
    for bad in ["", ".", "a.", ".a", "a..b", "a b", "a\tb", "a\u{a0}b", "a\0b", "a\u{7f}b", "a/b", "a\\b"]
        .into_iter()
        .chain(["*", "a.*", ">", "a.>", "a.*.b", "*.a", ">.a", &too_long])
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
