//! The `eventyard plugin` commands as a plugin author runs them: the real binary, real components,
//! exit codes 0 (success), 1 (the plugin failed) and 2 (bad input).

use crate::common;

use common::router::{RouterProcess, eventually, json_lines_under};
use common::{plugin, run_eventyard, tempdir};
use std::time::Duration;

fn write(dir: &std::path::Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("test file is written");
    path.display().to_string()
}

#[test]
fn inspect_shows_world_versions_capabilities_size_and_hash() {
    let wasm = plugin("kafka-probe");
    let (code, out, err) = run_eventyard(&["plugin", "inspect", wasm.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("world:        sink"), "{out}");
    assert!(out.contains("wit version:  0.2.0"), "{out}");
    assert!(out.contains("sdk version:  0.2.0"), "{out}");
    assert!(out.contains("capabilities: kafka"), "{out}");
    let size = std::fs::metadata(&wasm).unwrap().len();
    assert!(out.contains(&format!("size:         {size} bytes")), "{out}");
    let hash = eventyard::plugin::content_hash(&std::fs::read(&wasm).unwrap());
    assert!(out.contains(&hash), "{out}");

    let (code, out, _) = run_eventyard(&["plugin", "inspect", "--json", plugin("future-wit").to_str().unwrap()]);
    assert_eq!(code, 0);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["world"], "handler");
    assert_eq!(info["wit_version"], "0.3.0");
    assert_eq!(info["sdk_version"], serde_json::Value::Null);
}

