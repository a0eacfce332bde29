//! Configuration: parse the TOML file ([`model`]), validate it into a [`Config`] ([`validate`]), all
//! errors at once, each naming its key and line. Never opens sockets, spawns tasks or loads plugins;
//! `server` does that with the result.
//!
//! Relative paths in the file are relative to the working directory.

pub mod model;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::broker::Pattern;
use crate::broker::cluster::BrokerSettings;
use crate::gateway::{GatewayAuth, GatewaySettings};
use crate::ingest::http::RawRule;
use crate::ingest::serve::HttpServerSettings;
use crate::kafka::KafkaSettings;
use crate::plugin::{Grants, Limits, PluginSpec, Role, RuntimeOptions};
use crate::queue::OverflowPolicy;
use crate::route::{FailurePolicy, RolloutSettings};
use crate::sink::builtin::{FileSinkConfig, HttpSinkConfig, NatsSinkConfig, ObjectSinkConfig, StdoutSinkConfig};
use crate::sink::worker::RetryPolicy;
use crate::source::SourcePlan;
use crate::telemetry::LogFormat;
use crate::tls::TlsSettings;
use crate::wal::DurabilitySettings;

/// One problem with the config: the dotted key, its line (0 when it has none) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub key: String,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), self.line) {
            (true, 0) => write!(f, "{}", self.reason),
            (true, line) => write!(f, "line {line}: {}", self.reason),
            (false, 0) => write!(f, "{}: {}", self.key, self.reason),
            (false, line) => write!(f, "line {line}: {}: {}", self.key, self.reason),
        }
    }
}

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub log_format: LogFormat,
    pub log_level: String,
    /// The drop-in plugin directory.
    pub plugin_dir: PathBuf,
    /// Reload plugins when files in `plugin_dir` change.
    pub watch_plugins: bool,
    pub runtime: RuntimeOptions,
    /// Failure policy of plugins that set none.
    pub failure_policy: FailurePolicy,
    /// Limits of plugins that set none.
    pub default_limits: Limits,
    /// Plugins with a `[plugin.NAME]` section, by name.
    pub plugins: BTreeMap<String, PluginPlan>,
    pub service: ServiceSettings,
    pub http: HttpSettings,
    pub tls: Option<TlsSettings>,
    pub routes: Vec<RoutePlan>,
    pub sinks: BTreeMap<String, SinkPlan>,
    pub sources: BTreeMap<String, SourcePlan>,
    /// `[kafka]`: how to reach the brokers granted plugins produce to.
    pub kafka: Option<KafkaSettings>,
    /// `[broker]`: which broker routes events (restart-only).
    pub broker: BrokerSettings,
    /// `[durability]`: present, routed events are kept in a write-ahead log until delivered
    /// (restart-only).
    pub durability: Option<DurabilitySettings>,
    /// `[unrouted] dead_letter`: events no route takes become dead letters on `$DLQ.unrouted`.
    pub unrouted_dead_letter: bool,
    /// `[dead_letters] keep_bytes`: the most bytes of dead letters kept for the operator
    /// (restart-only).
    pub dead_letter_bytes: usize,
    /// The file it was read from, for reloading it.
    pub origin: Option<ConfigOrigin>,
}

/// Where a config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOrigin {
    pub path: PathBuf,
    /// Of the file's text, to tell whether it changed.
    pub sha256: String,
}

/// `[service]`, checked.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub event_limit: usize,
    /// What every sink queue holds together, in bytes.
    pub queue_bytes: usize,
    pub drain_timeout: Duration,
    /// The NATS gateway, on when the config has a `[service]` section that does not set `nats = false`.
    pub gateway: Option<GatewaySettings>,
    /// Each NATS listener's auth, by listener name (`[service.auth]` is the main one's).
    pub auth: BTreeMap<String, GatewayAuth>,
    /// The account that sees `$SYS` events and may ask `$SYS.REQ` requests, on every listener.
    pub system_account: Option<String>,
}

