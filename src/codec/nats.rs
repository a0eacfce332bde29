//! The CloudEvents NATS binding, as the gateway, sources, sinks and cluster mode apply it. A NATS message becomes an event:
//! binary mode when it has `ce-` headers, structured or batched when its `Content-Type` says so,
//! raw otherwise; a single event keeps the message's envelope (reply subject, header block,
//! publisher). An event becomes what a NATS subscriber gets: the message exactly as a NATS client
//! sent it, or — for events from elsewhere — the data with the context as `ce-` headers.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use smallvec::SmallVec;

use super::{DecodeError, RawAttributes};
use crate::event::{Event, NatsEnvelope};

/// `source` of events built from a raw NATS message.
pub const NATS_SOURCE: &str = "/eventyard/nats";

/// The events one message carries: one, unless it is a CloudEvents batch.
pub type Events = SmallVec<[Event; 1]>;

/// The events a message carries, published by gateway client `client` (0: not a gateway client,
/// a source's message say).
pub fn decode(
    subject: String,
    reply: Option<String>,
    headers: Option<Bytes>,
    payload: Bytes,
    client: u64,
) -> Result<Events, DecodeError> {
    let Some(header_block) = &headers else {
        // The common case, and the fast one: a plain message is a raw event.
        return Ok(smallvec::smallvec![PlainMessage { subject, reply, payload, client }.into_event()?]);
    };
    let pairs = parse_headers(header_block);
    let content_type =
        pairs.iter().find(|(name, _)| name.eq_ignore_ascii_case("content-type")).map(|(_, value)| value.as_str());
    let attributes: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| name.get(..3).is_some_and(|prefix| prefix.eq_ignore_ascii_case("ce-")))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect();
    let decoded = super::decode_from(NATS_SOURCE, &subject, content_type, &attributes, payload, SystemTime::now())?;
    let mut events = Events::from_vec(decoded);
    if let [event] = &mut events[..] {
        event.nats = Some(Arc::new(NatsEnvelope { reply, headers, client }));
    }
    Ok(events)
}

/// A NATS message without headers, published by gateway client `client`, before it is made an
/// event: subscribers that pass NATS messages on take it as it is, so the event it stands for need
/// be made only for one that needs it (a route).
#[derive(Debug, Clone)]
pub struct PlainMessage {
    pub subject: String,
    pub reply: Option<String>,
    pub payload: Bytes,
    pub client: u64,
}

impl PlainMessage {
    /// The raw event the message stands for, as [`decode`] makes it: its subject checked.
    pub fn into_event(self) -> Result<Event, DecodeError> {
        let PlainMessage { subject, reply, payload, client } = self;
        let mut event = super::raw(NATS_SOURCE, subject, payload, SystemTime::now())?;
        event.nats = Some(Arc::new(NatsEnvelope { reply, headers: None, client }));
        Ok(event)
    }
}

/// Gives the event of a raw message (no CloudEvents attributes: a plain message, or headers without
/// `ce-` ones) the attributes `raw` finds in its data and `headers`; events of other messages are
/// left as they are.
pub fn map_raw(events: &mut Events, headers: Option<&Bytes>, raw: &RawAttributes) -> Result<(), DecodeError> {
    let [event] = &mut events[..] else { return Ok(()) };
    let pairs = headers.map(|block| parse_headers(block)).unwrap_or_default();
    let content_type =
        pairs.iter().find(|(name, _)| name.eq_ignore_ascii_case("content-type")).map(|(_, value)| value.as_str());
    let attributes: Vec<(String, String)> =
        pairs.iter().filter(|(name, _)| super::attribute_header(name).is_some()).cloned().collect();
    if !super::is_raw(content_type, &attributes) {
        return Ok(());
    }
    let header =
        |wanted: &str| pairs.iter().find(|(name, _)| name.eq_ignore_ascii_case(wanted)).map(|(_, value)| value.clone());
    raw.apply(event, header)
}

/// The header block a NATS subscriber gets with `event`; `None` for a plain `MSG`.
pub fn headers_of(event: &Event) -> Option<Bytes> {
    match &event.nats {
        Some(envelope) => envelope.headers.clone(),
        None => Some(context_headers(event)),
    }
}

