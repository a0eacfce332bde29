//! Plain subscriptions across the cluster: what one router publishes goes out on
//! `<prefix>.event.<subject>` as core NATS (at most once, as NATS itself), and a local subscriber —
//! a gateway client, a `$SYS` request handler — gets what other routers published through a NATS
//! subscription of its pattern. Messages keep their headers and reply subject, so a NATS client's
//! message reaches a client of another router exactly as it was sent. Never touches JetStream.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Pattern, Subscriber};
use crate::codec::nats as binding;
use crate::event::Event;

/// The cluster subjects of plain events: `<prefix>.event.` and the event's subject.
#[derive(Debug, Clone)]
pub struct EventSubjects {
    prefix: String,
}

impl EventSubjects {
    pub fn new(prefix: &str) -> EventSubjects {
        EventSubjects { prefix: format!("{prefix}.event.") }
    }

    /// What other routers' subscribers get of `event`: subject, reply, headers, payload.
    pub fn message(&self, event: &Event) -> (String, Option<String>, Option<async_nats::HeaderMap>, Bytes) {
        let headers = binding::headers_of(event).map(|block| binding::header_map(&block));
        let reply = binding::reply_of(event).map(str::to_owned);
        (format!("{}{}", self.prefix, event.subject), reply, headers, event.data.clone())
    }

    /// Subscribes `subscriber` to what other routers publish on `pattern` (with `queue_group`: one
    /// member across the cluster), until `stop`.
    pub fn subscribe(
        &self,
        client: &async_nats::Client,
        pattern: &Pattern,
        queue_group: Option<String>,
        subscriber: Arc<dyn Subscriber>,
        tasks: &TaskTracker,
    ) -> CancellationToken {
        let stop = CancellationToken::new();
        let (client, subject, prefix) = (client.clone(), format!("{}{}", self.prefix, pattern), self.prefix.clone());
        let until = stop.clone();
        tasks.spawn(async move {
            let subscription = match &queue_group {
                Some(group) => client.queue_subscribe(subject.clone(), group.clone()).await,
                None => client.subscribe(subject.clone()).await,
            };
            let mut messages = match subscription {
                Ok(messages) => messages,
                Err(err) => return tracing::error!(subject, error = %err, "cannot subscribe on the NATS cluster"),
            };
            loop {
                let message = tokio::select! {
                    _ = until.cancelled() => break,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                let Some(subject) = message.subject.strip_prefix(prefix.as_str()) else { continue };
                let headers = message.headers.as_ref().map(binding::header_block);
                let reply = message.reply.map(|reply| reply.to_string());
                let Ok(events) = binding::decode(subject.to_owned(), reply, headers, message.payload, 0) else {
                    continue;
                };
                for event in events {
                    // At most once, as core NATS: a subscriber that refuses loses the message.
                    let _ = crate::broker::deliver(subscriber.as_ref(), &event).await;
                }
            }
            let _ = messages.unsubscribe().await;
        });
        stop
    }
}
