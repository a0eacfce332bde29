//! Turns a validated [`Config`] into running parts — plugins, sink queues and workers, routes on
//! the broker, HTTP ingest — and shuts them down in order: stop taking events, drain the queues
//! (up to `drain_timeout`), report what was left. Holds no protocol or routing logic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::AuthPolicy;
use crate::broker::{Broker, EmbeddedBroker};
use crate::config::{Config, HttpAuthPlan, PluginPlan, SinkKindPlan};
use crate::ingest::http::{HttpAuth, IngestState};
use crate::plugin::{CallStats, Plugin, PluginRuntime, Role};
use crate::queue::SinkQueue;
use crate::reload::{LivePlugin, Reloader, RoleSlot};
use crate::route::{ChainStep, Handler, KeyFilter, Route, RouteStats};
use crate::sink::Sink;
use crate::sink::builtin::{FileSink, HttpSink, StdoutSink};
use crate::sink::worker::{SinkStats, SinkWorker};
use crate::telemetry::metrics::MetricsText;

/// A loaded plugin with the settings it was loaded with.
pub struct LoadedPlugin {
    pub plugin: Plugin,
    /// What it was loaded from, kept for reloading it.
    pub plan: PluginPlan,
}

/// Every plan to load: the configured plugins, then each `*.wasm` file in the plugin directory that
/// no configured plugin claims (named after its file, `_` read as `-`).
pub async fn plugin_plans(config: &Config) -> Result<Vec<PluginPlan>, String> {
    let dir = &config.plugin_dir;
    let mut plans: Vec<PluginPlan> = config.plugins.values().cloned().collect();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        // No directory, no drop-ins; configured plugins then report their missing files.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(plans),
        Err(err) => return Err(format!("plugin directory {}: {err}", dir.display())),
    };
    let mut found = Vec::new();
    while let Some(entry) =
        entries.next_entry().await.map_err(|err| format!("plugin directory {}: {err}", dir.display()))?
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    for path in found {
        if plans.iter().any(|plan| plan.file == path) {
            continue;
        }
        let name = path.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).unwrap_or_default();
        if plans.iter().any(|plan| plan.name == name) {
            continue;
        }
        plans.push(PluginPlan::drop_in(name, path, config));
    }
    Ok(plans)
}

/// Loads every plugin; returns the ones that loaded and one message per one that did not.
pub async fn load_plugins(config: &Config, runtime: &PluginRuntime) -> (BTreeMap<String, LoadedPlugin>, Vec<String>) {
    let (mut loaded, mut errors) = (BTreeMap::new(), Vec::new());
    let plans = match plugin_plans(config).await {
        Ok(plans) => plans,
        Err(err) => return (loaded, vec![err]),
    };
    for plan in plans {
        if !Path::new(&plan.file).is_file() {
            errors.push(format!("plugin `{}`: {} not found", plan.name, plan.file.display()));
            continue;
        }
        match runtime.load(plan.spec()).await {
            Ok(plugin) => {
                loaded.insert(plan.name.clone(), LoadedPlugin { plugin, plan });
            }
            Err(err) => errors.push(err.to_string()),
        }
    }
    (loaded, errors)
}

/// Checks every plugin the config names — route handlers, plugin sinks, the HTTP auth policy —
/// against the loaded plugins: each must be there and have the right role. Returns every problem.
pub fn check_references(config: &Config, plugins: &BTreeMap<String, LoadedPlugin>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut want = |what: String, name: &str, role: Role| match plugins.get(name) {
        None => errors.push(format!("{what}: no plugin `{name}` is loaded")),
        Some(loaded) if loaded.plugin.role() != role => errors
            .push(format!("{what}: plugin `{name}` exports the {} world, not the {role} world", loaded.plugin.role())),
        Some(_) => {}
    };
    for route in &config.routes {
        for handler in &route.handlers {
            want(format!("route `{}`", route.name), handler, Role::Handler);
        }
    }
    for (name, sink) in &config.sinks {
        if let SinkKindPlan::Plugin(plugin) = &sink.kind {
            want(format!("sink `{name}`"), plugin, Role::Sink);
        }
    }
    if let HttpAuthPlan::Policy(policy) = &config.http.auth {
        want("[http.auth] policy".into(), policy, Role::AuthPolicy);
    }
    errors
}

