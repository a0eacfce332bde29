//! Joining the cluster: connections from `[broker]`, the check that JetStream is there, and
//! [`ClusterError`], which says in the operator's terms what stands in the way (no server
//! reachable, credentials refused, JetStream off, a stream that exists with other settings).

use std::time::Duration;

use async_nats::jetstream;

use super::settings::BrokerSettings;

/// Why the router cannot work on the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no NATS server of {servers:?} is reachable: {reason}")]
    Unreachable { servers: Vec<String>, reason: String },
    #[error("the NATS cluster refused the credentials of [broker]: {reason}")]
    Credentials { reason: String },
    #[error("TLS to the NATS cluster failed: {reason}")]
    Tls { reason: String },
    #[error(
        "JetStream is not available on the NATS cluster ({reason}); cluster mode keeps routes in JetStream \
         streams: start nats-server with JetStream on (`-js`, or `jetstream {{}}` in its config), and enable it \
         for the account"
    )]
    NoJetStream { reason: String },
    #[error(
        "stream `{stream}` exists with settings Eventyard cannot use: {reason}; delete it or pick another `subject_prefix`"
    )]
    IncompatibleStream { stream: String, reason: String },
    #[error("JetStream refused to create stream `{stream}`: {reason}; `replicas` may not exceed the cluster's size")]
    StreamRefused { stream: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// The router's connections to the cluster.
pub struct Connections {
    /// Publishes, JetStream, and the plain subscriptions of local subscribers. It never gets its
    /// own publishes back (`no_echo`): local subscribers had them in-process already.
    pub main: async_nats::Client,
    /// Queue-group subscriptions, which are served from the cluster alone, own publishes included.
    pub queue_groups: async_nats::Client,
    pub jetstream: jetstream::Context,
}

/// Connects as `[broker]` says and checks that JetStream answers.
pub async fn connect(settings: &BrokerSettings) -> Result<Connections, ClusterError> {
    let main = client(settings, "eventyard", true).await?;
    check_jetstream(&main).await?;
    let queue_groups = client(settings, "eventyard queue groups", false).await?;
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .backpressure_on_inflight(true)
        .build(main.clone());
    Ok(Connections { main, queue_groups, jetstream })
}

async fn client(settings: &BrokerSettings, name: &str, no_echo: bool) -> Result<async_nats::Client, ClusterError> {
    let mut options = match &settings.credentials {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path).await.map_err(|err| {
            ClusterError::Credentials { reason: format!("reading the credentials file {}: {err}", path.display()) }
        })?,
        None => async_nats::ConnectOptions::new(),
    };
    options = options
        .name(name)
        .connection_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .max_reconnects(None)
        .event_callback(|event| async move { tracing::info!(%event, "NATS cluster connection") });
    if no_echo {
        options = options.no_echo();
    }
    if let Some(token) = &settings.token {
        options = options.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&settings.user, &settings.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(seed) = &settings.nkey {
        options = options.nkey(seed.clone());
    }
    if let Some(tls) = &settings.tls {
        options = tls.apply(options);
    }
    let servers: Vec<async_nats::ServerAddr> = settings.servers.iter().filter_map(|url| url.parse().ok()).collect();
    options.connect(servers).await.map_err(|err| {
        use async_nats::ConnectErrorKind as Kind;
        let reason = format!("{err}");
        match err.kind() {
            Kind::Authentication | Kind::AuthorizationViolation => ClusterError::Credentials { reason },
            Kind::Tls => ClusterError::Tls { reason },
            _ => ClusterError::Unreachable { servers: settings.servers.clone(), reason },
        }
    })
}

/// How long a cluster that is still electing its JetStream leader may keep the router waiting.
const JETSTREAM_WAIT: Duration = Duration::from_secs(30);

/// Asks `$JS.API.INFO` directly (async-nats 0.46's account query cannot read nats-server 2.9's
/// answer): no responders means JetStream is off, an error answer that the account lacks it. A
/// cluster that just started answers nothing, or "temporarily unavailable", until it has a leader.
async fn check_jetstream(client: &async_nats::Client) -> Result<(), ClusterError> {
    let deadline = tokio::time::Instant::now() + JETSTREAM_WAIT;
    loop {
        match ask_jetstream(client).await {
            Err(ClusterError::NoJetStream { reason })
                if reason.contains("temporarily") || reason.contains("no answer") =>
            {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ClusterError::NoJetStream { reason: format!("{reason}, for {JETSTREAM_WAIT:?}") });
                }
                tracing::info!(reason, "JetStream not ready yet, asking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            outcome => return outcome,
        }
    }
}

async fn ask_jetstream(client: &async_nats::Client) -> Result<(), ClusterError> {
    let answer = match tokio::time::timeout(Duration::from_secs(2), client.request("$JS.API.INFO", "".into())).await {
        Err(_) => return Err(ClusterError::NoJetStream { reason: "`$JS.API.INFO` got no answer".into() }),
        Ok(Err(err)) if err.kind() == async_nats::RequestErrorKind::TimedOut => {
            return Err(ClusterError::NoJetStream { reason: "`$JS.API.INFO` got no answer".into() });
        }
        Ok(Err(err)) if err.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(ClusterError::NoJetStream { reason: "nothing answers `$JS.API.INFO`".into() });
        }
        Ok(Err(err)) => return Err(ClusterError::Other(format!("asking for JetStream: {err}"))),
        Ok(Ok(answer)) => answer,
    };
    let info: serde_json::Value = serde_json::from_slice(&answer.payload)
        .map_err(|err| ClusterError::Other(format!("JetStream's account info is not JSON: {err}")))?;
    match info.get("error") {
        Some(error) => Err(ClusterError::NoJetStream {
            reason: error.get("description").and_then(|d| d.as_str()).unwrap_or("an error answer").to_owned(),
        }),
        None => Ok(()),
    }
}
