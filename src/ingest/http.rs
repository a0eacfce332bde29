//! HTTP ingest: `POST /v1/events/{subject}` takes CloudEvents (structured, batched, binary) or any
//! other body as raw data, and answers 202 only once every event is on every queue it belongs to.
//! A publisher's credential gives it an account (a token: the global one; an auth policy: the
//! account it grants) and publish permissions, as a NATS user has; `$A` and `$SYS` subjects are
//! refused, and other `$` subjects need an allow entry that names them. Also `GET /healthz`,
//! `/readyz` and `/metrics`, and the admin endpoints (`POST /v1/admin/reload`,
//! `GET /v1/admin/plugins`, `GET /v1/admin/snapshot`, `GET /v1/admin/dead-letters[/{seq}]`,
//! `POST /v1/admin/dead-letters/replay`, and `GET /v1/admin/tap`, a live sample of a subject as
//! Server-Sent Events), answered through the [`Admin`] trait to `[admin]` credentials only; and
//! the operator console's files (`/console`), while the admin API is on.
//! Status codes are decided here and nowhere else: 400 (bad event, naming the field), 401/403
//! (auth), 408 (a body too slow), 413 (over `max_body`), 429 or 503 with `Retry-After` (a queue is
//! full, or the router is draining). Never runs handlers or buffers events itself: it publishes to
//! the broker and waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::auth::{AuthPolicy, AuthRequest, Decision, Protocol};
use crate::broker::account::{Namespace, is_account_name};
use crate::broker::{Broker, Pattern, PublishError, Refusal};
use crate::codec::{self, RawAttributes};
use crate::dead_letter::{ReplayRequest, Selection};
use crate::event::EventJson;
use crate::permission::Rule;
use crate::slot::Slot;
use crate::tap::Tap;
use crate::tls::PeerCertificate;

/// Who may publish over HTTP (`[http.auth]`), and who may call the admin endpoints (`[admin]`).
#[derive(Clone)]
pub struct HttpAuth {
    pub publish: Credentials,
    pub admin: AdminAuth,
}

/// What a publisher must show.
#[derive(Clone)]
pub enum Credentials {
    /// Nothing: anyone publishes, in the global account.
    Open,
    /// A bearer token from this list: the global account.
    Tokens(Arc<[String]>),
    /// Whatever this auth policy decides: its grant's account and publish permissions.
    Policy(Arc<dyn AuthPolicy>),
}

/// What an administrator must show. Neither tokens nor a policy: the admin endpoints are off.
#[derive(Clone)]
pub struct AdminAuth {
    pub tokens: Arc<[String]>,
    /// A caller this policy grants `account` is an administrator.
    pub policy: Option<Arc<dyn AuthPolicy>>,
    pub account: String,
    /// `/metrics` needs the admin credential too.
    pub protect_metrics: bool,
}

impl AdminAuth {
    /// False when neither tokens nor a policy are configured: the admin API and the console are off.
    pub fn is_on(&self) -> bool {
        !self.tokens.is_empty() || self.policy.is_some()
    }
}

/// Who is calling: the peer's address and, over TLS with client certificates, its certificate.
pub struct Caller {
    remote: SocketAddr,
    certificate: Option<Arc<PeerCertificate>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let remote = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |ConnectInfo(remote)| *remote);
        let certificate = parts.extensions.get::<Arc<PeerCertificate>>().cloned();
        Ok(Caller { remote, certificate })
    }
}

/// An HTTP publisher once authenticated: the account it publishes into and what it may publish.
struct Publisher {
    namespace: Namespace,
    publish: Rule,
}

/// What the ingest handlers share.
#[derive(Clone)]
pub struct IngestState {
    pub broker: Arc<dyn Broker>,
    /// `[[http.raw]]`: where raw requests' attributes are, the first rule whose subjects match.
    pub raw: Arc<Vec<RawRule>>,
    /// Who may publish; a config reload replaces it.
    pub auth: Arc<Slot<HttpAuth>>,
    /// Largest request body (413 beyond it); a config reload changes it.
    pub max_body: Arc<AtomicUsize>,
    /// False while starting and while draining: `/readyz` says 503 and publishes get 503.
    pub ready: Arc<AtomicBool>,
    /// How long a request body may take to arrive (408 after).
    pub body_timeout: Duration,
    pub admin: Arc<dyn Admin>,
}

