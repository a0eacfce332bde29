//! `eventyard tap` against a live router: it records events as the user it is given into a fixture
//! file, which `plugin test` replays, against one plugin version and then another.

use crate::common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::router::RouterProcess;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[service]
host = "127.0.0.1"
port = 0
[service.auth]
system_account = "SYS"
[[service.auth.users]]
user = "app"
password = "app"
[[service.auth.users]]
user = "ops"
password = "ops"
account = "OPS"
[[service.auth.users]]
user = "admin"
password = "admin"
account = "SYS"
[http]
listen = "127.0.0.1:0"
[[route]]
name = "risks"
subject = "risk.>"
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{dir}/files"
"#;

/// Starts `eventyard tap` with `args` and waits until it says it is recording.
fn tap(args: &[&str]) -> Child {
    let mut child =
        common::eventyard().arg("tap").args(args).stderr(Stdio::piped()).spawn().expect("eventyard tap starts");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).expect("tap writes to stderr");
    assert!(line.contains("recording"), "{line}");
    // Keep reading, so tap's later lines never meet a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

/// Waits for `child` to exit by itself, successfully.
async fn finished(mut child: Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("waits") {
            assert!(status.success(), "tap exited with {status}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "tap did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tap_records_live_events_that_plugin_test_replays_against_two_versions() {
    let router = RouterProcess::start(CONFIG);
    let server = format!("nats://{}", router.nats.expect("the gateway listens"));
    let dir = common::tempdir();
    let fixtures = dir.path().join("fixtures");
    std::fs::create_dir(&fixtures).expect("mkdir");
    let recorded = fixtures.join("live.jsonl");
    let recorded_arg = recorded.to_str().expect("UTF-8");

    let recording = tap(&[
        "risk.>",
        "--out",
        recorded_arg,
        "--server",
        &server,
        "--user",
        "app",
        "--password",
        "app",
        "--count",
        "3",
    ]);
    for (id, level) in [("r1", "Critical"), ("r2", "Low"), ("r3", "Bogus")] {
        let event =
            json!({"specversion": "1.0", "id": id, "source": "/ccx", "type": "risk", "data": {"severity": level}});
        assert_eq!(router.post_event("risk.eu", &event).await, 202);
    }
    finished(recording).await;
    let lines: Vec<Value> = std::fs::read_to_string(&recorded)
        .expect("tap wrote the file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON lines"))
        .collect();
    let ids: Vec<&str> = lines.iter().map(|event| event["id"].as_str().expect("an id")).collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);
    assert_eq!((lines[0]["subject"].as_str(), lines[0]["source"].as_str()), (Some("risk.eu"), Some("/ccx")));
    assert_eq!(lines[1]["data"], json!({"severity": "Low"}));

    // Replayed through one version: its answers become the expected ones; the other version agrees.
    let (code, out) = common::plugin_test_golden(&common::plugin("severity-map"), &fixtures, &["--bless"]);
    assert_eq!(code, Some(0), "{out}");
    let expected = std::fs::read_to_string(fixtures.join("live.expected")).expect("blessed");
    assert!(expected.contains(r#""severity":"Critical""#) && expected.contains(r#""severity":"Info""#), "{expected}");
    assert!(expected.contains(r#"unknown level \"Bogus\""#), "{expected}");
    let (code, out) = common::plugin_test_golden(&common::polyglot_plugin("python/severity-map"), &fixtures, &[]);
    assert_eq!(code, Some(0), "{out}");
    // A different handler answers differently, and the diff says how.
    let (code, out) = common::plugin_test_golden(&common::plugin("passthrough"), &fixtures, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("MISMATCH live") && out.contains(r#"+ {"#) && out.contains(r#"- {"error""#), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tap_as_the_system_account_records_system_events_and_an_ordinary_user_cannot() {
    let router = RouterProcess::start(CONFIG);
    let server = format!("nats://{}", router.nats.expect("the gateway listens"));
    let dir = common::tempdir();
    let recorded = dir.path().join("sys.jsonl");
    let recorded_arg = recorded.to_str().expect("UTF-8");

    let recording = tap(&[
        "$SYS.ACCOUNT.*.CONNECT",
        "--out",
        recorded_arg,
        "--server",
        &server,
        "--user",
        "admin",
        "--password",
        "admin",
        "--count",
        "1",
    ]);
    // As nats-server, connects are reported for accounts other than the global one.
    let client = async_nats::ConnectOptions::with_user_and_password("ops".into(), "ops".into())
        .connect(server.as_str())
        .await
        .expect("ops connects");
    finished(recording).await;
    let text = std::fs::read_to_string(&recorded).expect("tap wrote the file");
    let event: Value = serde_json::from_str(text.lines().next().expect("one event")).expect("JSON");
    assert!(event["subject"].as_str().is_some_and(|s| s.starts_with("$SYS.ACCOUNT.")), "{event}");
    let advisory = event.to_string();
    assert!(advisory.contains("client_connect") && advisory.contains(r#"\"user\":\"ops\""#), "{event}");
    drop(client);

    // An ordinary user's subscription to $SYS is refused: tap records nothing in its time.
    let refused = dir.path().join("refused.jsonl");
    let output = common::eventyard()
        .args(["tap", "$SYS.>", "--out"])
        .arg(&refused)
        .args(["--server", &server, "--user", "app", "--password", "app", "--seconds", "2"])
        .output()
        .expect("eventyard runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read_to_string(&refused).expect("created"), "");
}
