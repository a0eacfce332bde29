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
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, NewSubscription, SubscriptionId};
use crate::config::{Config, RoutePlan, SinkKindPlan, SinkPlan};
use crate::queue::{MemoryBudget, SinkQueue};
use crate::route::{ChainStep, FailurePolicy, Handler, KeyFilter, Route, RouteStats};
use crate::sink::Sink;
use crate::sink::builtin::{FileSink, HttpSink, NatsSink, ObjectSink, StdoutSink};
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
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        SinkKindPlan::ObjectStore(c) => Arc::new(ObjectSink::new(name, c.clone()).with_context(context)?),
        SinkKindPlan::Plugin(plugin) => anyhow::bail!("sink `{name}`: plugin `{plugin}` is not a built-in sink"),
    })
}

#[cfg(test)]
mod tests {
    //! Staging and committing configs on a live pipeline, in process: what each commit reports, and
    //! that events keep flowing through it, each to exactly one generation of the routes.

    use std::collections::BTreeSet;

    use async_trait::async_trait;

    use super::*;
    use crate::broker::EmbeddedBroker;
    use crate::event::{Event, EventJson};
    use crate::route::HandlerError;
    use crate::sink::DeliveryError;

    /// A sink that keeps what it is given, by name, once `open` lets it.
    struct Collect {
        name: &'static str,
        into: Arc<Mutex<Vec<(&'static str, Event)>>>,
        open: tokio::sync::watch::Receiver<bool>,
    }

    #[async_trait]
    impl Sink for Collect {
        async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
            let _ = self.open.clone().wait_for(|open| *open).await;
            self.into.lock().unwrap().extend(batch.iter().map(|event| (self.name, event.clone())));
            Ok(())
        }
    }

    /// A handler that tags each event.
    struct Tag;

    #[async_trait]
    impl Handler for Tag {
        async fn handle(&self, mut event: Event) -> Result<Vec<Event>, HandlerError> {
            event.extensions.push(("tag".into(), "yes".into()));
            Ok(vec![event])
        }
    }

    /// Two collecting sink plugins, `a` and `b`, and the `tag` handler.
    struct Plugins {
        sinks: BTreeMap<&'static str, Arc<dyn Sink>>,
        delivered: Arc<Mutex<Vec<(&'static str, Event)>>>,
        open: tokio::sync::watch::Sender<bool>,
    }

    impl Plugins {
        fn new() -> Self {
            let delivered = Arc::new(Mutex::new(Vec::new()));
            let open = tokio::sync::watch::Sender::new(true);
            let sinks = ["a", "b"]
                .map(|name| {
                    let sink = Collect { name, into: delivered.clone(), open: open.subscribe() };
                    (name, Arc::new(sink) as Arc<dyn Sink>)
                })
                .into();
            Plugins { sinks, delivered, open }
        }

        /// Ids delivered to each sink.
        fn delivered(&self) -> Vec<(&'static str, String)> {
            self.delivered.lock().unwrap().iter().map(|(sink, event)| (*sink, event.context.id.clone())).collect()
        }

