//! Live captions end to end (issue 8) with real containers: an in-process SFU, the real `calls-offloader`
//! binary and the `calls-transcriber:latest` image started as a `transcribing` job with `live_captions`
//! on (live captions with base, the default model, which the image carries as CTranslate2 files). Alice and Bob speak espeak-ng sentences one after the other, then Alice
//! sends low noise without speech. A third participant listens as any page would: it must receive, for
//! each sentence, partial captions and then a final one under the same caption id, attributed to the
//! speaker, with a word error rate of at most 30 %; nothing for the noise. The post-call transcript is still
//! produced, and the offloader's `/metrics` carries the live-caption series of the job.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use calls_e2e::call::{wait_joined, CallStack};
use calls_e2e::cpu::{container_cpu_seconds, own_cpu_seconds};
use calls_e2e::offloader::{serial, OffloaderSettings};
use calls_e2e::speech;
use calls_participant::{Event, Participant};
use calls_protocol::jobs::JobState;
use calls_protocol::signalling::Caption;
use calls_transcriber::evaluation::{self, word_error_rate};
use serde_json::Value;
use tokio::time::Instant;

const SECRET: &str = "captions-e2e-token-secret-0123456789abcdef";
const CALL: &str = "call-captioned-e2e";

/// Who says what, in which voice, when (seconds after the bot joined).
const SCRIPT: [(&str, &str, f64, &str); 2] = [
    (
        "Alice",
        "en-us+f2",
        1.0,
        "Good morning everyone, let's start with the status update.",
    ),
    (
        "Bob",
        "en-us+m3",
        7.0,
        "The new release is planned for the end of next month.",
    ),
];
/// Alice sends low noise (no speech) from NOISE_FROM for NOISE_SECONDS.
const NOISE_FROM: f64 = 13.0;
const NOISE_SECONDS: f64 = 8.0;

/// An SFU on the Docker bridge address and the real offloader running the transcriber image.
async fn start_stack() -> anyhow::Result<CallStack> {
    let settings = OffloaderSettings::transcriber();
    CallStack::start(
        "transcriber",
        "captions",
        SECRET,
        CALL,
        settings,
        "captions",
    )
    .await
}

type Heard = Arc<Mutex<Vec<(Instant, Caption)>>>;

