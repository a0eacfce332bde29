//! Validation: from what serde read ([`ConfigFile`]) to a checked [`Config`], or every error found,
//! each with its dotted key and line. Pure: no files, sockets or tasks; whether a plugin file exists
//! and loads is the loader's business.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::model::{
    AllowResponsesConfig, ConfigFile, GatewayAuthConfig, KafkaGrant, LimitsConfig, MonitoringConfig, NatsGrant,
    OneOrMany, PluginConfig, RolloutConfig, RouteConfig, RuleConfig, ServiceConfig, SinkConfig, SinkKind, SourceConfig,
    SourceKind, TlsConfig, WorldName,
};
use super::{
    AdminPlan, Config, ConfigError, HttpAuthPlan, HttpServerSettings, HttpSettings, PluginPlan, RoutePlan,
    ServiceSettings, SinkKindPlan, SinkPlan, TlsSettings,
};
use std::net::SocketAddr;

use crate::broker::Pattern;
use crate::broker::account::check_global;
use crate::codec::RawAttributes;
use crate::gateway::auth::{GLOBAL_ACCOUNT, User as GatewayUser, is_account_name};
use crate::gateway::{GatewayAuth, GatewaySettings, ListenerSettings, MAIN_LISTENER, MonitoringSettings};
use crate::ingest::http::RawRule;
use crate::nats_client::NatsConnection;
use crate::permission::{Entry, Permissions, Responses, Rule};
use crate::plugin::{Grants, Limits, Role, RuntimeOptions, Subjects, Topics};
use crate::route::{RolloutMode, RolloutRules, RolloutSettings};
use crate::sink::builtin::{FileSinkConfig, HttpSinkConfig, NatsSinkConfig, ObjectSinkConfig, StdoutSinkConfig};
use crate::sink::worker::RetryPolicy;
use crate::source::SourcePlan;

/// Largest `memory_limit` a plugin may have.
pub const MAX_MEMORY_LIMIT: usize = 1 << 30;
/// Longest `timeout_ms` a plugin may have.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// Turns byte offsets into line numbers.
pub(crate) struct Lines<'a>(pub &'a str);

impl Lines<'_> {
    pub fn of(&self, span: Range<usize>) -> usize {
        let at = span.start.min(self.0.len());
        self.0[..at].matches('\n').count() + 1
    }
}

