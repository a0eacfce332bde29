//! Validation: from what serde read ([`ConfigFile`]) to a checked [`Config`], or every error found,
//! each with its dotted key and line. Pure: no files, sockets or tasks; whether a plugin file exists
//! and loads is the loader's business.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::model::{ConfigFile, LimitsConfig, PluginConfig, WorldName};
use super::{Config, ConfigError, PluginPlan};
use crate::plugin::{Grants, Limits, Role, RuntimeOptions};

/// Largest `memory_limit` a plugin may have.
pub const MAX_MEMORY_LIMIT: usize = 1 << 30;
/// Longest `timeout_ms` a plugin may have.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// Turns byte offsets into line numbers.
pub(crate) struct Lines<'a>(pub &'a str);

impl Lines<'_> {
    pub fn of(&self, span: Range<usize>) -> usize {
        let at = span.start.min(self.0.len());
        self.0[..at].matches('\n').count() + 1
    }
}

struct Checker<'a> {
    lines: Lines<'a>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, key: impl Into<String>, span: Range<usize>, reason: impl Into<String>) {
        // A span of 0..0 means the value came from a default, so there is no line to name.
        let line = if span == (0..0) { 0 } else { self.lines.of(span) };
        self.errors.push(ConfigError { key: key.into(), line, reason: reason.into() });
    }

    /// Checks `value` is within `min..=max`.
    fn range<T: PartialOrd + Copy + std::fmt::Display>(&mut self, key: &str, value: &Spanned<T>, min: T, max: T) {
        let v = *value.get_ref();
        if v < min || v > max {
            self.error(key, value.span(), format!("must be between {min} and {max}, got {v}"));
        }
    }

    /// `overrides` over `defaults` over the built-in defaults, each value checked once.
    fn limits(&mut self, prefix: &str, overrides: &LimitsConfig, defaults: &Limits, consume_fuel: bool) -> Limits {
        let mut limits = defaults.clone();
        if let Some(memory) = &overrides.memory_limit {
            let bytes = Spanned::new(memory.span(), memory.get_ref().0);
            self.range(&format!("{prefix}.memory_limit"), &bytes, 1 << 20, MAX_MEMORY_LIMIT);
            limits.memory_limit = *bytes.get_ref();
        }
        if let Some(timeout) = &overrides.timeout_ms {
            self.range(&format!("{prefix}.timeout_ms"), timeout, 1, MAX_TIMEOUT_MS);
            limits.timeout = Duration::from_millis(*timeout.get_ref());
        }
        if let Some(fuel) = &overrides.fuel {
            if !consume_fuel {
                self.error(format!("{prefix}.fuel"), fuel.span(), "needs `consume_fuel = true` in [plugins]");
            }
            limits.fuel = Some(*fuel.get_ref());
        }
        if let Some(max) = &overrides.max_instances {
            self.range(&format!("{prefix}.max_instances"), max, 1, 1024);
            limits.max_instances = *max.get_ref();
        }
        if let Some(after) = &overrides.quarantine_after {
            self.range(&format!("{prefix}.quarantine_after"), after, 1, u32::MAX);
            limits.quarantine_after = *after.get_ref();
        }
        if let Some(backoff) = &overrides.quarantine_backoff_ms {
            self.range(&format!("{prefix}.quarantine_backoff_ms"), backoff, 1, 3_600_000);
            limits.quarantine_backoff = Duration::from_millis(*backoff.get_ref());
        }
        limits
    }

    fn plugin(&mut self, name: &str, span: Range<usize>, plugin: &PluginConfig, config: &Config) -> PluginPlan {
        let key = format!("plugin.{name}");
        let valid_name = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if name.is_empty() || !valid_name {
            self.error(&key, span.clone(), "plugin names use lowercase letters, digits, `-` and `_`");
        }
        let file = plugin.file.clone().unwrap_or_else(|| format!("{}.wasm", name.replace('-', "_")));
        if file.contains('/') || !file.ends_with(".wasm") {
            self.error(
                format!("{key}.file"),
                span.clone(),
                format!("`{file}` must be a .wasm file name inside [plugins] dir"),
            );
        }
        let caps = &plugin.capabilities;
        let grants = Grants {
            http_hosts: caps.http.clone(),
            directory: caps.directory.clone(),
            kafka: caps.kafka.then_some(None),
            nats: caps.nats.then_some(None),
        };
        if caps.http.as_ref().is_some_and(Vec::is_empty) {
            self.error(
                format!("{key}.capabilities.http"),
                span.clone(),
                "lists no hosts; leave it out to grant no HTTP",
            );
        }
        if let Some(hosts) = &caps.http
            && let Some(bad) = hosts.iter().find(|h| h.is_empty() || h.contains('/') || h.contains('@'))
        {
            self.error(format!("{key}.capabilities.http"), span.clone(), format!("`{bad}` is not a host or host:port"));
        }
        PluginPlan {
            name: name.to_owned(),
            file: config.plugin_dir.join(file),
            role: plugin.world.map(|w| match w {
                WorldName::Handler => Role::Handler,
                WorldName::Sink => Role::Sink,
                WorldName::AuthPolicy => Role::AuthPolicy,
            }),
            failure_policy: plugin.failure_policy.unwrap_or(config.failure_policy),
            limits: self.limits(
                &format!("{key}.limits"),
                &plugin.limits,
                &config.default_limits,
                config.runtime.consume_fuel,
            ),
            config: plugin.config.iter().map(|(k, v)| (k.clone(), setting_text(v))).collect(),
            grants,
            configured: true,
        }
    }
}

