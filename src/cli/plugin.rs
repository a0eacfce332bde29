//! `eventyard plugin ...`: scaffold (`new`), build, sign, inspect and test plugins, and steer a
//! running router's rollout of a new version (`diff`, `promote`, `abort`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde::Deserialize;

use super::Failure;
use super::admin_api::AdminArgs;
use crate::auth::{AuthPolicy, AuthRequest, Decision, Protocol};
use crate::event::{Event, EventJson};
use crate::plugin::{Grants, Plugin, PluginRuntime, PluginSpec, Role, RuntimeOptions};
use crate::route::Handler;
use crate::sink::Sink;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Scaffold a plugin (a Rust crate, or a Python or JavaScript directory) that `plugin build` builds.
    New {
        /// The plugin's role.
        #[arg(value_enum)]
        kind: Kind,
        /// Plugin name (kebab-case); also the directory created.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Directory to create the crate in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of an eventyard-sdk crate to build against (default: the SDK built into this
        /// eventyard, copied into the plugin's `vendor/eventyard-sdk`).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the plugin in DIR (Rust with cargo, Python with componentize-py, JavaScript with
    /// componentize-js) and copy the component to --out.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Copy the built .wasm here (for example the router's plugin directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make an ed25519 key pair for signing plugins (the private key to OUT, the public one to
    /// OUT.pub).
    Keygen { out: PathBuf },
    /// Sign a component with a key from `plugin keygen`: a detached signature to FILE.sig, or
    /// embedded in FILE with --embed. A router with `[plugins] trusted_keys` loads only signed ones.
    Sign {
        file: PathBuf,
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// Embed the signature in the component instead of writing FILE.sig.
        #[arg(long)]
        embed: bool,
    },
    /// Show a running router's rollout of a new version of plugin NAME: both versions' figures,
    /// then the latest differences a shadow found.
    Diff {
        name: String,
        /// Print the router's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make the candidate of plugin NAME the version that serves, now.
    Promote {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Roll the candidate of plugin NAME back, now: the serving version takes every event again.
    Abort {
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print a component's world, WIT version, imports, capabilities, size, content hash and signer.
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin on events from a file and print what it returns, or check its answers to a
    /// directory of fixtures against the answers kept beside them (`--golden`).
    Test {
        file: PathBuf,
        /// A JSON event or array of events, or JSON lines of them as `eventyard tap` records (auth
        /// requests for an auth policy).
        #[arg(long, required_unless_present = "golden", conflicts_with = "golden")]
        event: Option<PathBuf>,
        /// A directory of fixtures: each `NAME.json` or `NAME.jsonl` input, with the answers
        /// expected of it in `NAME.expected`. Prints a diff for every mismatch.
        #[arg(long)]
        golden: Option<PathBuf>,
        /// With --golden: write the plugin's answers as the expected ones (a new or missing fixture
        /// is written anyway).
        #[arg(long, requires = "golden")]
        bless: bool,
        /// A config setting passed to the plugin's init, KEY=VALUE (repeatable).
        #[arg(long = "config", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// Hand events to a handler in one batch call instead of one call each.
        #[arg(long)]
        batch: bool,
        /// Per-call time limit.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Memory limit in MiB.
        #[arg(long, default_value_t = 64)]
        memory_mib: usize,
        /// Grant this directory (visible to the plugin at /data).
        #[arg(long)]
        grant_dir: Option<PathBuf>,
        /// Grant outbound HTTP to this host (repeatable).
        #[arg(long)]
        grant_http: Vec<String>,
    },
}

/// Plugin roles as the command line names them.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    Handler,
    Sink,
    Auth,
}

impl Kind {
    /// The WIT world of the role.
    fn world(self) -> &'static str {
        match self {
            Kind::Handler => "handler",
            Kind::Sink => "sink",
            Kind::Auth => "auth-policy",
        }
    }
}

/// The languages `plugin new` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Python,
    Js,
}

