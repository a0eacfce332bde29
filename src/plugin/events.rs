//! [`EventTable`]: contract 0.2's `event` resources in one instance's store, and the host side of
//! every method of that resource.
//!
//! A handler call lends the guest its input events (handles into this table) and collects what the
//! guest answered: the inputs as they now are, or the events it made with the constructor or
//! `clone`, moved back out. Nothing the guest does not ask for is copied into it.
//!
//! The table owns two rules. An input is the host's whatever the guest does with its handle: the
//! guest dropping it gives nothing up, and a handle kept past its call finds nothing (each slot's
//! generation is part of the handle, so a stale handle never reaches the event now in its slot).
//! And the events a guest made or changed count against its memory limit, so a guest cannot make
//! the host hold more than the guest itself may. It never checks an event's contents: the route
//! checks what a handler sends on, whatever contract the handler speaks.

use bytes::Bytes;
use wasmtime::component::Resource;

use super::bindings::v0_2::wit;
use super::convert::v0_2::{from_record, to_record};
use super::host::HostState;
use crate::event::Event;

/// The resource type of `event` as the bindings name it.
type Handle = Resource<wit::Event>;

/// A handle's representation is a slot index in its low bits and the slot's generation above.
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;

struct Entry {
    event: Event,
    /// Bytes counted against the limit for this entry: its size once the guest made or changed it.
    charge: usize,
    /// An input of the running call: the host takes it back when the call returns.
    lent: bool,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// The events of one store.
pub(crate) struct EventTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The handles lent to the running call, in the order the call receives them.
    lent: Vec<u32>,
    charged: usize,
    limit: usize,
}

impl EventTable {
    pub fn new(limit: usize) -> Self {
        EventTable { slots: Vec::new(), free: Vec::new(), lent: Vec::new(), charged: 0, limit }
    }

    /// Puts the input events of a call in the table; the guest gets a handle to each, in order.
    pub fn lend(&mut self, events: impl IntoIterator<Item = Event>) -> Vec<Handle> {
        self.lent.clear();
        events.into_iter().map(|event| self.lend_next(event)).collect()
    }

    /// Puts the one input of a call in the table.
    pub fn lend_one(&mut self, event: Event) -> Handle {
        self.lent.clear();
        self.lend_next(event)
    }

    fn lend_next(&mut self, event: Event) -> Handle {
        // An instance holds at most `limit` bytes of events it made, far fewer than 2^20 of them,
        // and lent events are taken back after each call: there is always a slot.
        let rep = self.insert(Entry { event, charge: 0, lent: true }).unwrap_or(u32::MAX);
        self.lent.push(rep);
        Resource::new_own(rep)
    }

    /// Takes an event out: an input after its call, or one the guest handed over.
    pub fn take(&mut self, handle: &Handle) -> Option<Event> {
        let index = self.index(handle.rep())?;
        let slot = &mut self.slots[index];
        let entry = slot.entry.take()?;
        slot.generation = (slot.generation + 1) & (u32::MAX >> INDEX_BITS);
        self.free.push(index as u32);
        self.charged -= entry.charge;
        Some(entry.event)
    }

    /// The slot index `rep` names, if its generation is current.
    fn index(&self, rep: u32) -> Option<usize> {
        let index = (rep & INDEX_MASK) as usize;
        let slot = self.slots.get(index)?;
        (slot.generation == rep >> INDEX_BITS && slot.entry.is_some()).then_some(index)
    }

