//! Starts the router from a validated [`Config`] — the plugins and pipeline (through the
//! [`Reloader`], which owns everything a reload may change), HTTP ingest, the file watcher — serves
//! until SIGINT or SIGTERM (reloading on SIGHUP), and shuts down in order: stop taking events,
//! drain the queues (up to `drain_timeout`), report what was left. In durable embedded mode it
//! opens the write-ahead log first and replays what it held before ingest says it is ready. Holds no protocol or routing
//! logic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{RouterAdmin, WalRecovery};
use crate::broker::cluster::BrokerMode;
use crate::broker::{Broker, DurableBroker, EmbeddedBroker, NatsBroker, Replayed};
use crate::capability::HostServices;
use crate::config::Config;
use crate::dead_letter::DeadLetterStore;
use crate::gateway::Gateway;
use crate::gateway::publisher::BrokerPublisher;
use crate::ingest::http::IngestState;
use crate::kafka::KafkaConnection;
use crate::reload::{ReloadReport, Reloader};
use crate::source::Sources;
use crate::wal::{DurabilitySettings, LogWriter, PendingEvents, WriteAheadLog};

/// How often rollouts' rules are judged.
const ROLLOUT_JUDGING: Duration = Duration::from_secs(1);

/// A running router: what `start` built, until `shutdown`.
pub struct Running {
    /// Where HTTP ingest listens (useful when the config asked for port 0).
    pub http_addr: SocketAddr,
    /// Where the NATS gateway listens, when `[service]` turns it on.
    pub nats_addr: Option<SocketAddr>,
    gateway: Option<Gateway>,
    /// The cluster broker, in cluster mode: it stops pulling before the sinks drain, and sends its
    /// last acknowledgements after.
    cluster: Option<Arc<NatsBroker>>,
    /// The durable broker, in durable embedded mode: its log is synced last.
    durable: Option<DurableParts>,
    sources: Sources,
    ready: Arc<AtomicBool>,
    stop_http: CancellationToken,
    http: tokio::task::JoinHandle<()>,
    /// The watcher's task.
    tasks: TaskTracker,
    reloader: Arc<Reloader>,
    /// Watches the plugin directory and the config file while it lives.
    _watcher: Option<notify::RecommendedWatcher>,
}

struct DurableParts {
    broker: Arc<DurableBroker>,
    /// Delivers what the log held at start, then opens ingest.
    replay: tokio::task::JoinHandle<()>,
}

/// What shutdown left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events still queued or in flight when the drain timeout ended them.
    pub abandoned: u64,
}

