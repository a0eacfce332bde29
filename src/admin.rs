//! What the admin endpoints show and do for the running router: `/metrics` (every route, queue,
//! sink and plugin, and reloads), `GET /v1/admin/plugins` (each plugin's generation, hash, world,
//! limits and call statistics), `GET /v1/admin/snapshot` (every figure the console and
//! `eventyard top` show, in one document), `POST /v1/admin/reload`, and the dead letters: listed,
//! shown and replayed. Reads counters; changes nothing but through [`Reloader::reload`] and a
//! replay, which puts dead letters back on a sink's queue or through a route.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use std::sync::Arc;

use crate::broker::{Accepted, Broker};
use crate::dead_letter::{DeadLetter, DeadLetterStore, Replay, ReplayRequest, Selection};
use crate::event::EventJson;
use crate::gateway::GatewayStats;
use crate::ingest::http::{Admin, AdminRefusal};
use crate::pipeline::SinkView;
use crate::plugin::{CallStats, Plugin};
use crate::queue::MemoryBudget;
use crate::reload::{LivePlugin, ReloadReport, ReloadStats, Reloader, RolloutError, Trial};
use crate::route::{Route, RouteStats};
use crate::sink::worker::SinkStats;
use crate::source::SourceStats;
use crate::telemetry::metrics::{CallTimes, MetricsText};
use crate::unrouted::UnroutedEvents;

/// What the admin endpoints read: the reloadable parts and the gateway's and sources' counters.
pub struct RouterAdmin {
    pub reloader: Arc<Reloader>,
    pub gateway: Option<Arc<GatewayStats>>,
    pub sources: BTreeMap<String, Arc<SourceStats>>,
    /// What the write-ahead log held at start, in durable embedded mode.
    pub wal_recovery: Option<WalRecovery>,
    /// Where a replayed dead letter that failed neither at a sink nor at a route is published again.
    pub broker: Arc<dyn Broker>,
    /// The dead letters kept for the operator; none with `[dead_letters] keep_bytes = 0`.
    pub dead_letters: Option<Arc<DeadLetterStore>>,
    pub started: std::time::Instant,
}

/// What opening the write-ahead log found at start.
#[derive(Debug, Clone, Copy)]
pub struct WalRecovery {
    /// Events never marked done, replayed.
    pub pending: u64,
    /// Damaged tails cut off, and unreadable events skipped.
    pub skipped: u64,
    pub skipped_bytes: u64,
}

#[async_trait::async_trait]
impl Admin for RouterAdmin {
    fn metrics(&self) -> String {
        render_metrics(self)
    }

    fn plugins(&self) -> Value {
        json!({ "plugins": self.plugin_list() })
    }

    fn snapshot(&self) -> Value {
        self.figures()
    }

    fn dead_letters(&self, selection: &Selection, limit: usize) -> Option<Value> {
        let store = self.dead_letters.as_ref()?;
        let (letters, total) = store.list(selection, limit);
        let (held, bytes, max_bytes) = store.usage();
        Some(json!({
            "dead_letters": letters.iter().map(dead_letter_summary).collect::<Vec<_>>(),
            "total": total, "held": held, "bytes": bytes, "max_bytes": max_bytes,
        }))
    }

    fn dead_letter(&self, seq: u64) -> Option<Value> {
        let letter = self.dead_letters.as_ref()?.get(seq)?;
        let mut detail = dead_letter_summary(&letter);
        detail["event"] = json!(EventJson::from_event(&letter.event));
        Some(detail)
    }

    async fn replay(&self, request: ReplayRequest) -> Result<Value, String> {
        let store = self.dead_letters.as_ref().ok_or(crate::dead_letter::STORE_OFF)?;
        if let Some(route) = &request.route
            && !self.reloader.pipeline().routes().iter().any(|r| &r.name == route)
        {
            return Err(format!("there is no route `{route}`"));
        }
        let mut replayed = Vec::new();
        for letter in store.picked(&request)? {
            let (target, outcome) = self.replay_one(&letter, request.route.as_deref()).await;
            match &outcome {
                Ok(()) => {
                    tracing::info!(seq = letter.seq, id = %letter.event.context.id, %target, "dead letter replayed")
                }
                Err(why) => tracing::warn!(seq = letter.seq, %target, why, "dead letter not replayed"),
            }
            let replay = Replay { at: time::OffsetDateTime::now_utc(), target, outcome };
            replayed.push(replay_json(letter.seq, &replay));
            store.record(letter.seq, replay);
        }
        Ok(json!({ "replayed": replayed }))
    }

