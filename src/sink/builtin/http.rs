//! [`HttpSink`]: POSTs events as CloudEvents structured JSON to one URL, an event per request
//! (`application/cloudevents+json`) or the whole batch per request, as a JSON array
//! (`application/cloudevents-batch+json`).
//!
//! Owns the client (reqwest over rustls, trusting the webpki roots plus an optional CA bundle),
//! the request shape, and the classification of answers: 2xx delivered; 408, 429, 5xx and
//! transport failures (connect, timeout, a broken connection) retryable; anything else (other
//! 4xx, and 3xx, since redirects are not followed) permanent.
//!
//! Never logs or shows a secret: the bearer token and header values are redacted in `Debug`,
//! marked sensitive, and left out of messages, as is the URL's query. Never waits without bound:
//! `timeout_ms` covers each request from connecting to the end of the answer's body. It does not
//! retry; the sink worker does.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Certificate, Client, StatusCode, Url};
use serde::Deserialize;

use super::{SinkBuildError, event_failure, outcome};
use crate::codec::structured;
use crate::event::Event;
use crate::sink::{DeliveryError, Sink};

/// The content type of one event in structured mode.
pub const EVENT_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The content type of a batch of events.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// How much of an answer's body is read (and then dropped) so the connection can be reused.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How much of a failed answer's body goes into the failure message.
const DETAIL_LIMIT: usize = 256;

/// Headers the sink sets itself (lowercase), which `headers` may not set.
const OWN_HEADERS: [&str; 4] = ["content-type", "content-length", "transfer-encoding", "host"];

/// Config of an [`HttpSink`] (TOML, under the sink's table).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where to POST (required): an `http` or `https` URL without user info (put credentials in
    /// `bearer_token` or `headers`).
    pub url: String,
    /// One request per event or per batch. Default `event`.
    #[serde(default = "default_mode")]
    pub mode: HttpMode,
    /// Extra request headers, name to value. They may not set `content-type`, `content-length`,
    /// `transfer-encoding` or `host`, nor `authorization` when `bearer_token` is set. Default none.
    #[serde(default = "default_headers")]
    pub headers: BTreeMap<String, String>,
    /// The limit on each request, from connecting to the end of the answer, in milliseconds; more
    /// than zero. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A PEM bundle of CA certificates to trust for `https` besides the built-in webpki roots.
    /// Default none.
    pub tls_ca: Option<PathBuf>,
    /// A token sent as `authorization: Bearer <token>`; never logged. Default none.
    pub bearer_token: Option<Secret>,
}

impl fmt::Debug for HttpSinkConfig {
    /// Shows header names but not their values, which may be credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSinkConfig")
            .field("url", &self.url)
            .field("mode", &self.mode)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .field("tls_ca", &self.tls_ca)
            .field("bearer_token", &self.bearer_token)
            .finish()
    }
}

/// How an [`HttpSink`] maps events to requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMode {
    /// One request per event, in batch order, body the event's CloudEvents JSON. A retryable
    /// failure stops the batch: that event and every later one (not sent) come back retryable. A
    /// permanent failure fails that event only, and the next events are still sent.
    Event,
    /// One request per batch, body a JSON array of the events' CloudEvents JSON; the answer
    /// decides for the whole batch.
    Batch,
}

/// A secret config value: readable through [`Secret::expose`], shown as `<redacted>` in `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The default of [`HttpSinkConfig::mode`].
pub fn default_mode() -> HttpMode {
    HttpMode::Event
}

/// The default of [`HttpSinkConfig::headers`].
pub fn default_headers() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// The default of [`HttpSinkConfig::timeout_ms`].
pub fn default_timeout_ms() -> u64 {
    10_000
}

/// POSTs events as CloudEvents JSON to a URL.
pub struct HttpSink {
    client: Client,
    url: Url,
    /// The URL without its query and fragment, for messages.
    shown_url: String,
    mode: HttpMode,
    /// `headers` and the bearer token, every value marked sensitive.
    headers: HeaderMap,
    timeout: Duration,
}