/// Builds every part the config describes and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let mut durable = None;
    let mut wal_recovery = None;
    let (broker, cluster): (Arc<dyn Broker>, Option<Arc<NatsBroker>>) = match (config.broker.mode, &config.durability) {
        (BrokerMode::Embedded, None) => (Arc::new(EmbeddedBroker::new()), None),
        (BrokerMode::Embedded, Some(settings)) => {
            let (broker, pending, recovered) = open_durable(settings).await?;
            durable = Some((broker.clone(), pending));
            wal_recovery = Some(recovered);
            (broker, None)
        }
        (BrokerMode::Nats, _) => {
            let cluster = NatsBroker::connect(&config.broker).await.context("[broker] mode = \"nats\"")?;
            tracing::info!(servers = ?config.broker.servers, "joined the NATS cluster");
            (cluster.clone(), Some(cluster))
        }
    };
    let listen = config.http.listen;
    let http_server = config.http.server.clone();
    let http_raw = Arc::new(config.http.raw.clone());
    let gateway_settings = config.service.gateway.clone();
    let system_account = config.service.system_account.clone();
    let watch = config.watch_plugins;
    let plugin_dir = config.plugin_dir.clone();
    let config_file = config.origin.as_ref().map(|origin| origin.path.clone());
    let (routes, sinks) = (config.routes.len(), config.sinks.len());
    let source_plans = config.sources.clone();
    let dead_letters = (config.dead_letter_bytes > 0).then(|| DeadLetterStore::new(config.dead_letter_bytes));
    if let Some(store) = &dead_letters {
        store.subscribe(broker.as_ref());
    }
    let services = host_services(&config, &broker).await?;
    let reloader = Arc::new(Reloader::start(config, broker.clone(), services).await?);
    let sources = Sources::start(&source_plans, broker.clone()).await?;
    let gateway = match gateway_settings {
        Some(settings) => {
            let auth = reloader.gateway_auth.clone();
            Some(Gateway::start(settings, broker.clone(), auth, system_account).await?)
        }
        None => None,
    };
    let nats_addr = gateway.as_ref().map(|gateway| gateway.addr);
    let admin = RouterAdmin {
        reloader: reloader.clone(),
        gateway: gateway.as_ref().map(|g| g.stats.clone()),
        sources: sources.stats.clone(),
        wal_recovery,
        broker: broker.clone(),
        dead_letters,
        started: std::time::Instant::now(),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let state = IngestState {
        broker: broker.clone(),
        raw: http_raw,
        auth: reloader.http_auth.clone(),
        max_body: reloader.max_body.clone(),
        ready: ready.clone(),
        body_timeout: http_server.body_timeout,
        admin: Arc::new(admin),
    };
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding HTTP ingest to {listen}"))?;
    let http_addr = listener.local_addr().context("reading the HTTP listen address")?;
    let stop_http = CancellationToken::new();
    let app = crate::ingest::http::app(state);
    let http_tls = crate::ingest::serve::tls(&http_server)?;
    let http = tokio::spawn(crate::ingest::serve::serve(listener, app, http_server, http_tls, stop_http.clone()));
    let tasks = TaskTracker::new();
    tasks.spawn(reloader.clone().judge_rollouts_every(ROLLOUT_JUDGING, stop_http.clone()));
    let watcher = if watch {
        let plugin_dir = plugin_dir.is_dir().then_some(plugin_dir.as_path());
        match crate::reload::watch::watch(
            plugin_dir,
            config_file.as_deref(),
            reloader.clone(),
            &tasks,
            stop_http.clone(),
        ) {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch the plugin directory and config file; reload with SIGHUP");
                None
            }
        }
    } else {
        None
    };
    // Ingest opens once what the log held is back on the routes' queues.
    let durable = durable.map(|(broker, pending)| {
        let replay = tokio::spawn(replay(broker.clone(), pending, ready.clone()));
        DurableParts { broker, replay }
    });
    if durable.is_none() {
        ready.store(true, Ordering::Release);
    }
    let plugins = reloader.plugins().len();
    let nats = nats_addr.map(|addr| addr.to_string());
    // Every NATS listener beyond the main one, as `name=address`.
    let listeners = gateway.as_ref().map(|gateway| {
        let more = gateway.listeners.iter().skip(1);
        more.map(|(name, addr)| format!("{name}={addr}")).collect::<Vec<_>>().join(" ")
    });
    let nats_listeners = listeners.filter(|listeners| !listeners.is_empty());
    tracing::info!(%http_addr, nats_addr = nats, nats_listeners, routes, sinks, plugins, "eventyard running");
    Ok(Running {
        http_addr,
        nats_addr,
        gateway,
        cluster,
        durable,
        sources,
        ready,
        stop_http,
        http,
        tasks,
        reloader,
        _watcher: watcher,
    })
}

/// Opens the write-ahead log of `[durability]` (reading it back is blocking work) and the broker
/// that writes it; returns what the log held that was never done.
async fn open_durable(
    settings: &DurabilitySettings,
) -> anyhow::Result<(Arc<DurableBroker>, PendingEvents, WalRecovery)> {
    let wal = settings.wal();
    let dir = wal.dir.clone();
    let (log, recovery) = tokio::task::spawn_blocking(move || WriteAheadLog::open(wal))
        .await
        .context("opening the write-ahead log")?
        .with_context(|| format!("[durability] opening the write-ahead log in {}", dir.display()))?;
    for skipped in &recovery.skipped {
        let segment = skipped.segment.display();
        tracing::warn!(%segment, offset = skipped.offset, bytes = skipped.bytes, reason = %skipped.reason, "skipped a torn or corrupt tail of the write-ahead log");
    }
    let pending = recovery.pending.len();
    let recovered = WalRecovery {
        pending: pending as u64,
        skipped: recovery.skipped.len() as u64,
        skipped_bytes: recovery.skipped.iter().map(|s| s.bytes).sum(),
    };
    tracing::info!(dir = %dir.display(), pending, fsync = ?settings.fsync, "write-ahead log open");
    let log = LogWriter::start(log).context("starting the write-ahead log's thread")?;
    Ok((Arc::new(DurableBroker::new(log)), recovery.pending, recovered))
}

