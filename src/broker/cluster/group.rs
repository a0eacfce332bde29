//! Several events in one stored message: the format of a route stream's messages that hold more
//! than one event. One JetStream message per event costs the cluster a replicated write when it is
//! stored, a delivery and a replicated acknowledgement when it is done; a group pays these once for
//! all its events. Each event is framed with its context as a NATS header block (CloudEvents
//! binary mode, as a message of one event has it), its subject and its data:
//!
//! ```text
//! u32 header block length | header block | u32 subject length | subject | u32 data length | data
//! ```
//!
//! lengths big-endian, frames back to back; the message says how many with its [`GROUP_HEADER`].
//! This module only encodes and decodes; storing and pulling are the writer's and the consumer's.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

use crate::codec::nats as binding;
use crate::event::Event;

/// The header that marks a stored message as a group, with the number of its events.
pub const GROUP_HEADER: &str = "Eventyard-Events";

/// One event, ready to be stored: alone or in a group.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The event's subject (without the stream's prefix).
    pub subject: String,
    /// Its context as a NATS header block.
    pub headers: Bytes,
    pub data: Bytes,
}

impl Frame {
    pub fn of(event: &Event) -> Frame {
        Frame { subject: event.subject.clone(), headers: binding::context_headers(event), data: event.data.clone() }
    }

    /// Bytes the frame takes in a group's payload.
    pub fn size(&self) -> usize {
        12 + self.headers.len() + self.subject.len() + self.data.len()
    }
}

/// The payload of a group message holding `frames`.
pub fn encode(frames: &[Frame]) -> Bytes {
    let size = frames.iter().map(Frame::size).sum();
    let mut payload = BytesMut::with_capacity(size);
    for frame in frames {
        for part in [&frame.headers[..], frame.subject.as_bytes(), &frame.data[..]] {
            payload.put_u32(part.len() as u32);
            payload.put_slice(part);
        }
    }
    payload.freeze()
}

/// The frames of a group message's payload; `count` is what its [`GROUP_HEADER`] says. Every part
/// is a slice of `payload`, not a copy.
pub fn decode(mut payload: Bytes, count: usize) -> Result<Vec<Frame>, String> {
    let mut frames = Vec::with_capacity(count.min(payload.len() / 12));
    while !payload.is_empty() {
        let headers = part(&mut payload)?;
        let subject = part(&mut payload)?;
        let subject = String::from_utf8(subject.to_vec()).map_err(|_| "a grouped event's subject is not UTF-8")?;
        let data = part(&mut payload)?;
        frames.push(Frame { subject, headers, data });
    }
    if frames.len() != count {
        return Err(format!("a group says it holds {count} events and holds {}", frames.len()));
    }
    Ok(frames)
}

/// The next length-prefixed part of `payload`.
fn part(payload: &mut Bytes) -> Result<Bytes, String> {
    if payload.len() < 4 {
        return Err("a group ends inside a length".to_owned());
    }
    let len = payload.get_u32() as usize;
    if payload.len() < len {
        return Err(format!("a group's part of {len} bytes runs past its end ({} left)", payload.len()));
    }
    Ok(payload.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(subject: &str, data: &'static [u8]) -> Frame {
        let mut event = crate::event::full_event();
        event.subject = subject.to_owned();
        event.data = Bytes::from_static(data);
        Frame::of(&event)
    }

    #[test]
    fn frames_come_back_as_they_were_stored() {
        let frames = [frame("orders.new", b"{\"n\":1}"), frame("orders.é", b""), frame("x", &[0, 1, 2, 255])];
        let payload = encode(&frames);
        assert_eq!(payload.len(), frames.iter().map(Frame::size).sum::<usize>());
        let decoded = decode(payload, 3).unwrap();
        for (back, sent) in decoded.iter().zip(&frames) {
            assert_eq!((&back.subject, &back.headers, &back.data), (&sent.subject, &sent.headers, &sent.data));
        }
    }

    #[test]
    fn a_damaged_group_is_refused_not_misread() {
        let frames = [frame("a", b"one"), frame("b", b"two")];
        let payload = encode(&frames);
        assert!(decode(payload.clone(), 3).unwrap_err().contains("holds 2"));
        for cut in [1, 5, payload.len() - 1] {
            assert!(decode(payload.slice(..cut), 1).is_err(), "cut at {cut}");
        }
        let mut bad = BytesMut::from(&payload[..]);
        bad[3] = 0xff;
        assert!(decode(bad.freeze(), 2).unwrap_err().contains("runs past its end"));
        assert!(decode(Bytes::new(), 1).is_err());
    }
}