/// A TOML value as a plugin sees it: strings as they are, anything else as JSON text.
fn setting_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// Checks everything in `file` (parsed from `text`); returns the config or every error.
pub fn validate(file: &ConfigFile, text: &str) -> Result<Config, Vec<ConfigError>> {
    let mut check = Checker { lines: Lines(text), errors: Vec::new() };
    let level = file.log.level.get_ref();
    if tracing_subscriber::EnvFilter::try_new(level).is_err() {
        check.error("log.level", file.log.level.span(), format!("`{level}` is not a log level or filter"));
    }
    let plugins = &file.plugins;
    check.range("plugins.pool_instances", &plugins.pool_instances, 1, 10_000);
    let cache_dir = (!plugins.cache_dir.as_os_str().is_empty()).then(|| plugins.cache_dir.clone());
    let mut config = Config {
        log_format: file.log.format,
        log_level: level.clone(),
        plugin_dir: plugins.dir.clone(),
        runtime: RuntimeOptions {
            pool_instances: *plugins.pool_instances.get_ref(),
            max_memory_limit: MAX_MEMORY_LIMIT,
            consume_fuel: plugins.consume_fuel,
            cache_dir,
            ..RuntimeOptions::default()
        },
        failure_policy: plugins.failure_policy,
        default_limits: Limits::default(),
        plugins: BTreeMap::new(),
    };
    config.default_limits =
        check.limits("plugins.defaults", &plugins.defaults, &Limits::default(), plugins.consume_fuel);
    for (name, plugin) in &file.plugin {
        let plan = check.plugin(name, plugin.span(), plugin.get_ref(), &config);
        config.plugins.insert(name.clone(), plan);
    }
    let files: Vec<&PathBuf> = config.plugins.values().map(|p| &p.file).collect();
    for (i, file_path) in files.iter().enumerate() {
        if files[..i].contains(file_path) {
            let name = config.plugins.values().nth(i).map(|p| p.name.clone()).unwrap_or_default();
            let span = file.plugin.get(&name).map(|p| p.span()).unwrap_or(0..0);
            check.error(
                format!("plugin.{name}.file"),
                span,
                format!("{} is used by another plugin too", file_path.display()),
            );
        }
    }
    if check.errors.is_empty() { Ok(config) } else { Err(check.errors) }
}