    fn insert(&mut self, entry: Entry) -> wasmtime::Result<u32> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() <= INDEX_MASK as usize => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
            None => wasmtime::bail!(OverLimit(self.limit)),
        };
        let slot = &mut self.slots[index as usize];
        slot.entry = Some(entry);
        Ok(index | slot.generation << INDEX_BITS)
    }

    /// Adds an event the guest made, charging it.
    fn make(&mut self, event: Event) -> wasmtime::Result<Handle> {
        let charge = event.size();
        if self.charged + charge > self.limit {
            wasmtime::bail!(OverLimit(self.limit));
        }
        let rep = self.insert(Entry { event, charge, lent: false })?;
        self.charged += charge;
        Ok(Resource::new_own(rep))
    }

    /// The guest dropped its handle: an event it made goes, an input stays the host's.
    fn release(&mut self, handle: &Handle) {
        let lent =
            self.index(handle.rep()).is_some_and(|index| self.slots[index].entry.as_ref().is_some_and(|e| e.lent));
        if !lent {
            self.take(handle);
        }
    }

    fn get(&self, handle: &Handle) -> wasmtime::Result<&Event> {
        self.event(handle.rep()).ok_or_else(gone)
    }

    fn event(&self, rep: u32) -> Option<&Event> {
        let index = self.index(rep)?;
        Some(&self.slots[index].entry.as_ref()?.event)
    }

    /// The events lent to the running call, in order; none between calls, when they have all been
    /// taken back.
    fn lent_events(&self) -> impl Iterator<Item = &Event> {
        self.lent.iter().filter_map(|rep| self.event(*rep))
    }

    /// One string of each lent event, in order, as one text.
    fn lent_texts(&self, read: impl Fn(&Event) -> Option<&str>) -> wit::Texts {
        let mut text = String::new();
        let lengths = self
            .lent_events()
            .map(|event| {
                let value = read(event)?;
                text.push_str(value);
                Some(value.len() as u32)
            })
            .collect();
        wit::Texts { text, lengths }
    }

    /// The lent events' payloads, unless together they are larger than `max_bytes`.
    fn lent_payloads(&self, max_bytes: u64) -> Option<wit::Payloads> {
        let total: usize = self.lent_events().map(|event| event.data.len()).sum();
        if total as u64 > max_bytes {
            return None;
        }
        let mut data = Vec::with_capacity(total);
        let lengths = self
            .lent_events()
            .map(|event| {
                data.extend_from_slice(&event.data);
                event.data.len() as u32
            })
            .collect();
        Some(wit::Payloads { data, lengths })
    }

    /// Replaces the payload of the running call's input at `position`; a position past the inputs
    /// is the guest's error.
    fn set_lent_payload(&mut self, position: u32, data: Vec<u8>) -> wasmtime::Result<()> {
        let Some(rep) = self.lent.get(position as usize).copied() else {
            wasmtime::bail!("no event lent at position {position}");
        };
        self.change(&Resource::new_own(rep), |event| event.data = Bytes::from(data))
    }

    /// Changes an event as the guest asked and charges it at its new size. A changed event is no
    /// longer the message it arrived as, so what it carried of that message goes.
    fn change<T>(&mut self, handle: &Handle, apply: impl FnOnce(&mut Event) -> T) -> wasmtime::Result<T> {
        let index = self.index(handle.rep()).ok_or_else(gone)?;
        let entry = self.slots[index].entry.as_mut().ok_or_else(gone)?;
        let answer = apply(&mut entry.event);
        entry.event.nats = None;
        entry.event.arrived = None;
        let (old, new) = (entry.charge, entry.event.size());
        entry.charge = new;
        self.charged = self.charged - old + new;
        if self.charged > self.limit {
            wasmtime::bail!(OverLimit(self.limit));
        }
        Ok(answer)
    }
}

/// The trap of a guest whose events would hold more than its memory limit.
#[derive(Debug, thiserror::Error)]
#[error("the plugin's events would hold more than its memory limit of {0} bytes")]
pub(crate) struct OverLimit(pub usize);

fn gone() -> wasmtime::Error {
    wasmtime::format_err!("the event behind this handle is gone: an input handle works only during its call")
}

fn set_attribute(event: &mut Event, name: String, value: Option<String>) -> Result<(), wit::Error> {
    let c = &mut event.context;
    let slot = match name.as_str() {
        "id" => Ok(&mut c.id),
        "source" => Ok(&mut c.source),
        "type" => Ok(&mut c.ty),
        "specversion" => Ok(&mut c.specversion),
        "subject" => Err(&mut c.subject),
        "time" => Err(&mut c.time),
        "datacontenttype" => Err(&mut c.datacontenttype),
        "dataschema" => Err(&mut c.dataschema),
        _ => {
            let at = event.extensions.iter().position(|(key, _)| *key == name);
            match (at, value) {
                (Some(at), Some(value)) => event.extensions[at].1 = value,
                (None, Some(value)) => event.extensions.push((name, value)),
                (Some(at), None) => drop(event.extensions.remove(at)),
                (None, None) => {}
            }
            return Ok(());
        }
    };
    match (slot, value) {
        (Ok(required), Some(value)) => *required = value,
        (Ok(_), None) => {
            return Err(wit::Error { message: format!("`{name}` is a required attribute"), retryable: false });
        }
        (Err(optional), value) => *optional = value,
    }
    Ok(())
}