#[test]
fn inspect_refuses_files_that_are_not_components() {
    let dir = tempdir();
    let garbage = write(dir.path(), "garbage.wasm", "not wasm at all");
    let (code, _, err) = run_eventyard(&["plugin", "inspect", &garbage]);
    assert_eq!(code, 1);
    assert!(err.contains("not a WebAssembly component"), "{err}");
    let (code, _, err) = run_eventyard(&["plugin", "inspect", "/nonexistent/x.wasm"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn test_prints_resulting_events_as_json_lines() {
    let dir = tempdir();
    let events = write(
        dir.path(),
        "events.json",
        r#"[{"subject":"insights.report","id":"e1","data":{"severity":"Moderate"}},
            {"subject":"insights.report","id":"e2","data":{"severity":"Low"}}]"#,
    );
    let wasm = plugin("severity-map");
    let (code, out, err) = run_eventyard(&["plugin", "test", wasm.to_str().unwrap(), "--event", &events]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["id"], "e1");
    assert_eq!(lines[0]["data"]["severity"], "Warning");
    assert_eq!(lines[1]["data"]["severity"], "Info");

    // The same through one batch call, with config from the command line.
    let (code, out, err) = run_eventyard(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--event",
        &events,
        "--batch",
        "--config",
        "target=level",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().all(|l| l.contains(r#""level":"#)), "{out}");
}

#[test]
fn test_exits_1_on_a_plugin_error_and_2_on_bad_input() {
    let dir = tempdir();
    let wasm = plugin("misbehave");
    let wasm = wasm.to_str().unwrap();
    let error = write(dir.path(), "error.json", r#"{"subject":"a","type":"error"}"#);
    let (code, _, err) = run_eventyard(&["plugin", "test", wasm, "--event", &error]);
    assert_eq!(code, 1);
    assert!(err.contains("event 0") && err.contains("rejected"), "{err}");

    let trap = write(dir.path(), "trap.json", r#"{"subject":"a","type":"trap"}"#);
    let (code, _, err) = run_eventyard(&["plugin", "test", wasm, "--event", &trap]);
    assert_eq!(code, 1);
    assert!(err.contains("trapped"), "{err}");

    let not_json = write(dir.path(), "bad.json", "{nope");
    let (code, _, err) = run_eventyard(&["plugin", "test", wasm, "--event", &not_json]);
    assert_eq!(code, 2);
    assert!(err.contains("not JSON"), "{err}");

    let unknown_field = write(dir.path(), "field.json", r#"{"subject":"a","sujbect":"b"}"#);
    let (code, _, err) = run_eventyard(&["plugin", "test", wasm, "--event", &unknown_field]);
    assert_eq!(code, 2);
    assert!(err.contains("sujbect"), "{err}");

    let (code, _, _) = run_eventyard(&["plugin", "test", wasm, "--event", &error, "--config", "novalue"]);
    assert_eq!(code, 2);
}

#[test]
fn test_runs_sinks_and_auth_policies_too() {
    let dir = tempdir();
    let out_dir = tempdir();
    let events = write(dir.path(), "e.json", r#"{"subject":"audit","time":"2024-01-02T03:04:05Z","data_text":"hi"}"#);
    let sink = plugin("file-sink");
    let (code, out, err) = run_eventyard(&[
        "plugin",
        "test",
        sink.to_str().unwrap(),
        "--event",
        &events,
        "--grant-dir",
        out_dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("delivered 1 event"), "{out}");
    assert!(out_dir.path().join("audit/_/2024/01/02/03/events.jsonl").is_file());

    let request = write(dir.path(), "req.json", r#"[{"token":"t1"},{"token":"nope"}]"#);
    let auth = plugin("token-auth");
    let (code, out, err) = run_eventyard(&[
        "plugin",
        "test",
        auth.to_str().unwrap(),
        "--event",
        &request,
        "--config",
        r#"tokens=[{"token":"t1"}]"#,
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains(r#""allow""#) && lines[1].contains("unknown token"), "{out}");
}

/// A scaffold names nothing of the repository this eventyard was built from: it builds on a
/// plugin author's machine with an installed eventyard. A Rust one carries the SDK it builds
/// against, and every one the WIT contract.
fn assert_self_contained(scaffold: &std::path::Path) {
    let repo = common::repo_root().display().to_string();
    let mut files = vec![scaffold.to_owned()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).expect("a directory").map(|entry| entry.expect("an entry").path()));
        } else {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(!text.contains(&repo), "{} names the repository: {text}", path.display());
        }
    }
    assert!(scaffold.join("wit/worlds.wit").is_file(), "the WIT travels with the plugin");
    let manifest = scaffold.join("Cargo.toml");
    if manifest.is_file() {
        let manifest = std::fs::read_to_string(manifest).expect("the manifest");
        assert!(manifest.contains(r#"eventyard-sdk = { path = "vendor/eventyard-sdk" }"#), "{manifest}");
        assert!(scaffold.join("vendor/eventyard-sdk/src/lib.rs").is_file(), "the SDK travels with the plugin");
    }
}

/// Scaffolds `kind` as `name` in `dir` in `lang`, builds it with `plugin build` into `dir/plugins`,
/// and returns the component.
fn scaffold_and_build(dir: &std::path::Path, lang: &str, kind: &str, name: &str) -> std::path::PathBuf {
    let dir_arg = dir.to_str().expect("temp paths are UTF-8");
    let (code, out, err) = run_eventyard(&["plugin", "new", kind, name, "--lang", lang, "--dir", dir_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(name), "{out}");
    assert_self_contained(&dir.join(name));
    // `plugin build` runs the language's toolchain and drops the component into the plugin directory.
    // Sharing one target directory reuses the SDK's compiled dependencies across scaffolds.
    let plugin_dir = dir.join("plugins");
    let output = common::eventyard()
        .arg("plugin")
        .arg("build")
        .arg(dir.join(name))
        .arg("--out")
        .arg(&plugin_dir)
        .env("CARGO_TARGET_DIR", common::repo_root().join("target/scaffold"))
        .output()
        .expect("eventyard runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let wasm = plugin_dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(wasm.is_file(), "{}", String::from_utf8_lossy(&output.stdout));
    wasm
}

/// Starts a router on the plugin directory `handler` was built into, with the scaffolded handler
/// on its route as the README's step 6 puts it, and checks that an event over HTTP is filed tagged.
async fn handles_live_events(handler: &std::path::Path) {
    let plugins = handler.parent().expect("a component lies in a plugin directory");
    let config = format!(
        r#"
[http]
listen = "127.0.0.1:0"
[plugins]
dir = "{}"
[[route]]
name = "everything"
subject = ">"
handlers = ["tag-it"]
sinks = ["files"]
[plugin.tag-it]
config = {{ tag = "blue" }}
[sinks.files]
kind = "file"
root = "{{dir}}/events"
"#,
        plugins.display()
    );
    let router = RouterProcess::start(&config);
    let event = serde_json::json!({"specversion": "1.0", "id": "e1", "source": "/readme", "type": "audit.login"});
    assert_eq!(router.post_event("audit.logins", &event).await, 202);
    let events = router.path("events");
    let (_, filed) = eventually("the event filed", Duration::from_secs(30), || json_lines_under(&events).pop()).await;
    assert_eq!(filed["tag"], "blue", "{filed}");
    assert_eq!(filed["id"], "e1", "{filed}");
}

/// Scaffolds a handler, a sink and an auth policy in `lang`, builds each and runs it; the handler
/// also on a live router, as the README takes a new plugin from `plugin new` to live events.
async fn scaffolds_of_every_kind_build_and_run(lang: &str) {
    let dir = tempdir();
    let events = write(dir.path(), "e.json", r#"{"subject":"a.b"}"#);

    let handler = scaffold_and_build(dir.path(), lang, "handler", "tag-it");
    handles_live_events(&handler).await;
    let (code, out, err) = run_eventyard(&[
        "plugin",
        "test",
        handler.to_str().expect("temp paths are UTF-8"),
        "--event",
        &events,
        "--config",
        "tag=blue",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#"["tag","blue"]"#), "{out}");

    let sink = scaffold_and_build(dir.path(), lang, "sink", "log-it");
    let (code, out, err) =
        run_eventyard(&["plugin", "test", sink.to_str().expect("temp paths are UTF-8"), "--event", &events]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("delivered 1 event"), "{out}");

    let auth = scaffold_and_build(dir.path(), lang, "auth", "let-in");
    let requests = write(dir.path(), "r.json", r#"[{"token":"sesame"},{"token":"wrong"}]"#);
    let (code, out, err) = run_eventyard(&[
        "plugin",
        "test",
        auth.to_str().expect("temp paths are UTF-8"),
        "--event",
        &requests,
        "--config",
        "token=sesame",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().next().is_some_and(|l| l.contains("allow")) && out.contains("unknown token"), "{out}");

    let (code, _, err) = run_eventyard(&[
        "plugin",
        "new",
        "handler",
        "Bad_Name",
        "--lang",
        lang,
        "--dir",
        dir.path().to_str().expect("temp paths are UTF-8"),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("Bad_Name"), "{err}");
}

#[tokio::test]
async fn new_scaffolds_rust_plugins_of_every_kind_that_build_and_run() {
    scaffolds_of_every_kind_build_and_run("rust").await;
}

#[tokio::test]
async fn new_scaffolds_python_plugins_of_every_kind_that_build_and_run() {
    scaffolds_of_every_kind_build_and_run("python").await;
}

/// The scaffold's package.json installs componentize-js with npm on the first build.
#[tokio::test]
async fn new_scaffolds_javascript_plugins_of_every_kind_that_build_and_run() {
    scaffolds_of_every_kind_build_and_run("js").await;
}

#[test]
fn build_names_what_a_directory_lacks() {
    let dir = tempdir();
    let (code, _, err) = run_eventyard(&["plugin", "build", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("expected Cargo.toml (Rust), or plugin.toml with app.py (Python)"), "{err}");
    write(dir.path(), "plugin.toml", "name = \"x\"\nworld = \"filter\"\n");
    write(dir.path(), "app.py", "");
    let (code, _, err) = run_eventyard(&["plugin", "build", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("world `filter` is not one of handler, sink, auth-policy"), "{err}");
}

#[test]
fn check_validates_the_config_and_loads_every_plugin() {
    let dir = tempdir();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(plugin("passthrough"), plugins.join("passthrough.wasm")).unwrap();
    std::fs::copy(plugin("token-auth"), plugins.join("gate.wasm")).unwrap();
    let config = write(
        dir.path(),
        "ok.toml",
        &format!(
            "[plugins]\ndir = {:?}\ncache_dir = \"\"\n\n[plugin.gate]\nworld = \"auth-policy\"\nconfig = {{ tokens = [{{ token = \"t\" }}] }}\n",
            plugins.display().to_string()
        ),
    );
    let (code, out, err) = run_eventyard(&["check", "--config", &config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok  plugin gate (auth-policy)") && out.contains("ok  plugin passthrough (handler)"), "{out}");

    // Every validation error at once, each with its line.
    let invalid = write(dir.path(), "bad.toml", "[plugins]\npool_instances = 0\n\n[plugin.x.limits]\ntimeout_ms = 0\n");
    let (code, _, err) = run_eventyard(&["check", "--config", &invalid]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 2: plugins.pool_instances") && err.contains("line 5: plugin.x.limits.timeout_ms"),
        "{err}"
    );

    // Routes, plugin sinks and the auth policy must name loaded plugins of the right role.
    let dangling = write(
        dir.path(),
        "dangling.toml",
        &format!(
            "[plugins]\ndir = {:?}\ncache_dir = \"\"\n[plugin.gate]\nconfig = {{ tokens = [{{ token = \"t\" }}] }}\n[plugin.gate.rollout]\nmode = \"canary\"\n[http.auth]\npolicy = \"passthrough\"\n[[route]]\nname = \"r\"\nsubject = \">\"\nhandlers = [\"nope\", \"gate\"]\nsinks = [\"out\"]\n[sinks.out]\nkind = \"stdout\"\n",
            plugins.display().to_string()
        ),
    );
    let (code, _, err) = run_eventyard(&["check", "--config", &dangling]);
    assert_eq!(code, 1);
    assert!(err.contains("4 problem(s)"), "{err}");
    assert!(
        err.contains("[plugin.gate.rollout]: only handlers roll out, and `gate` exports the auth-policy world"),
        "{err}"
    );
    assert!(err.contains("route `r`: no plugin `nope` is loaded"), "{err}");
    assert!(err.contains("route `r`: plugin `gate` exports the auth-policy world, not the handler world"), "{err}");
    assert!(
        err.contains("[http.auth] policy: plugin `passthrough` exports the handler world, not the auth-policy world"),
        "{err}"
    );

    // A plugin of the wrong world is refused by name.
    let wrong = write(
        dir.path(),
        "wrong.toml",
        &format!(
            "[plugins]\ndir = {:?}\ncache_dir = \"\"\n\n[plugin.gate]\nworld = \"handler\"\n",
            plugins.display().to_string()
        ),
    );
    let (code, out, err) = run_eventyard(&["check", "--config", &wrong]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("plugin `gate` exports the auth-policy world"), "{err}");
}
