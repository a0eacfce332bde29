//! HTTP ingest: `POST /v1/events/{subject}` takes CloudEvents (structured, batched, binary) or any
//! other body as raw data, and answers 202 only once every event is on every queue it belongs to.
//! Also `GET /healthz`, `/readyz` and `/metrics`, and the admin endpoints `POST /v1/admin/reload`
//! and `GET /v1/admin/plugins`, answered through the [`Admin`] trait. Status codes are decided here
//! and nowhere else: 400 (bad event, naming the field), 401/403 (auth), 413 (over `max_body`), 429
//! or 503 with `Retry-After` (a queue is full, or the router is draining). Never runs handlers or
//! buffers events itself: it publishes to the broker and waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::cloudevents;
use crate::auth::{AuthPolicy, AuthRequest, Decision, Protocol};
use crate::broker::{Broker, Pattern, PublishError, Refusal};
use crate::slot::Slot;

/// Who may publish over HTTP.
#[derive(Clone)]
pub enum HttpAuth {
    /// Anyone.
    Open,
    /// A bearer token from this list.
    Tokens(Arc<[String]>),
    /// Whatever this auth policy decides; its grant's publish permissions apply per subject.
    Policy(Arc<dyn AuthPolicy>),
}

/// What the ingest handlers share.
#[derive(Clone)]
pub struct IngestState {
    pub broker: Arc<dyn Broker>,
    /// Who may publish; a config reload replaces it.
    pub auth: Arc<Slot<HttpAuth>>,
    /// Largest request body (413 beyond it); a config reload changes it.
    pub max_body: Arc<AtomicUsize>,
    /// False while starting and while draining: `/readyz` says 503 and publishes get 503.
    pub ready: Arc<AtomicBool>,
    pub admin: Arc<dyn Admin>,
}

/// What the admin and metrics endpoints show and do.
#[async_trait::async_trait]
pub trait Admin: Send + Sync {
    /// `/metrics`, in the Prometheus text format.
    fn metrics(&self) -> String;
    /// `GET /v1/admin/plugins`: the loaded plugins.
    fn plugins(&self) -> serde_json::Value;
    /// `POST /v1/admin/reload`: reloads and returns the reports.
    async fn reload(&self) -> Vec<serde_json::Value>;
}

/// Subject a caller must be allowed to publish on to list the plugins.
pub const PLUGINS_SUBJECT: &str = "$SYS.EVENTYARD.PLUGINS";