struct Checker<'a> {
    lines: Lines<'a>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, key: impl Into<String>, span: Range<usize>, reason: impl Into<String>) {
        // A span of 0..0 means the value came from a default, so there is no line to name.
        let line = if span == (0..0) { 0 } else { self.lines.of(span) };
        self.errors.push(ConfigError { key: key.into(), line, reason: reason.into() });
    }

    /// Checks `value` is within `min..=max`.
    fn range<T: PartialOrd + Copy + std::fmt::Display>(&mut self, key: &str, value: &Spanned<T>, min: T, max: T) {
        let v = *value.get_ref();
        if v < min || v > max {
            self.error(key, value.span(), format!("must be between {min} and {max}, got {v}"));
        }
    }

    /// In durable mode, an event of `size` bytes must fit one write-ahead log frame, or it would be
    /// acknowledged and then lost at the next start.
    fn kept_whole(&mut self, key: &str, size: &Spanned<usize>) {
        if *size.get_ref() > crate::wal::MAX_EVENT_BYTES {
            let reason = format!(
                "durable mode ([durability]) keeps events of at most {} bytes (64 MiB), the most its write-ahead log reads back; got {}",
                crate::wal::MAX_EVENT_BYTES,
                size.get_ref()
            );
            self.error(key, size.span(), reason);
        }
    }

    /// `overrides` over `defaults` over the built-in defaults, each value checked once.
    fn limits(&mut self, prefix: &str, overrides: &LimitsConfig, defaults: &Limits, consume_fuel: bool) -> Limits {
        let mut limits = defaults.clone();
        if let Some(memory) = &overrides.memory_limit {
            let bytes = Spanned::new(memory.span(), memory.get_ref().0);
            self.range(&format!("{prefix}.memory_limit"), &bytes, 1 << 20, MAX_MEMORY_LIMIT);
            limits.memory_limit = *bytes.get_ref();
        }
        if let Some(timeout) = &overrides.timeout_ms {
            self.range(&format!("{prefix}.timeout_ms"), timeout, 1, MAX_TIMEOUT_MS);
            limits.timeout = Duration::from_millis(*timeout.get_ref());
        }
        if let Some(fuel) = &overrides.fuel {
            if !consume_fuel {
                self.error(format!("{prefix}.fuel"), fuel.span(), "needs `consume_fuel = true` in [plugins]");
            }
            limits.fuel = Some(*fuel.get_ref());
        }
        if let Some(max) = &overrides.max_instances {
            self.range(&format!("{prefix}.max_instances"), max, 1, 1024);
            limits.max_instances = *max.get_ref();
        }
        if let Some(after) = &overrides.quarantine_after {
            self.range(&format!("{prefix}.quarantine_after"), after, 1, u32::MAX);
            limits.quarantine_after = *after.get_ref();
        }
        if let Some(backoff) = &overrides.quarantine_backoff_ms {
            self.range(&format!("{prefix}.quarantine_backoff_ms"), backoff, 1, 3_600_000);
            limits.quarantine_backoff = Duration::from_millis(*backoff.get_ref());
        }
        limits
    }

    fn plugin(&mut self, name: &str, span: Range<usize>, plugin: &PluginConfig, config: &Config) -> PluginPlan {
        let key = format!("plugin.{name}");
        if !valid_name(name) {
            self.error(&key, span.clone(), "plugin names use lowercase letters, digits, `-` and `_`");
        }
        let file = plugin.file.clone().unwrap_or_else(|| format!("{}.wasm", name.replace('-', "_")));
        if file.contains('/') || !file.ends_with(".wasm") {
            self.error(
                format!("{key}.file"),
                span.clone(),
                format!("`{file}` must be a .wasm file name inside [plugins] dir"),
            );
        }
        let caps = &plugin.capabilities;
        let kafka = match &caps.kafka {
            None | Some(KafkaGrant::All(false)) => None,
            Some(KafkaGrant::All(true)) => Some(Topics::Any),
            Some(KafkaGrant::Topics(topics)) => Some(Topics::Only(topics.clone())),
        };
        if matches!(&kafka, Some(Topics::Only(topics)) if topics.is_empty() || topics.iter().any(String::is_empty)) {
            self.error(format!("{key}.capabilities.kafka"), span.clone(), "list topic names, or `true` for any");
        }
        if kafka.is_some() && config.kafka.is_none() {
            self.error(
                format!("{key}.capabilities.kafka"),
                span.clone(),
                "grants Kafka, but there is no [kafka] section saying how to connect",
            );
        }
        let nats = match &caps.nats {
            None | Some(NatsGrant::All(false)) => None,
            Some(NatsGrant::All(true)) => Some(Subjects::Any),
            Some(NatsGrant::Subjects(subjects)) => {
                let mut patterns = Vec::new();
                for subject in subjects {
                    match Pattern::new(subject.as_str()) {
                        Ok(pattern) if check_global(subject).is_ok() => patterns.push(pattern),
                        Ok(_) => self.error(
                            format!("{key}.capabilities.nats"),
                            span.clone(),
                            format!("`{subject}`: `$A` and `$SYS` subjects are the router's own"),
                        ),
                        Err(err) => self.error(format!("{key}.capabilities.nats"), span.clone(), err.to_string()),
                    }
                }
                if subjects.is_empty() {
                    self.error(format!("{key}.capabilities.nats"), span.clone(), "list subjects, or `true` for any");
                }
                Some(Subjects::Only(patterns))
            }
        };
        let grants = Grants { http_hosts: caps.http.clone(), directory: caps.directory.clone(), kafka, nats };
        if caps.http.as_ref().is_some_and(Vec::is_empty) {
            self.error(
                format!("{key}.capabilities.http"),
                span.clone(),
                "lists no hosts; leave it out to grant no HTTP",
            );
        }
        if let Some(hosts) = &caps.http
            && let Some(bad) = hosts.iter().find(|h| h.is_empty() || h.contains('/') || h.contains('@'))
        {
            self.error(format!("{key}.capabilities.http"), span.clone(), format!("`{bad}` is not a host or host:port"));
        }
        PluginPlan {
            name: name.to_owned(),
            file: config.plugin_dir.join(file),
            role: plugin.world.map(|w| match w {
                WorldName::Handler => Role::Handler,
                WorldName::Sink => Role::Sink,
                WorldName::AuthPolicy => Role::AuthPolicy,
            }),
            failure_policy: plugin.failure_policy.unwrap_or(config.failure_policy),
            limits: self.limits(
                &format!("{key}.limits"),
                &plugin.limits,
                &config.default_limits,
                config.runtime.consume_fuel,
            ),
            config: plugin.config.iter().map(|(k, v)| (k.clone(), setting_text(v))).collect(),
            grants,
            configured: true,
            rollout: plugin.rollout.as_ref().map(|rollout| self.rollout(&format!("{key}.rollout"), rollout)),
        }
    }

    fn rollout(&mut self, key: &str, rollout: &RolloutConfig) -> RolloutSettings {
        let mode = *rollout.mode.get_ref();
        let share = match (&rollout.share, mode) {
            (Some(share), RolloutMode::Canary) => {
                self.range(&format!("{key}.share"), share, 1, 100);
                *share.get_ref()
            }
            (Some(share), RolloutMode::Shadow) => {
                self.error(format!("{key}.share"), share.span(), "a shadow sees every event: `share` is for canaries");
                0
            }
            (None, RolloutMode::Canary) => DEFAULT_CANARY_SHARE,
            (None, RolloutMode::Shadow) => 0,
        };
        if let Some(split) = &rollout.key {
            if mode == RolloutMode::Shadow {
                self.error(format!("{key}.key"), split.span(), "a shadow sees every event: `key` is for canaries");
            } else if split.get_ref().is_empty() {
                self.error(format!("{key}.key"), split.span(), "name an attribute or extension, such as `routingkey`");
            }
        }
        let mut rules = RolloutRules::default();
        if let Some(min) = &rollout.min_events {
            self.range(&format!("{key}.min_events"), min, 1, u64::MAX);
            rules.min_events = *min.get_ref();
        }
        if let Some(ms) = &rollout.min_duration_ms {
            rules.min_duration = Duration::from_millis(*ms.get_ref());
        }
        let mut rate = |name: &str, value: &Option<Spanned<f64>>, into: &mut f64| {
            if let Some(value) = value {
                self.range(&format!("{key}.{name}"), value, 0.0, 1.0);
                *into = *value.get_ref();
            }
        };
        rate("max_error_rate", &rollout.max_error_rate, &mut rules.max_error_rate);
        rate("max_fault_rate", &rollout.max_fault_rate, &mut rules.max_fault_rate);
        rate("max_difference_rate", &rollout.max_difference_rate, &mut rules.max_difference_rate);
        if let Some(ms) = &rollout.max_p99_ms {
            self.range(&format!("{key}.max_p99_ms"), ms, 1, MAX_TIMEOUT_MS);
            rules.max_p99 = Some(Duration::from_millis(*ms.get_ref()));
        }
        if let Some(ratio) = &rollout.max_p99_ratio {
            self.range(&format!("{key}.max_p99_ratio"), ratio, 1.0, 1000.0);
            rules.max_p99_ratio = Some(*ratio.get_ref());
        }
        RolloutSettings {
            mode,
            share,
            key: rollout.key.as_ref().map(|key| key.get_ref().clone()),
            automatic: rollout.automatic,
            rules,
        }
    }
}

