//! nats-server's monitoring documents of the gateway: `VARZ`, `CONNZ`, `SUBSZ`, `ACCOUNTZ`,
//! `HEALTHZ` and the figures of `STATSZ`, with nats-server's field names, omissions and options
//! (`sort`, `auth`, `subs`, `offset`, `limit`, `cid`, `user`, `acc`, `test`), built from the
//! gateway's connections and counters. The same documents answer `$SYS.REQ` requests
//! ([`super::system`]) and the monitoring listener (`[service.monitoring]`), so nats-top, NUI and
//! other tools built on nats-server's monitoring port work unchanged. Reads counters; never
//! touches a client socket but to send the PINGs a `CONNZ` measures round trips with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::auth::Authenticators;
use super::connections::{Connection, Connections, DataStats};
use super::{GatewaySettings, GatewayStats, MAIN_LISTENER};
use crate::broker::account::GLOBAL_ACCOUNT;
use crate::slot::Slot;

/// How long a `CONNZ` waits for the round trips it measures.
const RTT_WAIT: Duration = Duration::from_millis(100);

/// The size of a page of `CONNZ` and `SUBSZ`, as nats-server's default.
const PAGE: usize = 1024;

/// The paths of the monitoring listener, as nats-server's.
const PATHS: [&str; 6] = ["/varz", "/connz", "/subsz", "/subscriptionsz", "/accountz", "/healthz"];

/// Where the monitoring listener is bound: `[service.monitoring]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringSettings {
    pub listen: SocketAddr,
}

pub(super) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

pub(super) fn now() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

pub(super) fn data_stats(stats: DataStats) -> Value {
    json!({"msgs": stats.msgs, "bytes": stats.bytes})
}

/// A duration as nats-server's monitoring writes one: `1d2h3m4s`, `5m0s`, `7s`.
fn uptime(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    let years = days / 365;
    if years > 0 {
        format!("{years}y{}d{}h{}m{}s", days % 365, hours % 24, minutes % 60, seconds % 60)
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, minutes % 60, seconds % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", minutes % 60, seconds % 60)
    } else if minutes > 0 {
        format!("{minutes}m{}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// A duration as Go prints one (`time.Duration.String`): `850ns`, `1.25µs`, `3.5ms`, `2.000001s`.
fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    let (value, unit) = match nanos {
        0..1_000 => return format!("{nanos}ns"),
        1_000..1_000_000 => (nanos as f64 / 1e3, "µs"),
        1_000_000..1_000_000_000 => (nanos as f64 / 1e6, "ms"),
        _ => (nanos as f64 / 1e9, "s"),
    };
    let text = format!("{value:.9}");
    format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The process's CPU time and resident memory in bytes, from `/proc` (zero where it is not).
fn process_usage() -> (Duration, u64) {
    const TICKS_PER_SECOND: u64 = 100;
    const PAGE_BYTES: u64 = 4096;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let resident = statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()).unwrap_or(0);
    (Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND), resident * PAGE_BYTES)
}

/// A request's options: nats-server's query parameters, by name.
struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        Query(url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|value| !value.is_empty())
    }

    /// A flag as nats-server reads one: `1`, `true`, `t` (any case) are set.
    fn flag(&self, name: &str) -> bool {
        self.text(name).is_some_and(|value| matches!(value.to_ascii_lowercase().as_str(), "1" | "true" | "t"))
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.text(name)
            .map(|value| {
                value.parse().map_err(|_| format!("Error decoding int for '{name}': \"{value}\" is not a number"))
            })
            .transpose()
    }
}

/// How `CONNZ` orders its connections (`?sort=`); all but `cid` and `start` largest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    Cid,
    Start,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Rtt,
}

