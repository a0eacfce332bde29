//! The NATS-protocol gateway (seed 000): any NATS client publishes into Eventyard and subscribes to
//! its subjects on `[service] host:port`. Published messages enter the broker like HTTP ingest
//! (so they reach routes and other subscribers); each client subscription is a broker subscriber
//! that writes `MSG`/`HMSG` to a bounded outbound buffer. Owns the listener, the connection limit
//! and the server's INFO; [`client`] owns one connection and [`protocol`] the wire format; messages
//! become events through the NATS binding of [`crate::codec::nats`]; [`publisher`] publishes sink
//! plugins' messages (the `nats-publisher` capability) the same way. Never routes or queues events
//! itself.

pub mod auth;
mod client;
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

pub use auth::{Authenticator, GatewayAuth};

use crate::broker::Broker;
use crate::slot::Slot;

/// The gateway's settings, from `[service]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    pub host: String,
    pub port: u16,
    /// Most client connections at once; one more is refused.
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
    /// True when `[tls]` names a CA that client certificates must chain to (mutual TLS).
    pub tls_verify: bool,
    /// Most subscriptions of one connection (0: no limit); one more gets
    /// `-ERR 'Maximum Subscriptions Exceeded'`.
    pub max_subscriptions: usize,
    /// Most connections of one account at once (0: no limit), so no account takes every one
    /// `listener_limit` allows.
    pub max_connections_per_account: usize,
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

/// What every connection shares.
struct Shared {
    settings: GatewaySettings,
    broker: Arc<dyn Broker>,
    auth: Arc<Slot<Authenticator>>,
    server_id: String,
    next_client: AtomicU64,
    stats: Arc<GatewayStats>,
    system: Arc<system::SystemEvents>,
    /// With `[tls]`: every client upgrades to TLS after INFO.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Authenticated connections per account.
    account_connections: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub stats: Arc<GatewayStats>,
    stop: CancellationToken,
    connections: TaskTracker,
    statsz: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Binds `[service] host:port` and starts accepting clients.
    pub async fn start(
        settings: GatewaySettings,
        tls: Option<&crate::tls::TlsSettings>,
        broker: Arc<dyn Broker>,
        auth: Arc<Slot<Authenticator>>,
    ) -> anyhow::Result<Gateway> {
        let tls = tls.map(crate::tls::acceptor).transpose().context("[tls]")?;
        let listener = tokio::net::TcpListener::bind((settings.host.as_str(), settings.port))
            .await
            .with_context(|| format!("binding the NATS gateway to {}:{}", settings.host, settings.port))?;
        let addr = listener.local_addr().context("reading the gateway's address")?;
        let stats = Arc::new(GatewayStats::default());
        let server_id = server_id();
        let system_account = auth.current().1.config.system_account.clone();
        let system = system::SystemEvents::new(
            broker.clone(),
            system_account.as_deref(),
            server_id.clone(),
            settings.host.clone(),
            stats.clone(),
        );
        let statsz = system.start(settings.statsz_interval);
        let shared = Arc::new(Shared {
            settings,
            broker,
            auth,
            server_id,
            next_client: AtomicU64::new(1),
            stats: stats.clone(),
            system,
            tls,
            account_connections: Default::default(),
        });
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        connections.spawn(accept(listener, shared, stop.clone(), connections.clone()));
        Ok(Gateway { addr, stats, stop, connections, statsz })
    }

    /// Stops accepting, closes every connection and waits for them.
    pub async fn shutdown(self) {
        if let Some(statsz) = &self.statsz {
            statsz.abort();
        }
        self.stop.cancel();
        self.connections.close();
        self.connections.wait().await;
    }
}

async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: CancellationToken, tasks: TaskTracker) {
    loop {
        let (stream, remote) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
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
        let shared = shared.clone();
        let stop = stop.child_token();
        tasks.spawn(async move {
            if over_limit {
                shared.stats.refused_connections.fetch_add(1, Ordering::Relaxed);
                client::refuse(&shared, stream, remote, id, "maximum connections exceeded").await;
            } else {
                shared.stats.total_connections.fetch_add(1, Ordering::Relaxed);
                client::serve(&shared, stream, remote, id, stop).await;
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