/// The share of events a canary serves unless `share` says otherwise.
const DEFAULT_CANARY_SHARE: u8 = 5;

/// A TOML value as a plugin sees it: strings as they are, anything else as JSON text.
fn setting_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// Checks everything in `file` (parsed from `text`); returns the config or every error.
pub fn validate(file: &ConfigFile, text: &str) -> Result<Config, Vec<ConfigError>> {
    let mut check = Checker { lines: Lines(text), errors: Vec::new() };
    let level = file.log.level.get_ref();
    if tracing_subscriber::EnvFilter::try_new(level).is_err() {
        check.error("log.level", file.log.level.span(), format!("`{level}` is not a log level or filter"));
    }
    let plugins = &file.plugins;
    check.range("plugins.pool_instances", &plugins.pool_instances, 1, 10_000);
    let cache_dir = (!plugins.cache_dir.as_os_str().is_empty()).then(|| plugins.cache_dir.clone());
    let mut trusted_keys = Vec::new();
    for key in plugins.trusted_keys.get_ref() {
        match key.parse() {
            Ok(key) => trusted_keys.push(key),
            Err(reason) => check.error("plugins.trusted_keys", plugins.trusted_keys.span(), reason),
        }
    }
    let mut config = Config {
        log_format: file.log.format,
        log_level: level.clone(),
        plugin_dir: plugins.dir.clone(),
        watch_plugins: plugins.watch,
        runtime: RuntimeOptions {
            pool_instances: *plugins.pool_instances.get_ref(),
            max_memory_limit: MAX_MEMORY_LIMIT,
            consume_fuel: plugins.consume_fuel,
            cache_dir,
            trusted_keys,
            ..RuntimeOptions::default()
        },
        failure_policy: plugins.failure_policy,
        default_limits: Limits::default(),
        plugins: BTreeMap::new(),
        service: ServiceSettings {
            event_limit: 0,
            queue_bytes: 0,
            drain_timeout: Duration::ZERO,
            gateway: None,
            auth: BTreeMap::new(),
            system_account: None,
        },
        http: HttpSettings {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 10133)),
            max_body: 0,
            auth: HttpAuthPlan::Open,
            admin: AdminPlan::default(),
            server: HttpServerSettings::default(),
            raw: Vec::new(),
        },
        tls: None,
        routes: Vec::new(),
        sinks: BTreeMap::new(),
        sources: BTreeMap::new(),
        kafka: None,
        broker: Default::default(),
        durability: None,
        unrouted_dead_letter: file.unrouted.dead_letter,
        dead_letter_bytes: file.dead_letters.keep_bytes.0,
        origin: None,
    };
    if let Some(broker) = &file.broker {
        for (key, reason) in broker.get_ref().check() {
            check.error(format!("broker.{key}"), broker.span(), reason);
        }
        config.broker = broker.get_ref().clone();
    }
    if let Some(durability) = &file.durability {
        for (key, reason) in durability.get_ref().check() {
            check.error(format!("durability.{key}"), durability.span(), reason);
        }
        if config.broker.mode == crate::broker::cluster::BrokerMode::Nats {
            let reason = "is for the embedded broker; in cluster mode JetStream keeps every routed event";
            check.error("durability", durability.span(), reason);
        }
        config.durability = Some(durability.get_ref().clone());
    }
    if let Some(kafka) = &file.kafka {
        for (key, reason) in kafka.get_ref().check() {
            check.error(format!("kafka.{key}"), kafka.span(), reason);
        }
        config.kafka = Some(kafka.get_ref().clone());
    }
    config.default_limits =
        check.limits("plugins.defaults", &plugins.defaults, &Limits::default(), plugins.consume_fuel);
    for (name, plugin) in &file.plugin {
        let plan = check.plugin(name, plugin.span(), plugin.get_ref(), &config);
        config.plugins.insert(name.clone(), plan);
    }
    config.tls = file.tls.as_ref().map(|tls| check.listener_tls("tls", tls));
    check.service(file, &mut config);
    check.http(file, &mut config);
    for (name, source) in &file.sources {
        if let Some(plan) = check.source(name, source.span(), source.get_ref()) {
            config.sources.insert(name.clone(), plan);
        }
    }
    for (name, sink) in &file.sinks {
        if config.sources.contains_key(name) {
            let reason = "a source has this name too; dead letters of both would share $DLQ.<name>";
            check.error(format!("sinks.{name}"), sink.span(), reason);
        }
        if name == "gateway" && config.service.gateway.is_some() {
            let reason = "the NATS gateway dead-letters malformed publishes on $DLQ.gateway; name the sink otherwise";
            check.error(format!("sinks.{name}"), sink.span(), reason);
        }
        if let Some(plan) = check.sink(name, sink.span(), sink.get_ref(), config.service.event_limit) {
            config.sinks.insert(name.clone(), plan);
        }
    }
    for route in &file.route {
        if let Some(plan) = check.route(route.span(), route.get_ref(), &config) {
            config.routes.push(plan);
        }
    }
    if check.errors.is_empty() { Ok(config) } else { Err(check.errors) }
}

