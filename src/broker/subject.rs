//! [`Subject`] and [`Pattern`]: NATS subjects as validated types. A subject is dot-separated
//! non-empty tokens without whitespace; a pattern may also use `*` (one token) and a final `>`
//! (one or more tokens). Nothing here allocates while matching.

use std::fmt;

/// Longest subject or pattern accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// Why a subject or pattern is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("invalid subject \"{0}\": empty")]
    Empty(String),
    #[error("invalid subject \"{0}\": empty token")]
    EmptyToken(String),
    #[error("invalid subject \"{0}\": whitespace")]
    Whitespace(String),
    #[error("invalid subject \"{0}\": longer than {MAX_SUBJECT_LEN} bytes")]
    TooLong(String),
    #[error("invalid subject \"{0}\": wildcards `*` and `>` are only for subscribing")]
    Wildcard(String),
    #[error("invalid subject pattern \"{0}\": `>` must be the last token")]
    FullWildcardNotLast(String),
    #[error("invalid subject pattern \"{0}\": wildcards must be whole tokens")]
    PartialWildcard(String),
}

fn check(text: &str, wildcards: bool) -> Result<(), SubjectError> {
    let err = |make: fn(String) -> SubjectError| Err(make(text.to_owned()));
    if text.is_empty() {
        return err(SubjectError::Empty);
    }
    if text.len() > MAX_SUBJECT_LEN {
        return err(SubjectError::TooLong);
    }
    let count = text.split('.').count();
    for (i, token) in text.split('.').enumerate() {
        if token.is_empty() {
            return err(SubjectError::EmptyToken);
        }
        if token.bytes().any(|b| b.is_ascii_whitespace() || b == 0) {
            return err(SubjectError::Whitespace);
        }
        match token {
            "*" | ">" if !wildcards => return err(SubjectError::Wildcard),
            ">" if i + 1 != count => return err(SubjectError::FullWildcardNotLast),
            "*" | ">" => {}
            _ if wildcards && (token.contains('*') || token.contains('>')) => {
                return err(SubjectError::PartialWildcard);
            }
            _ => {}
        }
    }
    Ok(())
}

