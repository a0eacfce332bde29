//! The NATS-protocol gateway (seed 000): any NATS client publishes into Eventyard and subscribes to
//! its subjects on `[service] host:port`. Published messages enter the broker like HTTP ingest
//! (so they reach routes and other subscribers); each client subscription is a broker subscriber
//! that writes `MSG`/`HMSG` to a bounded outbound buffer. Owns the listeners (`[service]` and any
//! `[service.listeners.NAME]`, each with its own TLS and auth, all on one broker and one set of
//! accounts), the connection limits, counted over every listener, and the server's INFO; [`client`] owns one connection and [`protocol`] the wire format; messages
//! become events through the NATS binding of [`crate::codec::nats`]; [`publisher`] publishes sink
//! plugins' messages (the `nats-publisher` capability) the same way; [`monitor`] describes it as
//! nats-server's monitoring does, to the system account and on `[service.monitoring]`. Never
//! routes or queues events itself.

pub mod auth;
mod client;
pub mod connections;
pub mod monitor;
pub mod protocol;
pub mod publisher;
pub mod system;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{Authenticator, Authenticators, GatewayAuth};
pub use monitor::{Monitor, MonitoringSettings};

use crate::broker::Broker;
use crate::slot::Slot;

/// The name of the listener `[service] host`, `port`, `[service.auth]` and `[tls]` describe.
pub const MAIN_LISTENER: &str = "service";

/// One address the gateway listens on: `[service]` itself, or a `[service.listeners.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSettings {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Its TLS: every client upgrades after INFO.
    pub tls: Option<crate::tls::TlsSettings>,
    /// Where its plain messages' attributes are in their content.
    pub raw: Option<crate::codec::RawAttributes>,
}

/// The gateway's settings, from `[service]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    /// The main listener first; every one shares the broker, accounts and the limits below.
    pub listeners: Vec<ListenerSettings>,
    /// Most client connections at once, over every listener; one more is refused.
    pub listener_limit: usize,
    /// Largest message (headers and payload) a client may publish.
    pub max_payload: usize,
    /// Most bytes waiting to be written to one client; beyond it the client is a slow consumer
    /// and is disconnected.
    pub max_pending: usize,
    /// How long a client may take to send CONNECT when auth is required.
    pub auth_timeout: Duration,
    /// How often `$SYS.SERVER.<id>.STATSZ` is published.
    pub statsz_interval: Duration,
    /// How often a client that sent nothing in the meantime is sent PING.
    pub ping_interval: Duration,
    /// Unanswered PINGs after which a client is closed as stale.
    pub max_pings_out: u32,
    /// Most subscriptions of one connection (0: no limit); one more gets
    /// `-ERR 'Maximum Subscriptions Exceeded'`.
    pub max_subscriptions: usize,
    /// Most connections of one account at once (0: no limit), so no account takes every one
    /// `listener_limit` allows.
    pub max_connections_per_account: usize,
    /// nats-server's monitoring endpoints (`/varz`, `/connz`, ...) over HTTP, when set.
    pub monitoring: Option<MonitoringSettings>,
}

/// Counters of the gateway.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub connections: AtomicUsize,
    pub total_connections: AtomicU64,
    pub refused_connections: AtomicU64,
    pub in_msgs: AtomicU64,
    pub in_bytes: AtomicU64,
    pub out_msgs: AtomicU64,
    pub out_bytes: AtomicU64,
    pub slow_consumers: AtomicU64,
    /// Publishes a queue refused (full or closed).
    pub refused_publishes: AtomicU64,
    /// Times a full queue made the gateway hold a publisher until it took its events.
    pub slowed_publishes: AtomicU64,
    /// Publishes that were not valid events (told to the client, and dead-lettered).
    pub malformed_publishes: AtomicU64,
    /// Dead letters of malformed publishes that no route took.
    pub dead_letters_lost: AtomicU64,
}

