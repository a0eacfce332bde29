//! The NATS client protocol on the wire. [`Parser`] turns what a client sends into [`ClientOp`]s,
//! incrementally (an op whose bytes have not all arrived waits for more), and the `write_*`
//! functions encode what the server sends: INFO, MSG, HMSG, PING, PONG, +OK, -ERR. Op names are
//! case-insensitive, as nats-server reads them. Knows nothing of connections, auth or the broker.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Longest control line (an op and its arguments) accepted, as nats-server's default.
pub const MAX_CONTROL_LINE: usize = 4096;

/// The op names a client may send.
const OPS: [&str; 7] = ["CONNECT", "PUB", "HPUB", "SUB", "UNSUB", "PING", "PONG"];

/// One operation from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// `CONNECT {json}`: the JSON text.
    Connect(Bytes),
    /// `PUB` or, with a header block, `HPUB`.
    Pub {
        subject: String,
        reply: Option<String>,
        headers: Option<Bytes>,
        payload: Bytes,
    },
    Sub {
        subject: String,
        queue: Option<String>,
        sid: String,
    },
    Unsub {
        sid: String,
        max: Option<u64>,
    },
    Ping,
    Pong,
}

/// Why the bytes from a client are not the protocol; the connection ends after its `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown operation `{0}`")]
    UnknownOperation(String),
    #[error("{op}: {reason}")]
    Malformed { op: &'static str, reason: String },
    #[error("a payload of {size} bytes is over the limit of {limit}")]
    MaxPayload { size: usize, limit: usize },
    #[error("a control line is over {MAX_CONTROL_LINE} bytes")]
    MaxControlLine,
}

impl ProtocolError {
    /// The text of the `-ERR` the client gets: nats-server's, which clients know.
    pub fn wire_text(&self) -> &'static str {
        match self {
            ProtocolError::UnknownOperation(_) | ProtocolError::Malformed { .. } => "Unknown Protocol Operation",
            ProtocolError::MaxPayload { .. } => "Maximum Payload Violation",
            ProtocolError::MaxControlLine => "Maximum Control Line Exceeded",
        }
    }
}

/// Parses client ops; `max_payload` bounds a message (headers and payload together).
#[derive(Debug, Clone, Copy)]
pub struct Parser {
    pub max_payload: usize,
}

