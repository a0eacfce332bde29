//! What a client may publish and subscribe to: nats-server's permissions (allow and deny lists,
//! queue-group entries `"subject queue"`, `allow_responses`), and safer where nats-server is loose.
//!
//! - A publish is allowed when an allow entry matches its subject (or there is no allow list) and
//!   no deny entry does.
//! - A subscription is allowed only where one allow entry **covers** all of its pattern:
//!   nats-server 2.9 lets a user allowed `orders.*` subscribe to `orders.>` and delivers
//!   `orders.deep.secret`; here that is refused. A deny entry that covers the pattern refuses it;
//!   one that only overlaps it (`deny orders.secret`, `SUB orders.*`) is enforced per message at
//!   delivery ([`Subscription::denied`]).
//! - Queue entries: an allow entry with a queue admits only that queue group where it applies; a
//!   deny entry with a queue refuses only that group.
//!
//! Pure data and decisions: no sockets, no broker. Accounts and reserved subjects are
//! [`crate::broker::account`]'s.

use std::time::Duration;

use crate::broker::{Pattern, SubjectError};

/// One permission entry: a subject pattern, and for subscriptions optionally a queue group pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub subject: Pattern,
    pub queue: Option<Pattern>,
}

impl Entry {
    /// `"subject"` or, as nats-server writes a queue permission, `"subject queue"`.
    pub fn parse(text: &str) -> Result<Entry, SubjectError> {
        let mut parts = text.split_whitespace();
        let subject = Pattern::new(parts.next().unwrap_or_default())?;
        let queue = parts.next().map(Pattern::new).transpose()?;
        if parts.next().is_some() {
            return Err(SubjectError::Whitespace(text.to_owned()));
        }
        Ok(Entry { subject, queue })
    }

    /// An entry for `subject` alone.
    pub fn subject(subject: Pattern) -> Entry {
        Entry { subject, queue: None }
    }

    fn admits_queue(&self, queue: &str) -> bool {
        self.queue.as_ref().is_some_and(|pattern| pattern.as_str() == queue || pattern.matches(queue))
    }
}

/// Subjects allowed (all when `allow` is `None`) minus subjects denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub allow: Option<Vec<Entry>>,
    pub deny: Vec<Entry>,
}

/// What a subscription the rule admits must still check per message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Deny entries that overlap the subscription's pattern without covering it.
    pub denied: Vec<Pattern>,
}

impl Subscription {
    /// True when a message on `subject` (as the client names it) may be delivered.
    pub fn delivers(&self, subject: &str) -> bool {
        !self.denied.iter().any(|pattern| pattern.matches(subject))
    }
}

impl Rule {
    /// A rule allowing only `allow` (nothing when empty), minus `deny`.
    pub fn allowing(allow: Vec<Entry>, deny: Vec<Entry>) -> Rule {
        Rule { allow: Some(allow), deny }
    }

    /// The rule an auth policy's permissions describe (an empty allow list allows nothing); the error
    /// names the first invalid entry, so a grant is never taken in part.
    pub fn from_policy(permissions: &crate::auth::Permissions) -> Result<Rule, String> {
        let entries = |texts: &[String]| -> Result<Vec<Entry>, String> {
            texts.iter().map(|text| Entry::parse(text).map_err(|err| format!("`{text}`: {err}"))).collect()
        };
        Ok(Rule::allowing(entries(&permissions.allow)?, entries(&permissions.deny)?))
    }

    /// True when a publish to the literal `subject` passes the rule.
    pub fn permits_publish(&self, subject: &str) -> bool {
        let matches = |entry: &Entry| entry.subject.matches(subject);
        self.allow.as_ref().is_none_or(|allow| allow.iter().any(matches)) && !self.deny.iter().any(matches)
    }

    /// True when an allow entry names `subject`'s first token literally: how a `$` subject is
    /// allowed over HTTP, where a catch-all allow does not reach them.
    pub fn names_literally(&self, subject: &str) -> bool {
        let first = subject.split('.').next().unwrap_or_default();
        self.allow.as_ref().is_some_and(|allow| {
            allow.iter().any(|entry| entry.subject.tokens().next() == Some(first) && entry.subject.matches(subject))
        })
    }

    /// Whether a subscription to `pattern` (in queue group `queue`) passes the rule, and what it
    /// must check per message; `None` when refused.
    pub fn subscription(&self, pattern: &Pattern, queue: Option<&str>) -> Option<Subscription> {
        if let Some(allow) = &self.allow {
            let covering = |entry: &&Entry| entry.subject.covers(pattern);
            let plain = allow.iter().filter(covering).any(|entry| entry.queue.is_none());
            let allowed = match queue {
                None => plain,
                Some(queue) => {
                    let mut queued = allow.iter().filter(covering).filter(|entry| entry.queue.is_some()).peekable();
                    if queued.peek().is_none() { plain } else { queued.any(|entry| entry.admits_queue(queue)) }
                }
            };
            if !allowed {
                return None;
            }
        }
        let mut denied = Vec::new();
        for entry in &self.deny {
            let applies = match &entry.queue {
                None => true,
                Some(_) => queue.is_some_and(|queue| entry.admits_queue(queue)),
            };
            if !applies {
                continue;
            }
            if entry.subject.covers(pattern) {
                return None;
            }
            if entry.subject.intersects(pattern) {
                denied.push(entry.subject.clone());
            }
        }
        Some(Subscription { denied })
    }
}

