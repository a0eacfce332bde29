//! `servicelog-sink`: posts each event as an OCM Service Log record to
//! `/api/service_logs/v1/cluster_logs` (seed 004), as the CCX notification service does.
//!
//! The record is built from the event's JSON data: every top-level field the ServiceLog schema
//! names is copied (others are left out), then `service_name` and `username` come from config when
//! the data has none, `internal_only` from config (default `false`, as the CCX notification service
//! sends it), `timestamp` from the event's time, and `event_stream_id` from its id. A
//! string field named by `link_field` (default `link`) is appended to the markdown description as
//! a link. The severity is expected already mapped (route the events through `severity-map` first).
//!
//! Each record is checked against `schema/cluster-log.schema.json` before it is sent; one that
//! breaks it is not sent and fails with every reason (the router dead-letters it). Then it is
//! POSTed as JSON with `Authorization: Bearer <token>` when `token` is set: a 2xx answer delivers
//! it; 408, 429, 5xx and transport errors are retryable (the router retries with backoff, and the
//! rest of the batch waits for that retry); other answers are permanent, with the service's reply.
//!
//! Config: `url` (required), `token`, `service_name`, `username`, `internal_only` (default false),
//! `link_field`, `timeout_ms` (default 10000). Needs `capabilities.http` to list the URL's host, and a `limits.timeout_ms`
//! above a handler's default 500 ms, since a delivery waits for the service (the examples use 30000).

mod schema;

use std::time::Duration;

use eventyard_sdk::http::{self, Url};
use eventyard_sdk::{Config, DeliveryError, Error, Event, EventFailure, Sink};
use serde_json::{Map, Value};

use schema::Schema;

/// The config keys this plugin reads.
const KEYS: [&str; 7] = ["url", "token", "service_name", "username", "internal_only", "link_field", "timeout_ms"];
/// The ServiceLog record schema (JSON Schema), from the seed's record structure.
const SCHEMA: &str = include_str!("../schema/cluster-log.schema.json");

struct ServiceLogSink {
    url: Url,
    authorization: Option<String>,
    service_name: Option<String>,
    username: Option<String>,
    internal_only: bool,
    link_field: String,
    timeout: Duration,
    schema: Schema,
    /// The schema's field names.
    fields: Vec<String>,
}

impl ServiceLogSink {
    /// The record for `event`, or why there is none.
    fn record(&self, event: &Event) -> Result<Value, String> {
        let data: Map<String, Value> = match serde_json::from_slice(&event.data) {
            Ok(Value::Object(data)) => data,
            Ok(_) => return Err("data is not a JSON object".into()),
            Err(err) => return Err(format!("data is not JSON: {err}")),
        };
        let mut record: Map<String, Value> =
            data.iter().filter(|(name, _)| self.fields.contains(name)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut default = |name: &str, value: Option<&String>| {
            if let Some(value) = value {
                record.entry(name).or_insert_with(|| Value::String(value.clone()));
            }
        };
        default("service_name", self.service_name.as_ref());
        default("username", self.username.as_ref());
        default("timestamp", event.context.time.as_ref());
        default("event_stream_id", Some(&event.context.id));
        record.entry("internal_only").or_insert(Value::Bool(self.internal_only));
        if let (Some(Value::String(link)), Some(Value::String(description))) =
            (data.get(&self.link_field), record.get_mut("description"))
        {
            description.push_str(&format!("\n\n[More about this recommendation]({link})"));
        }
        let record = Value::Object(record);
        let errors = self.schema.errors(&record);
        if !errors.is_empty() {
            return Err(format!("not a valid ServiceLog record: {}", errors.join("; ")));
        }
        Ok(record)
    }

    /// Sends one record.
    fn post(&self, record: &Value) -> Result<(), (String, bool)> {
        let body = record.to_string().into_bytes();
        let mut headers = vec![("content-type", "application/json"), ("accept", "application/json")];
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization));
        }
        let response = http::post(&self.url, &headers, &body, self.timeout).map_err(|err| (err.to_string(), true))?;
        if response.is_success() {
            return Ok(());
        }
        let reply = String::from_utf8_lossy(&response.body);
        let reply: String = reply.chars().take(300).collect();
        Err((format!("{} answered {}: {reply}", self.url.authority, response.status), response.is_retryable()))
    }
}