impl Parser {
    /// Takes the next whole op from the front of `buf`; `Ok(None)` when more bytes are needed.
    pub fn next(&self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ProtocolError> {
        loop {
            let window = &buf[..buf.len().min(MAX_CONTROL_LINE + 2)];
            let Some(newline) = memchr::memchr(b'\n', window) else {
                // Like nats-server, refuse an unknown op as soon as its first bytes show it.
                let name_so_far = window.split(|&b| matches!(b, b' ' | b'\t' | b'\r')).next().unwrap_or_default();
                if !OPS.iter().any(|op| {
                    op.len() >= name_so_far.len()
                        && op.as_bytes()[..name_so_far.len()].eq_ignore_ascii_case(name_so_far)
                }) {
                    return Err(ProtocolError::UnknownOperation(
                        String::from_utf8_lossy(&name_so_far[..name_so_far.len().min(16)]).into_owned(),
                    ));
                }
                return if buf.len() > MAX_CONTROL_LINE { Err(ProtocolError::MaxControlLine) } else { Ok(None) };
            };
            let line = window[..newline].strip_suffix(b"\r").unwrap_or(&window[..newline]);
            if line.iter().all(u8::is_ascii_whitespace) {
                buf.advance(newline + 1);
                continue;
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| ProtocolError::Malformed { op: "control line", reason: "not UTF-8".into() })?;
            let (name, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let (words, count) = arguments(rest);
            let args = &words[..count];
            let body_start = newline + 1;
            let mut upper = [0u8; 8];
            let op = match upper_case(name, &mut upper) {
                "PUB" => {
                    let (subject, reply, size) = match *args {
                        [subject, size] => (subject, None, size),
                        [subject, reply, size] => (subject, Some(reply), size),
                        _ => return Err(malformed("PUB", "expected PUB <subject> [reply] <size>")),
                    };
                    let size = self.size("PUB", size)?;
                    let (subject, reply) = (subject.to_owned(), reply.map(str::to_owned));
                    let Some(payload) = take_body(buf, body_start, size, "PUB")? else { return Ok(None) };
                    return Ok(Some(ClientOp::Pub { subject, reply, headers: None, payload }));
                }
                "HPUB" => {
                    let (subject, reply, header_size, total) = match *args {
                        [subject, header_size, total] => (subject, None, header_size, total),
                        [subject, reply, header_size, total] => (subject, Some(reply), header_size, total),
                        _ => {
                            return Err(malformed(
                                "HPUB",
                                "expected HPUB <subject> [reply] <header size> <total size>",
                            ));
                        }
                    };
                    let header_size: usize =
                        header_size.parse().map_err(|_| malformed("HPUB", "the header size is not a number"))?;
                    let total = self.size("HPUB", total)?;
                    if header_size > total {
                        return Err(malformed("HPUB", "the header size is over the total size"));
                    }
                    let (subject, reply) = (subject.to_owned(), reply.map(str::to_owned));
                    let Some(mut message) = take_body(buf, body_start, total, "HPUB")? else { return Ok(None) };
                    let headers = message.split_to(header_size);
                    if !headers.starts_with(b"NATS/1.0") {
                        return Err(malformed("HPUB", "the header block does not start with NATS/1.0"));
                    }
                    return Ok(Some(ClientOp::Pub { subject, reply, headers: Some(headers), payload: message }));
                }
                "SUB" => {
                    let (subject, queue, sid) = match *args {
                        [subject, sid] => (subject, None, sid),
                        [subject, queue, sid] => (subject, Some(queue), sid),
                        _ => return Err(malformed("SUB", "expected SUB <subject> [queue group] <sid>")),
                    };
                    ClientOp::Sub { subject: subject.into(), queue: queue.map(Into::into), sid: sid.into() }
                }
                "UNSUB" => match *args {
                    [sid] => ClientOp::Unsub { sid: sid.into(), max: None },
                    [sid, max] => {
                        let max = max.parse().map_err(|_| malformed("UNSUB", "the max is not a number"))?;
                        ClientOp::Unsub { sid: sid.into(), max: Some(max) }
                    }
                    _ => return Err(malformed("UNSUB", "expected UNSUB <sid> [max]")),
                },
                "PING" => ClientOp::Ping,
                "PONG" => ClientOp::Pong,
                "CONNECT" => ClientOp::Connect(Bytes::copy_from_slice(rest.trim().as_bytes())),
                _ => {
                    let shown: String = name.chars().take(16).collect();
                    return Err(ProtocolError::UnknownOperation(shown));
                }
            };
            buf.advance(body_start);
            return Ok(Some(op));
        }
    }

    fn size(&self, op: &'static str, text: &str) -> Result<usize, ProtocolError> {
        let size: usize = text.parse().map_err(|_| malformed(op, "the size is not a number"))?;
        if size > self.max_payload {
            return Err(ProtocolError::MaxPayload { size, limit: self.max_payload });
        }
        Ok(size)
    }
}

/// The first five whitespace-separated words of `rest` and how many there are (no op takes more
/// than four, so five means too many), without allocating.
fn arguments(rest: &str) -> ([&str; 5], usize) {
    let mut words = [""; 5];
    let mut count = 0;
    for (slot, word) in words.iter_mut().zip(rest.split_ascii_whitespace()) {
        *slot = word;
        count += 1;
    }
    (words, count)
}

/// `name` in upper case, in `buf`; empty when longer than any op name.
fn upper_case<'a>(name: &str, buf: &'a mut [u8; 8]) -> &'a str {
    let Some(upper) = buf.get_mut(..name.len()) else { return "" };
    upper.copy_from_slice(name.as_bytes());
    upper.make_ascii_uppercase();
    std::str::from_utf8(upper).unwrap_or_default()
}

fn malformed(op: &'static str, reason: &str) -> ProtocolError {
    ProtocolError::Malformed { op, reason: reason.into() }
}

/// The `size` bytes after the control line (which ends at `start`) and their CRLF, removing the
/// whole op from `buf`; `None` until they have all arrived.
fn take_body(buf: &mut BytesMut, start: usize, size: usize, op: &'static str) -> Result<Option<Bytes>, ProtocolError> {
    let end = start + size;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(malformed(op, "the payload is longer than its size says"));
    }
    buf.advance(start);
    let body = buf.split_to(size).freeze();
    buf.advance(2);
    Ok(Some(body))
}

