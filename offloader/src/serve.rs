//! The HTTP server loop: hyper with a header read timeout and a connection cap, so that slow or
//! idle clients cannot hold the offloader's sockets (axum's own `serve` sets neither).
//!
//! - A request head (request line and headers) must arrive within `api.header_read_timeout`,
//!   also on a kept-alive connection waiting for its next request; otherwise the connection is
//!   closed.
//! - At most `api.max_connections` connections are served at once; one over the cap is closed
//!   right after it is accepted (and counted in `calls_offloader_api_connections_refused_total`).
//! - Bodies are read by the routes under `api.body_read_timeout` (see `api::ApiBytes` and the
//!   artifact upload).
//! - With `api.tls_cert_file`/`api.tls_key_file` every connection is TLS. The handshake runs in
//!   the connection's own task (a slow client never holds up accepting others), under its
//!   connection slot and within `api.header_read_timeout`; the certificate is re-read when its
//!   files change (`calls_tls::ReloadingCert`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::either::Either;
use tower::Service;

use crate::metrics::Metrics;

/// Serves `router` on `listener` until `shutdown` completes; connections in flight then get
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<calls_tls::ServerTls>,
    header_read_timeout: Duration,
    max_connections: usize,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections));
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
        let service = match make_service.call(peer).await {
            Ok(service) => service,
            Err(infallible) => match infallible {},
        };
        let service = TowerToHyperService::new(service);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream = match tls {
                None => Either::Left(stream),
                Some(tls) => {
                    match tokio::time::timeout(header_read_timeout, tls.acceptor.accept(stream))
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
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            // Errors here are the client's (reset, timeout, bad request line): not ours to log
            // above debug.
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(slot);
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
