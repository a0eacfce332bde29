//! `eventyard tap PATTERN --out FILE`: records live events into a fixture file that
//! `plugin test --event FILE` and `plugin test --golden DIR` replay. A NATS client of the router's
//! gateway (or of any NATS server), subscribed as the user it is given, so it sees exactly what
//! that user may see (a system-account user sees `$SYS` subjects). Never publishes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::Failure;
use crate::broker::Pattern;
use crate::codec::nats::{self as binding, header_block};
use crate::event::EventJson;

#[derive(Debug, Args)]
pub(crate) struct TapArgs {
    /// Subject pattern to record (NATS `*` and `>`).
    pattern: String,
    /// The fixture file written: one event per line, as JSON.
    #[arg(long)]
    out: PathBuf,
    /// The router's NATS gateway (or another NATS server).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    server: String,
    /// Token to authenticate with.
    #[arg(long)]
    token: Option<String>,
    /// User to authenticate as (with --password); a system-account user may tap `$SYS.>`.
    #[arg(long, requires = "password")]
    user: Option<String>,
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// Stop after this many events (default: until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
}

pub(crate) async fn run(args: TapArgs) -> Result<(), Failure> {
    if let Err(err) = Pattern::new(args.pattern.clone()) {
        return Err(Failure::input(format!("`{}` is not a subject pattern: {err}", args.pattern)));
    }
    let mut options = async_nats::ConnectOptions::new().name("eventyard tap");
    if let Some(token) = &args.token {
        options = options.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&args.user, &args.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    let client = options
        .connect(args.server.as_str())
        .await
        .map_err(|err| Failure::input(format!("cannot connect to {}: {err}", args.server)))?;
    let mut subscription = client
        .subscribe(args.pattern.clone())
        .await
        .map_err(|err| Failure::input(format!("cannot subscribe to {}: {err}", args.pattern)))?;
    // A round trip: once it returns, the subscription is in place and nothing published after is missed.
    client.flush().await.map_err(|err| Failure::input(format!("{}: {err}", args.server)))?;
    let mut out = create(&args.out).await?;
    eprintln!("tap: recording {} from {} into {}", args.pattern, args.server, args.out.display());

    let deadline = args.seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut recorded = 0u64;
    while args.count.is_none_or(|count| recorded < count) {
        let next = async {
            match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, subscription.next()).await.ok().flatten(),
                None => subscription.next().await,
            }
        };
        let message = tokio::select! {
            message = next => message,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(message) = message else { break };
        let headers = message.headers.as_ref().map(header_block);
        let subject = message.subject.to_string();
        let events = match binding::decode(subject.clone(), None, headers, message.payload, 0) {
            Ok(events) => events,
            Err(err) => {
                eprintln!("tap: skipped a message on {subject}: {err}");
                continue;
            }
        };
        for event in &events {
            let mut line = serde_json::to_vec(&EventJson::from_event(event)).map_err(Failure::plugin)?;
            line.push(b'\n');
            out.write_all(&line).await.map_err(|err| write_error(&args.out, err))?;
            recorded += 1;
        }
        out.flush().await.map_err(|err| write_error(&args.out, err))?;
    }
    eprintln!("tap: recorded {recorded} event(s)");
    Ok(())
}

async fn create(path: &Path) -> Result<tokio::fs::File, Failure> {
    tokio::fs::File::create(path).await.map_err(|err| write_error(path, err))
}

fn write_error(path: &Path, err: std::io::Error) -> Failure {
    Failure::input(format!("cannot write {}: {err}", path.display()))
}