impl fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSink")
            .field("url", &self.shown_url)
            .field("mode", &self.mode)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpSink {
    /// Checks `config` and builds the sink named `name` with its client.
    ///
    /// # Blocking
    ///
    /// When `tls_ca` is set this reads that file with `std::fs`: build the sink at startup or in
    /// `spawn_blocking`, not on an async worker. Without it, no I/O is done.
    pub fn new(name: &str, config: HttpSinkConfig) -> Result<HttpSink, SinkBuildError> {
        let invalid = |key, reason: String| SinkBuildError::config(name, key, reason);
        let url = Url::parse(&config.url)
            .map_err(|err| invalid("url", format!("invalid url {}: {err}", shown_text(&config.url))))?;
        let mut shown = url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        // Cannot fail for a URL with a host; a URL without one is refused below anyway.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let shown_url = shown.to_string();
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(invalid("url", format!("url \"{shown_url}\" is not an http or https url with a host")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("url", format!("url \"{shown_url}\" has user info: use `bearer_token` or `headers`")));
        }
        if config.timeout_ms == 0 {
            return Err(invalid("timeout_ms", "timeout 0 ms is not more than zero".into()));
        }
        let timeout = Duration::from_millis(config.timeout_ms);

        let mut headers = HeaderMap::new();
        for (name_text, value_text) in &config.headers {
            let header_name = HeaderName::from_bytes(name_text.as_bytes())
                .map_err(|_| invalid("headers", format!("\"{name_text}\" is not a valid header name")))?;
            if OWN_HEADERS.contains(&header_name.as_str())
                || (header_name.as_str() == "authorization" && config.bearer_token.is_some())
            {
                return Err(invalid("headers", format!("header \"{header_name}\" is set by the sink itself")));
            }
            let mut value = HeaderValue::from_str(value_text).map_err(|_| {
                invalid("headers", format!("the value of header \"{header_name}\" is not a valid header value"))
            })?;
            value.set_sensitive(true);
            headers.append(header_name, value);
        }
        if let Some(token) = &config.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| invalid("bearer_token", "the bearer token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }

        let mut builder = Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("eventyard/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.tls_ca {
            let pem = std::fs::read(path).map_err(|source| SinkBuildError::Read {
                sink: name.to_owned(),
                key: "tls_ca",
                path: path.clone(),
                source,
            })?;
            let certificates = Certificate::from_pem_bundle(&pem)
                .map_err(|err| invalid("tls_ca", format!("{} is not a PEM bundle: {err}", path.display())))?;
            if certificates.is_empty() {
                return Err(invalid("tls_ca", format!("{} holds no PEM certificate", path.display())));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let key = if config.tls_ca.is_some() { "tls_ca" } else { "url" };
        let client =
            builder.build().map_err(|err| invalid(key, format!("cannot build the http client: {}", chain(&err))))?;
        Ok(HttpSink { client, url, shown_url, mode: config.mode, headers, timeout })
    }

    /// POSTs `body` as `content_type`; `Err` says why it was not delivered and whether to retry.
    async fn post(&self, content_type: &'static str, body: String) -> Result<(), Failure> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|err| self.transport_failure(err))?;
        let status = response.status();
        let detail = drain(response).await;
        if status.is_success() {
            return Ok(());
        }
        let retryable = status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        let detail = if detail.is_empty() { String::new() } else { format!(": \"{detail}\"") };
        Err(Failure { reason: format!("POST {}: answered {status}{detail}", self.shown_url), retryable })
    }

    /// A request that got no answer: retryable, unless the request itself could not be built.
    fn transport_failure(&self, err: reqwest::Error) -> Failure {
        let what = if err.is_timeout() {
            format!("timed out after {} ms", self.timeout.as_millis())
        } else if err.is_connect() {
            "cannot connect".to_owned()
        } else {
            "request failed".to_owned()
        };
        let retryable = !err.is_builder();
        Failure { reason: format!("POST {}: {what}: {}", self.shown_url, chain(&err.without_url())), retryable }
    }
}

#[async_trait]
impl Sink for HttpSink {
    /// Sends the batch as [`HttpMode`] says; an empty batch sends nothing.
    ///
    /// # Cancel safety
    ///
    /// Cancelling drops the request in flight; the server may or may not have received it.
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.mode {
            HttpMode::Batch => {
                let body = serde_json::Value::Array(batch.iter().map(structured::encode).collect());
                self.post(BATCH_CONTENT_TYPE, body.to_string()).await.map_err(|failure| {
                    let message = format!("{} event(s): {}", batch.len(), failure.reason);
                    if failure.retryable {
                        DeliveryError::Retryable(message)
                    } else {
                        DeliveryError::Permanent(message)
                    }
                })
            }
            HttpMode::Event => {
                let mut failures = Vec::new();
                for (index, event) in batch.iter().enumerate() {
                    let Err(failure) = self.post(EVENT_CONTENT_TYPE, structured::encode(event).to_string()).await
                    else {
                        continue;
                    };
                    failures.push(event_failure(batch, index, &failure.reason, failure.retryable));
                    if failure.retryable {
                        // The destination is likely down: keep the rest for the retry, in order.
                        let reason = format!("not sent: event {index} of the batch failed retryably before it");
                        failures
                            .extend((index + 1..batch.len()).map(|later| event_failure(batch, later, &reason, true)));
                        break;
                    }
                }
                outcome(batch.len(), failures)
            }
        }
    }
}

/// Why one request did not deliver.
#[derive(Debug)]
struct Failure {
    reason: String,
    retryable: bool,
}

/// Reads and drops up to [`DRAIN_LIMIT`] bytes of the answer's body, so a small answer leaves the
/// connection reusable; returns its first [`DETAIL_LIMIT`] bytes as one line of text (control
/// characters made spaces), or nothing when reading fails.
async fn drain(mut response: reqwest::Response) -> String {
    let mut start = Vec::new();
    let mut read = 0;
    while read < DRAIN_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = DETAIL_LIMIT.saturating_sub(start.len());
                start.extend_from_slice(&chunk[..room.min(chunk.len())]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&start)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// How an unparsable `url` value is named in messages: quoted up to its query, or not at all when
/// it may hold user info.
fn shown_text(url: &str) -> String {
    if url.contains('@') {
        return "(not shown: it may hold user info)".to_owned();
    }
    format!("\"{}\"", url.split(['?', '#']).next().unwrap_or_default())
}

/// `err` and its sources, `: `-separated.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA made with `openssl req -x509 -newkey ec` for these tests only.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBkDCCATWgAwIBAgIUH/jShGudn+wba63ZS7ilfqxQF/IwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRZXZlbnR5YXJkIHRlc3QgY2EwIBcNMjYxMTIzMTEyNDAzWhgP
MjEyNjEwMzAxMTI0MDNaMBwxGjAYBgNVBAMMEWV2ZW50eWFyZCB0ZXN0IGNhMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE7ZJBwwYXgWqEQ4nMI4wMPONfNSdjyTjF
8vl20tbX0rOajl1BDrTOKOgEuK99MUKTGJc46oQDq/lQ048ZLG2zv6NTMFEwHQYD
VR0OBBYEFLDNMCrMBRfwSMZOu4BtHZNtz84RMB8GA1UdIwQYMBaAFLDNMCrMBRfw
SMZOu4BtHZNtz84RMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIh
AIboGgDVn0g03X+NHrBXoLmzoH7Z0EYcgFseHTuyAk/yAiEA3SmT/oIzPC2AgTj+
BMH0kWDBNdhE5uePI12yFoDmPN0=
-----END CERTIFICATE-----
";

    fn config(text: &str) -> HttpSinkConfig {
        toml::from_str(text).unwrap()
    }

    fn build_err(text: &str) -> String {
        HttpSink::new("hook", config(text)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_modes_parse() {
        let c = config("url = \"http://127.0.0.1:9/events\"");
        assert_eq!(c.mode, HttpMode::Event);
        assert!(c.headers.is_empty());
        assert_eq!(c.timeout_ms, 10_000);
        assert_eq!((c.tls_ca, c.bearer_token), (None, None));
        assert_eq!(config("url = \"http://h/\"\nmode = \"batch\"").mode, HttpMode::Batch);
        assert!(toml::from_str::<HttpSinkConfig>("url = \"http://h/\"\nmode = \"stream\"").is_err());
        assert!(toml::from_str::<HttpSinkConfig>("url = \"http://h/\"\ntimeout = 5").is_err());
        assert!(toml::from_str::<HttpSinkConfig>("mode = \"batch\"").is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = config(
            "url = \"https://h/e?key=q\"\nbearer_token = \"s3cret-token\"\n[headers]\nx-api-key = \"s3cret-key\"",
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Secret(<redacted>)") && shown.contains("x-api-key"), "{shown}");
        let sink = HttpSink::new("hook", c).unwrap();
        let shown = format!("{sink:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("key=q"), "{shown}");
        assert!(shown.contains("\"https://h/e\"") && shown.contains("authorization"), "{shown}");
        assert!(sink.headers.values().all(HeaderValue::is_sensitive));
    }

    #[test]
    fn bad_configs_are_refused_naming_the_key_and_never_the_secret() {
        assert!(
            build_err("url = \"ftp://h/x\"").starts_with("sink \"hook\": key `url`: url \"ftp://h/x\" is not an http")
        );
        assert!(build_err("url = \"not a url\"").starts_with("sink \"hook\": key `url`: invalid url \"not a url\""));
        let userinfo = build_err("url = \"http://ada:pw@h/x\"");
        assert!(userinfo.contains("url \"http://h/x\" has user info") && !userinfo.contains("pw"), "{userinfo}");
        let unparsable = build_err("url = \"http://ada:pw@[::1/x\"");
        assert!(unparsable.contains("invalid url (not shown") && !unparsable.contains("pw"), "{unparsable}");
        assert!(build_err("url = \"http://[::1/x?key=s3cret\"").contains("invalid url \"http://[::1/x\": "));
        assert!(build_err("url = \"http://h/\"\ntimeout_ms = 0").contains("key `timeout_ms`"));
        assert!(
            build_err("url = \"http://h/\"\n[headers]\nContent-Type = \"text/plain\"")
                .contains("\"content-type\" is set by the sink")
        );
        assert!(
            build_err("url = \"http://h/\"\n[headers]\n\"bad name\" = \"v\"")
                .contains("\"bad name\" is not a valid header name")
        );
        let both = build_err("url = \"http://h/\"\nbearer_token = \"t0k\"\n[headers]\nAuthorization = \"Basic x\"");
        assert!(both.contains("\"authorization\" is set by the sink"), "{both}");
        let bad_token = build_err("url = \"http://h/\"\nbearer_token = \"line\\nbreak-s3cret\"");
        assert!(bad_token.contains("key `bearer_token`") && !bad_token.contains("s3cret"), "{bad_token}");
    }

    #[test]
    fn a_tls_ca_bundle_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, TEST_CA).unwrap();
        let with = |path: &std::path::Path| format!("url = \"https://h/\"\ntls_ca = {:?}", path.display().to_string());
        HttpSink::new("hook", config(&with(&good))).unwrap();

        let missing = HttpSink::new("hook", config(&with(&dir.path().join("nope.pem")))).unwrap_err();
        assert!(matches!(missing, SinkBuildError::Read { key: "tls_ca", .. }), "{missing}");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(build_err(&with(&empty)).contains("holds no PEM certificate"));
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        assert!(build_err(&with(&broken)).contains("key `tls_ca`"));
    }

    #[test]
    fn error_chains_are_joined() {
        let io = std::io::Error::other("inner");
        assert_eq!(chain(&io), "inner");
    }
}