/// Delivers what the log held to the routes, then marks the router ready.
async fn replay(broker: Arc<DurableBroker>, pending: PendingEvents, ready: Arc<AtomicBool>) {
    if !pending.is_empty() {
        let Replayed { delivered, unrouted } = broker.replay(pending).await;
        tracing::info!(delivered, "replayed the events the write-ahead log held");
        if unrouted > 0 {
            tracing::warn!(unrouted, "the write-ahead log holds events no route takes now; they stay in it");
        }
    }
    ready.store(true, Ordering::Release);
}

/// The connections the host lends to granted plugins: NATS is the router's own broker.
async fn host_services(config: &Config, broker: &Arc<dyn Broker>) -> anyhow::Result<HostServices> {
    let mut services = HostServices { kafka: None, nats: Some(Arc::new(BrokerPublisher::new(broker.clone()))) };
    if let Some(settings) = &config.kafka {
        let kafka = KafkaConnection::new(settings)?;
        let brokers = settings.brokers.join(",");
        match kafka.probe(Duration::from_secs(2)).await {
            Ok(found) => tracing::info!(%brokers, found, "kafka reachable"),
            Err(err) => tracing::warn!(%brokers, error = %err, "kafka not reachable yet; sends retry until it is"),
        }
        services.kafka = Some(Arc::new(kafka));
    }
    Ok(services)
}

impl Running {
    /// Reapplies the config file and the plugin directory; returns the reports it published.
    pub async fn reload(&self) -> Vec<ReloadReport> {
        self.reloader.reload().await
    }

    /// Stops taking events, lets in-flight requests finish, drains the queues for up to the drain
    /// timeout, and reports what was left.
    pub async fn shutdown(self) -> ShutdownReport {
        self.ready.store(false, Ordering::Release);
        self.stop_http.cancel();
        self.sources.shutdown().await;
        if let Some(gateway) = self.gateway {
            gateway.shutdown().await;
        }
        if let Err(err) = self.http.await {
            tracing::error!(error = %err, "HTTP ingest task failed");
        }
        self.tasks.close();
        self.tasks.wait().await;
        if let Some(cluster) = &self.cluster {
            cluster.stop_consuming().await;
        }
        let drain_timeout = self.reloader.drain_timeout().await;
        let abandoned = self.reloader.pipeline().shutdown(drain_timeout).await;
        if let Some(cluster) = &self.cluster {
            cluster.finish(drain_timeout.max(Duration::from_secs(1))).await;
        }
        if let Some(durable) = &self.durable {
            durable.replay.abort();
            if let Err(err) = durable.broker.sync().await {
                tracing::error!(error = %err, "cannot sync the write-ahead log");
            }
        }
        if abandoned > 0 {
            tracing::error!(abandoned, "shut down with undelivered events");
        } else {
            tracing::info!("shut down, every queued event delivered or dead-lettered");
        }
        ShutdownReport { abandoned }
    }
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // Handlers first: `start` logs "eventyard running", and a SIGHUP sent on seeing it must reload,
    // not meet the default action (exit).
    let mut hangups = hangup_signals();
    let shutdown = shutdown_signal();
    let running = start(config).await?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = hangups.recv() => {
                tracing::info!("SIGHUP: reloading");
                running.reload().await;
            }
        }
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// A message per SIGHUP; nothing if the signal cannot be watched.
fn hangup_signals() -> tokio::sync::mpsc::Receiver<()> {
    let (send, receive) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                // A reload already pending covers this one too.
                let _ = send.try_send(());
            }
        });
    }
    #[cfg(not(unix))]
    drop(send);
    receive
}

/// Completes on SIGINT or SIGTERM. The handlers are installed by this call, not when the future is
/// first polled, so a signal during start-up also ends in a graceful shutdown.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (interrupt, terminate) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                },
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
