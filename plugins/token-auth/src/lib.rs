//! `token-auth`: an auth policy that admits a client whose bearer token (NATS `auth_token`, HTTP
//! `Authorization: Bearer`) is one of a configured list, each with its account and permissions.
//!
//! Config:
//! - `tokens`: JSON array of `{ "token": "...", "account": "...", "publish": {...}, "subscribe": {...} }`.
//!   `account` defaults to `default`. A permissions object is `{ "allow": [...], "deny": [...] }` of
//!   subject patterns; a missing object, or a missing `allow`, allows `>`; a missing `deny` denies
//!   nothing. Tokens must be non-empty and distinct.
//! - `accept_password_as_token`: when `true`, the `password` a client presents is tried as a token
//!   too (for clients that can only send a user and password).
//!
//! Token values never appear in a message, a log line or a decision: config errors name the entry
//! by position and account. Every presented token is compared with every configured one in time
//! that depends only on the presented token's length.

use eventyard_sdk::{AuthPolicy, AuthRequest, Config, Decision, Error, Grant, Permissions, subject};
use serde::Deserialize;
use serde_json::Value;

/// The config keys this policy reads.
const KEYS: [&str; 2] = ["tokens", "accept_password_as_token"];

/// The account of an entry that names none.
const DEFAULT_ACCOUNT: &str = "default";

/// One entry of `tokens` as written in config. `token` stays a raw JSON value so that a serde
/// error can never quote it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenConfig {
    token: Value,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    publish: Option<PermissionsConfig>,
    #[serde(default)]
    subscribe: Option<PermissionsConfig>,
}

/// A permissions object as written in config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PermissionsConfig {
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
}

impl PermissionsConfig {
    /// The permissions, every pattern validated; `what` names the entry and field for errors.
    fn build(self, what: &str) -> Result<Permissions, Error> {
        let permissions = Permissions { allow: self.allow.unwrap_or_else(|| vec![">".into()]), deny: self.deny };
        for (list, patterns) in [("allow", &permissions.allow), ("deny", &permissions.deny)] {
            for pattern in patterns {
                subject::validate_pattern(pattern)
                    .map_err(|reason| Error::permanent(format!("config: key `tokens`: {what}.{list}: {reason}")))?;
            }
        }
        Ok(permissions)
    }
}

/// A configured token and what it grants.
struct Entry {
    token: Vec<u8>,
    grant: Grant,
}

struct TokenAuth {
    entries: Vec<Entry>,
    accept_password_as_token: bool,
}

impl TokenAuth {
    /// The entry whose token equals `presented`. Compares against every entry, each in constant
    /// time, so timing does not tell how much of a token was right or which entry matched.
    fn find(&self, presented: &[u8]) -> Option<&Entry> {
        let mut found = None;
        for entry in &self.entries {
            let equal = constant_time_eq(presented, &entry.token);
            if equal && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }
}

/// True when `presented == expected`, in time that depends only on `presented.len()`: every byte
/// is looked at, with no exit at the first difference. `expected` must not be empty.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    // Any difference in length or in any byte sets a bit; nothing branches on the bytes.
    let mut difference = u8::from(presented.len() != expected.len());
    for (byte, expected_byte) in presented.iter().zip(expected.iter().cycle()) {
        difference |= byte ^ expected_byte;
    }
    std::hint::black_box(difference) == 0
}

/// Parses `tokens` into entries, naming entries by position (and account) but never by token.
fn entries(config: &Config) -> Result<Vec<Entry>, Error> {
    // Parsed here rather than through `Config::json`, whose errors may quote the raw text.
    let raw = config.require("tokens")?;
    // Shapes are checked by hand before serde sees a value, since serde's type errors quote strings.
    let list = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Array(list)) => list,
        Ok(_) => return Err(Error::permanent("config: key `tokens` is not a JSON array")),
        Err(err) => return Err(Error::permanent(format!("config: key `tokens` is not valid JSON: {err}"))),
    };
    let mut entries: Vec<Entry> = Vec::with_capacity(list.len());
    for (i, item) in list.into_iter().enumerate() {
        if !item.is_object() {
            return Err(Error::permanent(format!("config: key `tokens`: entry {i} is not an object")));
        }
        let entry: TokenConfig = serde_json::from_value(item)
            .map_err(|err| Error::permanent(format!("config: key `tokens`: entry {i}: {err}")))?;
        let account = entry.account.unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned());
        let what = format!("entry {i} (account \"{account}\")");
        let token = match entry.token {
            Value::String(token) if !token.is_empty() => token.into_bytes(),
            Value::String(_) => {
                return Err(Error::permanent(format!("config: key `tokens`: {what}: `token` is empty")));
            }
            _ => return Err(Error::permanent(format!("config: key `tokens`: {what}: `token` is not a string"))),
        };
        if let Some(j) = entries.iter().position(|earlier| earlier.token == token) {
            return Err(Error::permanent(format!("config: key `tokens`: {what} has the same token as entry {j}")));
        }
        let publish = match entry.publish {
            Some(p) => p.build(&format!("{what}: publish"))?,
            None => Permissions::all(),
        };
        let subscribe = match entry.subscribe {
            Some(p) => p.build(&format!("{what}: subscribe"))?,
            None => Permissions::all(),
        };
        entries.push(Entry { token, grant: Grant { account, publish, subscribe } });
    }
    Ok(entries)
}

