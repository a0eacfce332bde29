//! NATS-style subjects: dot-separated tokens; in patterns `*` matches one token and a final `>`
//! matches one or more.

/// True when `subject` matches `pattern`.
///
/// ```
/// use eventyard_sdk::subject::matches;
/// assert!(matches("orders.*.created", "orders.eu.created"));
/// assert!(matches("orders.>", "orders.eu.created"));
/// assert!(!matches("orders.>", "orders"));
/// assert!(!matches("orders.*", "orders.eu.created"));
/// ```
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(actual)) if literal == actual => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
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
    }

    #[test]
    fn invalid_patterns_are_named() {
        assert!(validate_pattern("a.*.>").is_ok());
        assert!(validate_pattern("a..b").unwrap_err().contains("empty token"));
        assert!(validate_pattern("a.>.b").unwrap_err().contains("last token"));
        assert!(validate_pattern("a.b*").unwrap_err().contains("whole tokens"));
    }
}
