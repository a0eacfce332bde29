//! Hot reload end to end: the real binary under a steady stream of numbered events while plugin
//! files and the config file change; reloads through `POST /v1/admin/reload`, SIGHUP and the file
//! watcher. Every test checks that no event is lost or handled twice.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::load::{NumberedPublisher, all_delivered, by_number, written};
use common::replace_file;
use common::router::{RouterProcess, eventually, json_lines_under, reporting_config};
use eventyard::reload::{ConfigReport, Outcome, PluginChange, PluginReport, ReloadReport};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// The config of these tests: [`reporting_config`] with `stage` told to `set = { stage = "b" }`.
fn config(plugins: &Path, watch: bool, extra: &str) -> String {
    reporting_config(plugins, watch, "set = { stage = \"b\" }", extra)
}

/// A plugin directory holding `passthrough` as `stage.wasm`.
fn plugin_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let plugins = common::tempdir();
    let stage = plugins.path().join("stage.wasm");
    std::fs::copy(common::plugin("passthrough"), &stage).expect("copy");
    (plugins, stage)
}

/// `report` as a config report.
fn config_report(report: &ReloadReport) -> &ConfigReport {
    match report {
        ReloadReport::Config(report) => report,
        other => panic!("not a config report: {other:?}"),
    }
}

/// `report` as a plugin report.
fn plugin_report(report: &ReloadReport) -> &PluginReport {
    match report {
        ReloadReport::Plugin(report) => report,
        other => panic!("not a plugin report: {other:?}"),
    }
}

