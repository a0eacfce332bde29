//! [`Route`]: one `[[route]]` of the config at run time, a broker [`Subscriber`]. For each event on
//! its subject (and routing key, when it filters on one) it runs the handler chain, applying each
//! handler's failure policy, then puts every resulting event on every sink's queue. It returns only
//! once all of them are queued, so the publisher's acknowledgement means "on every queue".
//! It never delivers or retries: sink workers do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{Disposition, FailurePolicy, Handler, HandlerError};
use crate::broker::{Accepted, Broker, Pattern, Refusal, Subscriber};
use crate::dead_letter;
use crate::event::Event;
use crate::queue::SinkQueue;

/// One handler of a chain, with what to do when it fails.
#[derive(Clone)]
pub struct ChainStep {
    pub name: String,
    pub handler: Arc<dyn Handler>,
    pub policy: FailurePolicy,
}

/// Routing keys a route takes: globs where `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFilter(Vec<String>);

impl KeyFilter {
    pub fn new(globs: Vec<String>) -> Self {
        KeyFilter(globs)
    }

    /// True when `key` matches one glob. An event without a routing key matches none.
    pub fn matches(&self, key: Option<&str>) -> bool {
        key.is_some_and(|key| self.0.iter().any(|glob| glob_matches(glob, key)))
    }
}

fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let Some(first) = parts.next() else { return text.is_empty() };
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Counters of one route.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Events that matched the route (subject and routing key).
    pub matched: AtomicU64,
    /// Events put on sink queues (after fan-out; counted once per event, not per sink).
    pub forwarded: AtomicU64,
    /// Events a handler chose to drop.
    pub filtered: AtomicU64,
    /// Handler failures (errors, traps, timeouts), whatever the policy did next.
    pub handler_failures: AtomicU64,
    /// Events dropped by a `fail_closed` policy.
    pub failed_closed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dead_letters_lost: AtomicU64,
}

/// A route at run time.
pub struct Route {
    pub name: String,
    pub subject: Pattern,
    pub routing_key: Option<KeyFilter>,
    pub chain: Vec<ChainStep>,
    pub sinks: Vec<Arc<SinkQueue>>,
    /// Where handler failures under `dead_letter` go.
    pub broker: Arc<dyn Broker>,
    /// Shared with the route that replaces this one on a config reload, so counters carry on.
    pub stats: Arc<RouteStats>,
}

impl Route {
    /// Runs the chain on `event`; returns what goes on to the sinks.
    async fn run_chain(&self, event: Event) -> Vec<Event> {
        let mut current = vec![event];
        for step in &self.chain {
            let mut next = Vec::with_capacity(current.len());
            for event in current {
                let input = step.policy.needs_input().then(|| event.clone());
                // An input on a `$` subject may keep its first token (a route of `$DLQ.>` or of
                // reload reports); no allocation for the others.
                let own = event.subject.starts_with('$').then(|| first_token(&event.subject).to_owned());
                let result = step.handler.handle(event).await.and_then(|outputs| {
                    match outputs.iter().find_map(|output| check_output(own.as_deref(), output).err()) {
                        None => Ok(outputs),
                        Some(message) => Err(HandlerError::Rejected { message, retryable: false }),
                    }
                });
                if result.is_err() {
                    self.stats.handler_failures.fetch_add(1, Ordering::Relaxed);
                }
                match step.policy.apply(input, result) {
                    Disposition::Forward(events) if events.is_empty() => {
                        self.stats.filtered.fetch_add(1, Ordering::Relaxed);
                    }
                    Disposition::Forward(events) => next.extend(events),
                    Disposition::Drop { reason } => {
                        self.stats.failed_closed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(route = %self.name, handler = %step.name, reason, "handler failed, event dropped");
                    }
                    Disposition::DeadLetter { event, reason } => {
                        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        let reason = format!("handler `{}`: {reason}", step.name);
                        let lost = &self.stats.dead_letters_lost;
                        dead_letter::publish(self.broker.as_ref(), *event, &self.name, &reason, 1, lost).await;
                    }
                }
            }
            if next.is_empty() {
                return next;
            }
            current = next;
        }
        current
    }
}

