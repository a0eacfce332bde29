//! `jq`: a handler that transforms JSON event data with a jq program, run by jaq (jq in Rust, its
//! standard library included).
//!
//! Config: `filter` (required), the jq program. Its input `.` is the event's data as JSON, and
//! `$event` holds the event's attributes as an object: `id`, `source`, `type`, `subject` (the
//! subject the event travels on), and `time`, `datacontenttype` and each extension (`routingkey`,
//! …) when the event has them.
//!
//! Each value the program yields becomes the data of one event with the input's attributes and
//! `datacontenttype: application/json`: one value replaces the data, `empty` drops the event, and
//! several fan it out (the first keeps the id; the n-th after it gets `<id>-<n>`). Object keys
//! keep the order the program builds them in. A program that does not compile is refused at init
//! with where and why; data that is not JSON, or an error the program raises (`error("…")`, a type
//! error), is a permanent failure naming the event, so the route's failure policy decides.

use eventyard_sdk::{Config, Error, Event, Handler, Outcome};
use jaq_core::compile::Filter;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, Vars, data, unwrap_valr};
use jaq_json::Val;

/// The config keys this plugin reads.
const KEYS: [&str; 1] = ["filter"];

/// What the compiled program runs on.
type Data = data::JustLut<Val>;

struct Jq {
    filter: Filter<Native<Data>>,
}

impl Jq {
    /// Compiles `code`, or says where and why it cannot.
    fn compile(code: &str) -> Result<Jq, String> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
        let arena = Arena::default();
        let modules = Loader::new(defs).load(&arena, File { code, path: () }).map_err(|errors| {
            let at = |rest: &str| code.len() - rest.len();
            let reasons: Vec<String> = errors
                .into_iter()
                .flat_map(|(_, error)| match error {
                    jaq_core::load::Error::Io(io) => {
                        io.into_iter().map(|(path, why)| format!("{path}: {why}")).collect()
                    }
                    jaq_core::load::Error::Lex(lex) => lex
                        .into_iter()
                        .map(|(expected, rest)| format!("expected {} at byte {}", expected.as_str(), at(rest)))
                        .collect(),
                    jaq_core::load::Error::Parse(parse) => parse
                        .into_iter()
                        .map(|(expected, rest)| format!("expected {} at byte {}", expected.as_str(), at(rest)))
                        .collect::<Vec<_>>(),
                })
                .collect();
            reasons.join("; ")
        })?;
        let filter =
            Compiler::default().with_funs(funs).with_global_vars(["$event"]).compile(modules).map_err(|errors| {
                let reasons: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, undefined)| undefined)
                    .map(|(name, kind)| format!("undefined {} `{name}`", kind.as_str()))
                    .collect();
                reasons.join("; ")
            })?;
        Ok(Jq { filter })
    }

    /// The program's outputs for `data` with `$event` bound to `attributes`.
    fn run(&self, data: Val, attributes: Val) -> Result<Vec<Val>, String> {
        let ctx = Ctx::<Data>::new(&self.filter.lut, Vars::new([attributes]));
        self.filter.id.run((ctx, data)).map(unwrap_valr).map(|out| out.map_err(error_message)).collect()
    }
}

/// An error the program raised, as jq prints it: a string as its text, any other value as JSON.
fn error_message(error: jaq_core::Error<Val>) -> String {
    match error.into_val() {
        Val::TStr(text) | Val::BStr(text) => String::from_utf8_lossy(&text[..]).into_owned(),
        other => other.to_string(),
    }
}

/// The event's attributes as `$event` shows them.
fn attributes(event: &Event) -> Val {
    let context = &event.context;
    let text = |value: &str| Val::from(value.to_owned());
    let mut map = jaq_json::Map::default();
    for (name, value) in [
        ("id", Some(&context.id)),
        ("source", Some(&context.source)),
        ("type", Some(&context.type_)),
        ("subject", Some(&event.subject)),
        ("time", context.time.as_ref()),
        ("datacontenttype", context.datacontenttype.as_ref()),
    ] {
        if let Some(value) = value {
            map.insert(text(name), text(value));
        }
    }
    for (name, value) in &event.extensions {
        map.insert(text(name), text(value));
    }
    Val::obj(map)
}