impl wit::Host for HostState {
    fn lent_subjects(&mut self) -> wasmtime::Result<wit::Texts> {
        Ok(self.events.lent_texts(|event| Some(&event.subject)))
    }

    fn lent_attributes(&mut self, name: String) -> wasmtime::Result<wit::Texts> {
        Ok(self.events.lent_texts(|event| event.attribute(&name)))
    }

    fn lent_payloads(&mut self, max_bytes: u64) -> wasmtime::Result<Option<wit::Payloads>> {
        Ok(self.events.lent_payloads(max_bytes))
    }

    fn set_lent_payloads(&mut self, payloads: Vec<(u32, Vec<u8>)>) -> wasmtime::Result<()> {
        for (position, data) in payloads {
            self.over_limit(|events| events.set_lent_payload(position, data))?;
        }
        Ok(())
    }
}

impl wit::HostEvent for HostState {
    fn new(&mut self, parts: wit::EventRecord) -> wasmtime::Result<Handle> {
        self.over_limit(|events| events.make(from_record(parts)))
    }

    fn get(&mut self, event: Handle) -> wasmtime::Result<wit::EventRecord> {
        let e = self.events.get(&event)?;
        let copy = Event {
            subject: e.subject.clone(),
            context: e.context.clone(),
            extensions: e.extensions.clone(),
            data: e.data.clone(),
            nats: None,
            completion: None,
            arrived: None,
        };
        Ok(to_record(copy))
    }

    fn set(&mut self, event: Handle, parts: wit::EventRecord) -> wasmtime::Result<()> {
        let parts = from_record(parts);
        self.over_limit(|events| {
            events.change(&event, |event| {
                event.subject = parts.subject;
                event.context = parts.context;
                event.extensions = parts.extensions;
                event.data = parts.data;
            })
        })
    }

    fn subject(&mut self, event: Handle) -> wasmtime::Result<String> {
        Ok(self.events.get(&event)?.subject.clone())
    }

    fn set_subject(&mut self, event: Handle, subject: String) -> wasmtime::Result<()> {
        self.over_limit(|events| events.change(&event, |event| event.subject = subject))
    }

    fn attribute(&mut self, event: Handle, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.events.get(&event)?.attribute(&name).map(str::to_owned))
    }

    fn set_attribute(
        &mut self,
        event: Handle,
        name: String,
        value: Option<String>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        self.over_limit(|events| events.change(&event, |event| set_attribute(event, name, value)))
    }

    fn extensions(&mut self, event: Handle) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.events.get(&event)?.extensions.clone())
    }

    fn data(&mut self, event: Handle) -> wasmtime::Result<Vec<u8>> {
        Ok(self.events.get(&event)?.data.to_vec())
    }

    fn data_len(&mut self, event: Handle) -> wasmtime::Result<u64> {
        Ok(self.events.get(&event)?.data.len() as u64)
    }

    fn set_data(&mut self, event: Handle, data: Vec<u8>) -> wasmtime::Result<()> {
        self.over_limit(|events| events.change(&event, |event| event.data = Bytes::from(data)))
    }

    fn clone(&mut self, event: Handle) -> wasmtime::Result<Handle> {
        let event = self.events.get(&event)?;
        // The payload is shared, not copied; the copy is a new event, not the message that arrived.
        let copy = Event { nats: None, completion: None, ..event.clone() };
        self.over_limit(|events| events.make(copy))
    }

    fn drop(&mut self, event: Handle) -> wasmtime::Result<()> {
        self.events.release(&event);
        Ok(())
    }
}

