//! [`StdoutSink`]: writes one line per event to standard output (seed 003: collect every event and
//! log it on stdout), as CloudEvents JSON or as a short text line.
//!
//! Owns the line formats and the write. Every `StdoutSink` of the process writes through one lock
//! around `tokio::io::stdout()`, a batch at a time, and flushes before `deliver` returns, so lines
//! of different batches and sinks never interleave. Logs go to stderr (`telemetry`), so stdout is
//! this sink's alone. It never blocks a runtime worker (tokio's stdout writes on the blocking
//! pool) and never writes anything but whole event lines.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncWriteExt as _;

use super::SinkBuildError;
use crate::event::Event;
use crate::sink::{DeliveryError, Sink};

/// Serialises writes to stdout across every [`StdoutSink`], so a batch's lines stay together.
static STDOUT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Config of a [`StdoutSink`] (TOML, under the sink's table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// The line format. Default `json`.
    #[serde(default = "default_format")]
    pub format: StdoutFormat,
}

/// How a [`StdoutSink`] writes an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdoutFormat {
    /// The CloudEvents structured JSON form ([`structured::encode`](crate::codec::structured::encode)), as the file sinks
    /// write it.
    Json,
    /// `<time> <subject> <type> <id> <data>`: the event's `time` (the clock's, RFC 3339 UTC, when
    /// it has none), the routing subject, the CloudEvents type and id, and the data as UTF-8 text,
    /// or `base64:` and the data in base64 when it is not UTF-8. Backslashes and control
    /// characters (a newline, say) are escaped as `\\`, `\n`, `\r`, `\t` and `\u{..}`, so one event
    /// is always one line; an empty field is `-`.
    Text,
}

/// The default of [`StdoutSinkConfig::format`].
pub fn default_format() -> StdoutFormat {
    StdoutFormat::Json
}

/// Writes one line per event on standard output.
#[derive(Debug, Clone)]
pub struct StdoutSink {
    format: StdoutFormat,
}

impl StdoutSink {
    /// Builds the sink named `name`; every config is valid, so this does not fail today.
    pub fn new(name: &str, config: StdoutSinkConfig) -> Result<StdoutSink, SinkBuildError> {
        let _ = name;
        Ok(StdoutSink { format: config.format })
    }

    /// The line for `event`, newline included.
    pub fn line(&self, event: &Event) -> String {
        let mut line = match self.format {
            StdoutFormat::Json => crate::codec::structured::encode(event).to_string(),
            StdoutFormat::Text => text_line(event),
        };
        line.push('\n');
        line
    }
}

#[async_trait]
impl Sink for StdoutSink {
    /// Writes the batch's lines in one locked write and flushes; an I/O error (a closed pipe, say)
    /// is retryable for the whole batch.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a delivery cancelled in the middle of its write may have written part of
    /// its lines.
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        if batch.is_empty() {
            return Ok(());
        }
        let text: String = batch.iter().map(|event| self.line(event)).collect();
        let _locked = STDOUT.lock().await;
        let mut stdout = tokio::io::stdout();
        stdout.write_all(text.as_bytes()).await.map_err(|err| retryable("write to", &err))?;
        stdout.flush().await.map_err(|err| retryable("flush", &err))
    }
}

/// The whole batch failed on stdout.
fn retryable(what: &str, err: &std::io::Error) -> DeliveryError {
    DeliveryError::Retryable(format!("cannot {what} stdout: {err}"))
}

/// The [`StdoutFormat::Text`] line of `event`, without the newline.
fn text_line(event: &Event) -> String {
    let c = &event.context;
    let time = match &c.time {
        Some(time) => time.clone(),
        // Formatting a UTC time as RFC 3339 fails only for years outside 0..=9999.
        None => OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_else(|_| "-".into()),
    };
    let data = match std::str::from_utf8(&event.data) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("base64:{}", BASE64.encode(&event.data)),
    };
    [time.as_str(), event.subject.as_str(), c.ty.as_str(), c.id.as_str(), data.as_str()].map(field).join(" ")
}

