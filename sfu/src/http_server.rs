//! The SFU's HTTP/1.1 server loop (instead of `axum::serve`, which has neither of the two
//! protections below; issue 11, finding 6):
//!
//! - a **connection cap** (`http.max_connections`): the loop accepts a connection only while it
//!   holds a permit; beyond the cap, new connections wait in the kernel's backlog instead of
//!   costing a task and buffers each;
//! - a **header read timeout** (`http.header_read_timeout`): a client that does not finish
//!   sending a request's headers in time is disconnected (a partial header used to hold a
//!   connection open indefinitely). Request bodies get the same deadline through
//!   `tower_http::timeout::RequestBodyTimeoutLayer` in `http::router`.
//!
//! Upgraded connections (the signalling WebSocket) keep their permit for their whole life, so the
//! cap also bounds live sessions per SFU. Accept errors back off (`backoff.rs`). On `stop` the
//! loop stops accepting and every connection is shut down gracefully.
//!
//! With `http.tls_cert_file`/`http.tls_key_file` every connection is TLS (the page, `/ws` as
//! WSS, the API and `/metrics`): the handshake runs in the connection's task, under its permit
//! and within the header read timeout, so a client that stalls in the handshake is cut off like
//! one that stalls in its headers. The certificate is re-read when its files change
//! (`calls_tls::ReloadingCert`), so new connections get a renewed one and live calls go on.
//! TLS runs over the `DeadlineIo` stream, so the write deadline is kept on the TCP socket.
//!
//! Issue 21, finding 2 adds (`write_deadline.rs`): a **minimum send rate** (a client that takes
//! no data for `http.write_timeout` while the server has some for it is reset) and a
//! **per-address cap** (`max_connections_per_address`; a connection beyond it is closed at once).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::write_deadline::{AddressSlots, DeadlineIo};

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (and, through the router, its body).
    pub header_read_timeout: Duration,
    /// Connections one client address (an IPv6 /64) may hold at once.
    pub max_connections_per_address: usize,
    /// Time within which a client must take data the server has pending for it.
    pub write_timeout: Duration,
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<calls_tls::ServerTls>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Backoff::new();
    let connections = tokio_util::task::TaskTracker::new();
    let address_slots = AddressSlots::new(limits.max_connections_per_address);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => {
                if accepted.is_err() {
                    metrics.record_error("http_accept");
                }
                match backoff.accepted(accepted, "http accept").await {
                    Some(accepted) => accepted,
                    None => continue,
                }
            }
            _ = stop.cancelled() => break,
        };
        let Some(address_slot) = address_slots.try_claim(peer.ip()) else {
            // Dropping the stream closes it; the global permit goes back with it.
            metrics.record_error("http_address_limit");
            tracing::debug!(peer = %peer.ip(), "connection refused: the address holds its share of connections");
            continue;
        };
        let stream = DeadlineIo::new(stream, limits.write_timeout, Arc::clone(&metrics));
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        let metrics = Arc::clone(&metrics);
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _address_slot = address_slot;
            let Some(tls) = tls else {
                return serve_connection(stream, service, limits, &metrics, stop).await;
            };
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, tls.acceptor.accept(stream));
            let stream = tokio::select! {
                result = handshake => match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        metrics.record_error("tls_handshake");
                        tracing::debug!(error = %err, "tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        metrics.record_error("tls_handshake_timeout");
                        return;
                    }
                },
                _ = stop.cancelled() => return,
            };
            serve_connection(stream, service, limits, &metrics, stop).await
        });
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
    Ok(())
}

/// Serves HTTP/1.1 (with upgrades, for `/ws`) on one accepted connection, plain or TLS.
async fn serve_connection<S>(
    stream: S,
    service: TowerToHyperService<Router>,
    limits: ServerLimits,
    metrics: &Metrics,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        if err.is_timeout() {
            metrics.record_error("http_header_timeout");
        }
        tracing::debug!(error = %err, "http connection ended with an error");
    }
}
