//! Hot reload. The [`Reloader`] owns everything a reload may change — the plugins (each in a
//! [`LivePlugin`] slot), the [`Pipeline`] of sinks and routes, HTTP auth and limits — and applies
//! the config file and the plugin directory to them, one reload at a time:
//!
//! 1. Read the config; an invalid one stops the reload, and nothing changes.
//! 2. Load each new or changed plugin beside the running one (compile, check, `init`).
//! 3. Stage the pipeline for the new config.
//! 4. Only if all of that passed, swap it in.
//!
//! A plugin whose file alone changed and fails leaves its old generation serving, and the rest of
//! the reload applies; a failure the new config causes fails the whole reload. A plugin whose
//! file is deleted unloads only if nothing uses it. Settings only a restart can change keep their
//! running value and are reported. Every change and failure is logged, counted, and published on
//! `$SYS.EVENTYARD.RELOAD`.
//!
//! A handler with `[plugin.NAME.rollout]` settings gets a new version as a candidate beside the
//! serving one instead (a [`Trial`]); [`Reloader::judge_rollouts`] (every second) or an operator
//! ([`Reloader::decide`]) promotes or rolls it back, under the same lock, each step a report.
//!
//! Triggers: changes in the plugin directory or the config file ([`watch`]), SIGHUP, and
//! `POST /v1/admin/reload`.

pub mod plugins;
pub mod report;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;

pub use plugins::{Generation, LivePlugin, RoleSlot, Trial};
pub use report::{
    ConfigApplied, ConfigReport, DecidedBy, Outcome, PluginChange, PluginReport, ReloadReport, RolloutReport,
    RolloutStep,
};

use crate::broker::Broker;
use crate::capability::HostServices;
use crate::config::{Config, ConfigOrigin, PluginPlan};
use crate::event::{Context, Event};
use crate::gateway::Authenticators;
use crate::ingest::http::HttpAuth;
use crate::pipeline::Pipeline;
use crate::plugin::{Capability, Plugin, PluginRuntime, Role, content_hash};
use crate::route::{RolloutFigures, RolloutMode, Verdict};
use crate::slot::Slot;
use crate::unrouted::UnroutedEvents;

/// Where reload reports are published.
pub use crate::broker::account::RELOAD_SUBJECT;

/// Reloads counted by what they changed and how they ended.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub plugins_ok: AtomicU64,
    pub plugins_failed: AtomicU64,
    pub configs_ok: AtomicU64,
    pub configs_failed: AtomicU64,
    pub rollouts_started: AtomicU64,
    pub rollouts_promoted: AtomicU64,
    pub rollouts_rolled_back: AtomicU64,
}

/// The config in force and its generation.
struct Applied {
    config: Config,
    generation: u64,
}

/// The parts of the running router that a reload changes.
pub struct Reloader {
    runtime: PluginRuntime,
    broker: Arc<dyn Broker>,
    pipeline: Pipeline,
    plugins: RwLock<BTreeMap<String, Arc<LivePlugin>>>,
    /// Who may publish over HTTP.
    pub http_auth: Arc<Slot<HttpAuth>>,
    /// Largest HTTP request body.
    pub max_body: Arc<AtomicUsize>,
    /// How NATS gateway clients authenticate.
    pub gateway_auth: Arc<Slot<Authenticators>>,
    /// Events no route took.
    pub unrouted: Arc<UnroutedEvents>,
    /// Held for the whole of a reload: one at a time.
    applied: tokio::sync::Mutex<Applied>,
    pub stats: ReloadStats,
    /// The latest reports, oldest first, each with when it was made.
    history: std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>,
}

/// How many reports [`Reloader::history`] keeps.
const HISTORY: usize = 100;

