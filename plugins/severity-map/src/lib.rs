//! `severity-map`: a handler that turns a risk level in JSON data into an OCM Service Log severity,
//! as the CCX notification service does before posting to `/api/service_logs/v1/cluster_logs`.
//!
//! Config:
//! - `field`: the top-level field to read; default `severity`.
//! - `target`: the top-level field to write; default the same as `field` (mapped in place).
//!
//! Mapping: `Critical` -> `Critical`, `Important` -> `Major`, `Moderate` -> `Warning`,
//! `Low` -> `Info`, matched exactly; a level may also be its number, as CCX's `total_risk` carries
//! it: 1 `Low`, 2 `Moderate`, 3 `Important`, 4 `Critical`. Any other value, a missing field, or data
//! that is not a JSON object is a permanent error naming the value and the event. Other fields are
//! kept; output object keys come out sorted.

mod mapping;

use eventyard_sdk::{Config, Error, Event, Handler, Outcome};
pub use mapping::SeverityMap;

/// The config keys this plugin reads.
const KEYS: [&str; 2] = ["field", "target"];

/// The field read (and written) when config names none.
const DEFAULT_FIELD: &str = "severity";

/// Reads a field name from `key`; it must not be empty.
fn field_name(config: &Config, key: &str) -> Result<Option<String>, Error> {
    match config.get(key) {
        Some("") => Err(Error::permanent(format!("config: key `{key}` is empty"))),
        other => Ok(other.map(str::to_owned)),
    }
}

impl Handler for SeverityMap {
    fn init(config: Config) -> Result<Self, Error> {
        config.deny_unknown(&KEYS)?;
        let field = field_name(&config, "field")?.unwrap_or_else(|| DEFAULT_FIELD.to_owned());
        let target = field_name(&config, "target")?.unwrap_or_else(|| field.clone());
        Ok(SeverityMap::new(field, target))
    }

    /// Fetches only the data (and the id for an error message) and changes the event in place:
    /// sending on the input it was given, the host copies nothing back but the new data.
    fn handle(&mut self, mut event: Event) -> Result<Outcome, Error> {
        let data = self.map(event.data()).map_err(|reason| {
            Error::permanent(format!("event \"{}\": {reason}", event.attribute("id").unwrap_or_default()))
        })?;
        event.set_data(data);
        if event.attribute("datacontenttype").is_none() {
            event.set_attribute("datacontenttype", Some("application/json"))?;
        }
        Ok(event.into())
    }
}

eventyard_sdk::export_handler!(SeverityMap);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn handler(pairs: &[(&str, &str)]) -> SeverityMap {
        SeverityMap::init(Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())).unwrap()
    }

    fn event(data: Value) -> Event {
        let mut event = Event::from_parts("ccx.report", "e-1", "/ccx", "t", serde_json::to_vec(&data).unwrap());
        event.context.datacontenttype = Some("application/json".into());
        event
    }

    fn data(out: &[Event]) -> Value {
        serde_json::from_slice(&out[0].data).unwrap()
    }

    #[test]
    fn maps_every_level_in_place() {
        let mut h = handler(&[]);
        for (from, to) in mapping::MAPPING {
            let out = h.handle(event(json!({"severity": from, "summary": "s"}))).unwrap().into_events(event(json!({})));
            assert_eq!(data(&out), json!({"severity": to, "summary": "s"}));
        }
    }

    #[test]
    fn maps_ccx_total_risk_numbers() {
        let mut h = handler(&[("field", "total_risk"), ("target", "severity")]);
        for (risk, severity) in [(1, "Info"), (2, "Warning"), (3, "Major"), (4, "Critical")] {
            let out = h.handle(event(json!({"total_risk": risk}))).unwrap().into_events(event(json!({})));
            assert_eq!(data(&out), json!({"total_risk": risk, "severity": severity}));
        }
    }

    #[test]
    fn reads_field_and_writes_target() {
        let mut h = handler(&[("field", "total_risk"), ("target", "severity")]);
        let out = h.handle(event(json!({"total_risk": "Important"}))).unwrap().into_events(event(json!({})));
        assert_eq!(data(&out), json!({"total_risk": "Important", "severity": "Major"}));
    }

    #[test]
    fn output_is_the_text_a_value_round_trip_gives() {
        let map = SeverityMap::new("severity", "severity");
        let inputs = [
            (
                r#"{"severity": "Low", "b": "plain", "a": "caf\u00e9 \/ \"q\"", "n": 12, "m": -0, "f": 1.50, "e": 1e2}"#,
                "Info",
            ),
            (
                r#"{"severity": 3, "nested": {"z": 1, "a": [1, 2.0, {"y": null, "x": true}]}, "big": 18446744073709551615}"#,
                "Major",
            ),
            (r#"  {"severity":"Moderate","severity":"Critical","t":"\t","k\u0065y":"v"}  "#, "Critical"),
        ];
        for (input, severity) in inputs {
            let mut expected: serde_json::Map<String, Value> = serde_json::from_str(input).unwrap();
            expected.insert("severity".into(), Value::String(severity.into()));
            let expected = serde_json::to_vec(&Value::Object(expected)).unwrap();
            let out = map.map(input.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected).unwrap(), "{input}");
        }
        assert_eq!(map.map(b"{not json").unwrap_err(), "data is not JSON: key must be a string at line 1 column 2");
        assert_eq!(map.map(b"[1, 2]").unwrap_err(), "data is not a JSON object");
    }

    #[test]
    fn bad_values_name_the_value_and_the_event() {
        let mut h = handler(&[]);
        let err = h.handle(event(json!({"severity": "Info"}))).unwrap_err();
        assert!(err.message.contains("\"Info\"") && err.message.contains("\"e-1\""), "{}", err.message);
        assert!(!err.retryable);
        let err = h.handle(event(json!({"severity": 5}))).unwrap_err();
        assert_eq!(err.message, "event \"e-1\": field \"severity\": unknown level 5 (expected 1 to 4)");
        let err = h.handle(event(json!({"severity": 2.5}))).unwrap_err();
        assert_eq!(err.message, "event \"e-1\": field \"severity\": unknown level 2.5 (expected 1 to 4)");
        let err = h.handle(event(json!({"severity": true}))).unwrap_err();
        assert_eq!(err.message, "event \"e-1\": field \"severity\" is true, not a level name or number");
        let err = h.handle(event(json!({}))).unwrap_err();
        assert_eq!(err.message, "event \"e-1\": field \"severity\" is missing");
        let err = h.handle(event(json!("Low"))).unwrap_err();
        assert_eq!(err.message, "event \"e-1\": data is not a JSON object");
    }
}
