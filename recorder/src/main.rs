//! calls-recorder: the job binary. Reads its settings from the environment, records the call, uploads
//! `recording.mp4`, and exits 0 only when the file is safely uploaded (non-zero keeps the container and its
//! data for debugging). Logs go to stdout, one line per phase, for `docker logs`.

use std::process::ExitCode;

use calls_recorder::config::JobConfig;
use calls_recorder::job;

fn main() -> ExitCode {
    calls_job::shell::run_job_main(
        "recording job",
        // The WebRTC stack narrates every ICE step at info and warns about candidate pairs that are
        // still forming; keep its real problems, so the last lines of a failed job (quoted in its
        // failure reason) are the recorder's own phases.
        "info,rtc=warn,rtc_ice=error,webrtc=warn",
        |lookup| JobConfig::from_lookup(lookup),
        |config| async move {
            let outcome = job::run(config, job::shutdown_signal()).await?;
            tracing::info!(
                reason = %outcome.reason,
                recorded_s = outcome.recorded.as_secs_f64(),
                bytes = outcome.bytes,
                "recording job succeeded"
            );
            Ok::<(), calls_recorder::error::Error>(())
        },
    )
}
