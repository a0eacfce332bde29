//! The router's plugins by name: which files a config asks for ([`plugin_plans`]), loading them
//! ([`load_plugins`]), what the config uses them for ([`references`]), and [`LivePlugin`], the
//! slot a plugin's users call through while reloads replace what is in it, or a [`Trial`] of a
//! new version runs beside it. Never decides when to reload, promote or roll back.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::auth::AuthPolicy;
use crate::config::{Config, HttpAuthPlan, HttpSettings, PluginPlan, SinkKindPlan};
use crate::gateway::{Authenticator, Authenticators};
use crate::ingest::http::{AdminAuth, Credentials, HttpAuth};
use crate::pipeline::PluginSlots;
use crate::plugin::{Plugin, PluginRuntime, Role};
use crate::route::{FailurePolicy, Handler, Rollout};
use crate::sink::Sink;
use crate::slot::Slot;

/// A loaded plugin with the settings it was loaded with.
pub struct LoadedPlugin {
    pub plugin: Plugin,
    /// What it was loaded from, kept for reloading it.
    pub plan: PluginPlan,
}

/// Every plan to load: the configured plugins, then each `*.wasm` file in the plugin directory that
/// no configured plugin claims (named after its file, `_` read as `-`).
pub async fn plugin_plans(config: &Config) -> Result<Vec<PluginPlan>, String> {
    let dir = &config.plugin_dir;
    let mut plans: Vec<PluginPlan> = config.plugins.values().cloned().collect();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        // No directory, no drop-ins; configured plugins then report their missing files.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(plans),
        Err(err) => return Err(format!("plugin directory {}: {err}", dir.display())),
    };
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
                loaded.insert(plan.name.clone(), LoadedPlugin { plugin, plan });
            }
            Err(err) => errors.push(err.to_string()),
        }
    }
    (loaded, errors)
}

/// One use of a plugin by the config: who uses it, its name, and the role it must have.
pub struct Reference {
    pub user: String,
    pub plugin: String,
    pub role: Role,
}

/// Every plugin the config uses: route handlers, plugin sinks, the HTTP and gateway auth policies.
pub fn references(config: &Config) -> Vec<Reference> {
    let mut uses = Vec::new();
    for route in &config.routes {
        for handler in &route.handlers {
            uses.push(Reference {
                user: format!("route `{}`", route.name),
                plugin: handler.clone(),
                role: Role::Handler,
            });
        }
    }
    for (name, sink) in &config.sinks {
        if let SinkKindPlan::Plugin(plugin) = &sink.kind {
            uses.push(Reference { user: format!("sink `{name}`"), plugin: plugin.clone(), role: Role::Sink });
        }
    }
    if let HttpAuthPlan::Policy(policy) = &config.http.auth {
        uses.push(Reference { user: "[http.auth] policy".into(), plugin: policy.clone(), role: Role::AuthPolicy });
    }
    for (listener, auth) in &config.service.auth {
        if let Some(policy) = &auth.policy {
            let user = match listener.as_str() {
                crate::gateway::MAIN_LISTENER => "[service.auth] policy".to_owned(),
                other => format!("[service.listeners.{other}.auth] policy"),
            };
            uses.push(Reference { user, plugin: policy.clone(), role: Role::AuthPolicy });
        }
    }
    if let Some(policy) = &config.http.admin.policy {
        uses.push(Reference { user: "[admin] policy".into(), plugin: policy.clone(), role: Role::AuthPolicy });
    }
    uses
}

/// Checks every plugin the config uses against `role_of` (the role of each loaded plugin): each
/// must be there and have the right role. Returns every problem.
pub fn check_references(config: &Config, role_of: impl Fn(&str) -> Option<Role>) -> Vec<String> {
    let mut problems: Vec<String> = references(config)
        .into_iter()
        .filter_map(|Reference { user, plugin, role }| match role_of(&plugin) {
            None => Some(format!("{user}: no plugin `{plugin}` is loaded")),
            Some(found) if found != role => {
                Some(format!("{user}: plugin `{plugin}` exports the {found} world, not the {role} world"))
            }
            Some(_) => None,
        })
        .collect();
    for (name, plan) in &config.plugins {
        if let (Some(_), Some(role)) = (&plan.rollout, role_of(name))
            && role != Role::Handler
        {
            problems.push(format!(
                "[plugin.{name}.rollout]: only handlers roll out, and `{name}` exports the {role} world"
            ));
        }
    }
    problems
}

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

