//! Where a job container spends its CPU, measured from outside it: the container's total (its cgroup), each
//! thread of the job's process (`/proc/<pid>/task/*/stat`, by thread name), and each stage of its work from a
//! `perf record -e cpu-clock` profile whose samples are sorted into stages by library and symbol.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use calls_participant::cpu::{cpu_seconds, parse_stat};

use crate::docker;

/// CPU-seconds used so far by every process of a container (its cgroup, v2 or v1); 0 when it is gone.
pub fn container_cpu_seconds(name: &str) -> f64 {
    let Some(id) = docker::inspect(name, "{{.Id}}") else {
        return 0.0;
    };
    let v2 = format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat");
    if let Ok(stat) = std::fs::read_to_string(v2) {
        return stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0.0, |us| us / 1e6);
    }
    std::fs::read_to_string(format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"))
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// CPU-seconds this test process has used (stacks started in it: SFU, participants, offloader).
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds("self").unwrap_or(0.0)
}

/// The host pid of the job's own process in a container started with `--init`: the first child of
/// docker-init (or the container's main process when there is no init).
pub fn container_job_pid(name: &str) -> anyhow::Result<u32> {
    let pid: u32 = docker::inspect(name, "{{.State.Pid}}")
        .context("the container exists")?
        .trim()
        .parse()
        .context("docker reports a pid")?;
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    Ok(children
        .split_whitespace()
        .next()
        .and_then(|child| child.parse().ok())
        .unwrap_or(pid))
}

/// CPU-seconds of each thread of a process: `tid → (name, seconds)`.
pub fn thread_cpu_seconds(pid: u32) -> BTreeMap<u32, (String, f64)> {
    let mut threads = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in entries.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(parsed) = parse_stat(&stat) {
            threads.insert(tid, parsed);
        }
    }
    threads
}

/// CPU-seconds per thread name between two samples, the threads of one name added up with their count;
/// threads that appeared during the window count from zero. Sorted by CPU, largest first.
pub fn threads_between(
    before: &BTreeMap<u32, (String, f64)>,
    after: &BTreeMap<u32, (String, f64)>,
) -> Vec<(String, usize, f64)> {
    let mut by_name: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for (tid, (name, seconds)) in after {
        let start = before.get(tid).map_or(0.0, |(_, s)| *s);
        let entry = by_name.entry(name.clone()).or_default();
        entry.0 += 1;
        entry.1 += seconds - start;
    }
    let mut rows: Vec<(String, usize, f64)> = by_name
        .into_iter()
        .map(|(name, (count, seconds))| (name, count, seconds))
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    rows
}

/// A stage of the recorder's work and how to recognise its samples: by shared object or by symbol.
const STAGES: &[(&str, &[&str], &[&str])] = &[
    ("x264 (H.264 encode)", &["libx264"], &["x264_"]),
    ("swscale (share scaling)", &["libswscale"], &[]),
    ("other FFmpeg (libavutil)", &["libavutil"], &[]),
    ("MP4 mux", &["libavformat"], &["mov_", "ff_mov", "avio"]),
    (
        "Opus decode",
        &["libopus"],
        &[
            "opus_",
            "silk_",
            "celt_",
            "ec_dec",
            "ec_laplace",
            "quant_",
            "deemphasis",
            "decode_pulses",
            "clt_mdct",
            "comb_filter",
        ],
    ),
    (
        "SRTP / DTLS crypto",
        &["libcrypto", "libssl"],
        &[
            "aes",
            "gcm",
            "ghash",
            "sha1",
            "sha256",
            "hmac",
            "ring_core",
            "chacha",
            "srtp",
            "aws_lc",
        ],
    ),
    (
        "compose + copies (recorder)",
        &[],
        &[
            "calls_recorder::compositor",
            "calls_recorder::frame",
            "calls_recorder::backdrop",
        ],
    ),
    ("mixer (recorder)", &[], &["calls_recorder::mixer"]),
    (
        "depacketise + decode glue (participant)",
        &[],
        &["calls_participant"],
    ),
    (
        "WebRTC receive (RTP/RTCP, ICE, SCTP)",
        &[],
        &[
            "rtc",
            "webrtc",
            "interceptor",
            "rtp::",
            "rtcp",
            "sctp",
            "dtls",
            "stun",
        ],
    ),
    ("async runtime (tokio)", &[], &["tokio", "mio::"]),
    (
        "memcpy / memset / malloc (libc)",
        &["libc.so", "libc-"],
        &["memcpy", "memset", "memmove", "malloc", "free", "memcmp"],
    ),
];