/// nats-server's `allow_responses`: a client that received a request may publish its response to
/// the request's reply subject, up to `max` messages within `expires`, whatever its publish rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Responses {
    pub max: u32,
    pub expires: Duration,
}

impl Default for Responses {
    /// nats-server's defaults: one response within two minutes.
    fn default() -> Self {
        Responses { max: 1, expires: Duration::from_secs(120) }
    }
}

/// What a client may publish and subscribe to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Rule,
    pub subscribe: Rule,
    /// Responses to requests it received are allowed; `None`: only what `publish` allows.
    pub responses: Option<Responses>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(texts: &[&str]) -> Vec<Entry> {
        texts.iter().map(|text| Entry::parse(text).unwrap()).collect()
    }

    fn rule(allow: Option<&[&str]>, deny: &[&str]) -> Rule {
        Rule { allow: allow.map(entries), deny: entries(deny) }
    }

    fn pattern(text: &str) -> Pattern {
        Pattern::new(text).unwrap()
    }

    #[test]
    fn publishes_pass_allow_then_deny() {
        let rule = rule(Some(&["orders.>"]), &["orders.secret"]);
        assert!(rule.permits_publish("orders.eu"));
        assert!(!rule.permits_publish("orders.secret"));
        assert!(!rule.permits_publish("users.1"));
        assert!(Rule::default().permits_publish("anything"));
        assert!(!Rule::allowing(vec![], vec![]).permits_publish("anything"), "an empty allow list allows nothing");
    }

    #[test]
    fn a_subscription_must_stay_inside_an_allow_entry() {
        let narrow = rule(Some(&["orders.*"]), &[]);
        assert!(narrow.subscription(&pattern("orders.eu"), None).is_some());
        assert!(narrow.subscription(&pattern("orders.*"), None).is_some());
        assert!(narrow.subscription(&pattern("orders.>"), None).is_none(), "wider than the allow");
        assert!(narrow.subscription(&pattern(">"), None).is_none());
    }

    #[test]
    fn overlapping_denies_are_checked_per_message_and_covering_ones_refuse() {
        let open = rule(None, &["orders.secret"]);
        let wildcard = open.subscription(&pattern("orders.*"), None).unwrap();
        assert!(!wildcard.delivers("orders.secret") && wildcard.delivers("orders.public"));
        let everything = open.subscription(&pattern(">"), None).unwrap();
        assert!(!everything.delivers("orders.secret"));
        assert!(open.subscription(&pattern("orders.secret"), None).is_none());
        assert!(open.subscription(&pattern("users.*"), None).unwrap().denied.is_empty());
    }

    #[test]
    fn queue_entries_admit_and_refuse_queue_groups() {
        let workers = rule(Some(&["jobs.> workers"]), &[]);
        assert!(workers.subscription(&pattern("jobs.a"), Some("workers")).is_some());
        assert!(workers.subscription(&pattern("jobs.a"), Some("others")).is_none());
        assert!(workers.subscription(&pattern("jobs.a"), None).is_none(), "only as a member of the group");
        let not_prod = rule(None, &["> *.prod"]);
        assert!(not_prod.subscription(&pattern("jobs.a"), Some("eu.prod")).is_none());
        assert!(not_prod.subscription(&pattern("jobs.a"), Some("eu.dev")).is_some());
        assert!(not_prod.subscription(&pattern("jobs.a"), None).is_some());
        assert!(Entry::parse("a b c").is_err() && Entry::parse("a..b").is_err());
    }

    #[test]
    fn a_policy_grant_is_taken_whole_or_not_at_all() {
        let grant = |deny: &str| crate::auth::Permissions { allow: vec![">".into()], deny: vec![deny.into()] };
        let rule = Rule::from_policy(&grant("orders.secret")).unwrap();
        assert!(!rule.permits_publish("orders.secret") && rule.permits_publish("orders.eu"));
        let refused = Rule::from_policy(&grant("orders..secret")).unwrap_err();
        assert!(refused.contains("orders..secret"), "an invalid deny is not dropped: {refused}");
    }

    #[test]
    fn dollar_subjects_need_an_allow_that_names_them() {
        assert!(!rule(Some(&[">"]), &[]).names_literally("$DLQ.files"));
        assert!(!rule(None, &[]).names_literally("$DLQ.files"));
        assert!(rule(Some(&["$DLQ.>"]), &[]).names_literally("$DLQ.files"));
        assert!(!rule(Some(&["$DLQ.x"]), &[]).names_literally("$DLQ.files"));
    }
}
