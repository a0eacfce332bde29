//! `file-sink`: a sink that appends each event as one line of CloudEvents structured JSON to a file
//! under the directory the host grants it, which the plugin sees at `/data`; for example the audit
//! trail of several nodes, collected in one place and split by subject, routing key and hour.
//!
//! Config:
//! - `path`: the directory under `/data`, a template; default `{subject}/{routingkey}/{yyyy}/{mm}/{dd}/{HH}`.
//!   `{subject}` is the routing subject, `{routingkey}` the `routingkey` extension (`_` when
//!   absent), and the date parts are the UTC hour of the event's `time` when that is RFC 3339,
//!   else of the host clock.
//! - `file`: the file name in that directory, a template too; default `events.jsonl`.
//!
//! Files are opened in append mode and directories created as needed. A path that would be
//! absolute or climb out with `..` is refused for that event. Each line goes out in one
//! `write_all` on a file opened for append, so instances sharing a file add whole lines as long as
//! the host does not split the write. Lines are not fsynced.
//!
//! Failures: events that cannot be written come back as [`DeliveryError::Partial`] with their
//! indexes (a refused path is permanent, an I/O error retryable); a missing `/data` (no directory
//! granted) fails the whole batch as retryable.
//!
//! Layout: `template` parses and renders path templates; `time` finds an event's hour.

mod template;
mod time;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use eventyard_sdk::{Config, DeliveryError, Error, Event, EventFailure, Sink};

use crate::template::Template;
use crate::time::Hour;

/// The config keys this plugin reads.
const KEYS: [&str; 2] = ["path", "file"];

/// Where the host mounts the granted directory inside the guest.
const ROOT: &str = "/data";

/// The directory template when config gives none.
const DEFAULT_PATH: &str = "{subject}/{routingkey}/{yyyy}/{mm}/{dd}/{HH}";

/// The file name template when config gives none.
const DEFAULT_FILE: &str = "events.jsonl";

struct FileSink {
    /// The granted directory; always [`ROOT`] except in tests.
    root: PathBuf,
    path: Template,
    file: Template,
}

/// One line waiting to be appended, with its position in the batch.
struct Line {
    index: u32,
    id: String,
    bytes: Vec<u8>,
}

impl FileSink {
    /// The file `event` goes to, relative to the root.
    fn locate(&self, event: &Event, now: &mut Option<Hour>) -> Result<PathBuf, String> {
        let hour = if self.path.uses_time() || self.file.uses_time() {
            let from_event = event.context.time.as_deref().and_then(time::parse_rfc3339).map(Hour::from_unix_secs);
            Some(from_event.unwrap_or_else(|| *now.get_or_insert_with(Hour::now)))
        } else {
            None
        };
        let dir = self.path.render(event, hour)?;
        let file = self.file.render(event, hour)?;
        if file.is_empty() || file == "." || file.contains('/') {
            return Err(format!("file name \"{file}\" is not a single path component"));
        }
        Ok(Path::new(&dir).join(file))
    }
}

/// The event as one line of CloudEvents JSON, newline included.
fn line(event: &Event) -> Result<Vec<u8>, String> {
    let mut bytes =
        serde_json::to_vec(&event.to_cloudevents_json()).map_err(|err| format!("cannot encode as JSON: {err}"))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Appends `lines` to `path`, creating its directory; returns the lines that failed.
fn append(path: &Path, lines: Vec<Line>) -> Vec<EventFailure> {
    let fail = |line: &Line, reason: &str| EventFailure {
        index: line.index,
        message: format!("event \"{}\": {reason}", line.id),
        retryable: true,
    };
    let opened = path
        .parent()
        .map_or(Ok(()), fs::create_dir_all)
        .map_err(|err| format!("cannot create directory for {}: {err}", path.display()))
        .and_then(|()| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|err| format!("cannot open {}: {err}", path.display()))
        });
    let mut file = match opened {
        Ok(file) => file,
        Err(reason) => return lines.iter().map(|line| fail(line, &reason)).collect(),
    };
    lines
        .iter()
        .filter_map(|line| {
            file.write_all(&line.bytes)
                .err()
                .map(|err| fail(line, &format!("cannot write to {}: {err}", path.display())))
        })
        .collect()
}

impl Sink for FileSink {
    fn init(config: Config) -> Result<Self, Error> {
        config.deny_unknown(&KEYS)?;
        let path = Template::parse("path", config.get("path").unwrap_or(DEFAULT_PATH))?;
        let file = Template::parse("file", config.get("file").unwrap_or(DEFAULT_FILE))?;
        Ok(FileSink { root: PathBuf::from(ROOT), path, file })
    }

