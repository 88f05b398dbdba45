//! The async shell around the scheduler: a dispatcher that starts queued jobs into free slots,
//! one watcher task per running container (exit, max duration, stop requests), finalisation
//! (logs persisted, state decided by `scheduler::classify_exit`, container removed unless the
//! job failed), the startup reconciliation and the retention sweeper.
//!
//! **Architecture invariant:** a state change is written to the store before the Docker action
//! it announces (`starting` before create, `stopping` before SIGTERM, the final state before the
//! container is removed), so a `kill -9` at any point leaves a store that `reconcile` can repair.

use std::sync::Arc;
use std::time::{Duration, Instant};

use calls_protocol::jobs::JobState;

use crate::backend::{self, CreateError, JobBackend};
use crate::error::Result;
use crate::scheduler::{self, Action, ContainerStatus, ExitFacts, RecordView};
use crate::store::{StopReason, ACTIVE};
use crate::{auth, files, now_ms, AppState};

/// Removes a final job for good: its container (if kept), logs, artifacts and record.
pub async fn purge_job(app: &AppState, job: &crate::store::JobRecord) -> Result<()> {
    if let Some(backend) = &app.backend {
        backend.remove(&job.container_name()).await?;
    }
    files::remove_job_files(&app.config.data_dir, &job.id).await?;
    app.store.delete_job(&job.id)?;
    Ok(())
}

/// What unregistering did to the client's jobs (logged, and documented in docs/offloader.md).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unregistered {
    /// Final jobs removed with their containers, logs and artifacts.
    pub removed: usize,
    /// Queued jobs cancelled and removed.
    pub cancelled: usize,
    /// Started jobs asked to stop; each is removed when its container ends.
    pub stopping: usize,
}

/// The jobs of a client registration that is being removed (`owner` is its uid): queued ones
/// are cancelled, started ones stopped, and every final one removed with its container and
/// files. A started job is removed by `finalize` once it ends, because its owner no longer
/// exists; the sweeper catches any that a crash left behind.
pub async fn remove_client_jobs(app: &AppState, owner: &str) -> Result<Unregistered> {
    let mut done = Unregistered::default();
    for job in app.store.client_jobs(owner, None)? {
        match job.state {
            JobState::Queued => {
                app.store.finish(
                    &job.id,
                    JobState::Cancelled,
                    None,
                    Some("client unregistered"),
                    now_ms(),
                )?;
                done.cancelled += 1;
            }
            JobState::Starting | JobState::Running => {
                app.store.mark_stopping(&job.id, StopReason::User)?;
                app.runner.request_stop(&job.id);
                done.stopping += 1;
                continue;
            }
            JobState::Stopping => {
                app.runner.request_stop(&job.id);
                done.stopping += 1;
                continue;
            }
            _ => done.removed += 1,
        }
        // A queued job may have been started meanwhile: only a final one is purged.
        match app.store.job(&job.id)? {
            Some(job) if job.state.is_final() => purge_job(app, &job).await?,
            Some(job) => {
                app.store.mark_stopping(&job.id, StopReason::User)?;
                app.runner.request_stop(&job.id);
            }
            None => {}
        }
    }
    Ok(done)
}

/// Bytes of log kept in memory to build a failure reason.
const LOG_TAIL_BYTES: usize = 64 * 1024;

pub struct Runner {
    app: AppState,
    backend: Arc<dyn JobBackend>,
}

impl Runner {
    /// Reconciles the store with the backend, then starts the dispatcher and the sweeper.
    pub async fn start(app: AppState, backend: Arc<dyn JobBackend>) -> Result<()> {
        let runner = Arc::new(Runner { app, backend });
        runner.reconcile().await?;
        tokio::spawn(runner.clone().dispatch_loop());
        tokio::spawn(runner.sweep_loop());
        Ok(())
    }