    async fn reload(&self) -> Vec<Value> {
        self.reloader.reload().await.iter().map(ReloadReport::to_json).collect()
    }

    fn rollout(&self, plugin: &str) -> Result<Value, AdminRefusal> {
        let (live, trial) = self.reloader.trial(plugin).map_err(|err| AdminRefusal::NotFound(err.to_string()))?;
        let mut rollout = rollout_json(&live, &trial);
        rollout["differences"] = json!(trial.rollout.differences());
        Ok(rollout)
    }

    async fn decide_rollout(&self, plugin: &str, promote: bool) -> Result<Value, AdminRefusal> {
        match self.reloader.decide(plugin, promote).await {
            Ok(report) => Ok(report.to_json()),
            Err(err @ RolloutError::NoPlugin(_)) => Err(AdminRefusal::NotFound(err.to_string())),
            Err(err @ RolloutError::NoRollout(_)) => Err(AdminRefusal::Conflict(err.to_string())),
        }
    }
}

impl RouterAdmin {
    /// Sends dead letter `letter` on as the event it was: through `route` when one is named, else
    /// back where it failed — its sink's queue, or its route — else published on its subject
    /// again. Returns where it went and how that went.
    async fn replay_one(&self, letter: &DeadLetter, route: Option<&str>) -> (String, Result<(), String>) {
        let pipeline = self.reloader.pipeline();
        let event = letter.original();
        let from = letter.from();
        if route.is_none()
            && let Some(sink) = pipeline.sinks().into_iter().find(|sink| sink.name == from)
        {
            let outcome = sink.queue.push(event).await.map_err(|refused| format!("refused: {refused}"));
            return (format!("sink:{from}"), outcome);
        }
        let name = route.unwrap_or(from);
        if let Some(through) = pipeline.routes().into_iter().find(|r| r.name == name) {
            let outcome = match crate::broker::Subscriber::deliver(&*through, &event).await {
                Ok(Accepted::Passed) => Err("the route let it by (its routing key or a handler)".to_owned()),
                Ok(_) => Ok(()),
                Err(refused) => Err(format!("refused: {refused}")),
            };
            return (format!("route:{name}"), outcome);
        }
        if route.is_some() {
            return (format!("route:{name}"), Err("no such route".into()));
        }
        let target = format!("subject:{}", event.subject);
        let outcome = match self.broker.publish(event).await {
            Ok(ack) if ack.delivered > 0 || ack.elsewhere => Ok(()),
            Ok(_) => Err("no route took it".into()),
            Err(err) => Err(err.to_string()),
        };
        (target, outcome)
    }

    fn plugin_list(&self) -> Vec<Value> {
        self.reloader
            .plugins()
            .iter()
            .map(|(name, live)| {
                let generation = live.current();
                let (plan, info, stats) = (&generation.plan, &generation.plugin.meta().info, generation.plugin.stats());
                let limits = &plan.limits;
                let call_times = stats.call_times.buckets();
                let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
                json!({
                    "name": name,
                    "world": info.world,
                    "wit_version": info.wit_version,
                    "generation": generation.number,
                    "sha256": info.sha256,
                    "size": info.size,
                    "signed_by": info.signed_by,
                    "file": plan.file,
                    "configured": plan.configured,
                    "failure_policy": plan.failure_policy,
                    "capabilities": info.capabilities.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "limits": {
                        "memory_limit": limits.memory_limit,
                        "timeout_ms": limits.timeout.as_millis() as u64,
                        "fuel": limits.fuel,
                        "max_instances": limits.max_instances,
                        "quarantine_after": limits.quarantine_after,
                    },
                    "rollout": live.trial().map(|trial| rollout_json(live, &trial)),
                    "stats": {
                        "calls": load(&stats.calls),
                        "errors": load(&stats.errors),
                        "faults": load(&stats.faults),
                        "quarantines": load(&stats.quarantines),
                        "instances": load(&stats.instances),
                        "replaced": load(&stats.replaced),
                        "busy_seconds": load(&stats.busy_nanos) as f64 / 1e9,
                        "p99_micros": CallTimes::quantile(&call_times, 0.99),
                        "call_micros_buckets": call_times,
                    },
                })
            })
            .collect()
    }