impl Reloader {
    /// Loads every plugin `config` uses, lending them `services`, and starts its pipeline on
    /// `broker`; fails with every problem found.
    pub async fn start(config: Config, broker: Arc<dyn Broker>, services: HostServices) -> anyhow::Result<Reloader> {
        let runtime =
            PluginRuntime::new(config.runtime.clone()).context("starting the plugin runtime")?.with_services(services);
        let (loaded, mut errors) = plugins::load_plugins(&config, &runtime).await;
        errors.extend(plugins::check_references(&config, |name| loaded.get(name).map(|l| l.plugin.role())));
        if !errors.is_empty() {
            anyhow::bail!("{} problem(s) with plugins:\n  {}", errors.len(), errors.join("\n  "));
        }
        for (name, loaded) in &loaded {
            let info = &loaded.plugin.meta().info;
            let world = info.world.as_deref().unwrap_or("none");
            tracing::info!(plugin = %name, world, sha256 = %info.sha256, configured = loaded.plan.configured, "plugin loaded");
        }
        let live: BTreeMap<String, Arc<LivePlugin>> = loaded
            .into_iter()
            .map(|(name, loaded)| (name, Arc::new(LivePlugin::new(loaded.plan, loaded.plugin))))
            .collect();
        let pipeline = Pipeline::new(broker.clone());
        let staged = pipeline.stage(&config, &live).await.map_err(|errors| anyhow::anyhow!(errors.join("\n  ")))?;
        pipeline.commit(staged);
        let auth = plugins::http_auth(&config.http, &live).context("[http.auth] policy is not loaded")?;
        let gateway_auth =
            plugins::gateway_auth(&config, &live).context("a NATS listener's auth policy is not loaded")?;
        let unrouted = UnroutedEvents::attach(&broker, config.unrouted_dead_letter);
        Ok(Reloader {
            runtime,
            broker,
            pipeline,
            plugins: RwLock::new(live),
            http_auth: Arc::new(Slot::new(Arc::new(auth))),
            max_body: Arc::new(AtomicUsize::new(config.http.max_body)),
            gateway_auth: Arc::new(Slot::new(Arc::new(gateway_auth))),
            unrouted,
            applied: tokio::sync::Mutex::new(Applied { config, generation: 1 }),
            stats: ReloadStats::default(),
            history: std::sync::Mutex::default(),
        })
    }