/// `event`'s context as a NATS header block: `ce-` attributes and `content-type` (CloudEvents binary
/// mode), whatever message it arrived as.
pub fn context_headers(event: &Event) -> Bytes {
    let c = &event.context;
    let mut block = String::with_capacity(160);
    block.push_str("NATS/1.0\r\n");
    let mut header = |name: &str, value: &str| {
        block.push_str(name);
        block.push_str(": ");
        // A value never ends the header line early.
        block.extend(value.chars().map(|ch| if ch == '\r' || ch == '\n' { ' ' } else { ch }));
        block.push_str("\r\n");
    };
    header("ce-specversion", &c.specversion);
    header("ce-id", &c.id);
    header("ce-source", &c.source);
    header("ce-type", &c.ty);
    for (name, value) in [("ce-subject", &c.subject), ("ce-time", &c.time), ("ce-dataschema", &c.dataschema)] {
        if let Some(value) = value {
            header(name, value);
        }
    }
    if let Some(content_type) = &c.datacontenttype {
        header("content-type", content_type);
    }
    for (name, value) in &event.extensions {
        header(&format!("ce-{name}"), value);
    }
    block.push_str("\r\n");
    Bytes::from(block)
}

/// The reply subject of `event`, if it asks for one.
pub fn reply_of(event: &Event) -> Option<&str> {
    event.nats.as_ref().and_then(|envelope| envelope.reply.as_deref())
}

/// Parses a header block (`NATS/1.0[ status]\r\nName: value\r\n...\r\n\r\n`) into pairs, names
/// as sent; lines without a colon are skipped.
pub fn parse_headers(block: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    text.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// `headers` as a NATS header block (`NATS/1.0\r\n...\r\n\r\n`).
pub fn header_block(headers: &async_nats::HeaderMap) -> Bytes {
    let mut block = String::from("NATS/1.0\r\n");
    for (name, values) in headers.iter() {
        for value in values {
            block.push_str(name.as_ref());
            block.push_str(": ");
            block.push_str(value.as_str());
            block.push_str("\r\n");
        }
    }
    block.push_str("\r\n");
    Bytes::from(block)
}

/// The header map a NATS header block describes; lines that are not valid headers are left out.
pub fn header_map(block: &[u8]) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in parse_headers(block) {
        if let (Ok(name), Ok(value)) =
            (name.parse::<async_nats::HeaderName>(), value.parse::<async_nats::HeaderValue>())
        {
            headers.append(name, value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_message_keeps_its_envelope_and_goes_out_as_it_came() {
        let headers = Bytes::from_static(b"NATS/1.0\r\nX-Trace: 1\r\n\r\n");
        let events =
            decode("orders.new".into(), Some("_INBOX.1".into()), Some(headers.clone()), Bytes::from("hi"), 7).unwrap();
        let event = &events[0];
        assert_eq!((event.context.source.as_str(), event.data.as_ref()), (NATS_SOURCE, &b"hi"[..]));
        assert_eq!(headers_of(event), Some(headers));
        assert_eq!(reply_of(event), Some("_INBOX.1"));
        let plain = decode("orders.new".into(), None, None, Bytes::from("hi"), 7).unwrap();
        assert_eq!(headers_of(&plain[0]), None, "a message without headers goes out as MSG");
    }

    #[test]
    fn ce_headers_make_a_binary_mode_event_and_events_from_elsewhere_get_them() {
        let headers = Bytes::from_static(
            b"NATS/1.0\r\nce-specversion: 1.0\r\nCe-Id: e1\r\nce-source: /s\r\nce-type: t\r\nce-routingkey: node-1\r\ncontent-type: application/json\r\n\r\n",
        );
        let events = decode("a".into(), None, Some(headers), Bytes::from("{}"), 1).unwrap();
        let mut event = events[0].clone();
        assert_eq!((event.context.id.as_str(), event.routing_key()), ("e1", Some("node-1")));
        event.nats = None;
        let block = headers_of(&event).unwrap();
        let pairs = parse_headers(&block);
        assert!(pairs.contains(&("ce-id".into(), "e1".into())));
        assert!(pairs.contains(&("ce-routingkey".into(), "node-1".into())));
        assert!(pairs.contains(&("content-type".into(), "application/json".into())));
        event.context.source = "/a\r\nInjected: yes".into();
        assert!(!parse_headers(&headers_of(&event).unwrap()).iter().any(|(name, _)| name == "Injected"));
    }

    #[test]
    fn header_blocks_and_maps_convert_both_ways() {
        let block = b"NATS/1.0\r\nce-id: 7\r\nX-Many: a\r\nX-Many: b\r\n\r\n";
        let map = header_map(block);
        assert_eq!(map.get("ce-id").map(|v| v.as_str()), Some("7"));
        assert_eq!(map.get_all("X-Many").count(), 2);
        let back = parse_headers(&header_block(&map));
        assert!(back.contains(&("ce-id".into(), "7".into())));
        assert_eq!(back.iter().filter(|(name, _)| name == "X-Many").count(), 2);
    }

    #[test]
    fn header_blocks_parse_into_pairs_as_sent() {
        assert_eq!(
            parse_headers(b"NATS/1.0\r\nA: b\r\nce-id: 7\r\n\r\n"),
            [("A".into(), "b".into()), ("ce-id".into(), "7".into())]
        );
    }
}
