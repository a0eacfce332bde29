//! Plugin contract versions end to end. A component built by the previous SDK release
//! (`eventyard:plugin@0.1.0`: the `contract-0.1` fixture, built with the SDK it carries) still loads
//! and serves, and a live router swaps it for the same source rebuilt against this SDK
//! (`eventyard:plugin@0.2.0`) under load, losing nothing.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::load::{NumberedPublisher, by_number};
use common::router::{RouterProcess, eventually, json_lines_under};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// What `plugin inspect --json` says of the component at `path`.
fn inspect(path: &Path) -> Value {
    let (code, out, err) = common::run_eventyard(&["plugin", "inspect", "--json", path.to_str().expect("a path")]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("inspect prints JSON")
}

/// The contract version the router's `stage` plugin speaks now, from the admin API.
async fn serving_version(router: &RouterProcess) -> String {
    let listed: Value = router.admin("/v1/admin/plugins").await.json().await.expect("JSON");
    let plugins = listed["plugins"].as_array().cloned().unwrap_or_default();
    let stage = plugins.iter().find(|plugin| plugin["name"] == "stage").unwrap_or_else(|| panic!("{listed}"));
    stage["wit_version"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_0_1_component_serves_and_hot_swaps_to_its_0_2_rebuild_under_load_losing_nothing() {
    let (old, new) = (common::contract_0_1_component(), common::contract_0_1_rebuilt());
    let (old_info, new_info) = (inspect(&old), inspect(&new));
    assert_eq!((&old_info["wit_version"], &old_info["sdk_version"]), (&json!("0.1.0"), &json!("0.1.0")));
    assert_eq!((&new_info["wit_version"], &new_info["sdk_version"]), (&json!("0.2.0"), &json!("0.2.0")));

    let plugins = common::tempdir();
    let stage = plugins.path().join("stage.wasm");
    std::fs::copy(&old, &stage).expect("copy");
    let config = common::router::stage_config(plugins.path(), r#"tag = "blue""#);
    let router = RouterProcess::start(&config);
    assert_eq!(serving_version(&router).await, "0.1.0");
    let load = NumberedPublisher::start(router.url("/v1/events/numbers"));
    let files = router.path("files");
    written(&files, 100).await;

    common::replace_file(&new, &stage);
    let deadline = tokio::time::Instant::now() + WAIT;
    while serving_version(&router).await != "0.2.0" {
        assert!(tokio::time::Instant::now() < deadline, "the 0.2.0 rebuild never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = json_lines_under(&files).len();
    written(&files, seen + 100).await;

    let sent = load.finish().await;
    let lines = eventually("every event on disk", WAIT, || {
        let lines = json_lines_under(&files);
        (lines.len() as u64 >= sent).then_some(lines)
    })
    .await;
    assert_eq!(lines.len() as u64, sent, "no event written twice");
    let numbered = by_number(lines.iter().map(|(_, event)| event));
    assert_eq!(numbered.len() as u64, sent, "no event lost");
    let versions: Vec<&str> = numbered.values().map(|event| event["contract"].as_str().unwrap_or("none")).collect();
    let first_new = versions.iter().position(|v| *v == "0.2.0").expect("the rebuild handled events");
    assert!(first_new > 0 && versions[..first_new].iter().all(|v| *v == "0.1.0"), "the 0.1.0 component served first");
    assert!(versions[first_new..].iter().all(|v| *v == "0.2.0"), "once swapped, the rebuild handled every event");
    assert!(numbered.values().all(|event| event["tag"] == "blue"), "both read their config");
}

/// Waits until `files` holds at least `count` events.
async fn written(files: &Path, count: usize) {
    eventually(&format!("{count} events written"), WAIT, || (json_lines_under(files).len() >= count).then_some(()))
        .await;
}
