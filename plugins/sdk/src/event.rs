//! The [`Event`] a plugin sees, with helpers for JSON data, extensions and the CloudEvents
//! structured JSON form that sinks write.
//!
//! An event a handler receives stays in the host until the handler reads it: reading a field
//! (`event.data`, `event.context.id`) fetches every part once, the accessor methods
//! ([`Event::subject`], [`Event::data`], [`Event::attribute`]) fetch only what they return, and
//! the setters change the host's event in place. So a handler that reads only the subject never
//! copies the payload, and one that keeps the event unchanged sends nothing back.

use std::cell::{Cell, OnceCell};
use std::ops::{Deref, DerefMut};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::lend::{Part, Payload, changed_attribute, lent_attribute, lent_payload, lent_subject};
use crate::wit::types::Event as HostEvent;
pub use crate::wit::types::{Context, EventRecord};

/// The extension that carries an event's routing key.
const ROUTING_KEY: &str = "routingkey";

/// The CloudEvents context attributes, which `set_extension` must not reach through the host's
/// attribute setter (that one sets these in the context).
const CONTEXT_ATTRIBUTES: [&str; 8] =
    ["id", "source", "type", "specversion", "subject", "time", "datacontenttype", "dataschema"];

/// One event. Dereferences to its [`EventRecord`] (`subject`, `context`, `extensions`, `data`),
/// so its parts read and change like fields; see the module docs for what each access costs.
pub struct Event {
    /// Boxed so that its address stays put while the event moves: the running call's list of
    /// lent events points at it (see [`crate::lend`]).
    pub(crate) inner: Box<Inner>,
}

pub(crate) struct Inner {
    /// The host's event behind this one; `None` for an event made here, whose `parts` are set.
    host: Option<HostHandle>,
    /// Every part, once read from the host (or made here).
    parts: OnceCell<EventRecord>,
    /// `parts` were changed here: the host's copy is behind.
    changed: bool,
    /// The subject and data, when read on their own.
    subject: OnceCell<Part<str>>,
    data: OnceCell<Payload>,
    /// `data` holds a payload the host's event does not have yet (see [`crate::lend::flush_payloads`]).
    pending: Cell<bool>,
    /// Position in the running call's lent events, while this is one of them.
    pub(crate) lent: Option<usize>,
}

pub(crate) enum HostHandle {
    /// An input of the running call: the host's, lent until the call returns.
    Lent(HostEvent),
    /// An event the plugin holds: a copy the host made for `clone`.
    Owned(HostEvent),
}

impl HostHandle {
    fn event(&self) -> &HostEvent {
        match self {
            HostHandle::Lent(event) | HostHandle::Owned(event) => event,
        }
    }
}

impl Inner {
    fn host(&self) -> &HostEvent {
        match &self.host {
            Some(host) => host.event(),
            None => unreachable!("an event made here has its parts"),
        }
    }

    fn parts(&self) -> &EventRecord {
        self.parts.get_or_init(|| {
            self.flush();
            self.host().get()
        })
    }

    /// Gives the host's event the payload written here, if it does not have it yet.
    fn flush(&self) {
        if self.pending.replace(false)
            && let Some(data) = self.data.get()
        {
            self.host().set_data(data.as_bytes());
        }
    }

    /// Reads the parts and gives up the host's handle: the event is the plugin's own from now on.
    pub(crate) fn keep_without_host(&mut self) -> Option<HostEvent> {
        self.parts();
        self.lent = None;
        match self.host.take()? {
            HostHandle::Lent(handle) | HostHandle::Owned(handle) => Some(handle),
        }
    }

    /// Whether the host's event is as this one: it has one, and its parts were not changed here
    /// (changes through the setters go to both).
    fn host_current(&self) -> bool {
        self.host.is_some() && !self.changed
    }

    /// The parts, read already, to change alongside the host's event.
    fn parts_mut_quietly(&mut self) -> &mut EventRecord {
        self.parts.get_mut().unwrap_or_else(|| unreachable!("read already"))
    }

    fn parts_mut(&mut self) -> &mut EventRecord {
        self.parts();
        self.changed = true;
        self.parts.get_mut().unwrap_or_else(|| unreachable!("just read"))
    }
}

