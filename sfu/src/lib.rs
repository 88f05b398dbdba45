//! calls-sfu: the Selective Forwarding Unit that hosts calls.
//!
//! [`start`] binds the HTTP listener (signalling WebSocket `/ws`, `/version`, `/healthz`,
//! `/metrics`, `/calls`) and the one shared ICE UDP port, and returns a [`RunningSfu`] handle;
//! [`run`] does the same and serves until the process is stopped. The routing decisions live in
//! the pure [`router`]; `session`/`negotiation` drive webrtc (with the shared `calls-rtc`
//! plumbing), `forward` moves the packets.

// Public: what the tests, examples and other crates use (config, tokens, the pure parsers and
// policies they check, the demo page). The rest is the server's own.
pub(crate) mod backoff;
pub mod candidates;
pub mod config;
pub mod error;
pub(crate) mod fastpath;
pub(crate) mod forward;
pub mod http;
pub(crate) mod http_server;
pub mod ice_mux;
pub(crate) mod leg_codec;
pub(crate) mod metrics;
pub(crate) mod negotiation;
pub(crate) mod outbox;
pub mod peer;
pub(crate) mod ratelimit;
pub mod remote_candidates;
pub(crate) mod requests;
pub(crate) mod router;
pub mod sdp_guard;
pub(crate) mod session;
pub(crate) mod state;
pub mod stun;
pub(crate) mod subscriptions;
pub(crate) mod tcp_mux;
pub mod token;
pub mod turn;
pub mod web_security;
pub(crate) mod write_deadline;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::Config;
pub use error::{Error, Result};
use tokio_util::sync::CancellationToken;

use crate::ice_mux::UdpMux;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::tcp_mux::TcpMux;

/// How long a graceful shutdown waits for sessions and connections to close.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A started SFU. Dropping it does not stop it; call [`RunningSfu::shutdown`].
pub struct RunningSfu {
    /// Bound HTTP address (`/ws` lives here).
    pub http_addr: SocketAddr,
    /// Bound ICE UDP address.
    pub ice_udp_addr: SocketAddr,
    /// Bound ICE-TCP address.
    pub ice_tcp_addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<calls_tls::ServerTls>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningSfu {
    /// `ws://<http addr>/ws` (`wss://` when the SFU serves TLS).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.http_addr)
    }

    /// `http://<http addr>` (`https://` when the SFU serves TLS).
    pub fn http_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// Times a renewed certificate was loaded since start (0 without TLS).
    pub fn tls_reloads(&self) -> u64 {
        self.tls.as_ref().map_or(0, |tls| tls.cert.reloads())
    }

    /// The metrics of this SFU.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// ICE-TCP connections routed to sessions so far.
    pub fn ice_tcp_connections(&self) -> usize {
        self.shared.tcp_mux.routed_connections()
    }

    /// Live sessions in all calls.
    pub fn session_count(&self) -> usize {
        self.shared.with_router(|router| router.session_count())
    }

    /// Sends `job_stop` to a session (a recorder or transcriber bot). False if it is unknown.
    pub fn stop_job(&self, session_id: &str, reason: &str) -> bool {
        self.shared.stop_job(session_id, reason)
    }

    /// Shuts down gracefully: stops accepting connections, tells every session (an `error`
    /// message with code `shutting_down`), closes their peer connections and WebSockets, and
    /// waits (at most [`SHUTDOWN_GRACE`]) for them and the HTTP server to finish. The ICE
    /// sockets close when the last reference to them goes, at the latest when this returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let told = self.shared.shutdown_sessions();
        tracing::info!(sessions = told, "calls-sfu shutting down");
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while (self.shared.live_sessions() > 0 || self.shared.metrics.ws_connections.get() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left, self.server).await.is_err() {
            tracing::warn!("http server did not stop in time");
        }
        tracing::info!("calls-sfu stopped");
    }

    /// Serves until the process receives SIGTERM or SIGINT (then shuts down gracefully, see
    /// [`RunningSfu::shutdown`]) or the HTTP server fails.
    pub async fn serve_until_signalled(mut self) -> Result<()> {
        let signalled = async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let mut term = signal(SignalKind::terminate())?;
                tokio::select! {
                    _ = term.recv() => {}
                    result = tokio::signal::ctrl_c() => result?,
                }
            }
            #[cfg(not(unix))]
            tokio::signal::ctrl_c().await?;
            Ok::<(), std::io::Error>(())
        };
        tokio::select! {
            result = signalled => {
                result?;
                self.shutdown().await;
                Ok(())
            }
            finished = &mut self.server => match finished {
                Ok(result) => Ok(result?),
                Err(join) => Err(Error::Io(std::io::Error::other(join.to_string()))),
            },
        }
    }

    /// Serves until the HTTP server fails or the process is stopped.
    pub async fn wait(self) -> Result<()> {
        match self.server.await {
            Ok(result) => Ok(result?),
            Err(join) => Err(Error::Io(std::io::Error::other(join.to_string()))),
        }
    }
}

