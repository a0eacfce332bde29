//! `eventyard plugin build`: turns a plugin directory into a component, whatever language it holds.
//! Rust (a `Cargo.toml`) builds with cargo for wasm32-wasip2; Python (`plugin.toml` and `app.py`)
//! with componentize-py; JavaScript (`plugin.toml` and `plugin.js`) with componentize-js. It only
//! runs the toolchains and copies what they made; it never loads a component.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::process::Command;

use super::Failure;
use crate::plugin::{WIT_PACKAGE, WIT_VERSION};

/// The WIT contract this build of eventyard speaks, written into every Python and JavaScript build
/// (and into a plugin directory by `plugin new`), unless the directory brings its own `wit/`.
pub(crate) const WIT_FILES: [(&str, &str); 3] = [
    ("types.wit", include_str!("../../wit/types.wit")),
    ("host.wit", include_str!("../../wit/host.wit")),
    ("worlds.wit", include_str!("../../wit/worlds.wit")),
];

/// The componentize-py release the Python plugins are built and tested with.
pub(crate) const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// What a plugin directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    Rust,
    Python,
    JavaScript,
}

/// `plugin.toml`: what a Python or JavaScript plugin is called, which world it implements and which
/// capabilities it uses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    world: String,
    /// `kafka`, `nats` (sinks) and `http` (JavaScript's `fetch`). Python and JavaScript components
    /// import everything their world names, used or not, and the host refuses a capability import
    /// that config does not grant: so the build gives them only these.
    #[serde(default)]
    capabilities: Vec<String>,
}

impl Manifest {
    /// The world the component is built for: `world` with only the capabilities asked for.
    fn built_world(&self) -> String {
        let export = match self.world.as_str() {
            "handler" => "event-handler",
            "sink" => "event-sink",
            _ => "authorizer",
        };
        let imports: String = self
            .capabilities
            .iter()
            .filter_map(|capability| match capability.as_str() {
                "kafka" => Some(" import kafka-producer;"),
                "nats" => Some(" import nats-publisher;"),
                _ => None,
            })
            .collect();
        format!(
            "package {WIT_PACKAGE}@{WIT_VERSION};\n\nworld {BUILT_WORLD} {{ include platform; export {export};{imports} }}\n"
        )
    }
}

/// The world `plugin build` writes beside `wit/`.
const BUILT_WORLD: &str = "built";

/// The capabilities `plugin.toml` may name.
const CAPABILITIES: [&str; 3] = ["kafka", "nats", "http"];

/// The worlds of `wit/worlds.wit` a plugin can implement.
const WORLDS: [&str; 3] = ["handler", "sink", "auth-policy"];

/// Which language the plugin in `dir` is written in, from the files it holds.
pub(crate) fn language(dir: &Path) -> Result<Language, Failure> {
    if dir.join("Cargo.toml").is_file() {
        return Ok(Language::Rust);
    }
    let (python, js) = (dir.join("app.py").is_file(), dir.join("plugin.js").is_file());
    match (dir.join("plugin.toml").is_file(), python, js) {
        (true, true, false) => Ok(Language::Python),
        (true, false, true) => Ok(Language::JavaScript),
        (true, true, true) => {
            Err(Failure::input(format!("{} holds both app.py and plugin.js; keep one", dir.display())))
        }
        _ => Err(Failure::input(format!(
            "{} holds no plugin: expected Cargo.toml (Rust), or plugin.toml with app.py (Python) or plugin.js (JavaScript)",
            dir.display()
        ))),
    }
}

/// Builds the plugin in `dir` and returns the components it made.
pub(crate) async fn build(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    // The toolchains run inside the directory; every path handed to them is absolute.
    let dir = &dir.canonicalize().map_err(|err| Failure::input(format!("{}: {err}", dir.display())))?;
    match language(dir)? {
        Language::Rust => build_rust(dir).await,
        language => build_with(dir, language).await.map(|wasm| vec![wasm]),
    }
}

