//! The checks of the fuzz targets, one function per target over the raw input: libFuzzer calls
//! them through `fuzz_targets/<target>.rs`, and `tests/e2e/fuzz_corpus.rs` replays every input kept in
//! `fuzz/corpus/<target>/` through them in the ordinary test suite, so an input that once failed
//! stays a regression test.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use eventyard::broker::{Pattern, Subject, SubscriptionIndex};
use eventyard::codec;
use eventyard::config::Config;
use eventyard::gateway::protocol::{ClientOp, Parser};

/// The gateway's NATS protocol parser on any bytes: it never panics, and the ops it parses do not
/// depend on how the bytes were split into reads (the first byte sets the read size).
pub fn nats_protocol(data: &[u8]) {
    let Some((&size, bytes)) = data.split_first() else { return };
    let whole = parse_reads(std::iter::once(bytes));
    let split = parse_reads(bytes.chunks(usize::from(size % 16) + 1));
    let n = whole.len().min(split.len());
    assert_eq!(whole[..n], split[..n], "the ops depend on how the bytes were read");
}

/// The ops `reads` parse into, fed one read at a time, up to the first error.
fn parse_reads<'a>(reads: impl Iterator<Item = &'a [u8]>) -> Vec<ClientOp> {
    let parser = Parser { max_payload: 4096 };
    let (mut buf, mut ops) = (BytesMut::new(), Vec::new());
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match parser.next(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(_) => return ops,
            }
        }
    }
    ops
}

/// The CloudEvents decoder on any body, in each mode (the first byte picks it): structured,
/// batched, binary (`name: value` header lines, a blank line, then the body) and raw JSON. It
/// never panics, and every event it accepts has a valid routing subject.
pub fn cloudevents(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (content_type, headers, body) = match mode % 4 {
        0 => ("application/cloudevents+json", Vec::new(), rest),
        1 => ("application/cloudevents-batch+json", Vec::new(), rest),
        2 => {
            let end = rest.windows(2).position(|w| w == b"\n\n").unwrap_or(rest.len());
            let headers = String::from_utf8_lossy(&rest[..end])
                .lines()
                .filter_map(|line| line.split_once(": "))
                .map(|(name, value)| (format!("ce-{}", name.to_ascii_lowercase()), value.to_owned()))
                .collect();
            ("application/json", headers, &rest[(end + 2).min(rest.len())..])
        }
        _ => ("application/json", Vec::new(), rest),
    };
    let body = Bytes::copy_from_slice(body);
    let Ok(events) = codec::decode("fuzz.events", Some(content_type), &headers, body, SystemTime::now()) else {
        return;
    };
    for event in events {
        assert!(Subject::new(event.subject.clone()).is_ok(), "accepted an event on subject {:?}", event.subject);
    }
}

/// The config parser and validator on any text: it never panics; it accepts, or names its errors.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = Config::from_toml(text) {
        assert!(!errors.is_empty(), "a refused config names at least one error");
    }
}

/// Subject matching, two ways: `Pattern::matches` and the broker's `SubscriptionIndex` trie agree
/// on every valid pattern and subject (the input is `pattern NUL subject`).
pub fn subject(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((pattern, subject)) = text.split_once('\0') else { return };
    let (Ok(pattern), Ok(subject)) = (Pattern::new(pattern), Subject::new(subject)) else { return };
    let mut index = SubscriptionIndex::default();
    index.insert(&pattern, 1, ());
    let mut found = false;
    index.for_each_match(subject.as_str(), |_, _| found = true);
    assert_eq!(found, pattern.matches(subject.as_str()), "{pattern} and {subject}: the trie and the matcher disagree");
    assert_eq!(index.remove(&pattern, 1), Some(()));
    assert!(index.is_empty());
}
