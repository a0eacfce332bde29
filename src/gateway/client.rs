//! One gateway client connection: INFO, CONNECT and auth, then its ops — publishes into the
//! broker, subscriptions as broker subscribers, PING/PONG — until it closes or breaks the
//! protocol (`-ERR`, then close). Everything it sends goes through one bounded outbound buffer
//! written by its own task: a client that cannot keep up is disconnected as a slow consumer, and
//! never makes a publisher wait or the server hold unbounded memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::auth::{Authenticator, GLOBAL_ACCOUNT, Identity};
use super::connections::{Connection, SubscriptionInfo, Traffic, Who};
use super::protocol::{self, ClientOp, Parser};
use super::{Listener, Shared};
use crate::auth::{AuthRequest, Protocol};
use crate::broker::account::Namespace;
use crate::broker::{Accepted, Pattern, PublishAck, PublishError, Refusal, Subscriber, SubscriptionId};
use crate::codec::nats::PlainMessage;
use crate::codec::{self, DecodeError};
use crate::dead_letter;
use crate::event::Event;
use crate::permission::{Permissions, Responses, Subscription};
use crate::tls::PeerCertificate;

/// How long a write to a client may block before the client counts as a slow consumer.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// The longest a slowed publisher waits before its events are offered again.
const SLOWED_RETRY: Duration = Duration::from_millis(250);

/// Malformed publishes are dead-lettered on `$DLQ.gateway`.
const DEAD_LETTER_NAME: &str = "gateway";

/// What a client asked for in CONNECT.
#[derive(Debug, Deserialize)]
struct ConnectOptions {
    // Keys a client leaves out keep nats-server's defaults: verbose and echo on.
    #[serde(default = "yes")]
    verbose: bool,
    #[serde(default = "yes")]
    echo: bool,
    #[serde(default)]
    headers: bool,
    #[serde(default)]
    no_responders: bool,
    auth_token: Option<String>,
    user: Option<String>,
    pass: Option<String>,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for ConnectOptions {
    /// Before CONNECT, as nats-server: verbose, echo, no headers.
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            echo: true,
            headers: false,
            no_responders: false,
            auth_token: None,
            user: None,
            pass: None,
            name: None,
            lang: None,
            version: None,
        }
    }
}

tokio::task_local! {
    /// The outbound buffers a client's publishes appended to while it works through one read.
    /// Their writers are woken once the read is done, so a subscriber gets one write per read of
    /// its publisher rather than one per message (nats-server's deferred flush).
    static TO_WAKE: RefCell<Vec<Arc<Outbound>>>;
}

/// Past this many distinct buffers in one read, a buffer's writer is woken at once.
const MOST_DEFERRED_WAKES: usize = 64;

/// Wakes the writers of the buffers [`TO_WAKE`] holds.
fn wake_deferred() {
    let _ = TO_WAKE.try_with(|deferred| {
        for outbound in deferred.borrow_mut().drain(..) {
            outbound.wake.notify_one();
        }
    });
}

/// Bytes waiting to be written to the client, bounded by `max_pending`.
struct Outbound {
    pending: Mutex<BytesMut>,
    wake: Notify,
    max_pending: usize,
    /// Cancelled when the connection is to close, by either side.
    close: CancellationToken,
    slow: AtomicBool,
    /// What the connection published and was sent (its `out` side is counted here).
    traffic: Arc<Traffic>,
}

impl Outbound {
    /// Appends what `write` writes. Past `max_pending` the client is a slow consumer: what is
    /// pending is dropped and the connection closes.
    fn send(self: &Arc<Self>, write: impl FnOnce(&mut BytesMut)) {
        let Ok(mut pending) = self.pending.lock() else { return };
        if self.close.is_cancelled() {
            return;
        }
        write(&mut pending);
        if pending.len() > self.max_pending {
            pending.clear();
            self.slow.store(true, Ordering::Release);
            self.close.cancel();
        }
        drop(pending);
        // Inside a gateway client's read: woken when the read is done.
        let deferred = TO_WAKE.try_with(|deferred| {
            let mut deferred = deferred.borrow_mut();
            if deferred.iter().any(|queued| Arc::ptr_eq(queued, self)) {
                return true;
            }
            let room = deferred.len() < MOST_DEFERRED_WAKES;
            if room {
                deferred.push(self.clone());
            }
            room
        });
        if deferred != Ok(true) {
            self.wake.notify_one();
        }
    }

    /// Sends `-ERR 'text'` and closes the connection once it is written.
    fn fail(self: &Arc<Self>, text: &str) {
        self.send(|out| protocol::write_err(out, text));
        self.close.cancel();
    }

    fn take(&self, spare: &mut BytesMut) {
        if let Ok(mut pending) = self.pending.lock() {
            std::mem::swap(&mut *pending, spare);
        }
    }

    /// Lets go of a large pending buffer that holds nothing.
    fn shrink_if_idle(&self) {
        if let Ok(mut pending) = self.pending.lock()
            && pending.is_empty()
            && pending.capacity() > 4 * MAX_READ
        {
            *pending = BytesMut::new();
        }
    }
}

/// The smallest and largest read from a client.
const MIN_READ: usize = 512;
const MAX_READ: usize = 64 << 10;

/// How much a connection reads at once. As nats-server does, it starts small, doubles while reads
/// fill it and halves while they use under a quarter of it, so an idle connection holds little and
/// a busy one reads in large chunks.
struct ReadSize(usize);

