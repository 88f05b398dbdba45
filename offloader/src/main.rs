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
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?,
        None => String::new(),
    };
    let config = calls_offloader::Config::load(&text, std::env::vars())?;
    calls_offloader::run(config).await?;
    Ok(())
}
