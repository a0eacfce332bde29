//! Rolling out a new version of a handler under load, end to end: the `versioned` fixture stands
//! for both versions (its config sets the `version` extension it stamps on what it keeps, a type it
//! drops and a share of events it fails). A new version becomes a candidate beside the serving one;
//! its rules roll it back or promote it, every decision published on `$SYS.EVENTYARD.RELOAD` with
//! its figures; an operator decides through `eventyard plugin diff|promote|abort`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use eventyard::reload::{DecidedBy, ReloadReport, RolloutReport, RolloutStep};
use eventyard::route::RolloutMode;
use serde_json::{Value, json};

use crate::common::load::{NumberedPublisher, all_delivered, written};
use crate::common::router::{ADMIN_TOKEN, RouterProcess, eventually, json_lines_under, reporting_config};
use crate::common::{self, run_eventyard};

/// Plugin `stage` (the `versioned` fixture) with `stage` as its config and `rollout` as its
/// `[plugin.stage.rollout]`, unwatched, in a [`reporting_config`].
fn config(plugins: &Path, stage: &str, rollout: &str) -> String {
    reporting_config(plugins, false, stage, &format!("[plugin.stage.rollout]\n{rollout}\n"))
}

/// A plugin directory holding the `versioned` fixture as `stage.wasm`.
fn plugin_dir() -> tempfile::TempDir {
    let plugins = common::tempdir();
    std::fs::copy(common::plugin("versioned"), plugins.path().join("stage.wasm")).expect("copy");
    plugins
}

/// Writes `config` as the router's config file and reloads; the reports the reload answered.
async fn reconfigure(router: &RouterProcess, config: &str) -> Vec<ReloadReport> {
    router.rewrite_config(config);
    router.reload().await
}

fn rollout_report(report: &ReloadReport) -> Option<&RolloutReport> {
    match report {
        ReloadReport::Rollout(report) => Some(report),
        _ => None,
    }
}

/// Waits for the first rollout report published on `$SYS.EVENTYARD.RELOAD` that `wanted` picks.
async fn published(router: &RouterProcess, what: &str, wanted: impl Fn(&RolloutReport) -> bool) -> RolloutReport {
    eventually(what, Duration::from_secs(90), || {
        router.published_reports().iter().filter_map(rollout_report).find(|report| wanted(report)).cloned()
    })
    .await
}