impl Handler for Jq {
    fn init(config: Config) -> Result<Self, Error> {
        config.deny_unknown(&KEYS)?;
        let code = config.require("filter")?;
        Jq::compile(code).map_err(|reason| Error::permanent(format!("config: `filter`: {reason}")))
    }

    fn handle(&mut self, mut event: Event) -> Result<Outcome, Error> {
        let id = event.context.id.clone();
        let fail = |reason: String| Error::permanent(format!("event \"{id}\": {reason}"));
        // The data leaves the event, so each output copies the attributes only.
        let input = std::mem::take(&mut event.data);
        let data = jaq_json::read::parse_single(&input).map_err(|err| fail(format!("data is not JSON: {err}")))?;
        let outputs = self.run(data, attributes(&event)).map_err(fail)?;
        event.context.datacontenttype = Some("application/json".into());
        let events = outputs
            .into_iter()
            .enumerate()
            .map(|(n, value)| {
                let mut out = event.clone();
                if n > 0 {
                    out.context.id = format!("{id}-{n}");
                }
                out.data = value.to_string().into_bytes();
                out
            })
            .collect::<Vec<_>>();
        Ok(events.into())
    }
}

eventyard_sdk::export_handler!(Jq);

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(filter: &str) -> Jq {
        Jq::init(Config::new(vec![("filter".to_owned(), filter.to_owned())])).unwrap()
    }

    fn event(data: &str) -> Event {
        let mut event = Event::from_parts("ccx.reports.etcd", "e-1", "/ccx", "report", data);
        event.context.time = Some("2022-07-12T07:08:09Z".into());
        event.extensions.push(("routingkey".into(), "org-1".into()));
        event
    }

    fn outputs(outcome: Outcome) -> Vec<(String, String)> {
        let events = outcome.into_events(event("{}"));
        events.into_iter().map(Event::into_record).map(|e| (e.context.id, String::from_utf8(e.data).unwrap())).collect()
    }

    #[test]
    fn builds_arrays_and_reads_the_event_attributes() {
        let mut jq = handler(r#"{at: $event.time, key: $event.routingkey, events: [{payload: {risk: .total_risk}}]}"#);
        let out = outputs(jq.handle(event(r#"{"total_risk": 3}"#)).unwrap());
        assert_eq!(
            out,
            [("e-1".into(), r#"{"at":"2022-07-12T07:08:09Z","key":"org-1","events":[{"payload":{"risk":3}}]}"#.into())]
        );
    }

    #[test]
    fn empty_drops_and_several_values_fan_out() {
        let mut jq = handler("select(.keep) | .items[]");
        assert!(outputs(jq.handle(event(r#"{"keep": false}"#)).unwrap()).is_empty());
        let out = outputs(jq.handle(event(r#"{"keep": true, "items": [1, "two"]}"#)).unwrap());
        assert_eq!(out, [("e-1".into(), "1".into()), ("e-1-1".into(), r#""two""#.into())]);
    }

    #[test]
    fn errors_name_the_event_and_bad_programs_are_refused() {
        let mut jq = handler(r#"if .org_id == null then error("no org_id") else . end"#);
        let err = jq.handle(event("{}")).unwrap_err();
        assert_eq!(err.message, "event \"e-1\": no org_id");
        assert!(!err.retryable);
        let err = jq.handle(event("not json")).unwrap_err();
        assert!(err.message.starts_with("event \"e-1\": data is not JSON"), "{}", err.message);
        for (filter, reason) in
            [("{a: }", "expected"), ("nosuch(1)", "undefined filter `nosuch`"), ("$nope", "undefined variable")]
        {
            let err = Jq::init(Config::new(vec![("filter".to_owned(), filter.to_owned())])).err().unwrap();
            assert!(
                err.message.starts_with("config: `filter`: ") && err.message.contains(reason),
                "{filter}: {}",
                err.message
            );
        }
    }
}
