//! [`Rollout`]: a new version of a handler (the candidate) running beside the version that serves
//! (the stable), as one handler that a plugin's slot holds while the rollout lasts.
//!
//! - `canary`: each event meets exactly one version: a share of them the candidate, by turns or by
//!   the hash of a key attribute (so each key always meets the same version). An event the
//!   candidate fails on is handed to the stable version, whose answer counts: a failing candidate
//!   costs time, never an event.
//! - `shadow`: the stable version answers every event; the candidate answers a copy, off the
//!   event's path, within a byte budget. The two answers are compared and the candidate's is
//!   thrown away; differences are counted and the latest kept for inspection.
//!
//! It counts each version's answers, errors, faults and call times since the rollout began, and
//! says what the rules make of them ([`RolloutFigures::verdict`]). It never promotes or rolls
//! back: whoever holds the plugin's slot does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Handler, HandlerError};
use crate::event::Event;
use crate::telemetry::metrics::CallTimes;

/// How a candidate meets the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutMode {
    /// The candidate serves a share of the events.
    Canary,
    /// The candidate answers copies of every event; only the stable version's answers count.
    Shadow,
}

/// How a rollout runs and when it ends, as `[plugin.NAME.rollout]` says.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSettings {
    pub mode: RolloutMode,
    /// Percent of the events the candidate serves (canary).
    pub share: u8,
    /// Split by this attribute (a CloudEvents name, else an extension): each value always meets
    /// the same version; events without it meet the stable version.
    pub key: Option<String>,
    /// Promote or roll back as the rules say; otherwise only an operator does.
    pub automatic: bool,
    pub rules: RolloutRules,
}

/// What a candidate must show before a decision, and what it must not exceed.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRules {
    /// Events the candidate must have answered.
    pub min_events: u64,
    /// Time the rollout must have run.
    pub min_duration: Duration,
    /// Share of events the candidate may answer with an error beyond the stable's share.
    pub max_error_rate: f64,
    /// Share of events the candidate may fault on (trap, timeout, memory, fuel).
    pub max_fault_rate: f64,
    /// The candidate's p99 call time may not exceed this.
    pub max_p99: Option<Duration>,
    /// The candidate's p99 call time may not exceed the stable's times this.
    pub max_p99_ratio: Option<f64>,
    /// Share of compared events whose answers may differ (shadow).
    pub max_difference_rate: f64,
}

impl Default for RolloutRules {
    fn default() -> Self {
        RolloutRules {
            min_events: 1000,
            min_duration: Duration::from_secs(60),
            max_error_rate: 0.01,
            max_fault_rate: 0.001,
            max_p99: None,
            max_p99_ratio: None,
            max_difference_rate: 0.0,
        }
    }
}

/// Bytes of events a shadow may hold in copies at once; beyond it, events go uncompared (counted).
const SHADOW_BYTES: usize = 16 << 20;

/// Copies that may wait for a shadow's candidate, whatever their bytes.
const SHADOW_WAITING: usize = 8192;

/// Copies a shadow's candidate answers in one call at most.
const SHADOW_BATCH: usize = 64;

/// Differences kept for inspection, newest last.
const SAMPLES: usize = 20;

/// Payload bytes a kept difference shows of each event.
const SAMPLE_DATA: usize = 512;

/// One version's answers since the rollout began.
#[derive(Debug, Default)]
struct VersionCounts {
    events: AtomicU64,
    errors: AtomicU64,
    faults: AtomicU64,
    times: CallTimes,
}

impl VersionCounts {
    /// Runs `call`, counting its answer and its time.
    async fn timed(
        &self,
        call: impl Future<Output = Result<Vec<Event>, HandlerError>>,
    ) -> Result<Vec<Event>, HandlerError> {
        let began = Instant::now();
        let result = call.await;
        self.times.record(began.elapsed());
        self.count(&result);
        result
    }

    fn count(&self, result: &Result<Vec<Event>, HandlerError>) {
        self.events.fetch_add(1, Ordering::Relaxed);
        match result {
            Err(HandlerError::Rejected { .. }) => self.errors.fetch_add(1, Ordering::Relaxed),
            Err(HandlerError::Fault(_)) => self.faults.fetch_add(1, Ordering::Relaxed),
            Ok(_) => 0,
        };
    }

