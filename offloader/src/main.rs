//! `calls-offloader [--config FILE]`: reads the TOML config (optional) and `OFFLOADER_*`
//! environment overrides, sets up logging (`RUST_LOG`, default `info`) and runs the service.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Job API and Docker job runner for call recordings and transcriptions"
)]
struct Args {
    /// TOML config file (every key is optional; see docs/offloader.md).
    #[arg(long, env = "CALLS_OFFLOADER_CONFIG")]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        // Plain text under `docker logs`; colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // One line naming the cause, not a backtrace: these are operator errors (config, Docker).
    if let Err(error) = run(Args::parse()).await {
        eprintln!("calls-offloader: {error:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?,
        None => String::new(),
    };
    let config = calls_offloader::Config::load(&text, std::env::vars())?;
    calls_offloader::run(config)
        .await
        .context("the offloader stopped")?;
    Ok(())
}
