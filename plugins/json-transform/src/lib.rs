//! `json-transform`: a handler that reshapes JSON object data by dotted paths.
//!
//! Config (each optional):
//! - `rename`: JSON object, dotted source path -> dotted target path. The value moves; a missing
//!   source is skipped.
//! - `set`: JSON object, dotted path -> any JSON value. Missing intermediate objects are created.
//! - `remove`: list of dotted paths. A missing path is skipped.
//!
//! In TOML, quote dotted keys (`rename = { "user.name" = "name" }`): a bare `user.name` is a nested
//! table and is refused because its value is not a string.
//!
//! The steps run in that order: rename, set, remove; within `rename` and `set`, in sorted path
//! order. Output object keys come out sorted, so one input always gives the same bytes. Data that
//! is not a JSON object, or a path whose parent is not an object, is a permanent error naming the
//! event. `datacontenttype` is kept, or set to `application/json` when absent.

use std::collections::BTreeMap;

use eventyard_sdk::{Config, Error, Event, Handler, Outcome};
use serde_json::{Map, Value};

/// The config keys this plugin reads.
const KEYS: [&str; 3] = ["rename", "set", "remove"];

/// A dotted path split into its keys, with the original text kept for messages.
#[derive(Debug, Clone)]
struct Path {
    text: String,
    keys: Vec<String>,
}

impl Path {
    /// Parses `text`; an empty key (`a..b`, `.a`, ``) is refused naming the config `key`.
    fn parse(key: &str, text: &str) -> Result<Path, Error> {
        let keys: Vec<String> = text.split('.').map(str::to_owned).collect();
        if keys.iter().any(String::is_empty) {
            return Err(Error::permanent(format!("config: key `{key}`: invalid path \"{text}\": empty key")));
        }
        Ok(Path { text: text.to_owned(), keys })
    }

    /// Splits into the parent keys and the last key; a parsed path always has one key at least.
    fn split(&self) -> (&[String], &str) {
        match self.keys.split_last() {
            Some((last, parents)) => (parents, last.as_str()),
            None => (&[], ""),
        }
    }
}

struct JsonTransform {
    /// (source, target) pairs in sorted source order.
    rename: Vec<(Path, Path)>,
    /// (path, value) pairs in sorted path order.
    set: Vec<(Path, Value)>,
    remove: Vec<Path>,
}

impl JsonTransform {
    /// Applies rename, set and remove to `data`.
    fn apply(&self, data: &mut Map<String, Value>) -> Result<(), String> {
        for (source, target) in &self.rename {
            if let Some(value) = take(data, source) {
                put(data, target, value)?;
            }
        }
        for (path, value) in &self.set {
            put(data, path, value.clone())?;
        }
        for path in &self.remove {
            take(data, path);
        }
        Ok(())
    }
}

/// Removes the value at `path` and returns it; `None` when any step is missing or not an object.
fn take(data: &mut Map<String, Value>, path: &Path) -> Option<Value> {
    let (parents, last) = path.split();
    let mut object = data;
    for key in parents {
        object = object.get_mut(key)?.as_object_mut()?;
    }
    object.remove(last)
}

/// Stores `value` at `path`, creating missing intermediate objects; an intermediate that exists
/// but is not an object is an error naming the path.
fn put(data: &mut Map<String, Value>, path: &Path, value: Value) -> Result<(), String> {
    let (parents, last) = path.split();
    let mut object = data;
    for key in parents {
        object = object
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| format!("cannot set \"{}\": \"{key}\" is not an object", path.text))?;
    }
    object.insert(last.to_owned(), value);
    Ok(())
}

impl Handler for JsonTransform {
    fn init(config: Config) -> Result<Self, Error> {
        config.deny_unknown(&KEYS)?;
        let rename = config
            .json::<BTreeMap<String, String>>("rename")?
            .unwrap_or_default()
            .into_iter()
            .map(|(source, target)| Ok((Path::parse("rename", &source)?, Path::parse("rename", &target)?)))
            .collect::<Result<_, Error>>()?;
        let set = config
            .json::<BTreeMap<String, Value>>("set")?
            .unwrap_or_default()
            .into_iter()
            .map(|(path, value)| Ok((Path::parse("set", &path)?, value)))
            .collect::<Result<_, Error>>()?;
        let remove = config.list("remove")?.iter().map(|path| Path::parse("remove", path)).collect::<Result<_, _>>()?;
        Ok(JsonTransform { rename, set, remove })
    }

