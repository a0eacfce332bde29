//! System events (seed 001), for the system account only, as nats-server 2.9 sends them (its
//! `server/events.go`): client connects and disconnects of accounts other than the global one
//! (`$SYS.ACCOUNT.<acc>.CONNECT`/`DISCONNECT`, traffic counted from the client's side), account
//! connection counts (`$SYS.ACCOUNT.<acc>.SERVER.CONNS` and the older
//! `$SYS.SERVER.ACCOUNT.<acc>.CONNS`, on each change and every 30 s while the account has
//! connections), authentication errors, periodic `STATSZ`, `$SYS.SERVER.<id>.SHUTDOWN`, and the
//! answers to `$SYS.REQ.SERVER.PING[.<kind>]`, `$SYS.REQ.SERVER.<id>.<kind>` and
//! `$SYS.REQ.ACCOUNT.<acc>.<kind>`; and the router's reload reports. Field names, omissions and
//! envelopes are nats-server's, so its tools read them. Everything is published inside the system
//! account's subject space; with no system account configured, nothing is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::GatewayStats;
use super::connections::{Connection, Connections, DataStats};
use crate::broker::account::{GLOBAL_ACCOUNT, prefix as account_prefix};
use crate::broker::{Accepted, Broker, Pattern, Refusal, Subscriber};
use crate::codec;
use crate::event::{Event, NatsEnvelope};

/// How often an account with connections has its CONNS sent again (nats-server's
/// `eventsHBInterval`).
const CONNS_HEARTBEAT: Duration = Duration::from_secs(30);

/// The first STATSZ after start (nats-server's starting `cstatsz`).
const FIRST_STATSZ: Duration = Duration::from_millis(250);

/// How long a `CONNZ` waits for the round trips it measures.
const RTT_WAIT: Duration = Duration::from_millis(100);

/// The size of a page of `CONNZ` and `SUBSZ`, as nats-server's default.
const PAGE: usize = 1024;

/// Publishes system events for one gateway and answers its `$SYS.REQ` requests.
pub struct SystemEvents {
    broker: Arc<dyn Broker>,
    /// `$A.<system account>.`; `None` when no system account is configured.
    prefix: Option<String>,
    system_account: Option<String>,
    server_id: String,
    host: String,
    started: OffsetDateTime,
    sequence: AtomicU64,
    stats: Arc<GatewayStats>,
    connections: Connections,
    /// The process's CPU time and the moment it was read, for `cpu` in STATSZ.
    last_cpu: Mutex<(Duration, Instant)>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn now() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

fn data_stats(stats: DataStats) -> Value {
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

impl SystemEvents {
    pub fn new(
        broker: Arc<dyn Broker>,
        system_account: Option<&str>,
        server_id: String,
        host: String,
        stats: Arc<GatewayStats>,
    ) -> Arc<SystemEvents> {
        Arc::new(SystemEvents {
            broker,
            prefix: system_account.map(account_prefix),
            system_account: system_account.map(str::to_owned),
            server_id,
            host,
            started: OffsetDateTime::now_utc(),
            sequence: AtomicU64::new(0),
            stats,
            connections: Connections::default(),
            last_cpu: Mutex::new((process_usage().0, Instant::now())),
        })
    }

    /// The connections that authenticated.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// Answers the `$SYS.REQ` requests, forwards reload reports, and sends STATSZ every
    /// `interval` and each active account's CONNS every 30 s, until the returned task is aborted.
    pub fn start(self: &Arc<Self>, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let prefix = self.prefix.as_ref()?;
        if let Ok(pattern) = Pattern::new(format!("{prefix}$SYS.REQ.>")) {
            self.broker.subscribe(pattern, None, Arc::new(Requests(self.clone())));
        }
        if let Ok(pattern) = Pattern::new(crate::broker::account::RELOAD_SUBJECT) {
            self.broker.subscribe(pattern, None, Arc::new(Forward(self.clone())));
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            // As nats-server: the first STATSZ soon after start, then at twice the wait each time
            // until the configured interval.
            let mut wait = FIRST_STATSZ.min(interval);
            let statsz = tokio::time::sleep(wait);
            tokio::pin!(statsz);
            let mut conns = tokio::time::interval(CONNS_HEARTBEAT);
            conns.tick().await;
            loop {
                tokio::select! {
                    _ = &mut statsz => {
                        let body = this.statsz();
                        this.publish(&format!("$SYS.SERVER.{}.STATSZ", this.server_id), &body).await;
                        wait = (wait * 2).min(interval);
                        statsz.as_mut().reset(tokio::time::Instant::now() + wait);
                    }
                    _ = conns.tick() => {
                        for account in this.connections.active_accounts() {
                            this.conns(&account).await;
                        }
                    }
                }
            }
        }))
    }

