//! Conditions measured in turns on one machine: every round runs each condition once, in order,
//! so slow spells of a noisy machine fall on all of them; then each condition's medians are
//! printed against the first's (the peer).

use std::future::Future;

use crate::common;

/// Runs `round` for each of `conditions` (each with its name), `rounds` times in turns; `round`
/// returns events/s acknowledged and delivered. Prints one row per condition, `bench: name`.
pub async fn compare<C: Copy, F: Future<Output = (f64, f64)>>(
    bench: &str,
    conditions: &[(C, &str)],
    rounds: usize,
    mut round: impl FnMut(C) -> F,
) {
    let mut figures: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); conditions.len()];
    for _ in 0..rounds {
        for (at, (condition, _)) in conditions.iter().enumerate() {
            let (acknowledged, delivered) = round(*condition).await;
            figures[at].0.push(acknowledged);
            figures[at].1.push(delivered);
        }
    }
    let medians: Vec<(f64, f64)> = figures.into_iter().map(|(a, d)| (common::median(a), common::median(d))).collect();
    let (peer_acknowledged, peer_delivered) = medians[0];
    for ((_, name), (acknowledged, delivered)) in conditions.iter().zip(&medians) {
        let note = format!(
            "delivered {delivered:.0}/s; {:.3}x and {:.3}x the peer's (median of {rounds})",
            acknowledged / peer_acknowledged,
            delivered / peer_delivered
        );
        common::bench_row(&format!("{bench}: {name}"), *acknowledged, "events/s", &note);
    }
}
