//! Shared helpers for the end-to-end tests: building the plugin components once per test process,
//! temporary directories, events, and running the `eventyard` binary.
#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use eventyard::event::{Event, EventJson};

pub mod crash;
pub mod http_server;
pub mod kafka;
pub mod load;
pub mod memory;
pub mod nats;
pub mod object_stores;
pub mod router;
pub mod tls;

/// Every plugin crate the tests use, first-party and fixtures.
const PLUGIN_CRATES: &[&str] = &[
    "passthrough",
    "subject-filter",
    "json-transform",
    "jq",
    "bahamut",
    "severity-map",
    "token-auth",
    "file-sink",
    "kafka-sink",
    "servicelog-sink",
    "misbehave",
    "misbehave-auth",
    "kafka-probe",
    "http-probe",
    "future-wit",
    "versioned",
];

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built component of plugin crate `name`, building every plugin crate first (once per process;
/// cargo makes it a no-op when nothing changed).
pub fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.current_dir(repo_root()).args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"]);
        for krate in PLUGIN_CRATES {
            cargo.args(["-p", krate]);
        }
        let status = cargo.status().expect("cargo runs");
        assert!(
            status.success(),
            "building the plugin components failed; is the target installed? `rustup target add wasm32-wasip2`"
        );
    });
    let path = repo_root().join("target/wasm32-wasip2/plugin").join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The component `eventyard plugin build` makes of the Python or JavaScript plugin in
/// `plugins/<dir>` (once per process per directory).
pub fn polyglot_plugin(dir: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, wasm)) = built.iter().find(|(built, _)| built == dir) {
        return wasm.clone();
    }
    let output = eventyard()
        .arg("plugin")
        .arg("build")
        .arg(repo_root().join("plugins").join(dir))
        .output()
        .expect("eventyard runs");
    assert!(output.status.success(), "plugin build {dir}: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let wasm = PathBuf::from(stdout.lines().last().expect("plugin build prints the component"));
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    built.push((dir.to_owned(), wasm.clone()));
    wasm
}

/// The `contract-0.1` fixture: a handler scaffolded while the plugin contract was 0.1.0, with the SDK
/// and WIT of that release in its directory.
pub fn contract_fixture() -> PathBuf {
    repo_root().join("tests/fixtures/plugins/contract-0.1")
}

/// The SDK of contract 0.1.0, as the `contract-0.1` fixture carries it.
pub fn sdk_0_1() -> PathBuf {
    contract_fixture().join("vendor/eventyard-sdk")
}

/// The `contract-0.1` fixture built as it is: an `eventyard:plugin@0.1.0` component made by the
/// previous SDK release.
pub fn contract_0_1_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_with_sdk("contract-fixture", &contract_fixture(), &sdk_0_1())).clone()
}

/// The `contract-0.1` fixture's source rebuilt against this repository's SDK, as a plugin author
/// upgrading the SDK would: an `eventyard:plugin@0.2.0` component.
pub fn contract_0_1_rebuilt() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build_with_sdk("contract-fixture-rebuilt", &contract_fixture(), &repo_root().join("plugins/sdk"))
        })
        .clone()
}

/// Builds the single-file plugin source `crate_dir/src/lib.rs` (which needs only the SDK) against the
/// SDK crate at `sdk`, as a crate `name` of its own under `target/fixtures`, and returns the
/// component. The crate's lock file starts from the fixture's, so the 0.1 SDK gets the versions it
/// was released with; all such crates share one target directory, so they compile those once.
pub fn build_with_sdk(name: &str, crate_dir: &Path, sdk: &Path) -> PathBuf {
    // A fixed directory, not a temporary one, so rebuilds are incremental.
    let dir = repo_root().join("target/fixtures").join(name);
    let target = repo_root().join("target/fixtures/target");
    std::fs::create_dir_all(&dir).expect("build directory");
    let manifest = format!(
        "[package]\nname = {name:?}\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [workspace]\n\n[lib]\ncrate-type = [\"cdylib\"]\npath = {lib:?}\n\n\
         [dependencies]\neventyard-sdk = {{ path = {sdk:?} }}\n\n\
         [profile.release]\nlto = true\ncodegen-units = 1\n",
        lib = crate_dir.join("src/lib.rs").display(),
        sdk = sdk.display(),
    );
    write_if_changed(&dir.join("Cargo.toml"), manifest.as_bytes());
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(contract_fixture().join("Cargo.lock"), dir.join("Cargo.lock")).expect("lock file");
    }
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {} against {} failed", crate_dir.display(), sdk.display());
    let wasm = target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    wasm
}

