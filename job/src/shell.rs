//! The steps every job binary takes around its own work: its `main` ([`run_job_main`]: logging, runtime,
//! settings, exit code), wait for SIGTERM, tell the offloader why the settings were refused, report a
//! failure, and report `finished` once the artifacts are delivered.

use std::future::Future;
use std::process::ExitCode;

use calls_protocol::job_env;
use calls_protocol::jobs::JobStatusKind;

use crate::offloader::{OffloaderClient, RetryPolicy};
use crate::secret::Secret;

/// The whole `main` of a job binary. Logs go to stdout as plain lines for `docker logs` (colours only on a
/// terminal), filtered by the `LOG_FILTER` input, `RUST_LOG` (set by the image, not by clients) or else `default_log_filter`; the settings are read from the process
/// environment by `parse` (invalid ones are reported to the offloader when it can be reached, exit code 2);
/// then `run` does the job and logs its own outcome. Exit code 0 only when `run` succeeded: a non-zero exit
/// keeps the container and its data for debugging. `job` names the job in the log lines (`recording job`).
pub fn run_job_main<C, E, R, Fut>(
    job: &str,
    default_log_filter: &str,
    parse: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<C, E>,
    run: impl FnOnce(C) -> Fut,
) -> ExitCode
where
    E: std::fmt::Display + Sync,
    R: std::fmt::Display,
    Fut: Future<Output = Result<(), R>>,
{
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(job_env::call::LOG_FILTER)
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_filter)),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let lookup = crate::settings::process_lookup();
    let config = match parse(&lookup) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid job settings");
            runtime.block_on(report_invalid_settings(&lookup, &error));
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "{job} failed");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM (the offloader or Docker stopping the container) or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = interrupt.await;
        }
    }
}

/// Tells the offloader that the job's settings were invalid, when enough of them (`JOB_ID`, `JOB_TOKEN`,
/// `OFFLOADER_URL`) are there to do so. Best effort: the exit code carries the failure either way.
pub async fn report_invalid_settings(
    lookup: impl Fn(&str) -> Option<String>,
    error: &(dyn std::fmt::Display + Sync),
) {
    let (Some(base), Some(job_id), Some(token)) = (
        lookup(job_env::OFFLOADER_URL),
        lookup(job_env::JOB_ID),
        lookup(job_env::JOB_TOKEN),
    ) else {
        return;
    };
    let Ok(client) = OffloaderClient::from_parts(&base, &job_id, Secret::new(token)) else {
        return;
    };
    report_failed(&client, error).await;
}

/// Reports `failed` with `error` as the reason; a failure to report is logged.
pub async fn report_failed(client: &OffloaderClient, error: &(dyn std::fmt::Display + Sync)) {
    if let Err(report_error) = client
        .report_with(
            RetryPolicy::FINISHED,
            JobStatusKind::Failed,
            None,
            Some(error.to_string()),
            &[],
        )
        .await
    {
        tracing::error!(%report_error, "could not report the failure to the offloader");
    }
}

/// Reports `finished` (a few attempts): the work is delivered, so a job stopped through the API ends
/// `succeeded` rather than `cancelled`. A failure is logged; the exit code still says the upload succeeded.
pub async fn report_finished(client: &OffloaderClient, message: String, counters: &[(&str, f64)]) {
    if let Err(error) = client
        .report_with(
            RetryPolicy::FINISHED,
            JobStatusKind::Finished,
            Some(message),
            None,
            counters,
        )
        .await
    {
        tracing::warn!(%error, "could not report finished; a job stopped through the API will show as cancelled");
    }
}

/// Reports `started`; a failure is logged and does not stop the job.
pub async fn report_started(client: &OffloaderClient, message: &str) {
    if let Err(error) = client
        .report(JobStatusKind::Started, Some(message.to_owned()), None, &[])
        .await
    {
        tracing::warn!(%error, "could not report started");
    }
}

/// Sends a progress report in the background (one attempt): a slow offloader never stalls the job.
pub fn spawn_progress(
    client: &OffloaderClient,
    message: String,
    counters: Vec<(&'static str, f64)>,
) {
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(error) = client
            .report(JobStatusKind::Progress, Some(message), None, &counters)
            .await
        {
            tracing::warn!(%error, "progress report failed");
        }
    });
}
