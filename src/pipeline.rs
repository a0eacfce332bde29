//! [`Pipeline`]: the running sinks and routes — a bounded queue and a worker per sink, a broker
//! subscription per route — and how a config becomes them. Applying a config is two steps:
//! [`Pipeline::stage`] builds everything the config needs without touching what runs (a config
//! that cannot be built changes nothing), then [`Pipeline::commit`] swaps it in: surviving sinks
//! keep their queues and take their new settings, new sinks start, the routes are replaced on the
//! broker in one step (each event reaches the old routes or the new ones, never both, never
//! neither), and removed sinks drain before their workers end. Starting is applying the first
//! config to an empty pipeline. Never loads plugins: it is given their slots.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, NewSubscription, SubscriptionId};
use crate::config::{Config, RoutePlan, SinkKindPlan, SinkPlan};
use crate::queue::{MemoryBudget, SinkQueue};
use crate::route::{ChainStep, FailurePolicy, Handler, KeyFilter, Route, RouteStats};
use crate::sink::Sink;
use crate::sink::builtin::{FileSink, HttpSink, NatsSink, StdoutSink};
use crate::sink::worker::{Delivery, SinkStats, SinkWorker};
use crate::slot::Slot;

/// The plugins a pipeline calls, by name.
pub trait PluginSlots: Sync {
    /// The handler plugin `name` and its failure policy.
    fn handler(&self, name: &str) -> Option<(Arc<dyn Handler>, FailurePolicy)>;
    /// The sink plugin `name`.
    fn sink(&self, name: &str) -> Option<Arc<dyn Sink>>;
}

/// One running sink.
struct LiveSink {
    plan: SinkPlan,
    queue: Arc<SinkQueue>,
    stats: Arc<SinkStats>,
    delivery: Arc<Slot<Delivery>>,
    worker: JoinHandle<()>,
}

/// One running route.
struct LiveRoute {
    plan: RoutePlan,
    route: Arc<Route>,
    subscription: SubscriptionId,
}

#[derive(Default)]
struct State {
    sinks: BTreeMap<String, LiveSink>,
    routes: Vec<LiveRoute>,
    /// Counters of sinks a reload removed, still summed at shutdown.
    retired: Vec<Arc<SinkStats>>,
}

/// The running sinks and routes.
pub struct Pipeline {
    broker: Arc<dyn Broker>,
    /// What every sink queue holds together may not pass `[service] queue_bytes`.
    budget: Arc<MemoryBudget>,
    workers: TaskTracker,
    /// Cancelled when the drain timeout ends: workers give up what they hold.
    stop_workers: CancellationToken,
    state: Mutex<State>,
}

/// A config built into sinks and routes, not yet running; see [`Pipeline::commit`].
pub struct Staged {
    queue_bytes: usize,
    sinks: Vec<(String, StagedSink)>,
    routes: Vec<(RoutePlan, Arc<Route>)>,
}

enum StagedSink {
    Keep,
    Update { plan: SinkPlan, delivery: Delivery },
    Add { plan: SinkPlan, queue: Arc<SinkQueue>, delivery: Delivery },
}

/// What a commit changed, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub sinks_added: Vec<String>,
    pub sinks_changed: Vec<String>,
    /// Removed sinks drain their queues before they go.
    pub sinks_removed: Vec<String>,
    pub routes_added: Vec<String>,
    pub routes_changed: Vec<String>,
    pub routes_removed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// A sink's queue and counters, for metrics.
pub struct SinkView {
    pub name: String,
    pub queue: Arc<SinkQueue>,
    pub stats: Arc<SinkStats>,
}