    /// Every figure the console and `eventyard top` show. Counters only: rates are the
    /// difference between two snapshots, so nothing is kept for them when nobody watches.
    fn figures(&self) -> Value {
        let pipeline = self.reloader.pipeline();
        let routes: Vec<Value> = pipeline
            .routes()
            .iter()
            .map(|route| {
                let s = &route.stats;
                json!({
                    "name": route.name, "subject": route.subject.as_str(),
                    "matched": load(&s.matched), "forwarded": load(&s.forwarded), "filtered": load(&s.filtered),
                    "handler_failures": load(&s.handler_failures), "failed_closed": load(&s.failed_closed),
                    "dead_lettered": load(&s.dead_lettered),
                })
            })
            .collect();
        let sinks: Vec<Value> = pipeline
            .sinks()
            .iter()
            .map(|sink| {
                let (s, q) = (&sink.stats, &sink.queue);
                let last_error = s.last_error().map(|(at, error)| json!({"at": at, "error": error}));
                json!({
                    "name": sink.name,
                    "queue": {
                        "depth": q.len(), "capacity": q.limits().map_or(0, |l| l.events), "bytes": q.held_bytes(),
                        "dropped": load(&q.stats.dropped_oldest) + load(&q.stats.dropped_newest),
                        "refused": load(&q.stats.refused),
                    },
                    "delivered": load(&s.delivered), "failed_attempts": load(&s.failed_attempts),
                    "dead_lettered": load(&s.dead_lettered), "last_error": last_error,
                })
            })
            .collect();
        let budget = pipeline.budget();
        let gateway = self.gateway.as_deref().map(|g| {
            json!({
                "connections": g.connections.load(Ordering::Relaxed), "in_msgs": load(&g.in_msgs),
                "out_msgs": load(&g.out_msgs), "in_bytes": load(&g.in_bytes), "out_bytes": load(&g.out_bytes),
                "slow_consumers": load(&g.slow_consumers), "refused_publishes": load(&g.refused_publishes),
            })
        });
        let dead_letters = self.dead_letters.as_deref().map(|store| {
            let (held, bytes, max_bytes) = store.usage();
            let s = &store.stats;
            json!({
                "held": held, "bytes": bytes, "max_bytes": max_bytes, "kept": load(&s.kept),
                "evicted": load(&s.evicted), "replayed": load(&s.replayed), "replay_failures": load(&s.replay_failures),
            })
        });
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "routes": routes,
            "sinks": sinks,
            "queues": {"bytes": budget.used(), "capacity_bytes": budget.limit()},
            "plugins": self.plugin_list(),
            "reloads": self.reloader.history(),
            "gateway": gateway,
            "dead_letters": dead_letters,
            "unrouted": self.reloader.unrouted.counts().iter().map(|(_, count)| count).sum::<u64>(),
        })
    }
}

/// A dead letter as listings show it.
fn dead_letter_summary(letter: &DeadLetter) -> Value {
    let at = letter.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    json!({
        "seq": letter.seq, "at": at, "account": letter.account, "from": letter.from(),
        "reason": letter.reason(), "attempts": letter.attempts(), "subject": letter.subject(),
        "id": letter.event.context.id, "type": letter.event.context.ty, "source": letter.event.context.source,
        "size": letter.event.data.len(),
        "replays": letter.replays.iter().map(|replay| replay_json(letter.seq, replay)).collect::<Vec<_>>(),
    })
}

fn replay_json(seq: u64, replay: &Replay) -> Value {
    let at = replay.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut json = json!({"seq": seq, "at": at, "target": replay.target});
    match &replay.outcome {
        Ok(()) => json["outcome"] = json!("queued"),
        Err(why) => json["error"] = json!(why),
    }
    json
}