        /// Waits until `count` events are delivered in all.
        async fn wait_for(&self, count: usize) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while self.delivered.lock().unwrap().len() < count {
                assert!(tokio::time::Instant::now() < deadline, "only {:?} of {count} delivered", self.delivered());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    impl PluginSlots for Plugins {
        fn handler(&self, name: &str) -> Option<(Arc<dyn Handler>, FailurePolicy)> {
            (name == "tag").then(|| (Arc::new(Tag) as Arc<dyn Handler>, FailurePolicy::FailClosed))
        }

        fn sink(&self, name: &str) -> Option<Arc<dyn Sink>> {
            self.sinks.get(name).cloned()
        }
    }

    /// A config of routes `(name, subject, handlers, sinks)` over the plugin sinks it names.
    fn config(routes: &[(&str, &str, &[&str], &[&str])], batch_size: usize) -> Config {
        let mut toml = String::new();
        let mut sinks = BTreeSet::new();
        for (name, subject, handlers, route_sinks) in routes {
            toml += &format!(
                "[[route]]\nname = \"{name}\"\nsubject = \"{subject}\"\nhandlers = {handlers:?}\nsinks = {route_sinks:?}\n"
            );
            sinks.extend(route_sinks.iter().copied());
        }
        for sink in sinks {
            toml += &format!("[sinks.{sink}]\nkind = \"plugin\"\nplugin = \"{sink}\"\nbatch_size = {batch_size}\n");
        }
        Config::from_toml(&toml).unwrap_or_else(|errors| panic!("{errors:?}\n{toml}"))
    }

    fn event(subject: &str, id: usize) -> Event {
        serde_json::from_value::<EventJson>(serde_json::json!({"subject": subject, "id": id.to_string()}))
            .unwrap()
            .into_event(String::new)
            .unwrap()
    }

    async fn started(config: &Config, plugins: &Plugins) -> (Arc<dyn Broker>, Pipeline) {
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
        let pipeline = Pipeline::new(broker.clone());
        let changes = pipeline.commit(pipeline.stage(config, plugins).await.unwrap());
        assert_eq!((changes.sinks_added.len(), changes.routes_added.len()), (config.sinks.len(), config.routes.len()));
        (broker, pipeline)
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[tokio::test]
    async fn a_staged_config_changes_nothing_until_it_is_committed() {
        let plugins = Plugins::new();
        let (broker, pipeline) = started(&config(&[("orders", "orders.>", &[], &["a"])], 10), &plugins).await;
        let staged = pipeline.stage(&config(&[("orders", "orders.>", &["tag"], &["b"])], 10), &plugins).await.unwrap();
        broker.publish(event("orders.new", 1)).await.unwrap();
        plugins.wait_for(1).await;

        let changes = pipeline.commit(staged);
        let expected = Changes {
            sinks_added: names(&["b"]),
            sinks_removed: names(&["a"]),
            routes_changed: names(&["orders"]),
            ..Changes::default()
        };
        assert_eq!(changes, expected);
        broker.publish(event("orders.new", 2)).await.unwrap();
        plugins.wait_for(2).await;
        assert_eq!(plugins.delivered(), [("a", "1".into()), ("b", "2".into())]);
        let tags: Vec<Option<String>> =
            plugins.delivered.lock().unwrap().iter().map(|(_, e)| e.extension("tag").map(str::to_owned)).collect();
        assert_eq!(tags, [None, Some("yes".into())], "the new chain runs only on events after the commit");
        assert_eq!(pipeline.sinks().iter().map(|sink| sink.name.as_str()).collect::<Vec<_>>(), ["b"]);
    }

    #[tokio::test]
    async fn a_config_that_cannot_be_built_changes_nothing() {
        let plugins = Plugins::new();
        let (broker, pipeline) = started(&config(&[("orders", "orders.>", &[], &["a"])], 10), &plugins).await;
        let broken = config(&[("orders", "orders.>", &["missing"], &["a"]), ("more", "more.>", &[], &["c"])], 10);
        let errors = pipeline.stage(&broken, &plugins).await.err().expect("the config is refused");
        assert_eq!(errors, ["sink `c`: no sink plugin `c`", "route `orders`: no handler plugin `missing`"]);
        broker.publish(event("orders.new", 1)).await.unwrap();
        plugins.wait_for(1).await;
        assert_eq!(plugins.delivered(), [("a", "1".into())]);
        assert_eq!(pipeline.routes().len(), 1);
    }

    #[tokio::test]
    async fn a_kept_sink_keeps_its_queue_and_takes_new_settings() {
        let plugins = Plugins::new();
        let (broker, pipeline) = started(&config(&[("orders", "orders.>", &[], &["a"])], 10), &plugins).await;
        plugins.open.send_replace(false);
        for id in 0..5 {
            broker.publish(event("orders.new", id)).await.unwrap();
        }
        let queue = pipeline.sinks()[0].queue.clone();
        let staged = pipeline.stage(&config(&[("orders", "orders.>", &[], &["a"])], 2), &plugins).await.unwrap();
        assert_eq!(pipeline.commit(staged), Changes { sinks_changed: names(&["a"]), ..Changes::default() });
        assert!(Arc::ptr_eq(&queue, &pipeline.sinks()[0].queue), "the sink kept its queue");
        plugins.open.send_replace(true);
        plugins.wait_for(5).await;
        let mut ids: Vec<String> = plugins.delivered().into_iter().map(|(_, id)| id).collect();
        ids.sort();
        assert_eq!(ids, ["0", "1", "2", "3", "4"], "nothing queued before the commit is lost or repeated");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_published_across_commits_reach_exactly_one_generation() {
        const EVENTS: usize = 2000;
        const ROUNDS: usize = 20;
        let plugins = Arc::new(Plugins::new());
        let configs = [
            config(&[("orders", "orders.>", &[], &["a"]), ("spare", "spare.>", &[], &["b"])], 10),
            config(&[("orders", "orders.>", &["tag"], &["b"]), ("spare", "spare.>", &[], &["a"])], 10),
        ];
        let (broker, pipeline) = started(&configs[0], &plugins).await;
        // Rounds of publishes, each beside a commit that swaps which sink takes the orders.
        for round in 0..ROUNDS {
            let publisher = tokio::spawn({
                let broker = broker.clone();
                async move {
                    for id in round * EVENTS / ROUNDS..(round + 1) * EVENTS / ROUNDS {
                        broker.publish(event("orders.new", id)).await.unwrap();
                    }
                }
            });
            let staged = pipeline.stage(&configs[(round + 1) % 2], plugins.as_ref()).await.unwrap();
            assert_eq!(pipeline.commit(staged).routes_changed, names(&["orders", "spare"]));
            publisher.await.unwrap();
        }
        plugins.wait_for(EVENTS).await;
        let delivered = plugins.delivered();
        let ids: BTreeSet<&str> = delivered.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!((delivered.len(), ids.len()), (EVENTS, EVENTS), "each event once");
        let to_a = delivered.iter().filter(|(sink, _)| *sink == "a").count();
        assert!(to_a > 0 && to_a < EVENTS, "both generations took events: {to_a} went to `a`");
        let tagged = plugins.delivered.lock().unwrap().iter().filter(|(_, e)| e.extension("tag").is_some()).count();
        assert_eq!(tagged, EVENTS - to_a, "events to `b` came through the tagging chain, and only they");
    }
}