    /// The plugins loaded now, by name.
    pub fn plugins(&self) -> BTreeMap<String, Arc<LivePlugin>> {
        self.plugins.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The latest reload reports, newest first, as published, with `at` (RFC 3339) added.
    pub fn history(&self) -> Vec<serde_json::Value> {
        self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().rev().cloned().collect()
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// How long shutdown waits for the queues, as the config in force says.
    pub async fn drain_timeout(&self) -> Duration {
        self.applied.lock().await.config.service.drain_timeout
    }

    /// Applies the config file and the plugin directory as they are now; returns the reports it
    /// published (none when nothing changed).
    pub async fn reload(&self) -> Vec<ReloadReport> {
        let mut applied = self.applied.lock().await;
        let reports = self.reload_locked(&mut applied).await;
        self.announce(&reports).await;
        reports
    }

    /// Counts, logs, remembers and publishes each report.
    async fn announce(&self, reports: &[ReloadReport]) {
        for report in reports {
            let stats = &self.stats;
            let counter = match (report, report.is_ok()) {
                (ReloadReport::Plugin(_), true) => &stats.plugins_ok,
                (ReloadReport::Plugin(_), false) => &stats.plugins_failed,
                (ReloadReport::Config(_), true) => &stats.configs_ok,
                (ReloadReport::Config(_), false) => &stats.configs_failed,
                (ReloadReport::Rollout(rollout), _) => match rollout.step {
                    RolloutStep::Started => &stats.rollouts_started,
                    RolloutStep::Promoted => &stats.rollouts_promoted,
                    RolloutStep::RolledBack => &stats.rollouts_rolled_back,
                },
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let json = report.to_json();
            if report.is_ok() {
                tracing::info!(report = %json, "reloaded");
            } else {
                tracing::error!(report = %json, "reload failed, nothing it covers changed");
            }
            self.remember(&json);
            self.publish(report, json).await;
        }
    }

    /// Promotes or rolls back every automatic rollout whose rules have decided; returns the
    /// reports it published.
    pub async fn judge_rollouts(&self) -> Vec<ReloadReport> {
        if !self.plugins().values().any(|live| live.trial().is_some()) {
            return Vec::new();
        }
        let _applied = self.applied.lock().await;
        let mut reports = Vec::new();
        for (name, live) in self.plugins() {
            let Some(trial) = live.trial() else { continue };
            let settings = trial.rollout.settings();
            if !settings.automatic {
                continue;
            }
            let figures = trial.rollout.figures();
            let report = match figures.verdict(&settings.rules) {
                Verdict::Wait => None,
                Verdict::Promote(reason) => promote(&name, &live, DecidedBy::Rules, reason, figures),
                Verdict::RollBack(reason) => roll_back(&name, &live, DecidedBy::Rules, reason),
            };
            reports.extend(report);
        }
        self.announce(&reports).await;
        reports
    }

    /// Judges the rollouts every `period` until `stop`.
    pub async fn judge_rollouts_every(self: Arc<Self>, period: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {
                    self.judge_rollouts().await;
                }
            }
        }
    }

    /// Plugin `name` and the trial running beside it.
    pub fn trial(&self, name: &str) -> Result<(Arc<LivePlugin>, Trial), RolloutError> {
        let live = self.plugins().get(name).cloned().ok_or_else(|| RolloutError::NoPlugin(name.to_owned()))?;
        let trial = live.trial().ok_or_else(|| RolloutError::NoRollout(name.to_owned()))?;
        Ok((live, trial))
    }

    /// An operator's decision on plugin `name`'s rollout: promote the candidate, or roll it back.
    pub async fn decide(&self, name: &str, promote_it: bool) -> Result<ReloadReport, RolloutError> {
        let _applied = self.applied.lock().await;
        let (live, trial) = self.trial(name)?;
        let figures = trial.rollout.figures();
        let report = if promote_it {
            promote(name, &live, DecidedBy::Operator, "promoted by an operator".into(), figures)
        } else {
            roll_back(name, &live, DecidedBy::Operator, "rolled back by an operator".into())
        };
        let report = report.ok_or_else(|| RolloutError::NoRollout(name.to_owned()))?;
        self.announce(std::slice::from_ref(&report)).await;
        Ok(report)
    }

    /// The four steps of a reload (see the module's documentation), under the reload lock.
    async fn reload_locked(&self, applied: &mut Applied) -> Vec<ReloadReport> {
        let old_generation = applied.generation;
        let old_sha256 = applied.config.origin.as_ref().map(|s| s.sha256.clone());
        let failed = |new_sha256: Option<String>, errors: &[String]| {
            ReloadReport::Config(ConfigReport::failed(old_generation, old_sha256.clone(), new_sha256, errors))
        };

        // 1. The config.
        let mut changed = match read_config(&applied.config).await {
            Ok(changed) => changed,
            Err((new_sha256, errors)) => return vec![failed(new_sha256, &errors)],
        };
        let restart_required = match &mut changed {
            Some(config) => config.keep_restart_only(&applied.config),
            None => Vec::new(),
        };
        let config_changed = changed.is_some();
        let config = changed.as_ref().unwrap_or(&applied.config);
        let new_sha256 = config.origin.as_ref().map(|s| s.sha256.clone());

        // 2. The plugins.
        let mut step = match self.load_plugins(config).await {
            Ok(step) => step,
            Err(err) => return vec![failed(new_sha256, &[err])],
        };

        // 3. The pipeline and HTTP settings.
        let auth = plugins::http_auth(&config.http, &step.next);
        let gateway_auth = plugins::gateway_auth(config, &step.next);
        let staged = if config_changed || !step.added.is_empty() || !step.unloaded.is_empty() {
            match self.pipeline.stage(config, &step.next).await {
                Ok(staged) => Some(staged),
                Err(errors) => {
                    step.fatal.extend(errors);
                    None
                }
            }
        } else {
            None
        };
        if !step.fatal.is_empty() {
            step.reports.push(failed(new_sha256, &step.fatal));
            return step.reports;
        }

        // 4. Swap.
        let reloaded = self.swap_plugins(&mut step);
        let changes = staged.map(|staged| self.pipeline.commit(staged)).unwrap_or_default();
        // A new version of the gateway's auth policy checks every client again, as a config
        // change does.
        let policies = config.service.auth.values().filter_map(|auth| auth.policy.as_ref());
        let policy_reloaded = policies.into_iter().any(|policy| reloaded.contains(policy));
        if (config_changed || policy_reloaded)
            && let Some(gateway_auth) = gateway_auth
        {
            self.gateway_auth.replace(Arc::new(gateway_auth));
        }
        if let Some(config) = changed {
            if let Some(auth) = auth {
                self.http_auth.replace(Arc::new(auth));
            }
            self.max_body.store(config.http.max_body, Ordering::Relaxed);
            self.unrouted.set_dead_letter(config.unrouted_dead_letter);
            if !restart_required.is_empty() {
                tracing::warn!(keys = ?restart_required, "config changes that only take effect after a restart");
            }
            applied.generation += 1;
            step.reports.push(ReloadReport::Config(ConfigReport {
                result: Outcome::Ok,
                old_generation,
                new_generation: Some(applied.generation),
                old_sha256,
                new_sha256,
                applied: Some(ConfigApplied {
                    changes,
                    plugins_added: step.added,
                    plugins_reloaded: reloaded,
                    plugins_unloaded: step.unloaded.into_iter().map(|(name, _)| name).collect(),
                    restart_required: restart_required.into_iter().map(str::to_owned).collect(),
                }),
                error: None,
            }));
            applied.config = config;
        }
        step.reports
    }

    /// Step 2: loads each new or changed plugin file beside its running version and decides what
    /// unloads, changing nothing yet. `Err` when the plugin directory cannot be read.
    async fn load_plugins(&self, config: &Config) -> Result<PluginStep, String> {
        let plans = plugins::plugin_plans(config).await?;
        let mut users: BTreeMap<String, String> = BTreeMap::new();
        for reference in plugins::references(config) {
            users.entry(reference.plugin).or_insert(reference.user);
        }
        let current = self.plugins();
        let mut step = PluginStep::default();
        let planned: BTreeSet<String> = plans.iter().map(|plan| plan.name.clone()).collect();
        for plan in plans {
            let name = plan.name.clone();
            let live = current.get(&name);
            let bytes = match tokio::fs::read(&plan.file).await {
                Ok(bytes) => bytes,
                Err(err) => {
                    let why = format!("cannot read {}: {err}", plan.file.display());
                    match (live, users.get(&name)) {
                        (Some(live), Some(user)) => step.keep_serving(&name, live, user, why),
                        (Some(live), None) => step.unloaded.push((name, live.current())),
                        (None, _) => step.fatal.push(format!("plugin `{name}`: {why}")),
                    }
                    continue;
                }
            };
            let sha256 = tokio::task::spawn_blocking(move || content_hash(&bytes)).await.unwrap_or_default();
            match live {
                None => self.load_added(plan, &sha256, users.contains_key(&name), &mut step).await,
                Some(live) => self.load_changed(live, plan, &sha256, &mut step).await,
            }
        }
        for (name, live) in &current {
            match (planned.contains(name), users.get(name)) {
                (true, _) => {}
                (false, Some(user)) => step.keep_serving(name, live, user, "its file is gone".into()),
                (false, None) => step.unloaded.push((name.clone(), live.current())),
            }
        }
        step.fatal.extend(plugins::check_references(config, |name| step.next.get(name).map(|live| live.role())));
        Ok(step)
    }

    /// A plugin not loaded yet. Failing to load fails the reload when the config names or uses it;
    /// a file merely dropped in the directory is reported and left out.
    async fn load_added(&self, plan: PluginPlan, sha256: &str, used: bool, step: &mut PluginStep) {
        let name = plan.name.clone();
        match self.runtime.load(plan.spec()).await {
            Ok(plugin) => {
                step.added.push(name.clone());
                step.next.insert(name, Arc::new(LivePlugin::new(plan, plugin)));
            }
            Err(err) if plan.configured || used => step.fatal.push(err.to_string()),
            Err(err) => step.reports.push(ReloadReport::Plugin(PluginReport::new(
                &name,
                PluginChange::Add,
                None,
                None,
                Some(sha256),
                Some(err.to_string()),
            ))),
        }
    }

    /// A loaded plugin whose file or settings may have changed: the new version is loaded beside
    /// the running one, to be swapped in at step 4. A new file alone that fails leaves the running
    /// version serving; new settings that fail fail the reload.
    async fn load_changed(&self, live: &Arc<LivePlugin>, plan: PluginPlan, sha256: &str, step: &mut PluginStep) {
        let name = plan.name.clone();
        step.next.insert(name.clone(), live.clone());
        let old = live.current();
        if old.plan.same_version(&plan) && old.plugin.meta().info.sha256 == sha256 {
            if old.plan != plan {
                step.settings.push((live.clone(), plan));
            }
            if live.trial().is_some() {
                step.rollbacks.push(live.clone());
            }
            return;
        }
        let rolls_out = plan.rollout.is_some() && live.role() == Role::Handler;
        if rolls_out && (live.trial().is_some_and(|trial| trial.runs(&plan, sha256)) || live.rolled_back(&plan, sha256))
        {
            return;
        }
        let error = match self.runtime.load(plan.spec()).await {
            Ok(plugin) if plugin.role() == live.role() => {
                match rolls_out.then(|| shadow_refusal(&plan, &plugin.meta().info.capabilities)) {
                    None => {
                        step.swaps.push((live.clone(), plan, plugin));
                        return;
                    }
                    Some(None) => {
                        step.trials.push((live.clone(), plan, plugin));
                        return;
                    }
                    Some(Some(refusal)) => refusal,
                }
            }
            Ok(plugin) => format!(
                "the new file exports the {} world; plugin `{name}` is a {} plugin (rename it to change its world)",
                plugin.role(),
                live.role()
            ),
            Err(err) => err.to_string(),
        };
        if old.plan != plan {
            step.fatal.push(error);
        } else {
            let old_version = (old.number, &old.plugin.meta().info);
            let report =
                PluginReport::new(&name, PluginChange::Reload, Some(old_version), None, Some(sha256), Some(error));
            step.reports.push(ReloadReport::Plugin(report));
        }
    }

    /// Step 4 for plugins: each new version into its slot, the plugin set replaced, a report for
    /// every change. Returns the names of the plugins reloaded.
    fn swap_plugins(&self, step: &mut PluginStep) -> Vec<String> {
        let mut reloaded = Vec::new();
        for (live, plan) in std::mem::take(&mut step.settings) {
            live.update_plan(plan);
        }
        for live in std::mem::take(&mut step.rollbacks) {
            let reason = "the serving version's file and settings are back".to_owned();
            step.reports.extend(roll_back(&live.current().plan.name, &live, DecidedBy::Reload, reason));
        }
        for (live, plan, plugin) in std::mem::take(&mut step.trials) {
            let name = plan.name.clone();
            let reason = "a newer version replaced the candidate".to_owned();
            step.reports.extend(roll_back(&name, &live, DecidedBy::Reload, reason));
            let stable = live.current();
            let report = match live.start_trial(plan, plugin.clone()) {
                Ok(trial) => {
                    let settings = trial.rollout.settings();
                    let reason = match (settings.mode, &settings.key) {
                        (RolloutMode::Shadow, _) => "a new version answers copies of every event".to_owned(),
                        (RolloutMode::Canary, None) => {
                            format!("a new version serves {}% of the events", settings.share)
                        }
                        (RolloutMode::Canary, Some(key)) => {
                            format!("a new version serves the events of {}% of the values of `{key}`", settings.share)
                        }
                    };
                    ReloadReport::Rollout(rollout_report(
                        &name,
                        &stable,
                        &trial,
                        RolloutStep::Started,
                        DecidedBy::Reload,
                        reason,
                    ))
                }
                Err(error) => {
                    let (old, new) = ((stable.number, &stable.plugin.meta().info), &plugin.meta().info.sha256);
                    let report =
                        PluginReport::new(&name, PluginChange::Reload, Some(old), None, Some(new), Some(error));
                    ReloadReport::Plugin(report)
                }
            };
            step.reports.push(report);
        }
        for (live, plan, plugin) in std::mem::take(&mut step.swaps) {
            let old = live.current();
            let name = plan.name.clone();
            if let Some((old_generation, new_generation)) = live.replace(plan, plugin.clone()) {
                let (old_info, new_info) = (&old.plugin.meta().info, &plugin.meta().info);
                let report = PluginReport::new(
                    &name,
                    PluginChange::Reload,
                    Some((old_generation, old_info)),
                    Some((new_generation, new_info)),
                    None,
                    None,
                );
                step.reports.push(ReloadReport::Plugin(report));
                reloaded.push(name);
            }
        }
        for name in &step.added {
            if let Some(live) = step.next.get(name) {
                let new = live.current();
                let new_version = (new.number, &new.plugin.meta().info);
                let report = PluginReport::new(name, PluginChange::Add, None, Some(new_version), None, None);
                step.reports.push(ReloadReport::Plugin(report));
            }
        }
        for (name, old) in &step.unloaded {
            let old_version = (old.number, &old.plugin.meta().info);
            let report = PluginReport::new(name, PluginChange::Unload, Some(old_version), None, None, None);
            step.reports.push(ReloadReport::Plugin(report));
        }
        *self.plugins.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = std::mem::take(&mut step.next);
        reloaded
    }

    fn remember(&self, json: &serde_json::Value) {
        let mut entry = json.clone();
        let at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339);
        entry["at"] = serde_json::json!(at.unwrap_or_default());
        let mut history = self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(entry);
    }