impl Pipeline {
    /// An empty pipeline; [`stage`](Self::stage) and [`commit`](Self::commit) a config to start it.
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        Pipeline {
            broker,
            budget: MemoryBudget::new(usize::MAX),
            workers: TaskTracker::new(),
            stop_workers: CancellationToken::new(),
            state: Default::default(),
        }
    }

    /// What every sink queue holds together, and its bound.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Builds the sinks and routes `config` describes, reusing the running ones it keeps; returns
    /// every problem, and changes nothing either way.
    pub async fn stage(&self, config: &Config, plugins: &dyn PluginSlots) -> Result<Staged, Vec<String>> {
        /// A running sink as staging compares it.
        struct Running {
            plan: SinkPlan,
            queue: Arc<SinkQueue>,
            sink: Arc<dyn Sink>,
        }
        let running: BTreeMap<String, Running> = self
            .state()
            .sinks
            .iter()
            .map(|(name, live)| {
                let sink = live.delivery.current().1.sink.clone();
                (name.clone(), Running { plan: live.plan.clone(), queue: live.queue.clone(), sink })
            })
            .collect();
        let mut errors = Vec::new();
        let mut sinks = Vec::new();
        let mut queues = BTreeMap::new();
        for (name, plan) in &config.sinks {
            let plugin = match &plan.kind {
                SinkKindPlan::Plugin(plugin) => match plugins.sink(plugin) {
                    Some(sink) => Some(sink),
                    None => {
                        errors.push(format!("sink `{name}`: no sink plugin `{plugin}`"));
                        continue;
                    }
                },
                _ => None,
            };
            if let Some(old) = running.get(name) {
                queues.insert(name.as_str(), old.queue.clone());
                let same_plugin = plugin.as_ref().is_none_or(|sink| Arc::ptr_eq(sink, &old.sink));
                if old.plan == *plan && same_plugin {
                    sinks.push((name.clone(), StagedSink::Keep));
                    continue;
                }
            }
            let sink = match plugin {
                Some(sink) => sink,
                None => match build_sink(name, &plan.kind).await {
                    Ok(sink) => sink,
                    Err(err) => {
                        errors.push(format!("{err:#}"));
                        continue;
                    }
                },
            };
            let delivery = Delivery {
                sink,
                batch_size: plan.batch_size,
                batch_bytes: plan.batch_bytes,
                linger: plan.linger,
                retry: plan.retry.clone(),
            };
            if running.contains_key(name) {
                sinks.push((name.clone(), StagedSink::Update { plan: plan.clone(), delivery }));
            } else {
                let queue = Arc::new(SinkQueue::new(name.clone(), plan.queue_limits(), self.budget.clone()));
                queues.insert(name.as_str(), queue.clone());
                sinks.push((name.clone(), StagedSink::Add { plan: plan.clone(), queue, delivery }));
            }
        }
        let stats: BTreeMap<String, Arc<RouteStats>> =
            self.state().routes.iter().map(|live| (live.plan.name.clone(), live.route.stats.clone())).collect();
        let mut routes = Vec::new();
        for plan in &config.routes {
            let mut chain = Vec::new();
            for name in &plan.handlers {
                match plugins.handler(name) {
                    Some((handler, policy)) => chain.push(ChainStep { name: name.clone(), handler, policy }),
                    None => errors.push(format!("route `{}`: no handler plugin `{name}`", plan.name)),
                }
            }
            let route = Route {
                name: plan.name.clone(),
                subject: plan.subject.clone(),
                routing_key: plan.routing_key.clone().map(KeyFilter::new),
                chain,
                sinks: plan.sinks.iter().filter_map(|sink| queues.get(sink.as_str()).cloned()).collect(),
                broker: self.broker.clone(),
                stats: stats.get(&plan.name).cloned().unwrap_or_default(),
            };
            routes.push((plan.clone(), Arc::new(route)));
        }
        if errors.is_empty() {
            let subscriptions: Vec<NewSubscription> =
                routes.iter().map(|(plan, route)| route_subscription(plan, route)).collect();
            if let Err(err) = self.broker.prepare(&subscriptions).await {
                errors.push(err.to_string());
            }
        }
        let queue_bytes = config.service.queue_bytes;
        if errors.is_empty() { Ok(Staged { queue_bytes, sinks, routes }) } else { Err(errors) }
    }

    /// Puts `staged` in place of what runs and reports what changed. Staged against the running
    /// pipeline by [`stage`](Self::stage), with no other commit in between.
    pub fn commit(&self, staged: Staged) -> Changes {
        let mut changes = Changes::default();
        self.budget.set_limit(staged.queue_bytes);
        let mut state = self.state();
        let keep: Vec<&String> = staged.sinks.iter().map(|(name, _)| name).collect();
        let removed: Vec<String> = state.sinks.keys().filter(|name| !keep.contains(name)).cloned().collect();
        for (name, sink) in staged.sinks {
            match sink {
                StagedSink::Keep => {}
                StagedSink::Update { plan, delivery } => {
                    if let Some(live) = state.sinks.get_mut(&name) {
                        live.queue.set_limits(plan.queue_limits());
                        live.delivery.replace(Arc::new(delivery));
                        live.plan = plan;
                        changes.sinks_changed.push(name);
                    }
                }
                StagedSink::Add { plan, queue, delivery } => {
                    let stats = Arc::new(SinkStats::default());
                    let delivery = Arc::new(Slot::new(Arc::new(delivery)));
                    let worker = SinkWorker {
                        name: name.clone(),
                        delivery: delivery.clone(),
                        queue: queue.clone(),
                        broker: self.broker.clone(),
                        stats: stats.clone(),
                    };
                    let worker = self.workers.spawn(worker.run(self.stop_workers.clone()));
                    state.sinks.insert(name.clone(), LiveSink { plan, queue, stats, delivery, worker });
                    changes.sinks_added.push(name);
                }
            }
        }

        let old: Vec<LiveRoute> = std::mem::take(&mut state.routes);
        let remove: Vec<SubscriptionId> = old.iter().map(|live| live.subscription).collect();
        let add = staged.routes.iter().map(|(plan, route)| route_subscription(plan, route)).collect();
        let (ids, settled) = self.broker.replace_subscriptions(&remove, add);
        for ((plan, route), subscription) in staged.routes.into_iter().zip(ids) {
            match old.iter().find(|live| live.plan.name == plan.name) {
                None => changes.routes_added.push(plan.name.clone()),
                Some(live) if live.plan != plan => changes.routes_changed.push(plan.name.clone()),
                Some(_) => {}
            }
            state.routes.push(LiveRoute { plan, route, subscription });
        }
        changes.routes_removed = old
            .iter()
            .filter(|live| !state.routes.iter().any(|r| r.plan.name == live.plan.name))
            .map(|live| live.plan.name.clone())
            .collect();

        let removed: Vec<LiveSink> = removed.iter().filter_map(|name| state.sinks.remove(name)).collect();
        state.retired.extend(removed.iter().map(|sink| sink.stats.clone()));
        changes.sinks_removed = removed.iter().map(|sink| sink.plan.name.clone()).collect();
        drop(state);
        if removed.is_empty() {
            return changes;
        }
        // A removed sink's queue closes only once no publish can reach it through an old route;
        // its worker then delivers what is left and ends.
        self.workers.spawn(async move {
            settled.await;
            for sink in &removed {
                sink.queue.close();
            }
            for sink in removed {
                let _ = sink.worker.await;
                tracing::info!(sink = %sink.plan.name, delivered = sink.stats.delivered.load(Ordering::Relaxed), "removed sink drained");
            }
        });
        changes
    }

    /// The routes, for metrics.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        self.state().routes.iter().map(|live| live.route.clone()).collect()
    }

    /// The sinks, for metrics.
    pub fn sinks(&self) -> Vec<SinkView> {
        self.state()
            .sinks
            .iter()
            .map(|(name, live)| SinkView { name: name.clone(), queue: live.queue.clone(), stats: live.stats.clone() })
            .collect()
    }

    /// Closes every queue, lets the workers drain them for up to `drain_timeout`, then stops them;
    /// returns how many events were left undelivered.
    pub async fn shutdown(&self, drain_timeout: Duration) -> u64 {
        let stats: Vec<Arc<SinkStats>> = {
            let state = self.state();
            for live in state.sinks.values() {
                live.queue.close();
            }
            state.sinks.values().map(|live| live.stats.clone()).chain(state.retired.iter().cloned()).collect()
        };
        self.workers.close();
        if tokio::time::timeout(drain_timeout, self.workers.wait()).await.is_err() {
            tracing::warn!(timeout_ms = drain_timeout.as_millis() as u64, "drain timeout reached, stopping sinks");
            self.stop_workers.cancel();
            self.workers.wait().await;
        }
        stats.iter().map(|s| s.abandoned.load(Ordering::Relaxed)).sum()
    }
}