/// What is in a plugin's slot now.
#[derive(Clone)]
pub struct Generation {
    pub number: u64,
    pub plan: PluginPlan,
    pub plugin: Plugin,
}

/// A new version of a handler running beside the serving one (see [`Rollout`]) until it is
/// promoted or rolled back.
#[derive(Clone)]
pub struct Trial {
    pub plan: PluginPlan,
    pub plugin: Plugin,
    pub rollout: Arc<Rollout>,
}

impl Trial {
    /// Whether this trial runs the version `plan` loads from a file hashing to `sha256`.
    pub fn runs(&self, plan: &PluginPlan, sha256: &str) -> bool {
        self.plan.same_version(plan) && self.plugin.meta().info.sha256 == sha256
    }
}

/// One plugin of the running router.
pub struct LivePlugin {
    pub slot: RoleSlot,
    state: Mutex<LiveState>,
}

struct LiveState {
    current: Generation,
    trial: Option<Trial>,
    /// The version last rolled back (plan and hash): it stays out until the file or settings change.
    rolled_back: Option<(PluginPlan, String)>,
}

impl LivePlugin {
    pub fn new(plan: PluginPlan, plugin: Plugin) -> Self {
        let current = Generation { number: 1, plan, plugin };
        LivePlugin {
            slot: RoleSlot::new(&current.plugin),
            state: Mutex::new(LiveState { current, trial: None, rolled_back: None }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The generation that serves now (beside a trial, if one runs).
    pub fn current(&self) -> Generation {
        self.state().current.clone()
    }

    /// The candidate running beside the serving version, if any.
    pub fn trial(&self) -> Option<Trial> {
        self.state().trial.clone()
    }

    /// Whether `plan` with a file hashing to `sha256` is the version last rolled back.
    pub fn rolled_back(&self, plan: &PluginPlan, sha256: &str) -> bool {
        self.state().rolled_back.as_ref().is_some_and(|(old, sha)| old.same_version(plan) && sha == sha256)
    }

    pub fn role(&self) -> Role {
        match self.slot {
            RoleSlot::Handler(_) => Role::Handler,
            RoleSlot::Sink(_) => Role::Sink,
            RoleSlot::AuthPolicy(_) => Role::AuthPolicy,
        }
    }

    /// Makes `plugin`, loaded from `plan`, the next generation (ending any trial); returns the old
    /// and new numbers, or `None` (changing nothing) when it has another role.
    pub fn replace(&self, plan: PluginPlan, plugin: Plugin) -> Option<(u64, u64)> {
        let mut state = self.state();
        let generations = self.slot.replace(&plugin)?;
        state.current = Generation { number: generations.1, plan, plugin };
        state.trial = None;
        state.rolled_back = None;
        Some(generations)
    }

    /// Keeps the serving version with `plan`, which loads the same version (only how new versions
    /// roll out changed).
    pub fn update_plan(&self, plan: PluginPlan) {
        self.state().current.plan = plan;
    }

    /// Runs `plugin`, loaded from `plan`, as a candidate beside the serving version, as
    /// `plan.rollout` says. Fails, changing nothing, unless both are handlers, `plan` has rollout
    /// settings and no trial runs.
    pub fn start_trial(&self, plan: PluginPlan, plugin: Plugin) -> Result<Trial, String> {
        let mut state = self.state();
        let (RoleSlot::Handler(slot), Plugin::Handler(stable), Plugin::Handler(candidate)) =
            (&self.slot, &state.current.plugin, &plugin)
        else {
            return Err("only handlers roll out beside their running version".into());
        };
        let Some(settings) = plan.rollout.clone() else { return Err("no [rollout] settings".into()) };
        if state.trial.is_some() {
            return Err("a candidate is already running".into());
        }
        let rollout = Arc::new(Rollout::new(settings, stable.clone(), candidate.clone()));
        slot.set(rollout.clone());
        let trial = Trial { plan, plugin, rollout };
        state.trial = Some(trial.clone());
        Ok(trial)
    }

    /// Makes the candidate the next generation; returns the trial and the old and new numbers.
    pub fn promote(&self) -> Option<(Trial, (u64, u64))> {
        let mut state = self.state();
        let trial = state.trial.take()?;
        let generations = self.slot.replace(&trial.plugin)?;
        state.current = Generation { number: generations.1, plan: trial.plan.clone(), plugin: trial.plugin.clone() };
        state.rolled_back = None;
        Some((trial, generations))
    }

    /// Ends the trial: the serving version takes every event again, and the candidate's version
    /// stays out until its file or settings change.
    pub fn roll_back(&self) -> Option<Trial> {
        let mut state = self.state();
        let trial = state.trial.take()?;
        if let RoleSlot::Handler(slot) = &self.slot {
            slot.set(trial.rollout.stable().clone());
        }
        state.rolled_back = Some((trial.plan.clone(), trial.plugin.meta().info.sha256.clone()));
        Some(trial)
    }
}

impl PluginSlots for BTreeMap<String, Arc<LivePlugin>> {
    fn handler(&self, name: &str) -> Option<(Arc<dyn Handler>, FailurePolicy)> {
        let live = self.get(name)?;
        match &live.slot {
            RoleSlot::Handler(slot) => Some((slot.clone() as Arc<dyn Handler>, live.current().plan.failure_policy)),
            _ => None,
        }
    }

    fn sink(&self, name: &str) -> Option<Arc<dyn Sink>> {
        match &self.get(name)?.slot {
            RoleSlot::Sink(slot) => Some(slot.clone() as Arc<dyn Sink>),
            _ => None,
        }
    }
}

/// The auth-policy plugin `name`, if one is loaded under that name.
fn auth_policy(name: &str, plugins: &BTreeMap<String, Arc<LivePlugin>>) -> Option<Arc<dyn AuthPolicy>> {
    match &plugins.get(name)?.slot {
        RoleSlot::AuthPolicy(slot) => Some(slot.clone()),
        _ => None,
    }
}

/// Who may publish over HTTP and who may call the admin endpoints, as `[http.auth]` and `[admin]`
/// say; `None` when an auth policy plugin they name is missing.
pub fn http_auth(http: &HttpSettings, plugins: &BTreeMap<String, Arc<LivePlugin>>) -> Option<HttpAuth> {
    let publish = match &http.auth {
        HttpAuthPlan::Open => Credentials::Open,
        HttpAuthPlan::Tokens(tokens) => Credentials::Tokens(tokens.clone().into()),
        HttpAuthPlan::Policy(name) => Credentials::Policy(auth_policy(name, plugins)?),
    };
    let admin = &http.admin;
    let policy = match &admin.policy {
        Some(name) => Some(auth_policy(name, plugins)?),
        None => None,
    };
    let admin = AdminAuth {
        tokens: admin.tokens.clone().into(),
        policy,
        account: admin.account.clone(),
        protect_metrics: admin.protect_metrics,
    };
    Some(HttpAuth { publish, admin })
}

/// How each listener's clients authenticate, as its auth section and TLS say; `None` when an auth
/// policy plugin is missing.
pub fn gateway_auth(config: &Config, plugins: &BTreeMap<String, Arc<LivePlugin>>) -> Option<Authenticators> {
    let listeners = config.service.gateway.as_ref().map(|gateway| gateway.listeners.as_slice()).unwrap_or_default();
    let mut authenticators = Authenticators::default();
    for (name, auth) in &config.service.auth {
        let policy = match &auth.policy {
            Some(policy) => Some(auth_policy(policy, plugins)?),
            None => None,
        };
        let tls = listeners.iter().find(|listener| &listener.name == name).and_then(|listener| listener.tls.as_ref());
        let map_tls = tls.is_some_and(|tls| tls.verify_and_map);
        authenticators.0.insert(name.clone(), Arc::new(Authenticator { config: auth.clone(), policy, map_tls }));
    }
    Some(authenticators)
}
