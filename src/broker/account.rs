//! Accounts as subject namespaces, nats-server's model on one broker. The global account (`$G`) is
//! the broker's root: routes, HTTP ingest with a token, sources and plugins live there. Every other
//! account's subjects live under `$A.<account>.`, and the system account's `$SYS` subjects under
//! its own prefix. A [`Namespace`] maps what a client names to where it lives and back, and refuses
//! what no one outside may name: the `$A` prefix (for every account, the global one included) and
//! `$SYS` (for all but the system account). Every way in — gateway clients, HTTP, sources, the
//! `nats-publisher` capability, handler output — checks subjects here; nothing else decides it.

use std::sync::Arc;

/// The account of token holders, users without one, HTTP ingest, sources and plugins.
pub const GLOBAL_ACCOUNT: &str = "$G";

/// The first token of every non-global account's subjects inside the broker.
const INTERNAL_TOKEN: &str = "$A";

/// The first token of system subjects.
const SYSTEM_TOKEN: &str = "$SYS";

/// Where the router's reload reports are published (in the global account's root, where only the
/// router itself can publish: the `$SYS` token is refused to everyone but the system account, whose
/// subjects live under its own prefix).
pub const RELOAD_SUBJECT: &str = "$SYS.EVENTYARD.RELOAD";

/// A subject no client, HTTP caller, source or plugin may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reserved {
    #[error("`$A` subjects are internal to the router")]
    Internal,
    #[error("`$SYS` subjects belong to the system account")]
    System,
}

/// Where `account`'s subjects live in the broker: nothing for the global account.
pub fn prefix(account: &str) -> String {
    if account == GLOBAL_ACCOUNT { String::new() } else { format!("{INTERNAL_TOKEN}.{account}.") }
}

/// The account a subject inside the broker belongs to, and the subject as that account names it.
pub fn split(subject: &str) -> (&str, &str) {
    subject
        .strip_prefix(INTERNAL_TOKEN)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.split_once('.'))
        .unwrap_or((GLOBAL_ACCOUNT, subject))
}

/// The pattern of `pattern` in every account but the global one (`$A.*.<pattern>`).
pub fn in_every_account(pattern: &str) -> String {
    format!("{INTERNAL_TOKEN}.*.{pattern}")
}

/// True when `account` can name an account: the global one, or one subject token not starting with
/// `$`.
pub fn is_account_name(account: &str) -> bool {
    account == GLOBAL_ACCOUNT
        || (!account.is_empty()
            && !account.starts_with('$')
            && account.bytes().all(|b| !b.is_ascii_whitespace() && !b.is_ascii_control() && !b"*>.".contains(&b)))
}

/// Refuses a subject or pattern named from outside the router by a member of the global account
/// (sources, plugins, handler output): the `$A` prefix and `$SYS`.
pub fn check_global(subject: &str) -> Result<(), Reserved> {
    Namespace::global().check(subject)
}

/// One account's view of the broker's subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    account: Arc<str>,
    prefix: Arc<str>,
    system: bool,
}

impl Namespace {
    /// `account`'s namespace; `system` when it is the system account.
    pub fn new(account: &str, system: bool) -> Namespace {
        Namespace { account: Arc::from(account), prefix: Arc::from(prefix(account)), system }
    }

    /// The global account's namespace: the broker's root. Made once; a copy costs two reference
    /// counts (HTTP asks for it on every request).
    pub fn global() -> Namespace {
        static GLOBAL: std::sync::LazyLock<Namespace> =
            std::sync::LazyLock::new(|| Namespace::new(GLOBAL_ACCOUNT, false));
        GLOBAL.clone()
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// What the account puts before its subjects in the broker (`$A.<account>.`, or nothing).
    pub fn prefix(&self) -> &Arc<str> {
        &self.prefix
    }

    pub fn is_system(&self) -> bool {
        self.system
    }

    /// Refuses a subject or pattern (as the client names it) that is reserved for this account:
    /// the `$A` prefix always, `$SYS` unless this is the system account.
    pub fn check(&self, subject: &str) -> Result<(), Reserved> {
        let first = subject.split('.').next().unwrap_or_default();
        if first == INTERNAL_TOKEN {
            Err(Reserved::Internal)
        } else if first == SYSTEM_TOKEN && !self.system {
            Err(Reserved::System)
        } else {
            Ok(())
        }
    }

    /// The broker's subject for `subject` as the client names it; no copy for the global account.
    pub fn internal(&self, subject: String) -> String {
        if self.prefix.is_empty() { subject } else { format!("{}{subject}", self.prefix) }
    }

    /// The client's name for the broker's `internal` subject.
    pub fn external<'a>(&self, internal: &'a str) -> &'a str {
        internal.strip_prefix(&*self.prefix).unwrap_or(internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_names_its_account() {
        assert_eq!(split("$A.TEAM.$DLQ.files"), ("TEAM", "$DLQ.files"));
        assert_eq!(split("$DLQ.files"), (GLOBAL_ACCOUNT, "$DLQ.files"));
        assert_eq!(split("$A"), (GLOBAL_ACCOUNT, "$A"));
    }

    #[test]
    fn accounts_map_subjects_under_their_prefix() {
        let users = Namespace::new("USERS", false);
        assert_eq!(users.internal("orders.x".into()), "$A.USERS.orders.x");
        assert_eq!(users.external("$A.USERS.orders.x"), "orders.x");
        assert_eq!(Namespace::global().internal("orders.x".into()), "orders.x");
        assert_eq!(prefix(GLOBAL_ACCOUNT), "");
    }

    #[test]
    fn the_internal_prefix_and_sys_are_reserved() {
        let global = Namespace::global();
        assert_eq!(global.check("$A.USERS.orders.x"), Err(Reserved::Internal));
        assert_eq!(global.check("$A.>"), Err(Reserved::Internal));
        assert_eq!(global.check("$A"), Err(Reserved::Internal));
        assert_eq!(global.check("$SYS.EVENTYARD.RELOAD"), Err(Reserved::System));
        assert_eq!(global.check("$SYS.>"), Err(Reserved::System));
        assert!(global.check("$DLQ.files").is_ok(), "the account's own dead letters");
        assert!(global.check("$ALPHA.x").is_ok() && global.check("orders.$A").is_ok());
        let system = Namespace::new("SYS", true);
        assert!(system.check("$SYS.ACCOUNT.USERS.CONNECT").is_ok());
        assert_eq!(system.check("$A.USERS.x"), Err(Reserved::Internal));
    }

    #[test]
    fn account_names_are_one_plain_token() {
        assert!(is_account_name("USERS") && is_account_name(GLOBAL_ACCOUNT));
        for bad in ["", "A.B", "$X", "a b", "*", ">", "a\u{7}"] {
            assert!(!is_account_name(bad), "{bad:?}");
        }
    }
}