    fn figures(&self) -> VersionFigures {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (events, errors, faults) = (load(&self.events), load(&self.errors), load(&self.faults));
        let rate = |count: u64| if events == 0 { 0.0 } else { count as f64 / events as f64 };
        VersionFigures {
            events,
            errors,
            faults,
            error_rate: rate(errors),
            fault_rate: rate(faults),
            p99_micros: CallTimes::quantile(&self.times.buckets(), 0.99),
        }
    }
}

/// What the shadow has compared.
#[derive(Debug, Default)]
struct ShadowCounts {
    compared: AtomicU64,
    differences: AtomicU64,
    /// Events not compared: the copies waiting held [`SHADOW_BYTES`] or numbered [`SHADOW_WAITING`].
    skipped: AtomicU64,
    in_flight_bytes: AtomicUsize,
    samples: Mutex<VecDeque<Difference>>,
}

/// The candidate and what is counted of it.
struct Candidate {
    handler: Arc<dyn Handler>,
    counts: VersionCounts,
    shadow: ShadowCounts,
}

/// An event for the shadow's candidate, with the stable version's answer to it.
struct ShadowCopy {
    input: Event,
    stable: Result<Vec<Event>, HandlerError>,
    /// Bytes counted against [`SHADOW_BYTES`] until it is compared.
    reserved: usize,
}

/// A candidate beside the stable version of one handler.
pub struct Rollout {
    settings: RolloutSettings,
    stable: Arc<dyn Handler>,
    stable_counts: VersionCounts,
    candidate: Arc<Candidate>,
    /// Shadow: where copies wait for the candidate (the task answering them ends with the rollout).
    copies: Option<tokio::sync::mpsc::Sender<ShadowCopy>>,
    /// Canary events split by turns so far.
    turns: AtomicU64,
    /// Canary events the candidate failed that the stable version then answered.
    fallbacks: AtomicU64,
    started: Instant,
}

