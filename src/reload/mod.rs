//! Hot reload of plugins. Every plugin the router uses sits in a [`Slot`]; a reload loads the new
//! version of each changed file beside the running one (compile, check, `init`) and swaps it in only
//! if all of that passed, so a broken file leaves the old generation serving. Each change publishes
//! a report on `$SYS.EVENTYARD.RELOAD` and is logged. Never changes the running system piece by
//! piece: one plugin swaps atomically or not at all.
//!
//! Triggers: a change in the plugin directory ([`watch`]), SIGHUP and `POST /v1/admin/reload`
//! (config reload comes next).

pub mod slot;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Value, json};

pub use slot::Slot;

use crate::auth::AuthPolicy;
use crate::broker::Broker;
use crate::config::PluginPlan;
use crate::event::{Context, Event};
use crate::plugin::{Plugin, PluginRuntime, content_hash};
use crate::route::Handler;
use crate::sink::Sink;

/// Where reload reports are published.
pub const RELOAD_SUBJECT: &str = "$SYS.EVENTYARD.RELOAD";

/// The slot a plugin's users call through, by role.
#[derive(Clone)]
pub enum RoleSlot {
    Handler(Arc<Slot<dyn Handler>>),
    Sink(Arc<Slot<dyn Sink>>),
    AuthPolicy(Arc<Slot<dyn AuthPolicy>>),
}

impl RoleSlot {
    fn new(plugin: &Plugin) -> RoleSlot {
        match plugin {
            Plugin::Handler(p) => RoleSlot::Handler(Arc::new(Slot::new(p.clone() as Arc<dyn Handler>))),
            Plugin::Sink(p) => RoleSlot::Sink(Arc::new(Slot::new(p.clone() as Arc<dyn Sink>))),
            Plugin::AuthPolicy(p) => RoleSlot::AuthPolicy(Arc::new(Slot::new(p.clone() as Arc<dyn AuthPolicy>))),
        }
    }

    /// Puts `plugin` in the slot; `None` when it has another role than the slot.
    fn replace(&self, plugin: &Plugin) -> Option<(u64, u64)> {
        match (self, plugin) {
            (RoleSlot::Handler(slot), Plugin::Handler(p)) => Some(slot.replace(p.clone())),
            (RoleSlot::Sink(slot), Plugin::Sink(p)) => Some(slot.replace(p.clone())),
            (RoleSlot::AuthPolicy(slot), Plugin::AuthPolicy(p)) => Some(slot.replace(p.clone())),
            _ => None,
        }
    }
}

/// One plugin of the running router.
pub struct LivePlugin {
    pub plan: PluginPlan,
    pub slot: RoleSlot,
    /// The generation in the slot, for its metadata and statistics.
    current: Mutex<Plugin>,
}

impl LivePlugin {
    pub fn new(plan: PluginPlan, plugin: Plugin) -> Self {
        LivePlugin { slot: RoleSlot::new(&plugin), current: Mutex::new(plugin), plan }
    }

    /// The plugin in the slot now.
    pub fn current(&self) -> Plugin {
        match self.current.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Reloads the router's plugins.
pub struct Reloader {
    runtime: PluginRuntime,
    plugins: BTreeMap<String, LivePlugin>,
    broker: Arc<dyn Broker>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
    pub reloads: AtomicU64,
    pub failures: AtomicU64,
}

impl Reloader {
    pub fn new(runtime: PluginRuntime, plugins: BTreeMap<String, LivePlugin>, broker: Arc<dyn Broker>) -> Self {
        Reloader {
            runtime,
            plugins,
            broker,
            running: Default::default(),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub fn plugins(&self) -> &BTreeMap<String, LivePlugin> {
        &self.plugins
    }

    /// Reloads every plugin whose file changed; returns one report per plugin that changed.
    pub async fn reload_plugins(&self) -> Vec<Value> {
        let _one_at_a_time = self.running.lock().await;
        let mut reports = Vec::new();
        for (name, live) in &self.plugins {
            let old = live.current();
            let old_info = &old.meta().info;
            let bytes = match tokio::fs::read(&live.plan.file).await {
                Ok(bytes) => bytes,
                Err(err) => {
                    let error = format!(
                        "cannot read {}: {err}; the running generation keeps serving",
                        live.plan.file.display()
                    );
                    reports.push(self.failed(name, old_info, None, error));
                    continue;
                }
            };
            let new_sha256 = tokio::task::spawn_blocking(move || content_hash(&bytes)).await.unwrap_or_default();
            if new_sha256 == old_info.sha256 {
                continue;
            }
            let new = match self.runtime.load(live.plan.spec()).await {
                Ok(new) => new,
                Err(err) => {
                    reports.push(self.failed(name, old_info, Some(&new_sha256), err.to_string()));
                    continue;
                }
            };
            let Some((old_generation, new_generation)) = live.slot.replace(&new) else {
                let error = format!("the new file exports the {} world; the plugin is a {}", new.role(), old.role());
                reports.push(self.failed(name, old_info, Some(&new_sha256), error));
                continue;
            };
            let new_info = new.meta().info.clone();
            if let Ok(mut current) = live.current.lock() {
                *current = new;
            }
            self.reloads.fetch_add(1, Ordering::Relaxed);
            let added: Vec<String> = new_info
                .capabilities
                .iter()
                .filter(|c| !old_info.capabilities.contains(c))
                .map(|c| c.to_string())
                .collect();
            let removed: Vec<String> = old_info
                .capabilities
                .iter()
                .filter(|c| !new_info.capabilities.contains(c))
                .map(|c| c.to_string())
                .collect();
            tracing::info!(plugin = %name, old_generation, new_generation, sha256 = %new_info.sha256, "plugin reloaded");
            reports.push(json!({
                "kind": "plugin", "plugin": name, "result": "ok",
                "old_generation": old_generation, "new_generation": new_generation,
                "old_sha256": old_info.sha256, "new_sha256": new_info.sha256,
                "capabilities_added": added, "capabilities_removed": removed, "error": null,
            }));
        }
        for report in &reports {
            self.publish(report).await;
        }
        reports
    }

    fn failed(&self, name: &str, old: &crate::plugin::ComponentInfo, new_sha256: Option<&str>, error: String) -> Value {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(plugin = %name, error = %error, "plugin reload failed, the old generation keeps serving");
        json!({
            "kind": "plugin", "plugin": name, "result": "failed",
            "old_sha256": old.sha256, "new_sha256": new_sha256,
            "capabilities_added": [], "capabilities_removed": [], "error": error,
        })
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
                subject: report["plugin"].as_str().map(str::to_owned),
                time: None,
                datacontenttype: Some("application/json".into()),
                dataschema: None,
            },
            extensions: Vec::new(),
            data: Bytes::from(report.to_string()),
        };
        if let Err(err) = self.broker.publish(event).await {
            tracing::warn!(error = %err, "reload report not published");
        }
    }
}
