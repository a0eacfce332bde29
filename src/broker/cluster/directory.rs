//! The route directory: which routes the cluster has and the subjects they take, in a JetStream
//! stream (`<prefix>_routes`) that keeps the last message of each `<prefix>.routes.<route>`: the
//! route's subject pattern, or nothing once it is withdrawn. Every router announces its routes
//! there and learns the others', so an event any router accepts is stored for every route of the
//! cluster — also while a config change rolls from router to router, when some routers do not know
//! a route yet. (A plain stream, not a KV bucket: async-nats 0.46 cannot read nats-server 2.9's
//! answer to creating one.) It holds no events and never runs a route.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connect::ClusterError;
use super::settings::BrokerSettings;
use crate::broker::Pattern;

/// What the directory says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A router runs `route` on `pattern`.
    Announced { route: String, pattern: Pattern },
    /// The last router to stop running `route` said so.
    Withdrawn { route: String },
}

/// The route directory of one cluster.
#[derive(Clone)]
pub struct RouteDirectory {
    jetstream: jetstream::Context,
    stream: String,
    /// `<prefix>.routes.`; a route's name follows.
    subjects: String,
}

impl RouteDirectory {
    /// Opens the directory's stream, creating it if no router has yet.
    pub async fn open(
        jetstream: &jetstream::Context,
        settings: &BrokerSettings,
    ) -> Result<RouteDirectory, ClusterError> {
        let prefix = &settings.subject_prefix;
        let directory = RouteDirectory {
            jetstream: jetstream.clone(),
            stream: format!("{prefix}_routes"),
            subjects: format!("{prefix}.routes."),
        };
        let config = stream::Config {
            name: directory.stream.clone(),
            subjects: vec![format!("{}*", directory.subjects)],
            max_messages_per_subject: 1,
            num_replicas: settings.replicas,
            description: Some("Eventyard routes: the subject pattern of each route".into()),
            ..Default::default()
        };
        super::stream::open_or_create(jetstream, config).await?;
        Ok(directory)
    }

    /// Says this router runs `route` on `pattern`.
    pub async fn announce(&self, route: &str, pattern: &Pattern) -> Result<(), String> {
        self.say(route, pattern.to_string()).await
    }

    /// Says `route` is gone; a router that still runs it announces it again on its next reload.
    pub async fn withdraw(&self, route: &str) {
        if let Err(err) = self.say(route, String::new()).await {
            tracing::warn!(route, error = err, "could not withdraw a route from the cluster's directory");
        }
    }

    async fn say(&self, route: &str, pattern: String) -> Result<(), String> {
        let subject = format!("{}{route}", self.subjects);
        let ack = self.jetstream.publish(subject, pattern.into()).await.map_err(|err| err.to_string())?;
        ack.await.map(|_| ()).map_err(|err| err.to_string())
    }

    /// Calls `learn` with every route the directory has, then with every change, until `stop`.
    pub fn watch(&self, learn: impl Fn(Change) + Send + 'static, tasks: &TaskTracker, stop: CancellationToken) {
        let directory = self.clone();
        tasks.spawn(async move {
            while !stop.is_cancelled() {
                let mut messages = match directory.follow().await {
                    Ok(messages) => messages,
                    Err(err) => {
                        tracing::warn!(error = err, "cannot follow the cluster's route directory yet");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                };
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        message = messages.next() => message,
                    };
                    match message {
                        Some(Ok(message)) => {
                            if let Some(change) = directory.change_of(&message) {
                                learn(change);
                            }
                        }
                        Some(Err(err)) => tracing::debug!(error = %err, "route directory follow interrupted"),
                        None => break,
                    }
                }
            }
        });
    }

    /// An ordered consumer from the last word on each route on.
    async fn follow(&self) -> Result<consumer::pull::Ordered, String> {
        let stream = self.jetstream.get_stream(&self.stream).await.map_err(|err| err.to_string())?;
        let config = consumer::pull::OrderedConfig {
            filter_subject: format!("{}*", self.subjects),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(|err| err.to_string())?;
        consumer.messages().await.map_err(|err| err.to_string())
    }

    fn change_of(&self, message: &jetstream::Message) -> Option<Change> {
        let route = message.subject.strip_prefix(self.subjects.as_str())?.to_owned();
        if message.payload.is_empty() {
            return Some(Change::Withdrawn { route });
        }
        match std::str::from_utf8(&message.payload).ok().and_then(|text| Pattern::new(text).ok()) {
            Some(pattern) => Some(Change::Announced { route, pattern }),
            None => {
                tracing::warn!(route, "the cluster's route directory holds no valid subject pattern for a route");
                None
            }
        }
    }
}
