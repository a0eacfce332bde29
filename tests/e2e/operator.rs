//! The operator's view of a live router: `eventyard top` read off a real pseudo-terminal, and dead
//! letters of a destination that was down listed, shown and replayed with `eventyard dlq` once it
//! is back, each arriving once with its id; the admin credential guards all of it.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::http_server::HttpDestination;
use crate::common::load::NumberedPublisher;
use crate::common::router::{ADMIN, ADMIN_TOKEN, RouterProcess, stage_config};
use crate::common::{self, eventually_async};

/// `eventyard dlq ARGS` against `router` as its administrator, off the test's runtime (the
/// destination it replays to answers on it); (exit code, stdout, stderr).
async fn dlq(router: &RouterProcess, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command: Vec<String> = ["dlq"].iter().chain(args).map(|a| a.to_string()).collect();
    command.extend(["--url".into(), router.url("")]);
    if let Some(token) = token {
        command.extend(["--token".into(), token.into()]);
    }
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        common::run_eventyard(&args)
    })
    .await
    .expect("eventyard dlq ran")
}

/// A router with the admin API on, routing `orders.>` to sink `sink` (its settings `settings`).
fn orders_to(sink: &str, settings: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[[route]]\nname = \"orders\"\nsubject = \"orders.>\"\n\
         sinks = [\"{sink}\"]\n[sinks.{sink}]\n{settings}\n{ADMIN}"
    )
}

/// The settings of sink `hook`: HTTP to `port` of this machine, where nothing listens until a test
/// starts a destination there; an event a delivery, `attempts` tries 10-20 ms apart.
fn hook(port: u16, attempts: u32) -> String {
    format!(
        "kind = \"http\"\nurl = \"http://127.0.0.1:{port}/events\"\nbatch_size = 1\nlinger_ms = 0\n\
         [sinks.hook.retry]\nmax_attempts = {attempts}\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\n"
    )
}

