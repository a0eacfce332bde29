//! NATS-style subjects: dot-separated tokens; in patterns `*` matches one token and a final `>`
//! matches one or more.

/// True when `subject` matches `pattern`. A pattern checked many times is better made a
/// [`Pattern`] once.
///
/// ```
/// use eventyard_sdk::subject::matches;
/// assert!(matches("orders.*.created", "orders.eu.created"));
/// assert!(matches("orders.>", "orders.eu.created"));
/// assert!(!matches("orders.>", "orders"));
/// assert!(!matches("orders.*", "orders.eu.created"));
/// ```
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = Tokens::new(subject);
    for token in Tokens::new(pattern) {
        match (token, subject_tokens.next()) {
            (b">", Some(_)) => return true,
            (b"*", Some(_)) => {}
            (literal, Some(actual)) if literal == actual => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// A subject pattern, checked and split into tokens once.
///
/// ```
/// use eventyard_sdk::subject::Pattern;
/// let pattern = Pattern::new("orders.*.created").unwrap();
/// assert!(pattern.matches("orders.eu.created"));
/// assert!(!pattern.matches("orders.eu"));
/// assert!(Pattern::new("orders..created").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Box<[u8]>),
    /// `*`: any one token.
    One,
    /// `>`, last: one or more tokens.
    Rest,
}

impl Pattern {
    /// The pattern `pattern`, or why it is not one (as [`validate_pattern`] says).
    pub fn new(pattern: &str) -> Result<Pattern, String> {
        validate_pattern(pattern)?;
        let tokens = Tokens::new(pattern)
            .map(|token| match token {
                b"*" => Token::One,
                b">" => Token::Rest,
                literal => Token::Literal(literal.into()),
            })
            .collect();
        Ok(Pattern { tokens })
    }

    /// True when `subject` matches.
    pub fn matches(&self, subject: &str) -> bool {
        let mut subject_tokens = Tokens::new(subject);
        for token in &self.tokens {
            match (token, subject_tokens.next()) {
                (Token::Rest, Some(_)) => return true,
                (Token::One, Some(_)) => {}
                (Token::Literal(literal), Some(actual)) if **literal == *actual => {}
                _ => return false,
            }
        }
        subject_tokens.next().is_none()
    }
}

/// The dot-separated tokens of a subject, as bytes (a byte search is cheaper than a `char` one).
struct Tokens<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Tokens<'a> {
    fn new(subject: &'a str) -> Self {
        Tokens { rest: Some(subject.as_bytes()) }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match rest.iter().position(|byte| *byte == b'.') {
            Some(dot) => {
                self.rest = Some(&rest[dot + 1..]);
                Some(&rest[..dot])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Checks that `pattern` is a valid subject pattern: no empty tokens, `>` only last, wildcards only
/// as whole tokens, no whitespace.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(format!("invalid subject pattern \"{pattern}\": empty token"));
        }
        if token.chars().any(char::is_whitespace) {
            return Err(format!("invalid subject pattern \"{pattern}\": whitespace"));
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err(format!("invalid subject pattern \"{pattern}\": `>` must be the last token"));
        }
        if token.len() > 1 && (token.contains('*') || token.contains('>')) {
            return Err(format!("invalid subject pattern \"{pattern}\": wildcards must be whole tokens"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_nats() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*", "a.b"));
        assert!(matches("*.*", "a.b"));
        assert!(!matches("a.*", "a"));
        assert!(matches(">", "a"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        for (pattern, subject) in [("a.b", "a.b"), ("a.*", "a"), ("a.>", "a.b.c"), ("*.b", "a.c"), ("a.b", "a.b.c")] {
            let parsed = Pattern::new(pattern).unwrap();
            assert_eq!(parsed.matches(subject), matches(pattern, subject), "{pattern} {subject}");
        }
    }

    #[test]
    fn invalid_patterns_are_named() {
        assert!(validate_pattern("a.*.>").is_ok());
        assert!(validate_pattern("a..b").unwrap_err().contains("empty token"));
        assert!(validate_pattern("a.>.b").unwrap_err().contains("last token"));
        assert!(validate_pattern("a.b*").unwrap_err().contains("whole tokens"));
    }
}
