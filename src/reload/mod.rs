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
//! Triggers: changes in the plugin directory or the config file ([`watch`]), SIGHUP, and
//! `POST /v1/admin/reload`.

pub mod plugins;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::{Value, json};

pub use plugins::{Generation, LivePlugin, RoleSlot};

use crate::broker::Broker;
use crate::capability::HostServices;
use crate::config::{Config, ConfigOrigin};
use crate::event::{Context, Event};
use crate::gateway::Authenticator;
use crate::ingest::http::HttpAuth;
use crate::pipeline::Pipeline;
use crate::plugin::{ComponentInfo, Plugin, PluginRuntime, content_hash};
use crate::slot::Slot;

/// Where reload reports are published.
pub use crate::broker::account::RELOAD_SUBJECT;

/// Reloads counted by what they changed and how they ended.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub plugins_ok: AtomicU64,
    pub plugins_failed: AtomicU64,
    pub configs_ok: AtomicU64,
    pub configs_failed: AtomicU64,
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
    pub gateway_auth: Arc<Slot<Authenticator>>,
    /// Held for the whole of a reload: one at a time.
    applied: tokio::sync::Mutex<Applied>,
    pub stats: ReloadStats,
}

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
        let gateway_auth = plugins::gateway_auth(&config, &live).context("[service.auth] policy is not loaded")?;
        Ok(Reloader {
            runtime,
            broker,
            pipeline,
            plugins: RwLock::new(live),
            http_auth: Arc::new(Slot::new(Arc::new(auth))),
            max_body: Arc::new(AtomicUsize::new(config.http.max_body)),
            gateway_auth: Arc::new(Slot::new(Arc::new(gateway_auth))),
            applied: tokio::sync::Mutex::new(Applied { config, generation: 1 }),
            stats: ReloadStats::default(),
        })
    }

    /// The plugins loaded now, by name.
    pub fn plugins(&self) -> BTreeMap<String, Arc<LivePlugin>> {
        self.plugins.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
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
    pub async fn reload(&self) -> Vec<Value> {
        let mut applied = self.applied.lock().await;
        let reports = self.reload_locked(&mut applied).await;
        for report in &reports {
            let ok = report["result"] == "ok";
            let counter = match (report["kind"].as_str(), ok) {
                (Some("plugin"), true) => &self.stats.plugins_ok,
                (Some("plugin"), false) => &self.stats.plugins_failed,
                (_, true) => &self.stats.configs_ok,
                (_, false) => &self.stats.configs_failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if ok {
                tracing::info!(report = %report, "reloaded");
            } else {
                tracing::error!(report = %report, "reload failed, nothing it covers changed");
            }
            self.publish(report).await;
        }
        reports
    }

    async fn reload_locked(&self, applied: &mut Applied) -> Vec<Value> {
        let running = applied.config.clone();
        let old_generation = applied.generation;
        let old_sha256 = running.origin.as_ref().map(|s| s.sha256.clone());
        let config_failed = |new_sha256: Option<&str>, errors: &[String]| {
            vec![json!({
                "kind": "config", "result": "failed",
                "old_generation": old_generation, "new_generation": null,
                "old_sha256": old_sha256, "new_sha256": new_sha256,
                "error": errors.join("; "),
            })]
        };

        // 1. The config.
        let (mut config, config_changed) = match &running.origin {
            None => (running.clone(), false),
            Some(source) => match tokio::fs::read_to_string(&source.path).await {
                Err(err) => return config_failed(None, &[format!("cannot read {}: {err}", source.path.display())]),
                Ok(text) => {
                    let sha256 = content_hash(text.as_bytes());
                    if sha256 == source.sha256 {
                        (running.clone(), false)
                    } else {
                        match Config::from_toml(&text) {
                            Ok(mut config) => {
                                config.origin = Some(ConfigOrigin { path: source.path.clone(), sha256 });
                                (config, true)
                            }
                            Err(errors) => {
                                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                                return config_failed(Some(&sha256), &errors);
                            }
                        }
                    }
                }
            },
        };
        let restart_required = if config_changed { config.keep_restart_only(&running) } else { Vec::new() };
        let new_sha256 = config.origin.as_ref().map(|s| s.sha256.clone());

        // 2. The plugins.
        let plans = match plugins::plugin_plans(&config).await {
            Ok(plans) => plans,
            Err(err) => return config_failed(new_sha256.as_deref(), &[err]),
        };
        let mut users: BTreeMap<String, String> = BTreeMap::new();
        for reference in plugins::references(&config) {
            users.entry(reference.plugin).or_insert(reference.user);
        }
        let current = self.plugins();
        let mut next: BTreeMap<String, Arc<LivePlugin>> = BTreeMap::new();
        let mut swaps: Vec<(Arc<LivePlugin>, crate::config::PluginPlan, Plugin)> = Vec::new();
        let (mut added, mut unloaded) = (Vec::new(), Vec::new());
        let mut reports = Vec::new();
        // Problems that fail the whole reload.
        let mut fatal = Vec::new();
        let keep_serving = |name: &str, live: &Arc<LivePlugin>, why: String, reports: &mut Vec<Value>| {
            let error = format!("{why}; {} uses it, so its running generation keeps serving", users[name]);
            let old = live.current();
            reports.push(plugin_report(
                name,
                "reload",
                Some((old.number, &old.plugin.meta().info)),
                None,
                None,
                Some(error),
            ));
        };
        let planned: BTreeSet<String> = plans.iter().map(|plan| plan.name.clone()).collect();
        for plan in plans {
            let name = plan.name.clone();
            let live = current.get(&name);
            let bytes = match tokio::fs::read(&plan.file).await {
                Ok(bytes) => bytes,
                Err(err) => {
                    let why = format!("cannot read {}: {err}", plan.file.display());
                    match live {
                        Some(live) if users.contains_key(&name) => {
                            keep_serving(&name, live, why, &mut reports);
                            next.insert(name, live.clone());
                        }
                        Some(live) => unloaded.push((name, live.current())),
                        None => fatal.push(format!("plugin `{name}`: {why}")),
                    }
                    continue;
                }
            };
            let sha256 = tokio::task::spawn_blocking(move || content_hash(&bytes)).await.unwrap_or_default();
            let Some(live) = live else {
                match self.runtime.load(plan.spec()).await {
                    Ok(plugin) => {
                        added.push(name.clone());
                        next.insert(name, Arc::new(LivePlugin::new(plan, plugin)));
                    }
                    Err(err) if plan.configured || users.contains_key(&name) => fatal.push(err.to_string()),
                    Err(err) => {
                        reports.push(plugin_report(&name, "add", None, None, Some(&sha256), Some(err.to_string())))
                    }
                }
                continue;
            };
            next.insert(name.clone(), live.clone());
            let old = live.current();
            if old.plan == plan && old.plugin.meta().info.sha256 == sha256 {
                continue;
            }
            let error = match self.runtime.load(plan.spec()).await {
                Ok(plugin) if plugin.role() == live.role() => {
                    swaps.push((live.clone(), plan, plugin));
                    continue;
                }
                Ok(plugin) => format!(
                    "the new file exports the {} world; plugin `{name}` is a {} plugin (rename it to change its world)",
                    plugin.role(),
                    live.role()
                ),
                Err(err) => err.to_string(),
            };
            if old.plan != plan {
                fatal.push(error);
            } else {
                let old_info = &old.plugin.meta().info;
                reports.push(plugin_report(
                    &name,
                    "reload",
                    Some((old.number, old_info)),
                    None,
                    Some(&sha256),
                    Some(error),
                ));
            }
        }
        for (name, live) in &current {
            if planned.contains(name) {
                continue;
            }
            if users.contains_key(name) {
                let why = "its file is gone".to_owned();
                keep_serving(name, live, why, &mut reports);
                next.insert(name.clone(), live.clone());
            } else {
                unloaded.push((name.clone(), live.current()));
            }
        }
        fatal.extend(plugins::check_references(&config, |name| next.get(name).map(|live| live.role())));

        // 3. The pipeline and HTTP settings.
        let auth = plugins::http_auth(&config.http, &next);
        let gateway_auth = plugins::gateway_auth(&config, &next);
        let staged = if config_changed || !added.is_empty() || !unloaded.is_empty() {
            match self.pipeline.stage(&config, &next).await {
                Ok(staged) => Some(staged),
                Err(errors) => {
                    fatal.extend(errors);
                    None
                }
            }
        } else {
            None
        };
        if !fatal.is_empty() {
            reports.extend(config_failed(new_sha256.as_deref(), &fatal));
            return reports;
        }

        // 4. Swap.
        let mut reloaded = Vec::new();
        for (live, plan, plugin) in swaps {
            let old = live.current();
            let name = plan.name.clone();
            if let Some((old_generation, new_generation)) = live.replace(plan, plugin.clone()) {
                let (old_info, new_info) = (&old.plugin.meta().info, &plugin.meta().info);
                reports.push(plugin_report(
                    &name,
                    "reload",
                    Some((old_generation, old_info)),
                    Some((new_generation, new_info)),
                    None,
                    None,
                ));
                reloaded.push(name);
            }
        }
        for name in &added {
            if let Some(live) = next.get(name) {
                reports.push(plugin_report(
                    name,
                    "add",
                    None,
                    Some((1, &live.current().plugin.meta().info)),
                    None,
                    None,
                ));
            }
        }
        for (name, old) in &unloaded {
            reports.push(plugin_report(name, "unload", Some((old.number, &old.plugin.meta().info)), None, None, None));
        }
        *self.plugins.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
        let changes = staged.map(|staged| self.pipeline.commit(staged)).unwrap_or_default();
        // A new version of the gateway's auth policy checks every client again, as a config
        // change does.
        let policy_reloaded = reloaded.iter().any(|name| config.service.gateway_auth.policy.as_ref() == Some(name));
        if (config_changed || policy_reloaded)
            && let Some(gateway_auth) = gateway_auth
        {
            self.gateway_auth.replace(Arc::new(gateway_auth));
        }
        if config_changed {
            if let Some(auth) = auth {
                self.http_auth.replace(Arc::new(auth));
            }
            self.max_body.store(config.http.max_body, Ordering::Relaxed);
            if !restart_required.is_empty() {
                tracing::warn!(keys = ?restart_required, "config changes that only take effect after a restart");
            }
            applied.generation += 1;
            reports.push(json!({
                "kind": "config", "result": "ok",
                "old_generation": old_generation, "new_generation": applied.generation,
                "old_sha256": old_sha256, "new_sha256": new_sha256,
                "changes": changes,
                "plugins_added": added,
                "plugins_reloaded": reloaded,
                "plugins_unloaded": unloaded.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                "restart_required": restart_required,
                "error": null,
            }));
            applied.config = config;
        }
        reports
    }

    /// Publishes a report on [`RELOAD_SUBJECT`]; nobody listening is fine.
    async fn publish(&self, report: &Value) {
        let event = Event {
            subject: RELOAD_SUBJECT.into(),
            context: Context {
                id: uuid::Uuid::now_v7().to_string(),
                source: "/eventyard/reload".into(),
                ty: "eventyard.reload".into(),
                specversion: "1.0".into(),
                subject: report["plugin"].as_str().or(report["kind"].as_str()).map(str::to_owned),
                time: None,
                datacontenttype: Some("application/json".into()),
                dataschema: None,
            },
            extensions: Vec::new(),
            data: Bytes::from(report.to_string()),
            nats: None,
            completion: None,
        };
        if let Err(err) = self.broker.publish(event).await {
            tracing::warn!(error = %err, "reload report not published");
        }
    }
}

/// The report of one plugin's change: `change` is `add`, `reload` or `unload`; `old` and `new` are
/// the generations before and after (a failed change has no `new`, and may know the new file's
/// hash); `error` makes it a failure.
fn plugin_report(
    name: &str,
    change: &str,
    old: Option<(u64, &ComponentInfo)>,
    new: Option<(u64, &ComponentInfo)>,
    new_sha256: Option<&str>,
    error: Option<String>,
) -> Value {
    let capabilities = |info: Option<(u64, &ComponentInfo)>| -> Vec<String> {
        info.map(|(_, info)| info.capabilities.iter().map(ToString::to_string).collect()).unwrap_or_default()
    };
    let (old_capabilities, new_capabilities) = (capabilities(old), capabilities(new));
    let (added, removed): (Vec<&String>, Vec<&String>) = if error.is_some() {
        (Vec::new(), Vec::new())
    } else {
        (
            new_capabilities.iter().filter(|c| !old_capabilities.contains(c)).collect(),
            old_capabilities.iter().filter(|c| !new_capabilities.contains(c)).collect(),
        )
    };
    json!({
        "kind": "plugin", "plugin": name, "change": change,
        "result": if error.is_some() { "failed" } else { "ok" },
        "old_generation": old.map(|(generation, _)| generation),
        "new_generation": new.map(|(generation, _)| generation),
        "old_sha256": old.map(|(_, info)| &info.sha256),
        "new_sha256": new.map(|(_, info)| info.sha256.as_str()).or(new_sha256),
        "capabilities_added": added, "capabilities_removed": removed,
        "error": error,
    })
}
