//! The HTTP server loop: hyper with a header read timeout and a connection cap, so that slow or
//! idle clients cannot hold the offloader's sockets (axum's own `serve` sets neither).
//!
//! - A request head (request line and headers) must arrive within `api.header_read_timeout`,
//!   also on a kept-alive connection waiting for its next request; otherwise the connection is
//!   closed.
//! - At most `api.max_connections` connections are served at once, and at most
//!   `api.max_connections_per_address` from one source address (an IPv6 /64); one over either
//!   cap is closed right after it is accepted (and counted in
//!   `calls_offloader_api_connections_refused_total`).
//! - An answer that the client does not read (the socket accepts no byte) for
//!   `api.write_timeout` closes the connection ([`StallGuard`]): a client that pipelines
//!   requests and never reads would otherwise hold its connection, and the answers queued on
//!   it, forever.
//! - Bodies are read by the routes under `api.body_read_timeout` (see `api::ApiBytes` and the
//!   artifact upload).
//! - With `api.tls_cert_file`/`api.tls_key_file` every connection is TLS. The handshake runs in
//!   the connection's own task (a slow client never holds up accepting others), under its
//!   connection slot and within `api.header_read_timeout`; the certificate is re-read when its
//!   files change (`calls_tls::ReloadingCert`). TLS runs over the [`StallGuard`], so the write
//!   stall is measured on the TCP socket itself.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::either::Either;
use tower::Service;

use crate::metrics::Metrics;

/// The limits of [`serve`] (from `api.*`).
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub header_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
}

impl ServeLimits {
    pub fn from_config(config: &crate::Config) -> ServeLimits {
        ServeLimits {
            header_read_timeout: config.api.header_read_timeout,
            write_timeout: config.api.write_timeout,
            max_connections: config.api.max_connections,
            max_connections_per_address: config.api.max_connections_per_address,
        }
    }
}

/// Open connections per source address (see [`crate::auth::keys::source_key`]).
#[derive(Default)]
struct PerAddress {
    open: Mutex<HashMap<String, usize>>,
}

/// One connection's place in [`PerAddress`], given back on drop.
struct AddressSlot {
    table: Arc<PerAddress>,
    key: String,
}

impl PerAddress {
    fn try_take(self: &Arc<Self>, key: String, cap: usize) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A connection whose writes fail with `TimedOut` once one has made no progress for `timeout`
/// (the peer's receive window stayed shut). Reads pass through untouched: idle and slow
/// request heads are hyper's header read timeout, slow bodies `api.body_read_timeout`.
pub struct StallGuard<IO> {
    inner: IO,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> StallGuard<IO> {
    pub fn new(inner: IO, timeout: Duration) -> StallGuard<IO> {
        StallGuard {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// After the inner write was not ready: arms the timer on the first stall, fails once it
    /// has run out (the timer's waker makes sure we are polled again then).
    fn check_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing within api.write_timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for StallGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for StallGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` completes; connections in flight then get
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<calls_tls::ServerTls>,
    limits: ServeLimits,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let Some(address_slot) = per_address.try_take(
            crate::auth::keys::source_key(peer.ip()),
            limits.max_connections_per_address,
        ) else {
            metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let service = match make_service.call(peer).await {
            Ok(service) => service,
            Err(infallible) => match infallible {},
        };
        let service = TowerToHyperService::new(service);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream = StallGuard::new(stream, limits.write_timeout);
            let stream = match tls {
                None => Either::Left(stream),
                Some(tls) => {
                    match tokio::time::timeout(
                        limits.header_read_timeout,
                        tls.acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => Either::Right(stream),
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "tls handshake timed out");
                            return;
                        }
                    }
                }
            };
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            // Errors here are the client's (reset, timeout, bad request line): not ours to log
            // above debug.
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(slot);
            drop(address_slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open after the shutdown grace period; closing them");
    }
    Ok(())
}

/// How long requests in flight may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