async fn build_rust(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|err| Failure::input(format!("cannot run cargo: {err}")))?;
    if !output.status.success() {
        return Err(Failure::plugin(format!("cargo build failed in {}", dir.display())));
    }
    let built: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .flat_map(|msg| msg["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().filter(|f| f.ends_with(".wasm")).map(PathBuf::from))
        .collect();
    if built.is_empty() {
        return Err(Failure::plugin("cargo built no .wasm component; is the crate a cdylib?"));
    }
    Ok(built)
}

/// Builds a Python or JavaScript plugin into `dir/build/<name>.wasm` (dashes as underscores, as
/// cargo names a Rust plugin's component).
async fn build_with(dir: &Path, language: Language) -> Result<PathBuf, Failure> {
    let manifest = read_manifest(dir)?;
    let build = dir.join("build");
    let wit = build_wit(dir, &build.join("wit"), &manifest)?;
    let out = build.join(format!("{}.wasm", manifest.name.replace('-', "_")));
    let mut command = match language {
        Language::Python => {
            let mut command = Command::new("componentize-py");
            command.arg("-d").arg(&wit).args(["-w", BUILT_WORLD, "componentize", "app", "-p"]).arg(dir);
            command
        }
        _ => {
            let mut command = Command::new(componentize_js(dir).await?);
            command.arg(dir.join("plugin.js")).arg("--wit").arg(&wit).args(["--world-name", BUILT_WORLD]);
            // No WASI the host does not give every plugin: logs and time come from the world's
            // own imports (`log`, `clock`), and outbound HTTP only when asked for (and granted).
            command.args(["-d", "stdio", "random", "clocks", "fetch-event"]);
            if !manifest.capabilities.iter().any(|c| c == "http") {
                command.arg("http");
            }
            command
        }
    };
    command.arg("-o").arg(&out).current_dir(dir).stdout(Stdio::null()).stderr(Stdio::inherit());
    let status = command.status().await.map_err(|err| match language {
        Language::Python if err.kind() == std::io::ErrorKind::NotFound => Failure::input(format!(
            "componentize-py not found on PATH; install it with `pip install {COMPONENTIZE_PY}`"
        )),
        _ => Failure::input(format!("cannot run the {language:?} toolchain: {err}")),
    })?;
    if !status.success() {
        return Err(Failure::plugin(format!("building {} failed", dir.display())));
    }
    Ok(out)
}

fn read_manifest(dir: &Path) -> Result<Manifest, Failure> {
    let path = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|err| Failure::input(format!("cannot read {}: {err}", path.display())))?;
    let manifest: Manifest =
        toml::from_str(&text).map_err(|err| Failure::input(format!("{}: {}", path.display(), err.message())))?;
    if !WORLDS.contains(&manifest.world.as_str()) {
        return Err(Failure::input(format!(
            "{}: world `{}` is not one of {}",
            path.display(),
            manifest.world,
            WORLDS.join(", ")
        )));
    }
    if let Some(unknown) = manifest.capabilities.iter().find(|c| !CAPABILITIES.contains(&c.as_str())) {
        return Err(Failure::input(format!(
            "{}: capability `{unknown}` is not one of {}",
            path.display(),
            CAPABILITIES.join(", ")
        )));
    }
    Ok(manifest)
}

/// Writes the WIT a Python or JavaScript build uses into `out`: the directory's own `wit/` if it
/// has one, else this build's, plus the world it is built for.
fn build_wit(dir: &Path, out: &Path, manifest: &Manifest) -> Result<PathBuf, Failure> {
    let own = dir.join("wit");
    if own.is_dir() {
        std::fs::create_dir_all(out)
            .map_err(|err| Failure::input(format!("cannot create {}: {err}", out.display())))?;
        for (file, _) in WIT_FILES {
            std::fs::copy(own.join(file), out.join(file))
                .map_err(|err| Failure::input(format!("cannot copy {}: {err}", own.join(file).display())))?;
        }
    } else {
        write_wit(out)?;
    }
    let world = out.join("built.wit");
    std::fs::write(&world, manifest.built_world())
        .map_err(|err| Failure::input(format!("cannot write {}: {err}", world.display())))?;
    Ok(out.to_owned())
}

/// Writes this build's WIT contract into `dir` and returns it.
pub(crate) fn write_wit(dir: &Path) -> Result<PathBuf, Failure> {
    let cannot = |err: std::io::Error| Failure::input(format!("cannot write {}: {err}", dir.display()));
    std::fs::create_dir_all(dir).map_err(cannot)?;
    for (file, text) in WIT_FILES {
        std::fs::write(dir.join(file), text).map_err(cannot)?;
    }
    Ok(dir.to_owned())
}

/// The componentize-js CLI: `node_modules/.bin/componentize-js` in `dir` or a directory above it,
/// installed from the directory's `package.json` with npm when there is none yet.
async fn componentize_js(dir: &Path) -> Result<PathBuf, Failure> {
    let find = || {
        dir.ancestors().map(|ancestor| ancestor.join("node_modules/.bin/componentize-js")).find(|path| path.is_file())
    };
    if let Some(cli) = find() {
        return Ok(cli);
    }
    if !dir.join("package.json").is_file() {
        return Err(Failure::input(format!(
            "componentize-js not found in node_modules of {} or above, and no package.json to install it from \
             (`eventyard plugin new --lang js` writes one)",
            dir.display()
        )));
    }
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .await
        .map_err(|err| Failure::input(format!("cannot run npm (install Node.js and npm): {err}")))?;
    match find() {
        Some(cli) if status.success() => Ok(cli),
        _ => Err(Failure::plugin(format!("npm install in {} did not install componentize-js", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_a_directory_holds_name_its_language() {
        let dir = std::env::temp_dir().join(format!("eventyard-language-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let language_of = |files: &[&str]| {
            for file in std::fs::read_dir(&dir).expect("temp dir").flatten() {
                std::fs::remove_file(file.path()).expect("removes");
            }
            for file in files {
                std::fs::write(dir.join(file), "").expect("writes");
            }
            language(&dir).ok()
        };
        assert_eq!(language_of(&["Cargo.toml"]), Some(Language::Rust));
        assert_eq!(language_of(&["plugin.toml", "app.py"]), Some(Language::Python));
        assert_eq!(language_of(&["plugin.toml", "plugin.js"]), Some(Language::JavaScript));
        assert_eq!(language_of(&["plugin.toml", "app.py", "plugin.js"]), None);
        assert_eq!(language_of(&["app.py"]), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_built_world_imports_only_the_capabilities_asked_for() {
        let manifest = |world: &str, capabilities: &[&str]| Manifest {
            name: "x".into(),
            world: world.into(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
        };
        let sink = manifest("sink", &[]).built_world();
        assert!(sink.contains("world built { include platform; export event-sink; }"), "{sink}");
        let sink = manifest("sink", &["nats", "http"]).built_world();
        assert!(sink.contains("export event-sink; import nats-publisher; }"), "{sink}");
        assert!(!sink.contains("kafka"), "{sink}");
        assert!(manifest("auth-policy", &[]).built_world().contains("export authorizer;"));
    }
}