/// One `[[http.raw]]`: raw requests to `subjects` get their attributes from their content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRule {
    pub subjects: Pattern,
    pub attributes: RawAttributes,
}

/// What the admin and metrics endpoints show and do.
#[async_trait::async_trait]
pub trait Admin: Send + Sync {
    /// `/metrics`, in the Prometheus text format.
    fn metrics(&self) -> String;
    /// `GET /v1/admin/plugins`: the loaded plugins.
    fn plugins(&self) -> serde_json::Value;
    /// `GET /v1/admin/snapshot`: every figure of the router now.
    fn snapshot(&self) -> serde_json::Value;
    /// `GET /v1/admin/dead-letters`: the newest dead letters `selection` picks, at most `limit`;
    /// none when the store is off.
    fn dead_letters(&self, selection: &Selection, limit: usize) -> Option<serde_json::Value>;
    /// `GET /v1/admin/dead-letters/{seq}`: one dead letter, with its event.
    fn dead_letter(&self, seq: u64) -> Option<serde_json::Value>;
    /// `POST /v1/admin/dead-letters/replay`: sends dead letters on again; the error is the
    /// request's fault.
    async fn replay(&self, request: ReplayRequest) -> Result<serde_json::Value, String>;
    /// `POST /v1/admin/reload`: reloads and returns the reports.
    async fn reload(&self) -> Vec<serde_json::Value>;
    /// `GET /v1/admin/plugins/{name}/rollout`: the candidate running beside plugin `name`, its
    /// figures and the latest differences its shadow found.
    fn rollout(&self, plugin: &str) -> Result<serde_json::Value, AdminRefusal>;
    /// `POST /v1/admin/plugins/{name}/promote` (`promote`) or `.../abort`: the rollout's report.
    async fn decide_rollout(&self, plugin: &str, promote: bool) -> Result<serde_json::Value, AdminRefusal>;
}

/// Why an admin request about a named thing was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminRefusal {
    /// There is no such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// It is not in a state the request applies to (409).
    #[error("{0}")]
    Conflict(String),
}

impl IntoResponse for AdminRefusal {
    fn into_response(self) -> Response {
        let status = match self {
            AdminRefusal::NotFound(_) => StatusCode::NOT_FOUND,
            AdminRefusal::Conflict(_) => StatusCode::CONFLICT,
        };
        error(status, self.to_string(), None)
    }
}