    async fn reconcile(self: &Arc<Self>) -> Result<()> {
        let records: Vec<RecordView> = self
            .app
            .store
            .jobs_in(&JobState::ALL)?
            .into_iter()
            .map(|r| RecordView {
                job_id: r.id,
                state: r.state,
                container_removed: r.container_removed,
            })
            .collect();
        let containers = self.backend.list_jobs().await?;
        let actions = scheduler::reconcile(&records, &containers);
        tracing::info!(
            jobs = records.len(),
            containers = containers.len(),
            actions = actions.len(),
            mode = self.backend.mode().as_str(),
            "reconciled store with docker"
        );
        for action in actions {
            tracing::info!(?action, "reconcile action");
            if let Err(error) = self.apply(action).await {
                tracing::error!(%error, "reconcile action failed");
            }
        }
        Ok(())
    }

    async fn apply(self: &Arc<Self>, action: Action) -> Result<()> {
        let store = &self.app.store;
        match action {
            Action::Watch { job_id } => {
                tokio::spawn(self.clone().watch(job_id));
            }
            Action::MarkRunningAndWatch { job_id } => {
                if store.mark_running(&job_id, now_ms())? {
                    self.app.job_changed(&job_id);
                }
                tokio::spawn(self.clone().watch(job_id));
            }
            Action::Finalize {
                job_id,
                exit_code,
                oom_killed,
            } => {
                let status = exit_code.map(|exit_code| ContainerStatus::Exited {
                    exit_code,
                    oom_killed,
                });
                self.finalize(&job_id, status).await?;
            }
            Action::Requeue {
                job_id,
                remove_container,
            } => {
                if let Some(container) = remove_container {
                    self.backend.remove(&container).await?;
                }
                if store.requeue(&job_id)? {
                    self.app.job_changed(&job_id);
                }
            }
            Action::RemoveContainer {
                container_id,
                job_id,
            } => {
                self.backend.remove(&container_id).await?;
                if let Some(job_id) = job_id {
                    store.set_container_removed(&job_id)?;
                }
            }
            Action::MarkContainerRemoved { job_id } => store.set_container_removed(&job_id)?,
        }
        Ok(())
    }

