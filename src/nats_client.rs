//! Eventyard as a client of an external NATS server (seed 003's event system): the connection
//! settings sources, sinks and cluster mode share. Connects through async-nats, retrying in the
//! background; never serves NATS itself (that is `gateway`) nor converts messages (that is
//! [`codec::nats`](crate::codec::nats)).

use anyhow::Context as _;

/// Where and as whom to connect; what `[sources.NAME]` and `[sinks.NAME]` of kind `nats` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConnection {
    /// Server URLs (`nats://host:port`); the client moves between them.
    pub servers: Vec<String>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
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
        let mut connection =
            NatsConnection { servers: vec!["nats://127.0.0.1:4222".into()], token: None, user: None, password: None };
        assert!(connection.check().is_ok());
        connection.user = Some("a".into());
        assert_eq!(connection.check().unwrap_err().0, "user");
        connection.servers.clear();
        assert_eq!(connection.check().unwrap_err().0, "servers");
    }
}