/// The ingest router.
pub fn app(state: IngestState) -> Router {
    Router::new()
        .route("/v1/events/{subject}", post(publish))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/admin/plugins", get(plugins))
        .route("/v1/admin/plugins/{name}/rollout", get(rollout))
        .route("/v1/admin/plugins/{name}/promote", post(promote))
        .route("/v1/admin/plugins/{name}/abort", post(abort))
        .route("/v1/admin/snapshot", get(snapshot))
        .route("/v1/admin/dead-letters", get(dead_letters))
        .route("/v1/admin/dead-letters/{seq}", get(dead_letter))
        .route("/v1/admin/dead-letters/replay", post(replay))
        .route("/v1/admin/tap", get(tap))
        .route("/console", get(console))
        .route("/console/{*file}", get(console))
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

async fn metrics(State(state): State<IngestState>, caller: Caller, headers: HeaderMap) -> Response {
    let (_, auth) = state.auth.current();
    if auth.admin.protect_metrics
        && let Err(denied) = authorize_admin(&auth.admin, &headers, &caller).await
    {
        return denied;
    }
    let body = state.admin.metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Reloads the config and plugins: administrators only.
async fn reload(State(state): State<IngestState>, _: Administrator) -> Response {
    (StatusCode::OK, axum::Json(json!({ "reports": state.admin.reload().await }))).into_response()
}

/// Lists the loaded plugins: administrators only.
async fn plugins(State(state): State<IngestState>, _: Administrator) -> Response {
    (StatusCode::OK, axum::Json(state.admin.plugins())).into_response()
}

/// Every figure of the router now: administrators only.
async fn snapshot(State(state): State<IngestState>, _: Administrator) -> Response {
    (StatusCode::OK, axum::Json(state.admin.snapshot())).into_response()
}

/// The console's files, while the admin API is on (404 otherwise: there is nothing to sign in to).
async fn console(State(state): State<IngestState>, file: Option<Path<String>>) -> Response {
    let (_, auth) = state.auth.current();
    if !auth.admin.is_on() {
        return error(StatusCode::NOT_FOUND, "the console is off: configure [admin] tokens or policy", None);
    }
    let file = file.map(|Path(file)| format!("/{file}")).unwrap_or_default();
    super::console::asset(&file)
}

/// `?subject=` of a tap.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TapQuery {
    subject: String,
}

/// A live sample of the events on a subject pattern, as Server-Sent Events (`data:` the event's
/// JSON, with how many were skipped): administrators only. Ends its subscription when the watcher
/// goes.
async fn tap(
    State(state): State<IngestState>,
    _: Administrator,
    query: Result<Query<TapQuery>, QueryRejection>,
) -> Response {
    let subject = match query {
        Ok(Query(query)) => query.subject,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text(), None),
    };
    let pattern = match Pattern::new(subject.clone()) {
        Ok(pattern) => pattern,
        Err(err) => {
            return error(StatusCode::BAD_REQUEST, format!("`{subject}` is not a subject pattern: {err}"), None);
        }
    };
    let tap = Tap::start(state.broker.clone(), pattern);
    // A reload that changes who is an administrator ends the stream: the watcher signs in again.
    let (generation, admins) = (state.auth.current().0, state.auth.clone());
    let events = futures_util::stream::unfold(tap, move |mut tap| {
        let admins = admins.clone();
        async move {
            let event = loop {
                tokio::select! {
                    event = tap.next() => break event?,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if admins.current().0 != generation {
                            return None;
                        }
                    }
                }
            };
            let message = json!({
                "event": EventJson::from_event(&event), "skipped": tap.skipped(), "per_second": Tap::PER_SECOND,
            });
            Some((Ok::<_, std::convert::Infallible>(SseEvent::default().data(message.to_string())), tap))
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// `?from=&reason=&account=&limit=` of a dead-letter listing.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterQuery {
    from: Option<String>,
    reason: Option<String>,
    account: Option<String>,
    limit: Option<usize>,
}

/// Lists dead letters: administrators only.
async fn dead_letters(
    State(state): State<IngestState>,
    _: Administrator,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text(), None),
    };
    let selection = Selection { from: query.from, reason: query.reason, account: query.account };
    match state.admin.dead_letters(&selection, query.limit.unwrap_or(100)) {
        Some(listing) => (StatusCode::OK, axum::Json(listing)).into_response(),
        None => error(StatusCode::NOT_FOUND, crate::dead_letter::STORE_OFF, None),
    }
}

/// Shows one dead letter: administrators only.
async fn dead_letter(State(state): State<IngestState>, _: Administrator, Path(seq): Path<String>) -> Response {
    let Ok(seq) = seq.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, format!("`{seq}` is not a dead letter's number"), None);
    };
    match state.admin.dead_letter(seq) {
        Some(letter) => (StatusCode::OK, axum::Json(letter)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no dead letter {seq} is kept"), None),
    }
}

