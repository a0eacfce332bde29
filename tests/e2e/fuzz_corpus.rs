//! Every input kept in `fuzz/corpus/<target>/` — the seeds, and each input a fuzz run found
//! failing once — through the same checks the `cargo fuzz` targets run (`fuzz/src/lib.rs`),
//! without libFuzzer: a regression test for each.

#[allow(dead_code, reason = "shared with the fuzz targets")]
#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
        let path = entry.expect("a corpus entry").path();
        let input = std::fs::read(&path).expect("a corpus input reads");
        if std::panic::catch_unwind(|| check(&input)).is_err() {
            panic!("{} fails its check", path.display());
        }
        inputs += 1;
    }
    assert!(inputs > 0, "{target} has a corpus");
}

#[test]
fn nats_protocol_corpus() {
    replay("nats_protocol", checks::nats_protocol);
}

#[test]
fn cloudevents_corpus() {
    replay("cloudevents", checks::cloudevents);
}

#[test]
fn config_corpus() {
    replay("config", checks::config);
}

#[test]
fn subject_corpus() {
    replay("subject", checks::subject);
}
