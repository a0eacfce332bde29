//! Metrics: a lock-free latency [`Histogram`] and [`MetricsText`], which writes the Prometheus text
//! format. Components keep their own atomic counters; `/metrics` reads them all through one
//! function the server assembles. Names follow `eventyard_<area>_<what>_<unit>[_total]`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let at = BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(BUCKETS.len());
        self.counts[at].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Call times in power-of-two buckets from 1 µs (bucket `i` holds calls up to 2^i µs; the last,
/// any longer): fine enough for the microsecond calls of a plugin, one atomic add a call.
#[derive(Debug, Default)]
pub struct CallTimes {
    counts: [AtomicU64; CALL_BUCKETS],
}

const CALL_BUCKETS: usize = 26;

impl CallTimes {
    pub fn record(&self, elapsed: Duration) {
        let micros = elapsed.as_micros().max(1);
        let at = (u128::BITS - (micros - 1).leading_zeros()) as usize;
        self.counts[at.min(CALL_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// The calls in each bucket so far.
    pub fn buckets(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// The upper bound of bucket `at`, in microseconds.
    pub fn bound_micros(at: usize) -> u64 {
        1 << at.min(63)
    }

    /// The call time under which a share `q` of the calls in `buckets` took (a bucket's upper
    /// bound), if there were any.
    pub fn quantile(buckets: &[u64], q: f64) -> Option<u64> {
        let total: u64 = buckets.iter().sum();
        let wanted = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (at, count) in buckets.iter().enumerate() {
            seen += count;
            if total > 0 && seen >= wanted {
                return Some(Self::bound_micros(at));
            }
        }
        None
    }
}

/// One Prometheus text exposition being written.
#[derive(Default)]
pub struct MetricsText {
    out: String,
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl MetricsText {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A counter family; `samples` are label sets with values.
    pub fn counter<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
    ) {
        self.scalar(name, "counter", help, samples);
    }

    /// A gauge family.
    pub fn gauge<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
    ) {
        self.scalar(name, "gauge", help, samples);
    }

    fn scalar<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
    ) {
        self.header(name, kind, help);
        for (pairs, value) in samples {
            let _ = writeln!(self.out, "{name}{} {value}", labels(&pairs));
        }
    }

    /// A histogram family (seconds).
    pub fn histogram<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, &'a Histogram)>,
    ) {
        self.header(name, "histogram", help);
        for (pairs, histogram) in samples {
            let mut cumulative = 0;
            for (i, count) in histogram.counts.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                let le = BUCKETS.get(i).map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                let mut with_le = pairs.clone();
                with_le.push(("le", &le));
                let _ = writeln!(self.out, "{name}_bucket{} {cumulative}", labels(&with_le));
            }
            let sum = histogram.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(self.out, "{name}_sum{} {sum}", labels(&pairs));
            let _ = writeln!(self.out, "{name}_count{} {cumulative}", labels(&pairs));
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_times_give_their_quantiles_in_microseconds() {
        let times = CallTimes::default();
        for _ in 0..98 {
            times.record(Duration::from_nanos(700));
        }
        times.record(Duration::from_micros(3));
        times.record(Duration::from_millis(5));
        let buckets = times.buckets();
        assert_eq!(CallTimes::quantile(&buckets, 0.5), Some(1));
        assert_eq!(CallTimes::quantile(&buckets, 0.99), Some(4));
        assert_eq!(CallTimes::quantile(&buckets, 1.0), Some(8192));
        assert_eq!(CallTimes::quantile(&[0; 4], 0.99), None);
    }

    #[test]
    fn writes_prometheus_text() {
        let histogram = Histogram::default();
        histogram.record(Duration::from_millis(3));
        histogram.record(Duration::from_secs(20));
        let mut text = MetricsText::default();
        text.counter("eventyard_sink_delivered_total", "Events delivered.", [(vec![("sink", "a\"b")], 5)]);
        text.histogram("eventyard_sink_delivery_seconds", "Delivery latency.", [(vec![("sink", "a")], &histogram)]);
        let out = text.finish();
        assert!(
            out.contains(
                "# TYPE eventyard_sink_delivered_total counter\neventyard_sink_delivered_total{sink=\"a\\\"b\"} 5\n"
            ),
            "{out}"
        );
        assert!(out.contains("eventyard_sink_delivery_seconds_bucket{sink=\"a\",le=\"0.0025\"} 0\n"), "{out}");
        assert!(out.contains("eventyard_sink_delivery_seconds_bucket{sink=\"a\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("eventyard_sink_delivery_seconds_bucket{sink=\"a\",le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("eventyard_sink_delivery_seconds_count{sink=\"a\"} 2\n"), "{out}");
    }
}
