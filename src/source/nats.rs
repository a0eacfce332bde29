//! The NATS source: subscribes to subjects on an external NATS server and publishes each message
//! into the broker as an event, through the CloudEvents NATS binding the gateway uses (`ce-`
//! headers: binary mode; a CloudEvents content type: structured; anything else: raw). A message
//! that is not a valid event goes to `$DLQ.<source>` with the reason; with `content_type` set,
//! plain messages carry data of that type (and JSON must parse). Core NATS delivers at most
//! once: a message the router never took is not redelivered (durable consumers come with the
//! JetStream broker).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{SourcePlan, SourceStats};
use crate::broker::Broker;
use crate::codec::nats::{self as binding, NATS_SOURCE, header_block};
use crate::codec::{self, RawAttributes};

/// How long starting a source waits for its server to confirm the subscriptions.
const SUBSCRIBED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Connects `plan`'s client and starts one task per subject on `tasks`, until `stop`.
pub async fn start(
    plan: &SourcePlan,
    broker: Arc<dyn Broker>,
    stats: Arc<SourceStats>,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let name = plan.name.clone();
    let client = plan.connection.connect(&format!("source {name}")).await?;
    for pattern in &plan.subjects {
        let subject = pattern.as_str().to_owned();
        let subscriber = match &plan.queue_group {
            Some(group) => client.queue_subscribe(subject.clone(), group.clone()).await,
            None => client.subscribe(subject.clone()).await,
        }
        .with_context(|| format!("source `{name}`: subscribing to {subject}"))?;
        let (broker, stats, stop, name) = (broker.clone(), stats.clone(), stop.clone(), name.clone());
        let (content_type, raw) = (plan.content_type.clone(), plan.raw.clone());
        tasks.spawn(async move {
            tracing::info!(source = %name, %subject, "source subscribed");
            let mut subscriber = subscriber;
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => break,
                    message = subscriber.next() => match message {
                        Some(message) => message,
                        None => break,
                    },
                };
                take(&name, content_type.as_deref(), raw.as_ref(), message, &*broker, &stats).await;
            }
            let _ = subscriber.unsubscribe().await;
        });
    }
    // When the server is up, start only once it has the subscriptions, so what is published from
    // then on is taken; when it is not, the client subscribes as soon as it connects.
    match tokio::time::timeout(SUBSCRIBED_WAIT, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(source = %name, error = %err, "source not subscribed yet"),
        Err(_) => tracing::warn!(source = %name, servers = ?plan.connection.servers, "source server not reachable yet"),
    }
    Ok(())
}

/// Publishes one message's events, or dead-letters the message with the reason it is not one.
/// A message without headers has data of `content_type`, when the source sets one; a raw message
/// gets the attributes `raw` finds in it.
async fn take(
    name: &str,
    content_type: Option<&str>,
    raw: Option<&RawAttributes>,
    message: async_nats::Message,
    broker: &dyn Broker,
    stats: &SourceStats,
) {
    let subject = message.subject.to_string();
    let reply = message.reply.map(|reply| reply.to_string());
    let headers = message.headers.as_ref().map(header_block);
    let payload = message.payload.clone();
    // Sources publish in the global account, where `$A` and `$SYS` subjects are the router's own:
    // an external server's message on one is kept as a dead letter, never published there.
    let header_block = raw.and(headers.clone());
    let decoded = match (crate::broker::account::check_global(&subject), headers, content_type) {
        (Err(reserved), _, _) => {
            Err(codec::DecodeError::InvalidSubject { subject: subject.clone(), reason: reserved.to_string() })
        }
        (Ok(()), None, Some(content_type)) => {
            codec::raw_of_type(NATS_SOURCE, subject.clone(), content_type, payload, SystemTime::now())
                .map(|event| smallvec::smallvec![event])
        }
        (Ok(()), headers, _) => binding::decode(subject.clone(), reply, headers, payload, 0),
    };
    let decoded = match raw {
        Some(raw) => decoded.and_then(|mut events| {
            binding::map_raw(&mut events, header_block.as_ref(), raw)?;
            Ok(events)
        }),
        None => decoded,
    };
    match decoded {
        Ok(events) => {
            for event in events {
                match broker.publish(event).await {
                    Ok(_) => stats.received.fetch_add(1, Ordering::Relaxed),
                    Err(err) => {
                        tracing::debug!(source = name, %subject, error = %err, "source event refused");
                        stats.refused.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
        Err(err) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(source = name, %subject, error = %err, "source message is not an event: dead-lettered");
            // The message as it came, as a raw event, with the reason.
            let Ok(raw) = codec::raw(NATS_SOURCE, subject, message.payload, SystemTime::now()) else { return };
            crate::dead_letter::publish(broker, raw, name, &err.to_string(), 0, &stats.dead_letters_lost).await;
        }
    }
}