/// The Prometheus text of every route, queue, sink and plugin, of reloads, and of the gateway,
/// sources and write-ahead log where the router has them: one function a family.
fn render_metrics(admin: &RouterAdmin) -> String {
    let reloader = &admin.reloader;
    let mut text = MetricsText::default();
    let (routes, sinks) = (reloader.pipeline().routes(), reloader.pipeline().sinks());
    route_metrics(&mut text, &routes);
    queue_metrics(&mut text, &sinks, reloader.pipeline().budget());
    sink_metrics(&mut text, &sinks);
    let plugins: Vec<(String, Plugin)> =
        reloader.plugins().iter().map(|(name, live)| (name.clone(), live.current().plugin)).collect();
    plugin_metrics(&mut text, &plugins);
    reload_metrics(&mut text, &reloader.stats);
    if let Some(gateway) = admin.gateway.as_deref() {
        gateway_metrics(&mut text, gateway);
    }
    if !admin.sources.is_empty() {
        source_metrics(&mut text, &admin.sources);
    }
    if let Some(recovery) = admin.wal_recovery {
        wal_metrics(&mut text, recovery);
    }
    unrouted_metrics(&mut text, &reloader.unrouted);
    if let Some(store) = admin.dead_letters.as_deref() {
        dead_letter_metrics(&mut text, store);
    }
    text.finish()
}

fn unrouted_metrics(text: &mut MetricsText, unrouted: &UnroutedEvents) {
    let counts = unrouted.counts();
    text.counter(
        "eventyard_unrouted_events_total",
        "Events no route took, by subject family (the subject's first token).",
        counts.iter().map(|(family, count)| (vec![("family", family.as_str())], *count)),
    );
    text.counter(
        "eventyard_unrouted_dead_letters_lost_total",
        "Dead letters of unrouted events that no route took either.",
        [(Vec::new(), load(&unrouted.dead_letters_lost))],
    );
}

