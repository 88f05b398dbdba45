//! calls-recorder: the job binary. Reads its settings from the environment, records the call, uploads
//! `recording.mp4`, and exits 0 only when the file is safely uploaded (non-zero keeps the container and its
//! data for debugging). Logs go to stdout, one line per phase, for `docker logs`.

use std::process::ExitCode;

use calls_recorder::config::JobConfig;
use calls_recorder::job;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_target(false)
        // Plain text under `docker logs`; colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The WebRTC stack narrates every ICE step at info and warns about candidate
                // pairs that are still forming; keep its real problems, so the last lines of a
                // failed job (quoted in its failure reason) are the recorder's own phases.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,rtc=warn,rtc_ice=error,webrtc=warn")
                }),
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
    let lookup = calls_job::settings::process_lookup();
    let config = match JobConfig::from_lookup(&lookup) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid job settings");
            runtime.block_on(job::report_invalid_settings(&lookup, &error));
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(job::run(config, job::shutdown_signal())) {
        Ok(outcome) => {
            tracing::info!(
                reason = %outcome.reason,
                recorded_s = outcome.recorded.as_secs_f64(),
                bytes = outcome.bytes,
                "recording job succeeded"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "recording job failed");
            ExitCode::FAILURE
        }
    }
}
