//! The config file as serde reads it: every struct denies unknown keys, every default comes from a
//! named function, and `config/eventyard.toml` documents the same values. Reading only: checks
//! beyond types live in `validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::codec::{Locator, RawAttributes};
use crate::nats_client::NatsTls;
use crate::route::FailurePolicy;
use crate::telemetry::LogFormat;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Per-plugin settings by plugin name.
    #[serde(default)]
    pub plugin: BTreeMap<String, Spanned<PluginConfig>>,
    /// `[service]`: present, it turns the NATS gateway on.
    pub service: Option<ServiceConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    /// `[admin]`: who may call the admin endpoints; absent, they are off.
    pub admin: Option<Spanned<AdminConfig>>,
    pub tls: Option<Spanned<TlsConfig>>,
    /// `[[route]]`, in order.
    #[serde(default)]
    pub route: Vec<Spanned<RouteConfig>>,
    /// `[sinks.NAME]`
    #[serde(default)]
    pub sinks: BTreeMap<String, Spanned<SinkConfig>>,
    /// `[sources.NAME]`
    #[serde(default)]
    pub sources: BTreeMap<String, Spanned<SourceConfig>>,
    /// `[kafka]`: the producer lent to plugins granted `capabilities.kafka`.
    pub kafka: Option<Spanned<crate::kafka::KafkaSettings>>,
    /// `[broker]`: embedded (default) or a NATS cluster with JetStream.
    pub broker: Option<Spanned<crate::broker::cluster::BrokerSettings>>,
    /// `[durability]`: the write-ahead log of durable embedded mode.
    pub durability: Option<Spanned<crate::wal::DurabilitySettings>>,
    /// `[unrouted]`: what happens to events no route takes.
    #[serde(default)]
    pub unrouted: UnroutedConfig,
    /// `[dead_letters]`: what the router keeps of dead letters for the operator.
    #[serde(default)]
    pub dead_letters: DeadLettersConfig,
}

/// `[dead_letters]`: the newest dead letters, kept in memory for the console and `eventyard dlq`
/// to browse and replay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLettersConfig {
    /// At most this many bytes of them, the oldest pushed out first; 0 keeps none.
    #[serde(default = "default_dead_letter_bytes")]
    pub keep_bytes: ByteSize,
}

impl Default for DeadLettersConfig {
    fn default() -> Self {
        DeadLettersConfig { keep_bytes: default_dead_letter_bytes() }
    }
}

fn default_dead_letter_bytes() -> ByteSize {
    ByteSize(64 << 20)
}

/// `[unrouted]`: events no route takes are always counted by subject family on `/metrics`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnroutedConfig {
    /// Also keep each as a dead letter on `$DLQ.unrouted`.
    #[serde(default)]
    pub dead_letter: bool,
}

/// `[sources.NAME]`: where the router pulls events from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    pub servers: Vec<String>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// TLS to the server (required when set): `ca_path`, `cert_path`, `key_path`.
    pub tls: Option<NatsTls>,
    /// NATS subjects or patterns.
    pub subjects: Vec<String>,
    pub queue_group: Option<String>,
    /// The media type of plain messages (no headers), e.g. `application/json`.
    pub content_type: Option<String>,
    /// The attributes of plain messages, from their content.
    pub raw: Option<RawAttributes>,
}

/// What a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Subjects of an external NATS server.
    Nats,
}

