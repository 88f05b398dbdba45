//! `recorder-live-bench`: what a recording costs in a live call, and where the CPU goes. The real stack of the
//! recorder e2e test (an in-process SFU, the `calls-offloader` binary, the recorder image started as a job
//! with the medium profile) records four calls in turn:
//! - `voices`: one speaker talking continuously (espeak-ng sentences back to back), nobody sharing;
//! - `slide`: the same, and a still 1920×1080 VP8 share at 15 fps (the sender keeps sending frames);
//! - `moving`: the same, and the moving 1920×1080 test pattern at 15 fps;
//!
//! The share's encoder makes keyframes only when asked (PLI/FIR), like a browser's.
//! - `three`: three speakers talking at the same time, nobody sharing.
//!
//! After a 5 s warm-up each call is measured for a window (60 s by default): the container's CPU (its cgroup),
//! the CPU of each thread of the recorder process by name (`/proc/<pid>/task`), and a `perf record -e
//! cpu-clock` profile of the process whose samples are sorted into stages (`calls_e2e::cpu::stage_of`).
//! Run by hand as root with `perf` installed (figures in docs/benchmarks.md, "Recorder in a live call"):
//! `cargo test -p calls-e2e --test recorder_bench -- --ignored --nocapture`
//! Env: `RECORDER_BENCH_SECONDS` (window, default 60), `RECORDER_BENCH_SCENARIOS` (default
//! `voices,slide,moving,three`), `RECORDER_BENCH_IMAGE` (default `calls-recorder:latest`),
//! `RECORDER_BENCH_KEEP` (a directory to keep the perf profiles in). With `RECORDER_BENCH_PERF_DATA` (a perf
//! file kept before) it only prints that profile's stages.

use std::time::Duration;

use calls_e2e::call::{wait_joined, CallStack};
use calls_e2e::cpu::{
    container_cpu_seconds, container_job_pid, perf_report, perf_stages, thread_cpu_seconds,
    threads_between,
};
use calls_e2e::offloader::{serial, OffloaderSettings};
use calls_e2e::speech;
use calls_participant::{KeyframePolicy, ScreenOptions};
use tokio::time::Instant;

const SECRET: &str = "recorder-bench-token-secret-0123456789abcdef";
const CALL: &str = "call-recorder-bench";
const WARM_UP: Duration = Duration::from_secs(5);
const SENTENCES: [&str; 5] = [
    "The quick brown fox jumps over the lazy dog.",
    "Seven silver boats sail north at midnight.",
    "Please send the quarterly report before the meeting on Thursday.",
    "A warm breeze carried the smell of rain across the valley.",
    "We will review the design together and decide on the next steps.",
];

