//! A JSON Schema checker for the keywords the ServiceLog schema uses — `type` (object, string,
//! boolean), `properties`, `required`, `additionalProperties: false`, `enum`, and `format`
//! (`uuid`, `date-time`) — and nothing more: a schema with another keyword is refused when it is
//! loaded, so it can never be half-checked.

use serde_json::{Map, Value};

/// Keywords that only annotate.
const ANNOTATIONS: [&str; 6] = ["$schema", "$id", "$comment", "title", "description", "default"];
/// Keywords that are checked.
const CHECKED: [&str; 6] = ["type", "properties", "required", "additionalProperties", "enum", "format"];

/// A loaded schema.
#[derive(Debug)]
pub struct Schema(Value);

impl Schema {
    /// Loads `text`, refusing keywords, types and formats this checker does not know.
    pub fn parse(text: &str) -> Result<Schema, String> {
        let root: Value = serde_json::from_str(text).map_err(|err| format!("schema is not JSON: {err}"))?;
        known(&root, "")?;
        Ok(Schema(root))
    }

    /// The names the top-level `properties` define.
    pub fn properties(&self) -> Vec<String> {
        self.0["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
    }

    /// Every way `value` breaks the schema, each as `/path: reason`; empty when it is valid.
    pub fn errors(&self, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        check(&self.0, value, "", &mut errors);
        errors
    }
}

fn known(schema: &Value, at: &str) -> Result<(), String> {
    let Value::Object(keywords) = schema else { return Err(format!("schema{at}: not an object")) };
    for (keyword, value) in keywords {
        if ANNOTATIONS.contains(&keyword.as_str()) {
            continue;
        }
        if !CHECKED.contains(&keyword.as_str()) {
            return Err(format!("schema{at}: keyword `{keyword}` is not supported"));
        }
        match (keyword.as_str(), value) {
            ("type", Value::String(t)) if ["object", "string", "boolean"].contains(&t.as_str()) => {}
            ("format", Value::String(f)) if ["uuid", "date-time"].contains(&f.as_str()) => {}
            ("additionalProperties", Value::Bool(false)) => {}
            ("enum", Value::Array(_)) => {}
            ("required", Value::Array(names)) if names.iter().all(Value::is_string) => {}
            ("properties", Value::Object(properties)) => {
                for (name, property) in properties {
                    known(property, &format!("{at}/properties/{name}"))?;
                }
            }
            (keyword, value) => return Err(format!("schema{at}: `{keyword}: {value}` is not supported")),
        }
    }
    Ok(())
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else { return };
    let at = if path.is_empty() { "/" } else { path };
    if let Some(Value::String(expected)) = schema.get("type") {
        let fits = match expected.as_str() {
            "object" => value.is_object(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !fits {
            errors.push(format!("{at}: {} is not a {expected}", kind(value)));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(format!("{at}: {value} is not one of {}", allowed.join(", ")));
    }
    if let (Some(Value::String(format)), Value::String(text)) = (schema.get("format"), value) {
        let fits = match format.as_str() {
            "uuid" => is_uuid(text),
            "date-time" => is_date_time(text),
            _ => true,
        };
        if !fits {
            errors.push(format!("{at}: {value} is not a {format}"));
        }
    }
    if let Value::Object(fields) = value {
        object(schema, fields, path, errors);
    }
}

fn object(schema: &Map<String, Value>, fields: &Map<String, Value>, path: &str, errors: &mut Vec<String>) {
    let properties = schema.get("properties").and_then(Value::as_object);
    for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !fields.contains_key(name) {
            errors.push(format!("{path}/{name}: is required"));
        }
    }
    for (name, field) in fields {
        match properties.and_then(|p| p.get(name)) {
            Some(property) => check(property, field, &format!("{path}/{name}"), errors),
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                errors.push(format!("{path}/{name}: is not a field of this record"));
            }
            None => {}
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `8-4-4-4-12` hex digits (RFC 9562's text form).
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with fields in range.
fn is_date_time(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let (Some(_), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (digits(0..4), digits(5..7), digits(8..10), digits(11..13), digits(14..16), digits(17..19))
    else {
        return false;
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return false;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if end == 0 {
            return false;
        }
        rest = &fraction[end..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) && (*h1 - b'0') * 10 + (*h2 - b'0') < 24
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse(include_str!("../schema/cluster-log.schema.json")).expect("the shipped schema loads")
    }

    #[test]
    fn the_seed_example_is_valid_and_each_break_is_named() {
        let mut record = json!({
            "severity": "Info", "service_name": "Insights", "username": "Insights",
            "cluster_uuid": "d484b150-3106-4d6a-96b4-e03c327a2f66", "summary": "Subscription created",
            "description": "Following issues have been found…", "internal_only": false,
            "timestamp": "2022-07-12T07:08:09Z", "event_stream_id": "1gKkRgiC5dCUJ7PxTPbn8J4FjGa"
        });
        assert_eq!(schema().errors(&record), Vec::<String>::new());
        record["severity"] = json!("Moderate");
        record["internal_only"] = json!("no");
        record["cluster_uuid"] = json!("d484b150");
        record["timestamp"] = json!("2022-07-12 07:08");
        record["colour"] = json!("red");
        record.as_object_mut().unwrap().remove("summary");
        let errors = schema().errors(&record);
        for expected in [
            "/severity: \"Moderate\" is not one of",
            "/internal_only: a string is not a boolean",
            "/cluster_uuid: \"d484b150\" is not a uuid",
            "/timestamp: \"2022-07-12 07:08\" is not a date-time",
            "/colour: is not a field",
            "/summary: is required",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(expected)), "{expected}: {errors:?}");
        }
        assert_eq!(errors.len(), 6, "{errors:?}");
    }

    #[test]
    fn date_times_follow_rfc_3339() {
        for good in ["2022-07-11T16:44:27.146Z", "2022-07-12T07:08:09+02:00", "2022-07-12t07:08:09z"] {
            assert!(is_date_time(good), "{good}");
        }
        for bad in ["2022-07-11", "2022-13-11T16:44:27Z", "2022-07-11T16:44:27", "2022-07-11T16:44:27.Z", "x"] {
            assert!(!is_date_time(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_keywords_are_refused_not_ignored() {
        let err = Schema::parse(r#"{"type": "object", "properties": {"a": {"pattern": "x"}}}"#).unwrap_err();
        assert!(err.contains("/properties/a") && err.contains("pattern"), "{err}");
        assert!(Schema::parse(r#"{"type": "integer"}"#).is_err());
    }
}