impl Event {
    pub(crate) fn with(host: Option<HostHandle>, parts: Option<EventRecord>) -> Event {
        let inner = Inner {
            host,
            parts: parts.map(OnceCell::from).unwrap_or_default(),
            changed: false,
            subject: OnceCell::new(),
            data: OnceCell::new(),
            pending: Cell::new(false),
            lent: None,
        };
        Event { inner: Box::new(inner) }
    }

    /// Whether this is the running call's input at position `at`.
    pub(crate) fn is_lent_at(&self, at: usize) -> bool {
        self.inner.lent == Some(at)
    }

    /// Queues the payload written to a lent input for the host (sent with the others' before the
    /// call answers), or gives it to the host now for any other event.
    fn queue_payload(&mut self) {
        let Some(at) = self.inner.lent else { return self.inner.flush() };
        if self.inner.pending.replace(false)
            && let Some(Payload::Own(data)) = self.inner.data.take()
        {
            crate::lend::queue_payload(at, data);
        }
    }

    /// Brings the host's copy up to date with changes made to the parts here.
    fn write_back(&mut self) {
        if self.inner.changed
            && let (Some(host), Some(parts)) = (&self.inner.host, self.inner.parts.get())
        {
            host.event().set(parts);
            self.inner.changed = false;
        }
    }

    /// The event as a handle the host can take back: the one it lent or made, or a new event made
    /// of the parts.
    pub(crate) fn into_host(mut self) -> HostEvent {
        self.queue_payload();
        self.write_back();
        match self.inner.host.take() {
            Some(HostHandle::Owned(event) | HostHandle::Lent(event)) => event,
            None => HostEvent::new(self.inner.parts()),
        }
    }

    /// The event's parts, read whole.
    pub fn into_record(mut self) -> EventRecord {
        self.inner.parts();
        self.inner.parts.take().unwrap_or_else(|| unreachable!("just read"))
    }

    /// The routing subject, fetching only it (and, for the input of a batch, the other inputs'
    /// subjects with it).
    pub fn subject(&self) -> &str {
        match self.inner.parts.get() {
            Some(parts) => &parts.subject,
            None => self
                .inner
                .subject
                .get_or_init(|| {
                    self.inner
                        .lent
                        .and_then(lent_subject)
                        .unwrap_or_else(|| Part::<str>::own(self.inner.host().subject()))
                })
                .as_str(),
        }
    }

    /// Sets the routing subject.
    pub fn set_subject(&mut self, subject: impl Into<String>) {
        let subject = subject.into();
        if !self.inner.host_current() {
            return self.inner.parts_mut().subject = subject;
        }
        self.inner.host().set_subject(&subject);
        match self.inner.parts.get_mut() {
            Some(parts) => parts.subject = subject,
            None => self.inner.subject = OnceCell::from(Part::<str>::own(subject)),
        }
    }

    /// The payload, fetching only it (and, for the input of a batch, the other inputs' with it).
    pub fn data(&self) -> &[u8] {
        match self.inner.parts.get() {
            Some(parts) => &parts.data,
            None => self
                .inner
                .data
                .get_or_init(|| {
                    self.inner
                        .lent
                        .and_then(lent_payload)
                        .map_or_else(|| Payload::Own(self.inner.host().data()), Payload::Part)
                })
                .as_bytes(),
        }
    }

    /// The payload's length, without fetching it.
    pub fn data_len(&self) -> usize {
        match (self.inner.parts.get(), self.inner.data.get()) {
            (Some(parts), _) => parts.data.len(),
            (None, Some(data)) => data.as_bytes().len(),
            (None, None) => self.inner.host().data_len() as usize,
        }
    }

    /// Replaces the payload.
    pub fn set_data(&mut self, data: impl Into<Vec<u8>>) {
        let data = data.into();
        if !self.inner.host_current() {
            return self.inner.parts_mut().data = data;
        }
        if self.inner.parts.get().is_some() {
            self.inner.host().set_data(&data);
            return self.inner.parts_mut_quietly().data = data;
        }
        // A lent input's payload goes to the host with the others' when the call answers.
        match self.inner.lent {
            Some(_) => self.inner.pending.set(true),
            None => self.inner.host().set_data(&data),
        }
        self.inner.data = OnceCell::from(Payload::Own(data));
    }

