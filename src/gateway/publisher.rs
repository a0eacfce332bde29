//! The `nats-publisher` capability's connection: a sink plugin's NATS message published into the
//! router's own broker, as if a gateway client had sent it (the same binding: `ce-` headers make a
//! binary-mode event, a CloudEvents content type a structured one, anything else a raw event). Its
//! subscribers — gateway clients, routes — get it like any other message. Never loops a message
//! back by itself: a route whose sink publishes to a subject the route matches is the config's loop.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::broker::Broker;
use crate::capability::{CapabilityError, NatsPublisher};
use crate::codec;

/// Publishes plugin messages into a broker.
pub struct BrokerPublisher {
    broker: Arc<dyn Broker>,
}

impl BrokerPublisher {
    pub fn new(broker: Arc<dyn Broker>) -> BrokerPublisher {
        BrokerPublisher { broker }
    }
}

/// `headers` as a NATS header block, or none when there are none.
fn header_block(headers: &[(String, String)]) -> Option<Bytes> {
    if headers.is_empty() {
        return None;
    }
    let mut block = String::from("NATS/1.0\r\n");
    for (name, value) in headers {
        block.push_str(name);
        block.push_str(": ");
        block.push_str(value);
        block.push_str("\r\n");
    }
    block.push_str("\r\n");
    Some(Bytes::from(block))
}

#[async_trait]
impl NatsPublisher for BrokerPublisher {
    async fn publish(
        &self,
        subject: String,
        headers: Vec<(String, String)>,
        payload: Vec<u8>,
    ) -> Result<(), CapabilityError> {
        if let Some((name, _)) =
            headers.iter().find(|(n, v)| n.is_empty() || n.contains([':', '\r', '\n', ' ']) || v.contains(['\r', '\n']))
        {
            return Err(CapabilityError { message: format!("invalid header `{name}`"), retryable: false });
        }
        // Plugins publish in the global account: its `$A` and `$SYS` subjects are the router's own.
        if let Err(reserved) = crate::broker::account::check_global(&subject) {
            return Err(CapabilityError { message: format!("{subject}: {reserved}"), retryable: false });
        }
        let events = codec::nats::decode(subject.clone(), None, header_block(&headers), payload.into(), 0)
            .map_err(|err| CapabilityError { message: format!("{subject}: {err}"), retryable: false })?;
        for event in events {
            self.broker
                .publish(event)
                .await
                .map_err(|err| CapabilityError { message: format!("{subject}: {err}"), retryable: true })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Collect, EmbeddedBroker, Pattern};

    #[tokio::test]
    async fn binary_mode_headers_become_the_event_context() {
        let broker = Arc::new(EmbeddedBroker::new());
        let seen = Arc::new(Collect::default());
        broker.subscribe(Pattern::new("out.>").unwrap(), None, seen.clone());
        let publisher = BrokerPublisher::new(broker);
        let headers = [("ce-specversion", "1.0"), ("ce-id", "e1"), ("ce-source", "/p"), ("ce-type", "t")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()));
        publisher.publish("out.a".into(), headers.to_vec(), b"{}".to_vec()).await.unwrap();
        let events = seen.0.lock().unwrap().clone();
        assert_eq!((events[0].subject.as_str(), events[0].context.id.as_str()), ("out.a", "e1"));
        let bad = publisher.publish("out.b".into(), vec![("x\r\ny".into(), "1".into())], vec![]).await;
        assert!(bad.is_err());
        let invalid = publisher.publish("out..c".into(), vec![], vec![]).await.unwrap_err();
        assert!(!invalid.retryable, "{invalid}");
        for reserved in ["$A.USERS.orders", "$SYS.EVENTYARD.RELOAD"] {
            let refused = publisher.publish(reserved.into(), vec![], vec![]).await.unwrap_err();
            assert!(!refused.retryable && refused.message.contains(reserved), "{refused}");
        }
    }
}