/// Names, as a report lists them.
fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_plugin_reloads_change_nothing_and_a_good_swap_changes_the_output_from_one_event_to_the_next() {
    let (plugins, stage) = plugin_dir();
    let router = RouterProcess::start(&config(plugins.path(), false, ""));
    let load = NumberedPublisher::start(router.url("/v1/events/numbers"));
    let files = router.path("files");
    written(&files, 100).await;

    let corrupt = plugins.path().join("corrupt.bin");
    std::fs::write(&corrupt, b"not wasm").unwrap();
    let refusals = [
        (corrupt, "not a WebAssembly component"),
        (common::plugin("file-sink"), "exports the sink world"),
        (common::plugin("severity-map"), "init failed: config: unknown key `set`"),
    ];
    for (file, reason) in &refusals {
        replace_file(file, &stage);
        let reports = router.reload().await;
        assert_eq!(reports.len(), 1, "{reports:?}");
        let report = plugin_report(&reports[0]);
        assert_eq!(report.result, Outcome::Failed, "{reports:?}");
        assert!(report.error.as_deref().unwrap().contains(reason), "{reports:?}");
        let seen = json_lines_under(&files).len();
        written(&files, seen + 50).await;
    }

    replace_file(&common::plugin("json-transform"), &stage);
    let reports = router.reload().await;
    let report = plugin_report(&reports[0]);
    assert_eq!(report.result, Outcome::Ok, "{reports:?}");
    assert_eq!((report.old_generation, report.new_generation), (Some(1), Some(2)));
    let seen = json_lines_under(&files).len();
    written(&files, seen + 100).await;

    let events = all_delivered(load, &files).await;
    let new: Vec<bool> = events.iter().map(|event| event["data"]["stage"] == "b").collect();
    let first_new = new.iter().position(|new| *new).expect("the new generation handled events");
    assert!(first_new > 0, "the old generation handled the first events");
    assert!(new[first_new..].iter().all(|new| *new), "once swapped, every later event went to the new generation");

    let results: Vec<bool> = router.published_reports().iter().map(ReloadReport::is_ok).collect();
    assert_eq!(results, [false, false, false, true]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_config_changes_nothing_and_publishes_why() {
    let (plugins, stage) = plugin_dir();
    replace_file(&common::plugin("json-transform"), &stage);
    let good = config(plugins.path(), false, "");
    let router = RouterProcess::start(&good);
    let load = NumberedPublisher::start(router.url("/v1/events/numbers"));
    let files = router.path("files");
    written(&files, 50).await;

    let invalid = [
        (format!("{good}\n[bogus]\nkey = 1\n"), "unknown field `bogus`"),
        (good.replace("sinks = [\"files\"]", "sinks = [\"nowhere\"]"), "nowhere"),
        // A plugin that refuses its new settings in `init`.
        (good.replace("stage = \"b\" }", "stage = \"b\" }, unknown = 1"), "init failed"),
        (good.replace("handlers = [\"stage\"]", "handlers = [\"missing\"]"), "missing"),
    ];
    for (text, reason) in &invalid {
        router.rewrite_config(text);
        let reports = router.reload().await;
        let report = reports.iter().find_map(|r| matches!(r, ReloadReport::Config(_)).then(|| config_report(r)));
        let report = report.expect("a config report");
        assert_eq!(report.result, Outcome::Failed, "{reports:?}");
        assert!(report.error.as_deref().unwrap().contains(reason), "{reports:?}");
        let seen = json_lines_under(&files).len();
        written(&files, seen + 50).await;
    }
    let events = all_delivered(load, &files).await;
    assert!(events.iter().all(|event| event["data"]["stage"] == "b"), "the first generation handled every event");
    let published = router.published_reports();
    assert_eq!(published.len(), invalid.len());
    assert!(published.iter().all(|r| config_report(r).result == Outcome::Failed), "{published:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_reload_adds_a_route_and_sink_and_drains_a_removed_sink_under_load() {
    let (plugins, _) = plugin_dir();
    let base = config(plugins.path(), false, "");
    // The copy sink holds events for up to two seconds, so it has a backlog when it is removed;
    // the files sink changes a setting and keeps its queue.
    let with_copy = config(
        plugins.path(),
        false,
        r#"
[[route]]
name = "copying"
subject = "numbers"
sinks = ["copy"]
[sinks.copy]
kind = "file"
root = "{dir}/copy"
batch_size = 100000
linger_ms = 2000
"#,
    )
    .replace("root = \"{dir}/files\"", "root = \"{dir}/files\"\nlinger_ms = 7");
    let router = RouterProcess::start(&base);
    let load = NumberedPublisher::start(router.url("/v1/events/numbers"));
    let files = router.path("files");
    written(&files, 50).await;

    router.rewrite_config(&with_copy);
    let reports = router.reload().await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = config_report(&reports[0]);
    assert_eq!(report.result, Outcome::Ok, "{reports:?}");
    let changes = &report.applied.as_ref().expect("what the config changed").changes;
    assert_eq!(changes.sinks_added, names(&["copy"]));
    assert_eq!(changes.routes_added, names(&["copying"]));
    assert_eq!(changes.sinks_changed, names(&["files"]));
    // The event in flight while the reload returned may have been accepted just before it.
    let copy_from = load.sent() + 1;
    let copy = router.path("copy");
    written(&copy, 1).await;

    router.rewrite_config(&base);
    let copy_until = load.sent();
    let reports = router.reload().await;
    let changes = &config_report(&reports[0]).applied.as_ref().expect("what the config changed").changes;
    assert_eq!(changes.sinks_removed, names(&["copy"]), "{reports:?}");
    assert_eq!(changes.routes_removed, names(&["copying"]), "{reports:?}");
    assert_eq!(changes.sinks_changed, names(&["files"]), "{reports:?}");
    let seen = json_lines_under(&files).len();
    written(&files, seen + 100).await;
    all_delivered(load, &files).await;

    // The removed sink delivered its backlog: every event published while it was configured.
    let copied = eventually("the copy sink's backlog on disk", WAIT, || {
        let lines = json_lines_under(&copy);
        let numbers: Vec<u64> = by_number(lines.iter().map(|(_, e)| e)).into_keys().collect();
        numbers.last().is_some_and(|last| *last + 1 >= copy_until).then_some(numbers)
    })
    .await;
    let (first, last) = (copied[0], copied[copied.len() - 1]);
    assert!(
        first <= copy_from && last + 1 >= copy_until,
        "copy covers {first}..={last}, configured over {copy_from}..{copy_until}"
    );
    assert_eq!(copied.len() as u64, last - first + 1, "no gap in the removed sink's events");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_plugin_unloads_only_when_unused_and_the_admin_api_lists_the_plugins() {
    let (plugins, stage) = plugin_dir();
    let router = RouterProcess::start(&config(plugins.path(), false, ""));
    let load = NumberedPublisher::start(router.url("/v1/events/numbers"));
    let files = router.path("files");
    written(&files, 50).await;

    let extra = plugins.path().join("extra.wasm");
    std::fs::copy(common::plugin("subject-filter"), &extra).unwrap();
    let reports = router.reload().await;
    let report = plugin_report(&reports[0]);
    assert_eq!((report.plugin.as_str(), report.change, report.result), ("extra", PluginChange::Add, Outcome::Ok));

    let listed: Value = router.admin("/v1/admin/plugins").await.json().await.unwrap();
    let names: Vec<&str> = listed["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["extra", "stage"]);
    let stage_info = &listed["plugins"][1];
    assert_eq!(stage_info["world"], "handler");
    assert_eq!(stage_info["generation"], 1);
    assert_eq!(stage_info["sha256"].as_str().unwrap().len(), 64);
    assert!(stage_info["limits"]["timeout_ms"].as_u64().unwrap() > 0);
    assert!(stage_info["stats"]["calls"].as_u64().unwrap() >= 50, "{stage_info}");

    std::fs::remove_file(&extra).unwrap();
    std::fs::remove_file(&stage).unwrap();
    let mut reports = router.reload().await;
    reports.sort_by_key(|r| plugin_report(r).plugin.clone());
    let (extra, stage) = (plugin_report(&reports[0]), plugin_report(&reports[1]));
    assert_eq!((extra.change, extra.result), (PluginChange::Unload, Outcome::Ok));
    assert_eq!(stage.result, Outcome::Failed, "{reports:?}");
    assert!(stage.error.as_deref().unwrap().contains("route `all` uses it"), "{reports:?}");
    let seen = json_lines_under(&files).len();
    written(&files, seen + 50).await;
    all_delivered(load, &files).await;

    let listed: Value = router.admin("/v1/admin/plugins").await.json().await.unwrap();
    assert_eq!(listed["plugins"].as_array().unwrap().len(), 1, "{listed}");
    let metrics = reqwest::get(router.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"eventyard_reloads_total{kind="plugin",result="ok"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"eventyard_reloads_total{kind="plugin",result="failed"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_config_applies_new_tokens_live_and_reports_what_needs_a_restart() {
    let (plugins, _) = plugin_dir();
    let with_token = |token: &str, listen: &str| {
        config(plugins.path(), true, "")
            .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{listen}\"\n[http.auth]\ntokens = [\"{token}\"]"))
    };
    let router = RouterProcess::start(&with_token("first", "127.0.0.1:0"));
    let publish = |token: &'static str| {
        let url = router.url("/v1/events/numbers");
        async move {
            let response = reqwest::Client::new().post(url).bearer_auth(token).body("x").send().await.unwrap();
            response.status().as_u16()
        }
    };
    assert_eq!(publish("first").await, 202);

    // The watcher sees the edit; no reload call.
    router.rewrite_config(&with_token("second", "127.0.0.1:1"));
    let report = eventually("the config reload report", WAIT, || {
        router.published_reports().into_iter().find(|r| matches!(r, ReloadReport::Config(_)))
    })
    .await;
    let report = config_report(&report);
    assert_eq!(report.result, Outcome::Ok, "{report:?}");
    assert_eq!(report.applied.as_ref().expect("what the config changed").restart_required, names(&["http.listen"]));
    assert_eq!((report.old_generation, report.new_generation), (1, Some(2)));
    assert_eq!(publish("first").await, 403, "the old token no longer works");
    assert_eq!(publish("second").await, 202, "the new one does, on the old address");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_changed_plugins() {
    let (plugins, stage) = plugin_dir();
    let mut router = RouterProcess::start(&config(plugins.path(), false, ""));
    replace_file(&common::plugin("json-transform"), &stage);
    let pid = router.pid();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    router.wait_for_log(r#""message":"reloaded""#, WAIT);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_cp_over_a_plugin_is_picked_up_and_never_loaded_half_written() {
    use std::io::Write as _;

    let (plugins, stage) = plugin_dir();
    let mut router = RouterProcess::start(&config(plugins.path(), true, ""));
    let load = NumberedPublisher::start(router.url("/v1/events/numbers"));

    // Overwrite in place, the way `cp` does, slowly: 16 KiB at a time with pauses shorter than the
    // watcher's quiet time, so a reload that did not wait would see a truncated component.
    let bytes = std::fs::read(common::plugin("json-transform")).unwrap();
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(&stage).unwrap();
    for chunk in bytes.chunks(16 << 10) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    drop(file);

    router.wait_for_log(r#""message":"reloaded""#, WAIT);
    assert!(
        router.logs().iter().all(|line| !line.contains("reload failed")),
        "a half-written file was loaded:\n{}",
        router.logs().join("\n")
    );
    let files = router.path("files");
    let seen = json_lines_under(&files).len();
    written(&files, seen + 50).await;
    let events = all_delivered(load, &files).await;
    assert_eq!(events.last().unwrap()["data"]["stage"], "b", "the new generation handles events");
}