    fn deliver(&mut self, batch: Vec<Event>) -> Result<(), DeliveryError> {
        if !self.root.is_dir() {
            return Err(DeliveryError::Retryable(format!(
                "directory {} is missing: the host has not granted this sink a directory",
                self.root.display()
            )));
        }
        let mut failures = Vec::new();
        let mut now = None;
        // Lines grouped by file so each file is opened once per batch; batch order is kept per file.
        let mut files: BTreeMap<PathBuf, Vec<Line>> = BTreeMap::new();
        for (index, event) in batch.iter().enumerate() {
            // A WIT list is at most u32::MAX long, so the index fits.
            let index = index as u32;
            let id = &event.context.id;
            match self.locate(event, &mut now).and_then(|path| Ok((path, line(event)?))) {
                Ok((path, bytes)) => files.entry(path).or_default().push(Line { index, id: id.clone(), bytes }),
                Err(reason) => failures.push(EventFailure {
                    index,
                    message: format!("event \"{id}\": {reason}"),
                    retryable: false,
                }),
            }
        }
        for (path, lines) in files {
            failures.extend(append(&self.root.join(path), lines));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            failures.sort_by_key(|failure| failure.index);
            Err(DeliveryError::Partial(failures))
        }
    }
}

eventyard_sdk::export_sink!(FileSink);

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn sink(root: &Path, pairs: &[(&str, &str)]) -> FileSink {
        let config = Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        FileSink { root: root.to_owned(), ..FileSink::init(config).unwrap() }
    }

    fn event(id: &str, subject: &str, routing_key: Option<&str>, data: &str) -> Event {
        let mut event = Event::from_parts(subject, id, "/dss/node-1", "audit", data);
        event.context.time = Some("2022-07-12T07:08:09Z".into());
        event.context.datacontenttype = Some("application/json".into());
        if let Some(key) = routing_key {
            event.set_extension("routingkey", key);
        }
        event
    }

    fn temp_root(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("file-sink-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        root
    }

    fn lines(path: &Path) -> Vec<Value> {
        fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn events_are_appended_under_subject_key_and_hour() {
        let root = temp_root("append");
        let mut s = sink(&root, &[]);
        s.deliver(vec![
            event("1", "audit.login", Some("eu"), r#"{"user":"ada"}"#),
            event("2", "audit.login", None, "{}"),
        ])
        .unwrap();
        s.deliver(vec![event("3", "audit.login", Some("eu"), "not json")]).unwrap();
        let eu = lines(&root.join("audit.login/eu/2022/07/12/07/events.jsonl"));
        assert_eq!(eu.len(), 2);
        assert_eq!(eu[0]["id"], "1");
        assert_eq!(eu[0]["data"]["user"], "ada");
        assert_eq!(eu[0]["routingkey"], "eu");
        assert_eq!(eu[1]["data_base64"], "bm90IGpzb24=");
        assert_eq!(lines(&root.join("audit.login/_/2022/07/12/07/events.jsonl"))[0]["id"], "2");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn escaping_events_fail_alone() {
        let root = temp_root("partial");
        let mut s = sink(&root, &[("path", "{routingkey}"), ("file", "out.jsonl")]);
        let err = s.deliver(vec![event("ok", "a", Some("k"), "{}"), event("bad", "a", Some(".."), "{}")]).unwrap_err();
        let DeliveryError::Partial(failures) = err else { panic!("expected a partial failure, got {err:?}") };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].index, 1);
        assert!(!failures[0].retryable);
        assert!(failures[0].message.starts_with("event \"bad\": path \"..\""), "{}", failures[0].message);
        assert_eq!(lines(&root.join("k/out.jsonl")).len(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_directory_is_retryable() {
        let mut s = sink(Path::new("/nonexistent/file-sink-root"), &[]);
        let err = s.deliver(vec![event("1", "a", None, "{}")]).unwrap_err();
        assert!(matches!(&err, DeliveryError::Retryable(message) if message.contains("not granted")), "{err:?}");
    }

    #[test]
    fn bad_templates_fail_init() {
        assert!(FileSink::init(Config::new(vec![("path".into(), "{when}".into())])).is_err());
        assert!(FileSink::init(Config::new(vec![("paht".into(), "x".into())])).is_err());
    }
}