    /// Publishes a report (`json`, its JSON form) on [`RELOAD_SUBJECT`]; nobody listening is fine.
    async fn publish(&self, report: &ReloadReport, json: serde_json::Value) {
        let event = Event {
            subject: RELOAD_SUBJECT.into(),
            context: Context {
                id: uuid::Uuid::now_v7().to_string(),
                source: "/eventyard/reload".into(),
                ty: "eventyard.reload".into(),
                specversion: "1.0".into(),
                subject: Some(report.about().to_owned()),
                time: None,
                datacontenttype: Some("application/json".into()),
                dataschema: None,
            },
            extensions: Vec::new(),
            data: Bytes::from(json.to_string()),
            nats: None,
            completion: None,
            arrived: None,
        };
        if let Err(err) = self.broker.publish(event).await {
            tracing::warn!(error = %err, "reload report not published");
        }
    }
}

/// What step 2 makes of the plugin directory: the plugins the reload leaves loaded, and what it
/// changes on the way.
#[derive(Default)]
struct PluginStep {
    /// The plugin set after the reload.
    next: BTreeMap<String, Arc<LivePlugin>>,
    /// New versions loaded beside running ones, for step 4.
    swaps: Vec<(Arc<LivePlugin>, PluginPlan, Plugin)>,
    /// New versions loaded to run beside running ones as candidates.
    trials: Vec<(Arc<LivePlugin>, PluginPlan, Plugin)>,
    /// Running versions with new rollout settings.
    settings: Vec<(Arc<LivePlugin>, PluginPlan)>,
    /// Rollouts to end: the serving version's file and settings are back.
    rollbacks: Vec<Arc<LivePlugin>>,
    added: Vec<String>,
    unloaded: Vec<(String, Generation)>,
    reports: Vec<ReloadReport>,
    /// Problems that fail the whole reload.
    fatal: Vec<String>,
}

