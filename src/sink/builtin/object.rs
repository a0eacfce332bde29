//! [`ObjectSink`]: writes events to object storage — S3 and what speaks its protocol, Azure Blob
//! Storage, Google Cloud Storage — through the `object_store` crate, as CloudEvents JSON lines,
//! one object per path a batch touches, under the file sink's path template
//! (`{subject}/{routingkey}/{yyyy}/{mm}/{dd}/{HH}` by default, seed 002). Objects are rolled by the
//! sink's batching: one closes when the batch reaches `batch_bytes` or `batch_size`, or has waited
//! `linger_ms`. Each object is named `<UUIDv7>.jsonl` (`.jsonl.gz` with `gzip = true`), so names
//! sort by time and never collide.
//!
//! Owns: the store the URL and options describe, grouping a batch by path, building and uploading
//! each object.
//!
//! Never:
//! - makes an object visible half-written: each is uploaded in one PUT (a block blob on Azure),
//!   which the store shows whole or not at all; `batch_bytes` bounds its size.
//! - answers a delivery before every object holding its events is stored: an event is delivered
//!   when the store has acknowledged its object, so the queue (and the write-ahead log in durable
//!   mode) lets go of it only then. A failed upload fails only that object's events, retryably.
//! - logs or shows a credential: `options` are passed to the store and left out of `Debug`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreScheme};
use serde::Deserialize;

use super::file::{Clock, Destinations, Template, default_path};
use super::{SinkBuildError, event_failure, outcome};
use crate::event::Event;
use crate::sink::{DeliveryError, Sink};

/// Config of an [`ObjectSink`] (TOML, under the sink's table).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSinkConfig {
    /// Where objects go: `s3://bucket/prefix`, `azure://container/prefix`, `gs://bucket/prefix`.
    pub url: String,
    /// The store's settings, as `object_store` names them: `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_region`, `aws_endpoint`, `aws_allow_http`;
    /// `azure_storage_account_name`, `azure_storage_account_key`, `azure_storage_use_emulator`;
    /// `google_service_account`... Unset ones come from the environment, as the cloud's own tools read it.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The object's directory under the URL's prefix: the file sink's template.
    #[serde(default = "default_path")]
    pub path: String,
    /// Gzip each object (`.jsonl.gz`, `Content-Encoding` left unset: the object is a gzip file).
    #[serde(default)]
    pub gzip: bool,
}

impl std::fmt::Debug for ObjectSinkConfig {
    /// Never shows the options' values: they hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSinkConfig")
            .field("url", &self.url)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("path", &self.path)
            .field("gzip", &self.gzip)
            .finish()
    }
}

/// Writes events as JSON-lines objects to an object store.
pub struct ObjectSink {
    store: Arc<dyn ObjectStore>,
    /// The URL's path: every object goes under it.
    prefix: ObjectPath,
    path: Template,
    gzip: bool,
    url: String,
}

impl ObjectSink {
    /// Checks `config` and builds the sink named `name`; connects to nothing (an unreachable
    /// store shows at delivery, as a retryable failure).
    pub fn new(name: &str, config: ObjectSinkConfig) -> Result<ObjectSink, SinkBuildError> {
        let url = url::Url::parse(&config.url)
            .map_err(|err| SinkBuildError::config(name, "url", format!("`{}` is not a URL: {err}", config.url)))?;
        let (scheme, _) = ObjectStoreScheme::parse(&url)
            .map_err(|err| SinkBuildError::config(name, "url", format!("`{}`: {err}", config.url)))?;
        // object_store passes over keys it does not know: a misspelt credential would go unnoticed.
        if let Some(unknown) = config.options.keys().find(|key| !known_option(&scheme, key)) {
            return Err(SinkBuildError::config(name, "options", format!("`{unknown}` is not a setting of this store")));
        }
        let (store, prefix) = object_store::parse_url_opts(&url, &config.options)
            .map_err(|err| SinkBuildError::config(name, "url", format!("`{}`: {err}", config.url)))?;
        let path = Template::parse(&config.path).map_err(|reason| {
            SinkBuildError::config(name, "path", format!("invalid template \"{}\": {reason}", config.path))
        })?;
        Ok(ObjectSink { store: Arc::from(store), prefix, path, gzip: config.gzip, url: config.url })
    }

    /// The location of a new object in `directory`.
    fn object(&self, directory: &str) -> ObjectPath {
        let mut location = self.prefix.clone();
        for part in directory.split('/').filter(|part| !part.is_empty()) {
            location = location.child(part);
        }
        let extension = if self.gzip { "jsonl.gz" } else { "jsonl" };
        location.child(format!("{}.{extension}", uuid::Uuid::now_v7()))
    }
}

/// Whether `key` is a setting of stores of `scheme`, as `object_store` names them.
fn known_option(scheme: &ObjectStoreScheme, key: &str) -> bool {
    match scheme {
        ObjectStoreScheme::AmazonS3 => key.parse::<AmazonS3ConfigKey>().is_ok(),
        ObjectStoreScheme::MicrosoftAzure => key.parse::<AzureConfigKey>().is_ok(),
        ObjectStoreScheme::GoogleCloudStorage => key.parse::<GoogleConfigKey>().is_ok(),
        _ => false,
    }
}