/// `[service]`, with the meaning seed 000 gives these keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The NATS-protocol gateway listens (default); `false` keeps the event service's limits
    /// without it.
    #[serde(default = "yes")]
    pub nats: bool,
    /// Address of the NATS-protocol gateway.
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The most events a queue holds: the default `queue_size` of every sink.
    #[serde(default = "default_event_limit")]
    pub event_limit: Spanned<usize>,
    /// The most bytes every sink queue holds together, counting events being delivered: the
    /// router's memory bound for events.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: Spanned<ByteSize>,
    /// The most concurrent client connections.
    #[serde(default = "default_listener_limit")]
    pub listener_limit: Spanned<usize>,
    /// How long shutdown waits for queues to drain.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: Spanned<u64>,
    /// Largest message a NATS client may publish.
    #[serde(default = "default_max_payload")]
    pub max_payload: Spanned<ByteSize>,
    /// Most bytes waiting to be written to one client before it is disconnected as a slow consumer.
    #[serde(default = "default_max_pending")]
    pub max_pending: Spanned<ByteSize>,
    /// How long a client may take to authenticate.
    #[serde(default = "default_auth_timeout_ms")]
    pub auth_timeout_ms: Spanned<u64>,
    /// How often the system account gets `$SYS.SERVER.<id>.STATSZ`.
    #[serde(default = "default_statsz_interval_ms")]
    pub statsz_interval_ms: Spanned<u64>,
    /// How often an idle client is sent PING (nats-server's `ping_interval`).
    #[serde(default = "default_ping_interval_ms")]
    pub ping_interval_ms: Spanned<u64>,
    /// Unanswered PINGs after which a client is closed as stale (nats-server's `ping_max`).
    #[serde(default = "default_max_pings_out")]
    pub max_pings_out: Spanned<u64>,
    /// Most subscriptions of one connection (nats-server's `max_subscriptions`; 0: no limit).
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions: Spanned<usize>,
    /// Most connections of one account at once (0: no limit).
    #[serde(default = "no_limit")]
    pub max_connections_per_account: Spanned<usize>,
    pub auth: Option<Spanned<GatewayAuthConfig>>,
    /// `[service.raw]`: the attributes of plain messages on the main listener, from their content.
    pub raw: Option<Spanned<RawAttributes>>,
    /// `[service.listeners.NAME]`: more NATS listeners on the same broker, each with its own
    /// address, TLS and auth (seed 000's internal event service beside its external gateway).
    #[serde(default)]
    pub listeners: BTreeMap<String, Spanned<ListenerConfig>>,
    /// `[service.monitoring]`: nats-server's monitoring endpoints over HTTP.
    pub monitoring: Option<Spanned<MonitoringConfig>>,
}

/// nats-server's monitoring port: `/varz`, `/connz`, `/subsz`, `/accountz`, `/healthz`, without
/// authentication (as nats-server's, so its tools work), naming clients, their addresses and
/// subjects: on a loopback address unless `public` says otherwise.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Address such as `127.0.0.1:8222`.
    pub listen: Spanned<String>,
    /// Allow an address other machines reach.
    #[serde(default)]
    pub public: bool,
}

/// One more NATS listener. Accounts, permissions and the limits of `[service]` are shared with
/// every other listener; the address, TLS and who may connect are its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    #[serde(default = "default_host")]
    pub host: String,
    pub port: u16,
    /// Its own TLS; absent, clients connect in the clear.
    pub tls: Option<Spanned<TlsConfig>>,
    /// Its own `tokens`, `users` or `policy`; absent, anyone who reaches it connects, in the
    /// global account.
    pub auth: Option<Spanned<GatewayAuthConfig>>,
    /// The attributes of its plain messages, from their content.
    pub raw: Option<Spanned<RawAttributes>>,
}

/// `[service.auth]`: how NATS clients authenticate. Nothing set: anyone connects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayAuthConfig {
    /// Tokens a client may give as `auth_token` (global account, no limits).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// `[[service.auth.users]]`
    #[serde(default)]
    pub users: Vec<Spanned<UserConfig>>,
    /// The account whose users see `$SYS` events (seed 001).
    pub system_account: Option<String>,
    /// An auth-policy plugin that decides instead of `tokens` and `users`.
    pub policy: Option<String>,
}

/// One gateway user.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub user: String,
    /// Plain text or a bcrypt hash (`$2a$...`, as `nats server passwd` makes). Without one, the
    /// user is reached only through a client certificate (`[tls] verify_and_map`).
    pub password: Option<String>,
    /// Default: the global account, where routes and HTTP ingest are.
    pub account: Option<String>,
    #[serde(default)]
    pub permissions: PermissionsConfig,
}

/// What a user may publish and subscribe to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsConfig {
    pub publish: Option<RuleConfig>,
    /// Entries may name a queue group as nats-server does: `"jobs.> workers"`.
    pub subscribe: Option<RuleConfig>,
    /// nats-server's `allow_responses`: `true`, or `{ max = 1, expires_ms = 120000 }`. Set, the
    /// user may answer requests it received whatever `publish` says, and `publish` allows nothing
    /// unless it is given.
    pub allow_responses: Option<AllowResponsesConfig>,
}

/// `allow_responses = true`, or its limits.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AllowResponsesConfig {
    On(bool),
    Limits {
        #[serde(default = "default_responses_max")]
        max: u32,
        #[serde(default = "default_responses_expires_ms")]
        expires_ms: u64,
    },
}

fn default_responses_max() -> u32 {
    1
}

fn default_responses_expires_ms() -> u64 {
    120_000
}

