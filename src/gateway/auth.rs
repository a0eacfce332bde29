//! Who a gateway client is and what it may do. Either `[service.auth]` decides — tokens, users
//! with plain or bcrypt passwords, users named by their TLS client certificate (`[tls]
//! verify_and_map`) — or an auth-policy plugin does, through the same [`AuthPolicy`] trait HTTP
//! ingest uses. Every client ends in an account with publish and subscribe permissions. Accounts
//! isolate subjects: the global account is the router's own subject space (what routes and HTTP
//! ingest see); any other account's subjects live under `$A.<account>.` inside the broker, where
//! no other account can reach them. Never touches sockets.

use std::sync::Arc;

use crate::auth::{AuthPolicy, AuthRequest, Decision, Grant};
use crate::broker::{Pattern, Subject};

/// The account of token holders, users without one, and HTTP ingest.
pub const GLOBAL_ACCOUNT: &str = "$G";

/// `[service.auth]`: how clients authenticate. Nothing configured means anyone may connect, in
/// the global account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayAuth {
    pub tokens: Vec<String>,
    pub users: Vec<User>,
    /// The account that sees `$SYS` events and may ask `$SYS.REQ` requests.
    pub system_account: Option<String>,
    /// An auth-policy plugin, by name, that decides instead of `tokens` and `users`.
    pub policy: Option<String>,
}

/// What the gateway checks a CONNECT with: `[service.auth]` and, when it names one, the loaded
/// auth-policy plugin.
pub struct Authenticator {
    pub config: GatewayAuth,
    pub policy: Option<Arc<dyn AuthPolicy>>,
    /// `[tls] verify_and_map`: a user is named by the client's certificate instead of a password.
    pub map_tls: bool,
}

/// One `[[service.auth.users]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Plain text, or a bcrypt hash (`$2a$`, `$2b$`, `$2y$`). A user without one is reached only
    /// through a TLS client certificate that names it.
    pub password: Option<String>,
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

/// Subjects allowed (all when `allow` is `None`) minus subjects denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub allow: Option<Vec<Pattern>>,
    pub deny: Vec<Pattern>,
}

impl Rule {
    /// True when `subject` (a subject or, for subscriptions, a pattern) passes the rule.
    pub fn permits(&self, subject: &str) -> bool {
        let covers = |pattern: &Pattern| pattern.as_str() == subject || pattern.matches(subject);
        self.allow.as_ref().is_none_or(|allow| allow.iter().any(covers)) && !self.deny.iter().any(covers)
    }

    /// The rule a policy's permissions describe; `None` names the first invalid pattern.
    fn from_policy(permissions: crate::auth::Permissions) -> Result<Rule, String> {
        let patterns = |texts: Vec<String>| -> Result<Vec<Pattern>, String> {
            texts
                .into_iter()
                .map(|text| Pattern::new(text.as_str()).map_err(|err| format!("`{text}`: {err}")))
                .collect()
        };
        Ok(Rule { allow: Some(patterns(permissions.allow)?), deny: patterns(permissions.deny)? })
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

    fn of(user: &User) -> Identity {
        Identity { user: Some(user.name.clone()), account: user.account.clone(), permissions: user.permissions.clone() }
    }

    /// The identity a policy granted; an error says what in the grant is unusable.
    fn granted(user: Option<String>, grant: Grant) -> Result<Identity, String> {
        if !is_account_name(&grant.account) {
            return Err(format!("account `{}` is not one subject token", grant.account));
        }
        Ok(Identity {
            user,
            account: grant.account,
            permissions: Permissions {
                publish: Rule::from_policy(grant.publish)?,
                subscribe: Rule::from_policy(grant.subscribe)?,
            },
        })
    }
}

/// True when `account` can name an account: the global one, or one subject token.
pub fn is_account_name(account: &str) -> bool {
    account == GLOBAL_ACCOUNT || (!account.contains('.') && Subject::new(account).is_ok())
}

impl Authenticator {
    /// True when clients must authenticate.
    pub fn required(&self) -> bool {
        self.policy.is_some() || self.map_tls || !self.config.tokens.is_empty() || !self.config.users.is_empty()
    }

