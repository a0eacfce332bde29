//! Plugins in Python (componentize-py) and JavaScript (componentize-js), built with
//! `eventyard plugin build`: the same handler in three languages gives the same answers through the
//! host and against the golden files kept for the Rust one, and a live router swaps the Rust one
//! for the Python one under load, losing nothing. A Python sink granted NATS subjects publishes on
//! those only.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::load::{NumberedPublisher, all_delivered, written};
use common::router::{RouterProcess, eventually, json_lines_under};
use std::sync::Arc;

use eventyard::event::Event;
use eventyard::plugin::{Plugin, PluginRuntime, PluginSpec, Role};
use eventyard::route::{Handler, HandlerError};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn handler(runtime: &PluginRuntime, path: &Path) -> Arc<dyn Handler> {
    let spec = PluginSpec::new(path.display().to_string(), path, Role::Handler);
    match runtime.load(spec).await {
        Ok(Plugin::Handler(handler)) => handler,
        Ok(_) => panic!("{} is not a handler", path.display()),
        Err(err) => panic!("{} does not load: {err}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn severity_map_in_python_and_javascript_answers_as_the_rust_one_does() {
    let runtime = common::plugin_runtime();
    let rust = handler(&runtime, &common::plugin("severity-map")).await;
    let python = handler(&runtime, &common::polyglot_plugin("python/severity-map")).await;
    let js = handler(&runtime, &common::polyglot_plugin("js/severity-map")).await;
    let inputs = [
        json!({"severity": "Important", "cluster": "c1", "nested": {"b": 1, "a": [true, null]}}),
        json!({"severity": "Low"}),
        json!({"severity": "Bogus"}),
        json!({"severity": 3}),
        json!({"severity": 7}),
        json!({"other": "Critical"}),
        json!(["Critical"]),
    ];
    let events: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, data)| common::event(json!({"subject": "risk.eu", "id": format!("e{i}"), "data": data})))
        .collect();
    let answers = |results: Vec<Result<Vec<Event>, HandlerError>>| -> Vec<Option<Value>> {
        results
            .into_iter()
            .map(|result| {
                result.ok().map(|events| {
                    assert_eq!(events.len(), 1);
                    assert_eq!(events[0].context.datacontenttype.as_deref(), Some("application/json"));
                    common::data(&events[0])
                })
            })
            .collect()
    };
    let expected = answers(rust.handle_batch(events.clone()).await);
    assert_eq!(expected[0], Some(json!({"severity": "Major", "cluster": "c1", "nested": {"b": 1, "a": [true, null]}})));
    assert_eq!(expected.iter().filter(|answer| answer.is_none()).count(), 4, "{expected:?}");
    for (language, plugin) in [("Python", &python), ("JavaScript", &js)] {
        assert_eq!(answers(plugin.handle_batch(events.clone()).await), expected, "{language}, batched");
        let mut one_by_one = Vec::new();
        for event in events.clone() {
            one_by_one.push(plugin.handle(event).await);
        }
        assert_eq!(answers(one_by_one), expected, "{language}, one at a time");
    }
}