/// A list of allowed subjects, or `{ allow = [...], deny = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RuleConfig {
    Allow(Vec<String>),
    Both {
        /// Missing: every subject.
        allow: Option<Vec<String>>,
        #[serde(default)]
        deny: Vec<String>,
    },
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            nats: true,
            host: default_host(),
            port: default_port(),
            event_limit: default_event_limit(),
            queue_bytes: default_queue_bytes(),
            listener_limit: default_listener_limit(),
            drain_timeout_ms: default_drain_timeout_ms(),
            max_payload: default_max_payload(),
            max_pending: default_max_pending(),
            auth_timeout_ms: default_auth_timeout_ms(),
            statsz_interval_ms: default_statsz_interval_ms(),
            ping_interval_ms: default_ping_interval_ms(),
            max_pings_out: default_max_pings_out(),
            max_subscriptions: default_max_subscriptions(),
            max_connections_per_account: no_limit(),
            auth: None,
            raw: None,
            listeners: BTreeMap::new(),
            monitoring: None,
        }
    }
}

fn default_queue_bytes() -> Spanned<ByteSize> {
    unspanned(ByteSize(512 << 20))
}

fn default_max_payload() -> Spanned<ByteSize> {
    unspanned(ByteSize(1 << 20))
}

fn default_max_pending() -> Spanned<ByteSize> {
    unspanned(ByteSize(64 << 20))
}

fn default_statsz_interval_ms() -> Spanned<u64> {
    unspanned(10_000)
}

fn default_ping_interval_ms() -> Spanned<u64> {
    unspanned(120_000)
}

fn no_limit() -> Spanned<usize> {
    unspanned(0)
}

fn default_max_subscriptions() -> Spanned<usize> {
    unspanned(65_536)
}

fn default_max_pings_out() -> Spanned<u64> {
    unspanned(2)
}

fn default_auth_timeout_ms() -> Spanned<u64> {
    unspanned(2000)
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_port() -> u16 {
    10132
}

fn default_event_limit() -> Spanned<usize> {
    unspanned(100_000)
}

fn default_listener_limit() -> Spanned<usize> {
    unspanned(10_000)
}

fn default_drain_timeout_ms() -> Spanned<u64> {
    unspanned(10_000)
}

/// `[http]`: CloudEvents ingest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: Spanned<String>,
    /// Largest request body; bigger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body: Spanned<ByteSize>,
    /// Most connections at once; one more is answered 503 and closed.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: Spanned<usize>,
    /// How long a client may take to send a request's headers.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: Spanned<u64>,
    /// How long a client may take to send a request's body (408 after).
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: Spanned<u64>,
    /// A connection that sends and receives nothing for this long is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: Spanned<u64>,
    pub auth: Option<Spanned<HttpAuthConfig>>,
    /// `[http.tls]`: HTTPS, optionally with client certificates chaining to `root_ca_path`.
    pub tls: Option<Spanned<TlsConfig>>,
    /// `[[http.raw]]`: the attributes of raw requests to some subjects, from their content.
    #[serde(default)]
    pub raw: Vec<Spanned<HttpRawConfig>>,
}

/// One `[[http.raw]]`: for requests to subjects matching `subjects`, where each attribute is. The
/// attributes are spelt out rather than a flattened `RawAttributes`: serde does not refuse unknown
/// keys through `flatten`, and a misspelt attribute must be an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRawConfig {
    /// A subject pattern: `automate.>`.
    pub subjects: String,
    pub id: Option<Locator>,
    #[serde(rename = "type")]
    pub ty: Option<Locator>,
    pub time: Option<Locator>,
    pub source: Option<Locator>,
    pub subject: Option<Locator>,
    pub routingkey: Option<Locator>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            max_body: default_max_body(),
            max_connections: default_http_max_connections(),
            header_timeout_ms: default_header_timeout_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            auth: None,
            tls: None,
            raw: Vec::new(),
        }
    }
}

fn default_http_max_connections() -> Spanned<usize> {
    unspanned(1024)
}

fn default_header_timeout_ms() -> Spanned<u64> {
    unspanned(10_000)
}

fn default_body_timeout_ms() -> Spanned<u64> {
    unspanned(30_000)
}

fn default_idle_timeout_ms() -> Spanned<u64> {
    unspanned(60_000)
}

/// `[admin]`: the admin endpoints' own credential, apart from publishing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer tokens of administrators.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// An auth-policy plugin: a caller it grants `account` is an administrator.
    pub policy: Option<String>,
    /// The account an auth policy grants administrators.
    #[serde(default = "default_admin_account")]
    pub account: String,
    /// `/metrics` needs the admin credential too.
    #[serde(default)]
    pub protect_metrics: bool,
}

fn default_admin_account() -> String {
    "SYS".into()
}

fn default_http_listen() -> Spanned<String> {
    unspanned("127.0.0.1:10133".into())
}