impl ReadSize {
    fn after(&mut self, read: usize) {
        if read >= self.0 {
            self.0 = (self.0 * 2).min(MAX_READ);
        } else if read < self.0 / 4 {
            self.0 = (self.0 / 2).max(MIN_READ);
        }
    }
}

/// Writes what is pending until the connection closes; a slow consumer gets its `-ERR` last.
async fn write_loop(mut writer: impl AsyncWrite + Unpin, outbound: Arc<Outbound>) {
    // Grows with what is pending, and is reused while the connection is busy (a buffer dropped
    // after every write comes back as fresh pages the kernel must zero); an idle connection holds
    // next to nothing.
    let mut batch = BytesMut::new();
    loop {
        outbound.take(&mut batch);
        if !batch.is_empty() {
            let written = tokio::select! {
                written = tokio::time::timeout(WRITE_DEADLINE, writer.write_all(&batch)) => written,
                _ = outbound.close.cancelled(), if outbound.slow.load(Ordering::Acquire) => break,
            };
            match written {
                Ok(Ok(())) => batch.clear(),
                Ok(Err(_)) => break,
                Err(_) => {
                    outbound.slow.store(true, Ordering::Release);
                    break;
                }
            }
            continue;
        }
        if outbound.close.is_cancelled() {
            break;
        }
        // Idle: what a burst grew goes back.
        if batch.capacity() > 4 * MAX_READ {
            batch = BytesMut::new();
        }
        outbound.shrink_if_idle();
        tokio::select! {
            _ = outbound.wake.notified() => {}
            _ = outbound.close.cancelled() => {}
        }
    }
    outbound.close.cancel();
    if outbound.slow.load(Ordering::Acquire) {
        let mut err = BytesMut::new();
        protocol::write_err(&mut err, "Slow Consumer");
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(&err)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
}

/// Reply subjects of requests a client received, which it may publish a response to
/// (`allow_responses`) whatever its publish permissions say.
struct ResponseGrants {
    limits: Responses,
    /// Reply subject → (responses left, until when).
    open: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Most replies one client holds open; past it, expired ones are swept and new ones wait for room.
const MOST_OPEN_REPLIES: usize = 4096;

impl ResponseGrants {
    /// What `permissions` allow of responses: `None` when they allow none beyond `publish`.
    fn of(permissions: &Permissions) -> Option<Arc<ResponseGrants>> {
        let limits = permissions.responses?;
        Some(Arc::new(ResponseGrants { limits, open: Mutex::new(HashMap::new()) }))
    }

    fn open(&self, reply: &str) {
        let Ok(mut open) = self.open.lock() else { return };
        let now = Instant::now();
        if open.len() >= MOST_OPEN_REPLIES {
            open.retain(|_, (_, until)| *until > now);
        }
        if open.len() < MOST_OPEN_REPLIES {
            open.insert(reply.to_owned(), (self.limits.max, now + self.limits.expires));
        }
    }

    /// Takes one response to `subject`; false when none is open.
    fn take(&self, subject: &str) -> bool {
        let Ok(mut open) = self.open.lock() else { return false };
        let Some((left, until)) = open.get_mut(subject) else { return false };
        let granted = *until > Instant::now() && *left > 0;
        *left = left.saturating_sub(1);
        if *left == 0 || !granted {
            open.remove(subject);
        }
        granted
    }
}

/// A client's subscription, as the broker sees it.
struct ClientSubscription {
    sid: String,
    /// In the client's own subject space.
    pattern: Pattern,
    /// What the client's account puts before its subjects in the broker.
    prefix: Arc<str>,
    /// Deny entries its pattern overlaps: messages on those subjects are not delivered.
    permission: Subscription,
    /// Replies the client may answer (`allow_responses`), when it may.
    responses: Option<Arc<ResponseGrants>>,
    client: u64,
    echo: bool,
    headers: bool,
    outbound: Arc<Outbound>,
    shared: Arc<Shared>,
    delivered: Arc<AtomicU64>,
    /// Messages left before it ends (`UNSUB sid max`); `u64::MAX` for no limit.
    remaining: AtomicU64,
    /// The queue group it is in, if any.
    queue: Option<String>,
    id: OnceLock<SubscriptionId>,
}

#[async_trait]
impl Subscriber for ClientSubscription {
    async fn deliver(&self, event: &Event) -> Result<Accepted, Refusal> {
        self.write(event)
    }

    fn deliver_now(&self, event: &Event) -> Option<Result<Accepted, Refusal>> {
        Some(self.write(event))
    }

    fn deliver_message_now(&self, message: &PlainMessage) -> Option<Result<Accepted, Refusal>> {
        let PlainMessage { subject, reply, payload, client } = message;
        Some(self.write_message(subject, Some(*client), reply.as_deref(), || None, payload))
    }
}

impl ClientSubscription {
    /// Writes `event` to the client's outbound buffer as a MSG or HMSG, unless the subscription
    /// lets it by; never waits.
    fn write(&self, event: &Event) -> Result<Accepted, Refusal> {
        let publisher = event.nats.as_ref().map(|envelope| envelope.client);
        let headers = || codec::nats::headers_of(event);
        self.write_message(&event.subject, publisher, codec::nats::reply_of(event), headers, &event.data)
    }

    /// Writes a message on `subject` (the broker's) from gateway client `publisher` to the
    /// client's outbound buffer, unless the subscription lets it by; never waits. `headers` are
    /// asked for only when the client takes headers.
    fn write_message(
        &self,
        subject: &str,
        publisher: Option<u64>,
        reply: Option<&str>,
        headers: impl FnOnce() -> Option<Bytes>,
        data: &Bytes,
    ) -> Result<Accepted, Refusal> {
        if !self.echo && publisher == Some(self.client) {
            return Ok(Accepted::Passed);
        }
        // Without `UNSUB <sid> <max>`, no read-modify-write per message.
        let left = match self.remaining.load(Ordering::Acquire) {
            u64::MAX => u64::MAX,
            _ => {
                let taken = self.remaining.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| match left {
                    0 => None,
                    u64::MAX => Some(u64::MAX),
                    left => Some(left - 1),
                });
                let Ok(left) = taken else { return Ok(Accepted::Passed) };
                left
            }
        };
        let subject = subject.strip_prefix(&*self.prefix).unwrap_or(subject);
        if !self.permission.delivers(subject) {
            return Ok(Accepted::Passed);
        }
        let headers = if self.headers { headers() } else { None };
        if let (Some(responses), Some(reply)) = (&self.responses, reply) {
            responses.open(reply);
        }
        self.outbound.send(|out| protocol::write_msg(out, subject, &self.sid, reply, headers.as_deref(), data));
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let stats = &self.shared.stats;
        stats.out_msgs.fetch_add(1, Ordering::Relaxed);
        stats.out_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.outbound.traffic.out_msgs.fetch_add(1, Ordering::Relaxed);
        self.outbound.traffic.out_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        if left == 1
            && let Some(id) = self.id.get()
        {
            self.shared.broker.unsubscribe(*id);
        }
        // A slow client is disconnected; it never makes the publisher wait or fail.
        Ok(Accepted::Delivered)
    }
}

/// What the publishes of one PUB did.
#[derive(Default)]
struct Tally {
    /// Subscriptions of this router that took it.
    delivered: usize,
    /// It also went to other routers of a cluster.
    elsewhere: bool,
    refused: Option<Refusal>,
}

/// One connection's state.
struct Client {
    id: u64,
    shared: Arc<Shared>,
    /// The listener it came in on, whose auth admits it.
    listener: Arc<Listener>,
    outbound: Arc<Outbound>,
    options: ConnectOptions,
    connected: bool,
    /// Who it is, once CONNECT is accepted (before: the global account, no limits, when the
    /// gateway needs no auth).
    identity: Identity,
    /// Its account's subjects (the system account's may include `$SYS`).
    namespace: Namespace,
    /// What it authenticated with, to check again when a reload changes the auth config.
    credentials: Option<AuthRequest>,
    /// Holds its place in its account's connection count.
    account_seat: Option<AccountSeat>,
    /// Replies it may answer, when its permissions allow responses.
    responses: Option<Arc<ResponseGrants>>,
    remote: SocketAddr,
    /// The verified TLS client certificate it presented.
    certificate: Option<PeerCertificate>,
    /// What system events and `$SYS` requests report of it.
    connection: Arc<Connection>,
    /// Messages and payload bytes it published.
    received: (u64, u64),
    /// Why it closed, for the disconnect event.
    reason: &'static str,
    /// PINGs sent and not yet answered.
    pings_out: u32,
    subscriptions: HashMap<String, Arc<ClientSubscription>>,
    /// Events of this read's PUBs not yet published, when the broker stores publishes (durable or
    /// cluster mode): published together, so a run of PUBs costs one store, not one each.
    unpublished: Vec<Event>,
}

/// A connection's place in its account's connection count (`max_connections_per_account`), given
/// back when it closes.
struct AccountSeat {
    shared: Arc<Shared>,
    account: String,
}

impl AccountSeat {
    /// A seat in `account`, or `None` when the account has all it may have.
    fn take(shared: &Arc<Shared>, account: &str) -> Option<AccountSeat> {
        let most = shared.settings.max_connections_per_account;
        let mut counts = shared.account_connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(account.to_owned()).or_default();
        if most > 0 && *count >= most {
            return None;
        }
        *count += 1;
        Some(AccountSeat { shared: shared.clone(), account: account.to_owned() })
    }
}

impl Drop for AccountSeat {
    fn drop(&mut self) {
        let mut counts = self.shared.account_connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

/// Greets a client over the connection limit with INFO and `-ERR`, then closes.
pub(super) async fn refuse(
    shared: &Shared,
    listener: &Listener,
    mut stream: TcpStream,
    remote: SocketAddr,
    id: u64,
    reason: &str,
) {
    let mut out = BytesMut::new();
    protocol::write_info(&mut out, &info(shared, listener, remote, id));
    protocol::write_err(&mut out, reason);
    tracing::warn!(%remote, reason, "gateway connection refused");
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
}

/// The authenticator of `listener` in the config in force; none when that config no longer
/// names the listener.
fn authenticator(shared: &Shared, listener: &Listener) -> Option<Arc<Authenticator>> {
    shared.auth.current().1.of(&listener.settings.name)
}

/// Whether clients of `listener` must authenticate (always, once its authenticator is gone).
fn auth_required(shared: &Shared, listener: &Listener) -> bool {
    authenticator(shared, listener).is_none_or(|auth| auth.required())
}

fn info(shared: &Shared, listener: &Listener, remote: SocketAddr, id: u64) -> serde_json::Value {
    json!({
        "server_id": shared.server_id,
        "server_name": shared.server_id,
        "version": env!("CARGO_PKG_VERSION"),
        "proto": 1,
        "host": listener.settings.host,
        "port": listener.settings.port,
        "headers": true,
        "max_payload": shared.settings.max_payload,
        "client_id": id,
        "client_ip": remote.ip().to_string(),
        "auth_required": auth_required(shared, listener),
        "tls_required": listener.tls.is_some(),
        "tls_verify": listener.tls_verify(),
    })
}

/// Serves one client until it closes, breaks the protocol or `stop` is cancelled: INFO in the
/// clear, then (with `[tls]`) the TLS handshake, then the protocol.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    listener: Arc<Listener>,
    mut stream: TcpStream,
    remote: SocketAddr,
    id: u64,
    stop: CancellationToken,
) {
    let mut greeting = BytesMut::new();
    protocol::write_info(&mut greeting, &info(shared, &listener, remote, id));
    if stream.write_all(&greeting).await.is_err() {
        return;
    }
    let Some(acceptor) = listener.tls.clone() else {
        let (reader, writer) = stream.into_split();
        return run(shared, listener, reader, writer, remote, id, None, stop).await;
    };
    match tokio::time::timeout(shared.settings.auth_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let chain = stream.get_ref().1.peer_certificates();
            let certificate = chain.and_then(|chain| PeerCertificate::parse(chain.first()?));
            let (reader, writer) = tokio::io::split(stream);
            run(shared, listener, reader, writer, remote, id, certificate, stop).await;
        }
        Ok(Err(err)) => {
            tracing::info!(%remote, client = id, error = %err, "gateway TLS handshake failed");
            shared.system.auth_error(&Connection::new(id, remote, Arc::default())).await;
        }
        Err(_) => tracing::info!(%remote, client = id, "gateway TLS handshake timed out"),
    }
}

/// The protocol over a connection's two halves (plain TCP or TLS), after INFO.
#[allow(clippy::too_many_arguments)]
async fn run(
    shared: &Arc<Shared>,
    listener: Arc<Listener>,
    mut reader: impl AsyncRead + Unpin,
    writer: impl AsyncWrite + Unpin + Send + 'static,
    remote: SocketAddr,
    id: u64,
    certificate: Option<PeerCertificate>,
    stop: CancellationToken,
) {
    let outbound = Arc::new(Outbound {
        pending: Mutex::new(BytesMut::new()),
        wake: Notify::new(),
        max_pending: shared.settings.max_pending,
        close: stop,
        slow: AtomicBool::new(false),
        traffic: Arc::default(),
    });
    let writing = tokio::spawn(write_loop(writer, outbound.clone()));
    // A reload that changes the auth config checks every client's credentials again.
    let mut auth_changes = shared.auth.watch();
    let mut client = Client {
        id,
        shared: shared.clone(),
        listener,
        outbound: outbound.clone(),
        options: ConnectOptions::default(),
        connected: false,
        identity: Identity { user: None, account: GLOBAL_ACCOUNT.into(), permissions: Default::default() },
        namespace: Namespace::global(),
        credentials: None,
        account_seat: None,
        responses: None,
        remote,
        certificate,
        connection: Arc::new(Connection::new(id, remote, outbound.traffic.clone())),
        received: (0, 0),
        reason: "Client Closed",
        pings_out: 0,
        subscriptions: HashMap::new(),
        unpublished: Vec::new(),
    };
    // `$SYS` requests that report the round trip measure it with a PING of their own.
    let pinger = outbound.clone();
    client.connection.set_pinger(Box::new(move || pinger.send(|out| out.put_slice(b"PING\r\n"))));
    let parser = Parser { max_payload: shared.settings.max_payload };
    let mut buf = BytesMut::new();
    let mut read_size = ReadSize(MIN_READ);
    let auth_deadline = tokio::time::sleep(shared.settings.auth_timeout);
    tokio::pin!(auth_deadline);
    let ping_interval = shared.settings.ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // As nats-server: a client that sent anything since the last tick is not pinged.
    let mut heard = false;
    loop {
        buf.reserve(read_size.0);
        let auth_required = !client.connected && auth_required(shared, &client.listener);
        let read = tokio::select! {
            _ = outbound.close.cancelled() => break,
            Ok(()) = auth_changes.changed() => {
                if client.reauthorize().await {
                    continue;
                }
                break;
            }
            _ = &mut auth_deadline, if auth_required => {
                outbound.fail("Authentication Timeout");
                client.reason = "Authentication Timeout";
                break;
            }
            _ = ping.tick() => {
                if std::mem::take(&mut heard) {
                    continue;
                }
                if client.pings_out >= shared.settings.max_pings_out {
                    outbound.fail("Stale Connection");
                    client.reason = "Stale Connection";
                    break;
                }
                client.pings_out += 1;
                client.connection.pinged();
                outbound.send(|out| out.put_slice(b"PING\r\n"));
                continue;
            }
            read = reader.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                heard = true;
                read_size.after(n);
            }
        }
        let received = client.received;
        let going = TO_WAKE
            .scope(RefCell::new(Vec::new()), async {
                let going = client.work_through(&parser, &mut buf).await;
                wake_deferred();
                going
            })
            .await;
        shared.stats.in_msgs.fetch_add(client.received.0 - received.0, Ordering::Relaxed);
        shared.stats.in_bytes.fetch_add(client.received.1 - received.1, Ordering::Relaxed);
        let traffic = &client.connection.traffic;
        traffic.in_msgs.store(client.received.0, Ordering::Relaxed);
        traffic.in_bytes.store(client.received.1, Ordering::Relaxed);
        client.connection.active();
        if !going {
            break;
        }
        if buf.is_empty() && buf.capacity() > 4 * read_size.0 {
            // A burst is over: give its buffer back.
            buf = BytesMut::new();
        }
    }
    outbound.close.cancel();
    if outbound.slow.load(Ordering::Acquire) {
        shared.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
        client.reason = "Slow Consumer";
        tracing::warn!(%remote, client = id, "slow consumer disconnected");
    }
    client.unsubscribe_all();
    if client.connected {
        let slow = outbound.slow.load(Ordering::Acquire);
        shared.system.disconnected(&client.connection, client.reason, slow).await;
    }
    let _ = writing.await;
}