/// The broker subscription of a route: durable, under the route's name, so that in cluster mode
/// the routers of a cluster share its work and keep its events until its sinks have them.
fn route_subscription(plan: &RoutePlan, route: &Arc<Route>) -> NewSubscription {
    NewSubscription {
        pattern: plan.subject.clone(),
        queue_group: None,
        subscriber: route.clone(),
        durable: Some(plan.name.clone()),
    }
}

/// A built-in sink of kind `kind`.
async fn build_sink(name: &str, kind: &SinkKindPlan) -> anyhow::Result<Arc<dyn Sink>> {
    let context = || format!("sink `{name}`");
    Ok(match kind {
        SinkKindPlan::File(c) => {
            tokio::fs::create_dir_all(&c.root)
                .await
                .with_context(|| format!("sink `{name}`: creating its root {}", c.root.display()))?;
            Arc::new(FileSink::new(name, c.clone()).with_context(context)?)
        }
        SinkKindPlan::Stdout(c) => Arc::new(StdoutSink::new(name, c.clone()).with_context(context)?),
        SinkKindPlan::Http(c) => Arc::new(HttpSink::new(name, c.clone()).with_context(context)?),
        SinkKindPlan::Nats(c) => Arc::new(NatsSink::connect(name, c.clone()).await.with_context(context)?),
        SinkKindPlan::Plugin(plugin) => anyhow::bail!("sink `{name}`: plugin `{plugin}` is not a built-in sink"),
    })
}