/// The admin API's answer (status, JSON) to `method` on `path`, with the admin token or `token`.
async fn admin(router: &RouterProcess, method: reqwest::Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, router.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the admin API answers");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The version that handled each delivered event, by number.
fn versions(delivered: &[Value]) -> BTreeMap<u64, String> {
    delivered
        .iter()
        .map(|event| {
            let n = event["id"].as_str().and_then(|id| id.parse().ok()).expect("a numbered event");
            let version = event["version"].as_str().unwrap_or_else(|| panic!("event {n} has no version: {event}"));
            (n, version.to_owned())
        })
        .collect()
}

/// Where a value falls, 0..100, as the router splits keys and the fixture picks its failures
/// (FNV-1a, as the plugin guide documents).
fn bucket(value: &str) -> u64 {
    let hash = value
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3));
    hash % 100
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_failing_5_percent_is_rolled_back_with_nothing_lost_and_each_event_handled_by_one_version() {
    let plugins = plugin_dir();
    let canary = "mode = \"canary\"\nshare = 20\nmin_events = 300\nmin_duration_ms = 0\nmax_error_rate = 0.01";
    let router = RouterProcess::start(&config(plugins.path(), "version = \"1\"", canary));
    let load = NumberedPublisher::start(router.url("/v1/events/numbers"));
    let files = router.path("files");
    written(&files, 200).await;

    let candidate = "version = \"2\", error_percent = \"5\"";
    let reports = reconfigure(&router, &config(plugins.path(), candidate, canary)).await;
    let started = reports.iter().find_map(rollout_report).unwrap_or_else(|| panic!("no rollout: {reports:?}"));
    assert_eq!(
        (started.step, started.by, started.mode),
        (RolloutStep::Started, DecidedBy::Reload, RolloutMode::Canary)
    );
    assert_eq!(started.stable_generation, 1);

    let rolled_back = published(&router, "a rollback", |r| r.step == RolloutStep::RolledBack).await;
    assert_eq!(rolled_back.by, DecidedBy::Rules, "{rolled_back:?}");
    assert!(rolled_back.reason.contains("error rate"), "{}", rolled_back.reason);
    let figures = rolled_back.figures.expect("the figures it was based on");
    let candidate = &figures.candidate;
    assert!(candidate.events >= 300, "{figures:?}");
    assert!((0.02..0.10).contains(&candidate.error_rate), "about 5 %: {figures:?}");
    assert_eq!(figures.fallbacks, candidate.errors, "every event the candidate failed went to the stable version");
    assert_eq!(figures.stable.errors, 0);

    let seen = json_lines_under(&files).len();
    written(&files, seen + 200).await;
    let delivered = all_delivered(load, &files).await;
    let versions = versions(&delivered);
    let by_candidate = versions.values().filter(|v| *v == "2").count() as u64;
    // Each event arrived once, stamped by one version; the candidate's are the ones it answered
    // (one more at most: a call that ended just after the figures were read).
    let answered = candidate.events - candidate.errors;
    assert!((answered..=answered + 1).contains(&by_candidate), "{by_candidate} by the candidate, {figures:?}");
    for (n, version) in &versions {
        if bucket(&n.to_string()) < 5 {
            assert_eq!(version, "1", "event {n}, which the candidate fails, was answered by the stable version");
        }
    }
    let last = versions.keys().next_back().expect("events");
    assert_eq!(versions[last], "1", "the stable version serves alone again");

    // The rolled-back version stays out until something changes; no rollout is running.
    assert!(router.reload().await.is_empty());
    let (status, _) = admin(&router, reqwest::Method::GET, "/v1/admin/plugins/stage/rollout", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 404);
    let (status, answer) =
        admin(&router, reqwest::Method::POST, "/v1/admin/plugins/stage/promote", Some(ADMIN_TOKEN)).await;
    assert_eq!((status, answer["error"].as_str()), (409, Some("plugin `stage` has no candidate running")));
    let url = router.url("");
    let (code, _, stderr) = run_eventyard(&["plugin", "diff", "stage", "--url", &url, "--token", ADMIN_TOKEN]);
    assert!(code == 1 && stderr.contains("404") && stderr.contains("no candidate running"), "{stderr}");
    let (code, _, stderr) = run_eventyard(&["plugin", "promote", "stage", "--url", &url, "--token", "wrong"]);
    assert!(code == 2 && stderr.contains("403"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_canary_split_by_routing_key_is_promoted_and_each_key_meets_one_version() {
    let plugins = plugin_dir();
    let canary = "mode = \"canary\"\nshare = 50\nkey = \"routingkey\"\nmin_events = 400\nmin_duration_ms = 1000\nmax_fault_rate = 0.0";
    let router = RouterProcess::start(&config(plugins.path(), "version = \"1\"", canary));
    let keyed = |n: u64, event: &mut Value| event["routingkey"] = json!(format!("key-{}", n % 16));
    let load = NumberedPublisher::start_shaped(router.url("/v1/events/numbers"), json!({}), keyed);
    let files = router.path("files");
    written(&files, 200).await;

    let reports = reconfigure(&router, &config(plugins.path(), "version = \"2\"", canary)).await;
    assert!(reports.iter().filter_map(rollout_report).any(|r| r.step == RolloutStep::Started), "{reports:?}");
    let (status, rollout) =
        admin(&router, reqwest::Method::GET, "/v1/admin/plugins/stage/rollout", Some(ADMIN_TOKEN)).await;
    assert_eq!((status, rollout["figures"]["key"].as_str()), (200, Some("routingkey")), "{rollout}");

    let promoted = published(&router, "a promotion", |r| r.step == RolloutStep::Promoted).await;
    assert_eq!((promoted.by, promoted.new_generation), (DecidedBy::Rules, Some(2)), "{promoted:?}");
    let figures = promoted.figures.expect("figures");
    assert!(figures.candidate.events >= 400 && figures.stable.events > 0, "both versions served: {figures:?}");
    assert_eq!((figures.candidate.errors, figures.candidate.faults), (0, 0));
    router
        .wait_for_plugin("stage", "generation 2", |plugin| plugin["generation"] == 2 && plugin["rollout"].is_null())
        .await;

    let seen = json_lines_under(&files).len();
    written(&files, seen + 200).await;
    let delivered = all_delivered(load, &files).await;
    let versions = versions(&delivered);
    // Each key met one version until the promotion: its events are all "1", then all "2".
    let mut first_candidate: BTreeMap<u64, u64> = BTreeMap::new();
    for (n, version) in &versions {
        let key = n % 16;
        match (version.as_str(), first_candidate.get(&key)) {
            ("2", None) => drop(first_candidate.insert(key, *n)),
            ("1", Some(since)) => panic!("key-{key} met version 2 at event {since} and version 1 at {n}"),
            _ => {}
        }
    }
    assert_eq!(first_candidate.len(), 16, "after the promotion every key meets version 2");
    // The keys the hash gave the candidate met it from the start; the others only once promoted.
    let (mut candidate_keys, mut stable_keys) = (Vec::new(), Vec::new());
    for (key, since) in &first_candidate {
        if bucket(&format!("key-{key}")) < 50 { candidate_keys.push(*since) } else { stable_keys.push(*since) }
    }
    assert!(!candidate_keys.is_empty() && !stable_keys.is_empty(), "{first_candidate:?}");
    let (started, promotion) = (candidate_keys.iter().max().unwrap(), stable_keys.iter().min().unwrap());
    assert!(started + 400 < *promotion, "candidate keys from {started}, the others from {promotion}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_that_drops_one_event_type_is_caught_and_changes_no_event() {
    let plugins = plugin_dir();
    let manual = "mode = \"shadow\"\nautomatic = false";
    let router = RouterProcess::start(&config(plugins.path(), "version = \"1\"", manual));
    let typed = |n: u64, event: &mut Value| {
        if n.is_multiple_of(10) {
            event["type"] = json!("audit");
        }
    };
    let load = NumberedPublisher::start_shaped(router.url("/v1/events/numbers"), json!({}), typed);
    let files = router.path("files");
    written(&files, 100).await;

    let dropping = "version = \"1\", drop_type = \"audit\"";
    let reports = reconfigure(&router, &config(plugins.path(), dropping, manual)).await;
    let started = reports.iter().find_map(rollout_report).unwrap_or_else(|| panic!("no rollout: {reports:?}"));
    assert_eq!((started.step, started.mode), (RolloutStep::Started, RolloutMode::Shadow));
    let rollout = common::eventually_async("300 events compared", Duration::from_secs(60), || async {
        let (_, rollout) =
            admin(&router, reqwest::Method::GET, "/v1/admin/plugins/stage/rollout", Some(ADMIN_TOKEN)).await;
        (rollout["figures"]["compared"].as_u64() >= Some(300)).then_some(rollout)
    })
    .await;
    let figures = &rollout["figures"];
    let (compared, differences) = (figures["compared"].as_u64().unwrap(), figures["differences"].as_u64().unwrap());
    let skipped = figures["shadow_skipped"].as_u64().unwrap();
    assert!(differences > 0 && (differences * 10).abs_diff(compared) <= 10 + skipped * 10, "one in ten: {figures}");
    for difference in rollout["differences"].as_array().expect("differences kept") {
        assert_eq!(difference["input"]["type"], "audit", "{difference}");
        assert_eq!(difference["candidate"], json!({ "events": [] }), "{difference}");
    }

    // No token, no rollout.
    for path in ["/v1/admin/plugins/stage/rollout", "/v1/admin/plugins/stage/promote"] {
        let method = if path.ends_with("rollout") { reqwest::Method::GET } else { reqwest::Method::POST };
        assert_eq!(admin(&router, method.clone(), path, None).await.0, 401, "{path}");
        assert_eq!(admin(&router, method, path, Some("wrong")).await.0, 403, "{path}");
    }
    let (status, _) = admin(&router, reqwest::Method::POST, "/v1/admin/plugins/nothing/abort", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 404);

    // The operator's view, then the operator's decision.
    let url = router.url("");
    let operator = ["--url", url.as_str(), "--token", ADMIN_TOKEN];
    let (code, stdout, stderr) = run_eventyard(&[&["plugin", "diff", "stage"][..], &operator].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("(shadow) beside generation 1") && stdout.contains("the candidate dropped the event"),
        "{stdout}"
    );
    assert!(stdout.contains("type audit"), "{stdout}");
    let (code, stdout, stderr) = run_eventyard(&[&["plugin", "abort", "stage"][..], &operator].concat());
    assert!(code == 0 && stdout.contains("plugin stage: rolled back, generation 1 serves"), "{stdout}{stderr}");
    let aborted = published(&router, "a rollback", |r| r.step == RolloutStep::RolledBack).await;
    assert_eq!(aborted.by, DecidedBy::Operator);
    assert!(aborted.figures.expect("figures").differences >= differences);

    // With rules, the next such version is rolled back by itself.
    let automatic = "mode = \"shadow\"\nmin_events = 200\nmin_duration_ms = 0";
    let next = "version = \"1\", drop_type = \"audit\", build = \"2\"";
    let reports = reconfigure(&router, &config(plugins.path(), next, automatic)).await;
    assert!(reports.iter().filter_map(rollout_report).any(|r| r.step == RolloutStep::Started), "{reports:?}");
    let judged = published(&router, "the rules' decision", |r| r.by == DecidedBy::Rules).await;
    assert_eq!(judged.step, RolloutStep::RolledBack);
    assert!(judged.reason.contains("compared answers differed"), "{}", judged.reason);

    // The shadow changed no event: every one arrived once, audit events too, as version 1 made it.
    let delivered = all_delivered(load, &files).await;
    assert!(versions(&delivered).values().all(|version| version == "1"));
    assert!(delivered.iter().filter(|event| event["type"] == "audit").count() >= delivered.len() / 10);
}