/// A literal subject events are published on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    pub fn new(text: impl Into<String>) -> Result<Self, SubjectError> {
        let text = text.into();
        check(&text, false)?;
        Ok(Subject(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(text: impl Into<String>) -> Result<Self, SubjectError> {
        let text = text.into();
        check(&text, true)?;
        Ok(Pattern(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn tokens(&self) -> std::str::Split<'_, char> {
        self.0.split('.')
    }

    /// True when `subject` (assumed valid) matches this pattern. A wildcard in the first token
    /// never matches an internal subject (one starting with `$`, such as `$DLQ.x`): those need a
    /// pattern that names their first token, so a catch-all route does not swallow them.
    pub fn matches(&self, subject: &str) -> bool {
        if subject.starts_with('$') && (self.0.starts_with('*') || self.0.starts_with('>')) {
            return false;
        }
        let mut subject_tokens = subject.split('.');
        for token in self.tokens() {
            match (token, subject_tokens.next()) {
                (">", Some(_)) => return true,
                ("*", Some(_)) => {}
                (literal, Some(actual)) if literal == actual => {}
                _ => return false,
            }
        }
        subject_tokens.next().is_none()
    }

    /// True when every subject `other` matches, this pattern matches too: a subscription to
    /// `other` stays inside what this pattern allows. `orders.*` does not cover `orders.>`.
    pub fn covers(&self, other: &Pattern) -> bool {
        if leads_with_wildcard(self) && !leads_with_wildcard(other) && other.0.starts_with('$') {
            return false;
        }
        let mut theirs = other.tokens();
        for mine in self.tokens() {
            match (mine, theirs.next()) {
                (">", Some(_)) => return true,
                ("*", Some(token)) if token != ">" => {}
                (literal, Some(token)) if literal == token => {}
                _ => return false,
            }
        }
        theirs.next().is_none()
    }

    /// True when some subject matches both patterns.
    pub fn intersects(&self, other: &Pattern) -> bool {
        let internal = |a: &Pattern, b: &Pattern| leads_with_wildcard(a) && b.0.starts_with('$');
        if internal(self, other) || internal(other, self) {
            return false;
        }
        let (mut mine, mut theirs) = (self.tokens(), other.tokens());
        loop {
            match (mine.next(), theirs.next()) {
                (None, None) => return true,
                (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
                (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
                (Some(a), Some(b)) if a == b => {}
                _ => return false,
            }
        }
    }
}

fn leads_with_wildcard(pattern: &Pattern) -> bool {
    pattern.0.starts_with('*') || pattern.0.starts_with('>')
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_literal_dotted_tokens() {
        assert!(Subject::new("orders.eu.created").is_ok());
        assert!(Subject::new("$SYS.SERVER.x.STATSZ").is_ok());
        assert_eq!(Subject::new(""), Err(SubjectError::Empty(String::new())));
        assert!(matches!(Subject::new("a..b"), Err(SubjectError::EmptyToken(_))));
        assert!(matches!(Subject::new("a.b."), Err(SubjectError::EmptyToken(_))));
        assert!(matches!(Subject::new("a b"), Err(SubjectError::Whitespace(_))));
        assert!(matches!(Subject::new("a.*"), Err(SubjectError::Wildcard(_))));
        assert!(matches!(Subject::new("a.>"), Err(SubjectError::Wildcard(_))));
        assert!(matches!(Subject::new("x".repeat(MAX_SUBJECT_LEN + 1)), Err(SubjectError::TooLong(_))));
    }

    #[test]
    fn patterns_match_like_nats() {
        let p = |s: &str| Pattern::new(s).unwrap();
        assert!(p("a.b").matches("a.b"));
        assert!(!p("a.b").matches("a.b.c"));
        assert!(p("a.*").matches("a.b"));
        assert!(!p("a.*").matches("a"));
        assert!(!p("a.*").matches("a.b.c"));
        assert!(p("a.>").matches("a.b.c"));
        assert!(!p("a.>").matches("a"));
        assert!(p(">").matches("anything.at.all"));
        assert!(p("*.b.>").matches("x.b.y.z"));
        assert!(matches!(Pattern::new("a.>.b"), Err(SubjectError::FullWildcardNotLast(_))));
        assert!(!p(">").matches("$DLQ.files"));
        assert!(!p("*.files").matches("$DLQ.files"));
        assert!(p("$DLQ.>").matches("$DLQ.files"));
        assert!(matches!(Pattern::new("a.b*"), Err(SubjectError::PartialWildcard(_))));
    }

    #[test]
    fn a_pattern_covers_what_it_matches_all_of() {
        let p = |s: &str| Pattern::new(s).unwrap();
        assert!(p("orders.>").covers(&p("orders.>")));
        assert!(p("orders.>").covers(&p("orders.*.x")));
        assert!(p("orders.*").covers(&p("orders.eu")));
        assert!(p("orders.*").covers(&p("orders.*")));
        assert!(!p("orders.*").covers(&p("orders.>")), "orders.> reaches orders.deep.secret");
        assert!(!p("orders.eu").covers(&p("orders.*")));
        assert!(!p("orders.*").covers(&p("orders")));
        assert!(p(">").covers(&p("*.x")));
        assert!(!p(">").covers(&p("$A.x")), "a leading wildcard never reaches `$` subjects");
        assert!(p("$SYS.>").covers(&p("$SYS.ACCOUNT.*.CONNECT")));
    }

    #[test]
    fn patterns_intersect_when_a_subject_matches_both() {
        let p = |s: &str| Pattern::new(s).unwrap();
        assert!(p("orders.*").intersects(&p("orders.secret")));
        assert!(p(">").intersects(&p("orders.secret")));
        assert!(p("orders.>").intersects(&p("*.secret.x")));
        assert!(!p("orders.*").intersects(&p("orders.a.b")));
        assert!(!p("users.*").intersects(&p("orders.secret")));
        assert!(!p(">").intersects(&p("$DLQ.x")));
        assert!(p("a.*.c").intersects(&p("a.b.*")));
    }
}
