//! The plugin runtime end to end: real components built from `plugins/` and
//! `tests/fixtures/plugins/`, loaded through `PluginRuntime` and called through the host's role
//! traits, as the router will call them.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{data, event, plugin, tempdir};
use eventyard::auth::{AuthPolicy, AuthRequest, Decision, Protocol};
use eventyard::fault::Fault;
use eventyard::plugin::{
    Grants, Plugin, PluginError, PluginRuntime, PluginSpec, Role, RuntimeOptions, Topics, WasmHandler,
};
use eventyard::route::{Handler, HandlerError};
use eventyard::sink::{DeliveryError, Sink};
use serde_json::json;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeOptions { pool_instances: 16, ..RuntimeOptions::default() }).expect("runtime starts")
}

fn spec(name: &str, role: Role, config: &[(&str, &str)]) -> PluginSpec {
    let mut spec = PluginSpec::new(name, plugin(name), role);
    spec.config = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    spec
}

async fn handler(runtime: &PluginRuntime, spec: PluginSpec) -> Arc<WasmHandler> {
    match runtime.load(spec).await {
        Ok(Plugin::Handler(handler)) => handler,
        Ok(_) => panic!("loaded a plugin of another role"),
        Err(err) => panic!("load failed: {err}"),
    }
}

async fn load_err(runtime: &PluginRuntime, spec: PluginSpec) -> PluginError {
    match runtime.load(spec).await {
        Ok(_) => panic!("load succeeded but should have been refused"),
        Err(err) => err,
    }
}

fn order(ty: &str) -> eventyard::event::Event {
    event(json!({"subject": "orders.eu.created", "type": ty, "data": {"id": 7, "severity": "Important"}}))
}

#[tokio::test]
async fn passthrough_returns_the_event_unchanged_one_by_one_and_in_batches() {
    let runtime = runtime();
    let passthrough = handler(&runtime, spec("passthrough", Role::Handler, &[])).await;
    let input = order("order.created");
    assert_eq!(passthrough.handle(input.clone()).await.unwrap(), vec![input.clone()]);

    let batch: Vec<_> = (0..5).map(|i| event(json!({"subject": format!("s.{i}"), "data_text": "x"}))).collect();
    let results = passthrough.handle_batch(batch.clone()).await;
    let outputs: Vec<_> = results.into_iter().map(|r| r.unwrap().remove(0)).collect();
    assert_eq!(outputs, batch);
    assert_eq!(passthrough.meta.info.sdk_version.as_deref(), Some("0.2.0"));
}

