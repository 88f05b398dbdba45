//! `offloader-auth-bench`: what authentication costs the real offloader. Each scenario starts a
//! fresh `calls-offloader`, registers a client, and sends `GET /jobs` (an empty list, so the
//! figure is the auth path) N times at a fixed concurrency: Basic auth with the right key (the
//! default verified-key cache on, and off), a bearer token from `/login`, and a burst of wrong
//! keys. It prints requests/s, p50/p99 latency, and the offloader's RSS before, at peak
//! (`VmHWM`) and settled 3 s after the burst.
//! Usage: `offloader-auth-bench [REQUESTS] [CONCURRENCY]` (default 200 and 8); needs
//! `calls-offloader` built in the same target dir.

use std::time::{Duration, Instant};

use anyhow::Context;
use calls_e2e::bench::percentile;
use calls_e2e::offloader::{Client, Offloader, OffloaderSettings};

struct Row {
    scenario: String,
    requests: usize,
    concurrency: usize,
    statuses: String,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    start_mib: f64,
    peak_mib: f64,
    settled_mib: f64,
}

async fn run(
    scenario: &str,
    extra_env: &[(&str, &str)],
    requests: usize,
    concurrency: usize,
    pick: impl FnOnce(&Offloader, Client, Client) -> Client,
) -> anyhow::Result<Row> {
    let settings = OffloaderSettings {
        extra_env: extra_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("authbench", settings).await?;
    let basic = offloader.register_basic("basic").await?;
    let bearer = offloader.register("bearer").await?;
    let client = pick(&offloader, basic, bearer);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (start_kib, _) = offloader.rss_kib()?;
    let began = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let share = requests / concurrency + usize::from(worker < requests % concurrency);
        workers.spawn(async move {
            let mut samples = Vec::new();
            for _ in 0..share {
                let sent = Instant::now();
                let status = client.get("/jobs").await?.status;
                samples.push((sent.elapsed().as_secs_f64() * 1000.0, status.as_u16()));
            }
            anyhow::Ok(samples)
        });
    }
    let mut samples = Vec::new();
    while let Some(done) = workers.join_next().await {
        samples.extend(done.context("worker")??);
    }
    let wall = began.elapsed().as_secs_f64();
    let (_, peak_kib) = offloader.rss_kib()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (settled_kib, _) = offloader.rss_kib()?;
    let mut latencies: Vec<f64> = samples.iter().map(|(ms, _)| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    let mut counts = std::collections::BTreeMap::new();
    for (_, status) in &samples {
        *counts.entry(*status).or_insert(0usize) += 1;
    }
    Ok(Row {
        scenario: scenario.to_owned(),
        requests,
        concurrency,
        statuses: counts
            .iter()
            .map(|(status, n)| format!("{n}×{status}"))
            .collect::<Vec<_>>()
            .join(" "),
        per_second: samples.len() as f64 / wall,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        start_mib: start_kib as f64 / 1024.0,
        peak_mib: peak_kib as f64 / 1024.0,
        settled_mib: settled_kib as f64 / 1024.0,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let wrong = |o: &Offloader, basic: Client, _| {
        o.basic(&basic.client_id, "wrong-key-wrong-key-wrong-key-wrong")
    };
    let rows = [
        run(
            "Basic, right key (defaults: verified-key cache on)",
            &[],
            requests,
            concurrency,
            |_, b, _| b,
        )
        .await?,
        run(
            "Basic, right key, cache off (`api.key_cache_ttl = \"0s\"`)",
            &[("OFFLOADER_API_KEY_CACHE_TTL", "0s")],
            requests,
            concurrency,
            |_, b, _| b,
        )
        .await?,
        run(
            "Bearer token from /login",
            &[],
            requests,
            concurrency,
            |_, _, t| t,
        )
        .await?,
        run(
            "Basic, wrong key, 32 at once (defaults)",
            &[],
            32,
            32,
            wrong,
        )
        .await?,
        run(
            "Basic, wrong key, 32 at once, no failure limit",
            &[("OFFLOADER_API_AUTH_FAILURE_LIMIT", "1000000")],
            32,
            32,
            wrong,
        )
        .await?,
    ];
    println!("| scenario | requests | concurrency | answers | requests/s | p50 ms | p99 ms | RSS before MiB | peak MiB | settled MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.scenario,
            r.requests,
            r.concurrency,
            r.statuses,
            r.per_second,
            r.p50_ms,
            r.p99_ms,
            r.start_mib,
            r.peak_mib,
            r.settled_mib
        );
    }
    Ok(())
}
