//! Path templates: text with placeholders (`{subject}`, `{routingkey}`, `{yyyy}`, `{mm}`, `{dd}`,
//! `{HH}`) that name the directory and file of an event. Parsing happens once at `init`; rendering
//! is per event and checks that the result stays inside the granted directory.

use eventyard_sdk::{Error, Event};

use crate::time::Hour;

/// The value a placeholder takes when the event has none (no routing key, empty subject).
const MISSING: &str = "_";

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The event's routing subject.
    Subject,
    /// The `routingkey` extension.
    RoutingKey,
    Year,
    Month,
    Day,
    Hour,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`, refusing unknown placeholders, unbalanced braces, absolute paths and `..`;
    /// `key` names the config key in errors.
    pub fn parse(key: &str, text: &str) -> Result<Template, Error> {
        let invalid =
            |reason: &str| Error::permanent(format!("config: key `{key}`: invalid template \"{text}\": {reason}"));
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let Some(open) = rest.find(['{', '}']) else {
                parts.push(Part::Literal(rest.to_owned()));
                break;
            };
            if rest[open..].starts_with('}') {
                return Err(invalid("`}` without `{`"));
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(invalid("`{` without `}`"));
            };
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "subject" => Part::Subject,
                "routingkey" => Part::RoutingKey,
                "yyyy" => Part::Year,
                "mm" => Part::Month,
                "dd" => Part::Day,
                "HH" => Part::Hour,
                _ => {
                    return Err(invalid(&format!(
                        "unknown placeholder `{{{name}}}` (known: subject, routingkey, yyyy, mm, dd, HH)"
                    )));
                }
            });
            rest = &rest[open + close + 1..];
        }
        if text.starts_with('/') {
            return Err(invalid("absolute paths are refused: it is relative to the granted directory"));
        }
        if text.split('/').any(|component| component == "..") {
            return Err(invalid("`..` is refused"));
        }
        Ok(Template { parts })
    }

    /// True when rendering needs the event's hour.
    pub fn uses_time(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Year | Part::Month | Part::Day | Part::Hour))
    }

    /// The template filled in for `event` in `hour`; refused when the result is absolute or has a
    /// `..` component (a subject or routing key can contain `/`).
    pub fn render(&self, event: &Event, hour: Option<Hour>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match (part, hour) {
                (Part::Literal(text), _) => out.push_str(text),
                (Part::Subject, _) => out.push_str(non_empty(&event.subject)),
                (Part::RoutingKey, _) => out.push_str(event.routing_key().map_or(MISSING, non_empty)),
                (Part::Year, Some(h)) => out.push_str(&format!("{:04}", h.year)),
                (Part::Month, Some(h)) => out.push_str(&format!("{:02}", h.month)),
                (Part::Day, Some(h)) => out.push_str(&format!("{:02}", h.day)),
                (Part::Hour, Some(h)) => out.push_str(&format!("{:02}", h.hour)),
                (Part::Year | Part::Month | Part::Day | Part::Hour, None) => out.push_str(MISSING),
            }
        }
        if out.starts_with('/') {
            return Err(format!("path \"{out}\" is absolute"));
        }
        if out.split('/').any(|component| component == "..") {
            return Err(format!("path \"{out}\" contains \"..\""));
        }
        Ok(out)
    }
}

/// `value`, or [`MISSING`] when it is empty.
fn non_empty(value: &str) -> &str {
    if value.is_empty() { MISSING } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(subject: &str, routing_key: Option<&str>) -> Event {
        Event::from(eventyard_sdk::EventRecord {
            subject: subject.into(),
            context: eventyard_sdk::Context {
                id: "e-1".into(),
                source: "/test".into(),
                type_: "t".into(),
                specversion: "1.0".into(),
                subject: None,
                time: None,
                datacontenttype: None,
                dataschema: None,
            },
            extensions: routing_key.map(|k| ("routingkey".to_owned(), k.to_owned())).into_iter().collect(),
            data: Vec::new(),
        })
    }

    const HOUR: Option<Hour> = Some(Hour { year: 2022, month: 7, day: 2, hour: 7 });

    #[test]
    fn placeholders_are_filled() {
        let t = Template::parse("path", "{subject}/{routingkey}/{yyyy}/{mm}/{dd}/{HH}").unwrap();
        assert!(t.uses_time());
        assert_eq!(t.render(&event("orders.eu", Some("eu")), HOUR).unwrap(), "orders.eu/eu/2022/07/02/07");
        assert_eq!(t.render(&event("orders.eu", None), HOUR).unwrap(), "orders.eu/_/2022/07/02/07");
        let t = Template::parse("file", "events-{routingkey}.jsonl").unwrap();
        assert!(!t.uses_time());
        assert_eq!(t.render(&event("a", Some("k")), None).unwrap(), "events-k.jsonl");
        assert_eq!(Template::parse("path", "").unwrap().render(&event("a", None), None).unwrap(), "");
    }

    #[test]
    fn escapes_are_refused() {
        let t = Template::parse("path", "{subject}/{routingkey}").unwrap();
        assert!(t.render(&event("a", Some("../../etc")), None).unwrap_err().contains("\"..\""));
        assert!(Template::parse("path", "{routingkey}").unwrap().render(&event("a", Some("/etc")), None).is_err());
        for (bad, reason) in [
            ("/abs/{subject}", "absolute"),
            ("a/../b", "`..`"),
            ("{nope}", "unknown placeholder `{nope}`"),
            ("{subject", "without `}`"),
            ("a}", "without `{`"),
        ] {
            let err = Template::parse("path", bad).unwrap_err();
            assert!(err.message.contains(reason), "{bad}: {}", err.message);
        }
    }
}
