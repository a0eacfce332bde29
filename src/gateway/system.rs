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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::connections::{AccountStat, Connection, Connections};
use super::monitor::{ConnzOptions, Monitor, SubszOptions, data_stats, now, rfc3339};
use crate::broker::account::{GLOBAL_ACCOUNT, prefix as account_prefix};
use crate::broker::{Accepted, Broker, Pattern, Refusal, Subscriber};
use crate::codec;
use crate::event::{Event, NatsEnvelope};

/// How often an account with connections has its CONNS sent again (nats-server's
/// `eventsHBInterval`).
const CONNS_HEARTBEAT: Duration = Duration::from_secs(30);

/// The first STATSZ after start (nats-server's starting `cstatsz`).
const FIRST_STATSZ: Duration = Duration::from_millis(250);

/// Publishes system events for one gateway and answers its `$SYS.REQ` requests.
pub struct SystemEvents {
    broker: Arc<dyn Broker>,
    /// `$A.<system account>.`; `None` when no system account is configured.
    prefix: Option<String>,
    sequence: AtomicU64,
    /// The documents the answers carry, and the connections they describe.
    monitor: Arc<Monitor>,
}

impl SystemEvents {
    pub fn new(broker: Arc<dyn Broker>, monitor: Arc<Monitor>) -> Arc<SystemEvents> {
        Arc::new(SystemEvents {
            broker,
            prefix: monitor.system_account().map(account_prefix),
            sequence: AtomicU64::new(0),
            monitor,
        })
    }

    fn connections(&self) -> &Connections {
        self.monitor.connections()
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
                        this.publish(&format!("$SYS.SERVER.{}.STATSZ", this.monitor.server_id()), &body).await;
                        wait = (wait * 2).min(interval);
                        statsz.as_mut().reset(tokio::time::Instant::now() + wait);
                    }
                    _ = conns.tick() => {
                        for account in this.connections().active_accounts() {
                            this.conns(&account).await;
                        }
                    }
                }
            }
        }))
    }

    fn server(&self) -> Value {
        json!({
            "name": self.monitor.server_id(), "host": self.monitor.host(), "id": self.monitor.server_id(), "ver": env!("CARGO_PKG_VERSION"),
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
        self.connections().add(connection.clone());
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
        if self.connections().remove(connection.id, slow_consumer).is_none() {
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
        self.publish(&format!("$SYS.SERVER.{}.CLIENT.AUTH.ERR", self.monitor.server_id()), &Value::Object(advisory))
            .await;
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
        self.publish(&format!("$SYS.SERVER.{}.SHUTDOWN", self.monitor.server_id()), &server).await;
    }

    /// nats-server's `AccountNumConns` for `account`.
    fn account_conns(&self, account: &str) -> Value {
        let stat = self.connections().account(account);
        let mut body = self.advisory("account_connections");
        body.extend(self.account_stat(account, &stat).as_object().cloned().unwrap_or_default());
        Value::Object(body)
    }

    fn account_stat(&self, account: &str, stat: &AccountStat) -> Value {
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
        json!({"server": self.server(), "statsz": self.monitor.statsz()})
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
            "CONNZ" => self.api(self.monitor.connz(&ConnzOptions::default())),
            "SUBSZ" => self.api(self.monitor.subsz(&SubszOptions::default())),
            "HEALTHZ" => self.api(json!({"status": "ok"})),
            "ACCOUNTZ" => self.api(self.monitor.accountz(None)),
            "VARZ" => self.api(self.monitor.varz()),
            "ROUTEZ" | "GATEWAYZ" | "LEAFZ" | "JSZ" => self.unsupported(kind),
            _ => return None,
        })
    }

    /// The answer to `$SYS.REQ.ACCOUNT.<account>.<kind>`; none where nats-server stays silent.
    fn account_request(&self, account: &str, kind: &str) -> Option<Value> {
        let active = |account: &str| self.connections().account(account).conns > 0;
        Some(match kind {
            "CONNZ" => {
                self.api(self.monitor.connz(&ConnzOptions { account: Some(account.into()), ..Default::default() }))
            }
            "SUBSZ" => {
                let options = SubszOptions { subs: true, account: Some(account.into()), ..Default::default() };
                self.api(self.monitor.subsz(&options))
            }
            "CONNS" if active(account) => self.account_conns(account),
            "STATZ" if account != "PING" && active(account) => {
                let stat = self.account_stat(account, &self.connections().account(account));
                self.api(json!({"server_id": self.monitor.server_id(), "now": now(), "account_statz": [stat]}))
            }
            "INFO" | "LEAFZ" | "JSZ" => self.unsupported(kind),
            _ => return None,
        })
    }

    /// `$SYS.REQ.ACCOUNT.PING.STATZ`: every active account's statistics, or silence.
    fn account_ping(&self) -> Option<Value> {
        let accounts = self.connections().active_accounts();
        let stats: Vec<Value> =
            accounts.iter().map(|account| self.account_stat(account, &self.connections().account(account))).collect();
        (!stats.is_empty())
            .then(|| self.api(json!({"server_id": self.monitor.server_id(), "now": now(), "account_statz": stats})))
    }

    /// Whether `subject` asks this server for `CONNZ`.
    fn is_connz(&self, subject: &str) -> bool {
        let tokens: Vec<&str> = subject.split('.').collect();
        match tokens[..] {
            ["$SYS", "REQ", "SERVER", server, "CONNZ"] => server == "PING" || server == self.monitor.server_id(),
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
            ["$SYS", "REQ", "SERVER", id, kind] if id == self.monitor.server_id() => self.server_request(kind),
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
                system.monitor.measure_round_trips().await;
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
                self.publish(&format!("$SYS.SERVER.{}.STATSZ", self.monitor.server_id()), &answer).await;
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