/// Collects every caption `listener` receives, with its arrival time.
fn listen(mut listener: Participant) -> (Heard, tokio::task::JoinHandle<()>) {
    let heard: Heard = Arc::default();
    let task = {
        let heard = Arc::clone(&heard);
        tokio::spawn(async move {
            while let Some(event) = listener.next_event().await {
                if let Event::Caption(caption) = event {
                    heard
                        .lock()
                        .expect("the lock is never poisoned")
                        .push((Instant::now(), caption));
                }
            }
        })
    };
    (heard, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_captions_reach_the_call_partials_then_finals_per_speaker() -> anyhow::Result<()> {
    let _serial = serial().await;
    let dir = tempfile::tempdir()?;
    let speech: Vec<Vec<i16>> = SCRIPT
        .iter()
        .enumerate()
        .map(|(i, (_, voice, _, text))| {
            speech::speak_with_args(
                dir.path(),
                &format!("line{i}"),
                text,
                &evaluation::espeak_args(voice),
            )
        })
        .collect::<anyhow::Result<_>>()?;

    let stack = start_stack().await?;
    let alice = stack.join("Alice").await?;
    let bob = stack.join("Bob").await?;
    let (heard, listening) = listen(stack.join("Listener").await?);
    let job = stack.live_captions_job("base").await?;
    let t0 = wait_joined(&stack.client, &job).await?;
    let CallStack {
        sfu,
        offloader,
        client,
        ..
    } = stack;
    let at = |s: f64| t0 + Duration::from_secs_f64(s);

    let mut ended_at = Vec::new();
    for (index, (speaker, _, when, _)) in SCRIPT.iter().enumerate() {
        tokio::time::sleep_until(at(*when)).await;
        let who = if *speaker == "Alice" { &alice } else { &bob };
        who.send_voice(speech[index].clone()).await??;
        ended_at.push(Instant::now());
    }
    tokio::time::sleep_until(at(NOISE_FROM)).await;
    let noise_start = t0.elapsed().as_millis() as u64;
    alice
        .send_voice(speech::white_noise(NOISE_SECONDS, 7_919))
        .await??;
    let noise_end = t0.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let done = client
        .stop_and_wait(&job.id, Duration::from_secs(900))
        .await?;
    let logs = client.logs(&job.id).await.unwrap_or_default();
    eprintln!("transcriber logs:\n{logs}");
    assert_eq!(done.state, JobState::Succeeded, "{done:?}\nlogs:\n{logs}");
    assert!(logs.contains("live captions on"), "{logs}");
    listening.abort();

    let heard = heard.lock().expect("the lock is never poisoned").clone();
    for (arrived, caption) in &heard {
        eprintln!(
            "{:6.2} s {} {:?} [{}..{}] {:?} + {:?}",
            arrived.duration_since(t0).as_secs_f64(),
            if caption.is_final {
                "final  "
            } else {
                "partial"
            },
            caption.speaker_name,
            caption.start_ms,
            caption.end_ms,
            caption.text,
            caption.tail
        );
    }
    for (index, (speaker, _, _, text)) in SCRIPT.iter().enumerate() {
        let finals: Vec<&(Instant, Caption)> = heard
            .iter()
            .filter(|(_, c)| c.is_final && c.speaker_name.as_deref() == Some(speaker))
            .collect();
        let all_text = finals
            .iter()
            .map(|(_, c)| c.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let wer = word_error_rate(text, &all_text);
        eprintln!(
            "{speaker}: WER {:.0} % — {all_text:?}; final {:.2} s after the speech ended",
            wer * 100.0,
            finals
                .last()
                .map(|(arrived, _)| arrived
                    .saturating_duration_since(ended_at[index])
                    .as_secs_f64())
                .unwrap_or(f64::NAN)
        );
        assert!(
            wer <= 0.30,
            "{speaker}'s live caption: {all_text:?} for {text:?}"
        );
        // Each final replaced partials shown under its id while the sentence was spoken.
        let ids: Vec<&str> = finals.iter().filter_map(|(_, c)| c.id.as_deref()).collect();
        assert!(!ids.is_empty(), "captions carry ids");
        let partials = heard
            .iter()
            .filter(|(_, c)| !c.is_final && c.id.as_deref().is_some_and(|id| ids.contains(&id)))
            .count();
        assert!(partials >= 1, "{speaker}: no partial before the final");
    }
    let during_noise: Vec<&Caption> = heard
        .iter()
        .map(|(_, c)| c)
        .filter(|c| c.end_ms > noise_start + 500 && c.start_ms < noise_end)
        .collect();
    assert!(
        during_noise.is_empty(),
        "captions for noise: {during_noise:?}"
    );

    // The post-call transcript is still made; the offloader exports the job's live-caption series.
    let txt = client
        .get(&format!("/jobs/{}/artifacts/transcript.txt", job.id))
        .await?;
    assert!(txt.status.is_success(), "{}", txt.text());
    assert!(
        txt.text().contains("Alice") && txt.text().contains("Bob"),
        "{}",
        txt.text()
    );
    let windows = offloader
        .metric("calls_offloader_jobs_live_captions_new_audio_len_ms_count{type=\"transcribing\"}")
        .await?;
    assert!(windows >= 2.0, "windows transcribed live: {windows}");
    let text = offloader.anonymous().get("/metrics").await?.text();
    for series in [
        "calls_offloader_jobs_live_captions_caption_latency_seconds_bucket",
        "calls_offloader_jobs_live_captions_window_dropped{type=\"transcribing\"}",
        "calls_offloader_jobs_live_captions_pktPayloadCh_buf_full{type=\"transcribing\"}",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }
    // The Grafana dashboard shipped with the stack queries only series this running stack exports.
    let sfu_metrics = reqwest::get(format!("{}/metrics", sfu.http_url()))
        .await?
        .text()
        .await?;
    let exported = format!("{text}\n{sfu_metrics}");
    let missing = dashboard_series()?
        .into_iter()
        .filter(|series| {
            !exported
                .lines()
                .any(|line| !line.starts_with('#') && line.starts_with(series.as_str()))
        })
        .collect::<Vec<_>>();
    assert!(
        missing.is_empty(),
        "the dashboard queries series nobody exports: {missing:?}"
    );
    alice.leave().await?;
    bob.leave().await?;
    sfu.shutdown().await;
    Ok(())
}

/// Every metric name the shipped dashboard's queries use.
fn dashboard_series() -> anyhow::Result<Vec<String>> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana/calls-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut names = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().context("panels")? {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().context("a query")?;
            let mut rest = expr;
            while let Some(start) = ["sfu_", "calls_offloader_"]
                .iter()
                .filter_map(|prefix| rest.find(prefix))
                .min()
            {
                let name: String = rest[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[start + name.len()..];
                names.insert(name);
            }
        }
    }
    anyhow::ensure!(names.len() >= 10, "the dashboard queries {names:?}");
    Ok(names.into_iter().collect())
}

/// `captions-bench`: three speakers talk at the same time for about 60 s (sentences 1 s apart), a listener
/// measures, per sentence, the time from the end of its speech to its final caption; prints latency
/// p50/p95/max, the partial-caption interval, the live series and the transcriber's CPU. Run by hand, once per
/// live model (docs/benchmarks.md):
/// `CAPTIONS_BENCH_MODEL=base cargo test -p calls-e2e --test captions_e2e -- --ignored --nocapture captions_bench`
/// (`CAPTIONS_BENCH_LOGS=FILE` keeps the job's log, with a line per live window handed out and transcribed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: prints figures, run by hand"]
async fn captions_bench() -> anyhow::Result<()> {
    let _serial = serial().await;
    let model = std::env::var("CAPTIONS_BENCH_MODEL").unwrap_or_else(|_| "base".into());
    let dir = tempfile::tempdir()?;
    const RATE: usize = 48_000;
    // Each speaker: sentences in their own voice with 1 s of silence between, to about 60 s.
    let mut tracks: Vec<(Vec<i16>, Vec<f64>)> = Vec::new();
    for (speaker, voice) in ["en-us+m3", "en-us+f2", "en-gb"].iter().enumerate() {
        let mut pcm = Vec::new();
        let mut ends = Vec::new();
        let mut index = speaker;
        while pcm.len() < 58 * RATE {
            let sentence = evaluation::SENTENCES[index % evaluation::SENTENCES.len()];
            index += 3;
            let spoken = speech::speak_with_args(
                dir.path(),
                &format!("s{speaker}-{index}"),
                sentence,
                &evaluation::espeak_args(voice),
            )?;
            // Latency counts from the end of the speech, not of the clip (espeak-ng adds 0.45 s of silence).
            ends.push((pcm.len() + speech::speech_end(&spoken)) as f64 / RATE as f64);
            pcm.extend(spoken);
            pcm.extend(std::iter::repeat_n(0i16, RATE));
        }
        tracks.push((pcm, ends));
    }
    let stack = start_stack().await?;
    let names = ["Alice", "Bob", "Carol"];
    let mut people = Vec::new();
    for name in names {
        people.push(stack.join(name).await?);
    }
    let (heard, listening) = listen(stack.join("Listener").await?);
    let job = stack.live_captions_job(&model).await?;
    wait_joined(&stack.client, &job).await?;
    let CallStack {
        sfu,
        offloader,
        client,
        ..
    } = stack;
    let cpu_before = container_cpu_seconds(&job.container_name);
    let stack_cpu_before = own_cpu_seconds();
    let started = Instant::now() + Duration::from_secs(1);
    tokio::time::sleep_until(started).await;
    let sending: Vec<_> = people
        .iter()
        .zip(&tracks)
        .map(|(person, (pcm, _))| person.send_voice(pcm.clone()))
        .collect();
    for sent in sending {
        sent.await??;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let talked = started.elapsed().as_secs_f64();
    let cpu = container_cpu_seconds(&job.container_name) - cpu_before;
    let stack_cpu = own_cpu_seconds() - stack_cpu_before;
    client.stop(&job.id).await?;
    let done = client.wait_final(&job.id, Duration::from_secs(900)).await?;
    listening.abort();
    let logs = client.logs(&job.id).await.unwrap_or_default();
    if let Ok(path) = std::env::var("CAPTIONS_BENCH_LOGS") {
        std::fs::write(&path, &logs)?;
    }

    let heard = heard.lock().expect("the lock is never poisoned").clone();
    let mut latencies = Vec::new();
    let mut missed = 0;
    for (name, (_, ends)) in names.iter().zip(&tracks) {
        let finals: Vec<&(Instant, Caption)> = heard
            .iter()
            .filter(|(_, c)| c.is_final && c.speaker_name.as_deref() == Some(name))
            .collect();
        for end in ends {
            let spoken_end = started + Duration::from_secs_f64(*end);
            // The first final that arrives after the sentence ended.
            match finals.iter().find(|(arrived, _)| *arrived >= spoken_end) {
                Some((arrived, _)) => {
                    latencies.push(arrived.duration_since(spoken_end).as_secs_f64())
                }
                None => missed += 1,
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut partial_gaps = Vec::new();
    let mut by_id: BTreeMap<&str, Vec<Instant>> = BTreeMap::new();
    for (arrived, caption) in &heard {
        if let Some(id) = caption.id.as_deref() {
            by_id.entry(id).or_default().push(*arrived);
        }
    }
    for arrivals in by_id.values() {
        partial_gaps.extend(
            arrivals
                .windows(2)
                .map(|w| w[1].duration_since(w[0]).as_secs_f64()),
        );
    }
    partial_gaps.sort_by(f64::total_cmp);
    // Mattermost's figure: the share of windows transcribed in under 2 s (from the job's debug lines).
    let mut sent_at = BTreeMap::new();
    let mut took = Vec::new();
    for line in logs.lines() {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|part| part.strip_prefix(name))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(id), Some(now)) = (field("id="), field("now_ms=")) {
            if line.contains("live window to a worker") {
                sent_at.insert(id, now);
            } else if line.contains("live window transcribed") {
                if let Some(sent) = sent_at.get(&id) {
                    took.push(now.saturating_sub(*sent));
                }
            }
        }
    }
    let under_2s = took.iter().filter(|ms| **ms < 2000).count();
    let metric = |name: &str| {
        let offloader = &offloader;
        let name = name.to_owned();
        async move {
            offloader
                .metric(&format!(
                    "calls_offloader_jobs_live_captions_{name}{{type=\"transcribing\"}}"
                ))
                .await
                .unwrap_or(f64::NAN)
        }
    };
    println!(
        "captions-bench: live model {model}, 3 speakers at once for {talked:.0} s, job {:?}; load average {}",
        done.state,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    println!(
        "| sentences | captioned | latency p50 s | p95 s | max s | partial interval p50 s | max s | windows < 2 s | window_dropped | partials_dropped | pktPayloadCh_buf_full | transcriber CPU cores | test process CPU cores |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {}/{} ({:.0} %) | {} | {} | {} | {:.2} | {:.2} |",
        latencies.len() + missed,
        latencies.len(),
        quantile(0.5),
        quantile(0.95),
        latencies.last().copied().unwrap_or(f64::NAN),
        partial_gaps.get(partial_gaps.len() / 2).copied().unwrap_or(f64::NAN),
        partial_gaps.last().copied().unwrap_or(f64::NAN),
        under_2s,
        took.len(),
        100.0 * under_2s as f64 / took.len().max(1) as f64,
        metric("window_dropped").await,
        metric("partials_dropped").await,
        metric("pktPayloadCh_buf_full").await,
        cpu / talked,
        stack_cpu / talked,
    );
    sfu.shutdown().await;
    Ok(())
}
