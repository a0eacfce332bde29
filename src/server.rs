//! Turns a validated [`Config`] into running parts and runs them until shutdown. Today that is the
//! plugin set: every configured plugin plus every file dropped into the plugin directory, loaded and
//! checked. Holds no protocol or routing logic.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;

use crate::config::{Config, PluginPlan};
use crate::plugin::{Plugin, PluginRuntime};
use crate::route::FailurePolicy;

/// A loaded plugin with the settings it was loaded with.
pub struct LoadedPlugin {
    pub plugin: Plugin,
    pub failure_policy: FailurePolicy,
    pub configured: bool,
}

/// Every plan to load: the configured plugins, then each `*.wasm` file in the plugin directory that
/// no configured plugin claims (named after its file, `_` read as `-`).
pub async fn plugin_plans(config: &Config) -> Result<Vec<PluginPlan>, String> {
    let dir = &config.plugin_dir;
    let mut entries =
        tokio::fs::read_dir(dir).await.map_err(|err| format!("plugin directory {}: {err}", dir.display()))?;
    let mut plans: Vec<PluginPlan> = config.plugins.values().cloned().collect();
    let mut found = Vec::new();
    while let Some(entry) =
        entries.next_entry().await.map_err(|err| format!("plugin directory {}: {err}", dir.display()))?
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    for path in found {
        if plans.iter().any(|plan| plan.file == path) {
            continue;
        }
        let name = path.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).unwrap_or_default();
        if plans.iter().any(|plan| plan.name == name) {
            continue;
        }
        plans.push(PluginPlan::drop_in(name, path, config));
    }
    Ok(plans)
}

/// Loads every plugin; returns the ones that loaded and one message per one that did not.
pub async fn load_plugins(config: &Config, runtime: &PluginRuntime) -> (BTreeMap<String, LoadedPlugin>, Vec<String>) {
    let (mut loaded, mut errors) = (BTreeMap::new(), Vec::new());
    let plans = match plugin_plans(config).await {
        Ok(plans) => plans,
        Err(err) => return (loaded, vec![err]),
    };
    for plan in plans {
        if !Path::new(&plan.file).is_file() {
            errors.push(format!("plugin `{}`: {} not found", plan.name, plan.file.display()));
            continue;
        }
        match runtime.load(plan.spec()).await {
            Ok(plugin) => {
                let entry = LoadedPlugin { plugin, failure_policy: plan.failure_policy, configured: plan.configured };
                loaded.insert(plan.name, entry);
            }
            Err(err) => errors.push(err.to_string()),
        }
    }
    (loaded, errors)
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = PluginRuntime::new(config.runtime.clone()).context("starting the plugin runtime")?;
    let (plugins, errors) = load_plugins(&config, &runtime).await;
    if !errors.is_empty() {
        anyhow::bail!("{} plugin(s) failed to load:\n  {}", errors.len(), errors.join("\n  "));
    }
    for (name, loaded) in &plugins {
        let info = &loaded.plugin.meta().info;
        tracing::info!(
            plugin = %name,
            world = info.world.as_deref().unwrap_or("none"),
            sha256 = %info.sha256,
            configured = loaded.configured,
            "plugin loaded"
        );
    }
    tracing::info!(plugins = plugins.len(), dir = %config.plugin_dir.display(), "eventyard running");
    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
