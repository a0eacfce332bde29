//! Host services: logging, metrics and the clock for every plugin; Kafka and NATS for sinks whose
//! config grants them.

/// Structured logging into the router's log, tagged with the plugin's name and version.
pub mod log {
    pub use crate::wit::handler_world::eventyard::plugin::log::Level;
    use crate::wit::handler_world::eventyard::plugin::log::log;

    /// Logs `message` at `level` with key/value `fields`.
    pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        log(level, message, &fields);
    }

    /// Logs at debug level.
    pub fn debug(message: &str, fields: &[(&str, &str)]) {
        write(Level::Debug, message, fields);
    }

    /// Logs at info level.
    pub fn info(message: &str, fields: &[(&str, &str)]) {
        write(Level::Info, message, fields);
    }

    /// Logs at warn level.
    pub fn warn(message: &str, fields: &[(&str, &str)]) {
        write(Level::Warn, message, fields);
    }

    /// Logs at error level.
    pub fn error(message: &str, fields: &[(&str, &str)]) {
        write(Level::Error, message, fields);
    }
}

/// Metrics on the router's `/metrics`, named `eventyard_plugin_<name>` and labelled with the plugin.
pub mod metrics {
    use crate::wit::handler_world::eventyard::plugin::metrics as host;

    fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Adds `value` to counter `name`.
    pub fn counter(name: &str, value: u64, labels: &[(&str, &str)]) {
        host::counter_add(name, value, &owned(labels));
    }

    /// Records `value` in histogram `name`.
    pub fn histogram(name: &str, value: f64, labels: &[(&str, &str)]) {
        host::histogram_record(name, value, &owned(labels));
    }
}

/// The host's clock.
pub mod clock {
    use crate::wit::handler_world::eventyard::plugin::clock as host;

    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub fn now_nanos() -> u64 {
        host::now()
    }

    /// Monotonic nanoseconds, for measuring durations.
    pub fn monotonic_nanos() -> u64 {
        host::monotonic()
    }

    /// Formats nanoseconds since the Unix epoch as an RFC 3339 UTC timestamp with milliseconds.
    pub fn rfc3339(nanos: u64) -> String {
        let secs = nanos / 1_000_000_000;
        let millis = (nanos / 1_000_000) % 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days as i64);
        format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
    }

    /// Splits days since 1970-01-01 into (year, month, day) of the proleptic Gregorian calendar
    /// (Howard Hinnant's `civil_from_days`).
    pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn civil_dates() {
            assert_eq!(super::civil_from_days(0), (1970, 1, 1));
            assert_eq!(super::civil_from_days(19_185), (2022, 7, 12));
            assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
        }
    }
}

/// Capability: Kafka through the host's producer. Needs `capabilities.kafka` in the plugin's config.
pub mod kafka {
    pub use crate::wit::sink_world::eventyard::plugin::kafka_producer::{KafkaRecord, send};
}

/// Capability: NATS through the host's connection. Needs `capabilities.nats` in the plugin's config.
pub mod nats {
    pub use crate::wit::sink_world::eventyard::plugin::nats_publisher::publish;
}