fn dead_letter_metrics(text: &mut MetricsText, store: &DeadLetterStore) {
    let (held, bytes, _) = store.usage();
    text.gauge(
        "eventyard_dead_letters_held",
        "Dead letters the router keeps to browse and replay.",
        [(Vec::new(), held as u64)],
    );
    text.gauge("eventyard_dead_letters_held_bytes", "Bytes of the dead letters kept.", [(Vec::new(), bytes as u64)]);
    let s = &store.stats;
    text.counter(
        "eventyard_dead_letters_evicted_total",
        "Dead letters pushed out of the store by newer ones ([dead_letters] keep_bytes).",
        [(Vec::new(), load(&s.evicted))],
    );
    text.counter(
        "eventyard_dead_letters_replayed_total",
        "Dead letter replays, by result.",
        [(vec![("result", "queued")], load(&s.replayed)), (vec![("result", "failed")], load(&s.replay_failures))],
    );
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn route_metrics(text: &mut MetricsText, routes: &[Arc<Route>]) {
    let route_counter = |text: &mut MetricsText, name: &str, help: &str, pick: fn(&RouteStats) -> &AtomicU64| {
        text.counter(name, help, routes.iter().map(|r| (vec![("route", r.name.as_str())], load(pick(&r.stats)))));
    };
    route_counter(text, "eventyard_route_matched_total", "Events that matched the route.", |s| &s.matched);
    route_counter(text, "eventyard_route_forwarded_total", "Events put on the route's sink queues.", |s| &s.forwarded);
    route_counter(text, "eventyard_route_filtered_total", "Events a handler dropped.", |s| &s.filtered);
    route_counter(text, "eventyard_route_handler_failures_total", "Handler errors, traps and timeouts.", |s| {
        &s.handler_failures
    });
    route_counter(text, "eventyard_route_failed_closed_total", "Events dropped by fail_closed.", |s| &s.failed_closed);
    route_counter(text, "eventyard_route_dead_lettered_total", "Events dead-lettered by a handler policy.", |s| {
        &s.dead_lettered
    });
}

fn queue_metrics(text: &mut MetricsText, sinks: &[SinkView], budget: &MemoryBudget) {
    text.gauge(
        "eventyard_queue_depth_events",
        "Events waiting in a sink queue.",
        sinks.iter().map(|s| (vec![("sink", s.name.as_str())], s.queue.len() as u64)),
    );
    text.gauge(
        "eventyard_queue_capacity_events",
        "Bound of a sink queue.",
        sinks.iter().map(|s| (vec![("sink", s.name.as_str())], s.queue.limits().map_or(0, |l| l.events) as u64)),
    );
    text.gauge(
        "eventyard_queue_bytes",
        "Bytes a sink queue holds: events waiting and being delivered.",
        sinks.iter().map(|s| (vec![("sink", s.name.as_str())], s.queue.held_bytes() as u64)),
    );
    text.gauge(
        "eventyard_queues_bytes",
        "Bytes every sink queue holds together.",
        [(Vec::new(), budget.used() as u64)],
    );
    text.gauge(
        "eventyard_queues_capacity_bytes",
        "Bound of what every sink queue holds together ([service] queue_bytes).",
        [(Vec::new(), budget.limit() as u64)],
    );
    text.counter(
        "eventyard_queue_dropped_total",
        "Events dropped by a full queue's policy.",
        sinks.iter().flat_map(|s| {
            let (name, stats) = (s.name.as_str(), &s.queue.stats);
            [
                (vec![("sink", name), ("policy", "drop_oldest")], load(&stats.dropped_oldest)),
                (vec![("sink", name), ("policy", "drop_newest")], load(&stats.dropped_newest)),
            ]
        }),
    );
    text.counter(
        "eventyard_queue_refused_total",
        "Events refused by a full queue.",
        sinks.iter().map(|s| (vec![("sink", s.name.as_str())], load(&s.queue.stats.refused))),
    );
}

fn sink_metrics(text: &mut MetricsText, sinks: &[SinkView]) {
    let sink_counter = |text: &mut MetricsText, name: &str, help: &str, pick: fn(&SinkStats) -> &AtomicU64| {
        text.counter(name, help, sinks.iter().map(|s| (vec![("sink", s.name.as_str())], load(pick(&s.stats)))));
    };
    sink_counter(text, "eventyard_sink_delivered_total", "Events delivered.", |s| &s.delivered);
    sink_counter(text, "eventyard_sink_failed_attempts_total", "Delivery attempts that failed.", |s| {
        &s.failed_attempts
    });
    sink_counter(text, "eventyard_sink_dead_lettered_total", "Events dead-lettered.", |s| &s.dead_lettered);
    sink_counter(text, "eventyard_sink_dead_letters_lost_total", "Dead letters no route took.", |s| {
        &s.dead_letters_lost
    });
    text.histogram(
        "eventyard_sink_delivery_seconds",
        "Time per delivery attempt.",
        sinks.iter().map(|s| (vec![("sink", s.name.as_str())], &s.stats.delivery_seconds)),
    );
}

fn plugin_metrics(text: &mut MetricsText, plugins: &[(String, Plugin)]) {
    let plugin_counter = |text: &mut MetricsText, name: &str, help: &str, pick: fn(&CallStats) -> &AtomicU64| {
        text.counter(name, help, plugins.iter().map(|(n, p)| (vec![("plugin", n.as_str())], load(pick(p.stats())))));
    };
    plugin_counter(text, "eventyard_plugin_calls_total", "Calls into the plugin.", |s| &s.calls);
    plugin_counter(text, "eventyard_plugin_errors_total", "Calls the plugin answered with an error.", |s| &s.errors);
    plugin_counter(text, "eventyard_plugin_faults_total", "Calls that trapped, timed out or ran out of memory.", |s| {
        &s.faults
    });
    plugin_counter(text, "eventyard_plugin_quarantines_total", "Times the plugin was quarantined.", |s| &s.quarantines);
    plugin_counter(
        text,
        "eventyard_plugin_instances_replaced_total",
        "Instances replaced between calls because their memory had grown near the cap.",
        |s| &s.replaced,
    );
}

/// A running rollout: the candidate, its settings and the figures so far.
fn rollout_json(live: &LivePlugin, trial: &Trial) -> Value {
    let settings = trial.rollout.settings();
    let rules = &settings.rules;
    json!({
        "stable_generation": live.current().number,
        "candidate_sha256": trial.plugin.meta().info.sha256,
        "candidate_file": trial.plan.file,
        "automatic": settings.automatic,
        "rules": {
            "min_events": rules.min_events,
            "min_duration_ms": rules.min_duration.as_millis() as u64,
            "max_error_rate": rules.max_error_rate,
            "max_fault_rate": rules.max_fault_rate,
            "max_p99_ms": rules.max_p99.map(|max| max.as_millis() as u64),
            "max_p99_ratio": rules.max_p99_ratio,
            "max_difference_rate": rules.max_difference_rate,
        },
        "figures": trial.rollout.figures(),
    })
}

fn reload_metrics(text: &mut MetricsText, stats: &ReloadStats) {
    text.counter(
        "eventyard_reloads_total",
        "Reloads of plugins and of the config, by result, and rollout steps.",
        [
            (vec![("kind", "plugin"), ("result", "ok")], load(&stats.plugins_ok)),
            (vec![("kind", "plugin"), ("result", "failed")], load(&stats.plugins_failed)),
            (vec![("kind", "config"), ("result", "ok")], load(&stats.configs_ok)),
            (vec![("kind", "config"), ("result", "failed")], load(&stats.configs_failed)),
            (vec![("kind", "rollout"), ("result", "started")], load(&stats.rollouts_started)),
            (vec![("kind", "rollout"), ("result", "promoted")], load(&stats.rollouts_promoted)),
            (vec![("kind", "rollout"), ("result", "rolled_back")], load(&stats.rollouts_rolled_back)),
        ],
    );
}

fn gateway_metrics(text: &mut MetricsText, gateway: &GatewayStats) {
    let gauge = |text: &mut MetricsText, name: &str, help: &str, value: usize| {
        text.gauge(name, help, [(Vec::new(), value as u64)]);
    };
    let counter = |text: &mut MetricsText, name: &str, help: &str, value: &AtomicU64| {
        text.counter(name, help, [(Vec::new(), load(value))]);
    };
    gauge(
        text,
        "eventyard_gateway_connections",
        "NATS clients connected.",
        gateway.connections.load(Ordering::Relaxed),
    );
    counter(text, "eventyard_gateway_connections_total", "NATS clients accepted.", &gateway.total_connections);
    counter(
        text,
        "eventyard_gateway_refused_connections_total",
        "NATS clients over the limit.",
        &gateway.refused_connections,
    );
    counter(text, "eventyard_gateway_in_messages_total", "Messages NATS clients published.", &gateway.in_msgs);
    counter(text, "eventyard_gateway_in_bytes_total", "Payload bytes NATS clients published.", &gateway.in_bytes);
    counter(text, "eventyard_gateway_out_messages_total", "Messages sent to NATS subscribers.", &gateway.out_msgs);
    counter(text, "eventyard_gateway_out_bytes_total", "Payload bytes sent to NATS subscribers.", &gateway.out_bytes);
    counter(
        text,
        "eventyard_gateway_slow_consumers_total",
        "NATS clients cut off as slow consumers.",
        &gateway.slow_consumers,
    );
    counter(
        text,
        "eventyard_gateway_refused_publishes_total",
        "NATS publishes a queue refused.",
        &gateway.refused_publishes,
    );
    counter(
        text,
        "eventyard_gateway_slowed_publishes_total",
        "Times a full queue made the gateway hold a NATS publisher until it took the events.",
        &gateway.slowed_publishes,
    );
    counter(
        text,
        "eventyard_gateway_malformed_publishes_total",
        "NATS publishes that were not valid events (dead-lettered on $DLQ.gateway).",
        &gateway.malformed_publishes,
    );
    counter(
        text,
        "eventyard_gateway_dead_letters_lost_total",
        "Dead letters of malformed NATS publishes that no route took.",
        &gateway.dead_letters_lost,
    );
}

fn source_metrics(text: &mut MetricsText, sources: &BTreeMap<String, Arc<SourceStats>>) {
    let per_source = |text: &mut MetricsText, name: &str, help: &str, value: fn(&SourceStats) -> &AtomicU64| {
        text.counter(
            name,
            help,
            sources.iter().map(|(source, stats)| (vec![("source", source.as_str())], load(value(stats)))),
        );
    };
    per_source(text, "eventyard_source_events_total", "Events a source published.", |s| &s.received);
    per_source(text, "eventyard_source_malformed_total", "Source messages dead-lettered as no event.", |s| {
        &s.malformed
    });
    per_source(text, "eventyard_source_refused_total", "Source events a queue refused.", |s| &s.refused);
    per_source(
        text,
        "eventyard_source_dead_letters_lost_total",
        "Dead letters of malformed source messages that no route took.",
        |s| &s.dead_letters_lost,
    );
}

fn wal_metrics(text: &mut MetricsText, recovery: WalRecovery) {
    text.gauge(
        "eventyard_wal_recovered_events",
        "Events the write-ahead log held at start, never marked done.",
        [(Vec::new(), recovery.pending)],
    );
    text.gauge(
        "eventyard_wal_recovery_skipped",
        "Damaged log tails cut off and unreadable events skipped at start (each logged with its segment and offset).",
        [(Vec::new(), recovery.skipped)],
    );
    text.gauge(
        "eventyard_wal_recovery_skipped_bytes",
        "Bytes of the write-ahead log skipped at start.",
        [(Vec::new(), recovery.skipped_bytes)],
    );
}
