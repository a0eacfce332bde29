//! What a reload reports: one [`ReloadReport`] per change or failure. The same value is logged,
//! counted, published as JSON on `$SYS.EVENTYARD.RELOAD` and returned by `POST /v1/admin/reload`;
//! its JSON form is the contract (docs/operations.md), so fields change only by being added.

use serde::{Deserialize, Serialize};

use crate::pipeline::Changes;
use crate::plugin::ComponentInfo;
use crate::route::{RolloutFigures, RolloutMode};

/// One change a reload made, or one it could not make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReloadReport {
    /// The config file: applied, or refused with nothing changed.
    Config(ConfigReport),
    /// One plugin added, reloaded or unloaded, or a file that could not be.
    Plugin(PluginReport),
    /// A new version of a plugin started beside the serving one, promoted, or rolled back.
    Rollout(RolloutReport),
}

/// Whether a change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
}

/// A config reload: generations count the configs applied since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReport {
    pub result: Outcome,
    pub old_generation: u64,
    pub new_generation: Option<u64>,
    pub old_sha256: Option<String>,
    /// The new file's hash, when it could be read.
    pub new_sha256: Option<String>,
    /// What an applied config changed; absent from a failed report.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<ConfigApplied>,
    /// Every problem found, `; `-separated, when it failed.
    pub error: Option<String>,
}

/// What applying a config changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigApplied {
    /// Sinks and routes added, changed and removed.
    pub changes: Changes,
    pub plugins_added: Vec<String>,
    pub plugins_reloaded: Vec<String>,
    pub plugins_unloaded: Vec<String>,
    /// Keys changed in the file that keep their running value until a restart.
    pub restart_required: Vec<String>,
}

/// What happened to a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginChange {
    Add,
    Reload,
    Unload,
}

/// A plugin's change: generations count the versions of one plugin since it was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginReport {
    pub plugin: String,
    pub change: PluginChange,
    pub result: Outcome,
    pub old_generation: Option<u64>,
    /// Absent when the change failed.
    pub new_generation: Option<u64>,
    pub old_sha256: Option<String>,
    /// The new version's hash; a failed change knows it when the file could be read.
    pub new_sha256: Option<String>,
    /// Capabilities the new version has and the old one had not (none when it failed).
    pub capabilities_added: Vec<String>,
    pub capabilities_removed: Vec<String>,
    pub error: Option<String>,
}

impl ReloadReport {
    pub fn is_ok(&self) -> bool {
        let result = match self {
            ReloadReport::Config(report) => report.result,
            ReloadReport::Plugin(report) => report.result,
            ReloadReport::Rollout(report) => report.result,
        };
        result == Outcome::Ok
    }

    /// What the report is about, as its event's CloudEvents `subject`: the plugin, or `config`.
    pub fn about(&self) -> &str {
        match self {
            ReloadReport::Config(_) => "config",
            ReloadReport::Plugin(report) => &report.plugin,
            ReloadReport::Rollout(report) => &report.plugin,
        }
    }

    /// The report as JSON, as it is published.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl ConfigReport {
    /// A config that was not applied: nothing changed.
    pub fn failed(
        old_generation: u64,
        old_sha256: Option<String>,
        new_sha256: Option<String>,
        errors: &[String],
    ) -> Self {
        ConfigReport {
            result: Outcome::Failed,
            old_generation,
            new_generation: None,
            old_sha256,
            new_sha256,
            applied: None,
            error: Some(errors.join("; ")),
        }
    }
}

/// A step of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStep {
    /// A candidate runs beside the serving version.
    Started,
    /// The candidate is the serving version now.
    Promoted,
    /// The candidate is gone; the serving version takes every event again.
    RolledBack,
}

/// Who took a rollout step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The rollout's rules.
    Rules,
    /// An operator, through the admin API.
    Operator,
    /// A reload: a new version arrived, or the serving one came back.
    Reload,
}

/// A rollout's step, with the figures it was based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutReport {
    pub plugin: String,
    pub step: RolloutStep,
    /// Always `ok`: a candidate that cannot start is a failed plugin report.
    pub result: Outcome,
    pub by: DecidedBy,
    pub mode: RolloutMode,
    /// The serving version's generation before the step.
    pub stable_generation: u64,
    /// The candidate's generation once promoted.
    pub new_generation: Option<u64>,
    pub stable_sha256: String,
    pub candidate_sha256: String,
    pub reason: String,
    /// What the rollout counted up to the step (none when it starts).
    pub figures: Option<RolloutFigures>,
}

