//! One frame of a segment file, written and read back:
//!
//! ```text
//! kind u8 (1 event, 2 done) | length u32 LE | crc32 u32 LE of kind and payload | payload
//! payload: seq u64 LE, then the record of an event (`record`), nothing for a done mark
//! ```
//!
//! [`FrameReader`] reads a segment one frame at a time, so reading back a log never holds more
//! than one frame. It never decides what a frame means; the log does.

use std::io::{self, Read};

use super::Seq;

pub const EVENT: u8 = 1;
pub const DONE: u8 = 2;
pub const HEADER: usize = 9;

/// The largest event body (`[http] max_body`, `[service] max_payload`) durable mode accepts.
pub const MAX_EVENT_BYTES: usize = 64 << 20;
/// The largest record a frame holds: an event of [`MAX_EVENT_BYTES`] and room for its attributes.
/// The log refuses to write a larger one ([`super::TooLarge`]) and takes a longer frame for garbage.
pub const MAX_RECORD: usize = MAX_EVENT_BYTES + (1 << 20);
const MAX_PAYLOAD: usize = 8 + MAX_RECORD;

/// Appends a frame of `kind` holding `seq` and `body` to `out`.
pub fn write(out: &mut Vec<u8>, kind: u8, seq: Seq, body: &[u8]) {
    let len = (8 + body.len()) as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(&seq.to_le_bytes());
    crc.update(body);
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(body);
}

/// A frame read back: its kind, seq and body (the record, for an event).
pub struct Frame<'a> {
    pub kind: u8,
    pub seq: Seq,
    pub body: &'a [u8],
}

/// Why reading stopped before the end of a segment.
#[derive(Debug)]
pub enum Damage {
    /// The bytes at [`FrameReader::offset`] are not a whole, valid frame (a torn write or
    /// corruption); the reason says which.
    Bad(String),
    Io(io::Error),
}

/// Reads the frames of one segment in order, holding one frame's payload at a time.
pub struct FrameReader<R> {
    inner: R,
    /// Where the next frame starts: the end of the last good one.
    offset: u64,
    payload: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// `inner` should be buffered: the header and payload are read separately.
    pub fn new(inner: R) -> Self {
        FrameReader { inner, offset: 0, payload: Vec::new() }
    }

    /// The end of the last good frame: where damage starts, once [`next`](Self::next) reports some.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame, `None` at a clean end of the segment.
    pub fn next(&mut self) -> Result<Option<Frame<'_>>, Damage> {
        let mut header = [0; HEADER];
        match fill(&mut self.inner, &mut header).map_err(Damage::Io)? {
            0 => return Ok(None),
            HEADER => {}
            got => return Err(Damage::Bad(format!("a frame header cut after {got} of {HEADER} bytes"))),
        }
        let kind = header[0];
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let crc = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
        if kind != EVENT && kind != DONE || !(8..=MAX_PAYLOAD).contains(&len) {
            return Err(Damage::Bad(format!("no frame here (kind {kind}, length {len})")));
        }
        self.payload.resize(len, 0);
        let got = fill(&mut self.inner, &mut self.payload).map_err(Damage::Io)?;
        if got < len {
            return Err(Damage::Bad(format!("a frame of {len} bytes cut after {got}")));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[kind]);
        hasher.update(&self.payload);
        if hasher.finalize() != crc {
            return Err(Damage::Bad("checksum mismatch".into()));
        }
        self.offset += (HEADER + len) as u64;
        let (seq, body) = self.payload.split_at(8);
        let seq = Seq::from_le_bytes(seq.try_into().map_err(|_| Damage::Bad("no seq".into()))?);
        Ok(Some(Frame { kind, seq, body }))
    }
}

/// Reads until `buf` is full or the input ends; how many bytes it read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each frame's kind, seq and body.
    type Frames = Vec<(u8, Seq, Vec<u8>)>;

    /// The frames `bytes` hold, why reading stopped early if it did, and where.
    fn frames(bytes: &[u8]) -> (Frames, Option<String>, u64) {
        let mut reader = FrameReader::new(bytes);
        let mut found = Vec::new();
        loop {
            match reader.next() {
                Ok(Some(frame)) => found.push((frame.kind, frame.seq, frame.body.to_vec())),
                Ok(None) => return (found, None, reader.offset()),
                Err(Damage::Bad(reason)) => return (found, Some(reason), reader.offset()),
                Err(Damage::Io(err)) => panic!("{err}"),
            }
        }
    }

    #[test]
    fn frames_read_back_and_damage_stops_at_the_last_good_one() {
        let mut bytes = Vec::new();
        write(&mut bytes, EVENT, 7, b"record");
        write(&mut bytes, DONE, 7, b"");
        let whole = bytes.len() as u64;
        assert_eq!(frames(&bytes), (vec![(EVENT, 7, b"record".to_vec()), (DONE, 7, vec![])], None, whole));

        let first = (HEADER + 8 + 6) as u64;
        let (found, reason, offset) = frames(&bytes[..bytes.len() - 1]);
        assert_eq!((found.len(), offset), (1, first));
        assert!(reason.is_some_and(|r| r.contains("cut after 7")));

        let mut flipped = bytes.clone();
        flipped[HEADER + 9] ^= 1;
        let (found, reason, offset) = frames(&flipped);
        assert_eq!((found.len(), reason.as_deref(), offset), (0, Some("checksum mismatch"), 0));
    }

    #[test]
    fn a_length_past_the_limit_is_garbage_not_an_allocation() {
        let mut bytes = vec![EVENT];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let (_, reason, _) = frames(&bytes);
        assert!(reason.is_some_and(|r| r.starts_with("no frame here")));
    }
}
