//! The store's data ([`HostState`]) and the host side of every WIT import of both contract versions
//! (contract 0.2's `event` resource aside, in [`super::events`]): log, clock, metrics, the
//! Kafka and NATS capabilities, and WASI (filesystem limited to the granted directory, outbound HTTP
//! limited to the granted hosts). WASI starts from nothing: no environment, no sockets, no files.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::events::EventTable;
use super::spec::{GUEST_DIR, Grants};
use crate::capability::{CapabilityError, HostServices, KafkaRecord};

/// What every instance of one plugin version shares: its identity, grants and the metrics it writes.
pub(crate) struct PluginShared {
    pub name: String,
    pub grants: Grants,
    /// The host's connections; a capability call uses one only if `grants` allows it.
    pub services: HostServices,
    pub metrics: GuestMetrics,
    /// A fixed wall-clock time in nanoseconds, for reproducible `plugin test` runs.
    pub frozen_clock: Option<u64>,
}

/// Counters and histograms a plugin records through the `metrics` import, keyed by
/// `name{label="value",...}`. Histograms keep a count and a sum.
#[derive(Default)]
pub struct GuestMetrics {
    values: Mutex<BTreeMap<String, MetricValue>>,
}

/// One guest metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    Counter(u64),
    Histogram { count: u64, sum: f64 },
}

impl GuestMetrics {
    /// Every metric recorded so far.
    pub fn snapshot(&self) -> BTreeMap<String, MetricValue> {
        self.values.lock().map(|values| values.clone()).unwrap_or_default()
    }

    fn update(&self, key: String, apply: impl FnOnce(Option<MetricValue>) -> MetricValue) {
        if let Ok(mut values) = self.values.lock() {
            let next = apply(values.get(&key).copied());
            values.insert(key, next);
        }
    }
}

/// `name{a="1",b="2"}` with labels sorted, the metric's identity.
fn metric_key(name: &str, mut labels: Vec<(String, String)>) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Caps linear memory and remembers whether the cap was hit, so a trap can be told apart from
/// running out of memory.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub exceeded: bool,
    /// The largest size a memory of the instance has grown to (memories never shrink).
    pub grown_to: usize,
}

impl MemoryLimiter {
    pub fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter { limit, exceeded: false, grown_to: 0 }
    }

    /// True once the instance holds three quarters of its limit: an instance whose memory keeps
    /// growing call after call (a guest language's heap that never gives back) is better replaced
    /// between calls than left to fail one.
    pub fn nearly_full(&self) -> bool {
        self.grown_to > self.limit / 4 * 3
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} bytes exceeded (wanted {desired})", self.limit);
        }
        let allowed = maximum.is_none_or(|max| desired <= max);
        if allowed {
            self.grown_to = self.grown_to.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        const MAX_TABLE_ELEMENTS: usize = 1 << 20;
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

/// Lets outbound HTTP through only to the granted hosts, and bounds how long a request may wait.
struct HttpAllowList {
    hosts: Arc<[String]>,
    /// Used for connect, first-byte and between-bytes timeouts the plugin leaves unset.
    timeout: std::time::Duration,
}

impl HttpAllowList {
    /// Whether `uri` may be requested: its host (and port, when the grant names one) must match a
    /// grant. URIs with user info (`user@host`) are refused outright.
    fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(authority), Some(host)) = (uri.authority(), uri.host()) else { return false };
        if authority.as_str().contains('@') {
            return false;
        }
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTP) { 80 } else { 443 };
        let port = uri.port_u16().unwrap_or(default_port);
        self.hosts.iter().any(|grant| {
            let (grant_host, grant_port) = match grant.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, p.parse::<u16>().ok()),
                _ => (grant.as_str(), None),
            };
            let host_matches = match grant_host.strip_prefix("*.") {
                Some(domain) => {
                    host.len() > domain.len() + 1
                        && host.ends_with(domain)
                        && host[..host.len() - domain.len()].ends_with('.')
                }
                None => host.eq_ignore_ascii_case(grant_host),
            };
            host_matches && grant_port.is_none_or(|p| p == port)
        })
    }
}