/// `value` as one field of a text line: `-` when empty; backslashes and control characters
/// escaped.
fn field(value: &str) -> String {
    if value.is_empty() {
        return "-".into();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::event::Context;

    fn event(time: Option<&str>, data: &[u8]) -> Event {
        Event {
            subject: "squall-events".into(),
            context: Context {
                id: "ev-1".into(),
                source: "/aporeto".into(),
                ty: "activity.create".into(),
                specversion: "1.0".into(),
                subject: None,
                time: time.map(str::to_owned),
                datacontenttype: Some("application/json".into()),
                dataschema: None,
            },
            extensions: vec![("routingkey".into(), "leon".into())],
            data: Bytes::copy_from_slice(data),
            nats: None,
            completion: None,
            arrived: None,
        }
    }

    fn sink(format: &str) -> StdoutSink {
        let config: StdoutSinkConfig = toml::from_str(&format!("format = \"{format}\"")).unwrap();
        StdoutSink::new("log", config).unwrap()
    }

    #[test]
    fn json_lines_are_the_cloudevents_form() {
        let line = sink("json").line(&event(Some("2022-07-12T07:08:09Z"), br#"{"identity": "enforcer"}"#));
        assert_eq!(
            line,
            concat!(
                r#"{"data":{"identity":"enforcer"},"datacontenttype":"application/json","id":"ev-1","routingkey":"leon","#,
                r#""source":"/aporeto","specversion":"1.0","time":"2022-07-12T07:08:09Z","type":"activity.create"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn text_lines_have_time_subject_type_id_and_data() {
        let text = sink("text");
        assert_eq!(
            text.line(&event(Some("2022-07-12T07:08:09Z"), br#"{"identity": "enforcer"}"#)),
            "2022-07-12T07:08:09Z squall-events activity.create ev-1 {\"identity\": \"enforcer\"}\n"
        );
        assert_eq!(
            text.line(&event(Some("2022-07-12T07:08:09Z"), &[0xff, 0x00, 0x41])),
            "2022-07-12T07:08:09Z squall-events activity.create ev-1 base64:/wBB\n"
        );
        assert_eq!(
            text.line(&event(Some("2022-07-12T07:08:09Z"), b"two\nlines\\ and a\ttab\x1b")),
            "2022-07-12T07:08:09Z squall-events activity.create ev-1 two\\nlines\\\\ and a\\ttab\\u{1b}\n"
        );
        assert_eq!(
            text.line(&event(Some("2022-07-12T07:08:09Z"), b"")),
            "2022-07-12T07:08:09Z squall-events activity.create ev-1 -\n"
        );
        let untimed = text.line(&event(None, b"x"));
        let time = untimed.split(' ').next().unwrap();
        assert!(OffsetDateTime::parse(time, &Rfc3339).is_ok(), "{untimed}");
        assert!(untimed.ends_with(" squall-events activity.create ev-1 x\n"), "{untimed}");
    }

    #[test]
    fn the_format_defaults_to_json_and_unknown_keys_are_refused() {
        assert_eq!(toml::from_str::<StdoutSinkConfig>("").unwrap().format, StdoutFormat::Json);
        assert_eq!(toml::from_str::<StdoutSinkConfig>("format = \"text\"").unwrap().format, StdoutFormat::Text);
        assert!(toml::from_str::<StdoutSinkConfig>("format = \"yaml\"").is_err());
        assert!(toml::from_str::<StdoutSinkConfig>("fromat = \"json\"").is_err());
    }

    #[tokio::test]
    async fn a_batch_is_written_and_flushed() {
        // The lines go to the test's stdout; this checks that writing and flushing succeed.
        sink("text").deliver(&[event(Some("2022-07-12T07:08:09Z"), b"from the stdout sink test")]).await.unwrap();
        sink("json").deliver(&[]).await.unwrap();
    }
}