    /// A context attribute by its CloudEvents name (`id`, `source`, `type`, `specversion`,
    /// `subject`, `time`, `datacontenttype`, `dataschema`), otherwise the extension of that name;
    /// fetches only it.
    pub fn attribute(&self, name: &str) -> Option<String> {
        let Some(parts) = self.inner.parts.get() else {
            let lent = self.inner.lent.and_then(|at| lent_attribute(at, name));
            return lent.unwrap_or_else(|| self.inner.host().attribute(name));
        };
        let c = &parts.context;
        match name {
            "id" => Some(c.id.clone()),
            "source" => Some(c.source.clone()),
            "type" => Some(c.type_.clone()),
            "specversion" => Some(c.specversion.clone()),
            "subject" => c.subject.clone(),
            "time" => c.time.clone(),
            "datacontenttype" => c.datacontenttype.clone(),
            "dataschema" => c.dataschema.clone(),
            _ => self.extension(name).map(str::to_owned),
        }
    }

    /// Sets the attribute or extension `name` (as [`Event::attribute`] names them); `None` removes
    /// it. A required attribute (`id`, `source`, `type`, `specversion`) cannot be removed.
    pub fn set_attribute(&mut self, name: &str, value: Option<&str>) -> Result<(), Error> {
        if !self.inner.host_current() {
            return set_in(self.inner.parts_mut(), name, value);
        }
        self.write_attribute(name, value)?;
        match self.inner.parts.get() {
            Some(_) => set_in(self.inner.parts_mut_quietly(), name, value),
            None => Ok(()),
        }
    }

    /// Sets attribute `name` in the host's event, and in what the call read of it.
    fn write_attribute(&self, name: &str, value: Option<&str>) -> Result<(), Error> {
        self.inner.host().set_attribute(name, value)?;
        if let Some(at) = self.inner.lent {
            changed_attribute(at, name, value);
        }
        Ok(())
    }

    /// The event's `id`, for messages (fetches only it).
    fn id(&self) -> String {
        self.attribute("id").unwrap_or_default()
    }
}

/// Sets attribute or extension `name` of `parts` (as [`Event::set_attribute`] names them).
fn set_in(parts: &mut EventRecord, name: &str, value: Option<&str>) -> Result<(), Error> {
    let value = value.map(str::to_owned);
    let c = &mut parts.context;
    let slot = match name {
        "id" => Ok(&mut c.id),
        "source" => Ok(&mut c.source),
        "type" => Ok(&mut c.type_),
        "specversion" => Ok(&mut c.specversion),
        "subject" => Err(&mut c.subject),
        "time" => Err(&mut c.time),
        "datacontenttype" => Err(&mut c.datacontenttype),
        "dataschema" => Err(&mut c.dataschema),
        _ => {
            let extensions = &mut parts.extensions;
            let at = extensions.iter().position(|(key, _)| key == name);
            match (at, value) {
                (Some(at), Some(value)) => extensions[at].1 = value,
                (None, Some(value)) => extensions.push((name.to_owned(), value)),
                (Some(at), None) => drop(extensions.remove(at)),
                (None, None) => {}
            }
            return Ok(());
        }
    };
    match (slot, value) {
        (Ok(required), Some(value)) => *required = value,
        (Ok(_), None) => return Err(Error::permanent(format!("`{name}` is a required attribute"))),
        (Err(optional), value) => *optional = value,
    }
    Ok(())
}

impl Deref for Event {
    type Target = EventRecord;

    fn deref(&self) -> &EventRecord {
        self.inner.parts()
    }
}

impl DerefMut for Event {
    fn deref_mut(&mut self) -> &mut EventRecord {
        self.inner.parts_mut()
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let Some(at) = self.inner.lent else { return };
        // Changes made to a lent input are changes to the event the host sends on for `keep`.
        self.write_back();
        self.queue_payload();
        crate::lend::let_go(at, self.inner.host.take());
    }
}

impl Clone for Event {
    /// A copy. Of an event the host holds and that was not changed here, the host makes the copy,
    /// sharing the payload, so nothing is fetched.
    fn clone(&self) -> Event {
        match (&self.inner.host, self.inner.changed) {
            (Some(host), false) => {
                self.inner.flush();
                Event::with(Some(HostHandle::Owned(HostEvent::clone(host.event()))), None)
            }
            _ => Event::with(None, Some(self.inner.parts().clone())),
        }
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.parts().fmt(f)
    }
}