impl Client {
    /// Handles every whole op in `buf`, then publishes what its PUBs left unpublished; false when
    /// the connection is to close.
    async fn work_through(&mut self, parser: &Parser, buf: &mut BytesMut) -> bool {
        let going = self.handle_all(parser, buf).await;
        self.publish_unpublished().await && going
    }

    /// Handles every whole op in `buf`; false when the connection is to close. Before an
    /// accepted CONNECT, when auth is required, anything but CONNECT is refused at its first byte,
    /// as nats-server does: an unauthenticated client cannot make the gateway buffer a payload.
    async fn handle_all(&mut self, parser: &Parser, buf: &mut BytesMut) -> bool {
        loop {
            if !self.connected
                && buf.first().is_some_and(|first| !b"Cc".contains(first))
                && auth_required(&self.shared, &self.listener)
            {
                self.outbound.fail("Authorization Violation");
                self.reason = "Authentication Failure";
                self.shared.system.auth_error(&self.describe()).await;
                return false;
            }
            match parser.next(buf) {
                Ok(Some(op)) => {
                    if !self.handle(op).await {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(err) => {
                    tracing::debug!(remote = %self.remote, client = self.id, error = %err, "gateway protocol error");
                    self.outbound.fail(err.wire_text());
                    self.reason = "Protocol Error";
                    return false;
                }
            }
        }
    }

    /// Publishes the events PUBs left to publish together ([`Client::unpublished`]). Only clients
    /// that are told nothing per message leave any, so a refusal is counted and logged, as a
    /// single publish's is for them: every event not known to be taken counts as refused. False
    /// when the connection is to close.
    async fn publish_unpublished(&mut self) -> bool {
        if self.unpublished.is_empty() {
            return true;
        }
        let events = std::mem::take(&mut self.unpublished);
        let count = events.len();
        match self.publish_patiently(events).await {
            Ok(()) => true,
            Err((taken, refusal)) => {
                self.shared.stats.refused_publishes.fetch_add((count - taken) as u64, Ordering::Relaxed);
                tracing::debug!(client = self.id, error = %refusal, "gateway publishes refused");
                self.refused(&refusal)
            }
        }
    }

    /// Publishes `events` in order, waiting while a queue is full. Only for a client told nothing
    /// per message where the broker stores publishes: its PONG means every PUB before the PING is
    /// stored, so a full queue cannot refuse its events; it slows the client instead — nothing
    /// more is read from the connection until the routes take them (TCP backpressure). Another
    /// refusal ends it: how many events were taken before, and why.
    async fn publish_patiently(&mut self, events: Vec<Event>) -> Result<(), (usize, Refusal)> {
        let mut taken = 0;
        loop {
            // A copy per attempt: a refused batch is gone, and a stored publish costs far more.
            match self.shared.broker.publish_all(events[taken..].to_vec()).await {
                Ok(()) => return Ok(()),
                Err((more, PublishError::Refused(Refusal::Full { retry_after, what }))) => {
                    self.shared.stats.slowed_publishes.fetch_add(1, Ordering::Relaxed);
                    taken += more;
                    tokio::select! {
                        _ = self.outbound.close.cancelled() => {
                            return Err((taken, Refusal::Closed(format!("the connection, waiting for {what}"))));
                        }
                        _ = tokio::time::sleep(retry_after.min(SLOWED_RETRY)) => {}
                    }
                }
                Err((more, PublishError::Refused(refusal))) => return Err((taken + more, refusal)),
            }
        }
    }

    /// Tells the client about a refusal its publisher hears of: `-ERR 'Maximum Payload Violation'`
    /// and the end of the connection for an event too large to keep, as nats-server does for a
    /// payload over its limit. False when the connection is to close.
    fn refused(&mut self, refusal: &Refusal) -> bool {
        if matches!(refusal, Refusal::TooLarge { .. }) {
            self.outbound.fail("Maximum Payload Violation");
            self.reason = "Maximum Payload Exceeded";
            return false;
        }
        true
    }

    /// Handles one op; false when the connection is to close. Whatever the op, what earlier PUBs
    /// left unpublished is published before it acts on the broker or answers: a PONG still means
    /// every PUB before its PING was taken (and, in durable or cluster mode, stored).
    async fn handle(&mut self, op: ClientOp) -> bool {
        if !matches!(op, ClientOp::Pub { .. }) && !self.publish_unpublished().await {
            return false;
        }
        match op {
            ClientOp::Connect(json) => self.connect(&json).await,
            ClientOp::Ping => {
                self.outbound.send(|out| out.put_slice(b"PONG\r\n"));
                true
            }
            ClientOp::Pong => {
                self.pings_out = 0;
                self.connection.pong();
                true
            }
            ClientOp::Sub { subject, queue, sid } => {
                self.subscribe_op(&subject, queue, sid);
                true
            }
            ClientOp::Unsub { sid, max } => {
                self.unsubscribe_op(sid, max);
                true
            }
            ClientOp::Pub { subject, reply, headers, payload } => self.publish(subject, reply, headers, payload).await,
        }
    }

    /// `CONNECT`: authenticates (again, on a second one) and takes the account's seat.
    async fn connect(&mut self, json: &[u8]) -> bool {
        let options: ConnectOptions = match serde_json::from_slice(json) {
            Ok(options) => options,
            Err(_) => {
                self.outbound.fail("Unknown Protocol Operation");
                return false;
            }
        };
        let request = AuthRequest {
            protocol: Protocol::Nats,
            client_name: options.name.clone(),
            user: options.user.clone(),
            token: options.auth_token.clone(),
            password: options.pass.clone(),
            tls_subject: self.certificate.as_ref().map(|c| c.subject.clone()),
            tls_sans: self.certificate.as_ref().map(|c| c.sans.clone()).unwrap_or_default(),
            remote_addr: self.remote.to_string(),
        };
        // Checked against the running config, whenever the client sends it.
        let identity = match self.authenticate(request.clone()).await {
            Ok(identity) => identity,
            Err(reason) => {
                tracing::info!(client = self.id, name = ?options.name, user = ?options.user, reason, "gateway client not authorized");
                self.outbound.fail("Authorization Violation");
                self.options = options;
                self.reason = "Authentication Failure";
                self.shared.system.auth_error(&self.describe()).await;
                return false;
            }
        };
        // A second CONNECT may not move the connection to another account.
        if self.connected && identity.account != self.identity.account {
            tracing::info!(client = self.id, "a second CONNECT named another account");
            self.outbound.fail("Authorization Violation");
            return false;
        }
        if self.account_seat.is_none() {
            match AccountSeat::take(&self.shared, &identity.account) {
                Some(seat) => self.account_seat = Some(seat),
                None => {
                    self.outbound.fail("maximum account active connections exceeded");
                    self.reason = "Maximum Account Connections Exceeded";
                    return false;
                }
            }
        }
        let system = self.shared.system_account.as_deref() == Some(identity.account.as_str());
        self.namespace = Namespace::new(&identity.account, system);
        self.responses = ResponseGrants::of(&identity.permissions);
        self.identity = identity;
        self.credentials = Some(request);
        self.options = options;
        let first = !std::mem::replace(&mut self.connected, true);
        self.ok();
        if first {
            self.shared.system.connected(self.describe()).await;
        }
        true
    }

    /// `SUB`: a subscription, if the subject is valid and permitted and the client has room.
    fn subscribe_op(&mut self, subject: &str, queue: Option<String>, sid: String) {
        let Ok(pattern) = Pattern::new(subject) else {
            self.outbound.send(|out| protocol::write_err(out, "Invalid Subject"));
            return;
        };
        let Some(permission) = self.may_subscribe(&pattern, queue.as_deref()) else {
            let text = match &queue {
                None => format!("Permissions Violation for Subscription to \"{subject}\""),
                Some(queue) => {
                    format!("Permissions Violation for Subscription to \"{subject}\" using queue \"{queue}\"")
                }
            };
            self.outbound.send(|out| protocol::write_err(out, &text));
            return;
        };
        let most = self.shared.settings.max_subscriptions;
        if most > 0 && self.subscriptions.len() >= most && !self.subscriptions.contains_key(&sid) {
            self.outbound.send(|out| protocol::write_err(out, "Maximum Subscriptions Exceeded"));
            return;
        }
        self.subscribe(sid, pattern, queue, permission);
        self.ok();
    }

    /// `UNSUB`: now, or after `max` messages in all.
    fn unsubscribe_op(&mut self, sid: String, max: Option<u64>) {
        self.ok();
        match (max, self.subscriptions.get(&sid)) {
            (Some(max), Some(subscription)) if subscription.delivered.load(Ordering::Acquire) < max => {
                let left = max - subscription.delivered.load(Ordering::Acquire);
                subscription.remaining.store(left, Ordering::Release);
            }
            _ => self.unsubscribe(&sid),
        }
    }

    /// `PUB`/`HPUB`: permissions, the NATS binding, then the broker (or, stored, the read's batch).
    async fn publish(
        &mut self,
        subject: String,
        reply: Option<String>,
        headers: Option<Bytes>,
        payload: Bytes,
    ) -> bool {
        if headers.is_some() && !self.options.headers {
            self.outbound.fail("Headers Not Supported");
            return false;
        }
        if !self.may_publish(&subject) {
            let text = format!("Permissions Violation for Publish to \"{subject}\"");
            self.outbound.send(|out| protocol::write_err(out, &text));
            return true;
        }
        // Added to the gateway's counters once per read.
        self.received = (self.received.0 + 1, self.received.1 + payload.len() as u64);
        // The global account's subjects are the broker's own: no copy on that hot path.
        let internal = self.namespace.internal(subject);
        let raw = self.listener.settings.raw.as_ref();
        let stored = self.shared.broker.stores_publishes();
        if headers.is_none() && raw.is_none() && !stored {
            // The hot path: a plain message goes to the broker as it is, and the event it stands
            // for is made only for a subscriber that needs one (a route), not for NATS clients.
            if codec::validate_subject(&internal).is_err() {
                return self.invalid_subject();
            }
            self.ok();
            let message = PlainMessage { subject: internal, reply: reply.clone(), payload, client: self.id };
            let published = self.shared.broker.publish_message(message).await;
            let mut tally = Tally::default();
            return self.count(published, &mut tally) && self.answer(tally, false, reply);
        }
        // Only a message with headers, or one whose attributes come from its content, can fail to
        // decode past its subject: keep what its dead letter needs then, and copy nothing on the
        // plain-message path.
        let kept = (headers.is_some() || raw.is_some()).then(|| (internal.clone(), payload.clone()));
        let header_block = raw.and(headers.clone());
        let decoded = codec::nats::decode(internal, reply.clone(), headers, payload, self.id);
        let mapped = match raw {
            Some(raw) => decoded.and_then(|mut events| {
                codec::nats::map_raw(&mut events, header_block.as_ref(), raw)?;
                Ok(events)
            }),
            None => decoded,
        };
        let events = match mapped {
            Ok(events) => events,
            Err(DecodeError::InvalidSubject { .. }) => return self.invalid_subject(),
            Err(err) => return self.malformed(err, kept).await,
        };
        // In durable and cluster mode +OK means "stored": it waits for the store. A client
        // that expects no answer per message (not verbose, no reply subject) has its PUBs
        // stored together, up to its next other op or the end of this read.
        if stored && !self.options.verbose && reply.is_none() {
            self.unpublished.extend(events);
            return true;
        }
        if !self.publish_unpublished().await {
            return false;
        }
        if !stored {
            self.ok();
        }
        let mut tally = Tally::default();
        for event in events {
            let published = self.shared.broker.publish(event).await;
            if !self.count(published, &mut tally) {
                return false;
            }
        }
        self.answer(tally, stored, reply)
    }

    /// As nats-server: the error, then the +OK a verbose client counts on.
    fn invalid_subject(&mut self) -> bool {
        self.outbound.send(|out| protocol::write_err(out, "Invalid Publish Subject"));
        self.ok();
        true
    }

    /// Adds what one publish of a PUB did to `tally`; false when the connection is to close.
    fn count(&mut self, published: Result<PublishAck, PublishError>, tally: &mut Tally) -> bool {
        match published {
            Ok(ack) => {
                (tally.delivered, tally.elsewhere) = (tally.delivered + ack.delivered, tally.elsewhere || ack.elsewhere)
            }
            Err(PublishError::Refused(refusal)) => {
                self.shared.stats.refused_publishes.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = self.id, error = %refusal, "gateway publish refused");
                if !self.refused(&refusal) {
                    return false;
                }
                tally.refused = Some(refusal);
            }
        }
        true
    }

    /// Answers a PUB once its publishes are done: `+OK` or `-ERR` where they were `stored`, and
    /// "no responders" to a request nobody took.
    fn answer(&mut self, tally: Tally, stored: bool, reply: Option<String>) -> bool {
        match tally.refused {
            None if stored => self.ok(),
            Some(refusal) if stored && self.options.verbose => {
                let text = format!("Publish Not Stored: {refusal}").replace('\'', "\"");
                self.outbound.send(|out| protocol::write_err(out, &text));
            }
            _ => {}
        }
        if tally.delivered == 0
            && !tally.elsewhere
            && let Some(reply) = reply
        {
            self.no_responders(&reply);
        }
        true
    }

    /// A PUB whose message is not an event: the `-ERR` and `+OK` nats-server sends, and, as most
    /// NATS publishers never read an asynchronous `-ERR`, the message as a dead letter with the
    /// reason. `kept` is its subject and payload; false when the connection is to close.
    async fn malformed(&mut self, err: DecodeError, kept: Option<(String, Bytes)>) -> bool {
        let text = err.to_string().replace('\'', "\"");
        self.outbound.send(|out| protocol::write_err(out, &format!("Invalid Publish: {text}")));
        self.ok();
        self.shared.stats.malformed_publishes.fetch_add(1, Ordering::Relaxed);
        let raw = kept.and_then(|(subject, payload)| {
            codec::raw(codec::nats::NATS_SOURCE, subject, payload, SystemTime::now()).ok()
        });
        if let Some(raw) = raw {
            if !self.publish_unpublished().await {
                return false;
            }
            let stats = &self.shared.stats;
            let (broker, lost) = (&*self.shared.broker, &stats.dead_letters_lost);
            // Dead letters of an account's publishes stay in that account.
            let (prefix, reason) = (self.namespace.prefix(), err.to_string());
            dead_letter::publish_in(prefix, broker, raw, DEAD_LETTER_NAME, &reason, 0, lost).await;
        }
        true
    }

    /// True when the client may publish to `subject`: not a reserved subject, and allowed by its
    /// publish permissions or as the response to a request it received (`allow_responses`).
    fn may_publish(&self, subject: &str) -> bool {
        self.namespace.check(subject).is_ok()
            && (self.identity.permissions.publish.permits_publish(subject)
                || self.responses.as_ref().is_some_and(|responses| responses.take(subject)))
    }

    /// What a subscription to `pattern` (in `queue`) must check per message, or `None` when the
    /// client may not subscribe to it: a reserved subject, or not within its permissions.
    fn may_subscribe(&self, pattern: &Pattern, queue: Option<&str>) -> Option<Subscription> {
        self.namespace.check(pattern.as_str()).ok()?;
        self.identity.permissions.subscribe.subscription(pattern, queue)
    }

    /// Subscribes `pattern` as `sid` (replacing a subscription of the same sid) in the client's
    /// account.
    fn subscribe(&mut self, sid: String, pattern: Pattern, queue: Option<String>, permission: Subscription) {
        let Ok(internal) = Pattern::new(self.namespace.internal(pattern.as_str().to_owned())) else { return };
        self.unsubscribe(&sid);
        let subscription = Arc::new(ClientSubscription {
            sid: sid.clone(),
            pattern,
            prefix: self.namespace.prefix().clone(),
            permission,
            responses: self.responses.clone(),
            client: self.id,
            echo: self.options.echo,
            headers: self.options.headers,
            outbound: self.outbound.clone(),
            shared: self.shared.clone(),
            delivered: Arc::default(),
            remaining: AtomicU64::new(u64::MAX),
            queue: queue.clone(),
            id: OnceLock::new(),
        });
        let info = SubscriptionInfo {
            subject: subscription.pattern.as_str().to_owned(),
            queue: queue.clone(),
            delivered: subscription.delivered.clone(),
        };
        self.connection.subscriptions().insert(sid.clone(), info);
        let id = self.shared.broker.subscribe(internal, queue, subscription.clone());
        let _ = subscription.id.set(id);
        self.subscriptions.insert(sid, subscription);
    }

    /// Who `request` makes this client, by its listener's auth in the config in force, or why not.
    async fn authenticate(&self, request: AuthRequest) -> Result<Identity, String> {
        match authenticator(&self.shared, &self.listener) {
            Some(auth) => auth.authenticate(request).await,
            None => Err("its listener is no longer in the config".into()),
        }
    }

    /// After a reload changed the auth config: checks the client's credentials again. A client
    /// they no longer admit, or admit to another account, or one that never authenticated while
    /// auth is now required, is closed with `-ERR 'Authorization Violation'`; one whose permissions
    /// changed gets the new ones, and each subscription they no longer allow ends with
    /// `-ERR 'Permissions Violation ...'`. False when the client is closed.
    async fn reauthorize(&mut self) -> bool {
        let Some(request) = self.credentials.clone() else {
            // Never sent CONNECT, which was fine while no auth was required.
            if auth_required(&self.shared, &self.listener) {
                self.outbound.fail("Authorization Violation");
                self.reason = "Authentication Failure";
                return false;
            }
            return true;
        };
        let identity = match self.authenticate(request).await {
            Ok(identity) if identity.account == self.identity.account => identity,
            outcome => {
                let reason = outcome.err().unwrap_or_else(|| "now in another account".into());
                tracing::info!(client = self.id, reason, "gateway client no longer authorized after a reload");
                self.outbound.fail("Authorization Violation");
                self.reason = "Authentication Failure";
                return false;
            }
        };
        if identity == self.identity {
            return true;
        }
        let responses_changed = identity.permissions.responses != self.identity.permissions.responses;
        self.responses = ResponseGrants::of(&identity.permissions);
        self.identity = identity;
        let subscriptions: Vec<_> = self.subscriptions.values().cloned().collect();
        for subscription in subscriptions {
            let (pattern, queue) = (subscription.pattern.clone(), subscription.queue.clone());
            match self.may_subscribe(&pattern, queue.as_deref()) {
                None => {
                    self.unsubscribe(&subscription.sid);
                    let text = format!("Permissions Violation for Subscription to \"{pattern}\"");
                    self.outbound.send(|out| protocol::write_err(out, &text));
                }
                Some(permission) if responses_changed || permission != subscription.permission => {
                    self.subscribe(subscription.sid.clone(), pattern, queue, permission);
                }
                Some(_) => {}
            }
        }
        true
    }

    /// The connection as system events describe it, brought up to date with what CONNECT said.
    fn describe(&self) -> Arc<Connection> {
        *self.connection.who.lock().unwrap_or_else(PoisonError::into_inner) = Who {
            account: self.identity.account.clone(),
            user: self.identity.user.clone().or_else(|| self.options.user.clone()),
            name: self.options.name.clone(),
            lang: self.options.lang.clone(),
            version: self.options.version.clone(),
        };
        self.connection.clone()
    }

    fn ok(&self) {
        if self.options.verbose {
            self.outbound.send(|out| out.put_slice(b"+OK\r\n"));
        }
    }

    /// Tells a requester nobody answered: a 503 status on its own subscription to `reply`, when it
    /// asked for that with `no_responders` (and headers).
    fn no_responders(&self, reply: &str) {
        if !(self.options.no_responders && self.options.headers) {
            return;
        }
        let matching = self.subscriptions.values().find(|subscription| subscription.pattern.matches(reply));
        if let Some(subscription) = matching {
            self.outbound.send(|out| {
                protocol::write_msg(out, reply, &subscription.sid, None, Some(b"NATS/1.0 503\r\n\r\n"), b"")
            });
        }
    }

    fn unsubscribe(&mut self, sid: &str) {
        self.connection.subscriptions().remove(sid);
        if let Some(subscription) = self.subscriptions.remove(sid)
            && let Some(id) = subscription.id.get()
        {
            self.shared.broker.unsubscribe(*id);
        }
    }

    fn unsubscribe_all(&mut self) {
        let sids: Vec<String> = self.subscriptions.keys().cloned().collect();
        for sid in sids {
            self.unsubscribe(&sid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grow_while_they_fill_the_buffer_and_shrink_while_they_do_not() {
        let mut size = ReadSize(MIN_READ);
        for _ in 0..20 {
            let full = size.0;
            size.after(full);
        }
        assert_eq!(size.0, MAX_READ);
        size.after(MAX_READ / 2);
        assert_eq!(size.0, MAX_READ, "half a buffer keeps the size");
        for _ in 0..20 {
            size.after(10);
        }
        assert_eq!(size.0, MIN_READ);
    }
}