    fn server(&self) -> Value {
        json!({
            "name": self.server_id, "host": self.host, "id": self.server_id, "ver": env!("CARGO_PKG_VERSION"),
            "seq": self.sequence.fetch_add(1, Ordering::Relaxed), "jetstream": false, "time": now(),
        })
    }

    /// The envelope of an advisory of `kind`.
    fn advisory(&self, kind: &str) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("io.nats.server.advisory.v1.{kind}")));
        body.insert("id".into(), json!(uuid::Uuid::now_v7().simple().to_string()));
        body.insert("timestamp".into(), json!(now()));
        body.insert("server".into(), self.server());
        body
    }

    /// Publishes `body` on system subject `subject` (in the system account).
    async fn publish(&self, subject: &str, body: &Value) {
        let Some(prefix) = &self.prefix else { return };
        let target = format!("{prefix}{subject}");
        let Ok(mut events) = codec::nats::decode(target, None, None, Bytes::from(body.to_string()), 0) else { return };
        for mut event in events.drain(..) {
            event.nats = Some(Arc::new(NatsEnvelope { reply: None, headers: None, client: 0 }));
            if let Err(err) = self.broker.publish(event).await {
                tracing::debug!(subject, error = %err, "system event not published");
            }
        }
    }

    /// nats-server's `ClientInfo`: what is unknown is left out, never null.
    fn client(&self, connection: &Connection, stop: Option<&str>) -> Value {
        let who = connection.who();
        let mut client = Map::new();
        client.insert("start".into(), json!(rfc3339(connection.start)));
        client.insert("host".into(), json!(connection.ip));
        client.insert("id".into(), json!(connection.id));
        client.insert("acc".into(), json!(who.account));
        for (key, value) in [("user", &who.user), ("name", &who.name), ("lang", &who.lang), ("ver", &who.version)] {
            if let Some(value) = value.as_ref().filter(|value| !value.is_empty()) {
                client.insert(key.into(), json!(value));
            }
        }
        if let Some(rtt) = connection.rtt() {
            client.insert("rtt".into(), json!(u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX)));
        }
        if let Some(stop) = stop {
            client.insert("stop".into(), json!(stop));
        }
        client.insert("kind".into(), json!("Client"));
        client.insert("client_type".into(), json!("nats"));
        Value::Object(client)
    }

    /// A client authenticated: `$SYS.ACCOUNT.<account>.CONNECT` (not for the global account,
    /// as nats-server) and the account's CONNS.
    pub async fn connected(&self, connection: Arc<Connection>) {
        self.connections.add(connection.clone());
        let account = connection.account();
        if account != GLOBAL_ACCOUNT {
            let mut advisory = self.advisory("client_connect");
            advisory.insert("client".into(), self.client(&connection, None));
            self.publish(&format!("$SYS.ACCOUNT.{account}.CONNECT"), &Value::Object(advisory)).await;
        }
        self.conns(&account).await;
    }

    /// An authenticated client went away: `$SYS.ACCOUNT.<account>.DISCONNECT`, with what the
    /// client sent and received, and CONNS (neither for the global account, as nats-server).
    pub async fn disconnected(&self, connection: &Connection, reason: &str, slow_consumer: bool) {
        if self.connections.remove(connection.id, slow_consumer).is_none() {
            return;
        }
        let account = connection.account();
        if account == GLOBAL_ACCOUNT {
            return;
        }
        let stop = now();
        let mut advisory = self.advisory("client_disconnect");
        advisory.insert("timestamp".into(), json!(stop));
        self.traffic(&mut advisory, connection, &stop, reason);
        self.publish(&format!("$SYS.ACCOUNT.{account}.DISCONNECT"), &Value::Object(advisory)).await;
        self.conns(&account).await;
    }

    /// A client failed to authenticate: `$SYS.SERVER.<id>.CLIENT.AUTH.ERR`.
    pub async fn auth_error(&self, connection: &Connection) {
        let stop = now();
        let mut advisory = self.advisory("client_disconnect");
        advisory.insert("timestamp".into(), json!(stop));
        self.traffic(&mut advisory, connection, &stop, "Authentication Failure");
        self.publish(&format!("$SYS.SERVER.{}.CLIENT.AUTH.ERR", self.server_id), &Value::Object(advisory)).await;
    }

    /// The client, what it sent and received (its side: what it published is `sent`) and why it
    /// went, into a disconnect advisory.
    fn traffic(&self, advisory: &mut Map<String, Value>, connection: &Connection, stop: &str, reason: &str) {
        advisory.insert("client".into(), self.client(connection, Some(stop)));
        advisory.insert("sent".into(), data_stats(connection.traffic.inbound()));
        advisory.insert("received".into(), data_stats(connection.traffic.outbound()));
        advisory.insert("reason".into(), json!(reason));
    }

    /// The gateway is shutting down: `$SYS.SERVER.<id>.SHUTDOWN`, the server's info as its body.
    pub async fn shutdown(&self) {
        let server = self.server();
        self.publish(&format!("$SYS.SERVER.{}.SHUTDOWN", self.server_id), &server).await;
    }

    /// nats-server's `AccountNumConns` for `account`.
    fn account_conns(&self, account: &str) -> Value {
        let stat = self.connections.account(account);
        let mut body = self.advisory("account_connections");
        body.extend(self.account_stat(account, &stat).as_object().cloned().unwrap_or_default());
        Value::Object(body)
    }

    fn account_stat(&self, account: &str, stat: &super::connections::AccountStat) -> Value {
        json!({
            "acc": account, "conns": stat.conns, "leafnodes": 0, "total_conns": stat.conns,
            "sent": data_stats(stat.sent), "received": data_stats(stat.received), "slow_consumers": stat.slow_consumers,
        })
    }

    /// `account`'s connection count, on both subjects nats-server 2.9 sends it on.
    async fn conns(&self, account: &str) {
        let body = self.account_conns(account);
        self.publish(&format!("$SYS.ACCOUNT.{account}.SERVER.CONNS"), &body).await;
        self.publish(&format!("$SYS.SERVER.ACCOUNT.{account}.CONNS"), &body).await;
    }

    /// nats-server's `ServerStatsMsg`.
    fn statsz(&self) -> Value {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.stats;
        let (cpu_time, mem) = process_usage();
        let cpu = {
            let mut last = self.last_cpu.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let wall = last.1.elapsed().as_secs_f64();
            let used = cpu_time.saturating_sub(last.0).as_secs_f64();
            *last = (cpu_time, Instant::now());
            if wall > 0.0 { (used / wall * 1000.0).round() / 10.0 } else { 0.0 }
        };
        json!({
            "server": self.server(),
            "statsz": {
                "start": rfc3339(self.started), "mem": mem,
                "cores": std::thread::available_parallelism().map_or(1, |n| n.get()), "cpu": cpu,
                "connections": s.connections.load(Ordering::Relaxed), "total_connections": load(&s.total_connections),
                "active_accounts": self.connections.active_accounts().len(),
                "subscriptions": self.connections.subscriptions(),
                "sent": {"msgs": load(&s.out_msgs), "bytes": load(&s.out_bytes)},
                "received": {"msgs": load(&s.in_msgs), "bytes": load(&s.in_bytes)},
                "slow_consumers": load(&s.slow_consumers),
                "active_servers": 1,
            },
        })
    }

    /// Before a `CONNZ`: measures the round trip of the clients (those that name their language,
    /// as nats-server) that have none yet, waiting up to [`RTT_WAIT`] for their PONGs.
    async fn measure_round_trips(&self) {
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

    /// nats-server's `Connz`, of one account's connections or every one.
    fn connz(&self, account: Option<&str>) -> Value {
        let now = OffsetDateTime::now_utc();
        let mut connections = self.connections.all();
        connections.retain(|c| account.is_none_or(|account| c.account() == account));
        let total = connections.len();
        let listed: Vec<Value> = connections
            .iter()
            .take(PAGE)
            .map(|c| {
                let (who, inbound, outbound) = (c.who(), c.traffic.inbound(), c.traffic.outbound());
                let since = |at: OffsetDateTime| Duration::try_from(now - at).unwrap_or_default();
                let mut info = json!({
                    "cid": c.id, "kind": "Client", "type": "nats", "ip": c.ip, "port": c.port,
                    "start": rfc3339(c.start), "last_activity": rfc3339(c.last_activity()),
                    "uptime": uptime(since(c.start)), "idle": uptime(since(c.last_activity())), "pending_bytes": 0,
                    "in_msgs": inbound.msgs, "out_msgs": outbound.msgs, "in_bytes": inbound.bytes,
                    "out_bytes": outbound.bytes, "subscriptions": c.subscriptions().len(),
                });
                let rtt = c.rtt().map(go_duration);
                for (key, value) in [("rtt", rtt), ("name", who.name), ("lang", who.lang), ("version", who.version)] {
                    if let (Some(value), Some(info)) = (value.filter(|v| !v.is_empty()), info.as_object_mut()) {
                        info.insert(key.into(), json!(value));
                    }
                }
                info
            })
            .collect();
        json!({
            "server_id": self.server_id, "now": rfc3339(now), "num_connections": listed.len(), "total": total,
            "offset": 0, "limit": PAGE, "connections": listed,
        })
    }

    /// nats-server's `Subsz`; for one account, with its subscriptions listed.
    fn subsz(&self, account: Option<&str>) -> Value {
        let connections = self.connections.all();
        let mut subsz = json!({
            "server_id": self.server_id, "now": now(), "num_subscriptions": self.connections.subscriptions(),
            "num_cache": 0, "num_inserts": 0, "num_removes": 0, "num_matches": 0, "cache_hit_rate": 0.0,
            "max_fanout": 0, "avg_fanout": 0.0, "total": 0, "offset": 0, "limit": PAGE,
        });
        if let Some(account) = account {
            let mut list = Vec::new();
            for connection in connections.iter().filter(|c| c.account() == account) {
                for (sid, subscription) in connection.subscriptions().iter() {
                    let mut detail = json!({
                        "account": account, "subject": subscription.subject, "sid": sid,
                        "msgs": subscription.delivered.load(Ordering::Relaxed), "cid": connection.id,
                    });
                    if let (Some(queue), Some(detail)) = (&subscription.queue, detail.as_object_mut()) {
                        detail.insert("qgroup".into(), json!(queue));
                    }
                    list.push(detail);
                }
            }
            subsz["total"] = json!(list.len());
            list.truncate(PAGE);
            subsz["subscriptions_list"] = Value::Array(list);
        }
        subsz
    }

    /// nats-server's `ServerAPIResponse` around `data`.
    fn api(&self, data: Value) -> Value {
        json!({"server": self.server(), "data": data})
    }

    /// The `ServerAPIResponse` for a request kind the gateway has nothing to answer with.
    fn unsupported(&self, kind: &str) -> Value {
        let description = format!("{kind} is not supported by Eventyard's gateway");
        json!({"server": self.server(), "error": {"code": 501, "description": description}})
    }

    /// The answer to `$SYS.REQ.SERVER.PING.<kind>` or `$SYS.REQ.SERVER.<id>.<kind>`.
    fn server_request(&self, kind: &str) -> Option<Value> {
        Some(match kind {
            "STATSZ" => self.statsz(),
            "CONNZ" => self.api(self.connz(None)),
            "SUBSZ" => self.api(self.subsz(None)),
            "HEALTHZ" => self.api(json!({"status": "ok"})),
            "ACCOUNTZ" => {
                let mut accounts = self.connections.active_accounts();
                accounts.extend(self.system_account.clone());
                accounts.sort();
                accounts.dedup();
                self.api(json!({"server_id": self.server_id, "now": now(), "system_account": self.system_account,
                                "accounts": accounts}))
            }
            "VARZ" | "ROUTEZ" | "GATEWAYZ" | "LEAFZ" | "JSZ" => self.unsupported(kind),
            _ => return None,
        })
    }

    /// The answer to `$SYS.REQ.ACCOUNT.<account>.<kind>`; none where nats-server stays silent.
    fn account_request(&self, account: &str, kind: &str) -> Option<Value> {
        let active = |account: &str| self.connections.account(account).conns > 0;
        Some(match kind {
            "CONNZ" => self.api(self.connz(Some(account))),
            "SUBSZ" => self.api(self.subsz(Some(account))),
            "CONNS" if active(account) => self.account_conns(account),
            "STATZ" if account != "PING" && active(account) => {
                let stat = self.account_stat(account, &self.connections.account(account));
                self.api(json!({"server_id": self.server_id, "now": now(), "account_statz": [stat]}))
            }
            "INFO" | "LEAFZ" | "JSZ" => self.unsupported(kind),
            _ => return None,
        })
    }

    /// `$SYS.REQ.ACCOUNT.PING.STATZ`: every active account's statistics, or silence.
    fn account_ping(&self) -> Option<Value> {
        let accounts = self.connections.active_accounts();
        let stats: Vec<Value> =
            accounts.iter().map(|account| self.account_stat(account, &self.connections.account(account))).collect();
        (!stats.is_empty())
            .then(|| self.api(json!({"server_id": self.server_id, "now": now(), "account_statz": stats})))
    }

    /// Whether `subject` asks this server for `CONNZ`.
    fn is_connz(&self, subject: &str) -> bool {
        let tokens: Vec<&str> = subject.split('.').collect();
        match tokens[..] {
            ["$SYS", "REQ", "SERVER", server, "CONNZ"] => server == "PING" || server == self.server_id,
            ["$SYS", "REQ", "ACCOUNT", _, "CONNZ"] => true,
            _ => false,
        }
    }

    /// The answer to the request on system subject `subject`, if it is one the gateway answers.
    fn answer(&self, subject: &str) -> Option<Value> {
        let tokens: Vec<&str> = subject.split('.').collect();
        match tokens[..] {
            ["$SYS", "REQ", "SERVER", "PING"] => Some(self.statsz()),
            ["$SYS", "REQ", "SERVER", "PING", kind] => self.server_request(kind),
            ["$SYS", "REQ", "SERVER", id, kind] if id == self.server_id => self.server_request(kind),
            ["$SYS", "REQ", "ACCOUNT", "PING", "STATZ"] => self.account_ping(),
            ["$SYS", "REQ", "ACCOUNT", account, kind] => self.account_request(account, kind),
            _ => None,
        }
    }
}

