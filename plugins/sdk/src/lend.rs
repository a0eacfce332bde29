//! The inputs the host lends a handler call: which the plugin still holds, which handles wait to go
//! back in the answer, what was read of all of them at once (`lent-subjects`, `lent-attributes`,
//! `lent-payloads`) and the payloads queued for the host (`set-lent-payloads`). State of the running
//! call only: `lend` starts it and `end_call` ends it, before the call answers.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use crate::event::{Event, HostHandle, Inner};
use crate::wit::types::Event as HostEvent;

/// What became of each input the host lent the running call, by position.
enum Lent {
    /// The event is alive, in the plugin's hands.
    Alive(*mut Inner),
    /// The plugin dropped the event: its handle waits to go back to the host in the answer.
    Returned(HostEvent),
    /// The handle went back to the host already.
    Gone,
}

thread_local! {
    /// The running call's inputs, by position (see [`Inner::lent`]).
    static LENT: RefCell<Vec<Lent>> = const { RefCell::new(Vec::new()) };
    /// What was read of all of them at once, by position.
    static LENT_READS: RefCell<LentReads> = const { RefCell::new(LentReads::new()) };
    /// Payloads the plugin gave inputs it has let go of, by position, not yet sent to the host.
    static LENT_PAYLOADS: RefCell<Vec<(u32, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

/// Sends the payloads written to inputs the plugin has let go of, in one crossing. The call's glue
/// does this before it answers: the host reads an input's payload only after the call.
pub(crate) fn flush_payloads() {
    let payloads = LENT_PAYLOADS.with_borrow_mut(std::mem::take);
    if !payloads.is_empty() {
        crate::wit::types::set_lent_payloads(&payloads);
    }
}

/// A string or payload that may be a part of a larger one several events share: the parts of a
/// batch's inputs arrive as one text, and each input keeps its part without a copy of its own.
pub(crate) struct Part<T: ?Sized> {
    all: Rc<T>,
    range: Range<usize>,
}

impl<T: ?Sized> Clone for Part<T> {
    fn clone(&self) -> Self {
        Part { all: self.all.clone(), range: self.range.clone() }
    }
}

impl Part<str> {
    pub(crate) fn own(text: String) -> Self {
        Part { range: 0..text.len(), all: text.into() }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.all[self.range.clone()]
    }
}

/// A payload read or written on its own: a part of a batch's payloads, or the plugin's own bytes.
pub(crate) enum Payload {
    Part(Part<[u8]>),
    Own(Vec<u8>),
}

impl Payload {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::Part(part) => &part.all[part.range.clone()],
            Payload::Own(data) => data,
        }
    }
}

/// Splits `all` into parts `lengths` long (`None`: no part there). Lengths that do not fit end the
/// list early, so the input they belong to reads its part alone.
fn split<T: ?Sized>(
    all: Rc<T>,
    lengths: impl IntoIterator<Item = Option<u32>>,
    fits: impl Fn(&T, Range<usize>) -> bool,
) -> Parts<T> {
    let mut start = 0;
    let mut parts = Vec::new();
    for length in lengths {
        let Some(length) = length else {
            parts.push(None);
            continue;
        };
        let range = start..start + length as usize;
        if !fits(&all, range.clone()) {
            break;
        }
        start = range.end;
        parts.push(Some(Part { all: all.clone(), range }));
    }
    parts
}

/// What a call read of all its inputs at once: the first input to ask for a part fetches that part
/// of every input in one crossing, since a handler that reads it of one event of a batch reads it
/// of them all, typically.
struct LentReads {
    subjects: Option<Parts<str>>,
    /// By attribute name.
    attributes: Vec<(String, Parts<str>)>,
    /// `Some(None)`: too large to read at once.
    payloads: Option<Option<Parts<[u8]>>>,
}

/// One part per input, by position; `None` where an input has none.
type Parts<T> = Vec<Option<Part<T>>>;

impl LentReads {
    const fn new() -> Self {
        LentReads { subjects: None, attributes: Vec::new(), payloads: None }
    }
}

/// Payloads of a batch larger than this together are read one by one.
const LENT_PAYLOADS_MAX: u64 = 1 << 20;

/// Runs `read` on the running call's reads, if it has several inputs (`None` for one input, which
/// reads its parts alone).
fn lent_reads<T>(read: impl FnOnce(&mut LentReads) -> T) -> Option<T> {
    if LENT.with_borrow(Vec::len) < 2 {
        return None;
    }
    Some(LENT_READS.with_borrow_mut(read))
}

/// The subject of the running call's input `at`, read with the other inputs'.
pub(crate) fn lent_subject(at: usize) -> Option<Part<str>> {
    lent_reads(|reads| {
        let subjects = reads.subjects.get_or_insert_with(|| {
            let lent = crate::wit::types::lent_subjects();
            split(lent.text.into(), lent.lengths, |text: &str, range| text.get(range).is_some())
        });
        subjects.get(at).cloned().flatten()
    })
    .flatten()
}

