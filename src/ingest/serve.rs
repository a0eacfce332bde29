//! HTTP ingest's listener: accepts connections for the [`super::http::app`] router with the limits
//! a shared router needs before anyone has authenticated — a cap on connections (one more is
//! answered `503` and closed), a deadline for each request's headers, an idle deadline for the
//! connection — and, with `[http.tls]`, TLS (client certificates verified against `root_ca_path`
//! and handed to handlers as a [`PeerCertificate`] extension). Body deadlines are the handler's.
//! Never looks inside a request.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::tls::{PeerCertificate, TlsSettings};

/// What a connection over the cap is told before it is closed.
const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// The HTTP listener's connection limits and TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpServerSettings {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls: Option<TlsSettings>,
}

impl Default for HttpServerSettings {
    fn default() -> Self {
        HttpServerSettings {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// The TLS acceptor `[http.tls]` describes, if any.
pub fn tls(settings: &HttpServerSettings) -> anyhow::Result<Option<TlsAcceptor>> {
    settings.tls.as_ref().map(crate::tls::acceptor).transpose().context("[http.tls]")
}

/// Serves `app` on `listener` (over `tls`, when given) until `stop` is cancelled, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: HttpServerSettings,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let seats = Arc::new(Semaphore::new(settings.max_connections));
    let connections = TaskTracker::new();
    let settings = Arc::new(settings);
    loop {
        let (stream, remote) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %err, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(seat) = seats.clone().try_acquire_owned() else {
            connections.spawn(refuse(stream, remote));
            continue;
        };
        let (app, settings, tls, stop) = (app.clone(), settings.clone(), tls.clone(), stop.clone());
        connections.spawn(async move {
            match tls {
                None => connection(stream, remote, None, app, &settings, stop).await,
                Some(acceptor) => match tokio::time::timeout(settings.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let chain = stream.get_ref().1.peer_certificates();
                        let certificate = chain.and_then(|chain| PeerCertificate::parse(chain.first()?));
                        connection(stream, remote, certificate, app, &settings, stop).await;
                    }
                    Ok(Err(err)) => tracing::debug!(%remote, error = %err, "http TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "http TLS handshake timed out"),
                },
            }
            drop(seat);
        });
    }
    connections.close();
    connections.wait().await;
}

async fn refuse(mut stream: TcpStream, remote: SocketAddr) {
    tracing::warn!(%remote, "http connection refused: max_connections reached");
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(OVER_CAPACITY)).await;
}

/// Serves one connection until it closes, sits idle past `idle_timeout`, or `stop` asks it to end
/// (then its request in flight finishes first).
async fn connection<IO>(
    io: IO,
    remote: SocketAddr,
    certificate: Option<PeerCertificate>,
    app: Router,
    settings: &HttpServerSettings,
    stop: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let heard = Arc::new(AtomicU64::new(0));
    let io = Watched { io, started, heard: heard.clone() };
    let certificate = certificate.map(Arc::new);
    let service = app.map_request(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        if let Some(certificate) = &certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        request
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_timeout);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    let mut connection = pin!(connection);
    let idle = settings.idle_timeout;
    let mut ending = false;
    loop {
        let since = Duration::from_millis(heard.load(Ordering::Relaxed));
        let quiet = started.elapsed().saturating_sub(since);
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stop.cancelled(), if !ending => {
                ending = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(idle.saturating_sub(quiet)) => {
                let since = Duration::from_millis(heard.load(Ordering::Relaxed));
                if started.elapsed().saturating_sub(since) >= idle {
                    tracing::debug!(%remote, "http connection idle: closed");
                    return;
                }
            }
        }
    }
}

/// An I/O object that notes when bytes last moved, in milliseconds since `started`.
struct Watched<IO> {
    io: IO,
    started: Instant,
    heard: Arc<AtomicU64>,
}

impl<IO> Watched<IO> {
    fn note(&self) {
        self.heard.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.note();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.note();
        }
        polled
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.note();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