    fn handle(&mut self, mut event: Event) -> Result<Outcome, Error> {
        let id = &event.context.id;
        let mut data = match serde_json::from_slice::<Value>(&event.data) {
            Ok(Value::Object(data)) => data,
            Ok(_) => return Err(Error::permanent(format!("event \"{id}\": data is not a JSON object"))),
            Err(err) => return Err(Error::permanent(format!("event \"{id}\": data is not JSON: {err}"))),
        };
        self.apply(&mut data).map_err(|reason| Error::permanent(format!("event \"{id}\": {reason}")))?;
        event.data = serde_json::to_vec(&Value::Object(data)).map_err(|err| {
            Error::permanent(format!("event \"{}\": cannot encode JSON data: {err}", event.context.id))
        })?;
        event.context.datacontenttype.get_or_insert_with(|| "application/json".into());
        Ok(event.into())
    }
}

eventyard_sdk::export_handler!(JsonTransform);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn transform(pairs: &[(&str, &str)]) -> Result<JsonTransform, Error> {
        JsonTransform::init(Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
    }

    fn event(data: &[u8]) -> Event {
        Event::from_parts("a.b", "e-1", "/test", "t", data)
    }

    fn run(t: &mut JsonTransform, data: Value) -> Result<Value, Error> {
        let input = event(&serde_json::to_vec(&data).unwrap());
        let out = t.handle(input.clone())?.into_events(input);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].context.datacontenttype.as_deref(), Some("application/json"));
        Ok(serde_json::from_slice(&out[0].data).unwrap())
    }

    #[test]
    fn rename_then_set_then_remove() {
        let mut t = transform(&[
            ("rename", r#"{"user.name": "name", "missing.x": "y"}"#),
            ("set", r#"{"meta.source.kind": "app", "user.name": "overwritten"}"#),
            ("remove", r#"["user.secret", "nope.nope"]"#),
        ])
        .unwrap();
        let out = run(&mut t, json!({"user": {"name": "ada", "secret": "s"}, "n": 1})).unwrap();
        assert_eq!(
            out,
            json!({"name": "ada", "user": {"name": "overwritten"}, "meta": {"source": {"kind": "app"}}, "n": 1})
        );
    }

    #[test]
    fn output_is_deterministic() {
        let mut t = transform(&[("set", r#"{"b": 1, "a": 2}"#)]).unwrap();
        let a = t.handle(event(br#"{"z": 0, "y": 0}"#)).unwrap().into_events(event(b""));
        let b = t.handle(event(br#"{"y": 0, "z": 0}"#)).unwrap().into_events(event(b""));
        assert_eq!(a[0].data, b[0].data);
        assert_eq!(a[0].data, br#"{"a":2,"b":1,"y":0,"z":0}"#);
    }

    #[test]
    fn errors_name_the_event_or_the_config_key() {
        let mut t = transform(&[("set", r#"{"a.b": 1}"#)]).unwrap();
        let err = t.handle(event(b"[1, 2]")).unwrap_err();
        assert_eq!(err.message, "event \"e-1\": data is not a JSON object");
        assert!(!err.retryable);
        assert!(t.handle(event(b"nope")).unwrap_err().message.starts_with("event \"e-1\": data is not JSON"));
        let err = t.handle(event(br#"{"a": 3}"#)).unwrap_err();
        assert_eq!(err.message, "event \"e-1\": cannot set \"a.b\": \"a\" is not an object");
        let err = transform(&[("remove", r#"["a..b"]"#)]).err().unwrap();
        assert_eq!(err.message, "config: key `remove`: invalid path \"a..b\": empty key");
        assert!(transform(&[("rename", r#"{"a": {"b": "c"}}"#)]).is_err());
    }
}