#[test]
fn the_rust_handlers_golden_files_hold_for_the_python_and_javascript_ones_and_a_change_shows_as_a_diff() {
    let fixtures = common::repo_root().join("tests/fixtures/golden/severity-map");
    for plugin in [
        common::plugin("severity-map"),
        common::polyglot_plugin("python/severity-map"),
        common::polyglot_plugin("js/severity-map"),
    ] {
        let (code, out) = common::plugin_test_golden(&plugin, &fixtures, &[]);
        assert_eq!(code, Some(0), "{}: {out}", plugin.display());
        assert_eq!(out.lines().filter(|line| line.starts_with("ok ")).count(), 2, "{out}");
    }

    // A new version that maps differently: the old answers, blessed, show what changed.
    let changed = common::tempdir();
    for entry in std::fs::read_dir(&fixtures).expect("fixtures") {
        let path = entry.expect("entry").path();
        let text =
            std::fs::read_to_string(&path).expect("reads").replace(r#""severity":"Major""#, r#""severity":"High""#);
        std::fs::write(changed.path().join(path.file_name().expect("a name")), text).expect("writes");
    }
    let (code, out) = common::plugin_test_golden(&common::polyglot_plugin("python/severity-map"), changed.path(), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("MISMATCH levels") && out.contains("ok       refused"), "{out}");
    let removed: Vec<&str> = out.lines().filter(|line| line.trim_start().starts_with("- ")).collect();
    let added: Vec<&str> = out.lines().filter(|line| line.trim_start().starts_with("+ ")).collect();
    // Two answers are `Major`: `Important` and its number, 3.
    assert!(removed.len() == 2 && removed.iter().all(|l| l.contains(r#""severity":"High""#)), "{out}");
    assert!(added.len() == 2 && added.iter().all(|l| l.contains(r#""severity":"Major""#)), "{out}");
}

#[test]
fn token_auth_in_python_and_javascript_decides_as_the_rust_one_does() {
    let fixtures = common::repo_root().join("tests/fixtures/golden/token-auth");
    let tokens = r#"tokens=[{"token":"t-a","account":"A","publish":{"deny":["secret.>"]}},{"token":"t-b"}]"#;
    for plugin in [
        common::plugin("token-auth"),
        common::polyglot_plugin("python/token-auth"),
        common::polyglot_plugin("js/token-auth"),
    ] {
        let (code, out) = common::plugin_test_golden(&plugin, &fixtures, &["--config", tokens]);
        assert_eq!(code, Some(0), "{}: {out}", plugin.display());
        let (code, _) = common::plugin_test_golden(&plugin, &fixtures, &["--config", "tokens=[]"]);
        assert_eq!(code, Some(1), "{}: an empty token list is refused at init", plugin.display());
    }
}

#[test]
fn the_python_sink_appends_every_event_to_its_granted_directory_only() {
    let data = common::tempdir();
    let events = data.path().join("events.json");
    std::fs::write(&events, r#"[{"subject":"a.b","id":"1","data":{"n":1}},{"subject":"a.c","id":"2","data":"text"}]"#)
        .expect("writes");
    let sink = common::polyglot_plugin("python/jsonl-sink");
    let run = |config: &str| {
        common::eventyard()
            .args(["plugin", "test"])
            .arg(&sink)
            .arg("--event")
            .arg(&events)
            .arg("--grant-dir")
            .arg(data.path())
            .args(["--config", config])
            .output()
            .expect("eventyard runs")
    };
    let output = run("file=out/../risks.jsonl");
    assert_eq!(output.status.code(), Some(1), "a path with .. is refused");
    std::fs::create_dir(data.path().join("out")).expect("mkdir");
    let output = run("file=out/risks.jsonl");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let written = std::fs::read_to_string(data.path().join("out/risks.jsonl")).expect("the sink wrote");
    let lines: Vec<Value> = written.lines().map(|line| serde_json::from_str(line).expect("JSON lines")).collect();
    assert_eq!((lines[0]["id"].as_str(), &lines[0]["data"]), (Some("1"), &json!({"n": 1})));
    assert_eq!((lines[1]["subject"].as_str(), &lines[1]["data"]), (Some("a.c"), &json!("text")));
}

#[test]
fn a_python_plugin_imports_the_capabilities_its_manifest_names_and_is_refused_without_the_grant() {
    let wasm = nats_forward_py().display().to_string();
    let (code, out, err) = common::run_eventyard(&["plugin", "inspect", &wasm]);
    assert_eq!(code, 0, "{err}");
    let capabilities = out.lines().find(|line| line.starts_with("capabilities:")).expect("a capabilities line");
    assert!(capabilities.contains("nats") && !capabilities.contains("kafka"), "{out}");
    let events = common::tempdir();
    let event = events.path().join("e.json");
    std::fs::write(&event, r#"{"subject":"a.b"}"#).expect("writes");
    let (code, _, err) = common::run_eventyard(&["plugin", "test", &wasm, "--event", event.to_str().expect("UTF-8")]);
    assert_eq!(code, 1);
    assert!(err.contains("imports capability `nats`") && err.contains("does not grant"), "{err}");
}

/// Builds the `nats-forward-py` fixture (a sink publishing each event's data on
/// `forwarded.<subject>` through the host's NATS publisher) and returns the component.
fn nats_forward_py() -> std::path::PathBuf {
    let output = common::eventyard()
        .args(["plugin", "build"])
        .arg(common::repo_root().join("tests/fixtures/plugins/nats-forward-py"))
        .output()
        .expect("eventyard runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().last().expect("a component").into()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_grant_lets_a_plugin_publish_on_its_subjects_only() {
    let plugins = common::tempdir();
    std::fs::copy(nats_forward_py(), plugins.path().join("forward.wasm")).expect("copy");
    let config = format!(
        r#"
[service]
host = "127.0.0.1"
port = 0
[http]
listen = "127.0.0.1:0"
[plugins]
dir = "{}"
[plugin.forward]
world = "sink"
capabilities = {{ nats = ["forwarded.ok.>"] }}
[[route]]
name = "forwarding"
subject = "*.1"
sinks = ["forward"]
[[route]]
name = "dead-letters"
subject = "$DLQ.>"
sinks = ["dead"]
[sinks.forward]
kind = "plugin"
plugin = "forward"
[sinks.forward.retry]
max_attempts = 2
initial_backoff_ms = 10
[sinks.dead]
kind = "file"
root = "{{dir}}/dead"
path = "{{subject}}"
"#,
        plugins.path().display()
    );
    let router = RouterProcess::start(&config);
    let mut watcher = common::nats::RawClient::connect(router.nats.expect("the gateway is on")).await;
    watcher.send(b"CONNECT {\"verbose\":false}\r\nSUB forwarded.> 1\r\nPING\r\n").await;
    watcher.read_until("PONG\r\n", WAIT).await;
    let event = |id: &str| json!({"specversion": "1.0", "id": id, "source": "/t", "type": "t", "data": id});
    assert_eq!(router.post_event("ok.1", &event("granted")).await, 202);
    assert_eq!(router.post_event("no.1", &event("refused")).await, 202);
    let forwarded = watcher.read_until("granted", WAIT).await;
    assert!(forwarded.contains("MSG forwarded.ok.1 1"), "{forwarded}");
    let dead = router.path("dead");
    let letters = eventually("the refused publish's dead letter", WAIT, || {
        Some(json_lines_under(&dead)).filter(|letters| !letters.is_empty())
    })
    .await;
    let reason = letters[0].1["deadletterreason"].as_str().expect("a reason").to_owned();
    assert!(reason.contains("not granted: NATS subject `forwarded.no.1`"), "{reason}");
    watcher.send(b"PING\r\n").await;
    assert!(!watcher.read_until("PONG\r\n", WAIT).await.contains("refused"), "nothing on a subject not granted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_router_swaps_the_rust_handler_for_the_python_one_under_load_and_loses_nothing() {
    let plugins = common::tempdir();
    let stage = plugins.path().join("stage.wasm");
    std::fs::copy(common::plugin("severity-map"), &stage).expect("copy");
    let config = common::router::stage_config(plugins.path(), "");
    let router = RouterProcess::start(&config);
    let load = NumberedPublisher::start_with(router.url("/v1/events/numbers"), json!({"severity": "Moderate"}));
    let files = router.path("files");
    written(&files, 100).await;

    let python = common::polyglot_plugin("python/severity-map");
    common::replace_file(&python, &stage);
    let python_size = std::fs::metadata(&python).expect("built").len();
    router.wait_for_plugin("stage", "the Python generation serving", |plugin| plugin["size"] == python_size).await;
    let seen = json_lines_under(&files).len();
    written(&files, seen + 100).await;

    // Every event exactly once (`all_delivered` panics on one missing or written twice), in order.
    for (n, event) in all_delivered(load, &files).await.iter().enumerate() {
        assert_eq!(event["data"], json!({"n": n, "severity": "Warning"}), "event {n} was mapped");
    }
}