impl From<EventRecord> for Event {
    fn from(parts: EventRecord) -> Event {
        Event::with(None, Some(parts))
    }
}

impl Event {
    /// An event on `subject` with exactly the `id`, `source`, `type` and `data` given, and no other
    /// attribute. Calls no host function, so it also works in a plugin's native unit tests.
    pub fn from_parts(
        subject: impl Into<String>,
        id: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Event {
        Event::from(EventRecord {
            context: Context {
                id: id.into(),
                source: source.into(),
                type_: ty.into(),
                specversion: "1.0".into(),
                subject: None,
                time: None,
                datacontenttype: None,
                dataschema: None,
            },
            subject: subject.into(),
            extensions: Vec::new(),
            data: data.into(),
        })
    }

    /// A new event on `subject` with CloudEvents `type` and raw `data`; `id`, `source` and `time`
    /// are filled from the host clock and the subject.
    pub fn new(subject: impl Into<String>, ty: impl Into<String>, data: impl Into<Vec<u8>>) -> Event {
        let subject = subject.into();
        let now = crate::clock::now_nanos();
        Event::from(EventRecord {
            context: Context {
                id: format!("{now:x}-{:x}", next_sequence()),
                source: format!("eventyard:plugin/{subject}"),
                type_: ty.into(),
                specversion: "1.0".into(),
                subject: None,
                time: Some(crate::clock::rfc3339(now)),
                datacontenttype: None,
                dataschema: None,
            },
            subject,
            extensions: Vec::new(),
            data: data.into(),
        })
    }

    /// A new event like [`Event::new`] whose data is `value` as JSON.
    pub fn new_json(subject: impl Into<String>, ty: impl Into<String>, value: &impl Serialize) -> Result<Event, Error> {
        let mut event = Event::new(subject, ty, Vec::new());
        event.set_json(value)?;
        Ok(event)
    }

    /// Parses the data as JSON into `T`; a permanent error says why it does not fit. Fetches only
    /// the data.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(self.data())
            .map_err(|err| Error::permanent(format!("event {}: data is not the expected JSON: {err}", self.id())))
    }

    /// Replaces the data with `value` as JSON and sets `datacontenttype` to `application/json`.
    pub fn set_json(&mut self, value: &impl Serialize) -> Result<(), Error> {
        let data = serde_json::to_vec(value)
            .map_err(|err| Error::permanent(format!("event {}: cannot encode JSON data: {err}", self.id())))?;
        self.set_data(data);
        self.set_attribute("datacontenttype", Some("application/json"))
    }

    /// The value of extension `name`, if set.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Sets extension `name` to `value`, replacing an earlier value.
    pub fn set_extension(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        if !CONTEXT_ATTRIBUTES.contains(&name.as_str()) {
            // Cannot fail: only required context attributes refuse a value, and `name` is none.
            let _ = self.set_attribute(&name, Some(&value));
            return;
        }
        match self.extensions.iter_mut().find(|(key, _)| *key == name) {
            Some(entry) => entry.1 = value,
            None => self.extensions.push((name, value)),
        }
    }

    /// Removes extension `name` and returns its value.
    pub fn remove_extension(&mut self, name: &str) -> Option<String> {
        if !CONTEXT_ATTRIBUTES.contains(&name) {
            let value = self.attribute(name)?;
            let _ = self.set_attribute(name, None);
            return Some(value);
        }
        let at = self.extensions.iter().position(|(key, _)| key == name)?;
        Some(self.extensions.remove(at).1)
    }