struct Scenario {
    name: &'static str,
    speakers: usize,
    share: Option<bool>,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "voices",
        speakers: 1,
        share: None,
    },
    Scenario {
        name: "slide",
        speakers: 1,
        share: Some(true),
    },
    Scenario {
        name: "moving",
        speakers: 1,
        share: Some(false),
    },
    Scenario {
        name: "three",
        speakers: 3,
        share: None,
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: prints figures, run by hand"]
async fn recorder_live_bench() -> anyhow::Result<()> {
    if let Ok(data) = std::env::var("RECORDER_BENCH_PERF_DATA") {
        let (stages, symbols) = perf_report(std::path::Path::new(&data))?;
        print_profile(&stages, &symbols, None);
        return Ok(());
    }
    let _serial = serial().await;
    let window = Duration::from_secs(
        std::env::var("RECORDER_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let wanted = std::env::var("RECORDER_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "voices,slide,moving,three".to_owned());
    let image = std::env::var("RECORDER_BENCH_IMAGE")
        .unwrap_or_else(|_| "calls-recorder:latest".to_owned());
    let dir = tempfile::tempdir()?;
    let mut spoken = Vec::new();
    for (index, sentence) in SENTENCES.iter().enumerate() {
        let mut pcm = speech::speak(dir.path(), &format!("s{index}"), sentence)?;
        pcm.extend(std::iter::repeat_n(0i16, 48_000 / 4));
        spoken.push(pcm);
    }
    // Speaker `k` starts at sentence `k`, so three speakers never say the same thing at once.
    let talk = |speaker: usize| -> Vec<i16> {
        let wanted = (window + WARM_UP + Duration::from_secs(20)).as_secs() as usize * 48_000;
        let mut pcm = Vec::with_capacity(wanted);
        let mut index = speaker;
        while pcm.len() < wanted {
            pcm.extend_from_slice(&spoken[index % spoken.len()]);
            index += 1;
        }
        pcm
    };

    let settings = OffloaderSettings {
        recording_image: image.clone(),
        stop_grace_period: "30s".into(),
        memory_mb: 1024,
        ..OffloaderSettings::default()
    };
    let stack =
        CallStack::start("recorder", "recbench", SECRET, CALL, settings, "recorder").await?;
    let mut summary = Vec::new();
    for scenario in SCENARIOS
        .iter()
        .filter(|s| wanted.split(',').any(|w| w.trim() == s.name))
    {
        let mut people = Vec::new();
        for index in 0..scenario.speakers {
            people.push(stack.join(&format!("Speaker {}", index + 1)).await?);
        }
        let job = stack.recording_job("medium").await?;
        wait_joined(&stack.client, &job).await?;
        let voices: Vec<_> = people
            .iter()
            .enumerate()
            .map(|(index, person)| person.send_voice(talk(index)))
            .collect();
        if let Some(still) = scenario.share {
            people[0]
                .start_screen_with(ScreenOptions {
                    still,
                    keyframes: KeyframePolicy::OnRequestOnly,
                    ..ScreenOptions::new(1920, 1080, 15)
                })
                .await?;
        }
        tokio::time::sleep(WARM_UP).await;

        let pid = container_job_pid(&job.container_name)?;
        let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let cpu_before = container_cpu_seconds(&job.container_name);
        let threads_before = thread_cpu_seconds(pid);
        let started = Instant::now();
        let profile_dir = std::env::var("RECORDER_BENCH_KEEP")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| dir.path().to_owned());
        let profile =
            tokio::task::spawn_blocking(move || perf_stages(pid, window, &profile_dir)).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = container_cpu_seconds(&job.container_name) - cpu_before;
        let threads = threads_between(&threads_before, &thread_cpu_seconds(pid));
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
            .unwrap_or_default();

        stack.client.stop(&job.id).await?;
        let done = stack
            .client
            .wait_final(&job.id, Duration::from_secs(120))
            .await?;
        for voice in voices {
            voice.abort();
        }
        for person in people {
            person.leave().await?;
        }

        let cores = cpu / elapsed;
        println!(
            "\n## {} ({} speaker(s), share: {}), image {image}: {cores:.3} cores ({cpu:.1} CPU-s in {elapsed:.1} s), peak RSS {rss}; job {:?}",
            scenario.name,
            scenario.speakers,
            match scenario.share {
                None => "none",
                Some(true) => "still 1920x1080 15 fps, keyframes on request",
                Some(false) => "moving 1920x1080 15 fps, keyframes on request",
            },
            done.state,
        );
        println!(
            "load average before {} / after {}",
            load_before.trim(),
            load.trim()
        );
        let counters: Vec<String> = [
            "video_frames_encoded",
            "share_frames_received",
            "share_frames_unchanged",
            "video_frames_skipped",
            "inputs_dropped",
            "seconds_recorded",
        ]
        .iter()
        .filter_map(|name| done.counters.get(*name).map(|v| format!("{name}={v}")))
        .collect();
        println!("counters: {}", counters.join(" "));
        println!("| thread | count | cores |");
        println!("|---|---|---|");
        for (name, count, seconds) in &threads {
            println!("| {name} | {count} | {:.3} |", seconds / elapsed);
        }
        match profile {
            Ok((stages, symbols)) => print_profile(&stages, &symbols, Some(cores)),
            Err(error) => println!("no perf profile: {error:#}"),
        }
        summary.push((scenario.name, cores));
    }
    println!("\nsummary (cores, medium profile): {summary:?}");
    stack.sfu.shutdown().await;
    Ok(())
}

/// The stage table (with cores when the process's CPU is known) and the top symbols of a profile.
fn print_profile(stages: &[(String, f64)], symbols: &[(f64, String, String)], cores: Option<f64>) {
    println!("| stage (perf cpu-clock samples) | share | cores |");
    println!("|---|---|---|");
    for (stage, share) in stages {
        let cores = cores.map_or("".to_owned(), |c| format!("{:.3}", share * c));
        println!("| {stage} | {:.1} % | {cores} |", share * 100.0);
    }
    println!("top symbols:");
    for (share, dso, symbol) in symbols {
        println!("  {:5.1} %  {dso}  {symbol}", share * 100.0);
    }
}