/// A running router: what `start` built, until `shutdown`.
pub struct Running {
    /// Where HTTP ingest listens (useful when the config asked for port 0).
    pub http_addr: SocketAddr,
    ready: Arc<AtomicBool>,
    queues: Vec<Arc<SinkQueue>>,
    sink_stats: Vec<(String, Arc<SinkStats>)>,
    workers: TaskTracker,
    stop_workers: CancellationToken,
    stop_http: CancellationToken,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    drain_timeout: Duration,
    reloader: Arc<Reloader>,
    /// Watches the plugin directory while it lives.
    _watcher: Option<notify::RecommendedWatcher>,
}

/// What shutdown left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events still queued or in flight when the drain timeout ended them.
    pub abandoned: u64,
}

/// The slot of plugin `name` in the role `pick` selects. `check_references` has already vouched
/// for every name the config uses, so the error is a backstop.
fn slot_as<T>(
    live: &BTreeMap<String, LivePlugin>,
    name: &str,
    wanted: &str,
    pick: impl Fn(&RoleSlot) -> Option<T>,
) -> anyhow::Result<T> {
    live.get(name).and_then(|plugin| pick(&plugin.slot)).with_context(|| format!("no {wanted} plugin `{name}`"))
}

/// Builds every part the config describes and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let runtime = PluginRuntime::new(config.runtime.clone()).context("starting the plugin runtime")?;
    let (plugins, mut errors) = load_plugins(&config, &runtime).await;
    errors.extend(check_references(&config, &plugins));
    if !errors.is_empty() {
        anyhow::bail!("{} problem(s) with plugins:\n  {}", errors.len(), errors.join("\n  "));
    }
    for (name, loaded) in &plugins {
        let info = &loaded.plugin.meta().info;
        let world = info.world.as_deref().unwrap_or("none");
        tracing::info!(plugin = %name, world, sha256 = %info.sha256, configured = loaded.plan.configured, "plugin loaded");
    }
    let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
    let live: BTreeMap<String, LivePlugin> =
        plugins.into_iter().map(|(name, loaded)| (name, LivePlugin::new(loaded.plan, loaded.plugin))).collect();
    let workers = TaskTracker::new();
    let stop_workers = CancellationToken::new();
    let mut queues = BTreeMap::new();
    let mut sink_stats = Vec::new();
    for (name, plan) in &config.sinks {
        let context = || format!("sink `{name}`");
        let sink: Arc<dyn Sink> = match &plan.kind {
            SinkKindPlan::File(c) => {
                tokio::fs::create_dir_all(&c.root)
                    .await
                    .with_context(|| format!("sink `{name}`: creating its root {}", c.root.display()))?;
                Arc::new(FileSink::new(name, c.clone()).with_context(context)?)
            }
            SinkKindPlan::Stdout(c) => Arc::new(StdoutSink::new(name, c.clone()).with_context(context)?),
            SinkKindPlan::Http(c) => Arc::new(HttpSink::new(name, c.clone()).with_context(context)?),
            SinkKindPlan::Plugin(plugin) => slot_as(&live, plugin, "sink", |slot| match slot {
                RoleSlot::Sink(sink) => Some(sink.clone() as Arc<dyn Sink>),
                _ => None,
            })
            .with_context(context)?,
        };
        let queue = Arc::new(SinkQueue::new(name.clone(), plan.queue_size, plan.overflow, plan.block_timeout));
        let stats = Arc::new(SinkStats::default());
        let worker = SinkWorker {
            name: name.clone(),
            sink,
            queue: queue.clone(),
            batch_size: plan.batch_size,
            linger: plan.linger,
            retry: plan.retry.clone(),
            broker: broker.clone(),
            stats: stats.clone(),
        };
        workers.spawn(worker.run(stop_workers.clone()));
        queues.insert(name.clone(), queue);
        sink_stats.push((name.clone(), stats));
    }
    let mut routes = Vec::new();
    for plan in &config.routes {
        let context = || format!("route `{}`", plan.name);
        let mut chain = Vec::new();
        for handler in &plan.handlers {
            let slot = slot_as(&live, handler, "handler", |slot| match slot {
                RoleSlot::Handler(h) => Some(h.clone() as Arc<dyn Handler>),
                _ => None,
            })
            .with_context(context)?;
            let policy = live.get(handler).map(|p| p.plan.failure_policy).unwrap_or_default();
            chain.push(ChainStep { name: handler.clone(), handler: slot, policy });
        }
        let sinks = plan.sinks.iter().filter_map(|s| queues.get(s).cloned()).collect();
        let route = Arc::new(Route {
            name: plan.name.clone(),
            subject: plan.subject.clone(),
            routing_key: plan.routing_key.clone().map(KeyFilter::new),
            chain,
            sinks,
            broker: broker.clone(),
            stats: RouteStats::default(),
        });
        broker.subscribe(plan.subject.clone(), None, route.clone());
        routes.push(route);
    }
    let auth = match &config.http.auth {
        HttpAuthPlan::Open => HttpAuth::Open,
        HttpAuthPlan::Tokens(tokens) => HttpAuth::Tokens(tokens.clone().into()),
        HttpAuthPlan::Policy(name) => HttpAuth::Policy(
            slot_as(&live, name, "auth-policy", |slot| match slot {
                RoleSlot::AuthPolicy(a) => Some(a.clone() as Arc<dyn AuthPolicy>),
                _ => None,
            })
            .context("[http.auth] policy")?,
        ),
    };
    let queues: Vec<Arc<SinkQueue>> = queues.into_values().collect();
    let plugin_count = live.len();
    let reloader = Arc::new(Reloader::new(runtime, live, broker.clone()));
    let metrics = {
        let (routes, queues, sink_stats, reloader) =
            (routes.clone(), queues.clone(), sink_stats.clone(), reloader.clone());
        Arc::new(move || {
            let plugins: Vec<(String, Plugin)> =
                reloader.plugins().iter().map(|(name, live)| (name.clone(), live.current())).collect();
            render_metrics(&routes, &queues, &sink_stats, &plugins)
        })
    };
    let reload: crate::ingest::http::ReloadFn = {
        let reloader = reloader.clone();
        Arc::new(move || {
            let reloader = reloader.clone();
            Box::pin(async move { reloader.reload_plugins().await })
        })
    };
    let ready = Arc::new(AtomicBool::new(false));
    let state = IngestState { broker: broker.clone(), auth, ready: ready.clone(), metrics, reload: Some(reload) };
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP ingest to {}", config.http.listen))?;
    let http_addr = listener.local_addr().context("reading the HTTP listen address")?;
    let stop_http = CancellationToken::new();
    let app = crate::ingest::http::app(state, config.http.max_body);
    let shutdown = stop_http.clone().cancelled_owned();
    let http = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
    });
    let watcher = if config.watch_plugins && config.plugin_dir.is_dir() {
        match crate::reload::watch::watch_plugins(&config.plugin_dir, reloader.clone(), &workers, stop_http.clone()) {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                tracing::warn!(dir = %config.plugin_dir.display(), error = %err, "cannot watch the plugin directory; reload with SIGHUP");
                None
            }
        }
    } else {
        None
    };
    ready.store(true, Ordering::Release);
    tracing::info!(%http_addr, routes = routes.len(), sinks = queues.len(), plugins = plugin_count, "eventyard running");
    Ok(Running {
        http_addr,
        ready,
        queues,
        sink_stats,
        workers,
        stop_workers,
        stop_http,
        http,
        drain_timeout: config.service.drain_timeout,
        reloader,
        _watcher: watcher,
    })
}