/// Binds everything and starts serving in the background.
pub async fn start(config: Config) -> Result<RunningSfu> {
    let ice_bind = SocketAddr::from(([0, 0, 0, 0], config.ice.udp_port));
    let ice_bind = match config.ice.host_addresses.as_slice() {
        [only] => SocketAddr::new(*only, config.ice.udp_port),
        _ => ice_bind,
    };
    let mux = UdpMux::bind(ice_bind).await?;
    let ice_udp_addr = mux.local_addr()?;
    let tcp_mux = TcpMux::bind(SocketAddr::new(ice_bind.ip(), config.ice.tcp_port)).await?;
    let ice_tcp_addr = tcp_mux.local_addr();
    // The certificate files are read before anything binds: a bad or missing one stops the
    // start with an error naming it.
    let tls = match &config.http_tls {
        None => None,
        Some(files) => Some(calls_tls::ServerTls::load(calls_tls::CertFiles {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
        })?),
    };
    let listener = tokio::net::TcpListener::bind(config.http_listen_address).await?;
    let http_addr = listener.local_addr()?;
    let advertised_host = resolve_host_override(&config).await?;
    let metrics = Arc::new(Metrics::new());
    let mut shared = Shared::new(config, metrics, mux, tcp_mux);
    shared.advertised_host = advertised_host;
    let shared = Arc::new(shared);
    let app = http::router(Arc::clone(&shared));
    let stop = CancellationToken::new();
    let server_limits = http_server::ServerLimits {
        max_connections: shared.config.limits.max_http_connections,
        header_read_timeout: shared.config.limits.http_read_timeout,
        max_connections_per_address: shared.config.limits.max_http_connections_per_address,
        write_timeout: shared.config.limits.http_write_timeout,
    };
    let server = tokio::spawn(http_server::serve(
        listener,
        app,
        server_limits,
        tls.clone(),
        Arc::clone(&shared.metrics),
        stop.clone(),
    ));
    tracing::info!(
        http = %http_addr,
        tls = tls.is_some(),
        ice_udp = %ice_udp_addr,
        ice_tcp = %ice_tcp_addr,
        "calls-sfu listening"
    );
    Ok(RunningSfu {
        http_addr,
        ice_udp_addr,
        ice_tcp_addr,
        shared,
        tls,
        stop,
        server,
    })
}

/// The address advertised in host candidates instead of the local one. A hostname is resolved
/// once at start: browsers only resolve `.local` names in candidates, so an IP must be signalled.
async fn resolve_host_override(config: &Config) -> Result<Option<String>> {
    match &config.ice.host_override {
        None => Ok(None),
        Some(config::HostOverride::Ip(ip)) => Ok(Some(ip.to_string())),
        Some(config::HostOverride::Hostname(name)) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|err| {
                    Error::Io(std::io::Error::other(format!(
                        "cannot resolve ice.host_override {name:?}: {err}"
                    )))
                })?
                .collect();
            let ip = addrs
                .iter()
                .find(|addr| addr.is_ipv4())
                .or(addrs.first())
                .map(|addr| addr.ip())
                .ok_or_else(|| {
                    Error::Io(std::io::Error::other(format!(
                        "ice.host_override {name:?} has no address"
                    )))
                })?;
            tracing::info!(host = %name, ip = %ip, "ice host override resolved");
            Ok(Some(ip.to_string()))
        }
    }
}

/// Starts the SFU and serves until SIGTERM/SIGINT, then shuts down gracefully.
pub async fn run(config: Config) -> Result<()> {
    start(config).await?.serve_until_signalled().await
}
