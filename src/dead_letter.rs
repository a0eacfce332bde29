//! Dead letters: an event that could not be handled or delivered, republished on `$DLQ.<name>`
//! (the route or sink that gave up) with the reason, attempts, the giver-up and the original
//! subject as extensions; a gateway client's stays in its account (`$A.<account>.$DLQ.<name>`).
//! Dead letters are events like any other, so a route can send them anywhere.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::broker::Broker;
use crate::event::Event;

/// Subject prefix of dead letters.
pub const PREFIX: &str = "$DLQ.";

/// Publishes `event` on `$DLQ.<from>`. Returns false (after logging and counting in `lost`) when no
/// route took it; a dead letter that fails again is not dead-lettered twice, so it cannot loop.
/// A dead letter the broker refused marks its event not done ([`crate::completion`]): the event
/// is handed over again where that is possible, as if it had never been delivered.
pub async fn publish(
    broker: &dyn Broker,
    event: Event,
    from: &str,
    reason: &str,
    attempts: u32,
    lost: &AtomicU64,
) -> bool {
    publish_in("", broker, event, from, reason, attempts, lost).await
}

/// [`publish`] inside an account: on `<account prefix>$DLQ.<from>`, where only that account's
/// clients (and routes that name it) see it.
pub async fn publish_in(
    account_prefix: &str,
    broker: &dyn Broker,
    mut event: Event,
    from: &str,
    reason: &str,
    attempts: u32,
    lost: &AtomicU64,
) -> bool {
    let id = event.context.id.clone();
    let in_account = event.subject.strip_prefix(account_prefix).unwrap_or(&event.subject);
    if in_account.starts_with(PREFIX) || event.subject.starts_with(PREFIX) {
        lost.fetch_add(1, Ordering::Relaxed);
        tracing::error!(from, %id, reason, "dead letter undeliverable, dropped");
        return false;
    }
    let completion = event.completion.clone();
    let original = std::mem::replace(&mut event.subject, format!("{account_prefix}{PREFIX}{from}"));
    for (name, value) in [
        ("deadletterreason", reason.to_owned()),
        ("deadletterattempts", attempts.to_string()),
        ("deadlettersink", from.to_owned()),
        ("deadlettersubject", original),
    ] {
        event.extensions.retain(|(n, _)| n != name);
        event.extensions.push((name.to_owned(), value));
    }
    match broker.publish(event).await {
        Ok(ack) if ack.delivered > 0 => true,
        Ok(_) => {
            lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(from, %id, reason, "dead letter has no route, dropped");
            false
        }
        Err(err) => {
            if let Some(completion) = completion {
                completion.fail();
            }
            lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(from, %id, reason, error = %err, "dead letter refused, dropped");
            false
        }
    }
}