impl Running {
    /// Reloads every plugin whose file changed; returns the reports it published.
    pub async fn reload(&self) -> Vec<serde_json::Value> {
        self.reloader.reload_plugins().await
    }

    /// Stops taking events, lets in-flight requests finish, drains the queues for up to the drain
    /// timeout, and reports what was left.
    pub async fn shutdown(self) -> ShutdownReport {
        self.ready.store(false, Ordering::Release);
        self.stop_http.cancel();
        match self.http.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "HTTP ingest stopped with an error"),
            Err(err) => tracing::error!(error = %err, "HTTP ingest task failed"),
        }
        for queue in &self.queues {
            queue.close();
        }
        self.workers.close();
        if tokio::time::timeout(self.drain_timeout, self.workers.wait()).await.is_err() {
            tracing::warn!(timeout_ms = self.drain_timeout.as_millis() as u64, "drain timeout reached, stopping sinks");
            self.stop_workers.cancel();
            self.workers.wait().await;
        }
        let abandoned = self.sink_stats.iter().map(|(_, s)| s.abandoned.load(Ordering::Relaxed)).sum();
        if abandoned > 0 {
            tracing::error!(abandoned, "shut down with undelivered events");
        } else {
            tracing::info!("shut down, every queued event delivered or dead-lettered");
        }
        ShutdownReport { abandoned }
    }
}