impl PluginStep {
    /// A plugin whose file cannot be loaded but that a route or policy uses: its running version
    /// stays, and the failure is reported.
    fn keep_serving(&mut self, name: &str, live: &Arc<LivePlugin>, user: &str, why: String) {
        let error = format!("{why}; {user} uses it, so its running generation keeps serving");
        let old = live.current();
        let old_version = (old.number, &old.plugin.meta().info);
        let report = PluginReport::new(name, PluginChange::Reload, Some(old_version), None, None, Some(error));
        self.reports.push(ReloadReport::Plugin(report));
        self.next.insert(name.to_owned(), live.clone());
    }
}

/// Why a rollout decision could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("no plugin `{0}` is loaded")]
    NoPlugin(String),
    #[error("plugin `{0}` has no candidate running")]
    NoRollout(String),
}

/// Why a candidate may not run as a shadow, if it may not: its copies' calls are real, so one that
/// can reach outside the router would act twice for every event.
fn shadow_refusal(plan: &PluginPlan, capabilities: &[Capability]) -> Option<String> {
    if plan.rollout.as_ref()?.mode != RolloutMode::Shadow {
        return None;
    }
    let outside = [Capability::Http, Capability::Kafka, Capability::Nats];
    let reaching: Vec<String> =
        capabilities.iter().filter(|capability| outside.contains(capability)).map(ToString::to_string).collect();
    (!reaching.is_empty()).then(|| {
        format!(
            "a shadow's calls are real and this version imports {}: it would send everything twice; roll it out with mode = \"canary\"",
            reaching.join(", ")
        )
    })
}