/// `INFO {json}`.
pub fn write_info(out: &mut BytesMut, info: &serde_json::Value) {
    out.put_slice(b"INFO ");
    out.put_slice(info.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

/// `MSG` (no headers) or `HMSG` (with a header block) for subscription `sid`.
pub fn write_msg(
    out: &mut BytesMut,
    subject: &str,
    sid: &str,
    reply: Option<&str>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    let mut number = itoa::Buffer::new();
    out.reserve(subject.len() + sid.len() + reply.map_or(0, str::len) + payload.len() + 48);
    out.put_slice(if headers.is_some() { b"HMSG " } else { b"MSG " });
    out.put_slice(subject.as_bytes());
    out.put_u8(b' ');
    out.put_slice(sid.as_bytes());
    out.put_u8(b' ');
    if let Some(reply) = reply {
        out.put_slice(reply.as_bytes());
        out.put_u8(b' ');
    }
    if let Some(headers) = headers {
        out.put_slice(number.format(headers.len()).as_bytes());
        out.put_u8(b' ');
        out.put_slice(number.format(headers.len() + payload.len()).as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(headers);
    } else {
        out.put_slice(number.format(payload.len()).as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// `-ERR 'text'`.
pub fn write_err(out: &mut BytesMut, text: &str) {
    out.put_slice(b"-ERR '");
    out.put_slice(text.as_bytes());
    out.put_slice(b"'\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (Vec<ClientOp>, Option<ProtocolError>) {
        let parser = Parser { max_payload: 1024 };
        let mut buf = BytesMut::from(input);
        let mut ops = Vec::new();
        loop {
            match parser.next(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => return (ops, None),
                Err(err) => return (ops, Some(err)),
            }
        }
    }

    #[test]
    fn parses_every_client_op_in_any_case() {
        let (ops, err) = parse_all(
            b"CONNECT {\"verbose\":false}\r\nsub foo 1\r\nSUB foo.* workers 2\r\nPUB foo 5\r\nhello\r\n\
              pub foo _INBOX.1 0\r\n\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nUNSUB 1\r\nUNSUB 2 10\r\nPING\r\npong\r\n",
        );
        assert_eq!(err, None);
        assert_eq!(
            ops,
            [
                ClientOp::Connect(Bytes::from_static(b"{\"verbose\":false}")),
                ClientOp::Sub { subject: "foo".into(), queue: None, sid: "1".into() },
                ClientOp::Sub { subject: "foo.*".into(), queue: Some("workers".into()), sid: "2".into() },
                ClientOp::Pub {
                    subject: "foo".into(),
                    reply: None,
                    headers: None,
                    payload: Bytes::from_static(b"hello")
                },
                ClientOp::Pub {
                    subject: "foo".into(),
                    reply: Some("_INBOX.1".into()),
                    headers: None,
                    payload: Bytes::new()
                },
                ClientOp::Pub {
                    subject: "foo".into(),
                    reply: None,
                    headers: Some(Bytes::from_static(b"NATS/1.0\r\n\r\n")),
                    payload: Bytes::from_static(b"hi")
                },
                ClientOp::Unsub { sid: "1".into(), max: None },
                ClientOp::Unsub { sid: "2".into(), max: Some(10) },
                ClientOp::Ping,
                ClientOp::Pong,
            ]
        );
    }

    #[test]
    fn an_op_split_anywhere_waits_for_the_rest() {
        let whole = b"PUB foo reply 11\r\nhello world\r\nPING\r\n";
        for split in 0..whole.len() {
            let parser = Parser { max_payload: 1024 };
            let mut buf = BytesMut::from(&whole[..split]);
            let mut ops = Vec::new();
            while let Some(op) = parser.next(&mut buf).unwrap() {
                ops.push(op);
            }
            buf.extend_from_slice(&whole[split..]);
            while let Some(op) = parser.next(&mut buf).unwrap() {
                ops.push(op);
            }
            assert_eq!(ops.len(), 2, "split at {split}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn bad_input_gets_the_error_nats_server_sends() {
        let err = |input: &[u8]| parse_all(input).1.expect("an error").wire_text();
        assert_eq!(err(b"FOO bar\r\n"), "Unknown Protocol Operation");
        assert_eq!(err(b"PUB foo\r\n"), "Unknown Protocol Operation");
        assert_eq!(err(b"PUB foo x\r\n"), "Unknown Protocol Operation");
        assert_eq!(err(b"PUB foo 3\r\nhelloooo\r\n"), "Unknown Protocol Operation");
        assert_eq!(err(b"HPUB foo 20 10\r\n"), "Unknown Protocol Operation");
        assert_eq!(err(b"SUB foo\r\n"), "Unknown Protocol Operation");
        assert_eq!(err(b"PUB foo 2000\r\n"), "Maximum Payload Violation");
        assert_eq!(err(&[b'X'; 5000]), "Unknown Protocol Operation");
        assert_eq!(err(&[b'P'; 5000]), "Unknown Protocol Operation");
        let mut long = b"PUB ".to_vec();
        long.extend([b'a'; 5000]);
        assert_eq!(err(&long), "Maximum Control Line Exceeded");
    }

    #[test]
    fn messages_are_encoded_with_and_without_headers() {
        let mut out = BytesMut::new();
        write_msg(&mut out, "foo", "1", None, None, b"hello");
        write_msg(&mut out, "foo", "2", Some("_INBOX.x"), Some(b"NATS/1.0\r\nA: b\r\n\r\n"), b"hi");
        assert_eq!(&out[..], b"MSG foo 1 5\r\nhello\r\nHMSG foo 2 _INBOX.x 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n");
    }
}