#[tokio::test]
async fn subject_filter_keeps_allowed_subjects_and_types() {
    let runtime = runtime();
    let config = [("allow", r#"["orders.>"]"#), ("deny", "orders.*.deleted"), ("types", r#"["order.created"]"#)];
    let filter = handler(&runtime, spec("subject-filter", Role::Handler, &config)).await;
    let pass = |subject: &str, ty: &str| event(json!({"subject": subject, "type": ty}));
    assert_eq!(filter.handle(pass("orders.eu.created", "order.created")).await.unwrap().len(), 1);
    assert!(filter.handle(pass("orders.eu.deleted", "order.created")).await.unwrap().is_empty());
    assert!(filter.handle(pass("users.eu.created", "order.created")).await.unwrap().is_empty());
    assert!(filter.handle(pass("orders.eu.created", "order.shipped")).await.unwrap().is_empty());

    let bad = load_err(&runtime, spec("subject-filter", Role::Handler, &[("deny", "a..b")])).await;
    assert!(matches!(&bad, PluginError::Init { message, .. } if message.contains("a..b")), "{bad}");
}

#[tokio::test]
async fn json_transform_renames_sets_and_removes_fields() {
    let runtime = runtime();
    let config = [
        ("rename", r#"{"id": "order.id"}"#),
        ("set", r#"{"source": "eventyard", "order.region": "eu"}"#),
        ("remove", r#"["severity"]"#),
    ];
    let transform = handler(&runtime, spec("json-transform", Role::Handler, &config)).await;
    let out = transform.handle(order("order.created")).await.unwrap();
    assert_eq!(data(&out[0]), json!({"order": {"id": 7, "region": "eu"}, "source": "eventyard"}));

    let text = event(json!({"subject": "a", "data_text": "not json"}));
    let err = transform.handle(text).await.unwrap_err();
    assert!(matches!(&err, HandlerError::Rejected { retryable: false, .. }), "{err}");
}

#[tokio::test]
async fn severity_map_follows_seed_004_and_rejects_unknown_severities() {
    let runtime = runtime();
    let map = handler(&runtime, spec("severity-map", Role::Handler, &[])).await;
    for (given, expected) in
        [("Critical", "Critical"), ("Important", "Major"), ("Moderate", "Warning"), ("Low", "Info")]
    {
        let input = event(json!({"subject": "insights.report", "data": {"severity": given}}));
        let out = map.handle(input).await.unwrap();
        assert_eq!(data(&out[0])["severity"], expected, "{given}");
    }
    let unknown = event(json!({"subject": "insights.report", "id": "ev-9", "data": {"severity": "Bogus"}}));
    match map.handle(unknown).await {
        Err(HandlerError::Rejected { message, retryable: false }) => {
            assert!(message.contains("Bogus") && message.contains("ev-9"), "{message}")
        }
        other => panic!("expected a permanent rejection, got {other:?}"),
    }
}

fn auth_request(token: Option<&str>) -> AuthRequest {
    AuthRequest {
        protocol: Protocol::Nats,
        client_name: Some("test".into()),
        user: None,
        token: token.map(str::to_owned),
        password: None,
        tls_subject: None,
        tls_sans: vec![],
        remote_addr: "127.0.0.1:4000".into(),
    }
}

#[tokio::test]
async fn token_auth_grants_per_token_permissions_and_denies_the_rest() {
    let runtime = runtime();
    let tokens = json!([
        {"token": "feed-token", "account": "FEED", "publish": {"allow": ["feed.>"]}, "subscribe": {"allow": ["feed.>"], "deny": ["feed.private.>"]}},
        {"token": "admin-token", "account": "SYS"}
    ])
    .to_string();
    let loaded = runtime.load(spec("token-auth", Role::AuthPolicy, &[("tokens", &tokens)])).await.unwrap();
    let Plugin::AuthPolicy(policy) = loaded else { panic!("not an auth policy") };

    match policy.authorize(&auth_request(Some("feed-token"))).await {
        Decision::Allow(grant) => {
            assert_eq!(grant.account, "FEED");
            assert_eq!(grant.publish.allow, ["feed.>"]);
            assert_eq!(grant.subscribe.deny, ["feed.private.>"]);
        }
        Decision::Deny(reason) => panic!("denied: {reason}"),
    }
    assert!(
        matches!(policy.authorize(&auth_request(Some("admin-token"))).await, Decision::Allow(g) if g.account == "SYS")
    );
    assert_eq!(policy.authorize(&auth_request(Some("wrong"))).await, Decision::Deny("unknown token".into()));
    assert_eq!(policy.authorize(&auth_request(None)).await, Decision::Deny("no token given".into()));
}

#[tokio::test]
async fn file_sink_writes_the_seed_002_layout_inside_its_granted_directory_only() {
    let runtime = runtime();
    let dir = tempdir();
    let mut sink_spec = spec("file-sink", Role::Sink, &[]);
    sink_spec.grants = Grants { directory: Some(dir.path().to_path_buf()), ..Grants::default() };
    let Plugin::Sink(sink) = runtime.load(sink_spec).await.unwrap() else { panic!("not a sink") };

    let batch: Vec<_> = (0..3)
        .map(|i| {
            event(json!({
                "subject": "audit", "id": format!("a{i}"), "time": "2024-03-05T07:08:09Z",
                "extensions": [["routingkey", "node-1"]], "data": {"n": i}
            }))
        })
        .collect();
    sink.deliver(&batch).await.unwrap();
    let written = std::fs::read_to_string(dir.path().join("audit/node-1/2024/03/05/07/events.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = written.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["id"], "a2");
    assert_eq!(lines[2]["data"], json!({"n": 2}));
    assert_eq!(lines[2]["routingkey"], "node-1");

    // The same component without the grant sees no directory and says so; nothing is written anywhere.
    let Plugin::Sink(ungranted) = runtime.load(spec("file-sink", Role::Sink, &[])).await.unwrap() else { panic!() };
    let err = ungranted.deliver(&batch).await.unwrap_err();
    assert!(matches!(&err, DeliveryError::Retryable(m) if m.contains("/data")), "{err}");
}

#[tokio::test]
async fn a_trap_fails_one_call_and_the_next_call_on_the_same_plugin_succeeds() {
    let runtime = runtime();
    let misbehave = handler(&runtime, spec("misbehave", Role::Handler, &[])).await;
    let err = misbehave.handle(order("trap")).await.unwrap_err();
    assert!(matches!(&err, HandlerError::Fault(Fault::Trap(_))), "{err}");
    assert_eq!(misbehave.handle(order("ok")).await.unwrap(), vec![order("ok")]);
    let stats = misbehave.stats();
    assert_eq!(stats.faults.load(Ordering::Relaxed), 1);
    assert_eq!(stats.instances.load(Ordering::Relaxed), 2, "the trapped instance was replaced");

    // A guest error value is an answer, not a fault: the instance stays.
    let err = misbehave.handle(order("retryable")).await.unwrap_err();
    assert!(matches!(err, HandlerError::Rejected { retryable: true, .. }));
    assert_eq!(stats.instances.load(Ordering::Relaxed), 2);
}

/// Yields to the scheduler once, re-queueing at once (tokio's `yield_now` defers its wake-up on a
/// current-thread runtime, which would let one task run 61 polls in a row).
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn a_looping_plugin_is_stopped_at_its_timeout_while_other_plugins_keep_serving() {
    let runtime = runtime();
    let mut looping = spec("misbehave", Role::Handler, &[]);
    looping.limits.timeout = Duration::from_millis(300);
    let looping = handler(&runtime, looping).await;
    let passthrough = handler(&runtime, spec("passthrough", Role::Handler, &[])).await;

    // One thread: the passthrough calls can only complete while the loop runs if the loop yields.
    let started = Instant::now();
    let stuck = tokio::spawn({
        let looping = looping.clone();
        async move { looping.handle(order("loop")).await }
    });
    let done = Arc::new(AtomicBool::new(false));
    let server = tokio::spawn({
        let done = done.clone();
        async move {
            let mut served = 0;
            while !done.load(Ordering::Relaxed) {
                passthrough.handle(order("ok")).await.unwrap();
                served += 1;
                yield_once().await;
            }
            served
        }
    });
    let result = stuck.await.unwrap();
    done.store(true, Ordering::Relaxed);
    let served = server.await.unwrap();
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert_eq!(err, HandlerError::Fault(Fault::Timeout(Duration::from_millis(300))));
    assert!(elapsed >= Duration::from_millis(300), "stopped early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "stopped late: {elapsed:?}");
    assert!(served > 10, "only {served} passthrough calls completed while the loop ran");
    assert_eq!(looping.handle(order("ok")).await.unwrap().len(), 1, "the plugin recovers");
}

#[tokio::test]
async fn an_allocating_plugin_is_stopped_at_its_memory_limit() {
    let runtime = runtime();
    let mut hog = spec("misbehave", Role::Handler, &[]);
    hog.limits.memory_limit = 32 << 20;
    let hog = handler(&runtime, hog).await;
    let err = hog.handle(order("alloc")).await.unwrap_err();
    assert_eq!(err, HandlerError::Fault(Fault::OutOfMemory(32 << 20)));
    assert_eq!(hog.handle(order("ok")).await.unwrap().len(), 1, "the plugin recovers");
}

/// A plugin that makes events in the host without bound (keeping only their handles, so its own
/// memory stays small) is stopped at its memory limit too: the host holds no more for it.
#[tokio::test]
async fn a_plugin_hoarding_events_in_the_host_is_stopped_at_its_memory_limit() {
    let runtime = runtime();
    let mut hoarder = spec("misbehave", Role::Handler, &[]);
    hoarder.limits.memory_limit = 32 << 20;
    let hoarder = handler(&runtime, hoarder).await;
    let err = hoarder.handle(order("hoard")).await.unwrap_err();
    assert_eq!(err, HandlerError::Fault(Fault::OutOfMemory(32 << 20)));
    assert_eq!(hoarder.handle(order("ok")).await.unwrap().len(), 1, "the plugin recovers");
}

/// An input a plugin keeps past its call (in its state) is still whole when it sends it on later.
#[tokio::test]
async fn an_event_kept_past_its_call_is_sent_on_whole_later() {
    let runtime = runtime();
    let keeper = handler(&runtime, spec("misbehave", Role::Handler, &[])).await;
    let mut first = order("stash");
    first.context.id = "kept".into();
    assert!(keeper.handle(first.clone()).await.unwrap().is_empty(), "stashed, not sent on");
    let out = keeper.handle(order("unstash")).await.unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!((&out[0].context.id, &out[0].data, &out[0].subject), (&first.context.id, &first.data, &first.subject));
    assert_eq!(out[1].context.ty, "unstash");
}

/// An instance whose memory only grows (1 MiB kept per call) is replaced between calls once it
/// holds three quarters of its cap, so no call fails for it.
#[tokio::test]
async fn an_instance_whose_memory_keeps_growing_is_replaced_before_a_call_fails() {
    let runtime = runtime();
    let mut leaky = spec("misbehave", Role::Handler, &[]);
    leaky.limits.memory_limit = 32 << 20;
    let leaky = handler(&runtime, leaky).await;
    for call in 0..100 {
        let kept = leaky.handle(order("leak")).await;
        assert!(kept.is_ok_and(|events| events.len() == 1), "call {call} failed");
    }
    let stats = leaky.stats();
    assert!(stats.replaced.load(Ordering::Relaxed) >= 3, "{stats:?}");
    assert_eq!(stats.faults.load(Ordering::Relaxed), 0, "{stats:?}");
}

#[tokio::test]
async fn repeated_faults_quarantine_the_plugin_until_its_backoff_ends() {
    let runtime = runtime();
    let mut spec = spec("misbehave", Role::Handler, &[]);
    spec.limits.quarantine_after = 3;
    spec.limits.quarantine_backoff = Duration::from_millis(400);
    let misbehave = handler(&runtime, spec).await;
    for _ in 0..3 {
        assert!(matches!(misbehave.handle(order("trap")).await, Err(HandlerError::Fault(Fault::Trap(_)))));
    }
    let err = misbehave.handle(order("ok")).await.unwrap_err();
    assert!(matches!(err, HandlerError::Fault(Fault::Quarantined(_))), "{err}");
    assert_eq!(misbehave.stats().quarantines.load(Ordering::Relaxed), 1);
    // Waits out the 400 ms backoff: the time passing is what is under test, not an event to poll for.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(misbehave.handle(order("ok")).await.unwrap().len(), 1, "served again after the backoff");
}

#[tokio::test]
async fn a_failing_init_refuses_the_plugin() {
    let err = load_err(&runtime(), spec("misbehave", Role::Handler, &[("fail_init", "true")])).await;
    assert!(matches!(&err, PluginError::Init { message, .. } if message.contains("on purpose")), "{err}");
}

/// A new instance has at least 5 s to start, not the call timeout (an interpreter's start-up takes
/// longer than a call, more so on a busy machine); an `init` that never ends is still stopped.
#[tokio::test]
async fn an_init_that_never_ends_is_stopped_after_the_start_up_time() {
    let started = Instant::now();
    let err = load_err(&runtime(), spec("misbehave", Role::Handler, &[("loop_init", "true")])).await;
    assert!(matches!(&err, PluginError::InitFault { fault: Fault::Timeout(t), .. } if t.as_secs() == 5), "{err}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(5), "stopped at the call timeout instead: {took:?}");
}

#[tokio::test]
async fn a_plugin_of_the_wrong_world_is_refused_by_name() {
    let err = load_err(&runtime(), spec("file-sink", Role::Handler, &[])).await;
    let text = err.to_string();
    assert!(matches!(err, PluginError::WrongWorld { .. }), "{text}");
    assert!(
        text.contains("exports the sink world") && text.contains("its config asks for the handler world"),
        "{text}"
    );
}

#[tokio::test]
async fn a_plugin_of_another_wit_version_is_refused_by_name() {
    let err = load_err(&runtime(), spec("future-wit", Role::Handler, &[])).await;
    let text = err.to_string();
    assert!(matches!(err, PluginError::WitVersion { .. }), "{text}");
    assert!(text.contains("eventyard:plugin@0.3.0") && text.contains("eventyard:plugin@0.2.0"), "{text}");
}

#[tokio::test]
async fn corrupt_and_truncated_files_are_refused_by_name() {
    let runtime = runtime();
    let dir = tempdir();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").unwrap();
    let err = load_err(&runtime, PluginSpec::new("garbage", &garbage, Role::Handler)).await;
    assert!(matches!(err, PluginError::NotAComponent { .. }), "{err}");
    assert!(err.to_string().contains("garbage.wasm"), "{err}");

    let bytes = std::fs::read(plugin("passthrough")).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(&runtime, PluginSpec::new("truncated", &truncated, Role::Handler)).await;
    assert!(matches!(err, PluginError::Invalid { .. }), "{err}");

    let missing = load_err(&runtime, PluginSpec::new("missing", dir.path().join("nope.wasm"), Role::Handler)).await;
    assert!(matches!(missing, PluginError::Read { .. }), "{missing}");
}

#[tokio::test]
async fn an_ungranted_capability_is_refused_and_a_granted_one_links() {
    let runtime = runtime();
    let err = load_err(&runtime, spec("kafka-probe", Role::Sink, &[])).await;
    let text = err.to_string();
    assert!(matches!(err, PluginError::CapabilityNotGranted { .. }), "{text}");
    assert!(text.contains("`kafka`") && text.contains("kafka-producer"), "{text}");

    // Granted but the runtime has no connection: it loads, and a delivery says why it cannot work.
    let mut granted = spec("kafka-probe", Role::Sink, &[]);
    granted.grants.kafka = Some(Topics::Any);
    let Plugin::Sink(sink) = runtime.load(granted).await.unwrap() else { panic!("not a sink") };
    let err = sink.deliver(&[order("x")]).await.unwrap_err();
    assert!(err.to_string().contains("has no connection"), "{err}");
}

#[tokio::test]
async fn compiled_plugins_are_cached_by_content_hash() {
    let cache = tempdir();
    let options =
        RuntimeOptions { cache_dir: Some(cache.path().to_path_buf()), pool_instances: 8, ..Default::default() };
    let first = PluginRuntime::new(options.clone()).unwrap();
    handler(&first, spec("passthrough", Role::Handler, &[])).await;
    let entries: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let hash = eventyard::plugin::content_hash(&std::fs::read(plugin("passthrough")).unwrap());
    assert!(entries[0].file_name().unwrap().to_string_lossy().starts_with(&hash));

    // A second runtime loads from the cache, and a damaged artifact falls back to compiling.
    let second = PluginRuntime::new(options.clone()).unwrap();
    let passthrough = handler(&second, spec("passthrough", Role::Handler, &[])).await;
    assert_eq!(passthrough.handle(order("ok")).await.unwrap().len(), 1);
    std::fs::write(&entries[0], b"damaged").unwrap();
    let third = PluginRuntime::new(options).unwrap();
    let passthrough = handler(&third, spec("passthrough", Role::Handler, &[])).await;
    assert_eq!(passthrough.handle(order("ok")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn many_concurrent_calls_share_a_bounded_set_of_instances() {
    let runtime = runtime();
    let mut spec = spec("passthrough", Role::Handler, &[]);
    spec.limits.max_instances = 2;
    let passthrough = handler(&runtime, spec).await;
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let p = passthrough.clone();
            tokio::spawn(async move { p.handle(event(json!({"subject": format!("n.{i}")}))).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap()[0].subject, format!("n.{i}"));
    }
    assert!(passthrough.stats().instances.load(Ordering::Relaxed) <= 2);
}
