//! Sources: events the router pulls from elsewhere into its routes, as HTTP ingest and the gateway
//! take the events pushed to it. Today one kind, [`nats`]: subjects of an external NATS server
//! (seed 003). A source publishes into the broker like any producer and never routes, queues or
//! delivers itself. Sources start with the router and change only on restart.

pub mod nats;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, Pattern};
use crate::codec::RawAttributes;
use crate::nats_client::NatsConnection;

/// One `[sources.NAME]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePlan {
    pub name: String,
    pub connection: NatsConnection,
    /// NATS subjects or patterns to subscribe to.
    pub subjects: Vec<Pattern>,
    /// Share the messages with other subscribers of this queue group (other routers, say).
    pub queue_group: Option<String>,
    /// The media type of messages that carry no headers; unset, they are opaque bytes.
    pub content_type: Option<String>,
    /// Where raw messages' attributes are in their content.
    pub raw: Option<RawAttributes>,
}

/// Counters of one source.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Messages that became events the broker took.
    pub received: AtomicU64,
    /// Messages that were not events (they went to dead letters).
    pub malformed: AtomicU64,
    /// Events the broker refused (a full queue, say).
    pub refused: AtomicU64,
    /// Dead letters of malformed messages that no route took.
    pub dead_letters_lost: AtomicU64,
}

/// The running sources.
pub struct Sources {
    stop: CancellationToken,
    tasks: TaskTracker,
    /// By source name.
    pub stats: BTreeMap<String, Arc<SourceStats>>,
}

impl Sources {
    /// Starts every source of `plans`, publishing into `broker`. Servers that are down are not an
    /// error: sources connect, and reconnect, in the background.
    pub async fn start(plans: &BTreeMap<String, SourcePlan>, broker: Arc<dyn Broker>) -> anyhow::Result<Sources> {
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let mut stats = BTreeMap::new();
        for plan in plans.values() {
            let counters = Arc::new(SourceStats::default());
            nats::start(plan, broker.clone(), counters.clone(), &tasks, stop.clone()).await?;
            stats.insert(plan.name.clone(), counters);
        }
        Ok(Sources { stop, tasks, stats })
    }

    /// Stops taking messages and waits for the messages in hand to be published.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
