//! `eventyard plugin diff|promote|abort NAME`: a running router's rollout of a new plugin version,
//! through its admin API. Prints what the router answers; decides nothing itself.

use serde_json::Value;

use super::Failure;
use super::admin_api::{AdminApi, AdminArgs, text};

/// Prints the candidate's figures beside the stable version's, then the latest differences its
/// shadow found (JSON with `json`).
pub(crate) async fn diff(name: &str, json: bool, admin: &AdminArgs) -> Result<(), Failure> {
    let rollout = AdminApi::new(admin)?.get(&format!("/v1/admin/plugins/{name}/rollout")).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rollout).unwrap_or_default());
        return Ok(());
    }
    let figures = &rollout["figures"];
    println!(
        "plugin {name}: candidate {} ({}) beside generation {}, {} for {:.0} s{}",
        short(&rollout["candidate_sha256"]),
        text(&figures["mode"]),
        rollout["stable_generation"],
        if rollout["automatic"] == true { "decided by its rules" } else { "waiting for promote or abort" },
        figures["seconds"].as_f64().unwrap_or_default(),
        match figures["mode"].as_str() {
            Some("canary") => format!(", {}% of events{}", figures["share"], key(&figures["key"])),
            _ => String::new(),
        },
    );
    println!(
        "{:<10} {:>10} {:>8} {:>8} {:>11} {:>11} {:>10}",
        "", "EVENTS", "ERRORS", "FAULTS", "ERROR RATE", "FAULT RATE", "P99 µs"
    );
    for version in ["stable", "candidate"] {
        let v = &figures[version];
        println!(
            "{version:<10} {:>10} {:>8} {:>8} {:>11.4} {:>11.4} {:>10}",
            v["events"],
            v["errors"],
            v["faults"],
            v["error_rate"].as_f64().unwrap_or_default(),
            v["fault_rate"].as_f64().unwrap_or_default(),
            text(&v["p99_micros"]),
        );
    }
    if figures["mode"] == "shadow" {
        println!(
            "compared {}, differed {} ({:.4}), not compared (busy) {}",
            figures["compared"],
            figures["differences"],
            figures["difference_rate"].as_f64().unwrap_or_default(),
            figures["shadow_skipped"]
        );
    } else {
        println!("events the candidate failed, answered by the stable version: {}", figures["fallbacks"]);
    }
    let differences = rollout["differences"].as_array().cloned().unwrap_or_default();
    for difference in &differences {
        let input = &difference["input"];
        println!(
            "\n{}  event {} ({}, type {})\n  {}\n  stable:    {}\n  candidate: {}",
            text(&difference["at"]),
            text(&input["id"]),
            text(&input["subject"]),
            text(&input["type"]),
            text(&difference["what"]),
            difference["stable"],
            difference["candidate"],
        );
    }
    Ok(())
}

/// Promotes the candidate (`promote`) or rolls it back; prints the report.
pub(crate) async fn decide(name: &str, promote: bool, admin: &AdminArgs) -> Result<(), Failure> {
    let verb = if promote { "promote" } else { "abort" };
    let report = AdminApi::new(admin)?.post(&format!("/v1/admin/plugins/{name}/{verb}"), &Value::Null).await?;
    let generation = match report["new_generation"].as_u64() {
        Some(generation) => format!(", now generation {generation}"),
        None => format!(", generation {} serves", report["stable_generation"]),
    };
    println!("plugin {name}: {}{generation} ({})", text(&report["step"]).replace('_', " "), text(&report["reason"]));
    Ok(())
}

fn short(sha256: &Value) -> String {
    text(sha256).chars().take(12).collect()
}

fn key(key: &Value) -> String {
    key.as_str().map(|key| format!(" by `{key}`")).unwrap_or_default()
}
