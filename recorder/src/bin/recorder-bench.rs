//! recorder-bench: how much CPU and memory a recording costs, per profile, with and without a screen share.
//!
//! Encodes synthetic calls (two voices taking turns; optionally a 1920×1080 share at 15 fps with fixed bars and
//! a moving block) as fast as the machine allows, each configuration in its own child process so peak memory
//! is per configuration. Prints a Markdown table of CPU-seconds per recorded minute, real-time factor and
//! peak RSS. Opus and VP8 decoding are not included (measured separately: ~0.3% of a core per voice).
//!
//! Usage: `recorder-bench [--seconds N] [--profiles low,medium,high] [--out DIR]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use calls_recorder::mixer::samples_from_duration;
use calls_recorder::test_signal::{bar_pattern, tone};
use calls_recorder::{Profile, ProfileName, Recording};

const PACKET: Duration = Duration::from_millis(20);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--one") {
        return run_one(&args[1..]);
    }
    let mut seconds = 60u64;
    let mut profiles = ProfileName::ALL.to_vec();
    let mut out_dir = std::env::temp_dir();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--seconds" => seconds = value.parse().context("--seconds takes a whole number")?,
            "--profiles" => {
                profiles = value
                    .split(',')
                    .map(|name| name.parse::<ProfileName>())
                    .collect::<Result<_, _>>()?
            }
            "--out" => out_dir = PathBuf::from(value),
            other => bail!("unknown argument {other}; usage: recorder-bench [--seconds N] [--profiles low,medium,high] [--out DIR]"),
        }
    }
    let exe = std::env::current_exe().context("finding this binary")?;
    println!("| profile | share | recorded s | wall s | x real time | CPU-s per recorded min | cores while recording live | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    for profile in profiles {
        for share in [false, true] {
            let file = out_dir.join(format!("recorder-bench-{profile}-{share}.mp4"));
            let output = Command::new(&exe)
                .args([
                    "--one",
                    profile.as_str(),
                    &share.to_string(),
                    &seconds.to_string(),
                ])
                .arg(&file)
                .output()
                .context("running a benchmark child")?;
            if !output.status.success() {
                bail!(
                    "{profile} share={share} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let line = String::from_utf8_lossy(&output.stdout);
            let fields: Vec<f64> = line
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            let [wall, cpu, rss_kib] = fields[..] else {
                bail!("unexpected child output {line:?}");
            };
            let recorded = seconds as f64;
            println!(
                "| {profile} | {} | {recorded:.0} | {wall:.1} | {:.1} | {:.1} | {:.3} | {:.0} |",
                if share { "yes" } else { "no" },
                recorded / wall,
                cpu / (recorded / 60.0),
                cpu / recorded,
                rss_kib / 1024.0
            );
            let _ = std::fs::remove_file(&file);
        }
    }
    Ok(())
}

/// Child: records one configuration and prints `wall_seconds cpu_seconds peak_rss_kib`.
fn run_one(args: &[String]) -> anyhow::Result<()> {
    let [profile, share, seconds, path] = args else {
        bail!("--one takes: profile share seconds path");
    };
    let profile = Profile::named(profile.parse()?);
    let share: bool = share.parse().context("share is true or false")?;
    let end = Duration::from_secs(seconds.parse().context("seconds is a whole number")?);
    // Decoded share frames are prepared up front (four of them, 12 MiB, counted in the peak RSS): decoding is
    // not what this measures.
    let frames: Vec<_> = if share {
        (0..4).map(|index| bar_pattern(1920, 1080, index)).collect()
    } else {
        Vec::new()
    };
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    record(Path::new(path), &profile, &frames, end)?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    println!("{wall:.3} {cpu:.3} {}", peak_rss_kib()?);
    Ok(())
}

/// Two voices taking turns (3 s each, then 2 s of silence) and, if given, a 15 fps share for the whole call.
fn record(
    path: &Path,
    profile: &Profile,
    frames: &[calls_recorder::I420Frame],
    end: Duration,
) -> anyhow::Result<()> {
    let mut recording = Recording::create(path, profile)?;
    let share_interval = Duration::from_secs(1) / 15;
    let mut next_share = Duration::ZERO;
    let mut share_index = 0usize;
    let mut now = Duration::ZERO;
    while now < end {
        let phase = now.as_millis() % 8000;
        let speaker = match phase {
            0..3000 => Some(("alice", 440.0)),
            3000..6000 => Some(("bob", 620.0)),
            _ => None,
        };
        if let Some((name, frequency)) = speaker {
            let pcm = tone(frequency, 0.3, samples_from_duration(now), 960);
            recording.handle_audio(name, now, &pcm)?;
        }
        while !frames.is_empty() && next_share <= now {
            recording.handle_video(
                "carol",
                next_share,
                frames[share_index % frames.len()].clone(),
            );
            share_index += 1;
            next_share += share_interval;
        }
        recording.tick(now)?;
        now += PACKET;
    }
    recording.finish(end)?;
    Ok(())
}

/// User plus system CPU time of this process (all threads), from /proc/self/stat in USER_HZ (100 on Linux).
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which may contain spaces) start at state; utime and stime are 14 and 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/self/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(index)
            .context("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Peak resident set size (VmHWM) in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmHWM")?
        .parse()?)
}
