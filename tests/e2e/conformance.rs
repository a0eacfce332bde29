//! The gateway against nats-server: `tests/clients/conformance.py` runs the same raw-protocol and
//! nats-py scenarios against both, and the same accounts and permissions scenarios against both
//! configured with the same users, and the system account's events, `$SYS.REQ` answers and the
//! monitoring endpoints (`/varz`, `/connz`, ...) compared key by key, and lists every difference. This test holds the list to the
//! differences the README keeps on purpose, so any other one fails it.

use crate::common;

use std::process::Command;

/// Scenarios where Eventyard answers differently on purpose (README, "Differences from
/// nats-server"): it explains with `-ERR` what nats-server closes on in silence, and closes at
/// once after an unknown operation; it refuses a subscription wider than the user's allow list
/// (nats-server 2.9 delivers `orders.deep.secret` to a user allowed `orders.*`), and the internal
/// `$A` prefix its accounts live under.
const KEPT: &[&str] = &[
    "pub_missing_size",
    "sub_missing_sid",
    "bad_connect_json",
    "hpub_without_headers_option",
    "garbage",
    "accounts:wildcard_wider_than_allow",
    "accounts:internal_prefix",
];

/// System account documents (seed 001) and monitoring endpoints (`[service.monitoring]`) whose
/// keys differ from nats-server's (README, "Differences from nats-server"): nats-server counts a
/// client in the global account before it authenticates, so a failed login sends the global
/// account's CONNS; it reports a round trip for a client that failed to authenticate; and it lists
/// the system services it imports into every account.
const KEPT_SYSTEM: &[&str] = &[
    "$SYS.ACCOUNT.$G.SERVER.CONNS",
    "$SYS.SERVER.ACCOUNT.$G.CONNS",
    "$SYS.SERVER.{id}.CLIENT.AUTH.ERR",
    "http /accountz?acc=USERS",
];

#[test]
fn the_gateway_answers_like_nats_server_but_for_the_differences_we_keep() {
    let script = common::repo_root().join("tests/clients/conformance.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_eventyard"))
        .arg("--json")
        .output()
        .expect("python3 runs the conformance script");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the script prints JSON");
    let differences = report["differences"].as_array().expect("a list of differences");
    let names: Vec<&str> = differences.iter().map(|d| d["scenario"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        names,
        KEPT,
        "differences from nats-server changed:\n{}",
        serde_json::to_string_pretty(differences).unwrap_or_default()
    );
    // The system account's events and answers, key by key.
    let system = report["system"].as_array().expect("a list of system differences");
    let documents: Vec<&str> = system.iter().map(|d| d["document"].as_str().unwrap_or_default()).collect();
    assert_eq!(
        documents,
        KEPT_SYSTEM,
        "system events differ from nats-server's:\n{}",
        serde_json::to_string_pretty(system).unwrap_or_default()
    );
}
