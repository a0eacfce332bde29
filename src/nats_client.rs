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

/// `tls = { ca = "…", cert = "…", key = "…" }` of a NATS source or sink: TLS is required, the
/// server's certificate must chain to `ca` (PEM; the system's roots when absent), and `cert` with
/// `key` (PEM) is the client certificate for a server that verifies its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
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
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(("tls.cert", "set both `cert` and `key`, or neither".into()));
            }
            for (field, path) in [("tls.ca", &tls.ca), ("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
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
            options = options.require_tls(true);
            if let Some(ca) = &tls.ca {
                options = options.add_root_certificates(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
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
        connection.tls = Some(NatsTls { cert: Some("Cargo.toml".into()), ..NatsTls::default() });
        assert_eq!(connection.check().unwrap_err().0, "tls.cert", "a certificate needs its key");
        connection.tls = Some(NatsTls { ca: Some("no/such/ca.pem".into()), ..NatsTls::default() });
        let (field, reason) = connection.check().unwrap_err();
        assert_eq!(field, "tls.ca");
        assert!(reason.starts_with("cannot read no/such/ca.pem: "), "{reason}");
        connection.tls = None;
        connection.user = Some("a".into());
        assert_eq!(connection.check().unwrap_err().0, "user");
        connection.servers.clear();
        assert_eq!(connection.check().unwrap_err().0, "servers");
    }
}