/// `[http]`, checked.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_body: usize,
    pub auth: HttpAuthPlan,
    /// `[admin]`.
    pub admin: AdminPlan,
    /// The listener's limits and TLS (restart-only).
    pub server: HttpServerSettings,
    /// `[[http.raw]]`: where raw requests' attributes are, by subject (restart-only).
    pub raw: Vec<RawRule>,
}

/// `[admin]`, checked: who may call the admin endpoints. Nothing set: nobody (they are off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminPlan {
    pub tokens: Vec<String>,
    /// An auth-policy plugin, by name: a caller it grants `account` is an administrator.
    pub policy: Option<String>,
    pub account: String,
    /// `/metrics` needs the admin credential too.
    pub protect_metrics: bool,
}

/// Who may publish over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuthPlan {
    Open,
    Tokens(Vec<String>),
    /// An auth-policy plugin, by name.
    Policy(String),
}

/// One `[[route]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePlan {
    pub name: String,
    pub subject: Pattern,
    pub routing_key: Option<Vec<String>>,
    pub handlers: Vec<String>,
    pub sinks: Vec<String>,
}

/// One `[sinks.NAME]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkPlan {
    pub name: String,
    pub kind: SinkKindPlan,
    pub queue_size: usize,
    pub queue_bytes: usize,
    pub overflow: OverflowPolicy,
    pub block_timeout: Duration,
    pub batch_size: usize,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub retry: RetryPolicy,
}

impl SinkPlan {
    pub fn queue_limits(&self) -> crate::queue::QueueLimits {
        crate::queue::QueueLimits {
            events: self.queue_size,
            bytes: self.queue_bytes,
            overflow: self.overflow,
            block_timeout: self.block_timeout,
        }
    }
}

/// What a sink is, with its kind's own settings.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKindPlan {
    File(FileSinkConfig),
    Stdout(StdoutSinkConfig),
    Http(HttpSinkConfig),
    Nats(NatsSinkConfig),
    ObjectStore(ObjectSinkConfig),
    /// A sink plugin, by name.
    Plugin(String),
}

/// How to load one plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginPlan {
    pub name: String,
    pub file: PathBuf,
    /// The role the config requires, if it names one; otherwise the component's own world.
    pub role: Option<Role>,
    pub failure_policy: FailurePolicy,
    pub limits: Limits,
    pub config: Vec<(String, String)>,
    pub grants: Grants,
    /// False for a file found in the plugin directory with no `[plugin.NAME]` section.
    pub configured: bool,
    /// How a new version rolls out; `None`: it replaces the running one at once.
    pub rollout: Option<RolloutSettings>,
}

impl PluginPlan {
    /// A plan for a dropped-in file with no section: defaults, no config, nothing granted.
    pub fn drop_in(name: String, file: PathBuf, config: &Config) -> Self {
        PluginPlan {
            name,
            file,
            role: None,
            failure_policy: config.failure_policy,
            limits: config.default_limits.clone(),
            config: Vec::new(),
            grants: Grants::default(),
            configured: false,
            rollout: None,
        }
    }

    /// Whether `other` loads the same version as this plan: they differ in nothing but how a new
    /// version rolls out.
    pub fn same_version(&self, other: &PluginPlan) -> bool {
        PluginPlan { rollout: None, ..self.clone() } == PluginPlan { rollout: None, ..other.clone() }
    }

    /// The runtime's spec for this plan.
    pub fn spec(&self) -> PluginSpec {
        PluginSpec {
            name: self.name.clone(),
            path: self.file.clone(),
            role: self.role,
            config: self.config.clone(),
            limits: self.limits.clone(),
            grants: self.grants.clone(),
        }
    }
}

