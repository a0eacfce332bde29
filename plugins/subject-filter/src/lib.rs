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

use eventyard_sdk::subject::Pattern;
use eventyard_sdk::{Config, Error, Event, Handler, Outcome};

/// The config keys this plugin reads.
const KEYS: [&str; 3] = ["allow", "deny", "types"];

struct SubjectFilter {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
    /// Empty means any type.
    types: Vec<String>,
}

impl SubjectFilter {
    /// True when the event may pass: an allow pattern matches, no deny pattern does, and the type
    /// is listed (or no types are). Fetches the subject, and the type only when types are listed.
    fn permits(&self, event: &Event) -> bool {
        let subject = event.subject();
        let matches = |patterns: &[Pattern]| patterns.iter().any(|p| p.matches(subject));
        matches(&self.allow)
            && !matches(&self.deny)
            && (self.types.is_empty() || event.attribute("type").is_some_and(|ty| self.types.contains(&ty)))
    }
}

/// Reads the pattern list `key` (or `default` when absent), checking every pattern.
fn patterns(config: &Config, key: &str, default: &[&str]) -> Result<Vec<Pattern>, Error> {
    let patterns = match config.get(key) {
        Some(_) => config.list(key)?,
        None => default.iter().map(|p| (*p).to_owned()).collect(),
    };
    patterns
        .iter()
        .map(|pattern| {
            Pattern::new(pattern).map_err(|reason| Error::permanent(format!("config: key `{key}`: {reason}")))
        })
        .collect()
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
