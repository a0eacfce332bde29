//! Who a gateway client is and what it may do: tokens and users (plain or bcrypt passwords) from
//! `[service.auth]`, each user in an account with publish and subscribe permissions. Accounts
//! isolate subjects: the global account is the router's own subject space (what routes and HTTP
//! ingest see); any other account's subjects live under `$A.<account>.` inside the broker, where
//! no other account can reach them. Never touches sockets.

use crate::broker::Pattern;

/// The account of token holders, users without one, and HTTP ingest.
pub const GLOBAL_ACCOUNT: &str = "$G";

/// How clients authenticate; nothing configured means anyone may connect, in the global account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayAuth {
    pub tokens: Vec<String>,
    pub users: Vec<User>,
    /// The account that sees `$SYS` events and may ask `$SYS.REQ` requests.
    pub system_account: Option<String>,
}

/// One `[[service.auth.users]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Plain text, or a bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
    pub password: String,
    pub account: String,
    pub permissions: Permissions,
}

impl std::fmt::Debug for User {
    /// Never shows the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("name", &self.name).field("account", &self.account).finish_non_exhaustive()
    }
}

/// What a client may publish to and subscribe to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Rule,
    pub subscribe: Rule,
}

/// Subjects allowed (all when `allow` is empty) minus subjects denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub allow: Vec<Pattern>,
    pub deny: Vec<Pattern>,
}

impl Rule {
    /// True when `subject` (a subject or, for subscriptions, a pattern) passes the rule.
    pub fn permits(&self, subject: &str) -> bool {
        let covers = |pattern: &Pattern| pattern.as_str() == subject || pattern.matches(subject);
        (self.allow.is_empty() || self.allow.iter().any(covers)) && !self.deny.iter().any(covers)
    }
}

/// A client that authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: Option<String>,
    pub account: String,
    pub permissions: Permissions,
}

impl Identity {
    fn global(user: Option<String>) -> Identity {
        Identity { user, account: GLOBAL_ACCOUNT.into(), permissions: Permissions::default() }
    }
}

/// What a client presented in CONNECT.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    pub token: Option<&'a str>,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
}

impl GatewayAuth {
    /// True when clients must authenticate.
    pub fn required(&self) -> bool {
        !self.tokens.is_empty() || !self.users.is_empty()
    }

    /// The client's identity, or `None` when its credentials are not accepted. Checking a bcrypt
    /// hash takes tens of milliseconds: call it off the async workers.
    pub fn authenticate(&self, credentials: &Credentials<'_>) -> Option<Identity> {
        if !self.required() {
            return Some(Identity::global(credentials.user.map(str::to_owned)));
        }
        if let Some(token) = credentials.token
            && self.tokens.iter().any(|known| crate::auth::constant_time_eq(known.as_bytes(), token.as_bytes()))
        {
            return Some(Identity::global(None));
        }
        let (name, password) = (credentials.user?, credentials.password?);
        let user = self.users.iter().find(|user| user.name == name)?;
        let accepted = if is_bcrypt(&user.password) {
            bcrypt::verify(password, &user.password).unwrap_or(false)
        } else {
            crate::auth::constant_time_eq(user.password.as_bytes(), password.as_bytes())
        };
        accepted.then(|| Identity {
            user: Some(user.name.clone()),
            account: user.account.clone(),
            permissions: user.permissions.clone(),
        })
    }
}

/// True for a bcrypt hash, as nats-server recognises one.
pub fn is_bcrypt(password: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|prefix| password.starts_with(prefix))
}

/// Where `account`'s subjects live in the broker: nothing for the global account.
pub fn account_prefix(account: &str) -> String {
    if account == GLOBAL_ACCOUNT { String::new() } else { format!("$A.{account}.") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> GatewayAuth {
        let deny_secret = Rule { allow: Vec::new(), deny: vec![Pattern::new("secret.>").unwrap()] };
        GatewayAuth {
            tokens: vec!["t0k".into()],
            users: vec![
                User {
                    name: "a".into(),
                    password: "plain".into(),
                    account: "USERS".into(),
                    permissions: Permissions { publish: deny_secret, subscribe: Rule::default() },
                },
                User {
                    name: "admin".into(),
                    password: bcrypt::hash("changeit", 4).unwrap(),
                    account: "SYS".into(),
                    permissions: Permissions::default(),
                },
            ],
            system_account: Some("SYS".into()),
        }
    }

    #[test]
    fn tokens_plain_and_bcrypt_passwords_give_identities() {
        let auth = auth();
        let token = auth.authenticate(&Credentials { token: Some("t0k"), ..Default::default() }).unwrap();
        assert_eq!(token.account, GLOBAL_ACCOUNT);
        let user = auth.authenticate(&Credentials { user: Some("a"), password: Some("plain"), ..Default::default() });
        assert_eq!(user.unwrap().account, "USERS");
        let admin =
            auth.authenticate(&Credentials { user: Some("admin"), password: Some("changeit"), ..Default::default() });
        assert_eq!(admin.unwrap().account, "SYS");
        for wrong in [
            Credentials { token: Some("nope"), ..Default::default() },
            Credentials { user: Some("a"), password: Some("wrong"), ..Default::default() },
            Credentials { user: Some("admin"), password: Some("wrong"), ..Default::default() },
            Credentials { user: Some("nobody"), password: Some("plain"), ..Default::default() },
            Credentials::default(),
        ] {
            assert_eq!(auth.authenticate(&wrong), None, "{wrong:?}");
        }
        assert!(GatewayAuth::default().authenticate(&Credentials::default()).is_some(), "open without config");
    }

    #[test]
    fn rules_allow_then_deny() {
        let rule =
            Rule { allow: vec![Pattern::new("orders.>").unwrap()], deny: vec![Pattern::new("orders.secret").unwrap()] };
        assert!(rule.permits("orders.eu"));
        assert!(rule.permits("orders.>"), "a subscription to the allowed pattern itself");
        assert!(!rule.permits("orders.secret"));
        assert!(!rule.permits("users.1"));
        assert_eq!(account_prefix("USERS"), "$A.USERS.");
        assert_eq!(account_prefix(GLOBAL_ACCOUNT), "");
    }
}
