//! [`AppState`]: what every request handler and the runner share (config, store, metrics,
//! webhooks, key verification, the runner's handle, upload quotas and the job backend).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::auth::keys::KeyVerifier;
use crate::backend::JobBackend;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::webhook::Webhooks;
use crate::{quota, Config, Result};

/// Everything a request handler or the runner needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub webhooks: Webhooks,
    /// Client key verification: cache, slots, failure limit.
    pub keys: Arc<KeyVerifier>,
    pub runner: RunnerHandle,
    /// Artifact uploads in flight, reserved against their job's quotas.
    pub uploads: Arc<quota::UploadQuota>,
    /// Where jobs run (`docker.mode`). `None` in tests that drive the API without Docker: jobs
    /// then stay queued.
    pub backend: Option<Arc<dyn JobBackend>>,
}

impl AppState {
    /// Opens the store in `config.data_dir`; the backend is set by [`crate::run`] once the store (and
    /// with it the instance id) exists.
    pub fn new(config: Config) -> Result<AppState> {
        let store = Arc::new(Store::open(&config.data_dir)?);
        let metrics = Arc::new(Metrics::new());
        let webhooks = Webhooks::new(&config, store.clone(), metrics.clone());
        let keys = Arc::new(KeyVerifier::new(
            config.api.key_cache_ttl,
            config.api.max_key_verifications,
            config.api.auth_failure_limit,
        )?);
        Ok(AppState {
            config: Arc::new(config),
            store,
            metrics,
            webhooks,
            keys,
            runner: RunnerHandle::default(),
            uploads: Arc::default(),
            backend: None,
        })
    }

    /// Called after every persisted state change: fires the client's webhook.
    pub fn job_changed(&self, job_id: &str) {
        match self.store.job(job_id) {
            Ok(Some(job)) => self.webhooks.notify(&job),
            Ok(None) => {}
            Err(error) => tracing::error!(job_id, %error, "could not reload job for webhook"),
        }
    }
}

/// How the API talks to the runner: wake the dispatcher, ask a job's watcher to stop.
#[derive(Clone, Default)]
pub struct RunnerHandle {
    pub(crate) wake: Arc<Notify>,
    stops: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

impl RunnerHandle {
    /// A queued job or a free slot appeared.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The job is persisted as `stopping`: its watcher sends SIGTERM (now or when it starts).
    pub fn request_stop(&self, job_id: &str) {
        self.stop_signal(job_id).notify_one();
    }

    pub(crate) fn stop_signal(&self, job_id: &str) -> Arc<Notify> {
        let mut stops = self.stops.lock().unwrap_or_else(|p| p.into_inner());
        stops.entry(job_id.to_string()).or_default().clone()
    }

    pub(crate) fn forget(&self, job_id: &str) {
        let mut stops = self.stops.lock().unwrap_or_else(|p| p.into_inner());
        stops.remove(job_id);
    }
}
