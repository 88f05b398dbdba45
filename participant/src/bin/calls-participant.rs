//! The `calls-participant` binary: parses the command line, sets up logging and runs
//! `calls_participant::cli`, printing the summary as JSON on stdout.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,calls_participant=info")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = calls_participant::cli::Args::parse();
    let interrupt = async {
        // Without a signal handler Ctrl-C would kill us before summary.json is written.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let summary = calls_participant::cli::run(args, interrupt).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary.to_json()).expect("json values always serialise")
    );
    Ok(())
}
