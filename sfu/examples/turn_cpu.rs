//! CPU of a call relayed through TURN next to a direct one (docs/benchmarks.md), not a test.
//!
//! One SFU and two participants in this process, a real coturn (`turnserver` on PATH) on
//! loopback as a child. Two phases of `SECONDS` each, in one run so they share the machine's load:
//! both participants talk at once (48 kHz Opus, 50 packets/s each way) first with direct ICE, then
//! with relay-only ICE through coturn. Prints, per phase, the CPU seconds of this process (SFU +
//! both clients, including the clients' TURN wrapping) and of coturn, and their share of one core.
//!
//! ```text
//! cargo run --release -p calls-sfu --example turn_cpu -- 20
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use calls_participant::{JoinOptions, Participant, Role};
use calls_sfu::config::{Secret, TurnConfig};

const SECRET: &str = "turn-cpu-bench-secret-0123456789abcdef";
const TURN_SECRET: &str = "turn-cpu-bench-turn-secret";

/// CPU seconds (user + system) of process `pid` from /proc; 0 when it cannot be read.
fn cpu_seconds(pid: &str) -> f64 {
    calls_participant::cpu::cpu_seconds(pid).unwrap_or(0.0)
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(34_780)
}

/// A voice-like test signal: 200 ms syllables of a gliding tone, 100 ms pauses.
fn voice(seconds: u64) -> Vec<i16> {
    (0..seconds as usize * 48_000)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            let in_syllable = (t % 0.3) < 0.2;
            let f = 180.0 + 60.0 * (t * 0.7).sin();
            if in_syllable {
                (8_000.0 * (2.0 * std::f64::consts::PI * f * t).sin()) as i16
            } else {
                0
            }
        })
        .collect()
}

async fn join(url: &str, name: &str, relay_only: bool) -> anyhow::Result<Participant> {
    let token = calls_sfu::token::mint(
        SECRET.as_bytes(),
        "bench",
        name,
        Role::Participant,
        Duration::from_secs(600),
        SystemTime::now(),
    )?;
    let options = JoinOptions {
        relay_only,
        ..JoinOptions::default()
    };
    let mut me = Participant::join(url, &token, options).await?;
    me.wait_connected(Duration::from_secs(20)).await?;
    Ok(me)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let relay = free_port();
    let mut coturn = Command::new("turnserver")
        .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
        .arg(format!("--listening-port={port}"))
        .args([
            "--use-auth-secret",
            "--realm=calls",
            "--allow-loopback-peers",
        ])
        .arg(format!("--static-auth-secret={TURN_SECRET}"))
        .args([
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--log-file=stdout",
            "--simple-log",
        ])
        .arg(format!("--userdb={}", dir.path().join("turndb").display()))
        .arg(format!("--min-port={relay}"))
        .arg(format!("--max-port={}", relay.saturating_add(40)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting turnserver (apt-get install coturn)")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let coturn_pid = coturn.id().to_string();

    let mut config = calls_sfu::Config::for_local_test(SECRET);
    config.ice.turn = Some(TurnConfig {
        urls: vec![format!("turn:127.0.0.1:{port}?transport=udp")],
        static_auth_secret: Secret::new(TURN_SECRET),
        credential_ttl: Duration::from_secs(600),
    });
    let sfu = calls_sfu::start(config).await?;
    let pcm = voice(seconds);
    for relay_only in [false, true] {
        let alice = join(&sfu.ws_url(), "Alice", relay_only).await?;
        let bob = join(&sfu.ws_url(), "Bob", relay_only).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (own0, turn0, started) = (
            cpu_seconds("self"),
            cpu_seconds(&coturn_pid),
            Instant::now(),
        );
        let (a, b) = (alice.send_voice(pcm.clone()), bob.send_voice(pcm.clone()));
        a.await??;
        b.await??;
        let wall = started.elapsed().as_secs_f64();
        let own = cpu_seconds("self") - own0;
        let turn = cpu_seconds(&coturn_pid) - turn0;
        println!(
            "{{\"ice\":\"{}\",\"seconds\":{wall:.1},\"process_cpu_s\":{own:.2},\"process_core_share\":{:.3},\"coturn_cpu_s\":{turn:.2},\"coturn_core_share\":{:.4}}}",
            if relay_only { "relay (TURN/UDP)" } else { "direct" },
            own / wall,
            turn / wall
        );
        alice.leave().await?;
        bob.leave().await?;
    }
    sfu.shutdown().await;
    let _ = coturn.kill();
    let _ = coturn.wait();
    Ok(())
}
