//! The `calls-sfu` binary: `serve [--config FILE]` (the default) runs the SFU until SIGTERM or
//! SIGINT, then shuts down gracefully; `token --call X --name Y [--role bot [--purpose
//! recording|transcribing]] [--ttl 1h] [--link BASE_URL]` prints a join token (or a join link to
//! the demo page) signed with the configured secret; `cert --dir DIR --name NAME...` makes a local
//! CA in DIR (once) and a server certificate signed by it for the names and addresses given
//! (`scripts/run-stack.sh` uses it to serve HTTPS out of the box).

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
    /// Make a local CA (once) and a server certificate signed by it.
    Cert(CertArgs),
}

#[derive(clap::Args)]
struct CertArgs {
    /// Directory of ca.pem, ca-key.pem, server.pem and server-key.pem (the CA is kept).
    #[arg(long)]
    dir: PathBuf,
    /// A DNS name or IP address the server certificate is for (repeat for each).
    #[arg(long = "name", required = true)]
    names: Vec<String>,
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
    if let Some(Command::Cert(args)) = &cli.command {
        // Needs no SFU configuration (run-stack.sh calls it before there is one).
        let written = calls_tls::local_ca::write_stack_certificates(
            &args.dir,
            &args.names,
            std::time::SystemTime::now(),
        )
        .context("cannot make the certificates")?;
        let verb = if written.new_ca {
            "made a new"
        } else {
            "kept the"
        };
        println!(
            "{verb} CA {}; server certificate {} for {}",
            args.dir.join(calls_tls::local_ca::CA_CERT_FILE).display(),
            args.dir
                .join(calls_tls::local_ca::SERVER_CERT_FILE)
                .display(),
            args.names.join(", ")
        );
        return Ok(());
    }
    let config = Config::from_file_and_env(cli.config.as_deref(), std::env::vars())
        .context("invalid configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            init_tracing(&config);
            calls_sfu::run(config).await.context("calls-sfu failed")
        }
        Command::Cert(_) => unreachable!("handled above"),
        Command::Token(args) => {
            let token =
                calls_sfu::token::token_command(&config, &args, std::time::SystemTime::now())
                    .context("cannot mint token")?;
            println!("{token}");
            Ok(())
        }
    }
}
