//! An event as the bytes of one log record, and back: length-prefixed fields in a fixed order
//! (subject, context, extensions, data). Nothing but the event: no NATS envelope, no completion.

use bytes::Bytes;

use crate::event::{Context, Event};

/// Appends `event`'s bytes to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    let c = &event.context;
    for text in [&event.subject, &c.id, &c.source, &c.ty, &c.specversion] {
        put(out, text.as_bytes());
    }
    for text in [&c.subject, &c.time, &c.datacontenttype, &c.dataschema] {
        match text {
            Some(text) => {
                out.push(1);
                put(out, text.as_bytes());
            }
            None => out.push(0),
        }
    }
    out.extend_from_slice(&(event.extensions.len() as u32).to_le_bytes());
    for (name, value) in &event.extensions {
        put(out, name.as_bytes());
        put(out, value.as_bytes());
    }
    put(out, &event.data);
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The event `bytes` hold; `None` if they are not one (a record the checksum passed but this
/// version cannot read).
pub fn decode(bytes: &[u8]) -> Option<Event> {
    let mut reader = Reader(bytes);
    let subject = reader.text()?;
    let (id, source, ty, specversion) = (reader.text()?, reader.text()?, reader.text()?, reader.text()?);
    let ce_subject = reader.optional()?;
    let (time, datacontenttype, dataschema) = (reader.optional()?, reader.optional()?, reader.optional()?);
    let count = reader.u32()? as usize;
    let mut extensions = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        extensions.push((reader.text()?, reader.text()?));
    }
    let data = Bytes::copy_from_slice(reader.bytes()?);
    if !reader.0.is_empty() {
        return None;
    }
    let context = Context { id, source, ty, specversion, subject: ce_subject, time, datacontenttype, dataschema };
    Some(Event { subject, context, extensions, data, nats: None, completion: None, arrived: None })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*head))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        let (bytes, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(bytes)
    }

    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    fn optional(&mut self) -> Option<Option<String>> {
        let (flag, rest) = self.0.split_first()?;
        self.0 = rest;
        match flag {
            0 => Some(None),
            1 => self.text().map(Some),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_comes_back_as_it_was_and_a_cut_record_is_refused() {
        let event = crate::event::full_event();
        let mut bytes = Vec::new();
        encode(&event, &mut bytes);
        assert_eq!(decode(&bytes), Some(event));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
    }
}