/// What every connection shares, whichever listener it came in on.
struct Shared {
    settings: GatewaySettings,
    broker: Arc<dyn Broker>,
    /// Every listener's authenticator.
    auth: Arc<Slot<Authenticators>>,
    /// The account that sees `$SYS` (restart-only).
    system_account: Option<String>,
    server_id: String,
    next_client: AtomicU64,
    stats: Arc<GatewayStats>,
    system: Arc<system::SystemEvents>,
    /// Authenticated connections per account, over every listener.
    account_connections: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One bound listener, as its clients see it.
struct Listener {
    settings: ListenerSettings,
    /// With TLS: every client upgrades after INFO.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Listener {
    /// True when client certificates must chain to a CA (mutual TLS).
    fn tls_verify(&self) -> bool {
        self.settings.tls.as_ref().is_some_and(|tls| tls.root_ca_path.is_some())
    }
}

/// A running gateway.
pub struct Gateway {
    /// The main listener's address.
    pub addr: SocketAddr,
    /// Every listener's name and address, the main one first.
    pub listeners: Vec<(String, SocketAddr)>,
    pub stats: Arc<GatewayStats>,
    /// What nats-server's monitoring would say of the gateway.
    pub monitor: Arc<Monitor>,
    /// The monitoring listener's address, when `[service.monitoring]` is set.
    pub monitoring_addr: Option<SocketAddr>,
    stop: CancellationToken,
    connections: TaskTracker,
    system: Arc<system::SystemEvents>,
    statsz: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Binds every listener and starts accepting clients; `system_account` sees `$SYS`.
    pub async fn start(
        settings: GatewaySettings,
        broker: Arc<dyn Broker>,
        auth: Arc<Slot<Authenticators>>,
        system_account: Option<String>,
    ) -> anyhow::Result<Gateway> {
        let mut bound = Vec::new();
        for listener in &settings.listeners {
            let section = listener_section(&listener.name);
            let tls = listener.tls.as_ref().map(crate::tls::acceptor).transpose().with_context(|| section.clone())?;
            let socket =
                tokio::net::TcpListener::bind((listener.host.as_str(), listener.port)).await.with_context(|| {
                    format!("binding the NATS listener {section} to {}:{}", listener.host, listener.port)
                })?;
            let addr = socket.local_addr().context("reading a NATS listener's address")?;
            bound.push((socket, addr, Arc::new(Listener { settings: listener.clone(), tls })));
        }
        let Some((_, addr, _)) = bound.first() else { anyhow::bail!("the gateway has no listener") };
        let addr = *addr;
        let stats = Arc::new(GatewayStats::default());
        let server_id = server_id();
        let monitor = Arc::new(Monitor::new(
            server_id.clone(),
            settings.clone(),
            system_account.clone(),
            auth.clone(),
            stats.clone(),
        ));
        let stop = CancellationToken::new();
        let monitoring_addr = match &settings.monitoring {
            Some(monitoring) => {
                let socket = tokio::net::TcpListener::bind(monitoring.listen)
                    .await
                    .with_context(|| format!("binding [service.monitoring] to {}", monitoring.listen))?;
                let addr = socket.local_addr().context("reading the monitoring address")?;
                monitor.serve(socket, stop.clone())?;
                Some(addr)
            }
            None => None,
        };
        let system = system::SystemEvents::new(broker.clone(), monitor.clone());
        let statsz = system.start(settings.statsz_interval);
        let shared = Arc::new(Shared {
            settings,
            broker,
            auth,
            system_account,
            server_id,
            next_client: AtomicU64::new(1),
            stats: stats.clone(),
            system: system.clone(),
            account_connections: Default::default(),
        });
        let connections = TaskTracker::new();
        let mut listeners = Vec::new();
        for (socket, addr, listener) in bound {
            listeners.push((listener.settings.name.clone(), addr));
            connections.spawn(accept(socket, listener, shared.clone(), stop.clone(), connections.clone()));
        }
        Ok(Gateway { addr, listeners, stats, monitor, monitoring_addr, stop, connections, system, statsz })
    }

    /// Tells the system account (`$SYS.SERVER.<id>.SHUTDOWN`), stops accepting, closes every
    /// connection and waits for them.
    pub async fn shutdown(self) {
        if let Some(statsz) = &self.statsz {
            statsz.abort();
        }
        self.system.shutdown().await;
        self.stop.cancel();
        self.connections.close();
        self.connections.wait().await;
    }
}

/// How the config names a listener, for errors and logs.
pub fn listener_section(name: &str) -> String {
    if name == MAIN_LISTENER { "[service]".into() } else { format!("[service.listeners.{name}]") }
}

async fn accept(
    socket: tokio::net::TcpListener,
    listener: Arc<Listener>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let (stream, remote) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let id = shared.next_client.fetch_add(1, Ordering::Relaxed);
        let over_limit = shared.stats.connections.fetch_add(1, Ordering::AcqRel) >= shared.settings.listener_limit;
        let (shared, listener) = (shared.clone(), listener.clone());
        let stop = stop.child_token();
        tasks.spawn(async move {
            if over_limit {
                shared.stats.refused_connections.fetch_add(1, Ordering::Relaxed);
                client::refuse(&shared, &listener, stream, remote, id, "maximum connections exceeded").await;
            } else {
                shared.stats.total_connections.fetch_add(1, Ordering::Relaxed);
                client::serve(&shared, listener, stream, remote, id, stop).await;
            }
            shared.stats.connections.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// A server id shaped like nats-server's: 56 upper-case letters and digits starting with `N`.
fn server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    std::iter::once('N').chain((0..55).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)).collect()
}