impl Checker<'_> {
    fn service(&mut self, file: &ConfigFile, config: &mut Config) {
        let defaults = ServiceConfig::default();
        let s = file.service.as_ref().unwrap_or(&defaults);
        self.range("service.event_limit", &s.event_limit, 1, 100_000_000);
        self.range("service.listener_limit", &s.listener_limit, 1, 1_000_000);
        self.range("service.drain_timeout_ms", &s.drain_timeout_ms, 0, 3_600_000);
        self.range("service.auth_timeout_ms", &s.auth_timeout_ms, 1, 60_000);
        self.range("service.statsz_interval_ms", &s.statsz_interval_ms, 100, 3_600_000);
        self.range("service.ping_interval_ms", &s.ping_interval_ms, 10, 3_600_000);
        self.range("service.max_pings_out", &s.max_pings_out, 1, 1_000);
        self.range("service.max_subscriptions", &s.max_subscriptions, 0, 100_000_000);
        self.range("service.max_connections_per_account", &s.max_connections_per_account, 0, 1_000_000);
        let queue_bytes = Spanned::new(s.queue_bytes.span(), s.queue_bytes.get_ref().0);
        self.range("service.queue_bytes", &queue_bytes, 1 << 20, 1 << 40);
        let max_payload = Spanned::new(s.max_payload.span(), s.max_payload.get_ref().0);
        self.range("service.max_payload", &max_payload, 1, 64 << 20);
        if file.durability.is_some() {
            self.kept_whole("service.max_payload", &max_payload);
        }
        let max_pending = Spanned::new(s.max_pending.span(), s.max_pending.get_ref().0);
        self.range("service.max_pending", &max_pending, 1, 1 << 34);
        let mut auth = BTreeMap::new();
        let main_auth = s.auth.as_ref().map(|a| self.gateway_auth("service.auth", a.get_ref(), a.span()));
        auth.insert(MAIN_LISTENER.to_owned(), main_auth.unwrap_or_default());
        let main_raw = s.raw.as_ref().map(|raw| self.raw_attributes("service.raw", raw.get_ref(), raw.span()));
        let mut listeners = vec![ListenerSettings {
            name: MAIN_LISTENER.into(),
            host: s.host.clone(),
            port: s.port,
            tls: config.tls.clone(),
            raw: main_raw,
        }];
        for (name, listener) in &s.listeners {
            let key = format!("service.listeners.{name}");
            let l = listener.get_ref();
            if name == MAIN_LISTENER || !is_account_name(name) {
                self.error(
                    &key,
                    listener.span(),
                    format!("a listener's name is one subject token other than `{MAIN_LISTENER}`"),
                );
            }
            if l.port != 0
                && listeners.iter().any(|other| (other.host.as_str(), other.port) == (l.host.as_str(), l.port))
            {
                self.error(
                    format!("{key}.port"),
                    listener.span(),
                    format!("{}:{} is another listener's address", l.host, l.port),
                );
            }
            if !s.nats {
                self.error(&key, listener.span(), "the gateway is off (`[service] nats = false`)");
            }
            let tls = l.tls.as_ref().map(|tls| self.listener_tls(&format!("{key}.tls"), tls));
            let listener_auth = l.auth.as_ref().map(|a| {
                if a.get_ref().system_account.is_some() {
                    let reason = "accounts are shared by every listener: name the system account in [service.auth]";
                    self.error(format!("{key}.auth.system_account"), a.span(), reason);
                }
                self.gateway_auth(&format!("{key}.auth"), a.get_ref(), a.span())
            });
            auth.insert(name.clone(), listener_auth.unwrap_or_default());
            let raw = l.raw.as_ref().map(|raw| self.raw_attributes(&format!("{key}.raw"), raw.get_ref(), raw.span()));
            listeners.push(ListenerSettings { name: name.clone(), host: l.host.clone(), port: l.port, tls, raw });
        }
        let monitoring = s.monitoring.as_ref().and_then(|monitoring| self.monitoring(monitoring.get_ref()));
        config.service = ServiceSettings {
            event_limit: *s.event_limit.get_ref(),
            queue_bytes: *queue_bytes.get_ref(),
            drain_timeout: Duration::from_millis(*s.drain_timeout_ms.get_ref()),
            gateway: file.service.as_ref().filter(|service| service.nats).map(|_| GatewaySettings {
                listeners,
                listener_limit: *s.listener_limit.get_ref(),
                max_payload: *max_payload.get_ref(),
                max_pending: *max_pending.get_ref(),
                auth_timeout: Duration::from_millis(*s.auth_timeout_ms.get_ref()),
                statsz_interval: Duration::from_millis(*s.statsz_interval_ms.get_ref()),
                ping_interval: Duration::from_millis(*s.ping_interval_ms.get_ref()),
                max_pings_out: *s.max_pings_out.get_ref() as u32,
                max_subscriptions: *s.max_subscriptions.get_ref(),
                max_connections_per_account: *s.max_connections_per_account.get_ref(),
                monitoring,
            }),
            auth,
            system_account: s.auth.as_ref().and_then(|auth| auth.get_ref().system_account.clone()),
        };
    }

    /// `[service.monitoring]`, checked: unauthenticated, so on a loopback address unless `public`.
    fn monitoring(&mut self, monitoring: &MonitoringConfig) -> Option<MonitoringSettings> {
        let listen = &monitoring.listen;
        let Ok(addr) = listen.get_ref().parse::<SocketAddr>() else {
            let reason = format!("`{}` is not an address such as 127.0.0.1:8222", listen.get_ref());
            self.error("service.monitoring.listen", listen.span(), reason);
            return None;
        };
        if !addr.ip().is_loopback() && !monitoring.public {
            let reason = "the monitoring endpoints need no credential and name clients, their addresses and \
                          subjects: listen on a loopback address, or set `public = true`";
            self.error("service.monitoring.listen", listen.span(), reason);
            return None;
        }
        Some(MonitoringSettings { listen: addr })
    }

    /// A `raw` attributes section (`key`), checked.
    fn raw_attributes(&mut self, key: &str, raw: &RawAttributes, span: Range<usize>) -> RawAttributes {
        for (attribute, reason) in raw.check() {
            self.error(format!("{key}.{attribute}"), span.clone(), reason);
        }
        raw.clone()
    }

    /// `[tls]` or a listener's `tls`, checked.
    fn listener_tls(&mut self, key: &str, tls: &Spanned<TlsConfig>) -> TlsSettings {
        let t = tls.get_ref();
        if t.verify_and_map && t.root_ca_path.is_none() {
            let reason = "needs `root_ca_path`: only a verified certificate names a user";
            self.error(format!("{key}.verify_and_map"), tls.span(), reason);
        }
        TlsSettings {
            cert_path: t.cert_path.clone(),
            key_path: t.key_path.clone(),
            root_ca_path: t.root_ca_path.clone(),
            verify_and_map: t.verify_and_map,
        }
    }

    /// A listener's auth section (`prefix`: its key), checked.
    fn gateway_auth(&mut self, prefix: &str, auth: &GatewayAuthConfig, auth_span: Range<usize>) -> GatewayAuth {
        let mut users = Vec::new();
        for (i, user) in auth.users.iter().enumerate() {
            let key = format!("{prefix}.users[{i}]");
            let u = user.get_ref();
            let account = u.account.clone().unwrap_or_else(|| GLOBAL_ACCOUNT.into());
            if !is_account_name(&account) {
                self.error(format!("{key}.account"), user.span(), format!("`{account}` is not one subject token"));
            }
            if users.iter().any(|known: &GatewayUser| known.name == u.user) {
                self.error(format!("{key}.user"), user.span(), format!("user `{}` is defined twice", u.user));
            }
            let mut rule = |name: &str, config: &Option<RuleConfig>, default: Option<Vec<Entry>>| -> Rule {
                let (allow, deny) = match config {
                    None => return Rule { allow: default, deny: Vec::new() },
                    Some(RuleConfig::Allow(allow)) => (Some(allow.clone()), Vec::new()),
                    Some(RuleConfig::Both { allow, deny }) => (allow.clone(), deny.clone()),
                };
                let mut entries = |texts: Vec<String>| -> Vec<Entry> {
                    texts
                        .into_iter()
                        .filter_map(|text| match Entry::parse(&text) {
                            Ok(entry) if entry.queue.is_some() && name == "publish" => {
                                let reason = format!("`{text}`: queue groups are for subscribe permissions");
                                self.error(format!("{key}.permissions.{name}"), user.span(), reason);
                                None
                            }
                            Ok(entry) => Some(entry),
                            Err(err) => {
                                self.error(
                                    format!("{key}.permissions.{name}"),
                                    user.span(),
                                    format!("`{text}`: {err}"),
                                );
                                None
                            }
                        })
                        .collect()
                };
                Rule { allow: allow.map(&mut entries), deny: entries(deny) }
            };
            let responses = match &u.permissions.allow_responses {
                None | Some(AllowResponsesConfig::On(false)) => None,
                Some(AllowResponsesConfig::On(true)) => Some(Responses::default()),
                Some(AllowResponsesConfig::Limits { max, expires_ms }) => {
                    Some(Responses { max: *max, expires: Duration::from_millis(*expires_ms) })
                }
            };
            // As nats-server: with `allow_responses`, a publish rule left out allows nothing.
            let publish_default = responses.is_some().then(Vec::new);
            let permissions = Permissions {
                publish: rule("publish", &u.permissions.publish, publish_default),
                subscribe: rule("subscribe", &u.permissions.subscribe, None),
                responses,
            };
            users.push(GatewayUser { name: u.user.clone(), password: u.password.clone(), account, permissions });
        }
        if auth.policy.is_some() && !(auth.tokens.is_empty() && users.is_empty()) {
            self.error(format!("{prefix}.policy"), auth_span, "set either `policy` or `tokens` and `users`, not both");
        }
        GatewayAuth { tokens: auth.tokens.clone(), users, policy: auth.policy.clone() }
    }

    fn http(&mut self, file: &ConfigFile, config: &mut Config) {
        let h = &file.http;
        match h.listen.get_ref().parse::<SocketAddr>() {
            Ok(listen) => config.http.listen = listen,
            Err(_) => self.error(
                "http.listen",
                h.listen.span(),
                format!("`{}` is not an address such as 127.0.0.1:10133", h.listen.get_ref()),
            ),
        }
        let max_body = Spanned::new(h.max_body.span(), h.max_body.get_ref().0);
        self.range("http.max_body", &max_body, 1, 1 << 30);
        if file.durability.is_some() {
            self.kept_whole("http.max_body", &max_body);
        }
        config.http.max_body = *max_body.get_ref();
        self.range("http.max_connections", &h.max_connections, 1, 1_000_000);
        self.range("http.header_timeout_ms", &h.header_timeout_ms, 1, 3_600_000);
        self.range("http.body_timeout_ms", &h.body_timeout_ms, 1, 3_600_000);
        self.range("http.idle_timeout_ms", &h.idle_timeout_ms, 1, 3_600_000);
        let tls = h.tls.as_ref().map(|tls| {
            let t = tls.get_ref();
            if t.verify_and_map {
                self.error("http.tls.verify_and_map", tls.span(), "is for the NATS gateway's users; HTTP has none");
            }
            TlsSettings {
                cert_path: t.cert_path.clone(),
                key_path: t.key_path.clone(),
                root_ca_path: t.root_ca_path.clone(),
                verify_and_map: false,
            }
        });
        for (i, rule) in h.raw.iter().enumerate() {
            let key = format!("http.raw[{i}]");
            let r = rule.get_ref();
            let attributes = RawAttributes {
                id: r.id.clone(),
                ty: r.ty.clone(),
                time: r.time.clone(),
                source: r.source.clone(),
                subject: r.subject.clone(),
                routingkey: r.routingkey.clone(),
            };
            let attributes = self.raw_attributes(&key, &attributes, rule.span());
            match Pattern::new(&r.subjects) {
                Ok(subjects) => config.http.raw.push(RawRule { subjects, attributes }),
                Err(err) => self.error(format!("{key}.subjects"), rule.span(), format!("`{}`: {err}", r.subjects)),
            }
        }
        config.http.server = HttpServerSettings {
            max_connections: *h.max_connections.get_ref(),
            header_timeout: Duration::from_millis(*h.header_timeout_ms.get_ref()),
            body_timeout: Duration::from_millis(*h.body_timeout_ms.get_ref()),
            idle_timeout: Duration::from_millis(*h.idle_timeout_ms.get_ref()),
            tls,
        };
        if let Some(admin) = &file.admin {
            let a = admin.get_ref();
            if a.tokens.iter().any(String::is_empty) {
                self.error("admin.tokens", admin.span(), "an empty token would admit anyone");
            }
            if a.tokens.is_empty() && a.policy.is_none() {
                self.error("admin", admin.span(), "set `tokens`, `policy` or both; without them the admin API is off");
            }
            if !is_account_name(&a.account) {
                self.error("admin.account", admin.span(), format!("`{}` is not one subject token", a.account));
            }
            config.http.admin = AdminPlan {
                tokens: a.tokens.clone(),
                policy: a.policy.clone(),
                account: a.account.clone(),
                protect_metrics: a.protect_metrics,
            };
        }
        if let Some(auth) = &h.auth {
            let a = auth.get_ref();
            config.http.auth = match (&a.tokens, &a.policy) {
                (Some(tokens), None) if !tokens.is_empty() && tokens.iter().all(|t| !t.is_empty()) => {
                    HttpAuthPlan::Tokens(tokens.clone())
                }
                (Some(_), None) => {
                    self.error("http.auth.tokens", auth.span(), "lists no tokens, or an empty one");
                    HttpAuthPlan::Open
                }
                (None, Some(policy)) => HttpAuthPlan::Policy(policy.clone()),
                _ => {
                    self.error("http.auth", auth.span(), "set exactly one of `tokens` and `policy`");
                    HttpAuthPlan::Open
                }
            };
        }
    }

    fn source(&mut self, name: &str, span: Range<usize>, source: &SourceConfig) -> Option<SourcePlan> {
        let key = format!("sources.{name}");
        if !valid_name(name) {
            self.error(&key, span.clone(), "source names use lowercase letters, digits, `-` and `_`");
        }
        let SourceKind::Nats = source.kind;
        let connection = NatsConnection {
            servers: source.servers.clone(),
            token: source.token.clone(),
            user: source.user.clone(),
            password: source.password.clone(),
            tls: source.tls.clone(),
        };
        if let Err((field, reason)) = connection.check() {
            self.error(format!("{key}.{field}"), span.clone(), reason);
        }
        if source.subjects.is_empty() {
            self.error(format!("{key}.subjects"), span.clone(), "name at least one subject");
        }
        let subjects = source
            .subjects
            .iter()
            .filter_map(|subject| match Pattern::new(subject.as_str()) {
                Ok(pattern) => Some(pattern),
                Err(err) => {
                    self.error(format!("{key}.subjects"), span.clone(), format!("`{subject}`: {err}"));
                    None
                }
            })
            .collect();
        if let Some(content_type) = &source.content_type
            && !is_media_type(content_type)
        {
            self.error(format!("{key}.content_type"), span.clone(), format!("`{content_type}` is not a media type"));
        }
        let raw = source.raw.as_ref().map(|raw| self.raw_attributes(&format!("{key}.raw"), raw, span.clone()));
        Some(SourcePlan {
            name: name.to_owned(),
            connection,
            subjects,
            queue_group: source.queue_group.clone(),
            content_type: source.content_type.clone(),
            raw,
        })
    }

    fn sink(&mut self, name: &str, span: Range<usize>, sink: &SinkConfig, event_limit: usize) -> Option<SinkPlan> {
        let key = format!("sinks.{name}");
        if !valid_name(name) {
            self.error(&key, span.clone(), "sink names use lowercase letters, digits, `-` and `_`");
        }
        let options = toml::Value::Table(sink.options.clone());
        let parse_error = |err: toml::de::Error| err.message().trim().to_owned();
        let kind = match sink.kind {
            SinkKind::Plugin => {
                if let Some(extra) = sink.options.keys().next() {
                    self.error(
                        format!("{key}.{extra}"),
                        span.clone(),
                        "a plugin sink's settings go in its [plugin.NAME] section",
                    );
                }
                match &sink.plugin {
                    Some(plugin) => SinkKindPlan::Plugin(plugin.clone()),
                    None => {
                        self.error(
                            format!("{key}.plugin"),
                            span.clone(),
                            "`kind = \"plugin\"` needs `plugin = \"NAME\"`",
                        );
                        return None;
                    }
                }
            }
            _ if sink.plugin.is_some() => {
                self.error(format!("{key}.plugin"), span.clone(), "only `kind = \"plugin\"` sinks name a plugin");
                return None;
            }
            SinkKind::File => match options.try_into::<FileSinkConfig>() {
                Ok(c) => SinkKindPlan::File(c),
                Err(err) => return self.skip(&key, span, parse_error(err)),
            },
            SinkKind::Stdout => match options.try_into::<StdoutSinkConfig>() {
                Ok(c) => SinkKindPlan::Stdout(c),
                Err(err) => return self.skip(&key, span, parse_error(err)),
            },
            SinkKind::Http => match options.try_into::<HttpSinkConfig>() {
                Ok(c) => SinkKindPlan::Http(c),
                Err(err) => return self.skip(&key, span, parse_error(err)),
            },
            SinkKind::Nats => match options.try_into::<NatsSinkConfig>() {
                Ok(c) => SinkKindPlan::Nats(c),
                Err(err) => return self.skip(&key, span, parse_error(err)),
            },
            SinkKind::ObjectStore => match options.try_into::<ObjectSinkConfig>() {
                Ok(c) => SinkKindPlan::ObjectStore(c),
                Err(err) => return self.skip(&key, span, parse_error(err)),
            },
        };
        // Objects roll with batches: larger and slower ones than a file's appends.
        let object_store = matches!(kind, SinkKindPlan::ObjectStore(_));
        let mut plan = SinkPlan {
            name: name.to_owned(),
            kind,
            queue_size: event_limit,
            queue_bytes: usize::MAX,
            overflow: sink.overflow,
            block_timeout: Duration::from_secs(1),
            batch_size: if object_store { 100_000 } else { 100 },
            batch_bytes: if object_store { 16 << 20 } else { 4 << 20 },
            linger: Duration::from_millis(if object_store { 60_000 } else { 5 }),
            retry: RetryPolicy::default(),
        };
        if let Some(size) = &sink.queue_size {
            self.range(&format!("{key}.queue_size"), size, 1, 100_000_000);
            plan.queue_size = *size.get_ref();
        }
        if let Some(bytes) = &sink.queue_bytes {
            let bytes = Spanned::new(bytes.span(), bytes.get_ref().0);
            self.range(&format!("{key}.queue_bytes"), &bytes, 1 << 10, 1 << 40);
            plan.queue_bytes = *bytes.get_ref();
        }
        if let Some(ms) = &sink.block_timeout_ms {
            self.range(&format!("{key}.block_timeout_ms"), ms, 0, 600_000);
            plan.block_timeout = Duration::from_millis(*ms.get_ref());
        }
        if let Some(size) = &sink.batch_size {
            self.range(&format!("{key}.batch_size"), size, 1, 100_000);
            plan.batch_size = *size.get_ref();
        }
        if let Some(bytes) = &sink.batch_bytes {
            let bytes = Spanned::new(bytes.span(), bytes.get_ref().0);
            self.range(&format!("{key}.batch_bytes"), &bytes, 1, 1 << 30);
            plan.batch_bytes = *bytes.get_ref();
        }
        if let Some(ms) = &sink.linger_ms {
            self.range(&format!("{key}.linger_ms"), ms, 0, 60_000);
            plan.linger = Duration::from_millis(*ms.get_ref());
        }
        let r = &sink.retry;
        if let Some(n) = &r.max_attempts {
            self.range(&format!("{key}.retry.max_attempts"), n, 1, 1000);
            plan.retry.max_attempts = *n.get_ref();
        }
        for (field, value, target) in [
            ("initial_backoff_ms", &r.initial_backoff_ms, &mut plan.retry.initial_backoff),
            ("max_backoff_ms", &r.max_backoff_ms, &mut plan.retry.max_backoff),
            ("max_elapsed_ms", &r.max_elapsed_ms, &mut plan.retry.max_elapsed),
        ] {
            if let Some(ms) = value {
                self.range(&format!("{key}.retry.{field}"), ms, 1, 86_400_000);
                *target = Duration::from_millis(*ms.get_ref());
            }
        }
        Some(plan)
    }

    fn skip<T>(&mut self, key: &str, span: Range<usize>, reason: String) -> Option<T> {
        self.error(key, span, reason);
        None
    }

    fn route(&mut self, span: Range<usize>, route: &RouteConfig, config: &Config) -> Option<RoutePlan> {
        let key = format!("route.{}", route.name);
        if !valid_name(&route.name) {
            self.error(&key, span.clone(), "route names use lowercase letters, digits, `-` and `_`");
        }
        if config.routes.iter().any(|r| r.name == route.name) {
            self.error(&key, span.clone(), "another route has this name");
        }
        if config.sinks.contains_key(&route.name) || config.sources.contains_key(&route.name) {
            self.error(
                &key,
                span.clone(),
                "a sink or source has this name too; dead letters of both would share $DLQ.<name>",
            );
        }
        if route.sinks.is_empty() {
            self.error(format!("{key}.sinks"), span.clone(), "names no sink");
        }
        for sink in &route.sinks {
            if !config.sinks.contains_key(sink) {
                self.error(format!("{key}.sinks"), span.clone(), format!("no sink `{sink}` in [sinks]"));
            }
        }
        let subject = match Pattern::new(route.subject.as_str()) {
            Ok(subject) => subject,
            Err(err) => return self.skip(&format!("{key}.subject"), span, err.to_string()),
        };
        let routing_key = route.routing_key.clone().map(OneOrMany::into_vec);
        if routing_key.as_ref().is_some_and(|keys| keys.is_empty() || keys.iter().any(String::is_empty)) {
            self.error(format!("{key}.routing_key"), span.clone(), "lists no key, or an empty one");
        }
        Some(RoutePlan {
            name: route.name.clone(),
            subject,
            routing_key,
            handlers: route.handlers.clone(),
            sinks: route.sinks.clone(),
        })
    }
}

/// `type/subtype`, parameters allowed after a `;`.
fn is_media_type(text: &str) -> bool {
    let essence = text.split(';').next().unwrap_or_default().trim();
    essence.split_once('/').is_some_and(|(ty, subtype)| !ty.is_empty() && !subtype.is_empty())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