impl Config {
    /// Parses and validates `text`.
    pub fn from_toml(text: &str) -> Result<Config, Vec<ConfigError>> {
        let file: model::ConfigFile = toml::from_str(text).map_err(|err| {
            let line = err.span().map_or(0, |span| validate::Lines(text).of(span));
            vec![ConfigError { key: String::new(), line, reason: err.message().trim().to_owned() }]
        })?;
        validate::validate(&file, text)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn from_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            vec![ConfigError { key: String::new(), line: 0, reason: format!("cannot read {}: {err}", path.display()) }]
        })?;
        let mut config = Config::from_toml(&text)?;
        config.origin =
            Some(ConfigOrigin { path: path.to_owned(), sha256: crate::plugin::content_hash(text.as_bytes()) });
        Ok(config)
    }

    /// Puts back the settings of `running` that only a restart can change, and names each one
    /// that differed: a reload applies the rest and reports these as needing a restart.
    pub fn keep_restart_only(&mut self, running: &Config) -> Vec<&'static str> {
        let mut differ = Vec::new();
        let mut keep = |key: &'static str, same: bool| {
            if !same {
                differ.push(key);
            }
        };
        keep("log.format", self.log_format == running.log_format);
        keep("log.level", self.log_level == running.log_level);
        keep("plugins.dir", self.plugin_dir == running.plugin_dir);
        keep("plugins.watch", self.watch_plugins == running.watch_plugins);
        keep("plugins.cache_dir", self.runtime.cache_dir == running.runtime.cache_dir);
        keep("plugins.consume_fuel", self.runtime.consume_fuel == running.runtime.consume_fuel);
        keep("plugins.pool_instances", self.runtime.pool_instances == running.runtime.pool_instances);
        keep("plugins.trusted_keys", self.runtime.trusted_keys == running.runtime.trusted_keys);
        keep("service (gateway address and limits)", self.service.gateway == running.service.gateway);
        keep("http.listen", self.http.listen == running.http.listen);
        keep("http (connection limits and TLS)", self.http.server == running.http.server);
        keep("http.raw", self.http.raw == running.http.raw);
        keep("tls", self.tls == running.tls);
        keep("sources", self.sources == running.sources);
        keep("kafka", self.kafka == running.kafka);
        keep("broker", self.broker == running.broker);
        keep("durability", self.durability == running.durability);
        keep("dead_letters.keep_bytes", self.dead_letter_bytes == running.dead_letter_bytes);
        let system_account = &running.service.system_account;
        keep("service.auth.system_account", &self.service.system_account == system_account);
        self.log_format = running.log_format;
        self.log_level = running.log_level.clone();
        for plan in self.plugins.values_mut() {
            if let Ok(file) = plan.file.strip_prefix(&self.plugin_dir) {
                plan.file = running.plugin_dir.join(file);
            }
        }
        self.plugin_dir = running.plugin_dir.clone();
        self.watch_plugins = running.watch_plugins;
        self.runtime = running.runtime.clone();
        self.service.gateway = running.service.gateway.clone();
        self.http.listen = running.http.listen;
        self.http.server = running.http.server.clone();
        self.http.raw = running.http.raw.clone();
        self.tls = running.tls.clone();
        self.sources = running.sources.clone();
        self.kafka = running.kafka.clone();
        self.broker = running.broker.clone();
        self.durability = running.durability.clone();
        self.dead_letter_bytes = running.dead_letter_bytes;
        self.service.system_account = system_account.clone();
        differ
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::{Acks, Compression};
    use crate::plugin::Topics;
    use crate::route::RolloutMode;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.plugin_dir, PathBuf::from("run/plugins"));
        assert_eq!(config.default_limits, Limits::default());
        assert_eq!(config.runtime.cache_dir.as_deref(), Some(Path::new("run/cache")));
    }

    #[test]
    fn a_kafka_grant_needs_a_kafka_section_that_makes_sense() {
        let errors = Config::from_toml("[plugin.k.capabilities]\nkafka = true\n").unwrap_err();
        assert!(errors.iter().any(|e| e.key == "plugin.k.capabilities.kafka" && e.reason.contains("[kafka]")));
        let errors = Config::from_toml("[kafka]\nbrokers = [\"nohost\"]\nacks = \"leader\"\n").unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["kafka.brokers", "kafka.idempotent"], "{errors:?}");
        let errors = Config::from_toml("[kafka]\nbrokers = [\"k:9092\"]\nbatch = 1\n").unwrap_err();
        assert!(errors[0].reason.contains("unknown field `batch`"), "{errors:?}");
    }

    #[test]
    fn a_nats_grant_lists_subjects_and_never_reserved_ones() {
        let config = Config::from_toml("[plugin.p.capabilities]\nnats = [\"alerts.>\"]\n").unwrap();
        let grant = config.plugins["p"].grants.nats.clone().expect("granted");
        assert!(grant.allows("alerts.disk") && !grant.allows("orders.x"));
        for reserved in ["$SYS.>", "$A.USERS.>"] {
            let errors = Config::from_toml(&format!("[plugin.p.capabilities]\nnats = [\"{reserved}\"]\n")).unwrap_err();
            assert!(errors[0].key == "plugin.p.capabilities.nats" && errors[0].reason.contains("router's own"));
        }
    }

    #[test]
    fn the_admin_api_and_https_are_checked() {
        let errors = Config::from_toml("[admin]\nprotect_metrics = true\n").unwrap_err();
        assert!(errors[0].key == "admin" && errors[0].reason.contains("admin API is off"), "{errors:?}");
        let errors = Config::from_toml("[admin]\ntokens = [\"\"]\n").unwrap_err();
        assert_eq!(errors[0].key, "admin.tokens", "{errors:?}");
        let config = Config::from_toml("[admin]\ntokens = [\"t\"]\n").unwrap();
        assert_eq!((config.http.admin.tokens.len(), config.http.admin.account.as_str()), (1, "SYS"));
        let tls = "[http.tls]\ncert_path = \"c\"\nkey_path = \"k\"\nverify_and_map = true\n";
        let errors = Config::from_toml(tls).unwrap_err();
        assert_eq!(errors[0].key, "http.tls.verify_and_map", "{errors:?}");
        assert_eq!(Config::from_toml("").unwrap().http.server, HttpServerSettings::default());
    }

    #[test]
    fn trusted_keys_are_ed25519_keys() {
        let key = "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let config = Config::from_toml(&format!("[plugins]\ntrusted_keys = [\"{key}\"]\n")).unwrap();
        assert_eq!(config.runtime.trusted_keys.iter().map(ToString::to_string).collect::<Vec<_>>(), [key]);
        for garbage in ["rsa:AAAA", "ed25519:not-base64!", "ed25519:AAAA"] {
            let errors = Config::from_toml(&format!("[plugins]\ntrusted_keys = [\"{garbage}\"]\n")).unwrap_err();
            assert_eq!(errors[0].key, "plugins.trusted_keys", "{garbage}: {errors:?}");
        }
    }

    #[test]
    fn rollout_settings_are_checked_and_fill_in_their_defaults() {
        let rollout = |section: &str| Config::from_toml(&format!("[plugin.p.rollout]\n{section}\n"));
        let config = rollout("mode = \"canary\"\nkey = \"routingkey\"\nmax_p99_ms = 20").unwrap();
        let settings = config.plugins["p"].rollout.clone().unwrap();
        assert_eq!(
            (settings.mode, settings.share, settings.key.as_deref()),
            (RolloutMode::Canary, 5, Some("routingkey"))
        );
        assert_eq!(settings.rules.max_p99, Some(Duration::from_millis(20)));
        assert_eq!(settings.rules.min_events, 1000);
        assert!(settings.automatic);
        let shadow = rollout("mode = \"shadow\"\nautomatic = false\nmax_difference_rate = 0.001").unwrap();
        let settings = shadow.plugins["p"].rollout.clone().unwrap();
        assert_eq!((settings.share, settings.automatic, settings.rules.max_difference_rate), (0, false, 0.001));
        // Same version, other rollout settings: not a new version.
        let (a, b) = (&config.plugins["p"], &shadow.plugins["p"]);
        assert!(a.same_version(b) && a != b);
        for (section, key, reason) in [
            ("mode = \"blue-green\"", "", "unknown variant `blue-green`"),
            ("share = 5", "", "missing field `mode`"),
            ("mode = \"canary\"\nshare = 0", "plugin.p.rollout.share", "between 1 and 100"),
            ("mode = \"canary\"\nshare = 101", "plugin.p.rollout.share", "between 1 and 100"),
            ("mode = \"shadow\"\nshare = 5", "plugin.p.rollout.share", "for canaries"),
            ("mode = \"shadow\"\nkey = \"routingkey\"", "plugin.p.rollout.key", "for canaries"),
            ("mode = \"canary\"\nkey = \"\"", "plugin.p.rollout.key", "name an attribute"),
            ("mode = \"canary\"\nmax_error_rate = 1.5", "plugin.p.rollout.max_error_rate", "between 0 and 1"),
            ("mode = \"canary\"\nmax_fault_rate = -0.1", "plugin.p.rollout.max_fault_rate", "between 0 and 1"),
            ("mode = \"canary\"\nmin_events = 0", "plugin.p.rollout.min_events", "between 1"),
            ("mode = \"canary\"\nmax_p99_ratio = 0.5", "plugin.p.rollout.max_p99_ratio", "between 1 and 1000"),
            ("mode = \"canary\"\nstep = 2", "", "unknown field `step`"),
        ] {
            let errors = rollout(section).unwrap_err();
            assert!(errors[0].key == key && errors[0].reason.contains(reason), "{section}: {errors:?}");
        }
    }

    #[test]
    fn the_dead_letter_store_is_bounded_in_bytes_and_kept_across_a_reload() {
        assert_eq!(Config::from_toml("").unwrap().dead_letter_bytes, 64 << 20);
        let running = Config::from_toml("[dead_letters]\nkeep_bytes = \"1MiB\"\n").unwrap();
        assert_eq!(running.dead_letter_bytes, 1 << 20);
        let mut next = Config::from_toml("[dead_letters]\nkeep_bytes = 0\n").unwrap();
        assert_eq!(next.keep_restart_only(&running), ["dead_letters.keep_bytes"]);
        assert_eq!(next.dead_letter_bytes, 1 << 20);
    }

    #[test]
    fn the_monitoring_port_stays_on_loopback_unless_it_is_made_public() {
        let monitoring = |listen: &str, public: bool| {
            Config::from_toml(&format!("[service.monitoring]\nlisten = \"{listen}\"\npublic = {public}\n"))
        };
        let config = monitoring("127.0.0.1:8222", false).unwrap();
        let settings = config.service.gateway.and_then(|gateway| gateway.monitoring);
        assert_eq!(settings.map(|m| m.listen.port()), Some(8222));
        for listen in ["0.0.0.0:8222", "10.1.2.3:8222"] {
            let errors = monitoring(listen, false).unwrap_err();
            assert!(errors[0].key == "service.monitoring.listen" && errors[0].reason.contains("public"), "{errors:?}");
            assert!(monitoring(listen, true).is_ok());
        }
        let errors = monitoring("localhost", false).unwrap_err();
        assert!(errors[0].reason.contains("not an address"), "{errors:?}");
    }

    #[test]
    fn plugin_sections_resolve_limits_config_and_grants() {
        let config = Config::from_toml(
            r#"
[plugins]
dir = "p"
failure_policy = "fail_open"
[plugins.defaults]
timeout_ms = 100

[plugin.severity-map]
world = "handler"
failure_policy = "dead_letter"
config = { field = "level", strict = true, list = ["a", "b"] }
[plugin.severity-map.limits]
memory_limit = "16MiB"

[plugin.file-sink.capabilities]
directory = "/tmp/x"
http = ["api.example.com"]
kafka = ["orders"]

[kafka]
brokers = ["127.0.0.1:9092"]
compression = "zstd"
"#,
        )
        .unwrap();
        let map = &config.plugins["severity-map"];
        assert_eq!(map.file, PathBuf::from("p/severity_map.wasm"));
        assert_eq!(map.role, Some(Role::Handler));
        assert_eq!(map.failure_policy, FailurePolicy::DeadLetter);
        assert_eq!(map.limits.memory_limit, 16 << 20);
        assert_eq!(map.limits.timeout, std::time::Duration::from_millis(100));
        assert_eq!(
            map.config,
            [
                ("field".into(), "level".into()),
                ("list".into(), r#"["a","b"]"#.into()),
                ("strict".into(), "true".into())
            ]
        );
        let sink = &config.plugins["file-sink"];
        assert_eq!(sink.failure_policy, FailurePolicy::FailOpen);
        assert_eq!(sink.grants.http_hosts.as_deref(), Some(&["api.example.com".to_string()][..]));
        assert_eq!(sink.grants.kafka, Some(Topics::Only(vec!["orders".into()])));
        assert!(sink.grants.nats.is_none());
        let kafka = config.kafka.as_ref().expect("[kafka] is read");
        assert_eq!((kafka.acks, kafka.idempotent, kafka.compression), (Acks::All, true, Compression::Zstd));
    }

    #[test]
    fn a_durability_section_is_checked_and_is_for_the_embedded_broker() {
        let errors =
            Config::from_toml("[durability]\ndir = \"\"\nfsync = \"interval\"\ninterval_ms = 0\n").unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["durability.dir", "durability.interval_ms"]);
        let cluster = "[broker]\nmode = \"nats\"\nservers = [\"nats://127.0.0.1:4222\"]\n[durability]\ndir = \"wal\"\n";
        let errors = Config::from_toml(cluster).unwrap_err();
        assert_eq!(errors[0].key, "durability");
        assert!(errors[0].reason.contains("JetStream"), "{:?}", errors[0]);
        let config = Config::from_toml("[durability]\ndir = \"wal\"\n").unwrap();
        let wal = config.durability.expect("durability is on").wal();
        assert_eq!((wal.dir.to_str(), wal.fsync), (Some("wal"), crate::wal::FsyncPolicy::Always));
    }

    #[test]
    fn a_broker_section_is_checked_with_its_keys() {
        let errors = Config::from_toml("[broker]\nmode = \"nats\"\nreplicas = 9\n").unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["broker.servers", "broker.replicas"]);
        assert_eq!(errors[0].line, 1);
        let errors = Config::from_toml("[broker]\nmode = \"cluster\"\n").unwrap_err();
        assert!(errors[0].reason.contains("embedded") && errors[0].reason.contains("nats"), "{:?}", errors[0]);
    }

    #[test]
    fn byte_bounds_parse_and_durable_mode_refuses_events_its_log_cannot_keep() {
        let config = Config::from_toml(
            "[service]\nnats = false\nqueue_bytes = \"1GiB\"\n[sinks.s]\nkind = \"stdout\"\nqueue_bytes = \"8MiB\"\nbatch_bytes = \"1MiB\"\n",
        )
        .unwrap();
        assert_eq!(config.service.queue_bytes, 1 << 30);
        let limits = config.sinks["s"].queue_limits();
        assert_eq!((limits.bytes, config.sinks["s"].batch_bytes), (8 << 20, 1 << 20));
        assert_eq!(Config::from_toml("").unwrap().service.queue_bytes, 512 << 20, "bounded by default");

        let errors = Config::from_toml("[durability]\ndir = \"wal\"\n[http]\nmax_body = \"65MiB\"\n").unwrap_err();
        assert!(errors[0].key == "http.max_body" && errors[0].reason.contains("64 MiB"), "{errors:?}");
        assert!(Config::from_toml("[http]\nmax_body = \"65MiB\"\n").is_ok(), "only the log limits it");
        assert!(Config::from_toml("[durability]\ndir = \"wal\"\n[http]\nmax_body = \"64MiB\"\n").is_ok());
    }

    #[test]
    fn restart_only_settings_are_named_and_kept() {
        let running = Config::from_toml("[http]\nlisten = \"127.0.0.1:1\"\n[service]\nevent_limit = 5\n").unwrap();
        assert_eq!(running.service.gateway.as_ref().map(|g| g.listeners[0].port), Some(10132));
        let mut next = Config::from_toml(
            "[http]\nlisten = \"127.0.0.1:2\"\n[service]\nevent_limit = 6\nport = 4222\n[plugins]\nconsume_fuel = true\n\
             [broker]\nmode = \"nats\"\nservers = [\"nats://127.0.0.1:4222\"]\n",
        )
        .unwrap();
        assert_eq!(
            next.keep_restart_only(&running),
            ["plugins.consume_fuel", "service (gateway address and limits)", "http.listen", "broker"]
        );
        assert_eq!(next.broker, running.broker, "the broker a router runs on stays until a restart");
        assert_eq!(next.http.listen, running.http.listen);
        assert_eq!(next.service.gateway, running.service.gateway);
        assert!(!next.runtime.consume_fuel);
        assert_eq!(next.service.event_limit, 6, "live settings keep their new value");
    }

    #[test]
    fn nats_sources_and_sinks_are_checked() {
        let good = "[sources.up]\nkind = \"nats\"\nservers = [\"nats://127.0.0.1:4222\"]\nsubjects = [\"activities\", \"external.>\"]\n\
                    [sinks.out]\nkind = \"nats\"\nservers = [\"nats://127.0.0.1:4222\"]\n";
        let config = Config::from_toml(good).unwrap();
        assert_eq!(config.sources["up"].subjects.len(), 2);
        assert!(matches!(config.sinks["out"].kind, SinkKindPlan::Nats(_)));
        for (bad, key) in [
            ("[sources.up]\nkind = \"nats\"\nservers = []\nsubjects = [\"a\"]\n", "sources.up.servers"),
            ("[sources.up]\nkind = \"nats\"\nservers = [\"nats://h:1\"]\nsubjects = []\n", "sources.up.subjects"),
            (
                "[sources.up]\nkind = \"nats\"\nservers = [\"nats://h:1\"]\nsubjects = [\"a..b\"]\n",
                "sources.up.subjects",
            ),
            (
                "[sources.up]\nkind = \"nats\"\nservers = [\"nats://h:1\"]\nsubjects = [\"a\"]\n[sinks.up]\nkind = \"stdout\"\n",
                "sinks.up",
            ),
        ] {
            let errors = Config::from_toml(bad).unwrap_err();
            assert!(errors.iter().any(|e| e.key == key), "{bad}: {errors:?}");
        }
    }

    #[test]
    fn the_service_section_turns_the_gateway_on_unless_nats_is_off() {
        let gateway = |text: &str| Config::from_toml(text).unwrap().service.gateway.is_some();
        assert!(!gateway(""));
        assert!(gateway("[service]\n"));
        assert!(!gateway("[service]\nnats = false\nevent_limit = 7\n"));
        assert_eq!(Config::from_toml("[service]\nnats = false\nevent_limit = 7\n").unwrap().service.event_limit, 7);
    }

    #[test]
    fn more_nats_listeners_have_their_own_address_tls_and_auth_but_share_the_system_account() {
        let config = Config::from_toml(
            "[service.auth]\nsystem_account = \"SYS\"\ntokens = [\"t\"]\n\
             [service.listeners.internal]\nport = 4222\n\
             [service.listeners.external]\nport = 4443\ntls = { cert_path = \"c\", key_path = \"k\" }\n\
             auth = { tokens = [\"x\"] }\n",
        )
        .unwrap();
        let listeners = &config.service.gateway.as_ref().unwrap().listeners;
        let names: Vec<(&str, u16, bool)> =
            listeners.iter().map(|l| (l.name.as_str(), l.port, l.tls.is_some())).collect();
        assert_eq!(names, [("service", 10132, false), ("external", 4443, true), ("internal", 4222, false)]);
        assert_eq!(config.service.auth["external"].tokens, ["x"]);
        assert_eq!(config.service.auth["internal"], GatewayAuth::default(), "no auth section: anyone connects");
        assert_eq!(config.service.system_account.as_deref(), Some("SYS"));
        for (text, key, reason) in [
            (
                "[service.listeners.a]\nport = 1\nauth = { system_account = \"S\" }\n",
                "service.listeners.a.auth.system_account",
                "[service.auth]",
            ),
            ("[service.listeners.service]\nport = 1\n", "service.listeners.service", "other than `service`"),
            ("[service.listeners.a]\nport = 10132\n", "service.listeners.a.port", "another listener's address"),
            ("[service]\nnats = false\n[service.listeners.a]\nport = 1\n", "service.listeners.a", "gateway is off"),
            (
                "[service.listeners.a]\nport = 1\ntls = { cert_path = \"c\", key_path = \"k\", verify_and_map = true }\n",
                "service.listeners.a.tls.verify_and_map",
                "root_ca_path",
            ),
            (
                "[service.listeners.a]\nport = 1\nauth = { policy = \"p\", tokens = [\"t\"] }\n",
                "service.listeners.a.auth.policy",
                "not both",
            ),
            ("[service.raw]\ntype = \"type.name\"\n", "service.raw.type", "JSON pointer"),
            (
                "[service.listeners.a]\nport = 1\nraw = { time = { header = \"\" } }\n",
                "service.listeners.a.raw.time",
                "header name",
            ),
            ("[[http.raw]]\nsubjects = \"a..b\"\n", "http.raw[0].subjects", "a..b"),
            ("[[http.raw]]\nsubjects = \"a.>\"\nid = \"x\"\n", "http.raw[0].id", "JSON pointer"),
            // A misspelt attribute is an unknown key, refused when the file is read.
            ("[[http.raw]]\nsubjects = \"a.>\"\ntipe = \"/t\"\n", "", "unknown field `tipe`"),
            (
                "[sources.s]\nkind = \"nats\"\nservers = [\"nats://h:1\"]\nsubjects = [\"a\"]\nraw = { type = \"t\" }\n",
                "sources.s.raw.type",
                "JSON pointer",
            ),
        ] {
            let errors = Config::from_toml(text).unwrap_err();
            assert!(errors[0].key == key && errors[0].reason.contains(reason), "{text}: {errors:?}");
        }
    }

    #[test]
    fn every_error_names_its_key_and_line() {
        let errors = Config::from_toml(
            "[plugins]\npool_instances = 0\n\n[plugin.a.limits]\ntimeout_ms = 0\nfuel = 5\n\n[plugin.b]\nfile = \"../x.wasm\"\n",
        )
        .unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "line 2: plugins.pool_instances: must be between 1 and 10000, got 0",
                "line 5: plugin.a.limits.timeout_ms: must be between 1 and 60000, got 0",
                "line 6: plugin.a.limits.fuel: needs `consume_fuel = true` in [plugins]",
                "line 8: plugin.b.file: `../x.wasm` must be a .wasm file name inside [plugins] dir",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_types_name_their_line() {
        let errors = Config::from_toml("[plugins]\ndir = \"p\"\ncache = 3\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].reason.contains("unknown field `cache`"), "{}", errors[0]);
        let errors = Config::from_toml("[plugin.a]\nfailure_policy = \"sometimes\"\n").unwrap_err();
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].reason.contains("sometimes"), "{}", errors[0]);
    }
}
