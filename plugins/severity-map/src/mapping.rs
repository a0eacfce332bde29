//! The mapping itself, apart from the plugin's plumbing and free of the SDK: the Wasm boundary bench
//! (`benches/passthrough.rs`) compiles this file natively as the plugin's twin, so both run the
//! same code.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

/// Risk level -> Service Log severity.
pub(crate) const MAPPING: [(&str, &str); 4] =
    [("Critical", "Critical"), ("Important", "Major"), ("Moderate", "Warning"), ("Low", "Info")];

/// The severities of `MAPPING` as JSON text.
const SEVERITIES_JSON: [&str; 4] = [r#""Critical""#, r#""Major""#, r#""Warning""#, r#""Info""#];

/// Risk levels by number, 1 to 4 (CCX's `total_risk`).
const BY_NUMBER: [&str; 4] = ["Low", "Moderate", "Important", "Critical"];

/// Maps the `field` of a JSON object's text into `target`.
pub struct SeverityMap {
    field: String,
    target: String,
}

impl SeverityMap {
    /// A mapping of `field` into `target` (the plugin's defaults: `severity` into itself).
    pub fn new(field: impl Into<String>, target: impl Into<String>) -> Self {
        SeverityMap { field: field.into(), target: target.into() }
    }

    /// Where in `MAPPING` the level in `value` is, or why it is not there.
    fn severity_at(&self, value: Option<&RawValue>) -> Result<usize, String> {
        let field = &self.field;
        let Some(value) = value else { return Err(format!("field \"{field}\" is missing")) };
        // A level name without escapes is read in place; anything else through a `Value`.
        if let Ok(name) = serde_json::from_str::<&str>(value.get()) {
            return self.position(name);
        }
        match serde_json::from_str::<Value>(value.get()).map_err(|err| err.to_string())? {
            Value::String(name) => self.position(&name),
            Value::Number(number) => {
                let index = number.as_f64().filter(|n| n.fract() == 0.0 && (1.0..=4.0).contains(n));
                match index {
                    Some(n) => self.position(BY_NUMBER[n as usize - 1]),
                    None => Err(format!("field \"{field}\": unknown level {number} (expected 1 to 4)")),
                }
            }
            other => Err(format!("field \"{field}\" is {other}, not a level name or number")),
        }
    }

    fn position(&self, level: &str) -> Result<usize, String> {
        MAPPING.iter().position(|(from, _)| *from == level).ok_or_else(|| {
            let field = &self.field;
            format!("field \"{field}\": unknown level \"{level}\" (expected Critical, Important, Moderate or Low)")
        })
    }

    /// `data` with `target` set to the mapped severity, keys sorted, as compact JSON: the text that
    /// parsing it into a `Value` and writing that again gives. Values writing again would not change
    /// (plain strings, integers, booleans, null) are copied as they are, not parsed and escaped
    /// again: most of the work for a payload of long strings.
    pub fn map(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        // Keys read in place where they have no escapes (always, in practice), else as strings.
        match serde_json::from_slice::<BTreeMap<&str, &RawValue>>(data) {
            Ok(fields) => self.write(fields),
            Err(_) => match serde_json::from_slice::<BTreeMap<String, &RawValue>>(data) {
                Ok(fields) => self.write(fields),
                Err(_) => Err(not_an_object(data)),
            },
        }
    }

    fn write<'a, K: AsRef<str> + Ord + From<&'a str>>(
        &'a self,
        mut fields: BTreeMap<K, &'a RawValue>,
    ) -> Result<Vec<u8>, String> {
        let at = self.severity_at(fields.get(&K::from(self.field.as_str())).copied())?;
        // Cannot fail: each is a JSON string.
        let mapped: &RawValue = serde_json::from_str(SEVERITIES_JSON[at]).map_err(|err| err.to_string())?;
        fields.insert(K::from(self.target.as_str()), mapped);
        let mut out = Vec::with_capacity(fields.values().map(|value| value.get().len() + 24).sum::<usize>() + 2);
        out.push(b'{');
        for (at, (key, value)) in fields.iter().enumerate() {
            if at > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key.as_ref()).map_err(|err| err.to_string())?;
            out.push(b':');
            write_value(&mut out, value)?;
        }
        out.push(b'}');
        Ok(out)
    }
}

/// Why `data` did not parse as an object, in the words a `Value` parse would use.
fn not_an_object(data: &[u8]) -> String {
    match serde_json::from_slice::<&RawValue>(data) {
        Ok(_) => "data is not a JSON object".into(),
        Err(err) => format!("data is not JSON: {err}"),
    }
}

/// Writes `value` as writing its `Value` would: as it is when that is the same text, else parsed
/// and written again.
fn write_value(out: &mut Vec<u8>, value: &RawValue) -> Result<(), String> {
    let text = value.get();
    let as_it_is = match text.as_bytes().first() {
        // A string without escapes: the parser refused raw control characters, so nothing in it
        // would be escaped.
        Some(b'"') => !text.contains('\\'),
        Some(b't' | b'f' | b'n') => true,
        // An integer written as it would be written again (no `-0`, no fraction or exponent).
        Some(b'-' | b'0'..=b'9') => {
            text.parse::<i64>().is_ok_and(|n| n.to_string() == text)
                || text.parse::<u64>().is_ok_and(|n| n.to_string() == text)
        }
        _ => false,
    };
    if as_it_is {
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    let value: Value = serde_json::from_str(text).map_err(|err| err.to_string())?;
    serde_json::to_writer(out, &value).map_err(|err| err.to_string())
}