    /// The routing key (the `routingkey` extension), if set.
    pub fn routing_key(&self) -> Option<&str> {
        self.extension(ROUTING_KEY)
    }
    /// The event in CloudEvents 1.0 structured JSON form, as sinks write it: `specversion`, `id`,
    /// `source`, `type`, then `subject`, `time`, `datacontenttype` and `dataschema` when set, and
    /// each extension as a top-level string attribute. An extension named like one of those
    /// attributes (or `data`, `data_base64`) is left out rather than overwrite it.
    ///
    /// `data` holds the payload as a JSON value when `datacontenttype` is a JSON media type
    /// (`application/json`, `text/json` or `*/*+json`, parameters allowed) and the payload parses;
    /// otherwise `data_base64` holds it base64-encoded. An empty payload gives neither. The routing
    /// subject is not part of the CloudEvents form. Object keys come out sorted, so equal events
    /// give equal JSON text.
    ///
    /// ```ignore
    /// let line = serde_json::to_string(&event.to_cloudevents_json())?;
    /// ```
    pub fn to_cloudevents_json(&self) -> serde_json::Value {
        use serde_json::{Map, Value};

        let c = &self.context;
        let mut out = Map::new();
        out.insert("specversion".into(), Value::String(c.specversion.clone()));
        out.insert("id".into(), Value::String(c.id.clone()));
        out.insert("source".into(), Value::String(c.source.clone()));
        out.insert("type".into(), Value::String(c.type_.clone()));
        let optional = [
            ("subject", &c.subject),
            ("time", &c.time),
            ("datacontenttype", &c.datacontenttype),
            ("dataschema", &c.dataschema),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                out.insert(name.into(), Value::String(value.clone()));
            }
        }
        for (name, value) in &self.extensions {
            if !RESERVED_ATTRIBUTES.contains(&name.as_str()) {
                out.insert(name.clone(), Value::String(value.clone()));
            }
        }
        if !self.data.is_empty() {
            let json = c
                .datacontenttype
                .as_deref()
                .filter(|media_type| is_json_media_type(media_type))
                .and_then(|_| serde_json::from_slice::<Value>(&self.data).ok());
            match json {
                Some(value) => out.insert("data".into(), value),
                None => out.insert("data_base64".into(), Value::String(BASE64.encode(&self.data))),
            };
        }
        Value::Object(out)
    }
}

/// Attribute names of the CloudEvents JSON form that an extension may not take over.
const RESERVED_ATTRIBUTES: [&str; 10] =
    ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"];

/// Whether a `datacontenttype` declares JSON data: `*/json` or `*/*+json` (CloudEvents JSON
/// format, 3.1.1), ignoring case and parameters such as `; charset=utf-8` — the host's rule.
fn is_json_media_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media_type.split_once('/').is_some_and(|(_, subtype)| subtype == "json" || subtype.ends_with("+json"))
}

/// A per-instance counter that keeps ids unique within one nanosecond.
fn next_sequence() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(datacontenttype: Option<&str>, data: &[u8]) -> Event {
        Event::from(EventRecord {
            subject: "orders.eu.created".into(),
            context: Context {
                id: "e-1".into(),
                source: "/shop".into(),
                type_: "com.example.order.created".into(),
                specversion: "1.0".into(),
                subject: Some("order-7".into()),
                time: Some("2022-07-12T07:08:09Z".into()),
                datacontenttype: datacontenttype.map(str::to_owned),
                dataschema: None,
            },
            extensions: vec![("routingkey".into(), "eu".into()), ("id".into(), "spoofed".into())],
            data: data.to_vec(),
        })
    }

    #[test]
    fn cloudevents_json_has_attributes_extensions_and_json_data() {
        let value = event(Some("application/cloudevents+json; charset=utf-8"), br#"{"n": 1}"#).to_cloudevents_json();
        assert_eq!(
            value,
            json!({
                "specversion": "1.0",
                "id": "e-1",
                "source": "/shop",
                "type": "com.example.order.created",
                "subject": "order-7",
                "time": "2022-07-12T07:08:09Z",
                "datacontenttype": "application/cloudevents+json; charset=utf-8",
                "routingkey": "eu",
                "data": {"n": 1},
            })
        );
    }

    #[test]
    fn cloudevents_json_falls_back_to_base64() {
        let base64_of = |e: &Event| e.to_cloudevents_json()["data_base64"].as_str().map(str::to_owned);
        assert_eq!(base64_of(&event(Some("application/json"), b"not json")).as_deref(), Some("bm90IGpzb24="));
        assert_eq!(base64_of(&event(None, b"{}")).as_deref(), Some("e30="));
        assert_eq!(base64_of(&event(Some("text/plain"), b"ab")).as_deref(), Some("YWI="));
        assert_eq!(base64_of(&event(Some("text/plain"), b"abc")).as_deref(), Some("YWJj"));
        let empty = event(Some("application/json"), b"").to_cloudevents_json();
        assert!(empty.get("data").is_none() && empty.get("data_base64").is_none());
        // Any `*/json` is JSON, as the host decodes it.
        assert_eq!(event(Some("vnd.acme/json"), b"{}").to_cloudevents_json()["data"], serde_json::json!({}));
    }
}
