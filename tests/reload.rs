//! Hot reload of plugins end to end: the real binary under a steady stream of numbered events,
//! a plugin file replaced while it serves, reloads through `POST /v1/admin/reload` and SIGHUP.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::router::{RouterProcess, eventually, json_lines_under};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Replaces `target` with `source` the way a careful deploy does: copy aside, then rename.
fn replace_file(source: &Path, target: &Path) {
    let aside = target.with_extension("wasm.new");
    std::fs::copy(source, &aside).expect("copy");
    std::fs::rename(&aside, target).expect("rename");
}

/// A router whose `stage` handler plugin lives in `plugins`; `watch` turns the directory watcher on.
fn start(plugins: &Path, watch: bool) -> RouterProcess {
    RouterProcess::start(&format!(
        r#"
[plugins]
dir = "{plugins}"
cache_dir = ""
watch = {watch}
[plugin.stage]
world = "handler"
config = {{ set = {{ stage = "b" }} }}
[http]
listen = "127.0.0.1:0"
[[route]]
name = "all"
subject = "numbers"
handlers = ["stage"]
sinks = ["files"]
[[route]]
name = "reloads"
subject = "$SYS.EVENTYARD.RELOAD"
sinks = ["reload-log"]
[sinks.files]
kind = "file"
root = "{{dir}}/files"
[sinks.reload-log]
kind = "file"
root = "{{dir}}/reloads"
"#,
        plugins = plugins.display()
    ))
}

async fn reload(router: &RouterProcess) -> Value {
    let response = reqwest::Client::new().post(router.url("/v1/admin/reload")).send().await.expect("reload answers");
    assert_eq!(response.status(), 200);
    response.json().await.expect("reload answers JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn swapping_a_handler_under_load_changes_the_output_from_one_event_to_the_next() {
    let plugins = common::tempdir();
    let stage = plugins.path().join("stage.wasm");
    std::fs::copy(common::plugin("passthrough"), &stage).unwrap();
    let router = start(plugins.path(), false);

    // One publisher, one event per request, numbered: the order on disk is the order sent.
    let stop = Arc::new(AtomicBool::new(false));
    let url = router.url("/v1/events/numbers");
    let publisher = tokio::spawn({
        let stop = stop.clone();
        async move {
            let client = reqwest::Client::new();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let event = json!({"specversion": "1.0", "id": sent.to_string(), "source": "/t", "type": "n", "data": {"n": sent}});
                let response = client
                    .post(&url)
                    .header("content-type", "application/cloudevents+json")
                    .body(event.to_string())
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(response.status(), 202);
                sent += 1;
            }
            sent
        }
    });
    let files = router.path("files");
    eventually("events before the swap", WAIT, || (json_lines_under(&files).len() >= 200).then_some(())).await;

    // A corrupt file is refused and the running generation keeps serving.
    std::fs::write(plugins.path().join("broken.wasm.new"), b"not wasm").unwrap();
    replace_file(&plugins.path().join("broken.wasm.new"), &stage);
    let failed = reload(&router).await;
    assert_eq!(failed["reports"][0]["result"], "failed", "{failed}");
    assert!(failed["reports"][0]["error"].as_str().unwrap().contains("not a WebAssembly component"), "{failed}");

    replace_file(&common::plugin("json-transform"), &stage);
    let swapped = reload(&router).await;
    let report = &swapped["reports"][0];
    assert_eq!(report["result"], "ok", "{swapped}");
    assert_eq!((report["old_generation"].as_u64(), report["new_generation"].as_u64()), (Some(1), Some(2)));
    let seen = json_lines_under(&files).len();
    eventually("events after the swap", WAIT, || (json_lines_under(&files).len() >= seen + 200).then_some(())).await;
    stop.store(true, Ordering::Relaxed);
    let sent = publisher.await.unwrap();

    let numbers = eventually("every event on disk", WAIT, || {
        let lines = json_lines_under(&files);
        (lines.len() as u64 == sent).then_some(lines)
    })
    .await;
    let by_number: BTreeMap<u64, Value> =
        numbers.into_iter().map(|(_, event)| (event["id"].as_str().unwrap().parse().unwrap(), event)).collect();
    assert_eq!(by_number.len() as u64, sent, "no event missing or duplicated");
    let stages: Vec<bool> = by_number.values().map(|event| event["data"]["stage"] == "b").collect();
    let first_new = stages.iter().position(|new| *new).expect("the new generation handled events");
    assert!(first_new > 0, "the old generation handled the first events");
    assert!(stages[first_new..].iter().all(|new| *new), "once swapped, every later event went to the new generation");

    // Both reloads were published on $SYS.EVENTYARD.RELOAD.
    let reports = json_lines_under(&router.path("reloads"));
    let results: Vec<&str> = reports.iter().map(|(_, e)| e["data"]["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["failed", "ok"], "{reports:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_changed_plugins() {
    let plugins = common::tempdir();
    let stage = plugins.path().join("stage.wasm");
    std::fs::copy(common::plugin("passthrough"), &stage).unwrap();
    let mut router = start(plugins.path(), false);
    replace_file(&common::plugin("json-transform"), &stage);
    let pid = router.pid();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    router.wait_for_log("plugin reloaded", WAIT);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_cp_over_a_plugin_is_picked_up_and_never_loaded_half_written() {
    use std::io::Write as _;

    let plugins = common::tempdir();
    let stage = plugins.path().join("stage.wasm");
    std::fs::copy(common::plugin("passthrough"), &stage).unwrap();
    let mut router = start(plugins.path(), true);

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

    router.wait_for_log("plugin reloaded", WAIT);
    assert!(
        router.logs().iter().all(|line| !line.contains("plugin reload failed")),
        "a half-written file was loaded:\n{}",
        router.logs().join("\n")
    );
    let response = reqwest::Client::new()
        .post(router.url("/v1/events/numbers"))
        .header("content-type", "application/cloudevents+json")
        .body(json!({"specversion": "1.0", "id": "after", "source": "/t", "type": "n", "data": {"n": 1}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let files = router.path("files");
    let lines =
        eventually("the event on disk", WAIT, || Some(json_lines_under(&files)).filter(|l| !l.is_empty())).await;
    assert_eq!(lines[0].1["data"]["stage"], "b", "the new generation handled it");
}