impl AuthPolicy for TokenAuth {
    fn init(config: Config) -> Result<Self, Error> {
        config.deny_unknown(&KEYS)?;
        let accept_password_as_token = config.json::<bool>("accept_password_as_token")?.unwrap_or(false);
        Ok(TokenAuth { entries: entries(&config)?, accept_password_as_token })
    }

    fn authorize(&mut self, request: AuthRequest) -> Decision {
        let password = request.password.filter(|_| self.accept_password_as_token);
        let presented: Vec<String> =
            [request.token, password].into_iter().flatten().filter(|t| !t.is_empty()).collect();
        if presented.is_empty() {
            return Decision::Deny("no token given".into());
        }
        // Try every candidate even after a match, so the time taken does not say which one matched.
        let mut grant = None;
        for candidate in &presented {
            if let Some(entry) = self.find(candidate.as_bytes()) {
                grant.get_or_insert_with(|| entry.grant.clone());
            }
        }
        match grant {
            Some(grant) => Decision::Allow(grant),
            None => Decision::Deny("unknown token".into()),
        }
    }
}

eventyard_sdk::export_auth_policy!(TokenAuth);

#[cfg(test)]
mod tests {
    use eventyard_sdk::Protocol;

    use super::*;

    const TOKENS: &str = r#"[
        {"token": "s3cret-a", "account": "ops", "publish": {"allow": ["ops.>"], "deny": ["ops.secret.>"]}},
        {"token": "s3cret-b", "subscribe": {"deny": ["audit.>"]}}
    ]"#;

    fn policy(pairs: &[(&str, &str)]) -> Result<TokenAuth, Error> {
        TokenAuth::init(Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    }

    fn request(token: Option<&str>, password: Option<&str>) -> AuthRequest {
        AuthRequest {
            protocol: Protocol::Nats,
            client_name: None,
            user: None,
            token: token.map(str::to_owned),
            password: password.map(str::to_owned),
            tls_subject: None,
            tls_sans: Vec::new(),
            remote_addr: "127.0.0.1:4222".into(),
        }
    }

    fn grant(decision: Decision) -> Grant {
        match decision {
            Decision::Allow(grant) => grant,
            Decision::Deny(reason) => panic!("denied: {reason}"),
        }
    }

    fn denial(decision: Decision) -> String {
        match decision {
            Decision::Allow(grant) => panic!("allowed into {}", grant.account),
            Decision::Deny(reason) => reason,
        }
    }

    #[test]
    fn known_tokens_get_their_grant() {
        let mut p = policy(&[("tokens", TOKENS)]).unwrap();
        let a = grant(p.authorize(request(Some("s3cret-a"), None)));
        assert_eq!(a.account, "ops");
        assert!(a.publish.permits("ops.x") && !a.publish.permits("ops.secret.x") && !a.publish.permits("x"));
        assert!(a.subscribe.permits("anything"));
        let b = grant(p.authorize(request(Some("s3cret-b"), None)));
        assert_eq!(b.account, "default");
        assert!(b.publish.permits("x") && b.subscribe.permits("x") && !b.subscribe.permits("audit.x"));
    }

    #[test]
    fn missing_and_unknown_tokens_are_denied_without_echo() {
        let mut p = policy(&[("tokens", TOKENS)]).unwrap();
        assert_eq!(denial(p.authorize(request(None, None))), "no token given");
        assert_eq!(denial(p.authorize(request(Some(""), None))), "no token given");
        assert_eq!(denial(p.authorize(request(Some("s3cret-"), None))), "unknown token");
        assert_eq!(denial(p.authorize(request(Some("s3cret-aa"), None))), "unknown token");
        assert_eq!(denial(p.authorize(request(None, Some("s3cret-a")))), "no token given");
    }

    #[test]
    fn password_counts_only_when_enabled() {
        let mut p = policy(&[("tokens", TOKENS), ("accept_password_as_token", "true")]).unwrap();
        assert_eq!(grant(p.authorize(request(None, Some("s3cret-a")))).account, "ops");
        assert_eq!(grant(p.authorize(request(Some("wrong"), Some("s3cret-b")))).account, "default");
        assert_eq!(denial(p.authorize(request(Some("wrong"), Some("wrong")))), "unknown token");
    }

    #[test]
    fn config_errors_never_quote_tokens() {
        let cases = [
            r#"[{"token": "s3cret-x", "publish": {"allow": ["a..b"]}}]"#,
            r#"[{"token": "s3cret-x"}, {"token": "s3cret-x"}]"#,
            r#"[{"token": "s3cret-x", "acount": "a"}]"#,
            r#"[{"token": 12345}]"#,
            r#"[{"token": ""}]"#,
            r#"[{"token": "s3cret-x""#,
            r#"["s3cret-x"]"#,
            r#""s3cret-x""#,
        ];
        for tokens in cases {
            let err = policy(&[("tokens", tokens)]).err().unwrap();
            assert!(!err.message.contains("s3cret") && !err.message.contains("12345"), "{}", err.message);
            assert!(!err.retryable);
        }
        let err = policy(&[("tokens", cases[0])]).err().unwrap();
        assert_eq!(
            err.message,
            "config: key `tokens`: entry 0 (account \"default\"): publish.allow: invalid subject pattern \"a..b\": empty token"
        );
        assert!(policy(&[]).err().unwrap().message.contains("`tokens`"));
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"abcabc", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"", b""));
    }
}
