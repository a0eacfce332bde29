//! Raw mode: a body without CloudEvents attributes becomes an event's data, with every required
//! attribute made by the host (a UUIDv7 `id`, the transport's `source`, `type` [`RAW_TYPE`], the
//! time it arrived).

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::validate::{check_text, validate_subject};
use super::{DecodeError, RAW_TYPE, SPEC_VERSION, is_json_media_type};
use crate::event::{Context, Event};

/// A raw event on `subject` (checked) with `body` as its data and no content type: how a
/// transport without attributes (a NATS message without headers) carries one, at the least cost.
pub fn raw(source: &str, subject: String, body: Bytes, now: SystemTime) -> Result<Event, DecodeError> {
    validate_subject(&subject)?;
    decode(source, subject, None, body, now)
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
    decode(source, subject, Some(content_type), body, now)
}

/// The raw-mode event: the body as data, every required attribute filled by the host.
pub(super) fn decode(
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
    Ok(Event { subject, context, extensions: Vec::new(), data: body, nats: None, completion: None, arrived: None })
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
pub(super) fn rfc3339(since_epoch: Duration) -> Result<String, DecodeError> {
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