/// Attribute `name` of the running call's input `at`, read with the other inputs': `None` when it
/// cannot be read so, `Some(None)` when the input has no such attribute.
pub(crate) fn lent_attribute(at: usize, name: &str) -> Option<Option<String>> {
    lent_reads(|reads| {
        let known = reads.attributes.iter().position(|(known, _)| known == name);
        let at_known = match known {
            Some(known) => known,
            None => {
                let lent = crate::wit::types::lent_attributes(name);
                let values = split(lent.text.into(), lent.lengths, |text: &str, range| text.get(range).is_some());
                reads.attributes.push((name.to_owned(), values));
                reads.attributes.len() - 1
            }
        };
        let values = &reads.attributes[at_known].1;
        (at < values.len()).then(|| values[at].as_ref().map(|value| value.as_str().to_owned()))
    })
    .flatten()
}

/// Forgets what was read of attribute `name` of input `at`, which the plugin just changed.
pub(crate) fn changed_attribute(at: usize, name: &str, value: Option<&str>) {
    LENT_READS.with_borrow_mut(|reads| {
        if let Some((_, values)) = reads.attributes.iter_mut().find(|(known, _)| known == name)
            && let Some(entry) = values.get_mut(at)
        {
            *entry = value.map(|value| Part::<str>::own(value.to_owned()));
        }
    });
}

/// The payload of the running call's input `at`, read with the other inputs' unless together they
/// are large.
pub(crate) fn lent_payload(at: usize) -> Option<Part<[u8]>> {
    lent_reads(|reads| {
        let payloads = reads.payloads.get_or_insert_with(|| {
            let lent = crate::wit::types::lent_payloads(LENT_PAYLOADS_MAX)?;
            let lengths = lent.lengths.into_iter().map(Some);
            Some(split(lent.data.into(), lengths, |data: &[u8], range| data.get(range).is_some()))
        });
        payloads.as_ref().and_then(|payloads| payloads.get(at).cloned().flatten())
    })
    .flatten()
}

/// Starts a call: wraps the handles the host lent it, in order.
pub(crate) fn lend(inputs: Vec<HostEvent>) -> Vec<Event> {
    start_call();
    inputs.into_iter().map(lend_next).collect()
}

/// Starts a call of one input.
pub(crate) fn lend_one(input: HostEvent) -> Event {
    start_call();
    lend_next(input)
}

fn start_call() {
    LENT_READS.with_borrow_mut(|reads| *reads = LentReads::new());
    LENT_PAYLOADS.with_borrow_mut(Vec::clear);
    LENT.with_borrow_mut(Vec::clear);
}

/// Wraps the running call's next input.
fn lend_next(input: HostEvent) -> Event {
    let mut event = Event::with(Some(HostHandle::Lent(input)), None);
    LENT.with_borrow_mut(|all| {
        event.inner.lent = Some(all.len());
        all.push(Lent::Alive(&mut *event.inner));
    });
    event
}

/// The handle of input `at`, to answer the host with. An input the plugin still holds reads its
/// parts first and lets go of the handle, so it lives on as an event of its own.
pub(crate) fn take_lent(at: usize) -> Option<HostEvent> {
    let lent = LENT.with_borrow_mut(|all| all.get_mut(at).map(|lent| std::mem::replace(lent, Lent::Gone)));
    match lent? {
        Lent::Returned(handle) => Some(handle),
        // SAFETY: an `Alive` entry points at the `Inner` of a live `Event`: its `Drop` replaces
        // the entry, and `Inner` is boxed, so moving the event does not move it. The handler has
        // returned, so nothing borrows that event now, and the plugin is single-threaded.
        Lent::Alive(inner) => unsafe { &mut *inner }.keep_without_host(),
        Lent::Gone => None,
    }
}

/// Ends the running call: inputs the plugin kept (in its state, say) read their parts now, while
/// the host still lends them, and every handle not handed back is dropped.
pub(crate) fn end_call() {
    flush_payloads();
    for at in 0..LENT.with_borrow(Vec::len) {
        drop(take_lent(at));
    }
    start_call();
}

/// Queues the payload written to the running call's input `at`, for [`flush_payloads`].
pub(crate) fn queue_payload(at: usize, data: Vec<u8>) {
    LENT_PAYLOADS.with_borrow_mut(|payloads| payloads.push((at as u32, data)));
}

/// The plugin let go of its input `at`: its handle (if the event still had it) waits for the answer.
pub(crate) fn let_go(at: usize, host: Option<HostHandle>) {
    let lent = match host {
        Some(HostHandle::Lent(handle)) => Lent::Returned(handle),
        _ => Lent::Gone,
    };
    LENT.with_borrow_mut(|all| {
        if let Some(entry) = all.get_mut(at) {
            *entry = lent;
        }
    });
}
