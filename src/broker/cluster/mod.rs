//! Cluster mode: [`NatsBroker`], the [`Broker`] trait on a real NATS cluster with JetStream, for
//! deployments that outgrow one machine. Every router of the cluster is a client of it; there is
//! no protocol of Eventyard's own between routers.
//!
//! - **Routes** (durable subscriptions) live in JetStream: a publish stores the event in the stream
//!   of every route its subject matches ([`writer::StreamWriter`]) and returns once JetStream has
//!   acknowledged each, so `202`/`+OK` mean "stored on the cluster". Under load, the events of
//!   many publishes are stored together as one message ([`group`]). Every router pulls each route
//!   stream through one shared durable consumer ([`consume::RouteConsumer`]): the routers share the
//!   work, and an event is acknowledged only when every sink of its route has it.
//! - **Plain subscriptions** (gateway clients, `$SYS` requests) are served in-process for what this
//!   router publishes and through core NATS for what the others publish ([`remote`]); queue groups
//!   are served from the cluster alone, so each message reaches one member cluster-wide.
//!
//! - **The route directory** ([`directory`]) tells every router the routes of the others, so a
//!   publish stores the event for every route of the cluster, also for a route a rolling config
//!   change has not brought to this router yet.

pub mod connect;
mod consume;
pub mod directory;
mod group;
pub mod remote;
pub mod settings;
pub mod stream;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_trait::async_trait;
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use connect::ClusterError;
pub use settings::{BrokerMode, BrokerSettings};

use self::connect::Connections;
use self::consume::RouteConsumer;
use self::directory::{Change, RouteDirectory};
use self::remote::EventSubjects;
use self::stream::RouteStream;
use self::writer::StreamWriter;
use super::{
    Broker, EmbeddedBroker, NewSubscription, Pattern, PrepareError, PublishAck, PublishError, Settled, Subscriber,
    SubscriptionId,
};
use crate::event::Event;

/// Publishes of one batch that wait for JetStream at the same time.
const PIPELINE: usize = 64;

/// The broker of a router in cluster mode; see the module docs.
pub struct NatsBroker {
    /// This router's own subscribers, and the stream writers that stand for its routes.
    local: EmbeddedBroker,
    connections: Connections,
    settings: BrokerSettings,
    events: EventSubjects,
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Route consumers' pull loops.
    pulls: TaskTracker,
    /// Plain subscriptions' cluster subscriptions.
    subscriptions: TaskTracker,
    /// Acknowledgements waiting for their events' completion.
    acks: TaskTracker,
    directory: RouteDirectory,
    /// Ends the directory watch.
    stop_watching: CancellationToken,
}

#[derive(Default)]
struct State {
    held: HashMap<u64, Held>,
    /// Running route consumers, by route name.
    consumers: HashMap<String, RouteConsumer>,
    /// Consumers `prepare` made ready for routes not started yet.
    prepared: HashMap<String, PullConsumer>,
    /// Stream writers for the routes other routers run and this one does not, from the directory.
    foreign: HashMap<String, (Pattern, SubscriptionId)>,
}

/// What one subscription of the broker's holds.
#[derive(Default)]
struct Held {
    local: Option<SubscriptionId>,
    remote: Option<CancellationToken>,
    durable: Option<String>,
}

impl NatsBroker {
    /// Connects to the cluster `settings` names, checks that it has JetStream, and starts learning
    /// the cluster's routes from its directory.
    pub async fn connect(settings: &BrokerSettings) -> Result<Arc<NatsBroker>, ClusterError> {
        let connections = connect::connect(settings).await?;
        let directory = RouteDirectory::open(&connections.jetstream, settings).await?;
        let broker = Arc::new(NatsBroker {
            local: EmbeddedBroker::new(),
            connections,
            settings: settings.clone(),
            events: EventSubjects::new(&settings.subject_prefix),
            state: Mutex::default(),
            next_id: AtomicU64::new(0),
            pulls: TaskTracker::new(),
            subscriptions: TaskTracker::new(),
            acks: TaskTracker::new(),
            directory,
            stop_watching: CancellationToken::new(),
        });
        let learner = Arc::downgrade(&broker);
        let learn = move |change| {
            if let Some(broker) = Weak::upgrade(&learner) {
                broker.learn(change);
            }
        };
        broker.directory.watch(learn, &broker.subscriptions, broker.stop_watching.clone());
        Ok(broker)
    }