impl Sink for ServiceLogSink {
    fn init(config: Config) -> Result<Self, Error> {
        config.deny_unknown(&KEYS)?;
        let url = Url::parse(config.require("url")?).map_err(|err| Error::permanent(format!("config: `url` {err}")))?;
        let schema = Schema::parse(SCHEMA).map_err(Error::permanent)?;
        let fields = schema.properties();
        let timeout_ms: u64 = config.json("timeout_ms")?.unwrap_or(10_000);
        if timeout_ms == 0 {
            return Err(Error::permanent("config: `timeout_ms` must be above 0"));
        }
        Ok(ServiceLogSink {
            url,
            authorization: config.get("token").map(|token| format!("Bearer {token}")),
            service_name: config.get("service_name").map(str::to_owned),
            username: config.get("username").map(str::to_owned),
            internal_only: config.json("internal_only")?.unwrap_or(false),
            link_field: config.get("link_field").unwrap_or("link").to_owned(),
            timeout: Duration::from_millis(timeout_ms),
            schema,
            fields,
        })
    }

    fn deliver(&mut self, batch: Vec<Event>) -> Result<(), DeliveryError> {
        let mut failed = Vec::new();
        let mut retry_rest: Option<String> = None;
        for (index, event) in batch.iter().enumerate() {
            let index = index as u32;
            let id = &event.context.id;
            if let Some(reason) = &retry_rest {
                failed.push(EventFailure { index, message: reason.clone(), retryable: true });
                continue;
            }
            let outcome = self.record(event).map_err(|reason| (reason, false)).and_then(|record| self.post(&record));
            if let Err((reason, retryable)) = outcome {
                let message = format!("event \"{id}\": {reason}");
                if retryable {
                    // The service is struggling: the rest of the batch waits for the retry.
                    retry_rest = Some(format!("not sent: an earlier event of the batch failed: {reason}"));
                }
                failed.push(EventFailure { index, message, retryable });
            }
        }
        if failed.is_empty() { Ok(()) } else { Err(DeliveryError::Partial(failed)) }
    }
}

eventyard_sdk::export_sink!(ServiceLogSink);

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> ServiceLogSink {
        let config = [
            ("url", "http://127.0.0.1:8000/api/service_logs/v1/cluster_logs"),
            ("service_name", "CCX Notification Service"),
            ("token", "t"),
        ];
        ServiceLogSink::init(Config::new(config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
            .expect("config is valid")
    }

    fn event(data: Value) -> Event {
        let mut event = Event::from_parts("ccx.report", "r-1", "/ccx", "com.redhat.ccx.report", data.to_string());
        event.context.time = Some("2022-07-12T07:08:09Z".into());
        event
    }

    #[test]
    fn a_report_becomes_a_record_with_defaults_and_a_markdown_link() {
        let report = serde_json::json!({
            "cluster_uuid": "d484b150-3106-4d6a-96b4-e03c327a2f66", "summary": "Cluster upgrade blocked",
            "description": "A **Machine Config** prevents the upgrade.", "severity": "Major",
            "link": "https://console.redhat.com/openshift/insights/advisor/recommendations/x", "total_risk": 3
        });
        let event = event(report);
        let record = sink().record(&event).expect("a valid record");
        assert_eq!(record["service_name"], "CCX Notification Service");
        assert_eq!(record["timestamp"], "2022-07-12T07:08:09Z");
        assert_eq!(record["event_stream_id"], event.context.id.as_str());
        assert_eq!(record["internal_only"], false, "sent, false unless the data or config says otherwise");
        assert!(
            record["description"]
                .as_str()
                .unwrap()
                .ends_with("(https://console.redhat.com/openshift/insights/advisor/recommendations/x)")
        );
        assert!(record.get("total_risk").is_none() && record.get("link").is_none(), "only schema fields: {record}");
    }

    #[test]
    fn an_invalid_record_is_refused_with_every_reason() {
        let err = sink().record(&event(serde_json::json!({"summary": "s", "severity": "Moderate"}))).unwrap_err();
        assert!(err.contains("/severity: \"Moderate\" is not one of"), "{err}");
        assert!(err.contains("/cluster_uuid: is required") && err.contains("/description: is required"), "{err}");
        assert!(sink().record(&event(serde_json::json!([1]))).unwrap_err().contains("not a JSON object"));
    }
}