/// Which stage a sample of `symbol` in `dso`, taken on thread `comm`, belongs to; `other` when none claims it.
/// Distributions strip FFmpeg's internal symbols, so libavcodec's samples go by thread: the recorder decodes
/// VP8 on the async runtime's threads (`tokio-*`) and encodes AAC on its media thread (with libm's cbrt and
/// cos from its psychoacoustic model; x264 and swscale have their own libraries). Kernel samples are
/// split the same way (receive side: network and the decoder's fresh buffers; media side: its buffers).
pub fn stage_of(comm: &str, dso: &str, symbol: &str) -> &'static str {
    let receive_side = comm.starts_with("tokio");
    if dso.contains("libavcodec") || (dso.contains("libm.") && !receive_side) {
        return if receive_side {
            "VP8 decode (libavcodec)"
        } else {
            "AAC encode (libavcodec + libm)"
        };
    }
    if dso.starts_with("[kernel") {
        return if receive_side {
            "kernel, receive side (network, page faults)"
        } else {
            "kernel, media side (page faults, scheduling)"
        };
    }
    let symbol_lower = symbol.to_ascii_lowercase();
    for (stage, dsos, symbols) in STAGES {
        if dsos.iter().any(|d| dso.contains(d)) {
            return stage;
        }
        // The recorder's own binary holds everything Rust (and libopus, linked statically): by symbol.
        if symbols
            .iter()
            .any(|s| symbol_lower.contains(&s.to_ascii_lowercase()))
        {
            return stage;
        }
    }
    "other"
}

/// A profile: each stage's share of the samples (0..=1), largest first, and the top symbols as
/// `(share, "thread library", symbol)`.
pub type Profile = (Vec<(String, f64)>, Vec<(f64, String, String)>);

/// Samples `pid` (all its threads) with `perf record -e cpu-clock` for `duration` and returns each stage's
/// share of the samples (0..=1), largest first, and the top symbols of the profile. Needs `perf` and the
/// right to trace the process (root, or `kernel.perf_event_paranoid` ≤ 1).
pub fn perf_stages(pid: u32, duration: Duration, dir: &Path) -> anyhow::Result<Profile> {
    let data = dir.join(format!("perf-{pid}.data"));
    let recorded = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "499", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep", &format!("{:.0}", duration.as_secs_f64())])
        .output()
        .context("cannot run perf (apt-get install linux-perf)")?;
    if !recorded.status.success() {
        bail!(
            "perf record: {}",
            String::from_utf8_lossy(&recorded.stderr).trim()
        );
    }
    perf_report(&data)
}

/// Each stage's share of the samples in a `perf record` file (see [`perf_stages`]) and its top symbols.
pub fn perf_report(data: &Path) -> anyhow::Result<Profile> {
    let report = Command::new("perf")
        .args([
            "report",
            "-q",
            "--stdio",
            "--no-children",
            "--sort",
            "comm,dso,sym",
        ])
        .args(["--percent-limit", "0", "-i"])
        .arg(data)
        .output()
        .context("cannot run perf report")?;
    if !report.status.success() {
        bail!(
            "perf report: {}",
            String::from_utf8_lossy(&report.stderr).trim()
        );
    }
    let mut stages: BTreeMap<&'static str, f64> = BTreeMap::new();
    let mut symbols = Vec::new();
    for line in String::from_utf8_lossy(&report.stdout).lines() {
        let mut parts = line.split_whitespace();
        let Some(percent) = parts
            .next()
            .and_then(|p| p.strip_suffix('%'))
            .and_then(|p| p.parse::<f64>().ok())
        else {
            continue;
        };
        let comm = parts.next().unwrap_or_default().to_owned();
        let dso = parts.next().unwrap_or_default().to_owned();
        let symbol = parts
            .skip_while(|p| !p.starts_with('['))
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ");
        *stages.entry(stage_of(&comm, &dso, &symbol)).or_default() += percent / 100.0;
        symbols.push((percent / 100.0, format!("{comm} {dso}"), symbol));
    }
    let mut stages: Vec<(String, f64)> = stages
        .into_iter()
        .map(|(stage, share)| (stage.to_owned(), share))
        .collect();
    stages.sort_by(|a, b| b.1.total_cmp(&a.1));
    symbols.truncate(25);
    Ok((stages, symbols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_name_and_cpu() {
        let line =
            "42 (tokio-runtime-w) S 1 42 42 0 -1 4194368 10 0 0 0 150 25 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(line), Some(("tokio-runtime-w".to_owned(), 1.75)));
    }

    #[test]
    fn samples_are_sorted_into_stages() {
        let media = "recorder-media";
        let runtime = "tokio-rt-worker";
        let libavcodec = "libavcodec.so.59.37.100";
        let cases = [
            (media, "libx264.so.164", "0x1234", "x264 (H.264 encode)"),
            (runtime, libavcodec, "0x00a077d3", "VP8 decode (libavcodec)"),
            (
                media,
                libavcodec,
                "0x00a077d3",
                "AAC encode (libavcodec + libm)",
            ),
            (
                media,
                "calls-recorder",
                "calls_recorder::mixer::Mixer::poll_frame",
                "mixer (recorder)",
            ),
            (
                runtime,
                "calls-recorder",
                "silk_decode_frame",
                "Opus decode",
            ),
            (
                media,
                "[kernel.kallsyms]",
                "clear_page_erms",
                "kernel, media side (page faults, scheduling)",
            ),
        ];
        for (comm, dso, symbol, stage) in cases {
            assert_eq!(stage_of(comm, dso, symbol), stage, "{comm} {dso} {symbol}");
        }
    }
}
