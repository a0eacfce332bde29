//! The Rust SDK as `plugin new` vendors it into a plugin: its sources, built into this binary, and
//! a manifest of its own (the workspace's inherited settings written out), so a scaffolded plugin
//! builds anywhere, without the repository this binary was built from. It writes files and never
//! runs a toolchain.

use std::path::Path;

use toml::{Table, Value};

use super::Failure;

/// Where a scaffold keeps the SDK, relative to the plugin directory; the SDK reads the WIT
/// contract from `../../wit`, the plugin's own `wit/`, as in the repository.
pub(crate) const VENDORED: &str = "vendor/eventyard-sdk";

/// The SDK's sources, by path inside the crate.
const SOURCES: [(&str, &str); 11] = [
    ("src/auth.rs", include_str!("../../plugins/sdk/src/auth.rs")),
    ("src/config.rs", include_str!("../../plugins/sdk/src/config.rs")),
    ("src/event.rs", include_str!("../../plugins/sdk/src/event.rs")),
    ("src/handler.rs", include_str!("../../plugins/sdk/src/handler.rs")),
    ("src/host.rs", include_str!("../../plugins/sdk/src/host.rs")),
    ("src/http.rs", include_str!("../../plugins/sdk/src/http.rs")),
    ("src/lend.rs", include_str!("../../plugins/sdk/src/lend.rs")),
    ("src/lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    ("src/sink.rs", include_str!("../../plugins/sdk/src/sink.rs")),
    ("src/subject.rs", include_str!("../../plugins/sdk/src/subject.rs")),
    ("src/wit.rs", include_str!("../../plugins/sdk/src/wit.rs")),
];

/// The SDK's manifest, which inherits from the workspace's.
const MANIFEST: &str = include_str!("../../plugins/sdk/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../Cargo.toml");

/// Writes the SDK into `dir` (which must not exist yet).
pub(crate) fn vendor(dir: &Path) -> Result<(), Failure> {
    let manifest = standalone_manifest().map_err(|reason| Failure::input(format!("the built-in SDK: {reason}")))?;
    let files = SOURCES.iter().copied().chain([("Cargo.toml", manifest.as_str())]);
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| Failure::input(format!("cannot create {}: {err}", parent.display())))?;
        }
        std::fs::write(&path, text).map_err(|err| Failure::input(format!("cannot write {}: {err}", path.display())))?;
    }
    Ok(())
}

/// The SDK's manifest with everything it inherits from the workspace written in, as `cargo
/// package` would: package fields, dependencies (their own keys over the workspace's, features
/// added) and lints.
fn standalone_manifest() -> Result<String, String> {
    let workspace: Table = WORKSPACE_MANIFEST.parse().map_err(|err| format!("workspace manifest: {err}"))?;
    let inherited = |key: &str| {
        workspace.get("workspace").and_then(|w| w.get(key)).and_then(Value::as_table).cloned().unwrap_or_default()
    };
    let (package_fields, dependencies, lints) = (inherited("package"), inherited("dependencies"), inherited("lints"));
    let mut manifest: Table = MANIFEST.parse().map_err(|err| format!("SDK manifest: {err}"))?;
    if let Some(Value::Table(package)) = manifest.get_mut("package") {
        for (key, value) in package.iter_mut() {
            if is_inherited(value) {
                *value =
                    package_fields.get(key).cloned().ok_or_else(|| format!("the workspace has no package.{key}"))?;
            }
        }
    }
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(Value::Table(listed)) = manifest.get_mut(section) else { continue };
        for (name, value) in listed.iter_mut() {
            if is_inherited(value) {
                let base = dependencies.get(name).ok_or_else(|| format!("the workspace has no dependency {name}"))?;
                *value = Value::Table(merged(base, value));
            }
        }
    }
    if manifest.get("lints").is_some_and(is_inherited) {
        manifest.insert("lints".into(), Value::Table(lints));
    }
    // `[package]` first, as people write it.
    let package = Table::from_iter(manifest.remove_entry("package"));
    let (package, rest) = (toml::to_string(&package), toml::to_string(&manifest));
    let (package, rest) = (package.map_err(|err| err.to_string())?, rest.map_err(|err| err.to_string())?);
    Ok(format!(
        "# Written by `eventyard plugin new`: the SDK of the eventyard that made this plugin.\n{package}\n{rest}"
    ))
}

/// `{ workspace = true, ... }`
fn is_inherited(value: &Value) -> bool {
    value.get("workspace").and_then(Value::as_bool) == Some(true)
}

/// A dependency the workspace lists as `base`, with the member's own keys (`local`) over it.
fn merged(base: &Value, local: &Value) -> Table {
    let mut dependency = match base {
        Value::String(version) => Table::from_iter([("version".to_owned(), Value::String(version.clone()))]),
        Value::Table(table) => table.clone(),
        _ => Table::new(),
    };
    for (key, value) in local.as_table().into_iter().flatten().filter(|(key, _)| *key != "workspace") {
        match (key.as_str(), dependency.get_mut(key), value) {
            ("features", Some(Value::Array(features)), Value::Array(more)) => features.extend(more.iter().cloned()),
            _ => {
                dependency.insert(key.clone(), value.clone());
            }
        }
    }
    dependency
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_of_the_sdk_is_built_in() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&src)
            .expect("the SDK's sources")
            .map(|entry| format!("src/{}", entry.expect("an entry").file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let built_in: Vec<&str> = SOURCES.iter().map(|(path, _)| *path).collect();
        assert_eq!(on_disk, built_in, "list every file of plugins/sdk/src in SOURCES");
    }

    #[test]
    fn the_vendored_manifest_inherits_nothing() {
        let manifest: Table = standalone_manifest().expect("a manifest").parse().expect("TOML");
        let text = toml::to_string(&manifest).expect("TOML");
        assert!(!text.contains("workspace"), "{text}");
        assert_eq!(manifest["package"]["name"].as_str(), Some("eventyard-sdk"));
        assert_eq!(manifest["package"]["edition"].as_str(), Some("2024"));
        let dependencies = manifest["dependencies"].as_table().expect("dependencies");
        assert!(dependencies["serde"]["features"].as_array().expect("features").contains(&"derive".into()));
        assert_eq!(dependencies["wasi"]["optional"].as_bool(), Some(true), "the member's own keys stay");
        assert!(manifest["lints"]["clippy"].get("unwrap_used").is_some());
    }
}