    /// Who the client `request` describes is, or why it is refused (for the log, never the
    /// client).
    pub async fn authenticate(self: Arc<Self>, request: AuthRequest) -> Result<Identity, String> {
        if let Some(policy) = &self.policy {
            return match policy.authorize(&request).await {
                Decision::Allow(grant) => Identity::granted(request.user, grant)
                    .map_err(|reason| format!("the auth policy's grant is unusable: {reason}")),
                Decision::Deny(reason) => Err(reason),
            };
        }
        // Checking a bcrypt hash takes tens of milliseconds: off the async workers.
        tokio::task::spawn_blocking(move || self.config.authenticate(&request, self.map_tls))
            .await
            .unwrap_or_else(|_| Err("the credential check failed".into()))
    }
}

impl GatewayAuth {
    /// The identity `[service.auth]` gives the client `request` describes, or why it is refused.
    fn authenticate(&self, request: &AuthRequest, map_tls: bool) -> Result<Identity, String> {
        if map_tls {
            // As nats-server's `verify_and_map`: the first SAN or the subject DN that names a user.
            let names = request.tls_sans.iter().chain(&request.tls_subject);
            return names
                .filter_map(|name| self.users.iter().find(|user| &user.name == name))
                .map(Identity::of)
                .next()
                .ok_or_else(|| format!("no user is named by the certificate {:?}", request.tls_subject));
        }
        if self.tokens.is_empty() && self.users.is_empty() {
            return Ok(Identity::global(request.user.clone()));
        }
        if let Some(token) = &request.token
            && self.tokens.iter().any(|known| crate::auth::constant_time_eq(known.as_bytes(), token.as_bytes()))
        {
            return Ok(Identity::global(None));
        }
        let (Some(name), Some(password)) = (&request.user, &request.password) else {
            return Err("no accepted token, and no user and password".into());
        };
        let user = self.users.iter().find(|user| &user.name == name).ok_or("unknown user")?;
        let accepted = match &user.password {
            None => false,
            Some(hash) if is_bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Some(plain) => crate::auth::constant_time_eq(plain.as_bytes(), password.as_bytes()),
        };
        if accepted { Ok(Identity::of(user)) } else { Err("wrong password".into()) }
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
    use crate::auth::Protocol;

    fn auth() -> GatewayAuth {
        let deny_secret = Rule { allow: None, deny: vec![Pattern::new("secret.>").unwrap()] };
        let user = |name: &str, password: Option<String>, account: &str| User {
            name: name.into(),
            password,
            account: account.into(),
            permissions: Permissions { publish: deny_secret.clone(), subscribe: Rule::default() },
        };
        GatewayAuth {
            tokens: vec!["t0k".into()],
            users: vec![
                user("a", Some("plain".into()), "USERS"),
                user("admin", Some(bcrypt::hash("changeit", 4).unwrap()), "SYS"),
                user("CN=device-7,O=Fleet", None, "DEVICES"),
            ],
            system_account: Some("SYS".into()),
            policy: None,
        }
    }

    fn request(token: Option<&str>, user: Option<&str>, password: Option<&str>) -> AuthRequest {
        AuthRequest {
            protocol: Protocol::Nats,
            client_name: None,
            user: user.map(str::to_owned),
            token: token.map(str::to_owned),
            password: password.map(str::to_owned),
            tls_subject: None,
            tls_sans: Vec::new(),
            remote_addr: "127.0.0.1:1".into(),
        }
    }

    #[test]
    fn tokens_plain_and_bcrypt_passwords_give_identities() {
        let auth = auth();
        let account = |request: AuthRequest| auth.authenticate(&request, false).map(|identity| identity.account);
        assert_eq!(account(request(Some("t0k"), None, None)).unwrap(), GLOBAL_ACCOUNT);
        assert_eq!(account(request(None, Some("a"), Some("plain"))).unwrap(), "USERS");
        assert_eq!(account(request(None, Some("admin"), Some("changeit"))).unwrap(), "SYS");
        for wrong in [
            request(Some("nope"), None, None),
            request(None, Some("a"), Some("wrong")),
            request(None, Some("admin"), Some("wrong")),
            request(None, Some("nobody"), Some("plain")),
            request(None, Some("CN=device-7,O=Fleet"), Some("")),
            request(None, None, None),
        ] {
            assert!(auth.authenticate(&wrong, false).is_err(), "{wrong:?}");
        }
        assert!(GatewayAuth::default().authenticate(&request(None, None, None), false).is_ok(), "open without config");
    }

    #[test]
    fn a_client_certificate_names_its_user_when_mapping_is_on() {
        let auth = auth();
        let mut device = request(None, None, None);
        device.tls_subject = Some("CN=device-7,O=Fleet".into());
        assert_eq!(auth.authenticate(&device, true).unwrap().account, "DEVICES");
        assert!(auth.authenticate(&device, false).is_err(), "no mapping without verify_and_map");
        let mut by_san = request(None, None, None);
        by_san.tls_subject = Some("CN=someone".into());
        by_san.tls_sans = vec!["a".into()];
        assert_eq!(auth.authenticate(&by_san, true).unwrap().account, "USERS");
        let mut stranger = request(Some("t0k"), None, None);
        stranger.tls_subject = Some("CN=stranger".into());
        assert!(auth.authenticate(&stranger, true).is_err(), "a token does not stand in for a mapped user");
    }

    #[test]
    fn a_policy_grant_becomes_an_identity_only_when_usable() {
        let permissions = |allow: &[&str]| crate::auth::Permissions {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: Vec::new(),
        };
        let grant = |account: &str, allow: &[&str]| Grant {
            account: account.into(),
            publish: permissions(allow),
            subscribe: permissions(&[]),
        };
        let identity = Identity::granted(None, grant("TEAM", &["orders.>"])).unwrap();
        assert!(identity.permissions.publish.permits("orders.eu"));
        assert!(!identity.permissions.publish.permits("users.1"));
        assert!(!identity.permissions.subscribe.permits("orders.eu"), "an empty allow list allows nothing");
        assert!(Identity::granted(None, grant("TWO.TOKENS", &[])).is_err());
        assert!(Identity::granted(None, grant("TEAM", &["orders..x"])).is_err());
    }

    #[test]
    fn rules_allow_then_deny() {
        let rule = Rule {
            allow: Some(vec![Pattern::new("orders.>").unwrap()]),
            deny: vec![Pattern::new("orders.secret").unwrap()],
        };
        assert!(rule.permits("orders.eu"));
        assert!(rule.permits("orders.>"), "a subscription to the allowed pattern itself");
        assert!(!rule.permits("orders.secret"));
        assert!(!rule.permits("users.1"));
        assert!(Rule::default().permits("anything"));
        assert_eq!(account_prefix("USERS"), "$A.USERS.");
        assert_eq!(account_prefix(GLOBAL_ACCOUNT), "");
    }
}