/// A plugin's rollout: administrators only.
async fn rollout(State(state): State<IngestState>, _: Administrator, Path(name): Path<String>) -> Response {
    match state.admin.rollout(&name) {
        Ok(rollout) => (StatusCode::OK, axum::Json(rollout)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Promotes a plugin's candidate: administrators only.
async fn promote(State(state): State<IngestState>, _: Administrator, Path(name): Path<String>) -> Response {
    decide_rollout(&state, &name, true).await
}

/// Rolls a plugin's candidate back: administrators only.
async fn abort(State(state): State<IngestState>, _: Administrator, Path(name): Path<String>) -> Response {
    decide_rollout(&state, &name, false).await
}

async fn decide_rollout(state: &IngestState, name: &str, promote: bool) -> Response {
    match state.admin.decide_rollout(name, promote).await {
        Ok(report) => (StatusCode::OK, axum::Json(report)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Replays dead letters: administrators only.
async fn replay(State(state): State<IngestState>, _: Administrator, body: Body) -> Response {
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(body) => body,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "a replay request is at most 1 MiB", None),
    };
    let request: ReplayRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("not a replay request: {err}"), None),
    };
    match state.admin.replay(request).await {
        Ok(answer) => (StatusCode::OK, axum::Json(answer)).into_response(),
        Err(why) => error(StatusCode::BAD_REQUEST, why, None),
    }
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

/// The auth request an HTTP caller makes.
fn auth_request(headers: &HeaderMap, caller: &Caller) -> AuthRequest {
    AuthRequest {
        protocol: Protocol::Http,
        client_name: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        user: None,
        token: bearer(headers).map(str::to_owned),
        password: None,
        tls_subject: caller.certificate.as_ref().map(|certificate| certificate.subject.clone()),
        tls_sans: caller.certificate.as_ref().map(|certificate| certificate.sans.clone()).unwrap_or_default(),
        remote_addr: caller.remote.to_string(),
    }
}

/// True when `given` is one of `tokens`.
fn known_token(tokens: &[String], given: &str) -> bool {
    tokens.iter().any(|token| crate::auth::constant_time_eq(token.as_bytes(), given.as_bytes()))
}

/// Who the caller is as a publisher; the error is the answer to send (401 without credentials,
/// 403 with wrong ones).
async fn authenticate(auth: &Credentials, headers: &HeaderMap, caller: &Caller) -> Result<Publisher, Response> {
    let remote = caller.remote;
    let global = || Publisher { namespace: Namespace::global(), publish: Rule::default() };
    match auth {
        Credentials::Open => Ok(global()),
        Credentials::Tokens(tokens) => match bearer(headers) {
            None => Err(error(StatusCode::UNAUTHORIZED, "a bearer token is required", None)),
            Some(given) if known_token(tokens, given) => Ok(global()),
            Some(_) => Err(error(StatusCode::FORBIDDEN, "token not accepted", None)),
        },
        Credentials::Policy(policy) => {
            let request = auth_request(headers, caller);
            match policy.authorize(&request).await {
                Decision::Deny(reason) => {
                    tracing::debug!(%remote, reason, "http publish denied");
                    if request.token.is_none() {
                        Err(error(StatusCode::UNAUTHORIZED, "credentials are required", None))
                    } else {
                        Err(error(StatusCode::FORBIDDEN, "not allowed", None))
                    }
                }
                Decision::Allow(grant) => {
                    let publish = Rule::from_policy(&grant.publish);
                    let publish = match publish {
                        Ok(publish) if is_account_name(&grant.account) => publish,
                        unusable => {
                            let why = unusable.err().unwrap_or_else(|| format!("account `{}`", grant.account));
                            tracing::warn!(%remote, why, "the auth policy's grant is unusable");
                            return Err(error(StatusCode::FORBIDDEN, "not allowed", None));
                        }
                    };
                    // HTTP never publishes system events, whatever account it is granted.
                    Ok(Publisher { namespace: Namespace::new(&grant.account, false), publish })
                }
            }
        }
    }
}

/// Checks `publisher` may publish on `subject`: not a reserved subject, a `$` subject only where an
/// allow entry names it, and within its publish permissions. The error says why (a 403).
fn permit(publisher: &Publisher, subject: &str) -> Result<(), String> {
    if let Err(reserved) = publisher.namespace.check(subject) {
        return Err(format!("not allowed to publish to \"{subject}\": {reserved}"));
    }
    if subject.starts_with('$') && !publisher.publish.names_literally(subject) {
        return Err(format!("not allowed to publish to \"{subject}\": `$` subjects need a permission that names them"));
    }
    if !publisher.publish.permits_publish(subject) {
        return Err(format!("not allowed to publish to \"{subject}\""));
    }
    Ok(())
}

/// A caller who is an administrator: extracting it checks the `[admin]` credential, and the
/// rejection is the answer (401, 403).
struct Administrator;

impl FromRequestParts<IngestState> for Administrator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &IngestState) -> Result<Self, Response> {
        let Ok(caller) = Caller::from_request_parts(parts, state).await;
        let (_, auth) = state.auth.current();
        authorize_admin(&auth.admin, &parts.headers, &caller).await.map(|()| Administrator)
    }
}

/// Checks the caller is an administrator: a bearer token of `[admin] tokens`, or a caller the
/// `[admin]` policy grants its account. The error is the answer (403 when the API is off).
async fn authorize_admin(admin: &AdminAuth, headers: &HeaderMap, caller: &Caller) -> Result<(), Response> {
    if !admin.is_on() {
        return Err(error(StatusCode::FORBIDDEN, "the admin API is off: configure [admin] tokens or policy", None));
    }
    let Some(given) = bearer(headers) else {
        return Err(error(StatusCode::UNAUTHORIZED, "an admin bearer token is required", None));
    };
    if known_token(&admin.tokens, given) {
        return Ok(());
    }
    if let Some(policy) = &admin.policy
        && let Decision::Allow(grant) = policy.authorize(&auth_request(headers, caller)).await
        && grant.account == admin.account
    {
        return Ok(());
    }
    tracing::info!(remote = %caller.remote, "admin request refused");
    Err(error(StatusCode::FORBIDDEN, "not an administrator", None))
}

async fn publish(
    State(state): State<IngestState>,
    caller: Caller,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return retry_after(StatusCode::SERVICE_UNAVAILABLE, "the router is not accepting events".into(), 1, 0);
    }
    let (_, auth) = state.auth.current();
    let publisher = match authenticate(&auth.publish, &headers, &caller).await {
        Ok(publisher) => publisher,
        Err(denied) => return denied,
    };
    if let Err(why) = permit(&publisher, &subject) {
        return error(StatusCode::FORBIDDEN, why, None);
    }
    let limit = state.max_body.load(Ordering::Relaxed);
    let body = match tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(body)) => body,
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time", None),
        Ok(Err(err)) => {
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
    let rule = codec::is_raw(content_type, &ce_headers)
        .then(|| state.raw.iter().find(|rule| rule.subjects.matches(&subject)))
        .flatten();
    let subject = publisher.namespace.internal(subject);
    let decoded = codec::decode(&subject, content_type, &ce_headers, body, SystemTime::now());
    let mapped = decoded.and_then(|mut events| {
        if let (Some(rule), [event]) = (rule, &mut events[..]) {
            let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
            rule.attributes.apply(event, header)?;
        }
        Ok(events)
    });
    let events = match mapped {
        Ok(events) => events,
        Err(err @ codec::DecodeError::UnsupportedFormat { .. }) => {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, err.to_string(), None);
        }
        Err(err @ codec::DecodeError::HostClock { .. }) => {
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
            PublishError::Refused(refusal @ Refusal::TooLarge { .. }) => {
                let message = format!("{refusal}; {accepted} of {count} event(s) accepted");
                return error(StatusCode::PAYLOAD_TOO_LARGE, message, None);
            }
            PublishError::Refused(Refusal::Closed(what)) => {
                let message = format!("{what}; {accepted} of {count} event(s) accepted");
                return retry_after(StatusCode::SERVICE_UNAVAILABLE, message, 1, accepted);
            }
        }
    }
    (StatusCode::ACCEPTED, axum::Json(json!({ "accepted": count }))).into_response()
}
