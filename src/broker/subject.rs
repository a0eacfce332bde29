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
}
