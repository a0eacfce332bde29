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

use eventyard_sdk::{Config, Error, Event, Handler, Outcome};
use serde_json::Value;

/// The config keys this plugin reads.
const KEYS: [&str; 2] = ["field", "target"];

/// The field read (and written) when config names none.
const DEFAULT_FIELD: &str = "severity";

/// Risk level -> Service Log severity.
const MAPPING: [(&str, &str); 4] =
    [("Critical", "Critical"), ("Important", "Major"), ("Moderate", "Warning"), ("Low", "Info")];

/// Risk levels by number, 1 to 4 (CCX's `total_risk`).
const BY_NUMBER: [&str; 4] = ["Low", "Moderate", "Important", "Critical"];

struct SeverityMap {
    field: String,
    target: String,
}

impl SeverityMap {
    /// Maps the `field` of `data` into `target`, or says why it cannot.
    fn map(&self, data: &mut serde_json::Map<String, Value>) -> Result<(), String> {
        let field = &self.field;
        let level = match data.get(field) {
            Some(Value::String(level)) => level.as_str(),
            Some(Value::Number(number)) => {
                let index = number.as_f64().filter(|n| n.fract() == 0.0 && (1.0..=4.0).contains(n));
                match index {
                    Some(n) => BY_NUMBER[n as usize - 1],
                    None => {
                        return Err(format!("field \"{field}\": unknown level {number} (expected 1 to 4)"));
                    }
                }
            }
            Some(other) => return Err(format!("field \"{field}\" is {other}, not a level name or number")),
            None => return Err(format!("field \"{field}\" is missing")),
        };
        let Some((_, severity)) = MAPPING.iter().find(|(from, _)| *from == level) else {
            return Err(format!(
                "field \"{field}\": unknown level \"{level}\" (expected Critical, Important, Moderate or Low)"
            ));
        };
        data.insert(self.target.clone(), Value::String((*severity).to_owned()));
        Ok(())
    }
}

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
        Ok(SeverityMap { field, target })
    }

    /// Fetches only the data (and the id for an error message) and changes the event in place:
    /// sending on the input it was given, the host copies nothing back but the new data.
    fn handle(&mut self, mut event: Event) -> Result<Outcome, Error> {
        let failed = |event: &Event, reason: String| {
            Error::permanent(format!("event \"{}\": {reason}", event.attribute("id").unwrap_or_default()))
        };
        let mut data = match serde_json::from_slice::<Value>(event.data()) {
            Ok(Value::Object(data)) => data,
            Ok(_) => return Err(failed(&event, "data is not a JSON object".into())),
            Err(err) => return Err(failed(&event, format!("data is not JSON: {err}"))),
        };
        self.map(&mut data).map_err(|reason| failed(&event, reason))?;
        let data = serde_json::to_vec(&Value::Object(data))
            .map_err(|err| failed(&event, format!("cannot encode JSON data: {err}")))?;
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
    use serde_json::json;

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
        for (from, to) in MAPPING {
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