/// Makes `live`'s candidate the serving version; the report, if a trial was running.
fn promote(
    name: &str,
    live: &LivePlugin,
    by: DecidedBy,
    reason: String,
    figures: RolloutFigures,
) -> Option<ReloadReport> {
    let stable = live.current();
    let (trial, (_, new)) = live.promote()?;
    let report = rollout_report(name, &stable, &trial, RolloutStep::Promoted, by, reason);
    Some(ReloadReport::Rollout(RolloutReport { new_generation: Some(new), figures: Some(figures), ..report }))
}

/// Ends `live`'s trial, the serving version taking every event again; the report, if one was running.
fn roll_back(name: &str, live: &LivePlugin, by: DecidedBy, reason: String) -> Option<ReloadReport> {
    let stable = live.current();
    let trial = live.roll_back()?;
    let reason = match by {
        DecidedBy::Reload => reason,
        // The file still holds the candidate, and a start loads what the files hold.
        _ => format!("{reason}; {} still holds this version, which a restart would load", trial.plan.file.display()),
    };
    let report = rollout_report(name, &stable, &trial, RolloutStep::RolledBack, by, reason);
    Some(ReloadReport::Rollout(RolloutReport { figures: Some(trial.rollout.figures()), ..report }))
}

/// The report of `step` of `trial` beside `stable` (before the step), without figures.
fn rollout_report(
    name: &str,
    stable: &Generation,
    trial: &Trial,
    step: RolloutStep,
    by: DecidedBy,
    reason: String,
) -> RolloutReport {
    RolloutReport {
        plugin: name.to_owned(),
        step,
        result: Outcome::Ok,
        by,
        mode: trial.rollout.settings().mode,
        stable_generation: stable.number,
        new_generation: None,
        stable_sha256: stable.plugin.meta().info.sha256.clone(),
        candidate_sha256: trial.plugin.meta().info.sha256.clone(),
        reason,
        figures: None,
    }
}

