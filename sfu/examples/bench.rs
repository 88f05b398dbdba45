//! Forwarding benchmark of calls-sfu (not a test): one call, 2 speakers and N receivers.
//!
//! The SFU runs in a child process (this same executable re-run with `--sfu-child`), so its CPU
//! time can be read from `/proc/<pid>/stat` apart from the clients'. The speakers and receivers
//! are real participants from `calls_participant` in this process; receivers count packets without
//! decoding them. After a warm-up in which every receiver must have both voices, the benchmark
//! reads the SFU's forwarded-packet counter (`sfu_rtc_rtp_packets_total{direction="out"}`) and
//! its CPU time at the start and end of the measured window and prints one JSON line:
//! forwarded packets per second and SFU CPU-seconds per forwarded packet.
//!
//! The SFU runs in the shipped configuration: the defaults of `calls-sfu serve` (ICE gathering on
//! every interface of the host, ICE-TCP on), read through the same config loader, with only the
//! token secret set, the participant cap raised for large runs, and the ports moved to ephemeral
//! ones on request (`--ephemeral-ports`, so a running stack's 8045/8443 do not clash). Other
//! `SFU_*` variables in the environment apply as they would to the binary.
//!
//! ```text
//! cargo run --release -p calls-sfu --example bench -- --receivers 10 --seconds 20
//! ```

mod shared;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use calls_participant::{Event, JoinOptions, Participant, Role, TrackKind};
use clap::Parser;
use shared::{cpu_seconds, resident_mib, voice_signal};

const SECRET: &str = "benchmark-secret-benchmark-secret-0123";
const CALL: &str = "bench";

#[derive(Parser)]
struct Args {
    /// Receivers in the call (besides the 2 speakers).
    #[arg(long, default_value_t = 10)]
    receivers: usize,
    /// Length of the measured window in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Listen on ephemeral ports (HTTP on 127.0.0.1) instead of the shipped 8045/8443.
    #[arg(long)]
    ephemeral_ports: bool,
    /// Run as the SFU child process (internal).
    #[arg(long, hide = true)]
    sfu_child: bool,
}

/// The child's configuration: the shipped defaults plus the few settings the benchmark needs.
fn shipped_config(ephemeral_ports: bool) -> anyhow::Result<calls_sfu::Config> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| name.starts_with("SFU_") && name != "SFU_CONFIG")
        .collect();
    let mut set = |name: &str, value: &str| {
        if !env.iter().any(|(n, _)| n == name) {
            env.push((name.to_owned(), value.to_owned()));
        }
    };
    set("SFU_AUTH_TOKEN_SECRET", SECRET);
    set("SFU_LIMITS_MAX_PARTICIPANTS_PER_CALL", "1000");
    // Every participant connects from this host: one address, as many connections as people.
    set("SFU_LIMITS_MAX_HTTP_CONNECTIONS_PER_ADDRESS", "100000");
    if ephemeral_ports {
        set("SFU_HTTP_LISTEN_ADDRESS", "127.0.0.1:0");
        set("SFU_ICE_UDP_PORT", "0");
        set("SFU_ICE_TCP_PORT", "0");
    }
    Ok(calls_sfu::Config::from_file_and_env(None, env)?)
}

/// The child: start the SFU, print its HTTP address and ICE addresses, serve until stdin closes.
async fn sfu_child(ephemeral_ports: bool) -> anyhow::Result<()> {
    let config = shipped_config(ephemeral_ports)?;
    let host_addresses = if config.ice.host_addresses.is_empty() {
        "all-interfaces".to_owned()
    } else {
        config
            .ice
            .host_addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let sfu = calls_sfu::start(config).await?;
    let http = if sfu.http_addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], sfu.http_addr.port()))
    } else {
        sfu.http_addr
    };
    println!("READY {http} {host_addresses}");
    std::io::stdout().flush()?;
    // The parent holds our stdin; when it exits (or is killed) we stop too.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    sfu.shutdown().await;
    Ok(())
}

async fn forwarded_packets(http: &reqwest::Client, base: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let series = "sfu_rtc_rtp_packets_total{direction=\"out\",type=\"audio\"}";
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .context("no forwarded-packet counter in /metrics")
}

