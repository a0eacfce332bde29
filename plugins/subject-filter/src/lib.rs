//! `subject-filter`: a handler that passes an event unchanged when its routing subject and
//! CloudEvents type are allowed, and drops it otherwise.
//!
//! Config:
//! - `allow`: subject patterns (NATS `*` and `>`) an event must match one of; default `[">"]`.
//!   An explicit empty list allows nothing.
//! - `deny`: subject patterns that drop an event even when `allow` matches; default none.
//! - `types`: CloudEvents types; when not empty, the event's `type` must be one of them.
//!
//! Every pattern is checked at `init`, so a bad one refuses the plugin at load.

use eventyard_sdk::{Config, Error, Event, Handler, Outcome, subject};

/// The config keys this plugin reads.
const KEYS: [&str; 3] = ["allow", "deny", "types"];

struct SubjectFilter {
    allow: Vec<String>,
    deny: Vec<String>,
    /// Empty means any type.
    types: Vec<String>,
}

impl SubjectFilter {
    /// True when the event may pass: an allow pattern matches, no deny pattern does, and the type
    /// is listed (or no types are).
    fn permits(&self, event: &Event) -> bool {
        let matches = |patterns: &[String]| patterns.iter().any(|p| subject::matches(p, &event.subject));
        matches(&self.allow)
            && !matches(&self.deny)
            && (self.types.is_empty() || self.types.contains(&event.context.type_))
    }
}

/// Reads the pattern list `key` (or `default` when absent) and validates every pattern.
fn patterns(config: &Config, key: &str, default: &[&str]) -> Result<Vec<String>, Error> {
    let patterns = match config.get(key) {
        Some(_) => config.list(key)?,
        None => default.iter().map(|p| (*p).to_owned()).collect(),
    };
    for pattern in &patterns {
        subject::validate_pattern(pattern)
            .map_err(|reason| Error::permanent(format!("config: key `{key}`: {reason}")))?;
    }
    Ok(patterns)
}

impl Handler for SubjectFilter {
    fn init(config: Config) -> Result<Self, Error> {
        config.deny_unknown(&KEYS)?;
        Ok(SubjectFilter {
            allow: patterns(&config, "allow", &[">"])?,
            deny: patterns(&config, "deny", &[])?,
            types: config.list("types")?,
        })
    }

    fn handle(&mut self, event: Event) -> Result<Outcome, Error> {
        Ok(if self.permits(&event) { Outcome::Keep } else { Outcome::DROP })
    }
}

eventyard_sdk::export_handler!(SubjectFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn event(subject: &str, ty: &str) -> Event {
        Event::from_parts(subject, "e-1", "/test", ty, Vec::new())
    }

    fn run(filter: &mut SubjectFilter, input: Event) -> Vec<Event> {
        filter.handle(input.clone()).unwrap().into_events(input)
    }

    #[test]
    fn default_config_passes_everything() {
        let mut filter = SubjectFilter::init(config(&[])).unwrap();
        assert_eq!(run(&mut filter, event("a.b", "t")).len(), 1);
    }

    #[test]
    fn deny_wins_over_allow_and_types_must_match() {
        let mut filter = SubjectFilter::init(config(&[
            ("allow", r#"["orders.>"]"#),
            ("deny", "orders.test.>"),
            ("types", r#"["created", "paid"]"#),
        ]))
        .unwrap();
        assert_eq!(run(&mut filter, event("orders.eu.x", "created")).len(), 1);
        assert!(run(&mut filter, event("orders.test.x", "created")).is_empty());
        assert!(run(&mut filter, event("users.eu.x", "created")).is_empty());
        assert!(run(&mut filter, event("orders.eu.x", "deleted")).is_empty());
        let none = SubjectFilter::init(config(&[("allow", "[]")])).unwrap();
        assert!(!none.permits(&event("a", "t")));
    }

    #[test]
    fn bad_patterns_and_keys_fail_init() {
        let err = SubjectFilter::init(config(&[("deny", r#"["ok.>", "a..b"]"#)])).err().unwrap();
        assert!(err.message.contains("`deny`") && err.message.contains("\"a..b\""), "{}", err.message);
        assert!(!err.retryable);
        let err = SubjectFilter::init(config(&[("alow", ">")])).err().unwrap();
        assert!(err.message.contains("`alow`"), "{}", err.message);
    }
}