fn parse_key_value(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{arg}`"))
}

pub(crate) async fn run(command: PluginCommand) -> Result<(), Failure> {
    match command {
        PluginCommand::New { kind, name, lang, dir, sdk } => new(kind, lang, &name, &dir, sdk),
        PluginCommand::Build { dir, out } => build(&dir, out.as_deref()).await,
        PluginCommand::Keygen { out } => super::sign::keygen(&out),
        PluginCommand::Sign { file, key, embed } => super::sign::sign(&file, &key, embed),
        PluginCommand::Inspect { file, json } => inspect(&file, json).await,
        PluginCommand::Diff { name, json, admin } => super::rollout::diff(&name, json, &admin).await,
        PluginCommand::Promote { name, admin } => super::rollout::decide(&name, true, &admin).await,
        PluginCommand::Abort { name, admin } => super::rollout::decide(&name, false, &admin).await,
        PluginCommand::Test {
            file,
            event,
            golden,
            bless,
            config,
            batch,
            timeout_ms,
            memory_mib,
            grant_dir,
            grant_http,
        } => {
            let mut spec = PluginSpec::new(file.display().to_string(), &file, Role::Handler);
            spec.config = config;
            spec.limits.timeout = Duration::from_millis(timeout_ms);
            spec.limits.memory_limit = memory_mib << 20;
            spec.grants = Grants {
                directory: grant_dir,
                http_hosts: (!grant_http.is_empty()).then_some(grant_http),
                ..Grants::default()
            };
            match (event, golden) {
                (Some(event), _) => test(spec, &event, batch).await,
                (None, Some(golden)) => test_golden(spec, &golden, batch, bless).await,
                (None, None) => Err(Failure::input("give --event FILE or --golden DIR")),
            }
        }
    }
}

fn new(kind: Kind, lang: Lang, name: &str, dir: &Path, sdk: Option<PathBuf>) -> Result<(), Failure> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        return Err(Failure::input(format!("plugin name `{name}`: use lowercase letters, digits and dashes")));
    }
    let sdk = match (lang, sdk) {
        (Lang::Rust, Some(sdk)) => {
            let sdk = sdk
                .canonicalize()
                .map_err(|err| Failure::input(format!("eventyard-sdk not found at {}: {err}", sdk.display())))?;
            sdk.display().to_string()
        }
        (Lang::Rust, None) => super::sdk::VENDORED.to_owned(),
        (Lang::Python | Lang::Js, _) => String::new(),
    };
    let root = dir.join(name);
    if root.exists() {
        return Err(Failure::input(format!("{} already exists", root.display())));
    }
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{file}}", &name.replace('-', "_"))
            .replace("{{type}}", &type_name)
            .replace("{{world}}", kind.world())
            .replace("{{sdk_path}}", &sdk)
    };
    let files: Vec<(&str, &str)> = match lang {
        Lang::Rust => vec![
            ("Cargo.toml", include_str!("../../plugins/templates/Cargo.toml.tmpl")),
            (
                "src/lib.rs",
                match kind {
                    Kind::Handler => include_str!("../../plugins/templates/handler.rs.tmpl"),
                    Kind::Sink => include_str!("../../plugins/templates/sink.rs.tmpl"),
                    Kind::Auth => include_str!("../../plugins/templates/auth.rs.tmpl"),
                },
            ),
        ],
        Lang::Python => vec![
            ("plugin.toml", include_str!("../../plugins/templates/plugin.toml.tmpl")),
            (
                "app.py",
                match kind {
                    Kind::Handler => include_str!("../../plugins/templates/handler.py.tmpl"),
                    Kind::Sink => include_str!("../../plugins/templates/sink.py.tmpl"),
                    Kind::Auth => include_str!("../../plugins/templates/auth.py.tmpl"),
                },
            ),
        ],
        Lang::Js => vec![
            ("plugin.toml", include_str!("../../plugins/templates/plugin.toml.tmpl")),
            ("package.json", include_str!("../../plugins/templates/package.json.tmpl")),
            (
                "plugin.js",
                match kind {
                    Kind::Handler => include_str!("../../plugins/templates/handler.js.tmpl"),
                    Kind::Sink => include_str!("../../plugins/templates/sink.js.tmpl"),
                    Kind::Auth => include_str!("../../plugins/templates/auth.js.tmpl"),
                },
            ),
        ],
    };
    for (file, template) in files {
        let path = root.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| Failure::input(format!("cannot create {}: {err}", parent.display())))?;
        }
        std::fs::write(&path, fill(template))
            .map_err(|err| Failure::input(format!("cannot write {}: {err}", path.display())))?;
    }
    // The contract the plugin is written against travels with it, and for Rust the SDK too (it
    // reads `../../wit`, the plugin's own): the plugin builds anywhere, this repository or not.
    super::build::write_wit(&root.join("wit"))?;
    if sdk == super::sdk::VENDORED {
        super::sdk::vendor(&root.join(super::sdk::VENDORED))?;
    }
    println!("created {}", root.display());
    println!("next: eventyard plugin build {}", root.display());
    Ok(())
}

async fn build(dir: &Path, out: Option<&Path>) -> Result<(), Failure> {
    for wasm in super::build::build(dir).await? {
        let shown = match out {
            Some(out) => {
                let target = out.join(wasm.file_name().unwrap_or_default());
                copy_atomically(&wasm, &target)
                    .await
                    .map_err(|err| Failure::input(format!("cannot copy to {}: {err}", target.display())))?;
                target
            }
            None => wasm,
        };
        println!("{}", shown.display());
    }
    Ok(())
}

/// Copies through a temporary file and a rename, so a watcher never sees half a plugin.
async fn copy_atomically(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = to.with_extension("wasm.partial");
    tokio::fs::copy(from, &tmp).await?;
    tokio::fs::rename(&tmp, to).await
}

/// The runtime of the plugin commands: compiled components are kept in `EVENTYARD_CACHE_DIR` when
/// it is set, so testing a plugin again skips Cranelift (seconds for a Python or JS component).
fn runtime() -> Result<PluginRuntime, Failure> {
    let cache_dir = crate::plugin::cache_dir_from_env();
    PluginRuntime::new(RuntimeOptions { pool_instances: 8, cache_dir, ..RuntimeOptions::default() })
        .map_err(|err| Failure::plugin(format!("{err:#}")))
}

async fn inspect(file: &Path, json: bool) -> Result<(), Failure> {
    if !file.is_file() {
        return Err(Failure::input(format!("{}: no such file", file.display())));
    }
    let info = runtime()?.inspect(file).await.map_err(Failure::plugin)?;
    if json {
        let text = serde_json::to_string_pretty(&info).map_err(Failure::plugin)?;
        println!("{text}");
        return Ok(());
    }
    let none = || "none".to_string();
    let capabilities: Vec<String> = info.capabilities.iter().map(|c| c.to_string()).collect();
    println!("file:         {}", file.display());
    println!("world:        {}", info.world.clone().unwrap_or_else(|| "none (not an Eventyard plugin)".into()));
    println!("wit version:  {}", info.wit_version.clone().unwrap_or_else(none));
    println!("sdk version:  {}", info.sdk_version.clone().unwrap_or_else(none));
    println!("size:         {} bytes", info.size);
    println!("sha256:       {}", info.sha256);
    println!("signed by:    {}", info.signed_by.clone().unwrap_or_else(|| "nobody (or not validly)".into()));
    println!("capabilities: {}", if capabilities.is_empty() { none() } else { capabilities.join(", ") });
    println!("exports:");
    for export in &info.exports {
        println!("  {export}");
    }
    println!("imports:");
    for import in &info.imports {
        println!("  {import}");
    }
    Ok(())
}

/// An auth request as `plugin test` reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthRequestJson {
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    tls_subject: Option<String>,
    #[serde(default)]
    tls_sans: Vec<String>,
    #[serde(default)]
    remote_addr: Option<String>,
}

/// One answer of a plugin to its input, as `plugin test` prints it.
enum Answer {
    /// A JSON line: an event a handler returned, a sink's delivery count, an auth decision.
    Line(String),
    /// A handler's error for the input at this position.
    Failed(usize, String),
}

impl Answer {
    /// The answer as a line of a golden file.
    fn golden_line(&self) -> String {
        match self {
            Answer::Line(line) => line.clone(),
            Answer::Failed(i, error) => serde_json::json!({ "event": i, "error": error }).to_string(),
        }
    }
}

/// Loads the plugin in `spec`, whatever its role (the component says).
async fn load(mut spec: PluginSpec) -> Result<Plugin, Failure> {
    if !spec.path.is_file() {
        return Err(Failure::input(format!("{}: no such file", spec.path.display())));
    }
    spec.role = None;
    runtime()?.load(spec).await.map_err(Failure::plugin)
}

async fn test(spec: PluginSpec, input: &Path, batch: bool) -> Result<(), Failure> {
    let plugin = load(spec).await?;
    let mut failures = Vec::new();
    for answer in answers(&plugin, read_inputs(input)?, input, batch).await? {
        match answer {
            Answer::Line(line) => println!("{line}"),
            Answer::Failed(i, error) => failures.push(format!("event {i}: {error}")),
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(Failure::plugin(failures.join("\n"))) }
}

/// Runs every fixture of `dir` through the plugin and compares its answers with the expected ones.
async fn test_golden(spec: PluginSpec, dir: &Path, batch: bool, bless: bool) -> Result<(), Failure> {
    let plugin = load(spec).await?;
    let fixtures = super::golden::fixtures(dir)?;
    let mut mismatched = 0;
    for fixture in &fixtures {
        let answers = answers(&plugin, read_inputs(&fixture.input)?, &fixture.input, batch).await?;
        let actual: Vec<String> = answers.iter().map(Answer::golden_line).collect();
        match fixture.expected()? {
            Some(expected) if !bless => {
                if expected == actual {
                    println!("ok       {}", fixture.name);
                } else {
                    mismatched += 1;
                    println!("MISMATCH {} (- expected, + this plugin)", fixture.name);
                    for line in super::golden::diff(&expected, &actual) {
                        println!("  {line}");
                    }
                }
            }
            _ => {
                fixture.write_expected(&actual)?;
                println!("wrote    {}", fixture.expected_path().display());
            }
        }
    }
    match mismatched {
        0 => Ok(()),
        n => Err(Failure::plugin(format!(
            "{n} of {} fixture(s) differ; --bless accepts the new answers",
            fixtures.len()
        ))),
    }
}

/// The inputs in `path`: a JSON value or array of values, or JSON lines.
fn read_inputs(path: &Path) -> Result<Vec<serde_json::Value>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| Failure::input(format!("cannot read {}: {err}", path.display())))?;
    let not_json = |err: serde_json::Error| Failure::input(format!("{}: not JSON: {err}", path.display()));
    if path.extension().is_some_and(|ext| ext == "jsonl") {
        return text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).map_err(not_json))
            .collect();
    }
    match serde_json::from_str(&text).map_err(not_json)? {
        serde_json::Value::Array(items) => Ok(items),
        other => Ok(vec![other]),
    }
}

/// What `plugin` answers to `items` (read from `input`).
async fn answers(
    plugin: &Plugin,
    items: Vec<serde_json::Value>,
    input: &Path,
    batch: bool,
) -> Result<Vec<Answer>, Failure> {
    match plugin {
        Plugin::Handler(handler) => handler_answers(handler.as_ref(), parse_events(items, input)?, batch).await,
        Plugin::Sink(sink) => {
            let events = parse_events(items, input)?;
            sink.deliver(&events).await.map_err(Failure::plugin)?;
            Ok(vec![Answer::Line(format!("delivered {} event(s)", events.len()))])
        }
        Plugin::AuthPolicy(policy) => {
            let mut answers = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let request = parse_auth_request(item)
                    .map_err(|err| Failure::input(format!("{}: request {i}: {err}", input.display())))?;
                let decision = match policy.authorize(&request).await {
                    Decision::Allow(grant) => serde_json::json!({
                        "allow": {
                            "account": grant.account,
                            "publish": {"allow": grant.publish.allow, "deny": grant.publish.deny},
                            "subscribe": {"allow": grant.subscribe.allow, "deny": grant.subscribe.deny},
                        }
                    }),
                    Decision::Deny(reason) => serde_json::json!({ "deny": reason }),
                };
                answers.push(Answer::Line(decision.to_string()));
            }
            Ok(answers)
        }
    }
}

fn parse_events(items: Vec<serde_json::Value>, input: &Path) -> Result<Vec<Event>, Failure> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let bad = |err: String| Failure::input(format!("{}: event {i}: {err}", input.display()));
            let json: EventJson = serde_json::from_value(item).map_err(|err| bad(err.to_string()))?;
            json.into_event(|| format!("test-{i}")).map_err(|err| bad(err.to_string()))
        })
        .collect()
}

fn parse_auth_request(item: serde_json::Value) -> Result<AuthRequest, String> {
    let json: AuthRequestJson = serde_json::from_value(item).map_err(|err| err.to_string())?;
    let protocol = match json.protocol.as_deref() {
        None | Some("nats") => Protocol::Nats,
        Some("http") => Protocol::Http,
        Some(other) => return Err(format!("unknown protocol `{other}` (nats or http)")),
    };
    Ok(AuthRequest {
        protocol,
        client_name: json.client_name,
        user: json.user,
        token: json.token,
        password: json.password,
        tls_subject: json.tls_subject,
        tls_sans: json.tls_sans,
        remote_addr: json.remote_addr.unwrap_or_else(|| "127.0.0.1:0".into()),
    })
}

async fn handler_answers(handler: &dyn Handler, events: Vec<Event>, batch: bool) -> Result<Vec<Answer>, Failure> {
    let count = events.len();
    let results = if batch {
        handler.handle_batch(events).await
    } else {
        let mut results = Vec::with_capacity(count);
        for event in events {
            results.push(handler.handle(event).await);
        }
        results
    };
    let mut answers = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(events) => {
                for event in &events {
                    let line = serde_json::to_string(&EventJson::from_event(event)).map_err(Failure::plugin)?;
                    answers.push(Answer::Line(line));
                }
            }
            Err(err) => answers.push(Answer::Failed(i, err.to_string())),
        }
    }
    Ok(answers)
}