/// Step 1: the config file as it is now, if it differs from `running`; or, when it cannot be
/// applied, the new file's hash (if it could be read) and every problem.
async fn read_config(running: &Config) -> Result<Option<Config>, (Option<String>, Vec<String>)> {
    let Some(source) = &running.origin else {
        return Ok(None);
    };
    let text = tokio::fs::read_to_string(&source.path)
        .await
        .map_err(|err| (None, vec![format!("cannot read {}: {err}", source.path.display())]))?;
    let sha256 = content_hash(text.as_bytes());
    if sha256 == source.sha256 {
        return Ok(None);
    }
    match Config::from_toml(&text) {
        Ok(mut config) => {
            config.origin = Some(ConfigOrigin { path: source.path.clone(), sha256 });
            Ok(Some(config))
        }
        Err(errors) => Err((Some(sha256), errors.iter().map(ToString::to_string).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_that_reaches_outside_is_never_a_shadow() {
        let plan = |mode: &str| {
            let config = Config::from_toml(&format!("[plugin.p.rollout]\nmode = \"{mode}\"\n")).unwrap();
            config.plugins["p"].clone()
        };
        let (shadow, canary) = (plan("shadow"), plan("canary"));
        assert_eq!(shadow_refusal(&shadow, &[Capability::Filesystem]), None);
        assert_eq!(shadow_refusal(&canary, &[Capability::Http, Capability::Nats]), None);
        let refusal = shadow_refusal(&shadow, &[Capability::Filesystem, Capability::Http, Capability::Kafka]).unwrap();
        assert!(refusal.contains("imports http, kafka") && refusal.contains("mode = \"canary\""), "{refusal}");
    }
}