async fn join(url: &str, name: &str) -> anyhow::Result<Participant> {
    let token = calls_sfu::token::mint(
        SECRET.as_bytes(),
        CALL,
        name,
        Role::Participant,
        Duration::from_secs(3600),
        SystemTime::now(),
    )?;
    let options = JoinOptions {
        timeout: Duration::from_secs(30),
        ..JoinOptions::default()
    };
    Ok(Participant::join_connected(url, &token, options, Duration::from_secs(30)).await?)
}

/// Keeps a receiver in the call, counting every packet of every voice track it gets.
fn receive(mut participant: Participant, received: Arc<AtomicU64>, voices: Arc<AtomicU64>) {
    tokio::spawn(async move {
        while let Some(event) = participant.next_event().await {
            if let Event::Track(track) = event {
                if track.kind() != TrackKind::Voice {
                    continue;
                }
                voices.fetch_add(1, Ordering::Relaxed);
                let received = Arc::clone(&received);
                tokio::spawn(async move {
                    while track.next_packet().await.is_some() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    });
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("--sfu-child")
        .args(args.ephemeral_ports.then_some("--ephemeral-ports"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the sfu child")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let mut ready = line
        .trim()
        .strip_prefix("READY ")
        .context("sfu child did not start")?
        .split(' ');
    let addr = ready.next().context("no address")?.to_owned();
    let host_addresses = ready.next().unwrap_or("?").to_owned();
    let base = format!("http://{addr}");
    let url = format!("ws://{addr}/ws");
    let http = reqwest::Client::new();

    let started = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let voices = Arc::new(AtomicU64::new(0));
    for index in 0..args.receivers {
        receive(
            join(&url, &format!("receiver-{index}")).await?,
            Arc::clone(&received),
            Arc::clone(&voices),
        );
    }
    let speakers = [
        join(&url, "speaker-a").await?,
        join(&url, "speaker-b").await?,
    ];
    eprintln!(
        "{} participants joined in {:.1}s",
        args.receivers + 2,
        started.elapsed().as_secs_f64()
    );

    let warmup = Duration::from_secs(3);
    let total = warmup.as_secs_f64() + args.seconds as f64 + 3.0;
    let senders: Vec<_> = speakers
        .iter()
        .map(|s| s.send_voice(voice_signal(total)))
        .collect();
    let expected_voices = 2 * args.receivers as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while voices.load(Ordering::Relaxed) < expected_voices {
        if Instant::now() > deadline {
            bail!(
                "only {} of {expected_voices} voice tracks arrived",
                voices.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(warmup).await;

    let (cpu0, out0, recv0, t0) = (
        cpu_seconds(pid)?,
        forwarded_packets(&http, &base).await?,
        received.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (cpu1, out1, recv1, t1) = (
        cpu_seconds(pid)?,
        forwarded_packets(&http, &base).await?,
        received.load(Ordering::Relaxed),
        Instant::now(),
    );
    let rss = resident_mib(pid);

    let elapsed = (t1 - t0).as_secs_f64();
    let forwarded = out1 - out0;
    let cpu = cpu1 - cpu0;
    let report = serde_json::json!({
        "receivers": args.receivers,
        "speakers": 2,
        "ice_host_addresses": host_addresses,
        "seconds": (elapsed * 10.0).round() / 10.0,
        "forwarded_packets_per_second": (forwarded / elapsed).round(),
        "received_packets_per_second": ((recv1 - recv0) as f64 / elapsed).round(),
        // Each speaker's 50 packets/s go to every receiver and to the other speaker.
        "expected_forwarded_packets_per_second": 2 * (args.receivers + 1) * 50,
        "sfu_cpu_seconds": (cpu * 1000.0).round() / 1000.0,
        "sfu_cores": (cpu / elapsed * 1000.0).round() / 1000.0,
        "sfu_cpu_microseconds_per_forwarded_packet": (cpu / forwarded * 1e6 * 10.0).round() / 10.0,
        "sfu_rss_mib": rss.map(|mib| mib.round()),
    });
    println!("{report}");

    for sender in senders {
        sender.abort();
    }
    drop(child.stdin.take());
    let _ = child.wait();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if args.sfu_child {
        runtime.block_on(sfu_child(args.ephemeral_ports))
    } else {
        runtime.block_on(bench(args))
    }
}