/// `lines` as one object's bytes, gzipped when asked.
fn body(lines: &[u8], gzip: bool) -> std::io::Result<Vec<u8>> {
    if !gzip {
        return Ok(lines.to_vec());
    }
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(lines.len() / 4), flate2::Compression::default());
    encoder.write_all(lines)?;
    encoder.finish()
}

#[async_trait]
impl Sink for ObjectSink {
    /// Groups the batch by directory and uploads one object per directory, all at once. An event
    /// whose directory is refused fails permanently; the events of an object that could not be
    /// stored fail retryably; the others are delivered.
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        let mut failures = Vec::new();
        let mut clock = Clock::default();
        let mut objects = Destinations::default();
        for (index, event) in batch.iter().enumerate() {
            let hour = self.path.uses_time().then(|| clock.hour_of(event));
            if let Err(reason) = objects.push(index, event, hour, || self.path.render(event, hour)) {
                failures.push(event_failure(batch, index, &reason, false));
            }
        }
        let uploads = objects.into_groups().into_iter().map(|(directory, lines)| async move {
            let location = self.object(&directory);
            let stored = match body(lines.bytes(), self.gzip) {
                Ok(bytes) => self.store.put(&location, bytes.into()).await.map(|_| ()).map_err(|err| err.to_string()),
                Err(err) => Err(format!("compressing: {err}")),
            };
            (lines, stored.map_err(|err| format!("storing {}/{location}: {err}", self.url.trim_end_matches('/'))))
        });
        for (lines, stored) in futures_util::future::join_all(uploads).await {
            if let Err(reason) = stored {
                failures.extend(lines.indices(0).map(|index| event_failure(batch, index, &reason, true)));
            }
        }
        outcome(batch.len(), failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventJson;

    fn event(subject: &str, key: &str) -> Event {
        let json = serde_json::json!({"subject": subject, "id": "e1", "source": "/t", "type": "t",
                                      "time": "2026-12-07T10:15:00Z", "extensions": [["routingkey", key]], "data": {"n": 1}});
        serde_json::from_value::<EventJson>(json).unwrap().into_event(|| "1".into()).unwrap()
    }

    fn config(url: &str) -> ObjectSinkConfig {
        ObjectSinkConfig { url: url.into(), options: BTreeMap::new(), path: default_path(), gzip: false }
    }

    #[tokio::test]
    async fn a_batch_becomes_one_object_per_directory_in_the_store() {
        let sink = ObjectSink::new("o", config("memory:///archive")).unwrap();
        let batch = [event("audit.login", "node-1"), event("audit.login", "node-1"), event("jobs", "node-2")];
        sink.deliver(&batch).await.unwrap();
        let listed: Vec<_> = futures_util::TryStreamExt::try_collect::<Vec<_>>(sink.store.list(None)).await.unwrap();
        let mut names: Vec<String> = listed.iter().map(|meta| meta.location.to_string()).collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].starts_with("archive/audit.login/node-1/2026/12/07/10/") && names[0].ends_with(".jsonl"));
        let object = sink.store.get(&listed.iter().find(|m| m.location.to_string() == names[0]).unwrap().location);
        let bytes = object.await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 2, "both events, one line each");
    }

    #[tokio::test]
    async fn gzip_objects_decompress_to_the_lines() {
        let sink = ObjectSink::new("o", ObjectSinkConfig { gzip: true, ..config("memory:///") }).unwrap();
        sink.deliver(&[event("a", "k")]).await.unwrap();
        let listed: Vec<_> = futures_util::TryStreamExt::try_collect::<Vec<_>>(sink.store.list(None)).await.unwrap();
        assert!(listed[0].location.to_string().ends_with(".jsonl.gz"));
        let bytes = sink.store.get(&listed[0].location).await.unwrap().bytes().await.unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text).unwrap();
        assert!(text.ends_with("}\n") && text.contains("\"id\":\"e1\""), "{text}");
    }

    #[tokio::test]
    async fn a_refused_path_fails_its_event_and_a_store_that_is_not_there_fails_retryably() {
        let sink = ObjectSink::new("o", config("memory:///")).unwrap();
        let err = sink.deliver(&[event("a", "..")]).await.unwrap_err();
        assert!(matches!(err, DeliveryError::Permanent(_)), "{err:?}");
        assert!(ObjectSink::new("o", config("nope://x")).is_err());
        assert!(ObjectSink::new("o", ObjectSinkConfig { path: "{nope}".into(), ..config("memory:///") }).is_err());
        let typo = BTreeMap::from([("aws_secret_acess_key".to_owned(), "s".to_owned())]);
        let refused = ObjectSink::new("o", ObjectSinkConfig { options: typo, ..config("s3://b/p") }).err().unwrap();
        assert!(refused.to_string().contains("aws_secret_acess_key"), "{refused}");
        let unreachable = BTreeMap::from([
            ("aws_endpoint".to_owned(), "http://127.0.0.1:9".to_owned()),
            ("aws_allow_http".to_owned(), "true".to_owned()),
            ("aws_access_key_id".to_owned(), "k".to_owned()),
            ("aws_secret_access_key".to_owned(), "s".to_owned()),
            ("aws_region".to_owned(), "us-east-1".to_owned()),
        ]);
        let sink = ObjectSink::new("o", ObjectSinkConfig { options: unreachable, ..config("s3://bucket/p") }).unwrap();
        let err = sink.deliver(&[event("a", "k")]).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }
}