/// The Prometheus text of every route, queue, sink and plugin.
fn render_metrics(
    routes: &[Arc<Route>],
    queues: &[Arc<SinkQueue>],
    sinks: &[(String, Arc<SinkStats>)],
    plugins: &[(String, Plugin)],
) -> String {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut text = MetricsText::default();
    let route_counter =
        |text: &mut MetricsText, name: &str, help: &str, pick: fn(&RouteStats) -> &std::sync::atomic::AtomicU64| {
            text.counter(name, help, routes.iter().map(|r| (vec![("route", r.name.as_str())], load(pick(&r.stats)))));
        };
    route_counter(&mut text, "eventyard_route_matched_total", "Events that matched the route.", |s| &s.matched);
    route_counter(&mut text, "eventyard_route_forwarded_total", "Events put on the route's sink queues.", |s| {
        &s.forwarded
    });
    route_counter(&mut text, "eventyard_route_filtered_total", "Events a handler dropped.", |s| &s.filtered);
    route_counter(&mut text, "eventyard_route_handler_failures_total", "Handler errors, traps and timeouts.", |s| {
        &s.handler_failures
    });
    route_counter(&mut text, "eventyard_route_failed_closed_total", "Events dropped by fail_closed.", |s| {
        &s.failed_closed
    });
    route_counter(&mut text, "eventyard_route_dead_lettered_total", "Events dead-lettered by a handler policy.", |s| {
        &s.dead_lettered
    });
    text.gauge(
        "eventyard_queue_depth_events",
        "Events waiting in a sink queue.",
        queues.iter().map(|q| (vec![("sink", q.name())], q.len() as u64)),
    );
    text.gauge(
        "eventyard_queue_capacity_events",
        "Bound of a sink queue.",
        queues.iter().map(|q| (vec![("sink", q.name())], q.capacity() as u64)),
    );
    text.counter(
        "eventyard_queue_dropped_total",
        "Events dropped by a full queue's policy.",
        queues.iter().flat_map(|q| {
            [
                (vec![("sink", q.name()), ("policy", "drop_oldest")], load(&q.stats.dropped_oldest)),
                (vec![("sink", q.name()), ("policy", "drop_newest")], load(&q.stats.dropped_newest)),
            ]
        }),
    );
    text.counter(
        "eventyard_queue_refused_total",
        "Events refused by a full queue.",
        queues.iter().map(|q| (vec![("sink", q.name())], load(&q.stats.refused))),
    );
    let sink_counter =
        |text: &mut MetricsText, name: &str, help: &str, pick: fn(&SinkStats) -> &std::sync::atomic::AtomicU64| {
            text.counter(name, help, sinks.iter().map(|(n, s)| (vec![("sink", n.as_str())], load(pick(s)))));
        };
    sink_counter(&mut text, "eventyard_sink_delivered_total", "Events delivered.", |s| &s.delivered);
    sink_counter(&mut text, "eventyard_sink_failed_attempts_total", "Delivery attempts that failed.", |s| {
        &s.failed_attempts
    });
    sink_counter(&mut text, "eventyard_sink_dead_lettered_total", "Events dead-lettered.", |s| &s.dead_lettered);
    sink_counter(&mut text, "eventyard_sink_dead_letters_lost_total", "Dead letters no route took.", |s| {
        &s.dead_letters_lost
    });
    text.histogram(
        "eventyard_sink_delivery_seconds",
        "Time per delivery attempt.",
        sinks.iter().map(|(n, s)| (vec![("sink", n.as_str())], &s.delivery_seconds)),
    );
    let plugin_counter = |text: &mut MetricsText,
                          name: &str,
                          help: &str,
                          pick: fn(&CallStats) -> &std::sync::atomic::AtomicU64| {
        text.counter(name, help, plugins.iter().map(|(n, p)| (vec![("plugin", n.as_str())], load(pick(p.stats())))));
    };
    plugin_counter(&mut text, "eventyard_plugin_calls_total", "Calls into the plugin.", |s| &s.calls);
    plugin_counter(&mut text, "eventyard_plugin_errors_total", "Calls the plugin answered with an error.", |s| {
        &s.errors
    });
    plugin_counter(
        &mut text,
        "eventyard_plugin_faults_total",
        "Calls that trapped, timed out or ran out of memory.",
        |s| &s.faults,
    );
    plugin_counter(&mut text, "eventyard_plugin_quarantines_total", "Times the plugin was quarantined.", |s| {
        &s.quarantines
    });
    text.finish()
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    let mut hangups = hangup_signals();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = hangups.recv() => {
                tracing::info!("SIGHUP: reloading plugins");
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

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
