//! Plugin contract versions end to end. A component built by the previous SDK release
//! (`eventyard:plugin@0.1.0`: the `contract-0.1` fixture, built with the SDK it carries) still loads
//! and serves, and a live router swaps it for the same source rebuilt against this SDK
//! (`eventyard:plugin@0.2.0`) under load, losing nothing.

use crate::common;

use std::path::Path;

use common::load::{NumberedPublisher, all_delivered, written};
use common::router::{RouterProcess, json_lines_under};
use serde_json::{Value, json};

/// What `plugin inspect --json` says of the component at `path`.
fn inspect(path: &Path) -> Value {
    let (code, out, err) = common::run_eventyard(&["plugin", "inspect", "--json", path.to_str().expect("a path")]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("inspect prints JSON")
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
    let speaks = |version: &'static str| move |plugin: &Value| plugin["wit_version"] == version;
    router.wait_for_plugin("stage", "the 0.1.0 component serving", speaks("0.1.0")).await;
    let load = NumberedPublisher::start(router.url("/v1/events/numbers"));
    let files = router.path("files");
    written(&files, 100).await;

    common::replace_file(&new, &stage);
    router.wait_for_plugin("stage", "the 0.2.0 rebuild serving", speaks("0.2.0")).await;
    let seen = json_lines_under(&files).len();
    written(&files, seen + 100).await;

    // Every event exactly once (`all_delivered` panics on one missing or written twice).
    let events = all_delivered(load, &files).await;
    let versions: Vec<&str> = events.iter().map(|event| event["contract"].as_str().unwrap_or("none")).collect();
    let first_new = versions.iter().position(|v| *v == "0.2.0").expect("the rebuild handled events");
    assert!(first_new > 0 && versions[..first_new].iter().all(|v| *v == "0.1.0"), "the 0.1.0 component served first");
    assert!(versions[first_new..].iter().all(|v| *v == "0.2.0"), "once swapped, the rebuild handled every event");
    assert!(events.iter().all(|event| event["tag"] == "blue"), "both read their config");
}