impl SortBy {
    fn parse(name: &str) -> Result<SortBy, String> {
        Ok(match name {
            "cid" => SortBy::Cid,
            "start" => SortBy::Start,
            "subs" => SortBy::Subs,
            "pending" => SortBy::Pending,
            "msgs_to" => SortBy::MsgsTo,
            "msgs_from" => SortBy::MsgsFrom,
            "bytes_to" => SortBy::BytesTo,
            "bytes_from" => SortBy::BytesFrom,
            "last" => SortBy::Last,
            "idle" => SortBy::Idle,
            "uptime" => SortBy::Uptime,
            "rtt" => SortBy::Rtt,
            "stop" | "reason" => return Err(format!("sort by {name} only valid on closed connections")),
            other => return Err(format!("invalid sorting option: {other}")),
        })
    }
}

/// Which subscriptions `CONNZ` lists with each connection (`?subs=1`, `?subs=detail`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SubsListing {
    #[default]
    None,
    Subjects,
    Detail,
}

/// Which connections `CONNZ` lists (`?state=`): the gateway keeps no closed ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConnState {
    #[default]
    Open,
    Closed,
    Any,
}

/// `CONNZ`'s options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnzOptions {
    pub sort: SortBy,
    /// With each connection's user and account.
    pub auth: bool,
    pub subs: SubsListing,
    pub offset: usize,
    pub limit: Option<usize>,
    pub cid: Option<u64>,
    pub user: Option<String>,
    pub account: Option<String>,
    pub state: ConnState,
}

impl ConnzOptions {
    /// From nats-server's query parameters; the error is its answer's text.
    fn from_query(query: &Query) -> Result<ConnzOptions, String> {
        let subs = match query.text("subs") {
            Some(detail) if detail.eq_ignore_ascii_case("detail") => SubsListing::Detail,
            _ if query.flag("subs") => SubsListing::Subjects,
            _ => SubsListing::None,
        };
        let state = match query.text("state") {
            None | Some("open") => ConnState::Open,
            Some("closed") => ConnState::Closed,
            Some("any" | "all") => ConnState::Any,
            Some(other) => return Err(format!("Error decoding state for {other}")),
        };
        Ok(ConnzOptions {
            sort: query.text("sort").map(SortBy::parse).transpose()?.unwrap_or_default(),
            auth: query.flag("auth"),
            subs,
            offset: query.number("offset")?.unwrap_or(0),
            limit: query.number("limit")?,
            cid: query.number("cid")?,
            user: query.text("user").map(str::to_owned),
            account: query.text("acc").map(str::to_owned),
            state,
        })
    }
}

/// `SUBSZ`'s options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubszOptions {
    /// With the subscriptions listed.
    pub subs: bool,
    pub offset: usize,
    pub limit: Option<usize>,
    /// Only subscriptions a message on this subject would reach.
    pub test: Option<String>,
    pub account: Option<String>,
}

impl SubszOptions {
    fn from_query(query: &Query) -> Result<SubszOptions, String> {
        let test = query.text("test").map(str::to_owned);
        if let Some(subject) = &test
            && crate::broker::Subject::new(subject.clone()).is_err()
        {
            return Err(format!("invalid test subject, must be valid publish subject: {subject}"));
        }
        Ok(SubszOptions {
            subs: query.flag("subs"),
            offset: query.number("offset")?.unwrap_or(0),
            limit: query.number("limit")?,
            test,
            account: query.text("acc").map(str::to_owned),
        })
    }
}

/// The part of a list from `offset`, at most `limit` long.
fn page<T>(list: Vec<T>, offset: usize, limit: usize) -> Vec<T> {
    list.into_iter().skip(offset).take(limit).collect()
}

/// The gateway as nats-server's monitoring describes a server.
pub struct Monitor {
    server_id: String,
    settings: GatewaySettings,
    system_account: Option<String>,
    auth: Arc<Slot<Authenticators>>,
    started: OffsetDateTime,
    stats: Arc<GatewayStats>,
    connections: Connections,
    /// The process's CPU time and the moment it was read, for `cpu`.
    last_cpu: Mutex<(Duration, Instant)>,
    /// Requests the monitoring listener served, by path (`http_req_stats`).
    requests: BTreeMap<&'static str, AtomicU64>,
    /// The monitoring listener's address, once bound.
    http: OnceLock<SocketAddr>,
}

