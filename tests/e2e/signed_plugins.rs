//! Signed plugins end to end: keys and signatures made by `eventyard plugin keygen` and `plugin
//! sign`, shown by `plugin inspect`; a router with `[plugins] trusted_keys` that refuses, at start
//! and at reload, an unsigned component, a tampered one, one signed by a key it does not trust and
//! one whose detached signature belongs to another file, keeping the old version serving, and
//! takes a new version signed by a trusted key.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::router::{ADMIN, RouterProcess};
use crate::common::{self, run_eventyard};

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A key pair made by `plugin keygen` in `dir`; (private key file, public key text).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let (code, stdout, stderr) = run_eventyard(&["plugin", "keygen", path(&key)]);
    assert_eq!(code, 0, "{stderr}");
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).expect("the public key is written");
    assert!(stdout.contains(public.trim()), "{stdout}");
    (key, public.trim().to_owned())
}

/// Copies first-party plugin `krate` to `to` and signs it there with `key`.
fn signed_copy(krate: &str, to: &Path, key: &Path, embed: bool) {
    std::fs::copy(common::plugin(krate), to).expect("the plugin is copied");
    let mut args = vec!["plugin", "sign", path(to), "--key", path(key)];
    if embed {
        args.push("--embed");
    }
    let (code, stdout, stderr) = run_eventyard(&args);
    assert!(code == 0 && stdout.contains("signed by ed25519:"), "{stdout}{stderr}");
}

/// A new version to refuse: what it is, how to put it in place, and the reason expected.
type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);

async fn reload(router: &RouterProcess) -> Vec<Value> {
    let answer: Value = router.admin("/v1/admin/reload").await.json().await.expect("reload reports");
    answer["reports"].as_array().cloned().unwrap_or_default()
}

async fn stage_sha256(router: &RouterProcess) -> String {
    let plugins: Value = router.admin("/v1/admin/plugins").await.json().await.expect("plugins");
    plugins["plugins"][0]["sha256"].as_str().expect("the plugin's hash").to_owned()
}

