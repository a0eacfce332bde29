//! The plugin sandbox, tried from inside: real components (`tests/fixtures/plugins/misbehave*`)
//! under the real runtime try to leave their preopened directory (`..`, absolute paths, symlinks
//! to files and directories outside it), and an auth policy traps, loops and exhausts its memory —
//! which must deny, never allow. A handler that changes an event in place onto a system subject
//! gets nothing there through a live router. Outbound HTTP outside the allow-list, ungranted capabilities and a
//! handler's memory cap are tried in `plugin_capabilities.rs` and `plugin_runtime.rs`.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{event, plugin, tempdir};
use eventyard::auth::{AuthPolicy, AuthRequest, Decision, Protocol};
use eventyard::plugin::{Grants, Plugin, PluginRuntime, PluginSpec, Role, RuntimeOptions};
use eventyard::route::{Handler, HandlerError};
use serde_json::json;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeOptions::default()).expect("runtime starts")
}

/// What the `misbehave` handler says when it tries `op` (`read` or `write`) on `path`.
async fn attempt(handler: &dyn Handler, op: &str, path: &str) -> String {
    let probe = event(json!({"subject": "probe", "id": "1", "type": op, "ce_subject": path}));
    match handler.handle(probe).await {
        Err(HandlerError::Rejected { message, .. }) => message,
        other => panic!("the probe answers with its result, not {other:?}"),
    }
}

#[tokio::test]
async fn a_plugin_cannot_reach_files_outside_its_directory() {
    let root = tempdir();
    let (granted, outside) = (root.path().join("granted"), root.path().join("outside"));
    std::fs::create_dir_all(&granted).expect("the granted directory is made");
    std::fs::create_dir_all(&outside).expect("the outside directory is made");
    std::fs::write(granted.join("inside.txt"), "hello").expect("a granted file is written");
    std::fs::write(outside.join("secret"), "top secret").expect("an outside file is written");
    std::os::unix::fs::symlink(outside.join("secret"), granted.join("link")).expect("a file symlink is made");
    std::os::unix::fs::symlink(&outside, granted.join("dirlink")).expect("a directory symlink is made");
    std::os::unix::fs::symlink("../outside/secret", granted.join("relative")).expect("a relative symlink is made");

    let mut spec = PluginSpec::new("misbehave", plugin("misbehave"), Role::Handler);
    spec.grants = Grants { directory: Some(granted.clone()), ..Grants::default() };
    let Plugin::Handler(handler) = runtime().load(spec).await.expect("misbehave loads") else { panic!("a handler") };

    // Inside: allowed, so the probe itself works.
    assert_eq!(attempt(&*handler, "read", "/data/inside.txt").await, "read /data/inside.txt: ok 5 bytes");
    assert_eq!(attempt(&*handler, "write", "/data/new.txt").await, "write /data/new.txt: ok");
    assert_eq!(std::fs::read_to_string(granted.join("new.txt")).expect("written inside"), "escaped");

    let host_path = outside.join("secret").display().to_string();
    for path in
        ["/data/../outside/secret", "/data/link", "/data/relative", "/data/dirlink/secret", "/etc/passwd", &host_path]
    {
        let answer = attempt(&*handler, "read", path).await;
        assert!(!answer.contains(": ok"), "read {path} escaped the sandbox: {answer}");
    }
    for path in ["/data/../outside/escaped", "/data/dirlink/escaped", "/data/link", "/tmp/escaped"] {
        let answer = attempt(&*handler, "write", path).await;
        assert!(!answer.contains(": ok"), "write {path} escaped the sandbox: {answer}");
    }
    assert_eq!(std::fs::read_to_string(outside.join("secret")).expect("the secret is still there"), "top secret");
    assert!(!outside.join("escaped").exists() && !Path::new("/tmp/escaped").exists(), "nothing was written outside");

    // Without a grant there is no directory at all.
    let spec = PluginSpec::new("misbehave", plugin("misbehave"), Role::Handler);
    let Plugin::Handler(ungranted) = runtime().load(spec).await.expect("misbehave loads") else { panic!("a handler") };
    let answer = attempt(&*ungranted, "read", "/data/inside.txt").await;
    assert!(!answer.contains(": ok"), "an ungranted plugin read a file: {answer}");
}

fn request(token: &str) -> AuthRequest {
    AuthRequest {
        protocol: Protocol::Nats,
        client_name: None,
        user: None,
        token: Some(token.into()),
        password: None,
        tls_subject: None,
        tls_sans: vec![],
        remote_addr: "127.0.0.1:4000".into(),
    }
}

#[tokio::test]
async fn an_auth_policy_that_traps_loops_or_exhausts_memory_denies() {
    let mut spec = PluginSpec::new("misbehave-auth", plugin("misbehave-auth"), Role::AuthPolicy);
    spec.limits.timeout = Duration::from_millis(300);
    spec.limits.memory_limit = 32 << 20;
    spec.limits.quarantine_after = 100;
    let Plugin::AuthPolicy(policy) = runtime().load(spec).await.expect("misbehave-auth loads") else {
        panic!("an auth policy")
    };
    assert!(matches!(policy.authorize(&request("ok")).await, Decision::Allow(_)), "the policy allows by default");
    for token in ["trap", "loop", "alloc"] {
        match policy.authorize(&request(token)).await {
            Decision::Deny(reason) => assert!(reason.contains("misbehave-auth"), "{token}: {reason}"),
            Decision::Allow(_) => panic!("a policy that failed on {token:?} let the client in"),
        }
        assert!(matches!(policy.authorize(&request("ok")).await, Decision::Allow(_)), "the policy recovers");
    }
}

/// A contract 0.2 handler changes the event it was lent in place, onto the router's reload subject,
/// and keeps it: the route checks what a kept event has become as it checks an emitted one, so the
/// forged event reaches neither the reload subject's route nor the sink, and the others pass.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_changed_in_place_onto_a_system_subject_goes_nowhere() {
    let plugins = tempdir();
    std::fs::copy(plugin("misbehave"), plugins.path().join("stage.wasm")).expect("copy");
    let config = common::router::stage_config(plugins.path(), "")
        + "[[route]]\nname = \"reloads\"\nsubject = \"$SYS.EVENTYARD.RELOAD\"\nsinks = [\"reload-log\"]\n\
           [sinks.reload-log]\nkind = \"file\"\nroot = \"{dir}/reloads\"\n";
    let router = common::router::RouterProcess::start(&config);
    let event = |id: &str, ty: &str| json!({"specversion": "1.0", "id": id, "source": "/t", "type": ty});
    assert_eq!(router.post_event("numbers", &event("forged", "forge")).await, 202);
    assert_eq!(router.post_event("numbers", &event("plain", "ok")).await, 202);
    let files = router.path("files");
    let ids = |root: &Path| -> Vec<String> {
        common::router::json_lines_under(root).iter().map(|(_, e)| e["id"].as_str().unwrap_or("").to_owned()).collect()
    };
    common::router::eventually("the plain event on disk", Duration::from_secs(30), || {
        ids(&files).contains(&"plain".to_owned()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ids(&files), ["plain"], "the forged event is not sent on");
    assert!(!ids(&router.path("reloads")).contains(&"forged".to_owned()), "nor published on the reload subject");
}