impl WasiHttpHooks for HttpAllowList {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        let allowed = self.allows(request.uri());
        let mut options = options.unwrap_or_default();
        options.connect_timeout.get_or_insert(self.timeout);
        options.first_byte_timeout.get_or_insert(self.timeout);
        options.between_bytes_timeout.get_or_insert(self.timeout);
        Box::new(async move {
            use http_body_util::BodyExt;
            if !allowed {
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// The data of one plugin instance's store.
pub(crate) struct HostState {
    pub shared: Arc<PluginShared>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: HttpAllowList,
    table: ResourceTable,
    /// Contract 0.2's `event` resources: the events lent to the current call and those the guest made.
    pub events: EventTable,
    pub limiter: MemoryLimiter,
    /// When the current call must end; checked at every epoch tick.
    pub deadline: Instant,
}

impl HostState {
    pub fn new(shared: Arc<PluginShared>, memory_limit: usize, timeout: std::time::Duration) -> wasmtime::Result<Self> {
        let mut wasi = WasiCtxBuilder::new();
        if let Some(dir) = &shared.grants.directory {
            wasi.preopened_dir(dir, GUEST_DIR, FsPerms::ReadWrite)?;
        }
        let hosts = shared.grants.http_hosts.clone().unwrap_or_default();
        Ok(HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            http_hooks: HttpAllowList { hosts: hosts.into(), timeout },
            table: ResourceTable::new(),
            events: EventTable::new(memory_limit),
            limiter: MemoryLimiter::new(memory_limit),
            deadline: Instant::now(),
            shared,
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}

impl HostState {
    fn write_log(&self, level: tracing::Level, message: &str, fields: Vec<(String, String)>) {
        let plugin = self.shared.name.as_str();
        let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let fields = fields.join(" ");
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin, fields, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, fields, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, fields, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, fields, "{message}"),
            tracing::Level::ERROR => tracing::error!(plugin, fields, "{message}"),
        }
    }

    fn clock_now(&self) -> u64 {
        self.shared
            .frozen_clock
            .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64))
    }

    fn clock_monotonic() -> u64 {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    fn counter_add(&self, name: &str, value: u64, labels: Vec<(String, String)>) {
        self.shared.metrics.update(metric_key(name, labels), |old| match old {
            Some(MetricValue::Counter(n)) => MetricValue::Counter(n.saturating_add(value)),
            _ => MetricValue::Counter(value),
        });
    }

    fn histogram_record(&self, name: &str, value: f64, labels: Vec<(String, String)>) {
        self.shared.metrics.update(metric_key(name, labels), |old| match old {
            Some(MetricValue::Histogram { count, sum }) => {
                MetricValue::Histogram { count: count + 1, sum: sum + value }
            }
            _ => MetricValue::Histogram { count: 1, sum: value },
        });
    }
}

impl PluginShared {
    async fn kafka_send(&self, records: Vec<KafkaRecord>) -> Result<(), CapabilityError> {
        // The loader refuses plugins that import this without the grant; the check here is the backstop.
        let Some(topics) = &self.grants.kafka else {
            return Err(not_granted("kafka-producer".into()));
        };
        if let Some(record) = records.iter().find(|r| !topics.allows(&r.topic)) {
            return Err(not_granted(format!("Kafka topic `{}`", record.topic)));
        }
        let Some(producer) = self.services.kafka.clone() else {
            return Err(not_connected("kafka-producer"));
        };
        producer.send(records).await
    }

    async fn nats_publish(
        &self,
        subject: String,
        headers: Vec<(String, String)>,
        payload: Vec<u8>,
    ) -> Result<(), CapabilityError> {
        let Some(subjects) = &self.grants.nats else {
            return Err(not_granted("nats-publisher".into()));
        };
        if !subjects.allows(&subject) {
            return Err(not_granted(format!("NATS subject `{subject}`")));
        }
        let Some(publisher) = self.services.nats.clone() else {
            return Err(not_connected("nats-publisher"));
        };
        publisher.publish(subject, headers, payload).await
    }
}

fn not_connected(capability: &str) -> CapabilityError {
    CapabilityError {
        message: format!("capability {capability} is granted but the router has no connection for it"),
        retryable: false,
    }
}

fn not_granted(what: String) -> CapabilityError {
    CapabilityError { message: format!("not granted: {what}"), retryable: false }
}

/// The host imports of one contract version, each a call of the one implementation above: the
/// versions differ only in the generated types.
macro_rules! impl_host_imports {
    ($version:ident) => {
        const _: () = {
            use super::bindings::$version::{clock, kafka_producer, log, metrics, nats_publisher, wit};

            fn to_wit(err: CapabilityError) -> wit::Error {
                wit::Error { message: err.message, retryable: err.retryable }
            }

            impl log::Host for HostState {
                fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
                    let level = match level {
                        log::Level::Trace => tracing::Level::TRACE,
                        log::Level::Debug => tracing::Level::DEBUG,
                        log::Level::Info => tracing::Level::INFO,
                        log::Level::Warn => tracing::Level::WARN,
                        log::Level::Error => tracing::Level::ERROR,
                    };
                    self.write_log(level, &message, fields);
                }
            }

            impl clock::Host for HostState {
                fn now(&mut self) -> u64 {
                    self.clock_now()
                }

                fn monotonic(&mut self) -> u64 {
                    HostState::clock_monotonic()
                }
            }

            impl metrics::Host for HostState {
                fn counter_add(&mut self, name: String, value: u64, labels: Vec<(String, String)>) {
                    HostState::counter_add(self, &name, value, labels);
                }

                fn histogram_record(&mut self, name: String, value: f64, labels: Vec<(String, String)>) {
                    HostState::histogram_record(self, &name, value, labels);
                }
            }

            impl kafka_producer::Host for HostState {
                async fn send(&mut self, records: Vec<kafka_producer::KafkaRecord>) -> Result<(), wit::Error> {
                    let records = records
                        .into_iter()
                        .map(|r| KafkaRecord { topic: r.topic, key: r.key, value: r.value, headers: r.headers })
                        .collect();
                    let shared = self.shared.clone();
                    shared.kafka_send(records).await.map_err(to_wit)
                }
            }

            impl nats_publisher::Host for HostState {
                async fn publish(
                    &mut self,
                    subject: String,
                    headers: Vec<(String, String)>,
                    payload: Vec<u8>,
                ) -> Result<(), wit::Error> {
                    let shared = self.shared.clone();
                    shared.nats_publish(subject, headers, payload).await.map_err(to_wit)
                }
            }
        };
    };
}

impl_host_imports!(v0_1);
impl_host_imports!(v0_2);

impl super::bindings::v0_1::wit::Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_allow_list_matches_hosts_ports_and_subdomains() {
        let list = HttpAllowList {
            hosts: vec!["api.example.com".into(), "127.0.0.1:8080".into(), "*.corp.net".into()].into(),
            timeout: std::time::Duration::from_secs(1),
        };
        let allows = |uri: &str| list.allows(&uri.parse().unwrap());
        assert!(allows("https://api.example.com/v1"));
        assert!(allows("https://API.example.com:8443/v1"));
        assert!(allows("http://127.0.0.1:8080/x"));
        assert!(!allows("http://127.0.0.1:9090/x"));
        assert!(!allows("http://127.0.0.1/x"));
        assert!(allows("https://a.corp.net/"));
        assert!(!allows("https://corp.net/"));
        assert!(!allows("https://xcorp.net/"));
        assert!(!allows("https://evil.com/"));
        assert!(!allows("https://api.example.com.evil.com/"));
        // User info must not smuggle another host past the check.
        assert!(!allows("http://127.0.0.1:8080@evil.com/x"));
        assert!(!allows("http://user@api.example.com/x"));
    }

    #[test]
    fn metric_keys_sort_labels() {
        let key = metric_key("hits", vec![("b".into(), "2".into()), ("a".into(), "1".into())]);
        assert_eq!(key, r#"hits{a="1",b="2"}"#);
    }
}