fn default_max_body() -> Spanned<ByteSize> {
    unspanned(ByteSize(4 << 20))
}

/// `[http.auth]`: bearer tokens, or an auth-policy plugin; exactly one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthConfig {
    pub tokens: Option<Vec<String>>,
    /// The name of an auth-policy plugin.
    pub policy: Option<String>,
}

/// `[tls]`: certificates for the gateway (paths as seed 000 names them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// CA that client certificates must chain to (mutual TLS).
    pub root_ca_path: Option<PathBuf>,
    /// The client certificate names the user (a SAN or the subject DN equals `user`), as
    /// nats-server's `verify_and_map`; no password is asked.
    #[serde(default)]
    pub verify_and_map: bool,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// `[[route]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    /// Subject pattern (`*` one token, `>` the rest).
    pub subject: String,
    /// Routing keys taken (globs, `*` any run of characters); absent: all events.
    pub routing_key: Option<OneOrMany>,
    /// Handler plugins, in order.
    #[serde(default)]
    pub handlers: Vec<String>,
    /// Sinks every resulting event goes to.
    pub sinks: Vec<String>,
}

/// What a sink is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    File,
    Stdout,
    Http,
    Nats,
    /// S3, Azure Blob Storage, Google Cloud Storage.
    #[serde(rename = "object_store")]
    ObjectStore,
    Plugin,
}

/// `[sinks.NAME]`. Not `deny_unknown_fields`: keys this struct does not know are collected in
/// `options` and read by the kind's own config, which refuses unknown ones.
#[derive(Debug, Deserialize)]
pub struct SinkConfig {
    pub kind: SinkKind,
    /// For `kind = "plugin"`: the sink plugin's name.
    pub plugin: Option<String>,
    /// Queue bound (default: `[service] event_limit`).
    pub queue_size: Option<Spanned<usize>>,
    /// Bytes the queue holds, counting events being delivered (default: no bound of its own,
    /// `[service] queue_bytes` still applies).
    pub queue_bytes: Option<Spanned<ByteSize>>,
    #[serde(default)]
    pub overflow: crate::queue::OverflowPolicy,
    /// How long `overflow = "block"` makes a publisher wait.
    pub block_timeout_ms: Option<Spanned<u64>>,
    /// Most events per delivery.
    pub batch_size: Option<Spanned<usize>>,
    /// Most bytes per delivery (a batch always takes at least one event).
    pub batch_bytes: Option<Spanned<ByteSize>>,
    /// How long a batch waits to fill.
    pub linger_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(flatten)]
    pub options: toml::Table,
}

/// `[sinks.NAME.retry]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub max_attempts: Option<Spanned<u32>>,
    pub initial_backoff_ms: Option<Spanned<u64>>,
    pub max_backoff_ms: Option<Spanned<u64>>,
    pub max_elapsed_ms: Option<Spanned<u64>>,
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    #[serde(default = "default_log_level")]
    pub level: Spanned<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::default(), level: default_log_level() }
    }
}

fn default_log_level() -> Spanned<String> {
    unspanned("info".into())
}

/// A default value: it has no place in the file (validation reports it with no line).
fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// `[plugins]`: the drop-in directory and what applies to every plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Every `*.wasm` file here is a plugin, named after its file (`_` read as `-`).
    #[serde(default = "default_plugin_dir")]
    pub dir: PathBuf,
    /// Compiled plugins, cached by content hash; `""` turns the cache off.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Meter fuel so plugins can have a `fuel` limit (slows every plugin a little).
    #[serde(default)]
    pub consume_fuel: bool,
    /// Reload plugins when files in `dir` change (SIGHUP and the admin call work either way).
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// Instances the pooling allocator reserves room for, across all plugins.
    #[serde(default = "default_pool_instances")]
    pub pool_instances: Spanned<u32>,
    /// What a route does with an event a plugin failed on, unless the plugin says otherwise.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Limits for every plugin, unless the plugin says otherwise.
    #[serde(default)]
    pub defaults: LimitsConfig,
    /// Public keys (`ed25519:<base64>`): when any, only components one of them signed load.
    #[serde(default = "no_trusted_keys")]
    pub trusted_keys: Spanned<Vec<String>>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: default_plugin_dir(),
            cache_dir: default_cache_dir(),
            consume_fuel: false,
            watch: default_watch(),
            pool_instances: default_pool_instances(),
            failure_policy: FailurePolicy::default(),
            defaults: LimitsConfig::default(),
            trusted_keys: no_trusted_keys(),
        }
    }
}

fn no_trusted_keys() -> Spanned<Vec<String>> {
    unspanned(Vec::new())
}