    async fn dispatch_loop(self: Arc<Self>) {
        loop {
            if let Err(error) = self.dispatch_once().await {
                tracing::error!(%error, "dispatch failed");
            }
            tokio::select! {
                _ = self.app.runner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Starts as many queued jobs as there are free slots, in the order `scheduler::admit` picks
    /// (oldest first, clients under their run share before those over it). Containers are
    /// started one after another so that start times follow the queue order.
    async fn dispatch_once(self: &Arc<Self>) -> Result<()> {
        let store = &self.app.store;
        let active = store.jobs_in(&ACTIVE)?;
        let active_owners: Vec<&str> = active.iter().map(|j| j.owner.as_str()).collect();
        let queued: Vec<scheduler::Waiting> = store
            .jobs_in(&[JobState::Queued])?
            .into_iter()
            .map(|j| scheduler::Waiting {
                job_id: j.id,
                owner: j.owner,
            })
            .collect();
        let config = &self.app.config;
        for job_id in &scheduler::admit(
            &active_owners,
            config.jobs.max_concurrent,
            config.jobs.max_running_per_client,
            &queued,
        ) {
            let token = auth::new_token();
            if !store.mark_starting(job_id, &auth::token_hash(&token))? {
                continue; // cancelled meanwhile
            }
            self.app.job_changed(job_id);
            match self.start_container(job_id, &token).await {
                Ok(()) => {
                    tokio::spawn(self.clone().watch(job_id.clone()));
                }
                Err(error) => {
                    tracing::error!(job_id, %error, "job start failed");
                    let reason = format!("container could not be started: {error}");
                    self.fail_before_start(job_id, &reason).await?;
                }
            }
        }
        Ok(())
    }

    async fn start_container(&self, job_id: &str, token: &str) -> Result<()> {
        let Some(job) = self.app.store.job(job_id)? else {
            return Ok(());
        };
        let name = job.container_name();
        let began = Instant::now();
        let mut started = self.backend.create(&job, token).await;
        if started.is_ok() {
            started = self.backend.start(&name).await;
        }
        match started {
            Ok(()) => {}
            Err(CreateError::ImageMissing) => {
                let place = match self.backend.mode() {
                    crate::config::DockerMode::Engine => "the local Docker engine",
                    crate::config::DockerMode::Swarm => "the swarm node the job was placed on",
                };
                let reason = format!(
                    "image missing: {} is not in {place}; build or load it (check with POST /jobs/init)",
                    job.runner
                );
                self.backend.remove(&name).await?;
                return self.fail_before_start(job_id, &reason).await;
            }
            Err(CreateError::Other(error)) => return Err(error),
        }
        let now = now_ms();
        let job_type = job.job_type.as_str();
        let metrics = &self.app.metrics;
        metrics
            .container_start_latency
            .with_label_values(&[job_type])
            .observe(began.elapsed().as_secs_f64());
        metrics
            .queue_wait
            .with_label_values(&[job_type])
            .observe((now - job.created_at).max(0) as f64 / 1000.0);
        if self.app.store.mark_running(job_id, now)? {
            self.app.job_changed(job_id);
        }
        tracing::info!(job_id, container = name, "job running");
        Ok(())
    }

    async fn fail_before_start(&self, job_id: &str, reason: &str) -> Result<()> {
        if self
            .app
            .store
            .finish(job_id, JobState::Failed, None, Some(reason), now_ms())?
        {
            tracing::warn!(job_id, reason, "job failed before it ran");
            self.app.job_changed(job_id);
        }
        self.app.runner.forget(job_id);
        self.app.metrics.job_histograms.forget(job_id);
        self.app.runner.wake();
        Ok(())
    }

    /// Watches a started container until it exits, enforcing max duration and stop requests.
    async fn watch(self: Arc<Self>, job_id: String) {
        // A Docker hiccup must not lose the job: retry the watch after a pause.
        while let Err(error) = self.watch_inner(&job_id).await {
            tracing::error!(job_id, %error, "job watch failed; will retry");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn watch_inner(self: &Arc<Self>, job_id: &str) -> Result<()> {
        let Some(job) = self.app.store.job(job_id)? else {
            return Ok(());
        };
        if job.state.is_final() {
            return Ok(());
        }
        let name = job.container_name();
        let stop = self.app.runner.stop_signal(job_id);
        let started = job.started_at.unwrap_or_else(now_ms);
        let deadline_ms = started + (job.max_duration_sec as i64).saturating_mul(1000);
        let remaining = Duration::from_millis((deadline_ms - now_ms()).max(0) as u64);
        let deadline = tokio::time::sleep(remaining);
        let mut deadline = std::pin::pin!(deadline);
        let mut deadline_passed = false;
        if job.state == JobState::Stopping {
            self.terminate(&name);
        }
        let mut exit = std::pin::pin!(self.backend.wait_exit(&name));
        let status = loop {
            tokio::select! {
                status = &mut exit => break status?,
                _ = &mut deadline, if !deadline_passed => {
                    deadline_passed = true;
                    if self.app.store.mark_stopping(job_id, StopReason::MaxDuration)? {
                        tracing::info!(job_id, "max duration exceeded, stopping");
                        self.app.job_changed(job_id);
                    }
                    self.terminate(&name);
                }
                _ = stop.notified() => self.terminate(&name),
            }
        };
        self.finalize(job_id, status).await
    }

    /// SIGTERM now, SIGKILL after the grace period (a no-op if it exited by then).
    fn terminate(&self, name: &str) {
        let backend = self.backend.clone();
        let name = name.to_string();
        let grace = self.app.config.jobs.stop_grace_period;
        tokio::spawn(async move {
            if let Err(error) = backend.stop(&name, grace).await {
                tracing::warn!(container = name, %error, "stopping the job failed");
            }
        });
    }

    /// Decides and persists the final state of a job whose container ended (or vanished).
    async fn finalize(&self, job_id: &str, status: Option<ContainerStatus>) -> Result<()> {
        let store = &self.app.store;
        let Some(job) = store.job(job_id)? else {
            return Ok(());
        };
        if job.state.is_final() {
            return Ok(());
        }
        let name = job.container_name();
        let data_dir = &self.app.config.data_dir;
        let container_exists = status.is_some();
        // A workload the backend removed to stop it (swarm mode, another node) left the log it
        // had read just before.
        let saved = (!container_exists)
            .then(|| self.backend.take_saved_log(&name))
            .flatten();
        let logs = if container_exists {
            backend::collect_logs(&*self.backend, &name, self.app.config.jobs.max_log_bytes)
                .await
                .unwrap_or_default()
        } else {
            saved.clone().unwrap_or_default()
        };
        if container_exists || saved.is_some() {
            files::persist_logs(data_dir, job_id, &logs).await?;
        }
        let tail_start = logs.len().saturating_sub(LOG_TAIL_BYTES);
        let tail = String::from_utf8_lossy(&logs[tail_start..]);
        let (exit_code, oom_killed) = match status {
            Some(ContainerStatus::Exited {
                exit_code,
                oom_killed,
            }) => (Some(exit_code), oom_killed),
            _ => (None, false),
        };
        let (state, reason) = scheduler::classify_exit(&ExitFacts {
            exit_code,
            oom_killed,
            stop_reason: job.stop_reason,
            reported_error: job.reported_error.as_deref(),
            work_done: job.work_done,
            log_tail: &tail,
            memory_mb: self.app.config.runner(job.job_type).memory_mb,
            max_duration_sec: job.max_duration_sec,
        });
        let mut now = now_ms();
        if container_exists {
            if let Ok(Some(exited)) = self.backend.finished_at(&name).await {
                // Never before the start nor after now (clocks can step).
                now = exited.max(job.started_at.unwrap_or(exited)).min(now);
            }
        }
        if store.finish(job_id, state, exit_code, reason.as_deref(), now)? {
            tracing::info!(job_id, state = %state, exit_code, "job finished");
            if let Some(started) = job.started_at {
                self.app
                    .metrics
                    .job_duration
                    .with_label_values(&[job.job_type.as_str(), state.as_str()])
                    .observe((now - started).max(0) as f64 / 1000.0);
            }
            self.app.job_changed(job_id);
        }
        if store.client_by_uid(&job.owner)?.is_none() {
            // The client unregistered while the job ran: nobody can read or delete it any more.
            self.backend.remove(&name).await?;
            files::remove_job_files(data_dir, job_id).await?;
            store.delete_job(job_id)?;
            tracing::info!(job_id, "removed the job of an unregistered client");
        } else if state != JobState::Failed || !container_exists {
            self.backend.remove(&name).await?;
            store.set_container_removed(job_id)?;
        }
        self.app.runner.forget(job_id);
        self.app.runner.wake();
        Ok(())
    }

    async fn sweep_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.app.config.jobs.sweep_interval).await;
            if let Err(error) = self.sweep().await {
                tracing::error!(%error, "retention sweep failed");
            }
        }
    }

    /// Removes failed containers past their retention, final jobs past theirs, expired tokens,
    /// and labelled containers that have no job record.
    async fn sweep(&self) -> Result<()> {
        let store = &self.app.store;
        let config = &self.app.config;
        let now = now_ms();
        store.delete_expired_tokens(now)?;
        let failed_before = now - config.jobs.failed_job_retention.as_millis() as i64;
        for job in store.final_jobs_finished_before(failed_before)? {
            if job.state == JobState::Failed && !job.container_removed {
                self.backend.remove(&job.container_name()).await?;
                store.set_container_removed(&job.id)?;
                tracing::info!(job_id = job.id, "swept failed job container");
            }
        }
        // Final jobs whose client registration is gone (unregistered while they ran, and the
        // offloader stopped before it removed them): nobody can reach them, so they go now.
        for job in store.orphaned_final_jobs()? {
            self.backend.remove(&job.container_name()).await?;
            files::remove_job_files(&config.data_dir, &job.id).await?;
            store.delete_job(&job.id)?;
            tracing::info!(job_id = job.id, "swept the job of an unregistered client");
        }
        let finished_before = now - config.jobs.finished_job_retention.as_millis() as i64;
        for job in store.final_jobs_finished_before(finished_before)? {
            self.backend.remove(&job.container_name()).await?;
            files::remove_job_files(&config.data_dir, &job.id).await?;
            store.delete_job(&job.id)?;
            tracing::info!(job_id = job.id, "swept job record");
        }
        for container in self.backend.list_jobs().await? {
            let known = match &container.job_id {
                Some(id) => store.job(id)?.is_some(),
                None => false,
            };
            if !known {
                self.backend.remove(&container.container_id).await?;
                tracing::info!(
                    container = container.container_id,
                    "removed container without a job record"
                );
            }
        }
        Ok(())
    }
}
