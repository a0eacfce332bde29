//! [`Config`]: the plugin's settings as the router config gives them.

use serde::de::DeserializeOwned;

use crate::Error;

/// A plugin's settings: the keys of its `config` table in the router config (or `--config KEY=VALUE`
/// with `eventyard plugin test`). String values arrive as they are; numbers, booleans, arrays and
/// tables arrive as JSON text, which [`Config::json`] and [`Config::list`] read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A config from key/value pairs.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The raw value of `key`, or a permanent error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key).ok_or_else(|| Error::permanent(format!("config: missing required key `{key}`")))
    }

    /// The value of `key` read as JSON into `T`. A bare string value is tried as a JSON string too,
    /// so `name = "x"` reads as `"x"`. The error names the key and where parsing failed, never the
    /// value, which may be a secret.
    pub fn json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let Some(raw) = self.get(key) else { return Ok(None) };
        match serde_json::from_str(raw) {
            Ok(value) => Ok(Some(value)),
            Err(err) => serde_json::from_value(serde_json::Value::String(raw.to_owned()))
                .map(Some)
                .map_err(|_| Error::permanent(format!("config: key `{key}` does not have the expected form: {err}"))),
        }
    }

    /// The value of `key` as a list of strings: a JSON array, or a comma-separated string.
    /// An absent key is an empty list.
    pub fn list(&self, key: &str) -> Result<Vec<String>, Error> {
        let Some(raw) = self.get(key) else { return Ok(Vec::new()) };
        if raw.trim_start().starts_with('[') {
            return serde_json::from_str(raw)
                .map_err(|err| Error::permanent(format!("config: key `{key}` is not a list of strings: {err}")));
        }
        Ok(raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
    }

    /// Refuses keys other than `known`, so a misspelt setting fails at load instead of being
    /// ignored; the error names the first unknown key and lists the known ones.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), Error> {
        match self.entries.iter().find(|(key, _)| !known.contains(&key.as_str())) {
            Some((key, _)) => {
                Err(Error::permanent(format!("config: unknown key `{key}` (known keys: {})", known.join(", "))))
            }
            None => Ok(()),
        }
    }

    /// Every key/value pair, in the order given.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn lists_read_json_arrays_and_comma_separated_strings() {
        let c = config(&[("a", r#"["x.>", "y"]"#), ("b", "x.>, y ,")]);
        assert_eq!(c.list("a").unwrap(), ["x.>", "y"]);
        assert_eq!(c.list("b").unwrap(), ["x.>", "y"]);
        assert!(c.list("missing").unwrap().is_empty());
    }

    #[test]
    fn json_reads_bare_strings_and_json_values() {
        let c = config(&[("n", "3"), ("s", "plain"), ("bad", "{")]);
        assert_eq!(c.json::<u32>("n").unwrap(), Some(3));
        assert_eq!(c.json::<String>("s").unwrap().as_deref(), Some("plain"));
        assert!(c.json::<u32>("bad").unwrap_err().message.contains("`bad`"));
        assert!(c.require("nope").unwrap_err().message.contains("`nope`"));
    }

    #[test]
    fn json_errors_never_quote_the_value() {
        let c = config(&[("tokens", "s3cret-not-json")]);
        let err = c.json::<Vec<String>>("tokens").unwrap_err().message;
        assert!(err.contains("`tokens`") && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let c = config(&[("allow", "a"), ("alow", "b")]);
        assert!(c.deny_unknown(&["allow", "alow"]).is_ok());
        let err = c.deny_unknown(&["allow", "deny"]).unwrap_err();
        assert_eq!(err.message, "config: unknown key `alow` (known keys: allow, deny)");
    }
}
