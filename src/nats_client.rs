//! Eventyard as a client of an external NATS server (seed 003's event system): the connection
//! settings sources, sinks and cluster mode share. Connects through async-nats, retrying in the
//! background; never serves NATS itself (that is `gateway`) nor converts messages (that is
//! [`codec::nats`](crate::codec::nats)).

use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;

/// Where and as whom to connect; what `[sources.NAME]` and `[sinks.NAME]` of kind `nats` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConnection {
    /// Server URLs (`nats://host:port`); the client moves between them.
    pub servers: Vec<String>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// TLS to the server, required when set.
    pub tls: Option<NatsTls>,
}

/// TLS to a NATS server (`tls = { … }` of a NATS source or sink, `[broker.tls]` of cluster mode):
/// TLS is required, the server's certificate must chain to `ca_path` (PEM; the system's roots when
/// absent), and `cert_path` with `key_path` (PEM) is the client certificate for a server that
/// verifies its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTls {
    pub ca_path: Option<PathBuf>,
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
}

impl NatsTls {
    /// `options` requiring TLS with these roots and client certificate.
    pub fn apply(&self, mut options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        options = options.require_tls(true);
        if let Some(ca) = &self.ca_path {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.cert_path, &self.key_path) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options
    }
}

impl NatsConnection {
    /// Checks the settings; the error names the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.servers.is_empty() {
            return Err(("servers", "name at least one server, such as \"nats://127.0.0.1:4222\"".into()));
        }
        if let Some(bad) = self.servers.iter().find(|url| url.parse::<async_nats::ServerAddr>().is_err()) {
            return Err(("servers", format!("`{bad}` is not a NATS server address")));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(("user", "set both `user` and `password`, or neither".into()));
        }
        if let Some(tls) = &self.tls {
            if tls.cert_path.is_some() != tls.key_path.is_some() {
                return Err(("tls.cert_path", "set both `cert_path` and `key_path`, or neither".into()));
            }
            let paths =
                [("tls.ca_path", &tls.ca_path), ("tls.cert_path", &tls.cert_path), ("tls.key_path", &tls.key_path)];
            for (field, path) in paths {
                if let Some(path) = path
                    && let Err(err) = std::fs::metadata(path)
                {
                    return Err((field, format!("cannot read {}: {err}", path.display())));
                }
            }
        }
        Ok(())
    }

    /// A client named `name` for these settings. It returns at once and connects, and reconnects,
    /// in the background: a server that is down at start is not an error, publishes and
    /// subscriptions wait for it.
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("eventyard {name}"))
            .retry_on_initial_connect()
            .max_reconnects(None);
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(tls) = &self.tls {
            options = tls.apply(options);
        }
        let servers: Vec<async_nats::ServerAddr> = self
            .servers
            .iter()
            .map(|url| url.parse().with_context(|| format!("`{url}` is not a NATS server address")))
            .collect::<anyhow::Result<_>>()?;
        options.connect(servers).await.with_context(|| format!("{name}: connecting to {:?}", self.servers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let mut connection = NatsConnection {
            servers: vec!["nats://127.0.0.1:4222".into()],
            token: None,
            user: None,
            password: None,
            tls: None,
        };
        assert!(connection.check().is_ok());
        connection.tls = Some(NatsTls { cert_path: Some("Cargo.toml".into()), ..NatsTls::default() });
        assert_eq!(connection.check().unwrap_err().0, "tls.cert_path", "a certificate needs its key");
        connection.tls = Some(NatsTls { ca_path: Some("no/such/ca.pem".into()), ..NatsTls::default() });
        let (field, reason) = connection.check().unwrap_err();
        assert_eq!(field, "tls.ca_path");
        assert!(reason.starts_with("cannot read no/such/ca.pem: "), "{reason}");
        connection.tls = None;
        connection.user = Some("a".into());
        assert_eq!(connection.check().unwrap_err().0, "user");
        connection.servers.clear();
        assert_eq!(connection.check().unwrap_err().0, "servers");
    }
}
