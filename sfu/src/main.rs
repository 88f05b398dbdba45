//! The `calls-sfu` binary: `serve [--config FILE]` (the default) runs the SFU until SIGTERM or
//! SIGINT, then shuts down gracefully; `token --call X --name Y [--role bot [--purpose
//! recording|transcribing]] [--ttl 1h] [--link BASE_URL]` prints a join token (or a join link to
//! the demo page) signed with the configured secret.

use std::path::PathBuf;

use anyhow::Context;
use calls_sfu::config::{Config, LogFormat};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "calls-sfu", version, about = "WebRTC SFU hosting calls")]
struct Cli {
    /// TOML configuration file (SFU_* environment variables override it).
    #[arg(long, global = true, env = "SFU_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SFU (default).
    Serve,
    /// Print a join token.
    Token(calls_sfu::token::TokenArgs),
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Plain text under `docker logs`; colours only on a terminal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_file_and_env(cli.config.as_deref(), std::env::vars())
        .context("invalid configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_tracing(&config);
            calls_sfu::run(config).await.context("calls-sfu failed")
        }
        Command::Token(args) => {
            let token =
                calls_sfu::token::token_command(&config, &args, std::time::SystemTime::now())
                    .context("cannot mint token")?;
            println!("{token}");
            Ok(())
        }
    }
}