/// The ingest router.
pub fn app(state: IngestState) -> Router {
    Router::new()
        .route("/v1/events/{subject}", post(publish))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/admin/plugins", get(plugins))
        // Bodies are bounded by `max_body` as they are read, so the limit can change live.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn readyz(State(state): State<IngestState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<IngestState>) -> Response {
    let body = state.admin.metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Reloads the config and plugins. Allowed to whoever may publish on `$SYS.EVENTYARD.RELOAD`.
async fn reload(
    State(state): State<IngestState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = authorize(&state, &headers, remote, crate::reload::RELOAD_SUBJECT).await {
        return denied;
    }
    (StatusCode::OK, axum::Json(json!({ "reports": state.admin.reload().await }))).into_response()
}

/// Lists the loaded plugins. Allowed to whoever may publish on [`PLUGINS_SUBJECT`].
async fn plugins(
    State(state): State<IngestState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = authorize(&state, &headers, remote, PLUGINS_SUBJECT).await {
        return denied;
    }
    (StatusCode::OK, axum::Json(state.admin.plugins())).into_response()
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl Into<String>, field: Option<String>) -> Response {
    let mut body = json!({ "error": message.into() });
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (status, axum::Json(body)).into_response()
}

fn retry_after(status: StatusCode, message: String, seconds: u64, accepted: usize) -> Response {
    let mut response = (status, axum::Json(json!({ "error": message, "accepted": accepted }))).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// `Authorization: Bearer <token>`, if given.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Checks the caller may publish on `subject`; the error is the answer to send.
async fn authorize(
    state: &IngestState,
    headers: &HeaderMap,
    remote: SocketAddr,
    subject: &str,
) -> Result<(), Response> {
    let (_, auth) = state.auth.current();
    match auth.as_ref() {
        HttpAuth::Open => Ok(()),
        HttpAuth::Tokens(tokens) => match bearer(headers) {
            None => Err(error(StatusCode::UNAUTHORIZED, "a bearer token is required", None)),
            Some(given) if tokens.iter().any(|t| crate::auth::constant_time_eq(t.as_bytes(), given.as_bytes())) => {
                Ok(())
            }
            Some(_) => Err(error(StatusCode::FORBIDDEN, "token not accepted", None)),
        },
        HttpAuth::Policy(policy) => {
            let request = AuthRequest {
                protocol: Protocol::Http,
                client_name: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
                user: None,
                token: bearer(headers).map(str::to_owned),
                password: None,
                tls_subject: None,
                tls_sans: Vec::new(),
                remote_addr: remote.to_string(),
            };
            match policy.authorize(&request).await {
                Decision::Deny(reason) if request.token.is_none() => {
                    tracing::debug!(%remote, reason, "http publish denied");
                    Err(error(StatusCode::UNAUTHORIZED, "credentials are required", None))
                }
                Decision::Deny(reason) => {
                    tracing::debug!(%remote, reason, "http publish denied");
                    Err(error(StatusCode::FORBIDDEN, "not allowed", None))
                }
                Decision::Allow(grant) => {
                    let matches = |patterns: &[String]| {
                        patterns.iter().any(|p| Pattern::new(p.as_str()).is_ok_and(|p| p.matches(subject)))
                    };
                    if matches(&grant.publish.allow) && !matches(&grant.publish.deny) {
                        Ok(())
                    } else {
                        Err(error(StatusCode::FORBIDDEN, format!("not allowed to publish to \"{subject}\""), None))
                    }
                }
            }
        }
    }
}

async fn publish(
    State(state): State<IngestState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return retry_after(StatusCode::SERVICE_UNAVAILABLE, "the router is not accepting events".into(), 1, 0);
    }
    if let Err(denied) = authorize(&state, &headers, remote, &subject).await {
        return denied;
    }
    let limit = state.max_body.load(Ordering::Relaxed);
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(err) => {
            return if err.into_inner().is::<http_body_util::LengthLimitError>() {
                error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {limit} bytes"), None)
            } else {
                error(StatusCode::BAD_REQUEST, "the body could not be read", None)
            };
        }
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let mut ce_headers = Vec::new();
    for (name, value) in headers.iter().filter(|(name, _)| name.as_str().starts_with("ce-")) {
        let Ok(value) = value.to_str() else {
            return error(StatusCode::BAD_REQUEST, format!("header {name} is not visible ASCII"), None);
        };
        ce_headers.push((name.as_str().to_owned(), value.to_owned()));
    }
    let events = match cloudevents::decode(&subject, content_type, &ce_headers, body, SystemTime::now()) {
        Ok(events) => events,
        Err(err @ cloudevents::DecodeError::UnsupportedFormat { .. }) => {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, err.to_string(), None);
        }
        Err(err @ cloudevents::DecodeError::HostClock { .. }) => {
            tracing::error!(error = %err, "cannot timestamp a raw event");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "the server clock is out of range", None);
        }
        Err(err) => return error(StatusCode::BAD_REQUEST, err.to_string(), err.field()),
    };
    let count = events.len();
    if let Err((accepted, refused)) = state.broker.publish_all(events).await {
        match refused {
            PublishError::Refused(Refusal::Full { what, retry_after: wait }) => {
                let message = format!("{what}; {accepted} of {count} event(s) accepted");
                return retry_after(StatusCode::TOO_MANY_REQUESTS, message, wait.as_secs(), accepted);
            }
            PublishError::Refused(refusal @ Refusal::Unavailable { .. }) => {
                let message = format!("{refusal}; {accepted} of {count} event(s) accepted");
                return retry_after(StatusCode::SERVICE_UNAVAILABLE, message, 1, accepted);
            }
            PublishError::Refused(Refusal::Closed(what)) => {
                let message = format!("{what}; {accepted} of {count} event(s) accepted");
                return retry_after(StatusCode::SERVICE_UNAVAILABLE, message, 1, accepted);
            }
        }
    }
    (StatusCode::ACCEPTED, axum::Json(json!({ "accepted": count }))).into_response()
}