/// One side of a plugin change: its generation and what its file holds.
pub type Version<'a> = (u64, &'a ComponentInfo);

impl PluginReport {
    /// A plugin change from its `old` and `new` versions (a failed change has no `new`, and may know
    /// the new file's hash); `error` makes it a failure.
    pub fn new(
        plugin: &str,
        change: PluginChange,
        old: Option<Version<'_>>,
        new: Option<Version<'_>>,
        new_sha256: Option<&str>,
        error: Option<String>,
    ) -> Self {
        let capabilities = |version: Option<Version<'_>>| -> Vec<String> {
            version.map(|(_, info)| info.capabilities.iter().map(ToString::to_string).collect()).unwrap_or_default()
        };
        let (old_capabilities, new_capabilities) = (capabilities(old), capabilities(new));
        let (added, removed) = if error.is_some() {
            (Vec::new(), Vec::new())
        } else {
            (
                new_capabilities.iter().filter(|c| !old_capabilities.contains(c)).cloned().collect(),
                old_capabilities.iter().filter(|c| !new_capabilities.contains(c)).cloned().collect(),
            )
        };
        PluginReport {
            plugin: plugin.to_owned(),
            change,
            result: if error.is_some() { Outcome::Failed } else { Outcome::Ok },
            old_generation: old.map(|(generation, _)| generation),
            new_generation: new.map(|(generation, _)| generation),
            old_sha256: old.map(|(_, info)| info.sha256.clone()),
            new_sha256: new.map(|(_, info)| info.sha256.as_str()).or(new_sha256).map(str::to_owned),
            capabilities_added: added,
            capabilities_removed: removed,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_keep_their_json_form() {
        let failed = ReloadReport::Config(ConfigReport::failed(3, Some("a".into()), None, &["x".into(), "y".into()]));
        assert_eq!(
            failed.to_json(),
            serde_json::json!({
                "kind": "config", "result": "failed", "old_generation": 3, "new_generation": null,
                "old_sha256": "a", "new_sha256": null, "error": "x; y"
            })
        );
        let applied = ReloadReport::Config(ConfigReport {
            result: Outcome::Ok,
            old_generation: 1,
            new_generation: Some(2),
            old_sha256: None,
            new_sha256: Some("b".into()),
            applied: Some(ConfigApplied { plugins_added: vec!["p".into()], ..ConfigApplied::default() }),
            error: None,
        });
        let json = applied.to_json();
        assert_eq!((json["kind"].as_str(), json["plugins_added"][0].as_str()), (Some("config"), Some("p")));
        assert_eq!(json["changes"]["sinks_added"], serde_json::json!([]));
        for report in [failed, applied] {
            assert_eq!(serde_json::from_value::<ReloadReport>(report.to_json()).unwrap(), report);
        }
        let rolled_back = ReloadReport::Rollout(RolloutReport {
            plugin: "p".into(),
            step: RolloutStep::RolledBack,
            result: Outcome::Ok,
            by: DecidedBy::Rules,
            mode: RolloutMode::Canary,
            stable_generation: 2,
            new_generation: None,
            stable_sha256: "a".into(),
            candidate_sha256: "b".into(),
            reason: "error rate".into(),
            figures: None,
        });
        let json = rolled_back.to_json();
        assert_eq!(
            (json["kind"].as_str(), json["step"].as_str(), json["by"].as_str(), json["mode"].as_str()),
            (Some("rollout"), Some("rolled_back"), Some("rules"), Some("canary"))
        );
        assert_eq!((rolled_back.about(), rolled_back.is_ok()), ("p", true));
        assert_eq!(serde_json::from_value::<ReloadReport>(json).unwrap(), rolled_back);
        let unload = ReloadReport::Plugin(PluginReport::new("p", PluginChange::Unload, None, None, None, None));
        assert_eq!((unload.to_json()["change"].as_str(), unload.about(), unload.is_ok()), (Some("unload"), "p", true));
    }
}
