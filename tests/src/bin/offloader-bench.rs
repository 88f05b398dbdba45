//! `offloader-bench`: job start latency (API call → container running) of the real offloader and
//! Docker engine, p50/p95 over 20 jobs, next to the `docker run` floor and two bursts (no
//! queueing, and the default 2 slots). Usage: `offloader-bench [JOBS] [--swarm]`; `--swarm` adds
//! the one-at-a-time row in swarm mode (a single-node swarm on this engine, initialised and left
//! again when the engine is in none). Needs `calls-offloader` built in the same target dir
//! (`cargo build -p calls-offloader`).

use calls_e2e::bench::{burst, docker_cli_baseline, sequential, LatencyReport};
use calls_e2e::offloader::Mode;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let swarm = args.iter().any(|a| a == "--swarm");
    let jobs: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20);
    let slots = u32::try_from(jobs)?;
    let mut reports = vec![
        docker_cli_baseline(jobs).await?,
        sequential(jobs, Mode::Engine).await?,
    ];
    if swarm {
        reports.push(sequential(jobs, Mode::Swarm).await?);
    }
    reports.push(burst(jobs, slots).await?);
    reports.push(burst(jobs, 2).await?);
    println!("| scenario | jobs | p50 ms | p95 ms | max ms |");
    println!("|---|---|---|---|---|");
    for report in &reports {
        print_row(report);
    }
    Ok(())
}

fn print_row(report: &LatencyReport) {
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.0} |",
        report.scenario,
        report.latencies_ms.len(),
        report.percentile(50.0),
        report.percentile(95.0),
        report.percentile(100.0)
    );
}
