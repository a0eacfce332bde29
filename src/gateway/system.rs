//! System events (seed 001), for the system account only: client connects and disconnects,
//! authentication errors, account connection counts, periodic server statistics, replies to
//! `$SYS.REQ.SERVER.PING` and `$SYS.REQ.SERVER.<id>.STATSZ`, and the router's reload reports. The
//! JSON is shaped like nats-server's advisories so existing monitoring tools read it. Everything is
//! published inside the system account's subject space; with no system account configured,
//! nothing is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};

use super::GatewayStats;
use crate::broker::account::prefix as account_prefix;
use crate::broker::{Accepted, Broker, Pattern, Refusal, Subscriber};
use crate::codec;
use crate::event::{Event, NatsEnvelope};

/// A connection as system events describe it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub id: u64,
    pub host: String,
    pub account: String,
    pub user: Option<String>,
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
    pub start: String,
}

/// Publishes system events for one gateway.
pub struct SystemEvents {
    broker: Arc<dyn Broker>,
    /// `$A.<system account>.`; `None` when no system account is configured.
    prefix: Option<String>,
    server_id: String,
    host: String,
    started: String,
    started_at: std::time::Instant,
    sequence: AtomicU64,
    connections: Mutex<HashMap<String, usize>>,
    stats: Arc<GatewayStats>,
}