/// Writes `bytes` to `path` unless it holds them already (so cargo sees nothing changed).
fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).expect("write");
    }
}

/// Nanoseconds per event `handler` takes over `time`, handing it `event` one call at a time, or in
/// calls of `batch` copies. For benchmarks.
pub async fn ns_per_event(
    handler: &dyn eventyard::route::Handler,
    event: &Event,
    batch: Option<usize>,
    time: std::time::Duration,
) -> f64 {
    let started = std::time::Instant::now();
    let mut events = 0usize;
    while started.elapsed() < time {
        match batch {
            Some(batch) => {
                let results = handler.handle_batch(vec![event.clone(); batch]).await;
                if let Some(Err(err)) = results.iter().find(|r| r.is_err()) {
                    panic!("the handler failed an event of a batch: {err}");
                }
                events += batch;
            }
            None => {
                if let Err(err) = handler.handle(event.clone()).await {
                    panic!("the handler failed an event: {err}");
                }
                events += 1;
            }
        }
    }
    started.elapsed().as_nanos() as f64 / events as f64
}

/// The median of `values`.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `plugin test PLUGIN --golden FIXTURES` with `extra` arguments; returns the exit code and stdout.
pub fn plugin_test_golden(plugin: &Path, fixtures: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let output = eventyard()
        .args(["plugin", "test"])
        .arg(plugin)
        .arg("--golden")
        .arg(fixtures)
        .args(extra)
        .output()
        .expect("eventyard runs");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A loopback port free now, for a server process the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Waits until `what` accepts connections on `addr`; panics after ten seconds.
pub async fn wait_for_port(addr: std::net::SocketAddr, what: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not start on {addr}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `probe` every 20 ms until it yields `Some`, or panics after `within` naming `what`: for a
/// probe that awaits (a request, a metric). [`router::eventually`] takes a plain check.
pub async fn eventually_async<T, F>(what: &str, within: std::time::Duration, mut probe: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What is wrong with each of `documents` against the JSON Schema in `schema` (formats included),
/// as PyPI's jsonschema says (`tests/clients/validate_json.py`): one list a document, empty when valid.
pub fn schema_errors(schema: &Path, documents: &[serde_json::Value]) -> Vec<Vec<String>> {
    use std::io::Write as _;
    let mut child = Command::new("python3")
        .arg(repo_root().join("tests/clients/validate_json.py"))
        .arg(schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::to_vec(documents).expect("JSON documents");
    child.stdin.take().expect("stdin").write_all(&input).expect("validate_json.py reads");
    let output = child.wait_with_output().expect("validate_json.py ends");
    assert!(output.status.success(), "validate_json.py: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("validate_json.py prints JSON")
}

/// An event from its JSON form (see `EventJson`).
pub fn event(json: serde_json::Value) -> Event {
    serde_json::from_value::<EventJson>(json)
        .expect("valid event JSON")
        .into_event(|| "test-id".into())
        .expect("valid event")
}

/// The JSON data of an event.
pub fn data(event: &Event) -> serde_json::Value {
    serde_json::from_slice(&event.data).expect("event data is JSON")
}

/// A fresh temporary directory, removed on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// The `eventyard` binary built for these tests.
pub fn eventyard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventyard"));
    command.env(eventyard::plugin::CACHE_DIR_ENV, artifact_cache());
    command
}

/// Runs `eventyard` with `args`; returns (exit code, stdout, stderr).
pub fn run_eventyard(args: &[&str]) -> (i32, String, String) {
    let output = eventyard().args(args).output().expect("eventyard runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The compiled-plugin cache every router, `eventyard` command and runtime of the tests shares
/// (`EVENTYARD_CACHE_DIR`), in cargo's scratch directory for tests: each component is compiled once,
/// as a router restart would find it, instead of once per test (seconds each for a Python or
/// JavaScript component). Tests of compiling and of the cache itself name their own `cache_dir`.
pub fn artifact_cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifact-cache"))
}

/// A plugin runtime for tests: the default options with room for 16 instances per plugin, and the
/// shared [`artifact_cache`].
pub fn plugin_runtime() -> eventyard::plugin::PluginRuntime {
    use eventyard::plugin::{PluginRuntime, RuntimeOptions};
    let options = RuntimeOptions {
        pool_instances: 16,
        cache_dir: Some(artifact_cache().to_owned()),
        ..RuntimeOptions::default()
    };
    PluginRuntime::new(options).expect("runtime starts")
}

/// The first-party Wasm `file-sink` loaded through `runtime`, granted `dir` (its `/data`), with
/// config `pairs`.
pub async fn wasm_file_sink(
    runtime: &eventyard::plugin::PluginRuntime,
    dir: &Path,
    pairs: &[(&str, &str)],
) -> std::sync::Arc<eventyard::plugin::WasmSink> {
    use eventyard::plugin::{Grants, Plugin, PluginSpec, Role};
    let mut spec = PluginSpec::new("file-sink", plugin("file-sink"), Role::Sink);
    spec.config = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    spec.grants = Grants { directory: Some(dir.to_path_buf()), ..Grants::default() };
    match runtime.load(spec).await {
        Ok(Plugin::Sink(sink)) => sink,
        Ok(_) => panic!("file-sink loaded as another role"),
        Err(err) => panic!("loading file-sink failed: {err}"),
    }
}

/// Every regular file under `dir`, by path relative to `dir`, with its bytes. Blocking: for tests.
pub fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("directory is readable") {
            let path = entry.expect("directory entry is readable").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("a walked path is under its root").to_path_buf();
                out.insert(relative, std::fs::read(&path).expect("file is readable"));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// 1 KiB of data, base64-encoded (for `data_base64`).
pub fn base64_kib() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([b'x'; 1024])
}

/// A JSON object of about 1 KiB, as audit and inventory events carry; `i` varies its values.
pub fn json_kib(i: usize) -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> =
        (0..24).map(|n| (format!("field_{n:02}"), serde_json::json!({"value": format!("v{i}-{n}"), "n": n}))).collect();
    serde_json::json!({"user": "ada", "action": "login", "node": format!("node-{}", i % 4), "fields": fields})
}

/// Replaces plugin file `target` with `source` the way a careful deploy does: copy aside, then
/// rename.
pub fn replace_file(source: &Path, target: &Path) {
    let aside = target.with_extension("wasm.new");
    std::fs::copy(source, &aside).expect("copy");
    std::fs::rename(&aside, target).expect("rename");
}

/// Prints one row of the project's benchmark table (what `scripts/bench` collects).
/// POSTs `body`, a JSON array of CloudEvents, to `url` as one batch.
pub async fn post_batch(client: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", "application/cloudevents-batch+json")
        .body(body)
        .send()
        .await
        .expect("the router answers")
}

/// CPU time process `pid` has used, user and system, from `/proc/<pid>/stat` (in clock ticks of
/// 10 ms): the cost of work that throughput on a shared machine hides.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process's stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    std::time::Duration::from_millis(ticks * 10)
}

pub fn bench_row(name: &str, value: f64, unit: &str, note: &str) {
    println!("| {name:<48} | {value:>12.1} | {unit:<9} | {note} |");
}
