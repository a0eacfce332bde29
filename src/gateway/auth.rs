//! Who a gateway client is and what it may do. Each listener has its own authenticator: either
//! its `auth` (`[service.auth]` for the main one) decides — tokens, users
//! with plain or bcrypt passwords, users named by their TLS client certificate (`[tls]
//! verify_and_map`) — or an auth-policy plugin does, through the same [`AuthPolicy`] trait HTTP
//! ingest uses. Every client ends in an account with publish and subscribe permissions. Accounts
//! isolate subjects: the global account is the router's own subject space (what routes and HTTP
//! ingest see); any other account's subjects live under `$A.<account>.` inside the broker, where
//! no other account can reach them. Never touches sockets.

use std::sync::Arc;

use crate::auth::{AuthPolicy, AuthRequest, Decision, Grant};
pub use crate::broker::account::{GLOBAL_ACCOUNT, is_account_name};
use crate::permission::{Permissions, Rule};

/// `[service.auth]`: how clients authenticate. Nothing configured means anyone may connect, in
/// the global account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayAuth {
    pub tokens: Vec<String>,
    pub users: Vec<User>,
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

/// Every listener's authenticator, by listener name: a reload replaces them together.
#[derive(Default)]
pub struct Authenticators(pub std::collections::BTreeMap<String, Arc<Authenticator>>);

impl Authenticators {
    /// The authenticator of `listener`; none when the config in force no longer names it (its
    /// clients are refused until a restart closes it).
    pub fn of(&self, listener: &str) -> Option<Arc<Authenticator>> {
        self.0.get(listener).cloned()
    }
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
                publish: Rule::from_policy(&grant.publish)?,
                subscribe: Rule::from_policy(&grant.subscribe)?,
                responses: None,
            },
        })
    }
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
        let Some(user) = self.users.iter().find(|user| &user.name == name) else {
            // An unknown name takes as long to refuse as a known one with a wrong password, so the
            // time of an answer does not tell which names exist.
            if let Some(hash) = self.slowest_hash() {
                let _ = bcrypt::verify(password, hash);
            }
            return Err("unknown user".into());
        };
        let accepted = match &user.password {
            None => false,
            Some(hash) if is_bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Some(plain) => crate::auth::constant_time_eq(plain.as_bytes(), password.as_bytes()),
        };
        if accepted { Ok(Identity::of(user)) } else { Err("wrong password".into()) }
    }
}

impl GatewayAuth {
    /// The bcrypt hash of the highest cost among the users' passwords.
    fn slowest_hash(&self) -> Option<&str> {
        let cost = |hash: &str| hash.get(4..6).and_then(|cost| cost.parse::<u32>().ok()).unwrap_or(0);
        let hashes = self.users.iter().filter_map(|user| user.password.as_deref()).filter(|p| is_bcrypt(p));
        hashes.max_by_key(|hash| cost(hash))
    }
}

/// True for a bcrypt hash, as nats-server recognises one.
pub fn is_bcrypt(password: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|prefix| password.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Protocol;

    fn auth() -> GatewayAuth {
        let deny_secret = Rule { allow: None, deny: vec![crate::permission::Entry::parse("secret.>").unwrap()] };
        let user = |name: &str, password: Option<String>, account: &str| User {
            name: name.into(),
            password,
            account: account.into(),
            permissions: Permissions { publish: deny_secret.clone(), ..Permissions::default() },
        };
        GatewayAuth {
            tokens: vec!["t0k".into()],
            users: vec![
                user("a", Some("plain".into()), "USERS"),
                user("admin", Some(bcrypt::hash("changeit", 4).unwrap()), "SYS"),
                user("CN=device-7,O=Fleet", None, "DEVICES"),
            ],
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
        assert!(identity.permissions.publish.permits_publish("orders.eu"));
        assert!(!identity.permissions.publish.permits_publish("users.1"));
        let orders = crate::broker::Pattern::new("orders.eu").unwrap();
        assert!(identity.permissions.subscribe.subscription(&orders, None).is_none(), "an empty allow allows nothing");
        assert!(Identity::granted(None, grant("TWO.TOKENS", &[])).is_err());
        assert!(Identity::granted(None, grant("TEAM", &["orders..x"])).is_err());
    }

    #[test]
    fn unknown_names_are_checked_against_the_costliest_hash() {
        let mut auth = auth();
        let costly = bcrypt::hash("other", 5).unwrap();
        auth.users[0].password = Some(costly.clone());
        assert_eq!(auth.slowest_hash(), Some(costly.as_str()), "an unknown name pays what the dearest user does");
        auth.users.retain(|user| user.password.as_deref().is_none_or(|p| !is_bcrypt(p)));
        assert_eq!(auth.slowest_hash(), None);
    }
}