/// Checks an event a handler made as a client's publish is checked: a valid subject in the route's
/// account (no `$A` or `$SYS` subject unless the input's subject had that first token too), and
/// no control characters in any attribute (the CloudEvents spec forbids them; a sink would write
/// them into headers and paths). `own` is the input subject's first token when it starts with `$`.
fn check_output(own: Option<&str>, output: &Event) -> Result<(), String> {
    let subject = &output.subject;
    if let Err(err) = crate::broker::Subject::new(subject.as_str()) {
        return Err(format!("emitted an event with an {err}"));
    }
    if own != Some(first_token(subject))
        && let Err(reserved) = crate::broker::account::check_global(subject)
    {
        return Err(format!("emitted an event on \"{subject}\": {reserved}"));
    }
    let context = &output.context;
    let optional = [&context.subject, &context.time, &context.datacontenttype, &context.dataschema];
    let texts = [subject, &context.id, &context.source, &context.ty, &context.specversion]
        .into_iter()
        .chain(optional.into_iter().flatten())
        .chain(output.extensions.iter().flat_map(|(name, value)| [name, value]));
    for text in texts {
        if text.chars().any(char::is_control) {
            return Err(format!("emitted an event with a control character in {text:?}"));
        }
    }
    Ok(())
}

fn first_token(subject: &str) -> &str {
    subject.split('.').next().unwrap_or_default()
}

#[async_trait]
impl Subscriber for Route {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        if let Some(filter) = &self.routing_key
            && !filter.matches(event.extension("routingkey"))
        {
            return Ok(Accepted::Passed);
        }
        self.stats.matched.fetch_add(1, Ordering::Relaxed);
        let outputs = if self.chain.is_empty() { vec![event.clone()] } else { self.run_chain(event.clone()).await };
        let accepted = if outputs.is_empty() { Accepted::Passed } else { Accepted::Routed };
        for mut output in outputs {
            // What a handler made of the event finishes it as the event itself would.
            if output.completion.is_none() {
                output.completion.clone_from(&event.completion);
            }
            if let Some((last, others)) = self.sinks.split_last() {
                for sink in others {
                    sink.push(output.clone()).await?;
                }
                last.push(output).await?;
            }
            self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        }
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::broker::EmbeddedBroker;
    use crate::event::EventJson;
    use crate::fault::Fault;
    use crate::queue::{MemoryBudget, OverflowPolicy, QueueLimits};
    use crate::route::HandlerError;