fn now() -> String {
    time::OffsetDateTime::from(SystemTime::now())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
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
            server_id,
            host,
            started: now(),
            started_at: std::time::Instant::now(),
            sequence: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
            stats,
        })
    }

    /// Answers the `$SYS.REQ` requests, forwards reload reports, and sends STATSZ every
    /// `interval`, until the returned task is aborted.
    pub fn start(self: &Arc<Self>, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let prefix = self.prefix.as_ref()?;
        let requests =
            [format!("{prefix}$SYS.REQ.SERVER.PING"), format!("{prefix}$SYS.REQ.SERVER.{}.STATSZ", self.server_id)];
        for subject in requests {
            if let Ok(pattern) = Pattern::new(subject) {
                self.broker.subscribe(pattern, None, Arc::new(Requests(self.clone())));
            }
        }
        if let Ok(pattern) = Pattern::new(crate::broker::account::RELOAD_SUBJECT) {
            self.broker.subscribe(pattern, None, Arc::new(Forward(self.clone())));
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let statsz = this.statsz();
                this.publish(&format!("$SYS.SERVER.{}.STATSZ", this.server_id), None, &statsz).await;
            }
        }))
    }

    fn server(&self) -> Value {
        json!({
            "name": self.server_id, "host": self.host, "id": self.server_id, "ver": env!("CARGO_PKG_VERSION"),
            "seq": self.sequence.fetch_add(1, Ordering::Relaxed), "time": now(),
        })
    }

    /// Publishes `body` on system subject `subject` (in the system account), or to `reply`.
    async fn publish(&self, subject: &str, reply_to: Option<&str>, body: &Value) {
        let Some(prefix) = &self.prefix else { return };
        let target = format!("{prefix}{}", reply_to.unwrap_or(subject));
        let Ok(mut events) = codec::nats::decode(target, None, None, Bytes::from(body.to_string()), 0) else { return };
        for mut event in events.drain(..) {
            event.nats = Some(Arc::new(NatsEnvelope { reply: None, headers: None, client: 0 }));
            if let Err(err) = self.broker.publish(event).await {
                tracing::debug!(subject, error = %err, "system event not published");
            }
        }
    }

    fn client(&self, client: &ClientInfo) -> Value {
        json!({
            "start": client.start, "host": client.host, "id": client.id, "acc": client.account,
            "user": client.user, "name": client.name, "lang": client.lang, "ver": client.version,
            "server": self.server_id, "kind": "Client", "client_type": "nats",
        })
    }

    /// A client authenticated: `$SYS.ACCOUNT.<account>.CONNECT` and the account's CONNS.
    pub async fn connected(&self, client: &ClientInfo) {
        let count = self.count(&client.account, 1);
        let advisory = json!({
            "type": "io.nats.server.advisory.v1.client_connect", "id": uuid::Uuid::now_v7().to_string(),
            "timestamp": now(), "server": self.server(), "client": self.client(client),
        });
        self.publish(&format!("$SYS.ACCOUNT.{}.CONNECT", client.account), None, &advisory).await;
        self.conns(&client.account, count).await;
    }

    /// An authenticated client went away: `$SYS.ACCOUNT.<account>.DISCONNECT` and CONNS.
    pub async fn disconnected(&self, client: &ClientInfo, sent: (u64, u64), received: (u64, u64), reason: &str) {
        let count = self.count(&client.account, -1);
        let advisory = json!({
            "type": "io.nats.server.advisory.v1.client_disconnect", "id": uuid::Uuid::now_v7().to_string(),
            "timestamp": now(), "server": self.server(), "client": self.client(client),
            "sent": {"msgs": sent.0, "bytes": sent.1}, "received": {"msgs": received.0, "bytes": received.1},
            "reason": reason,
        });
        self.publish(&format!("$SYS.ACCOUNT.{}.DISCONNECT", client.account), None, &advisory).await;
        self.conns(&client.account, count).await;
    }

    /// A client failed to authenticate: `$SYS.SERVER.<id>.CLIENT.AUTH.ERR`.
    pub async fn auth_error(&self, client: &ClientInfo) {
        let advisory = json!({
            "type": "io.nats.server.advisory.v1.client_disconnect", "id": uuid::Uuid::now_v7().to_string(),
            "timestamp": now(), "server": self.server(), "client": self.client(client),
            "sent": {"msgs": 0, "bytes": 0}, "received": {"msgs": 0, "bytes": 0},
            "reason": "Authentication Failure",
        });
        self.publish(&format!("$SYS.SERVER.{}.CLIENT.AUTH.ERR", self.server_id), None, &advisory).await;
    }

    async fn conns(&self, account: &str, count: usize) {
        let total: usize = self.connections.lock().map(|c| c.values().sum()).unwrap_or(0);
        let body = json!({
            "type": "io.nats.server.advisory.v1.account_connections", "id": uuid::Uuid::now_v7().to_string(),
            "timestamp": now(), "server": self.server(), "acc": account, "conns": count, "leafnodes": 0,
            "total_conns": total,
        });
        self.publish(&format!("$SYS.SERVER.ACCOUNT.{account}.CONNS"), None, &body).await;
    }

    fn count(&self, account: &str, change: isize) -> usize {
        let Ok(mut connections) = self.connections.lock() else { return 0 };
        let count = connections.entry(account.to_owned()).or_default();
        *count = count.saturating_add_signed(change);
        let now = *count;
        if now == 0 {
            connections.remove(account);
        }
        now
    }

    fn statsz(&self) -> Value {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.stats;
        json!({
            "server": self.server(),
            "statsz": {
                "start": self.started, "uptime_seconds": self.started_at.elapsed().as_secs(),
                "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
                "connections": s.connections.load(Ordering::Relaxed), "total_connections": load(&s.total_connections),
                "active_accounts": self.connections.lock().map_or(0, |c| c.len()),
                "sent": {"msgs": load(&s.out_msgs), "bytes": load(&s.out_bytes)},
                "received": {"msgs": load(&s.in_msgs), "bytes": load(&s.in_bytes)},
                "slow_consumers": load(&s.slow_consumers),
            },
        })
    }
}

/// Answers `$SYS.REQ.SERVER.PING` and `$SYS.REQ.SERVER.<id>.STATSZ` with STATSZ.
struct Requests(Arc<SystemEvents>);

#[async_trait]
impl Subscriber for Requests {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        if let Some(reply) = codec::nats::reply_of(event) {
            let statsz = self.0.statsz();
            self.0.publish("", Some(reply), &statsz).await;
        }
        Ok(Accepted::Delivered)
    }
}

/// Republishes the router's reload reports in the system account.
struct Forward(Arc<SystemEvents>);

#[async_trait]
impl Subscriber for Forward {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        if let Ok(report) = serde_json::from_slice::<Value>(&event.data) {
            self.0.publish(crate::broker::account::RELOAD_SUBJECT, None, &report).await;
        }
        Ok(Accepted::Delivered)
    }
}
