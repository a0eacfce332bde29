//! `[broker]`: which broker the router runs on, and for cluster mode how it reaches the NATS
//! cluster. Reading and checking only; connecting is [`super::connect`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::nats_client::NatsTls;

/// Which broker routes events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerMode {
    /// In-process: one router, nothing to run besides it.
    #[default]
    Embedded,
    /// A NATS cluster with JetStream, shared by every router that names it.
    Nats,
}

/// `[broker]`
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    #[serde(default)]
    pub mode: BrokerMode,
    /// Cluster servers (`nats://host:port`); the client moves between them.
    #[serde(default)]
    pub servers: Vec<String>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// An nkey seed (`SU...`).
    pub nkey: Option<String>,
    /// A `.creds` file (user JWT and nkey seed), as `nsc` writes them.
    pub credentials: Option<PathBuf>,
    pub tls: Option<NatsTls>,
    /// The first token of every subject Eventyard uses in the cluster, and of its stream names,
    /// so several Eventyard deployments (or other users) can share one cluster.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// Copies JetStream keeps of each route's stream (1 to 5; at most the cluster's size).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// How long a router has to finish an event before JetStream gives it to another router. A
    /// router still working on one tells JetStream so every half of it.
    #[serde(default = "default_ack_wait_ms")]
    pub ack_wait_ms: u64,
    /// Stored messages of one route (an event, or a group of them) that may be unfinished at
    /// once, by all the routers together (the shared consumer's `max_ack_pending`): past it
    /// JetStream hands out no more until some finish.
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: usize,
    /// How long the first connection may take before start-up fails.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long a publish keeps trying to get JetStream's acknowledgement (across a failover)
    /// before the publisher is told to retry later.
    #[serde(default = "default_publish_timeout_ms")]
    pub publish_timeout_ms: u64,
}

fn default_subject_prefix() -> String {
    "eventyard".into()
}

fn default_replicas() -> usize {
    3
}

fn default_ack_wait_ms() -> u64 {
    30_000
}

fn default_max_ack_pending() -> usize {
    1024
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_publish_timeout_ms() -> u64 {
    10_000
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            mode: BrokerMode::Embedded,
            servers: Vec::new(),
            token: None,
            user: None,
            password: None,
            nkey: None,
            credentials: None,
            tls: None,
            subject_prefix: default_subject_prefix(),
            replicas: default_replicas(),
            ack_wait_ms: default_ack_wait_ms(),
            max_ack_pending: default_max_ack_pending(),
            connect_timeout_ms: default_connect_timeout_ms(),
            publish_timeout_ms: default_publish_timeout_ms(),
        }
    }
}

impl BrokerSettings {
    /// What is wrong with the settings, by key.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.mode == BrokerMode::Embedded {
            let cluster_keys = [
                ("servers", !self.servers.is_empty()),
                ("token", self.token.is_some()),
                ("user", self.user.is_some()),
                ("nkey", self.nkey.is_some()),
                ("credentials", self.credentials.is_some()),
                ("tls", self.tls.is_some()),
            ];
            for (key, set) in cluster_keys {
                if set {
                    errors.push((key, "is for `mode = \"nats\"`; the embedded broker connects to nothing".into()));
                }
            }
            return errors;
        }
        if self.servers.is_empty() {
            errors
                .push(("servers", "name at least one server of the cluster, such as \"nats://127.0.0.1:4222\"".into()));
        }
        if let Some(bad) = self.servers.iter().find(|url| url.parse::<async_nats::ServerAddr>().is_err()) {
            errors.push(("servers", format!("`{bad}` is not a NATS server address")));
        }
        if self.user.is_some() != self.password.is_some() {
            errors.push(("user", "set both `user` and `password`, or neither".into()));
        }
        let credentials = [self.token.is_some(), self.user.is_some(), self.nkey.is_some(), self.credentials.is_some()];
        if credentials.iter().filter(|set| **set).count() > 1 {
            errors.push(("token", "use one of `token`, `user`/`password`, `nkey` or `credentials`".into()));
        }
        if let Some(tls) = &self.tls
            && tls.cert_path.is_some() != tls.key_path.is_some()
        {
            errors.push(("tls", "set both `cert_path` and `key_path`, or neither".into()));
        }
        let prefix_ok = !self.subject_prefix.is_empty()
            && self.subject_prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !prefix_ok {
            errors.push(("subject_prefix", "use letters, digits, `-` and `_` (one subject token)".into()));
        }
        if !(1..=5).contains(&self.replicas) {
            errors.push(("replicas", "JetStream keeps 1 to 5 replicas".into()));
        }
        if self.ack_wait_ms < 100 {
            errors.push(("ack_wait_ms", "give a router at least 100 ms to finish an event".into()));
        }
        if self.max_ack_pending == 0 {
            errors.push(("max_ack_pending", "must be at least 1".into()));
        }
        errors
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.ack_wait_ms)
    }
}

/// Never prints a secret.
impl std::fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "<hidden>");
        f.debug_struct("BrokerSettings")
            .field("mode", &self.mode)
            .field("servers", &self.servers)
            .field("token", &hidden(&self.token))
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("nkey", &hidden(&self.nkey))
            .field("credentials", &self.credentials)
            .field("tls", &self.tls)
            .field("subject_prefix", &self.subject_prefix)
            .field("replicas", &self.replicas)
            .field("ack_wait_ms", &self.ack_wait_ms)
            .field("max_ack_pending", &self.max_ack_pending)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("publish_timeout_ms", &self.publish_timeout_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats(extra: &str) -> BrokerSettings {
        toml::from_str(&format!("mode = \"nats\"\nservers = [\"nats://127.0.0.1:4222\"]\n{extra}")).unwrap()
    }

    #[test]
    fn settings_are_checked_by_key() {
        assert!(nats("").check().is_empty());
        assert!(BrokerSettings::default().check().is_empty());
        let keys = |settings: BrokerSettings| settings.check().into_iter().map(|(key, _)| key).collect::<Vec<_>>();
        assert_eq!(keys(nats("token = \"t\"\nnkey = \"SU\"")), ["token"]);
        assert_eq!(keys(nats("user = \"u\"")), ["user"]);
        assert_eq!(keys(nats("replicas = 7")), ["replicas"]);
        assert_eq!(keys(nats("subject_prefix = \"a.b\"")), ["subject_prefix"]);
        let embedded: BrokerSettings = toml::from_str("servers = [\"nats://127.0.0.1:4222\"]").unwrap();
        assert_eq!(keys(embedded), ["servers"]);
        let no_servers: BrokerSettings = toml::from_str("mode = \"nats\"").unwrap();
        assert_eq!(keys(no_servers), ["servers"]);
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", nats("user = \"ada\"\npassword = \"s3cret\""));
        assert!(shown.contains("ada") && !shown.contains("s3cret"));
    }
}