impl Rollout {
    /// A rollout of `candidate` beside `stable`; a shadow's task starts on the current runtime.
    pub fn new(settings: RolloutSettings, stable: Arc<dyn Handler>, candidate: Arc<dyn Handler>) -> Self {
        let candidate = Arc::new(Candidate {
            handler: candidate,
            counts: VersionCounts::default(),
            shadow: ShadowCounts::default(),
        });
        let copies = (settings.mode == RolloutMode::Shadow).then(|| {
            let (copies, waiting) = tokio::sync::mpsc::channel(SHADOW_WAITING);
            tokio::spawn(candidate.clone().answer_copies(waiting));
            copies
        });
        Rollout {
            settings,
            stable,
            stable_counts: VersionCounts::default(),
            candidate,
            copies,
            turns: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    pub fn settings(&self) -> &RolloutSettings {
        &self.settings
    }

    /// The stable version, which serves again when the rollout ends without a promotion.
    pub fn stable(&self) -> &Arc<dyn Handler> {
        &self.stable
    }

    /// Whether the candidate serves `event` (canary).
    fn meets_candidate(&self, event: &Event) -> bool {
        let share = u64::from(self.settings.share.min(100));
        match &self.settings.key {
            Some(key) => event.attribute(key).is_some_and(|value| key_bucket(value) < share),
            // Spread evenly: the candidate's count goes up by one each time `share` percent of
            // the turns so far passes a whole number.
            None => {
                let turn = self.turns.fetch_add(1, Ordering::Relaxed);
                (turn + 1) * share / 100 > turn * share / 100
            }
        }
    }

    /// Everything counted so far.
    pub fn figures(&self) -> RolloutFigures {
        let shadow = &self.candidate.shadow;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (compared, differences) = (load(&shadow.compared), load(&shadow.differences));
        RolloutFigures {
            mode: self.settings.mode,
            share: self.settings.share,
            key: self.settings.key.clone(),
            seconds: self.started.elapsed().as_secs_f64(),
            stable: self.stable_counts.figures(),
            candidate: self.candidate.counts.figures(),
            fallbacks: load(&self.fallbacks),
            compared,
            differences,
            difference_rate: if compared == 0 { 0.0 } else { differences as f64 / compared as f64 },
            shadow_skipped: load(&shadow.skipped),
        }
    }

    /// The latest differences the shadow found, oldest first.
    pub fn differences(&self) -> Vec<Difference> {
        self.candidate.shadow.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned().collect()
    }

    async fn canary(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
        if !self.meets_candidate(&event) {
            return self.stable_counts.timed(self.stable.handle(event)).await;
        }
        let input = event.clone();
        match self.candidate.counts.timed(self.candidate.handler.handle(event)).await {
            Ok(outputs) => Ok(outputs),
            Err(_) => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                self.stable.handle(input).await
            }
        }
    }

    async fn shadow(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
        let copy = self.candidate.copy_within_budget(&event);
        let result = self.stable_counts.timed(self.stable.handle(event)).await;
        if let (Some((input, reserved)), Some(copies)) = (copy, &self.copies) {
            let stable = result.as_ref().map(|outputs| outputs.iter().map(detached).collect()).map_err(Clone::clone);
            if copies.try_send(ShadowCopy { input, stable, reserved }).is_err() {
                let shadow = &self.candidate.shadow;
                shadow.in_flight_bytes.fetch_sub(reserved, Ordering::Relaxed);
                shadow.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

impl Candidate {
    /// A copy of `event` for the shadow and the bytes reserved for it, unless the copies in flight
    /// already hold [`SHADOW_BYTES`].
    fn copy_within_budget(&self, event: &Event) -> Option<(Event, usize)> {
        // The input and about as much again for the stable version's answer.
        let reserved = event.size() * 2;
        let shadow = &self.shadow;
        let held = shadow.in_flight_bytes.fetch_add(reserved, Ordering::Relaxed);
        if held + reserved > SHADOW_BYTES && held > 0 {
            shadow.in_flight_bytes.fetch_sub(reserved, Ordering::Relaxed);
            shadow.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some((detached(event), reserved))
    }

    /// The shadow's task: hands the copies waiting to the candidate, up to [`SHADOW_BATCH`] in
    /// one call, and compares each answer with the stable version's. Each copy's call time is
    /// its batch's time shared out. Ends when the rollout is dropped.
    async fn answer_copies(self: Arc<Self>, mut waiting: tokio::sync::mpsc::Receiver<ShadowCopy>) {
        let mut batch = Vec::with_capacity(SHADOW_BATCH);
        while waiting.recv_many(&mut batch, SHADOW_BATCH).await > 0 {
            let inputs = batch.iter().map(|copy| copy.input.clone()).collect();
            let began = Instant::now();
            let answers = self.handler.handle_batch(inputs).await;
            let each = began.elapsed() / batch.len().max(1) as u32;
            for (copy, answer) in batch.drain(..).zip(answers) {
                self.counts.times.record(each);
                self.counts.count(&answer);
                self.compare(&copy.input, &copy.stable, &answer);
                self.shadow.in_flight_bytes.fetch_sub(copy.reserved, Ordering::Relaxed);
            }
        }
    }

    /// Counts one compared answer, keeping it when it differs from the stable version's.
    fn compare(
        &self,
        input: &Event,
        stable: &Result<Vec<Event>, HandlerError>,
        candidate: &Result<Vec<Event>, HandlerError>,
    ) {
        let shadow = &self.shadow;
        shadow.compared.fetch_add(1, Ordering::Relaxed);
        let Some(what) = difference(input, stable, candidate) else { return };
        shadow.differences.fetch_add(1, Ordering::Relaxed);
        let sample = Difference {
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            what,
            input: sample_event(input),
            stable: sample_answer(stable),
            candidate: sample_answer(candidate),
        };
        let mut samples = shadow.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }
}

#[async_trait]
impl Handler for Rollout {
    async fn handle(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
        match self.settings.mode {
            RolloutMode::Canary => self.canary(event).await,
            RolloutMode::Shadow => self.shadow(event).await,
        }
    }
}

/// A copy of `event` that finishes nothing: holding it never delays its acknowledgement.
fn detached(event: &Event) -> Event {
    let mut copy = event.clone();
    copy.completion = None;
    copy
}

/// Where a key value falls, 0..100, the same in every process (FNV-1a).
fn key_bucket(value: &str) -> u64 {
    let hash = value
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    hash % 100
}

/// How the candidate's answer differs from the stable's for `input`, if it does: the outcome
/// (events or a failure, and which failure), the number of events, then each event's subject,
/// attributes, extensions and payload. An `id` or `time` counts as the same when both versions
/// made a new one (neither kept the input's).
pub fn difference(
    input: &Event,
    stable: &Result<Vec<Event>, HandlerError>,
    candidate: &Result<Vec<Event>, HandlerError>,
) -> Option<String> {
    let (stable, candidate) = match (stable, candidate) {
        (Ok(stable), Ok(candidate)) => (stable, candidate),
        (Ok(stable), Err(error)) => {
            return Some(format!(
                "the stable version sent on {} event(s); the candidate failed: {error}",
                stable.len()
            ));
        }
        (Err(error), Ok(candidate)) => {
            return Some(format!(
                "the stable version failed ({error}); the candidate sent on {} event(s)",
                candidate.len()
            ));
        }
        (Err(stable), Err(candidate)) => {
            let kind = |error: &HandlerError| matches!(error, HandlerError::Fault(_));
            return (kind(stable) != kind(candidate)).then(|| {
                format!("the stable version failed ({stable}); the candidate failed otherwise ({candidate})")
            });
        }
    };
    if stable.len() != candidate.len() {
        return Some(match (stable.len(), candidate.len()) {
            (_, 0) => format!("the stable version sent on {} event(s); the candidate dropped the event", stable.len()),
            (0, n) => format!("the stable version dropped the event; the candidate sent on {n}"),
            (s, c) => format!("the stable version sent on {s} events; the candidate {c}"),
        });
    }
    stable
        .iter()
        .zip(candidate)
        .enumerate()
        .find_map(|(at, (s, c))| event_difference(input, s, c).map(|what| format!("event {}: {what}", at + 1)))
}

/// The first part in which two answered events differ.
fn event_difference(input: &Event, stable: &Event, candidate: &Event) -> Option<String> {
    let (sc, cc) = (&stable.context, &candidate.context);
    // An id or time a version made (not the input's) shows as "(a new one)".
    fn made<'a>(value: Option<&'a str>, kept: Option<&str>) -> Option<&'a str> {
        match value {
            Some(value) if Some(value) != kept => Some("(a new one)"),
            other => other,
        }
    }
    let (id, time) = (Some(input.context.id.as_str()), input.context.time.as_deref());
    let parts: [(&str, Option<&str>, Option<&str>); 9] = [
        ("subject", Some(&stable.subject), Some(&candidate.subject)),
        ("id", made(Some(&sc.id), id), made(Some(&cc.id), id)),
        ("source", Some(&sc.source), Some(&cc.source)),
        ("type", Some(&sc.ty), Some(&cc.ty)),
        ("specversion", Some(&sc.specversion), Some(&cc.specversion)),
        ("CloudEvents subject", sc.subject.as_deref(), cc.subject.as_deref()),
        ("time", made(sc.time.as_deref(), time), made(cc.time.as_deref(), time)),
        ("datacontenttype", sc.datacontenttype.as_deref(), cc.datacontenttype.as_deref()),
        ("dataschema", sc.dataschema.as_deref(), cc.dataschema.as_deref()),
    ];
    if let Some((name, s, c)) = parts.into_iter().find(|(_, s, c)| s != c) {
        let shown = |value: Option<&str>| value.unwrap_or("(none)").to_owned();
        return Some(format!("{name} {:?} became {:?}", shown(s), shown(c)));
    }
    let same_extensions = stable.extensions.len() == candidate.extensions.len()
        && stable.extensions.iter().all(|(name, value)| candidate.extension(name) == Some(value.as_str()));
    if !same_extensions {
        return Some(format!("extensions {:?} became {:?}", sorted(&stable.extensions), sorted(&candidate.extensions)));
    }
    (stable.data != candidate.data)
        .then(|| format!("the payload differs ({} bytes, then {} bytes)", stable.data.len(), candidate.data.len()))
}

fn sorted(extensions: &[(String, String)]) -> String {
    let mut pairs: Vec<String> = extensions.iter().map(|(name, value)| format!("{name}={value}")).collect();
    pairs.sort();
    pairs.join(" ")
}

/// One difference the shadow found, as `eventyard plugin diff` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// When it was found (RFC 3339).
    pub at: String,
    pub what: String,
    pub input: Value,
    pub stable: Value,
    pub candidate: Value,
}

/// An event as a kept difference shows it: its payload cut at [`SAMPLE_DATA`] bytes.
fn sample_event(event: &Event) -> Value {
    let shown = &event.data[..event.data.len().min(SAMPLE_DATA)];
    json!({
        "subject": event.subject,
        "id": event.context.id,
        "source": event.context.source,
        "type": event.context.ty,
        "ce_subject": event.context.subject,
        "time": event.context.time,
        "datacontenttype": event.context.datacontenttype,
        "extensions": event.extensions.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "data_len": event.data.len(),
        "data_text": String::from_utf8_lossy(shown),
    })
}

fn sample_answer(answer: &Result<Vec<Event>, HandlerError>) -> Value {
    match answer {
        Ok(events) => json!({ "events": events.iter().map(sample_event).collect::<Vec<_>>() }),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

/// One version's figures since the rollout began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionFigures {
    pub events: u64,
    /// Events answered with an error.
    pub errors: u64,
    /// Events it faulted on.
    pub faults: u64,
    pub error_rate: f64,
    pub fault_rate: f64,
    /// The upper bound of the power-of-two bucket holding the 99th percentile call.
    pub p99_micros: Option<u64>,
}

/// Everything a rollout counted: what a decision is based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutFigures {
    pub mode: RolloutMode,
    pub share: u8,
    pub key: Option<String>,
    /// How long it has run.
    pub seconds: f64,
    pub stable: VersionFigures,
    pub candidate: VersionFigures,
    /// Canary events the candidate failed that the stable version then answered.
    pub fallbacks: u64,
    /// Shadow: events whose answers were compared, and how many differed.
    pub compared: u64,
    pub differences: u64,
    pub difference_rate: f64,
    /// Shadow: events not compared because the copies in flight held their byte budget.
    pub shadow_skipped: u64,
}

/// What the rules make of a rollout's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough events or time yet.
    Wait,
    /// Every rule held; the reason lists the figures.
    Promote(String),
    /// These rules were broken.
    RollBack(String),
}

impl RolloutFigures {
    /// Waits for `min_events` and `min_duration`, then promotes if every rule holds, else rolls
    /// back naming each broken one.
    pub fn verdict(&self, rules: &RolloutRules) -> Verdict {
        let candidate = &self.candidate;
        if candidate.events < rules.min_events || self.seconds < rules.min_duration.as_secs_f64() {
            return Verdict::Wait;
        }
        let mut broken = Vec::new();
        let extra_errors = candidate.error_rate - self.stable.error_rate;
        if extra_errors > rules.max_error_rate {
            broken.push(format!(
                "error rate {:.4} against the stable's {:.4} (at most {} more allowed)",
                candidate.error_rate, self.stable.error_rate, rules.max_error_rate
            ));
        }
        if candidate.fault_rate > rules.max_fault_rate {
            broken.push(format!("fault rate {:.4} (at most {} allowed)", candidate.fault_rate, rules.max_fault_rate));
        }
        let p99 = candidate.p99_micros.unwrap_or(0);
        if let Some(max) = rules.max_p99
            && p99 > max.as_micros() as u64
        {
            broken.push(format!("p99 {p99} µs (at most {} µs allowed)", max.as_micros()));
        }
        if let (Some(ratio), Some(stable)) = (rules.max_p99_ratio, self.stable.p99_micros)
            && p99 as f64 > stable as f64 * ratio
        {
            broken.push(format!("p99 {p99} µs against the stable's {stable} µs (at most {ratio}× allowed)"));
        }
        if self.mode == RolloutMode::Shadow && self.difference_rate > rules.max_difference_rate {
            broken.push(format!(
                "{} of {} compared answers differed ({:.4}; at most {} allowed)",
                self.differences, self.compared, self.difference_rate, rules.max_difference_rate
            ));
        }
        if broken.is_empty() {
            Verdict::Promote(format!(
                "every rule held over {} events in {:.0} s: error rate {:.4} (stable {:.4}), fault rate {:.4}, p99 {} µs",
                candidate.events, self.seconds, candidate.error_rate, self.stable.error_rate, candidate.fault_rate, p99
            ))
        } else {
            Verdict::RollBack(broken.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventJson;
    use crate::fault::Fault;

    fn event(id: &str, ty: &str) -> Event {
        let json = format!(r#"{{"subject":"a.b","id":"{id}","type":"{ty}","data_text":"x"}}"#);
        serde_json::from_str::<EventJson>(&json).unwrap().into_event(|| "1".into()).unwrap()
    }

    /// Tags events with its name; fails on events whose type it is told to.
    struct Version {
        name: &'static str,
        fail_type: Option<&'static str>,
        drop_type: Option<&'static str>,
    }

    #[async_trait]
    impl Handler for Version {
        async fn handle(&self, mut event: Event) -> Result<Vec<Event>, HandlerError> {
            if Some(event.context.ty.as_str()) == self.fail_type {
                return Err(HandlerError::Rejected { message: "no".into(), retryable: false });
            }
            if Some(event.context.ty.as_str()) == self.drop_type {
                return Ok(Vec::new());
            }
            event.extensions.push(("version".into(), self.name.into()));
            Ok(vec![event])
        }
    }

    fn version(name: &'static str) -> Arc<dyn Handler> {
        Arc::new(Version { name, fail_type: None, drop_type: None })
    }

    fn settings(mode: RolloutMode, share: u8, key: Option<&str>) -> RolloutSettings {
        RolloutSettings {
            mode,
            share,
            key: key.map(str::to_owned),
            automatic: true,
            rules: RolloutRules { min_events: 10, min_duration: Duration::ZERO, ..RolloutRules::default() },
        }
    }

    fn version_of(outputs: &[Event]) -> &str {
        outputs[0].extension("version").unwrap()
    }

    #[tokio::test]
    async fn a_canary_serves_its_share_by_turns_and_each_event_meets_one_version() {
        let rollout = Rollout::new(settings(RolloutMode::Canary, 5, None), version("v1"), version("v2"));
        let mut served = std::collections::HashMap::new();
        for n in 0..1000 {
            let outputs = rollout.handle(event(&n.to_string(), "t")).await.unwrap();
            assert_eq!(outputs.len(), 1);
            *served.entry(version_of(&outputs).to_owned()).or_insert(0) += 1;
        }
        assert_eq!((served["v1"], served["v2"]), (950, 50));
        let figures = rollout.figures();
        assert_eq!((figures.stable.events, figures.candidate.events), (950, 50));
    }

    #[tokio::test]
    async fn a_key_always_meets_the_same_version() {
        let rollout = Rollout::new(settings(RolloutMode::Canary, 50, Some("routingkey")), version("v1"), version("v2"));
        let mut met = std::collections::HashMap::new();
        for n in 0..400 {
            let mut e = event(&n.to_string(), "t");
            e.extensions.push(("routingkey".into(), format!("key-{}", n % 40)));
            let outputs = rollout.handle(e).await.unwrap();
            let previous = met.insert(n % 40, version_of(&outputs).to_owned());
            assert!(previous.is_none_or(|previous| previous == version_of(&outputs)), "key-{} met both", n % 40);
        }
        let candidates = met.values().filter(|v| *v == "v2").count();
        assert!((10..=30).contains(&candidates), "{candidates} of 40 keys met the candidate");
        // No key: the stable version.
        assert_eq!(version_of(&rollout.handle(event("x", "t")).await.unwrap()), "v1");
    }

    #[tokio::test]
    async fn a_failing_canary_loses_nothing_and_is_rolled_back() {
        let candidate = Arc::new(Version { name: "v2", fail_type: Some("bad"), drop_type: None });
        let rollout = Rollout::new(settings(RolloutMode::Canary, 100, None), version("v1"), candidate);
        for n in 0..100 {
            let ty = if n % 10 == 0 { "bad" } else { "good" };
            let outputs = rollout.handle(event(&n.to_string(), ty)).await.unwrap();
            assert_eq!(version_of(&outputs), if ty == "bad" { "v1" } else { "v2" });
        }
        let figures = rollout.figures();
        assert_eq!((figures.candidate.errors, figures.fallbacks, figures.stable.events), (10, 10, 0));
        let Verdict::RollBack(reason) = figures.verdict(&rollout.settings().rules) else { panic!("{figures:?}") };
        assert!(reason.contains("error rate 0.1000"), "{reason}");
    }

    #[tokio::test]
    async fn a_good_canary_is_promoted_once_it_has_enough_events() {
        let rollout = Rollout::new(settings(RolloutMode::Canary, 50, None), version("v1"), version("v2"));
        for n in 0..10 {
            rollout.handle(event(&n.to_string(), "t")).await.unwrap();
        }
        assert_eq!(rollout.figures().verdict(&rollout.settings().rules), Verdict::Wait);
        for n in 10..20 {
            rollout.handle(event(&n.to_string(), "t")).await.unwrap();
        }
        assert!(matches!(rollout.figures().verdict(&rollout.settings().rules), Verdict::Promote(_)));
    }

    #[tokio::test]
    async fn a_shadow_counts_the_events_its_candidate_drops_and_answers_with_the_stable() {
        let candidate = Arc::new(Version { name: "v1", fail_type: None, drop_type: Some("audit") });
        let rollout = Rollout::new(settings(RolloutMode::Shadow, 0, None), version("v1"), candidate);
        for n in 0..40 {
            let ty = if n % 4 == 0 { "audit" } else { "order" };
            let outputs = rollout.handle(event(&n.to_string(), ty)).await.unwrap();
            assert_eq!(version_of(&outputs), "v1", "the stable version's answer goes on");
        }
        for _ in 0..100 {
            if rollout.figures().compared == 40 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let figures = rollout.figures();
        assert_eq!((figures.compared, figures.differences, figures.stable.events), (40, 10, 40));
        let samples = rollout.differences();
        assert_eq!(samples.len(), 10);
        assert!(samples[0].what.contains("the candidate dropped the event"), "{:?}", samples[0]);
        assert_eq!(samples[0].input["type"], "audit");
        assert!(matches!(figures.verdict(&rollout.settings().rules), Verdict::RollBack(r) if r.contains("10 of 40")));
    }

    #[test]
    fn differences_are_found_part_by_part() {
        let input = event("1", "t");
        let same = Ok(vec![input.clone()]);
        assert_eq!(difference(&input, &same, &same), None);
        let mut retyped = input.clone();
        retyped.context.ty = "u".into();
        assert_eq!(difference(&input, &same, &Ok(vec![retyped])).unwrap(), r#"event 1: type "t" became "u""#);
        let (mut a, mut b) = (input.clone(), input.clone());
        a.context.id = "fresh-1".into();
        b.context.id = "fresh-2".into();
        assert_eq!(difference(&input, &Ok(vec![a.clone()]), &Ok(vec![b])), None, "both made a new id");
        assert!(difference(&input, &Ok(vec![a]), &same).unwrap().contains("id \"(a new one)\" became \"1\""));
        let mut payload = input.clone();
        payload.data = bytes::Bytes::from_static(b"yy");
        assert!(difference(&input, &same, &Ok(vec![payload])).unwrap().contains("payload differs (1 bytes, then 2"));
        let rejected = Err(HandlerError::Rejected { message: "x".into(), retryable: false });
        let trapped = Err(HandlerError::Fault(Fault::Trap("boom".into())));
        assert_eq!(difference(&input, &rejected, &rejected.clone()), None);
        assert!(difference(&input, &rejected, &trapped).unwrap().contains("failed otherwise"));
        assert!(difference(&input, &same, &rejected).unwrap().contains("the candidate failed"));
    }

    #[test]
    fn rules_name_what_they_broke() {
        let version = |events, errors, faults, p99| VersionFigures {
            events,
            errors,
            faults,
            error_rate: errors as f64 / events as f64,
            fault_rate: faults as f64 / events as f64,
            p99_micros: Some(p99),
        };
        let figures = RolloutFigures {
            mode: RolloutMode::Canary,
            share: 5,
            key: None,
            seconds: 30.0,
            stable: version(1000, 30, 0, 64),
            candidate: version(1000, 35, 0, 256),
            fallbacks: 35,
            compared: 0,
            differences: 0,
            difference_rate: 0.0,
            shadow_skipped: 0,
        };
        let rules = RolloutRules { min_events: 1000, min_duration: Duration::from_secs(10), ..RolloutRules::default() };
        assert!(
            matches!(figures.verdict(&rules), Verdict::Promote(_)),
            "errors at the stable's rate are no regression"
        );
        let slow =
            RolloutRules { max_p99_ratio: Some(2.0), max_p99: Some(Duration::from_micros(100)), ..rules.clone() };
        let Verdict::RollBack(reason) = figures.verdict(&slow) else { panic!() };
        assert!(reason.contains("p99 256 µs (at most 100 µs") && reason.contains("stable's 64 µs"), "{reason}");
        let longer = RolloutRules { min_duration: Duration::from_secs(60), ..rules };
        assert_eq!(figures.verdict(&longer), Verdict::Wait);
    }
}