#[tokio::test]
async fn only_components_a_trusted_key_signed_load() {
    let keys = common::tempdir();
    let (key, public) = keygen(keys.path(), "release.key");
    let (rogue, _) = keygen(keys.path(), "rogue.key");
    let (code, _, stderr) = run_eventyard(&["plugin", "keygen", path(&key)]);
    assert!(code == 2 && stderr.contains("never overwritten"), "{stderr}");
    // Signing needs a key `keygen` wrote, and a component.
    let garbage = keys.path().join("garbage.key");
    std::fs::write(&garbage, "not a key").expect("written");
    let component = common::plugin("passthrough");
    let (code, _, stderr) = run_eventyard(&["plugin", "sign", path(&component), "--key", path(&garbage)]);
    assert!(code == 2 && stderr.contains("not a key written by `plugin keygen`"), "{stderr}");
    let (code, _, stderr) = run_eventyard(&["plugin", "sign", path(&garbage), "--key", path(&key)]);
    assert!(code == 2 && stderr.contains("not a WebAssembly component"), "{stderr}");

    // `plugin inspect` names the signer, embedded or detached.
    let scratch = common::tempdir();
    let embedded = scratch.path().join("embedded.wasm");
    signed_copy("passthrough", &embedded, &key, true);
    let detached = scratch.path().join("detached.wasm");
    signed_copy("passthrough", &detached, &key, false);
    for (file, placement) in [(&embedded, "embedded"), (&detached, "detached")] {
        let (code, stdout, _) = run_eventyard(&["plugin", "inspect", path(file)]);
        assert!(code == 0 && stdout.contains(&format!("signed by:    {public} ({placement})")), "{stdout}");
    }

    let plugins = common::tempdir();
    let stage = plugins.path().join("stage.wasm");
    let config = format!(
        "[plugins]\ndir = \"{}\"\nwatch = false\ntrusted_keys = [\"{public}\"]\n[plugin.stage]\nworld = \"handler\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[[route]]\nname = \"all\"\nsubject = \"numbers\"\nhandlers = [\"stage\"]\n\
         sinks = [\"files\"]\n[sinks.files]\nkind = \"file\"\nroot = \"{{dir}}/files\"\n{ADMIN}",
        plugins.path().display()
    );
    // At start: an unsigned component stops the router with the reason.
    std::fs::copy(common::plugin("passthrough"), &stage).expect("copied");
    let refused = RouterProcess::start_failure(&config);
    assert!(refused.contains("is refused: it is not signed"), "{refused}");

    signed_copy("passthrough", &stage, &key, true);
    let router = RouterProcess::start(&config);
    let serving = stage_sha256(&router).await;
    let plugins_listed: Value = router.admin("/v1/admin/plugins").await.json().await.expect("plugins");
    assert_eq!(plugins_listed["plugins"][0]["signed_by"], json!(format!("{public} (embedded)")));

    // Each of these new versions is refused at reload with its reason; the signed one keeps serving.
    let mut tampered = std::fs::read(&stage).expect("the signed file");
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let unsigned = || common::replace_file(&common::plugin("subject-filter"), &stage);
    let cases: [Case; 4] = [
        ("unsigned", Box::new(unsigned), "it is not signed"),
        ("tampered", Box::new(|| std::fs::write(&stage, &tampered).expect("written")), "does not match its content"),
        (
            "signed by a key not trusted",
            Box::new(|| signed_copy("subject-filter", &stage, &rogue, true)),
            "not one of [plugins] trusted_keys",
        ),
        (
            "another file's detached signature",
            Box::new(|| {
                common::replace_file(&common::plugin("subject-filter"), &stage);
                std::fs::copy(detached.with_extension("wasm.sig"), plugins.path().join("stage.wasm.sig"))
                    .expect("copied");
            }),
            "does not match its content",
        ),
    ];
    for (case, make, reason) in cases {
        make();
        let reports = reload(&router).await;
        assert_eq!(reports.len(), 1, "{case}: {reports:?}");
        assert_eq!(reports[0]["result"], "failed", "{case}: {reports:?}");
        let error = reports[0]["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{case}: {error}");
        assert_eq!(stage_sha256(&router).await, serving, "{case}: the signed version keeps serving");
    }
    // The detached signature of the new file, arriving after it, lets it in.
    let (code, _, stderr) = run_eventyard(&["plugin", "sign", path(&stage), "--key", path(&key)]);
    assert_eq!(code, 0, "{stderr}");
    let reports = reload(&router).await;
    assert_eq!((reports.len(), reports[0]["result"].as_str()), (1, Some("ok")), "{reports:?}");
    assert_ne!(stage_sha256(&router).await, serving, "the new signed version serves");
}

#[tokio::test]
async fn a_detached_signature_arriving_after_its_file_lets_the_watched_file_in() {
    let keys = common::tempdir();
    let (key, public) = keygen(keys.path(), "release.key");
    let plugins = common::tempdir();
    let stage = plugins.path().join("stage.wasm");
    signed_copy("passthrough", &stage, &key, true);
    let config = crate::common::router::stage_config(plugins.path(), "")
        .replace("watch = true", &format!("watch = true\ntrusted_keys = [\"{public}\"]"));
    let router = RouterProcess::start(&config);
    let serving = stage_sha256(&router).await;
    common::replace_file(&common::plugin("subject-filter"), &stage);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(stage_sha256(&router).await, serving, "the unsigned file is refused; the signed one serves");
    let (code, _, stderr) = run_eventyard(&["plugin", "sign", path(&stage), "--key", path(&key)]);
    assert_eq!(code, 0, "{stderr}");
    router.wait_for_plugin("stage", "the new file, now signed", |plugin| plugin["sha256"] != serving.as_str()).await;
}