async fn listing(router: &RouterProcess) -> Value {
    let (code, stdout, stderr) = dlq(router, Some(ADMIN_TOKEN), &["list", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("dlq list --json prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_of_a_destination_that_was_down_are_replayed_once_it_is_back() {
    let port = common::free_port();
    let config = orders_to("hook", &hook(port, 2));
    let router = RouterProcess::start(&config);
    for i in 0..3 {
        let event =
            json!({"specversion": "1.0", "id": format!("d{i}"), "source": "/shop", "type": "order", "data": {"i": i}});
        assert_eq!(router.post_event(&format!("orders.eu.{i}"), &event).await, 202);
    }
    let letters = eventually_async("three dead letters kept", Duration::from_secs(30), || async {
        let listing = listing(&router).await;
        (listing["total"] == 3).then_some(listing)
    })
    .await;
    for letter in letters["dead_letters"].as_array().expect("a list") {
        assert_eq!((letter["from"].as_str(), letter["attempts"].as_u64()), (Some("hook"), Some(2)), "{letter}");
        assert!(letter["subject"].as_str().is_some_and(|s| s.starts_with("orders.eu.")), "{letter}");
        assert!(!letter["reason"].as_str().unwrap_or_default().is_empty(), "{letter}");
    }
    let (code, table, _) = dlq(&router, Some(ADMIN_TOKEN), &["list", "--from", "hook"]).await;
    assert!(code == 0 && table.contains("d0") && table.contains("3 shown of 3 picked"), "{table}");
    let (code, shown, _) = dlq(&router, Some(ADMIN_TOKEN), &["show", "1"]).await;
    let shown: Value = serde_json::from_str(&shown).expect("dlq show prints JSON");
    assert_eq!((code, shown["event"]["id"].as_str()), (0, Some("d0")));
    assert_eq!(shown["event"]["subject"], "$DLQ.hook");

    // Without the admin credential, nothing: not the list, not a replay.
    let (code, _, stderr) = dlq(&router, None, &["list"]).await;
    assert!(code == 2 && stderr.contains("401"), "{stderr}");
    let (code, _, stderr) = dlq(&router, Some("guess"), &["replay", "--from", "hook"]).await;
    assert!(code == 2 && stderr.contains("403"), "{stderr}");
    // A replay must say what to replay, and through a route that exists.
    let (code, _, stderr) = dlq(&router, Some(ADMIN_TOKEN), &["replay"]).await;
    assert!(code == 2 && stderr.contains("name the dead letters"), "{stderr}");
    let (code, _, stderr) = dlq(&router, Some(ADMIN_TOKEN), &["replay", "1", "--route", "nosuch"]).await;
    assert!(code == 2 && stderr.contains("no route `nosuch`"), "{stderr}");

    // The destination is back: every dead letter goes to it again, as the event it was.
    let destination = HttpDestination::start_on(port, Vec::new(), StatusCode::OK, Duration::ZERO).await;
    let (code, stdout, stderr) = dlq(&router, Some(ADMIN_TOKEN), &["replay", "--from", "hook"]).await;
    assert!(code == 0 && stdout.contains("3 replayed, 0 not"), "{stdout}{stderr}");
    let ids = |destination: &HttpDestination| {
        let mut ids = BTreeMap::<String, usize>::new();
        for received in destination.received() {
            let event: Value = serde_json::from_slice(&received.body).expect("the sink posts JSON");
            *ids.entry(event["id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
        ids
    };
    let arrived = eventually_async("the replayed events arrive", Duration::from_secs(30), || async {
        let ids = ids(&destination);
        (ids.values().sum::<usize>() == 3).then_some(ids)
    })
    .await;
    assert_eq!(arrived, BTreeMap::from([("d0".into(), 1), ("d1".into(), 1), ("d2".into(), 1)]));
    let received = destination.received();
    let first: Value = serde_json::from_slice(&received[0].body).expect("JSON");
    assert!(first.get("deadletterreason").is_none(), "a replay is the event, not the dead letter: {first}");

    // Each replay is recorded; one sent through the route again arrives again, still `d1`.
    let (code, stdout, _) = dlq(&router, Some(ADMIN_TOKEN), &["replay", "2", "--route", "orders"]).await;
    assert!(code == 0 && stdout.contains("route:orders"), "{stdout}");
    eventually_async("d1 through the route", Duration::from_secs(30), || async {
        (ids(&destination).get("d1") == Some(&2)).then_some(())
    })
    .await;
    let letters = listing(&router).await;
    let replays: BTreeMap<u64, Vec<String>> = letters["dead_letters"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| {
            let targets = l["replays"].as_array().expect("replays").iter().map(|r| r["target"].to_string()).collect();
            (l["seq"].as_u64().unwrap_or_default(), targets)
        })
        .collect();
    assert_eq!(replays[&1], ["\"sink:hook\""]);
    assert_eq!(replays[&2], ["\"sink:hook\"", "\"route:orders\""]);
    let snapshot: Value = router.admin("/v1/admin/snapshot").await.json().await.expect("a snapshot");
    assert_eq!(
        (snapshot["dead_letters"]["held"].as_u64(), snapshot["dead_letters"]["replayed"].as_u64()),
        (Some(3), Some(4))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn top_shows_the_routers_figures_live_in_a_terminal() {
    let config = orders_to("files", "kind = \"file\"\nroot = \"{dir}/out\"");
    let router = RouterProcess::start(&config);
    let load = NumberedPublisher::start(router.url("/v1/events/orders.eu"));
    let (url, binary) = (router.url(""), env!("CARGO_BIN_EXE_eventyard"));
    let script = common::repo_root().join("tests/clients/top_screen.py");
    // A screen whose route line shows events matched per second, more than none.
    let needle = r"orders\s+orders\.>\s+[1-9]";
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .args([binary, &url, ADMIN_TOKEN, needle])
            .output()
            .expect("python3 runs the pseudo-terminal")
    })
    .await
    .expect("the screen was read");
    load.finish().await;
    let screen: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no screen: {}", String::from_utf8_lossy(&output.stderr)));
    let lines: Vec<&str> = screen["lines"].as_array().expect("lines").iter().filter_map(Value::as_str).collect();
    assert!(output.status.success(), "the figures never showed:\n{}", lines.join("\n"));
    assert_eq!(screen["exit"], 0, "q quits top cleanly");
    // The first figure after the name: events matched, and delivered, per second.
    let first_figure = |line: &str| -> f64 {
        let figure = |token: &str| match token.strip_suffix('k') {
            Some(thousands) => thousands.parse::<f64>().ok().map(|f| f * 1000.0),
            None => token.parse::<f64>().ok(),
        };
        line.split_whitespace().find_map(figure).unwrap_or_else(|| panic!("no figure in {line}"))
    };
    let route = screen["matched"].as_str().expect("the route line");
    assert!(first_figure(route) > 0.0, "{route}");
    let sink = lines.iter().find(|line| line.contains("│files ")).expect("the sink's line");
    assert!(first_figure(sink) > 0.0, "events delivered per second: {sink}");
    let bounded = |token: &str| {
        token
            .split_once('/')
            .is_some_and(|(depth, bound)| depth.parse::<u64>().is_ok() && bound.parse::<u64>().is_ok_and(|b| b > 0))
    };
    assert!(sink.split_whitespace().any(bounded), "the queue's depth and bound: {sink}");
    assert!(lines.iter().any(|line| line.contains("queues:")), "{}", lines.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser_follows_the_router_and_replays_a_dead_letter() {
    let port = common::free_port();
    let plugins = common::tempdir();
    let stage = plugins.path().join("stage.wasm");
    std::fs::copy(common::plugin("passthrough"), &stage).expect("the first version is copied");
    // Route `all` through plugin `stage` to files (the swap tests' router), whose new versions run
    // as a shadow until an operator decides, and `payments.>` to a destination that is down.
    let config = format!(
        "{}\n[[route]]\nname = \"payments\"\nsubject = \"payments.>\"\nsinks = [\"hook\"]\n[sinks.hook]\n{}\n\
         [plugin.stage.rollout]\nmode = \"shadow\"\nautomatic = false\n",
        stage_config(plugins.path(), ""),
        hook(port, 2)
    );
    let router = RouterProcess::start(&config);
    let load = NumberedPublisher::start(router.url("/v1/events/numbers"));
    // The screenshots the README shows are taken by this run when EVENTYARD_SCREENSHOTS names
    // where (docs/console); otherwise they go to a scratch directory.
    let scratch = common::tempdir();
    let shots = std::env::var("EVENTYARD_SCREENSHOTS").unwrap_or_else(|_| scratch.path().display().to_string());
    let args = [
        common::repo_root().join("tests/clients/console_browser.py").display().to_string(),
        router.url(""),
        ADMIN_TOKEN.into(),
        common::plugin("subject-filter").display().to_string(),
        stage.display().to_string(),
        port.to_string(),
        shots,
    ];
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(&args).output().expect("python3 runs the browser")
    })
    .await
    .expect("the browser ran");
    let sent = load.finish().await;
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!("no report: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    });
    assert!(output.status.success(), "{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    assert_eq!(
        report["steps"],
        json!([
            "figures move",
            "rollout figures shown",
            "candidate promoted from the console",
            "tap shows a published event",
            "dead letter listed and inspected",
            "dead letter replayed and delivered"
        ])
    );
    assert_eq!(report["received"], json!(["dl-1"]), "the replayed event arrived once, with its id");
    assert_eq!(report["screenshots"].as_array().map(Vec::len), Some(2));
    assert!(sent > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_views_open_to_the_admin_alone_and_a_forged_dead_letter_is_not_kept() {
    let port = common::free_port();
    let gateway = "[service]\nhost = \"127.0.0.1\"\nport = 0\n";
    let router = RouterProcess::start(&orders_to("hook", &format!("{}{gateway}", hook(port, 1))));
    let client = reqwest::Client::new();
    for path in ["/v1/admin/snapshot", "/v1/admin/dead-letters", "/v1/admin/tap?subject=%3E"] {
        let anonymous = client.get(router.url(path)).send().await.expect("answered");
        assert_eq!(anonymous.status(), 401, "{path}");
        let guess = client.get(router.url(path)).bearer_auth("guess").send().await.expect("answered");
        assert_eq!(guess.status(), 403, "{path}");
    }
    let replay = client.post(router.url("/v1/admin/dead-letters/replay")).body("{\"seqs\":[1]}").send().await;
    assert_eq!(replay.expect("answered").status(), 401);
    // Garbage, unknown fields and oversize bodies are refused with the reason, as the admin.
    let as_admin = |path: &str| client.get(router.url(path)).bearer_auth(ADMIN_TOKEN);
    for (path, status) in [
        ("/v1/admin/tap?subject=a..b", 400),
        ("/v1/admin/tap?pattern=x", 400),
        ("/v1/admin/dead-letters?limit=many", 400),
        ("/v1/admin/dead-letters?sink=hook", 400),
        ("/v1/admin/dead-letters/first", 400),
        ("/v1/admin/dead-letters/999", 404),
    ] {
        assert_eq!(as_admin(path).send().await.expect("answered").status(), status, "{path}");
    }
    let replay_body = |body: Vec<u8>| {
        client.post(router.url("/v1/admin/dead-letters/replay")).bearer_auth(ADMIN_TOKEN).body(body).send()
    };
    for body in [b"not json".to_vec(), b"{\"seqs\": [1], \"sink\": \"hook\"}".to_vec(), b"{\"seqs\": \"all\"}".to_vec()]
    {
        let answer = replay_body(body.clone()).await.expect("answered");
        assert_eq!(answer.status(), 400, "{}", String::from_utf8_lossy(&body));
    }
    let oversize = replay_body(vec![b' '; (1 << 20) + 1]).await.expect("answered");
    assert_eq!(oversize.status(), 413);
    let console = client.get(router.url("/console")).send().await.expect("answered");
    let policy = console.headers().get("content-security-policy").cloned();
    assert_eq!(console.status(), 200);
    assert!(policy.is_some_and(|p| p.to_str().unwrap_or_default().contains("script-src 'self'")));

    // A NATS client publishes what looks like the hook's dead letter; the router's own comes after.
    let mut nats = crate::common::nats::RawClient::connect(router.nats.expect("the gateway")).await;
    let headers = "NATS/1.0\r\nce-specversion: 1.0\r\nce-id: forged\r\nce-source: /x\r\nce-type: t\r\n\
                   ce-deadlettersink: hook\r\nce-deadletterreason: down\r\nce-deadlettersubject: orders.x\r\n\r\n";
    let payload = "{\"admin\":true}";
    let hpub = format!(
        "CONNECT {{\"headers\":true}}\r\nHPUB $DLQ.hook {} {}\r\n{headers}{payload}\r\nPING\r\n",
        headers.len(),
        headers.len() + payload.len()
    );
    nats.send(hpub.as_bytes()).await;
    nats.read_until("PONG", Duration::from_secs(5)).await;
    let event = json!({"specversion": "1.0", "id": "real", "source": "/shop", "type": "order"});
    assert_eq!(router.post_event("orders.eu", &event).await, 202);
    let letters = eventually_async("the real dead letter", Duration::from_secs(30), || async {
        let listing = listing(&router).await;
        (listing["total"] == 1).then_some(listing)
    })
    .await;
    assert_eq!(letters["dead_letters"][0]["id"], "real", "the forged one is not kept: {letters}");

    // Without an admin credential there is no console to sign in to.
    let open = RouterProcess::start("[http]\nlisten = \"127.0.0.1:0\"\n");
    let console = client.get(open.url("/console")).send().await.expect("answered");
    assert_eq!(console.status(), 404);
}

#[tokio::test]
async fn the_monitoring_port_refuses_bad_queries_and_stays_on_loopback_unless_public() {
    let port = common::free_port();
    let config = format!(
        "[service]\nhost = \"127.0.0.1\"\nport = 0\n[service.monitoring]\nlisten = \"127.0.0.1:{port}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n"
    );
    let _router = RouterProcess::start(&config);
    let get = |query: &str| reqwest::get(format!("http://127.0.0.1:{port}{query}"));
    assert_eq!(get("/varz").await.expect("answered").status(), 200);
    for (query, says) in [
        ("/connz?sort=size", "invalid sorting option: size"),
        ("/connz?sort=stop", "only valid on closed connections"),
        ("/connz?limit=all", "Error decoding int for 'limit'"),
        ("/connz?state=gone", "Error decoding state"),
        ("/subsz?subs=1&test=orders.*", "invalid test subject"),
    ] {
        let answer = get(query).await.expect("answered");
        assert_eq!(answer.status(), 400, "{query}");
        assert!(answer.text().await.unwrap_or_default().contains(says), "{query}");
    }
    // Unauthenticated as nats-server's: it names clients, so it stays on this machine unless made public.
    let exposed = config.replace(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{}", common::free_port()));
    let refused = RouterProcess::start_failure(&exposed);
    assert!(refused.contains("service.monitoring.listen") && refused.contains("public = true"), "{refused}");
}
