//! calls-offloader: the job API and the Docker job runner. Clients register, log in and submit
//! recording/transcribing jobs; each job runs in its own container (`calls-<type>-<id>`), queued
//! FIFO behind a concurrency limit, with its state in an embedded SQLite store so that a restart
//! (even `kill -9`) re-attaches to running containers instead of orphaning them.
//!
//! Code map: `api/` (axum routes, [`router`]), `auth` (keys, tokens), `store` (SQLite),
//! `scheduler` (pure decisions: admission, exit classification, reconciliation), `runner`
//! (async shell: dispatcher, watchers, sweeper), `backend` (the seam a job's workload is driven
//! through, with its `engine` and `swarm` bollard implementations), `files` (logs and
//! artifacts on disk), `webhook`, `metrics`, `config`, `view` (the redacted public job),
//! `image_ref` (the Docker image reference grammar), `state` ([`AppState`], what every handler
//! and the runner share), `quota` (artifact quotas reserved before
//! an upload streams), `serve` (the HTTP server loop with its
//! timeouts and connection cap).

// What other crates use (the recorder's end-to-end test, this crate's parser fuzz test): the
// router and its state, the config, and the pure parsers and decisions. The rest is the
// program's own.
pub mod api;
pub mod auth;
pub(crate) mod backend;
pub mod config;
pub mod error;
pub mod files;
pub mod image_ref;
pub(crate) mod metrics;
pub mod quota;
pub(crate) mod runner;
pub mod scheduler;
pub(crate) mod serve;
pub(crate) mod state;
pub(crate) mod store;
mod time;
pub(crate) mod view;
pub mod webhook;

pub use api::router;
pub use config::Config;
pub use error::{Error, Result};
pub use state::AppState;
pub use time::now_ms;

use crate::runner::Runner;

/// Runs the offloader until SIGINT/SIGTERM: connects to Docker, opens the store, reconciles,
/// starts the runner and serves the API. Jobs keep running in their containers when the
/// offloader stops; the next start re-attaches to them.
pub async fn run(config: Config) -> Result<()> {
    if config.data_dir.starts_with("/tmp") {
        tracing::warn!(data_dir = %config.data_dir.display(), "store.data_dir is under /tmp: jobs may be lost on reboot");
    }
    // Certificate files are read before anything else: a bad or missing one stops the start
    // with an error naming it.
    let tls = match &config.api.tls {
        Some(files) => Some(
            calls_tls::ServerTls::load(files.clone())
                .map_err(|error| Error::Config(error.to_string()))?,
        ),
        None => None,
    };
    let docker = backend::connect().await?;
    let listen = config.api.listen_address;
    let mut state = AppState::new(config)?;
    let job_backend =
        backend::for_mode(state.config.clone(), docker, state.store.instance.clone()).await?;
    state.backend = Some(job_backend.clone());
    if state.config.docker.mode == config::DockerMode::Engine {
        // In swarm mode the check starts a probe service per image: left to POST /jobs/init.
        match job_backend.images(&state.config.all_images()).await {
            Ok(nodes) => {
                for node in nodes {
                    for image in node.missing {
                        tracing::warn!(
                            image,
                            "runner image missing locally: jobs using it will fail"
                        );
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "could not check runner images"),
        }
    }
    tracing::info!(
        mode = state.config.docker.mode.as_str(),
        "job backend ready"
    );
    Runner::start(state.clone(), job_backend).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listen, tls = tls.is_some(), "calls-offloader listening");
    serve::serve(
        listener,
        router(state.clone()),
        tls,
        serve::ServeLimits::from_config(&state.config),
        state.metrics.clone(),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down; job containers keep running");
}