    /// Applies what the directory says of a route this router does not run itself: publishes store
    /// events for it too (or no longer).
    fn learn(&self, change: Change) {
        let mut state = self.state();
        let (route, pattern) = match change {
            Change::Announced { route, pattern } => (route, Some(pattern)),
            Change::Withdrawn { route } => (route, None),
        };
        if state.held.values().any(|held| held.durable.as_deref() == Some(route.as_str())) {
            return;
        }
        if state.foreign.get(&route).map(|(known, _)| known) == pattern.as_ref() {
            return;
        }
        if let Some((_, id)) = state.foreign.remove(&route) {
            self.local.unsubscribe(id);
        }
        if let Some(pattern) = pattern {
            tracing::info!(route, %pattern, "storing events for a route another router runs");
            let id = self.local.subscribe(pattern.clone(), None, Arc::new(self.writer(&route, true)));
            state.foreign.insert(route, (pattern, id));
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops pulling every route stream; events already pulled finish as usual. First step of a
    /// shutdown, before the sinks drain.
    pub async fn stop_consuming(&self) {
        for consumer in self.state().consumers.values() {
            consumer.stop.cancel();
        }
        self.pulls.close();
        self.pulls.wait().await;
    }

    /// Waits up to `timeout` for the acknowledgements of finished events and sends them; last step
    /// of a shutdown, after the sinks drained. What is not acknowledged JetStream redelivers.
    pub async fn finish(&self, timeout: Duration) {
        self.stop_watching.cancel();
        self.acks.close();
        if tokio::time::timeout(timeout, self.acks.wait()).await.is_err() {
            tracing::warn!("shut down before every acknowledgement was sent; JetStream redelivers those events");
        }
        for subscription in self.state().held.values() {
            if let Some(stop) = &subscription.remote {
                stop.cancel();
            }
        }
        let _ = tokio::time::timeout(timeout, self.connections.main.flush()).await;
    }

    /// The writer of `route`'s stream; `foreign` for a route only other routers run.
    fn writer(&self, route: &str, foreign: bool) -> StreamWriter {
        StreamWriter::start(
            RouteStream::new(&self.settings.subject_prefix, route),
            self.connections.jetstream.clone(),
            Duration::from_millis(self.settings.publish_timeout_ms),
            foreign,
        )
    }

    /// Subscribes to what other routers publish: on the connection that skips this router's own
    /// publishes for a plain subscription, on the one that does not for a queue group.
    fn subscribe_remote(
        &self,
        pattern: &Pattern,
        queue_group: Option<String>,
        subscriber: Arc<dyn Subscriber>,
    ) -> CancellationToken {
        let client = match queue_group {
            Some(_) => &self.connections.queue_groups,
            None => &self.connections.main,
        };
        self.events.subscribe(client, pattern, queue_group, subscriber, &self.subscriptions)
    }

    /// Starts (or, for a route that runs already, re-points) the consumer of route `name`.
    fn consume(&self, state: &mut State, name: &str, subscriber: Arc<dyn Subscriber>) {
        if let Some(running) = state.consumers.get(name) {
            *running.subscriber.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = subscriber;
            return;
        }
        let Some(consumer) = state.prepared.remove(name) else {
            // `prepare` runs before every start; a route without it has no stream to pull.
            return tracing::error!(route = name, "route stream was not made ready; its events wait in JetStream");
        };
        let stream = RouteStream::new(&self.settings.subject_prefix, name);
        let ack_wait = self.settings.ack_wait();
        let max_payload = self.connections.main.server_info().max_payload;
        let running =
            RouteConsumer::start(stream, consumer, subscriber, ack_wait, max_payload, &self.pulls, self.acks.clone());
        state.consumers.insert(name.to_owned(), running);
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(&self, event: Event) -> Result<PublishAck, PublishError> {
        let (subject, reply, headers, payload) = self.events.message(&event);
        let mut ack = self.local.publish(event).await?;
        let client = &self.connections.main;
        let sent = match (reply, headers) {
            (Some(reply), Some(headers)) => {
                client.publish_with_reply_and_headers(subject, reply, headers, payload).await
            }
            (Some(reply), None) => client.publish_with_reply(subject, reply, payload).await,
            (None, Some(headers)) => client.publish_with_headers(subject, headers, payload).await,
            (None, None) => client.publish(subject, payload).await,
        };
        ack.elsewhere = sent.is_ok();
        Ok(ack)
    }

    /// Up to [`PIPELINE`] publishes in flight at once, sent in order: a batch waits about one
    /// JetStream round trip per [`PIPELINE`] events instead of one per event.
    async fn publish_all(&self, events: Vec<Event>) -> Result<(), (usize, PublishError)> {
        let mut results = futures_util::stream::iter(events).map(|event| self.publish(event)).buffered(PIPELINE);
        let mut accepted = 0;
        while let Some(result) = results.next().await {
            result.map_err(|err| (accepted, err))?;
            accepted += 1;
        }
        Ok(())
    }

    fn subscribe(
        &self,
        pattern: Pattern,
        queue_group: Option<String>,
        subscriber: Arc<dyn Subscriber>,
    ) -> SubscriptionId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let remote = Some(self.subscribe_remote(&pattern, queue_group.clone(), subscriber.clone()));
        // A queue group's one member is chosen by the cluster, among every router's members.
        let local = queue_group.is_none().then(|| self.local.subscribe(pattern, None, subscriber));
        self.state().held.insert(id, Held { local, remote, durable: None });
        SubscriptionId(id)
    }

    fn unsubscribe(&self, id: SubscriptionId) {
        let Some(held) = self.state().held.remove(&id.0) else { return };
        if let Some(local) = held.local {
            self.local.unsubscribe(local);
        }
        if let Some(remote) = held.remote {
            remote.cancel();
        }
    }

    fn replace_subscriptions(
        &self,
        remove: &[SubscriptionId],
        add: Vec<NewSubscription>,
    ) -> (Vec<SubscriptionId>, Settled) {
        let mut state = self.state();
        let mut local_remove = Vec::new();
        let mut removed_routes = Vec::new();
        for id in remove {
            let Some(held) = state.held.remove(&id.0) else { continue };
            local_remove.extend(held.local);
            if let Some(remote) = held.remote {
                remote.cancel();
            }
            removed_routes.extend(held.durable);
        }
        let mut local_add = Vec::new();
        let mut added = Vec::new();
        for NewSubscription { pattern, queue_group, subscriber, durable } in add {
            let mut held = Held::default();
            let local_subscriber: Option<Arc<dyn Subscriber>> = match (&durable, &queue_group) {
                (Some(route), _) => {
                    self.consume(&mut state, route, subscriber);
                    if let Some((_, foreign)) = state.foreign.remove(route) {
                        local_remove.push(foreign);
                    }
                    Some(Arc::new(self.writer(route, false)))
                }
                (None, Some(_)) => {
                    held.remote = Some(self.subscribe_remote(&pattern, queue_group, subscriber));
                    None
                }
                (None, None) => {
                    held.remote = Some(self.subscribe_remote(&pattern, None, subscriber.clone()));
                    Some(subscriber)
                }
            };
            let has_local = local_subscriber.is_some();
            if let Some(subscriber) = local_subscriber {
                local_add.push(NewSubscription { pattern, queue_group: None, subscriber, durable: None });
            }
            held.durable = durable;
            added.push((held, has_local));
        }
        let (local_ids, settled) = self.local.replace_subscriptions(&local_remove, local_add);
        let mut local_ids = local_ids.into_iter();
        let mut ids = Vec::with_capacity(added.len());
        for (mut held, has_local) in added {
            if has_local {
                held.local = local_ids.next();
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            state.held.insert(id, held);
            ids.push(SubscriptionId(id));
        }
        let still_routed: Vec<String> = state.held.values().filter_map(|held| held.durable.clone()).collect();
        for route in removed_routes.iter().filter(|route| !still_routed.contains(route)) {
            if let Some(consumer) = state.consumers.remove(route) {
                consumer.stop.cancel();
                tracing::info!(route, "route removed: this router stops pulling its stream (its events stay there)");
            }
            let (directory, route) = (self.directory.clone(), route.clone());
            self.subscriptions.spawn(async move { directory.withdraw(&route).await });
        }
        (ids, settled)
    }

    async fn prepare(&self, add: &[NewSubscription]) -> Result<(), PrepareError> {
        for (route, pattern) in add.iter().filter_map(|s| s.durable.as_deref().map(|route| (route, &s.pattern))) {
            self.prepare_route(route).await?;
            // Once its stream exists, the other routers may store events for it.
            self.directory.announce(route, pattern).await.map_err(|reason| PrepareError {
                name: route.to_owned(),
                reason: format!("announcing it: {reason}"),
            })?;
        }
        Ok(())
    }

    fn stores_publishes(&self) -> bool {
        true
    }

    /// Events no route's stream took; other routers' NATS subscribers may still have them.
    fn set_unrouted(&self, subscriber: Arc<dyn Subscriber>) {
        self.local.set_unrouted(subscriber);
    }
}

impl NatsBroker {
    /// Makes `route`'s stream and consumer ready, unless they are already.
    async fn prepare_route(&self, route: &str) -> Result<(), PrepareError> {
        {
            let state = self.state();
            if state.consumers.contains_key(route) || state.prepared.contains_key(route) {
                return Ok(());
            }
        }
        let stream = RouteStream::new(&self.settings.subject_prefix, route);
        let consumer = stream
            .ready(&self.connections.jetstream, &self.settings)
            .await
            .map_err(|err| PrepareError { name: route.to_owned(), reason: err.to_string() })?;
        self.state().prepared.insert(route.to_owned(), consumer);
        Ok(())
    }
}