    #[test]
    fn globs_match_routing_keys() {
        assert!(glob_matches("node-*", "node-1"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*b*c", "a-x-b-y-c"));
        assert!(!glob_matches("a*b*c", "a-x-c"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(!glob_matches("*x", ""));
        assert!(!KeyFilter::new(vec!["*".into()]).matches(None));
    }

    /// Doubles events of type "split", fails on "bad", passes the rest.
    struct Splitter;

    #[async_trait]
    impl Handler for Splitter {
        async fn handle(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
            match event.context.ty.as_str() {
                "split" => Ok(vec![event.clone(), event]),
                "bad" => Err(HandlerError::Fault(Fault::Trap("boom".into()))),
                "drop" => Ok(vec![]),
                // A new event, as a Wasm handler's output is: it carries no completion of its own.
                "fresh" => Ok(vec![tests::event("made", None)]),
                // Outputs a handler may not make.
                "escape" => Ok(vec![Event { subject: "$A.OTHER.orders".into(), ..event }]),
                "forge" => Ok(vec![Event { subject: "$SYS.EVENTYARD.RELOAD".into(), ..event }]),
                "inject" => {
                    let mut event = event;
                    event.context.ty = "x\r\nce-id: forged".into();
                    Ok(vec![event])
                }
                _ => Ok(vec![event]),
            }
        }
    }

    fn event(ty: &str, key: Option<&str>) -> Event {
        let mut json = serde_json::json!({"subject": "orders.x", "type": ty});
        if let Some(key) = key {
            json["extensions"] = serde_json::json!([["routingkey", key]]);
        }
        serde_json::from_value::<EventJson>(json).unwrap().into_event(|| "id".into()).unwrap()
    }

    fn route(policy: FailurePolicy, broker: Arc<dyn Broker>, sinks: Vec<Arc<SinkQueue>>) -> Route {
        Route {
            name: "r".into(),
            subject: Pattern::new("orders.>").unwrap(),
            routing_key: Some(KeyFilter::new(vec!["node-*".into()])),
            chain: vec![ChainStep { name: "splitter".into(), handler: Arc::new(Splitter), policy }],
            sinks,
            broker,
            stats: Default::default(),
        }
    }

    fn queue(name: &str) -> Arc<SinkQueue> {
        Arc::new(SinkQueue::new(
            name,
            QueueLimits::events(100, OverflowPolicy::Reject, Duration::ZERO),
            MemoryBudget::unbounded(),
        ))
    }

    #[tokio::test]
    async fn chain_output_fans_out_to_every_sink() {
        let (a, b) = (queue("a"), queue("b"));
        let route = route(FailurePolicy::FailClosed, Arc::new(EmbeddedBroker::new()), vec![a.clone(), b.clone()]);
        route.deliver(&event("split", Some("node-1"))).await.unwrap();
        route.deliver(&event("plain", Some("node-2"))).await.unwrap();
        route.deliver(&event("plain", Some("other"))).await.unwrap();
        route.deliver(&event("plain", None)).await.unwrap();
        route.deliver(&event("drop", Some("node-1"))).await.unwrap();
        route.deliver(&event("bad", Some("node-1"))).await.unwrap();
        assert_eq!((a.len(), b.len()), (3, 3));
        assert_eq!(route.stats.matched.load(Ordering::Relaxed), 4);
        assert_eq!(route.stats.filtered.load(Ordering::Relaxed), 1);
        assert_eq!(route.stats.failed_closed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn what_a_handler_made_of_an_event_completes_it() {
        use crate::completion::{Completion, Outcome};
        let (a, b) = (queue("a"), queue("b"));
        let route = route(FailurePolicy::FailClosed, Arc::new(EmbeddedBroker::new()), vec![a.clone(), b.clone()]);
        let (completion, mut outcome) = Completion::new();
        let mut input = event("fresh", Some("node-1"));
        input.completion = Some(completion);
        route.deliver(&input).await.unwrap();
        drop(input);
        let from_a = a.pop_batch(1, usize::MAX, Duration::ZERO).await.unwrap();
        assert_eq!(from_a[0].context.ty, "made");
        drop(from_a);
        assert!(outcome.try_recv().is_err(), "the copy for sink b is not done yet");
        drop(b.pop_batch(1, usize::MAX, Duration::ZERO).await.unwrap());
        assert_eq!(outcome.try_recv(), Ok(Outcome::Done));
    }

    #[tokio::test]
    async fn failure_policies_pass_or_dead_letter_the_failed_event() {
        let open_sink = queue("open");
        let open = route(FailurePolicy::FailOpen, Arc::new(EmbeddedBroker::new()), vec![open_sink.clone()]);
        open.deliver(&event("bad", Some("node-1"))).await.unwrap();
        assert_eq!(open_sink.len(), 1, "fail_open passes the event on unchanged");

        let broker = Arc::new(EmbeddedBroker::new());
        let dead = queue("dead");
        let dead_route = Route {
            name: "dlq".into(),
            subject: Pattern::new("$DLQ.>").unwrap(),
            routing_key: None,
            chain: vec![],
            sinks: vec![dead.clone()],
            broker: broker.clone(),
            stats: Default::default(),
        };
        broker.subscribe(dead_route.subject.clone(), None, Arc::new(dead_route));
        let letter = route(FailurePolicy::DeadLetter, broker, vec![queue("x")]);
        letter.deliver(&event("bad", Some("node-1"))).await.unwrap();
        let got = dead.pop_batch(10, usize::MAX, Duration::ZERO).await.unwrap();
        assert_eq!(got[0].subject, "$DLQ.r");
        assert!(got[0].extension("deadletterreason").unwrap().contains("handler `splitter`"));
    }

    #[tokio::test]
    async fn a_handler_output_is_checked_like_a_clients_publish() {
        let sink = queue("s");
        let route = route(FailurePolicy::FailOpen, Arc::new(EmbeddedBroker::new()), vec![sink.clone()]);
        for ty in ["escape", "forge", "inject"] {
            route.deliver(&event(ty, Some("node-1"))).await.unwrap();
        }
        assert_eq!(route.stats.handler_failures.load(Ordering::Relaxed), 3);
        let passed = sink.pop_batch(10, usize::MAX, Duration::ZERO).await.unwrap();
        assert_eq!(passed.len(), 3, "fail_open passes each input on as it came");
        assert!(passed.iter().all(|event| event.subject == "orders.x"));
        let own = Event { subject: "$DLQ.orders".into(), ..event("plain", Some("node-1")) };
        assert!(check_output(Some("$DLQ"), &own).is_ok(), "a `$DLQ` input may stay a `$DLQ` output");
    }

    #[tokio::test]
    async fn a_full_sink_refuses_the_event() {
        let tiny = Arc::new(SinkQueue::new(
            "tiny",
            QueueLimits::events(1, OverflowPolicy::Reject, Duration::ZERO),
            MemoryBudget::unbounded(),
        ));
        let route = route(FailurePolicy::FailClosed, Arc::new(EmbeddedBroker::new()), vec![tiny]);
        route.deliver(&event("plain", Some("node-1"))).await.unwrap();
        assert!(matches!(route.deliver(&event("plain", Some("node-1"))).await, Err(Refusal::Full { .. })));
    }
}