impl Monitor {
    pub fn new(
        server_id: String,
        settings: GatewaySettings,
        system_account: Option<String>,
        auth: Arc<Slot<Authenticators>>,
        stats: Arc<GatewayStats>,
    ) -> Monitor {
        Monitor {
            server_id,
            settings,
            system_account,
            auth,
            started: OffsetDateTime::now_utc(),
            stats,
            connections: Connections::default(),
            last_cpu: Mutex::new((process_usage().0, Instant::now())),
            requests: PATHS.iter().map(|path| (*path, AtomicU64::new(0))).collect(),
            http: OnceLock::new(),
        }
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The host of the main listener.
    pub fn host(&self) -> &str {
        self.settings.listeners.first().map_or("", |listener| listener.host.as_str())
    }

    pub fn system_account(&self) -> Option<&str> {
        self.system_account.as_deref()
    }

    /// The connections that authenticated.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The share of one core the process used since the last reading, in percent (nats-server's
    /// `cpu`), and its resident memory.
    fn cpu_and_memory(&self) -> (f64, u64) {
        let (cpu_time, mem) = process_usage();
        let mut last = self.last_cpu.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let wall = last.1.elapsed().as_secs_f64();
        let used = cpu_time.saturating_sub(last.0).as_secs_f64();
        *last = (cpu_time, Instant::now());
        let cpu = if wall > 0.0 { (used / wall * 1000.0).round() / 10.0 } else { 0.0 };
        (cpu, mem)
    }

    fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The figures of nats-server's `ServerStatsMsg` (`statsz`).
    pub fn statsz(&self) -> Value {
        let s = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (cpu, mem) = self.cpu_and_memory();
        json!({
            "start": rfc3339(self.started), "mem": mem, "cores": Self::cores(), "cpu": cpu,
            "connections": s.connections.load(Ordering::Relaxed), "total_connections": load(&s.total_connections),
            "active_accounts": self.connections.active_accounts().len(),
            "subscriptions": self.connections.subscriptions(),
            "sent": {"msgs": load(&s.out_msgs), "bytes": load(&s.out_bytes)},
            "received": {"msgs": load(&s.in_msgs), "bytes": load(&s.in_bytes)},
            "slow_consumers": load(&s.slow_consumers),
            "active_servers": 1,
        })
    }

    /// nats-server's `Varz`: the server's settings and counters. Clusters, gateways, leaf nodes,
    /// MQTT, WebSocket and JetStream are empty: the gateway has none of them.
    pub fn varz(&self) -> Value {
        let s = &self.stats;
        let settings = &self.settings;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (cpu, mem) = self.cpu_and_memory();
        let main = settings.listeners.first();
        let (_, auth) = self.auth.current();
        let auth_required = auth.of(MAIN_LISTENER).is_some_and(|auth| auth.required());
        let http = self.http.get();
        let mut varz = json!({
            "server_id": self.server_id, "server_name": self.server_id, "version": env!("CARGO_PKG_VERSION"),
            "proto": 1, "go": concat!("eventyard ", env!("CARGO_PKG_VERSION")),
            "host": self.host(), "port": main.map_or(0, |listener| listener.port),
            "max_connections": settings.listener_limit,
            "ping_interval": nanos(settings.ping_interval), "ping_max": settings.max_pings_out,
            "http_host": http.map(|addr| addr.ip().to_string()).unwrap_or_default(),
            "http_port": http.map_or(0, SocketAddr::port), "http_base_path": "", "https_port": 0,
            "auth_timeout": settings.auth_timeout.as_secs_f64(), "max_control_line": 4096,
            "max_payload": settings.max_payload, "max_pending": settings.max_pending,
            "cluster": {}, "gateway": {}, "leaf": {}, "mqtt": {}, "websocket": {}, "jetstream": {},
            "tls_timeout": settings.auth_timeout.as_secs_f64(), "write_deadline": nanos(Duration::from_secs(10)),
        });
        let counters = json!({
            "start": rfc3339(self.started), "now": now(),
            "uptime": uptime(Duration::try_from(OffsetDateTime::now_utc() - self.started).unwrap_or_default()),
            "mem": mem, "cores": Self::cores(), "gomaxprocs": Self::cores(), "cpu": cpu,
            "connections": s.connections.load(Ordering::Relaxed), "total_connections": load(&s.total_connections),
            "routes": 0, "remotes": 0, "leafnodes": 0,
            "in_msgs": load(&s.in_msgs), "out_msgs": load(&s.out_msgs),
            "in_bytes": load(&s.in_bytes), "out_bytes": load(&s.out_bytes),
            "slow_consumers": load(&s.slow_consumers), "subscriptions": self.connections.subscriptions(),
            "http_req_stats": self.requests.iter().filter_map(|(path, count)| {
                let count = count.load(Ordering::Relaxed);
                (count > 0).then(|| ((*path).to_owned(), json!(count)))
            }).collect::<Map<String, Value>>(),
            "config_load_time": rfc3339(self.started),
        });
        let object = varz.as_object_mut().expect("varz is an object");
        object.extend(counters.as_object().cloned().unwrap_or_default());
        // As nats-server: these appear only when set.
        if auth_required {
            object.insert("auth_required".into(), json!(true));
        }
        if let Some(tls) = main.and_then(|listener| listener.tls.as_ref()) {
            object.insert("tls_required".into(), json!(true));
            object.insert("tls_verify".into(), json!(tls.root_ca_path.is_some()));
        }
        if let Some(system) = &self.system_account {
            object.insert("system_account".into(), json!(system));
        }
        varz
    }

    /// Before a `CONNZ`: measures the round trip of the clients (those that name their language,
    /// as nats-server) that have none yet, waiting up to [`RTT_WAIT`] for their PONGs.
    pub async fn measure_round_trips(&self) {
        let unmeasured: Vec<Arc<Connection>> =
            self.connections.all().into_iter().filter(|c| c.rtt().is_none() && c.who().lang.is_some()).collect();
        for connection in &unmeasured {
            connection.measure_rtt();
        }
        let deadline = Instant::now() + RTT_WAIT;
        while Instant::now() < deadline && unmeasured.iter().any(|c| c.rtt().is_none()) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// nats-server's `Connz`.
    pub fn connz(&self, options: &ConnzOptions) -> Value {
        let now = OffsetDateTime::now_utc();
        let mut connections = self.connections.all();
        if options.state == ConnState::Closed {
            connections.clear();
        }
        connections.retain(|c| {
            let who = c.who();
            options.cid.is_none_or(|cid| c.id == cid)
                && options.account.as_ref().is_none_or(|account| &who.account == account)
                && options.user.as_ref().is_none_or(|user| who.user.as_ref() == Some(user))
        });
        sort_connections(&mut connections, options.sort);
        let total = connections.len();
        let limit = options.limit.unwrap_or(PAGE);
        let listed: Vec<Value> =
            page(connections, options.offset, limit).iter().map(|c| self.conn_info(c, options, now)).collect();
        json!({
            "server_id": self.server_id, "now": rfc3339(now), "num_connections": listed.len(), "total": total,
            "offset": options.offset, "limit": limit, "connections": listed,
        })
    }

    /// nats-server's `ConnInfo` of one connection: what is unknown is left out.
    fn conn_info(&self, c: &Connection, options: &ConnzOptions, now: OffsetDateTime) -> Value {
        let (who, inbound, outbound) = (c.who(), c.traffic.inbound(), c.traffic.outbound());
        let since = |at: OffsetDateTime| Duration::try_from(now - at).unwrap_or_default();
        let mut info = json!({
            "cid": c.id, "kind": "Client", "type": "nats", "ip": c.ip, "port": c.port,
            "start": rfc3339(c.start), "last_activity": rfc3339(c.last_activity()),
            "uptime": uptime(since(c.start)), "idle": uptime(since(c.last_activity())), "pending_bytes": 0,
            "in_msgs": inbound.msgs, "out_msgs": outbound.msgs, "in_bytes": inbound.bytes,
            "out_bytes": outbound.bytes, "subscriptions": c.subscriptions().len(),
        });
        let info_map = info.as_object_mut().expect("a connection's info is an object");
        let rtt = c.rtt().map(go_duration);
        for (key, value) in [("rtt", rtt), ("name", who.name), ("lang", who.lang), ("version", who.version)] {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                info_map.insert(key.into(), json!(value));
            }
        }
        if options.auth {
            if let Some(user) = who.user.filter(|user| !user.is_empty()) {
                info_map.insert("authorized_user".into(), json!(user));
            }
            info_map.insert("account".into(), json!(who.account));
        }
        let subscriptions = c.subscriptions();
        match options.subs {
            SubsListing::None => {}
            _ if subscriptions.is_empty() => {}
            SubsListing::Subjects => {
                let subjects: Vec<&str> = subscriptions.values().map(|s| s.subject.as_str()).collect();
                info_map.insert("subscriptions_list".into(), json!(subjects));
            }
            SubsListing::Detail => {
                let details: Vec<Value> = subscriptions.iter().map(|(sid, s)| sub_detail(None, c.id, sid, s)).collect();
                info_map.insert("subscriptions_list_detail".into(), Value::Array(details));
            }
        }
        info
    }

    /// nats-server's `Subsz`; with `subs`, the subscriptions listed (of one account with `acc`, of
    /// those a message on `test` would reach with `test`).
    pub fn subsz(&self, options: &SubszOptions) -> Value {
        let mut subsz = json!({
            "server_id": self.server_id, "now": now(), "total": 0, "offset": options.offset,
            "limit": options.limit.unwrap_or(PAGE),
        });
        if let (Some(subsz), Value::Object(stats)) = (subsz.as_object_mut(), self.sublist_stats()) {
            subsz.extend(stats);
        }
        if options.subs {
            let test = options.test.as_deref();
            let mut list = Vec::new();
            for connection in self.connections.all() {
                let account = connection.account();
                if options.account.as_ref().is_some_and(|wanted| wanted != &account) {
                    continue;
                }
                for (sid, subscription) in connection.subscriptions().iter() {
                    let reaches = |subject: &str| {
                        crate::broker::Pattern::new(subscription.subject.clone()).is_ok_and(|p| p.matches(subject))
                    };
                    if test.is_none_or(reaches) {
                        list.push(sub_detail(Some(&account), connection.id, sid, subscription));
                    }
                }
            }
            subsz["total"] = json!(list.len());
            subsz["subscriptions_list"] = Value::Array(page(list, options.offset, options.limit.unwrap_or(PAGE)));
        }
        subsz
    }

    /// nats-server's `SublistStats` of the clients' subscriptions: the gateway keeps no match
    /// cache, so only the count is not zero.
    pub fn sublist_stats(&self) -> Value {
        json!({
            "num_subscriptions": self.connections.subscriptions(), "num_cache": 0, "num_inserts": 0,
            "num_removes": 0, "num_matches": 0, "cache_hit_rate": 0.0, "max_fanout": 0, "avg_fanout": 0.0,
        })
    }

    /// The accounts `ACCOUNTZ` lists: the global one, the system one and every one with a
    /// connection.
    fn accounts(&self) -> Vec<String> {
        let mut accounts = self.connections.active_accounts();
        accounts.push(GLOBAL_ACCOUNT.to_owned());
        accounts.extend(self.system_account.clone());
        accounts.sort();
        accounts.dedup();
        accounts
    }

    /// nats-server's `Accountz`: the accounts, or one account's detail (`?acc=`).
    pub fn accountz(&self, account: Option<&str>) -> Value {
        let mut accountz = json!({"server_id": self.server_id, "now": now(), "system_account": self.system_account});
        match account {
            None => accountz["accounts"] = json!(self.accounts()),
            Some(account) => {
                let subscriptions: usize = self
                    .connections
                    .all()
                    .iter()
                    .filter(|c| c.account() == account)
                    .map(|c| c.subscriptions().len())
                    .sum();
                accountz["account_detail"] = json!({
                    "account_name": account, "update_time": rfc3339(self.started), "expired": false,
                    "complete": true, "jetstream_enabled": false, "leafnode_connections": 0,
                    "client_connections": self.connections.account(account).conns, "subscriptions": subscriptions,
                    "sublist_stats": {
                        "num_subscriptions": subscriptions, "num_cache": 0, "num_inserts": 0, "num_removes": 0,
                        "num_matches": 0, "cache_hit_rate": 0.0, "max_fanout": 0, "avg_fanout": 0.0,
                    },
                });
            }
        }
        accountz
    }

    /// Serves the monitoring documents on `listener` until `stop` is cancelled.
    pub fn serve(
        self: &Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let addr = listener.local_addr()?;
        let _ = self.http.set(addr);
        let app = Router::new()
            .route("/varz", get(varz))
            .route("/connz", get(connz))
            .route("/subsz", get(subsz))
            .route("/subscriptionsz", get(subsz))
            .route("/accountz", get(accountz))
            .route("/healthz", get(healthz))
            .with_state(self.clone());
        let settings = crate::ingest::serve::HttpServerSettings { max_connections: 64, ..Default::default() };
        Ok(tokio::spawn(crate::ingest::serve::serve(listener, app, settings, None, stop)))
    }

    /// Counts a request on `path` (before its document is built, as nats-server).
    fn count(&self, path: &'static str) {
        if let Some(count) = self.requests.get(path) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The answer to a request: the document, indented as nats-server's, or 400.
    fn answer(document: Result<Value, String>) -> Response {
        match document {
            Ok(document) => {
                let body = serde_json::to_string_pretty(&document).unwrap_or_default();
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Err(message) => (StatusCode::BAD_REQUEST, message).into_response(),
        }
    }
}

async fn varz(State(monitor): State<Arc<Monitor>>) -> Response {
    monitor.count("/varz");
    Monitor::answer(Ok(monitor.varz()))
}

async fn healthz(State(monitor): State<Arc<Monitor>>) -> Response {
    monitor.count("/healthz");
    Monitor::answer(Ok(json!({"status": "ok"})))
}

async fn connz(State(monitor): State<Arc<Monitor>>, RawQuery(query): RawQuery) -> Response {
    monitor.count("/connz");
    let options = ConnzOptions::from_query(&Query::parse(query.as_deref()));
    if options.is_ok() {
        monitor.measure_round_trips().await;
    }
    Monitor::answer(options.map(|options| monitor.connz(&options)))
}

/// As nats-server's: without `subs`, the subscription figures alone.
async fn subsz(State(monitor): State<Arc<Monitor>>, RawQuery(query): RawQuery) -> Response {
    monitor.count("/subsz");
    let options = SubszOptions::from_query(&Query::parse(query.as_deref()));
    let document = |options: SubszOptions| match options.subs {
        true => monitor.subsz(&options),
        false => monitor.sublist_stats(),
    };
    Monitor::answer(options.map(document))
}

async fn accountz(State(monitor): State<Arc<Monitor>>, RawQuery(query): RawQuery) -> Response {
    monitor.count("/accountz");
    let query = Query::parse(query.as_deref());
    Monitor::answer(Ok(monitor.accountz(query.text("acc"))))
}

/// nats-server's `SubDetail`; `CONNZ` leaves the account out.
fn sub_detail(
    account: Option<&str>,
    cid: u64,
    sid: &str,
    subscription: &super::connections::SubscriptionInfo,
) -> Value {
    let mut detail = Map::new();
    if let Some(account) = account {
        detail.insert("account".into(), json!(account));
    }
    detail.insert("subject".into(), json!(subscription.subject));
    if let Some(queue) = &subscription.queue {
        detail.insert("qgroup".into(), json!(queue));
    }
    detail.insert("sid".into(), json!(sid));
    detail.insert("msgs".into(), json!(subscription.delivered.load(Ordering::Relaxed)));
    detail.insert("cid".into(), json!(cid));
    Value::Object(detail)
}

/// Orders connections as `CONNZ`'s `sort` asks: by id or start ascending, uptime and idle longest
/// first, anything else largest first (ties by id).
fn sort_connections(connections: &mut [Arc<Connection>], sort: SortBy) {
    let key = |c: &Connection| -> u128 {
        let (inbound, outbound) = (c.traffic.inbound(), c.traffic.outbound());
        match sort {
            SortBy::Cid => u128::from(c.id),
            SortBy::Start | SortBy::Uptime => c.start.unix_timestamp_nanos().max(0) as u128,
            SortBy::Subs => c.subscriptions().len() as u128,
            SortBy::Pending => 0,
            SortBy::MsgsTo => u128::from(outbound.msgs),
            SortBy::MsgsFrom => u128::from(inbound.msgs),
            SortBy::BytesTo => u128::from(outbound.bytes),
            SortBy::BytesFrom => u128::from(inbound.bytes),
            SortBy::Last | SortBy::Idle => c.last_activity().unix_timestamp_nanos().max(0) as u128,
            SortBy::Rtt => c.rtt().map_or(0, |rtt| rtt.as_nanos()),
        }
    };
    match sort {
        // Uptime and idle longest first: the earliest start, the earliest activity.
        SortBy::Cid | SortBy::Start | SortBy::Uptime | SortBy::Idle => connections.sort_by_key(|c| (key(c), c.id)),
        _ => connections.sort_by(|a, b| key(b).cmp(&key(a)).then(a.id.cmp(&b.id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_nats_server_writes_them() {
        let cases = [(0, "0s"), (59, "59s"), (61, "1m1s"), (3_600, "1h0m0s"), (90_061, "1d1h1m1s")];
        for (seconds, text) in cases {
            assert_eq!(uptime(Duration::from_secs(seconds)), text);
        }
        assert_eq!(uptime(Duration::from_secs(366 * 86_400)), "1y1d0h0m0s");
        let go = [(850, "850ns"), (1_250, "1.25µs"), (3_500_000, "3.5ms"), (2_000_001_000, "2.000001s")];
        for (nanos, text) in go {
            assert_eq!(go_duration(Duration::from_nanos(nanos)), text);
        }
    }

    #[test]
    fn the_process_reports_its_memory_and_cpu_time() {
        let (_, mem) = process_usage();
        assert!(mem > 1 << 20, "{mem} bytes resident");
    }

    #[test]
    fn connz_options_read_as_nats_server_reads_its_query() {
        let options = ConnzOptions::from_query(&Query::parse(Some(
            "sort=bytes_to&auth=true&subs=detail&offset=2&limit=5&cid=7&acc=A",
        )))
        .expect("valid options");
        assert_eq!(options.sort, SortBy::BytesTo);
        assert!(options.auth);
        assert_eq!(options.subs, SubsListing::Detail);
        assert_eq!((options.offset, options.limit, options.cid), (2, Some(5), Some(7)));
        assert_eq!(options.account.as_deref(), Some("A"));
        assert_eq!(ConnzOptions::from_query(&Query::parse(Some("subs=1"))).map(|o| o.subs), Ok(SubsListing::Subjects));
        assert_eq!(ConnzOptions::from_query(&Query::parse(None)), Ok(ConnzOptions::default()));
        for bad in ["sort=size", "sort=stop", "limit=many", "offset=-1", "state=gone"] {
            assert!(ConnzOptions::from_query(&Query::parse(Some(bad))).is_err(), "{bad} accepted");
        }
        assert!(SubszOptions::from_query(&Query::parse(Some("test=orders.*"))).is_err());
    }

    #[test]
    fn a_page_starts_at_its_offset_and_holds_at_most_its_limit() {
        assert_eq!(page(vec![1, 2, 3, 4, 5], 1, 2), vec![2, 3]);
        assert_eq!(page(vec![1, 2], 5, 2), Vec::<i32>::new());
    }
}