impl HostState {
    /// Runs `apply` on the table; a guest going over its limit is marked so the fault reads
    /// "out of memory", like a guest whose own memory would grow past it.
    fn over_limit<T>(&mut self, apply: impl FnOnce(&mut EventTable) -> wasmtime::Result<T>) -> wasmtime::Result<T> {
        let result = apply(&mut self.events);
        if let Err(err) = &result
            && err.is::<OverLimit>()
        {
            self.limiter.exceeded = true;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &'static [u8]) -> Event {
        let mut event = crate::event::full_event();
        event.data = Bytes::from_static(data);
        event
    }

    #[test]
    fn attributes_by_name_read_and_write_context_and_extensions() {
        let mut e = event(b"{}");
        assert_eq!(e.attribute("type"), Some(e.context.ty.as_str()));
        set_attribute(&mut e, "time".into(), None).unwrap();
        assert_eq!(e.attribute("time"), None);
        set_attribute(&mut e, "region".into(), Some("eu".into())).unwrap();
        set_attribute(&mut e, "region".into(), Some("us".into())).unwrap();
        assert_eq!(e.extension("region"), Some("us"));
        set_attribute(&mut e, "region".into(), None).unwrap();
        assert_eq!(e.extension("region"), None);
        let err = set_attribute(&mut e, "id".into(), None).unwrap_err();
        assert!(err.message.contains("required"), "{}", err.message);
    }

    #[test]
    fn inputs_are_lent_and_taken_back_and_stale_handles_find_nothing() {
        let mut table = EventTable::new(1 << 20);
        let a = table.lend_one(event(b"a"));
        // The guest dropping an input's handle gives nothing up.
        table.release(&a);
        assert_eq!(table.take(&a).map(|e| e.data), Some(Bytes::from_static(b"a")));
        assert!(table.take(&a).is_none(), "taken once");
        let b = table.lend_one(event(b"b"));
        assert_eq!(b.rep() & INDEX_MASK, a.rep() & INDEX_MASK, "the slot is reused");
        // A handle kept from the earlier call reaches nothing, not the event now in its slot.
        assert!(table.get(&a).is_err());
        table.release(&a);
        assert!(table.get(&b).is_ok());
    }

    #[test]
    fn lent_parts_come_in_order_during_the_call_only() {
        let mut table = EventTable::new(1 << 20);
        let subjects = ["a.b", "orders.eu", "x"];
        let mut events = subjects.map(|subject| Event { subject: subject.into(), ..event(b"ab") });
        events[1].extensions.push(("region".into(), "eu".into()));
        events[2].data = Bytes::from_static(b"c");
        let handles = table.lend(events);
        let lent = table.lent_texts(|event| Some(&event.subject));
        assert_eq!((lent.text.as_str(), lent.lengths), ("a.borders.eux", vec![Some(3), Some(9), Some(1)]));
        let lent = table.lent_texts(|event| event.attribute("region"));
        assert_eq!((lent.text.as_str(), lent.lengths), ("eu", vec![None, Some(2), None]));
        let payloads = table.lent_payloads(5).expect("5 bytes fit");
        assert_eq!((payloads.data.as_slice(), payloads.lengths), (&b"ababc"[..], vec![2, 2, 1]));
        assert!(table.lent_payloads(4).is_none(), "more than the bound");
        handles.iter().for_each(|handle| drop(table.take(handle)));
        assert!(table.lent_texts(|event| Some(&event.subject)).lengths.is_empty(), "nothing is lent between calls");
    }

    #[test]
    fn lent_payloads_are_set_by_position_within_the_inputs_and_the_limit() {
        let size = event(b"").size();
        let mut table = EventTable::new(size * 4);
        let handles = table.lend([event(b"a"), event(b"b")]);
        table.set_lent_payload(1, b"new".to_vec()).unwrap();
        assert_eq!(table.get(&handles[1]).unwrap().data, Bytes::from_static(b"new"));
        assert_eq!(table.get(&handles[0]).unwrap().data, Bytes::from_static(b"a"), "only the one named");
        let err = table.set_lent_payload(2, Vec::new()).unwrap_err();
        assert!(err.to_string().contains("no event lent at position 2"), "{err:#}");
        let err = table.set_lent_payload(0, vec![0; size * 4]).unwrap_err();
        assert!(err.is::<OverLimit>(), "{err:#}");
        handles.iter().for_each(|handle| drop(table.take(handle)));
        assert!(table.set_lent_payload(0, Vec::new()).is_err(), "nothing is lent between calls");
    }

    #[test]
    fn what_the_guest_makes_or_grows_counts_against_its_limit() {
        let size = event(b"").size();
        let mut table = EventTable::new(size * 2 + size / 2);
        let input = table.lend_one(event(b""));
        let first = table.make(event(b"")).unwrap();
        table.make(event(b"")).unwrap();
        assert!(table.make(event(b"")).unwrap_err().is::<OverLimit>(), "a third one is over the limit");
        // Dropping an event it made frees its charge.
        table.release(&first);
        assert!(table.get(&first).is_err());
        table.make(event(b"")).unwrap();
        // Changing an input charges it at its new size.
        let err = table.change(&input, |e| e.data = Bytes::from(vec![0; size])).unwrap_err();
        assert!(err.is::<OverLimit>(), "{err:#}");
    }
}
