//! A real HTTP destination for end-to-end tests: an axum server on `127.0.0.1:0` that records
//! every request it gets and answers from a script (a list of statuses, then a default), with an
//! optional delay. Dropping it stops the server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::task::JoinSet;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

struct Script {
    answers: Mutex<Vec<StatusCode>>,
    default: StatusCode,
    delay: Duration,
    received: Mutex<Vec<Received>>,
}

/// The server; its URL for path `/events` is [`HttpDestination::url`].
pub struct HttpDestination {
    pub addr: SocketAddr,
    script: Arc<Script>,
    _tasks: JoinSet<()>,
}

impl HttpDestination {
    /// Answers `answers` in order, then `default` to every later request, after `delay` each.
    pub async fn start(answers: Vec<StatusCode>, default: StatusCode, delay: Duration) -> HttpDestination {
        HttpDestination::start_on(0, answers, default, delay).await
    }

    /// As [`start`](Self::start), on `port` of 127.0.0.1 (a sink may already be failing to reach it).
    pub async fn start_on(
        port: u16,
        answers: Vec<StatusCode>,
        default: StatusCode,
        delay: Duration,
    ) -> HttpDestination {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("destination binds");
        let addr = listener.local_addr().expect("destination has an address");
        let script = Arc::new(Script {
            answers: Mutex::new(answers.into_iter().rev().collect()),
            default,
            delay,
            received: Mutex::new(Vec::new()),
        });
        // Takes a batch of any size, as the destinations sinks post to do.
        let app = Router::new()
            .route("/{*path}", post(answer))
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(script.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn(async move { axum::serve(listener, app).await.expect("destination serves") });
        HttpDestination { addr, script, _tasks: tasks }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.received.lock().expect("never poisoned").clone()
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    script.received.lock().expect("never poisoned").push(Received { path: uri.path().to_owned(), headers, body });
    // A zero sleep still waits for the timer's next millisecond tick.
    if !script.delay.is_zero() {
        tokio::time::sleep(script.delay).await;
    }
    script.answers.lock().expect("never poisoned").pop().unwrap_or(script.default)
}