fn default_plugin_dir() -> PathBuf {
    "run/plugins".into()
}

/// `EVENTYARD_CACHE_DIR` when set, else `run/cache`.
fn default_cache_dir() -> PathBuf {
    crate::plugin::cache_dir_from_env().unwrap_or_else(|| "run/cache".into())
}

fn default_watch() -> bool {
    true
}

fn default_pool_instances() -> Spanned<u32> {
    unspanned(128)
}

/// Resource limits; unset keys fall back to `[plugins.defaults]`, then to the built-in defaults.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear memory cap: bytes, or a string such as `"64MiB"`.
    pub memory_limit: Option<Spanned<ByteSize>>,
    /// Longest one call may run.
    pub timeout_ms: Option<Spanned<u64>>,
    /// Fuel per call (needs `[plugins] consume_fuel = true`).
    pub fuel: Option<Spanned<u64>>,
    /// Instances that may run calls at once.
    pub max_instances: Option<Spanned<usize>>,
    /// Consecutive faults before quarantine.
    pub quarantine_after: Option<Spanned<u32>>,
    /// First quarantine period; doubles on each repeat.
    pub quarantine_backoff_ms: Option<Spanned<u64>>,
}

/// The role a plugin must have, as config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorldName {
    Handler,
    Sink,
    AuthPolicy,
}

/// `[plugin.NAME]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file in the plugin directory (default: the name with `-` as `_`, plus `.wasm`).
    pub file: Option<String>,
    /// The world the component must export; refused at load if it exports another.
    pub world: Option<WorldName>,
    pub failure_policy: Option<FailurePolicy>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Settings passed to the plugin's `init`; non-string values arrive as JSON text.
    #[serde(default)]
    pub config: toml::Table,
    #[serde(default)]
    pub capabilities: CapabilitiesConfig,
    /// Run a new version beside the serving one before it serves alone (handlers only).
    pub rollout: Option<RolloutConfig>,
}

/// `[plugin.NAME.rollout]`: a new version of the plugin (a new file, or new settings) becomes a
/// candidate beside the serving version, and is promoted or rolled back by these rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    pub mode: Spanned<crate::route::RolloutMode>,
    /// Percent of events the candidate serves (canary).
    pub share: Option<Spanned<u8>>,
    /// Split by this attribute or extension (canary), so each value meets one version.
    pub key: Option<Spanned<String>>,
    /// Decide by the rules (default), or wait for `eventyard plugin promote|abort`.
    #[serde(default = "default_automatic")]
    pub automatic: bool,
    pub min_events: Option<Spanned<u64>>,
    pub min_duration_ms: Option<Spanned<u64>>,
    pub max_error_rate: Option<Spanned<f64>>,
    pub max_fault_rate: Option<Spanned<f64>>,
    pub max_p99_ms: Option<Spanned<u64>>,
    pub max_p99_ratio: Option<Spanned<f64>>,
    pub max_difference_rate: Option<Spanned<f64>>,
}

fn default_automatic() -> bool {
    true
}

/// `[plugin.NAME.capabilities]`: nothing is granted unless listed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesConfig {
    /// A host directory the plugin sees at `/data`.
    pub directory: Option<PathBuf>,
    /// Hosts (`host`, `host:port`, `*.domain`) the plugin may send HTTP requests to.
    pub http: Option<Vec<String>>,
    /// Grants the Kafka producer: `true` for any topic, or a list of topics.
    pub kafka: Option<KafkaGrant>,
    /// Grants the NATS publisher: `true` for any subject, or a list of subject patterns.
    pub nats: Option<NatsGrant>,
}

/// `capabilities.nats`: `true`, `false`, or the subject patterns allowed.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NatsGrant {
    All(bool),
    Subjects(Vec<String>),
}

/// `capabilities.kafka`: `true`, `false`, or the topics allowed.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KafkaGrant {
    All(bool),
    Topics(Vec<String>),
}

/// A size in bytes, written as an integer or a string with a unit: `"512KiB"`, `"64MiB"`, `"1GiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(n) => usize::try_from(n).map(ByteSize).map_err(serde::de::Error::custom),
            Raw::Text(text) => parse_size(&text).map(ByteSize).map_err(serde::de::Error::custom),
        }
    }
}

fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: usize = digits.parse().map_err(|_| format!("invalid size `{text}`: expected e.g. 64MiB"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("invalid size unit `{other}` in `{text}`: use B, KiB, MiB or GiB")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("size `{text}` is too large"))
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("10"), Ok(10));
        assert!(parse_size("64MB").unwrap_err().contains("unit `MB`"));
        assert!(parse_size("lots").is_err());
    }
}