/// Answers the `$SYS.REQ` requests.
struct Requests(Arc<SystemEvents>);

#[async_trait]
impl Subscriber for Requests {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        let Some(prefix) = &self.0.prefix else { return Ok(Accepted::Passed) };
        let subject = event.subject.strip_prefix(prefix.as_str()).unwrap_or(&event.subject).to_owned();
        let reply = codec::nats::reply_of(event).map(str::to_owned);
        if self.0.is_connz(&subject) {
            // Its answer waits for round trips, the requester's own among them: off the
            // requester's publish.
            let system = self.0.clone();
            tokio::spawn(async move {
                system.measure_round_trips().await;
                system.respond(&subject, reply.as_deref()).await;
            });
            return Ok(Accepted::Delivered);
        }
        Ok(if self.0.respond(&subject, reply.as_deref()).await { Accepted::Delivered } else { Accepted::Passed })
    }
}

impl SystemEvents {
    /// Answers the request on system subject `subject` to `reply`; false if it is not one the
    /// gateway answers.
    async fn respond(&self, subject: &str, reply: Option<&str>) -> bool {
        let Some(answer) = self.answer(subject) else { return false };
        match reply {
            Some(reply) => self.publish(reply, &answer).await,
            // As nats-server: a STATSZ request without a reply subject is answered on the broadcast.
            None if answer.get("statsz").is_some() => {
                self.publish(&format!("$SYS.SERVER.{}.STATSZ", self.server_id), &answer).await;
            }
            None => {}
        }
        true
    }
}

/// Republishes the router's reload reports in the system account.
struct Forward(Arc<SystemEvents>);

#[async_trait]
impl Subscriber for Forward {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        if let Ok(report) = serde_json::from_slice::<Value>(&event.data) {
            self.0.publish(crate::broker::account::RELOAD_SUBJECT, &report).await;
        }
        Ok(Accepted::Delivered)
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
}
