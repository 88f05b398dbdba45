//! The transcriber end to end with real containers (issue 7): an in-process SFU and the real
//! `calls-offloader` binary on the Docker bridge address, and the `calls-transcriber:latest` image
//! (default model baked in) started by the offloader as a `transcribing` job. Three participants
//! speak espeak-ng sentences in different voices at known times — Bob overlaps Alice, Bob mutes and
//! unmutes between his sentences, Carol leaves early — and Alice plays 20 s of low noise without
//! speech. The job is stopped through the API; the test downloads the four transcript artifacts
//! and checks that every sentence is there, attributed to its speaker, with a word error rate of at
//! most 15 %, a cue starting within 1 s of when it was spoken, and no cue during the noise.
//! Failure cases: an unknown model, an SFU nobody can reach, a call without speech (succeeds with an
//! empty transcript and says so), and a container killed while it transcribes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use calls_e2e::client::Client;
use calls_e2e::offloader::{bin_dir, serial, Offloader, OffloaderSettings};
use calls_e2e::{docker, speech};
use calls_participant::{JoinOptions, Participant, Role};
use calls_protocol::jobs::{CreateJobRequest, Job, JobState, JobType};
use calls_sfu::RunningSfu;
use serde_json::{json, Value};
use tokio::time::Instant;

const SECRET: &str = "transcriber-e2e-token-secret-0123456789abcdef";
const CALL: &str = "call-transcribed-e2e";
const IMAGE: &str = "calls-transcriber:latest";
const ARTIFACTS: [&str; 4] = [
    "transcript.vtt",
    "transcript.srt",
    "transcript.txt",
    "transcript.json",
];

/// One line of the script: who says what, in which voice, when (seconds after the bot joined).
struct Line {
    speaker: &'static str,
    voice: &'static str,
    at: f64,
    text: &'static str,
}

const SCRIPT: [Line; 5] = [
    Line {
        speaker: "Alice",
        voice: "en-us+f3",
        at: 1.0,
        text: "The birch canoe slid on the smooth planks.",
    },
    // Overlaps the end of Alice's sentence.
    Line {
        speaker: "Bob",
        voice: "en+m3",
        at: 3.0,
        text: "Glue the sheet to the dark blue background.",
    },
    // Bob mutes after his first sentence and unmutes before this one.
    Line {
        speaker: "Bob",
        voice: "en+m3",
        at: 11.0,
        text: "These days a chicken leg is a rare dish.",
    },
    // Carol leaves right after this sentence.
    Line {
        speaker: "Carol",
        voice: "en-gb+f4",
        at: 15.0,
        text: "Rice is often served in round bowls.",
    },
    Line {
        speaker: "Alice",
        voice: "en-us+f3",
        at: 42.0,
        text: "The juice of lemons makes fine punch.",
    },
];
/// Alice plays low noise (no speech) from NOISE_FROM for 20 s.
const NOISE_FROM: f64 = 20.5;
const NOISE_SECONDS: f64 = 20.0;
const STOP_AT: f64 = 47.0;

struct Stack {
    sfu: RunningSfu,
    _offloader: Offloader,
    client: Client,
    bridge: IpAddr,
}

async fn start_stack(tag: &str) -> anyhow::Result<Stack> {
    docker::ensure_image(&bin_dir()?, "transcriber")?;
    let bridge: IpAddr = docker::bridge_gateway()
        .parse()
        .context("the bridge gateway is an IP address")?;
    let mut config = calls_sfu::Config::for_local_test(SECRET);
    config.http_listen_address = SocketAddr::new(bridge, 0);
    config.ice.host_addresses = vec![bridge];
    let sfu = calls_sfu::start(config).await.context("the SFU starts")?;
    let settings = OffloaderSettings {
        transcribing_image: IMAGE.to_owned(),
        // Transcription happens between SIGTERM and SIGKILL when a job is stopped through the API.
        stop_grace_period: "300s".into(),
        memory_mb: 2048,
        max_duration: "600s".into(),
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start(tag, settings).await?;
    let client = offloader.register("transcriber").await?;
    Ok(Stack {
        sfu,
        _offloader: offloader,
        client,
        bridge,
    })
}

fn token(name: &str, role: Role) -> String {
    calls_sfu::token::mint(
        SECRET.as_bytes(),
        CALL,
        name,
        role,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .expect("a token mints from a valid secret")
}

async fn join(stack: &Stack, name: &str) -> anyhow::Result<Participant> {
    let options = JoinOptions {
        call_id: Some(CALL.to_owned()),
        bind_ip: Some(stack.bridge),
        ..JoinOptions::default()
    };
    let mut participant = Participant::join(
        &stack.sfu.ws_url(),
        &token(name, Role::Participant),
        options,
    )
    .await?;
    participant.wait_connected(Duration::from_secs(10)).await?;
    Ok(participant)
}

async fn request(stack: &Stack, sfu_url: &str, extra: &[(&str, Value)]) -> anyhow::Result<Job> {
    let mut input_data: BTreeMap<String, Value> = [
        ("call_id", json!(CALL)),
        ("sfu_url", json!(sfu_url)),
        ("bot_token", json!(token("Transcriber", Role::Bot))),
        ("alone_timeout_sec", json!(30)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, value) in extra {
        input_data.insert((*key).to_owned(), value.clone());
    }
    let job = stack
        .client
        .create_job(&CreateJobRequest {
            job_type: JobType::Transcribing,
            runner: None,
            max_duration_sec: None,
            input_data,
        })
        .await?;
    assert_eq!(job.runner, IMAGE);
    assert_eq!(job.secret_fields, ["bot_token"], "{job:?}");
    Ok(job)
}

/// Waits until the transcriber reports that it joined (its call clock starts then).
async fn wait_joined(client: &Client, job: &Job) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let view = client.job(&job.id).await?;
        if view.progress.as_deref() == Some("joined the call") {
            return Ok(Instant::now());
        }
        if view.state.is_final() || Instant::now() >= deadline {
            let logs = client.logs(&job.id).await.unwrap_or_default();
            bail!("the transcriber never reported joining: {view:?}\nits logs:\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn artifact(client: &Client, job_id: &str, name: &str) -> anyhow::Result<String> {
    let reply = client
        .get(&format!("/jobs/{job_id}/artifacts/{name}"))
        .await?;
    if !reply.status.is_success() {
        bail!("artifact {name}: {} {}", reply.status, reply.text());
    }
    Ok(reply.text())
}

/// Lowercase words, punctuation removed.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate of `hypothesis` against `reference` (word-level edit distance ÷ reference words).
fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, hw) in h.iter().enumerate() {
            let substitution = previous + usize::from(rw != hw);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[h.len()] as f64 / r.len().max(1) as f64
}

#[test]
fn word_error_rate_counts_edits_per_reference_word() {
    assert_eq!(word_error_rate("The cat sat.", "the cat sat"), 0.0);
    assert!((word_error_rate("a b c d", "a x c") - 0.5).abs() < 1e-9);
}

// Not yet passing (issue 7 stays open): the job runs end to end and uploads all four artifacts, but the
// first sentence of each newly joined speaker loses its first words (heard "and I wish you can use it on
// the swim planks" for "The birch canoe slid on the smooth planks"), and Bob's sentence after his
// unmute is placed right after his first one instead of at 11 s. Run it with `--ignored`.
#[ignore = "issue 7: first words of a new speaker lost, unmute placement wrong (see the comment)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transcription_job_transcribes_every_speaker_at_the_right_time() -> anyhow::Result<()> {
    let _serial = serial().await;
    let dir = tempfile::tempdir()?;
    let speech: Vec<Vec<i16>> = SCRIPT
        .iter()
        .enumerate()
        .map(|(i, line)| {
            speech::speak_with(dir.path(), &format!("line{i}"), line.text, Some(line.voice))
        })
        .collect::<anyhow::Result<_>>()?;

    let stack = start_stack("tx").await?;
    let alice = join(&stack, "Alice").await?;
    let bob = join(&stack, "Bob").await?;
    let carol = join(&stack, "Carol").await?;
    let job = request(&stack, &stack.sfu.http_url(), &[]).await?;
    let t0 = wait_joined(&stack.client, &job).await?;
    eprintln!("transcriber joined; job {}", job.id);
    let at = |s: f64| t0 + Duration::from_secs_f64(s);

    let mut voices = Vec::new();
    for (index, line) in SCRIPT.iter().enumerate().take(4) {
        tokio::time::sleep_until(at(line.at)).await;
        let pcm = speech[index].clone();
        voices.push(match line.speaker {
            "Alice" => alice.send_voice(pcm),
            "Bob" => bob.send_voice(pcm),
            _ => carol.send_voice(pcm),
        });
        if index == 1 {
            // Bob mutes once his first sentence is over and unmutes before his second.
            let end = line.at + speech::duration_of(&speech[1]).as_secs_f64() + 0.5;
            tokio::time::sleep_until(at(end)).await;
            bob.mute().await?;
            tokio::time::sleep_until(at(SCRIPT[2].at - 1.0)).await;
            bob.unmute().await?;
        }
    }
    // Carol leaves early.
    let carol_end = SCRIPT[3].at + speech::duration_of(&speech[3]).as_secs_f64() + 0.5;
    tokio::time::sleep_until(at(carol_end)).await;
    for voice in voices.drain(..) {
        voice.await??;
    }
    carol.leave().await?;

    // Twenty seconds of low white noise from Alice: no speech, so no cue.
    tokio::time::sleep_until(at(NOISE_FROM)).await;
    let mut seed = 12_345u32;
    let noise: Vec<i16> = (0..(NOISE_SECONDS * 48_000.0) as usize)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((seed >> 16) as i16) / 100
        })
        .collect();
    alice.send_voice(noise).await??;

    tokio::time::sleep_until(at(SCRIPT[4].at)).await;
    alice.send_voice(speech[4].clone()).await??;
    let health = docker::inspect(&job.container_name, "{{.State.Health.Status}}");
    assert_eq!(health.as_deref(), Some("healthy"), "docker health status");

    tokio::time::sleep_until(at(STOP_AT)).await;
    let stop = stack.client.stop(&job.id).await?;
    assert!(stop.status.is_success(), "{} {}", stop.status, stop.text());
    let stopped = Instant::now();
    let done = stack
        .client
        .wait_final(&job.id, Duration::from_secs(300))
        .await?;
    let logs = stack.client.logs(&job.id).await.unwrap_or_default();
    assert_eq!(done.state, JobState::Succeeded, "{done:?}\nlogs:\n{logs}");
    eprintln!(
        "job succeeded {:.1} s after the stop request: {:?} {:?}",
        stopped.elapsed().as_secs_f64(),
        done.progress,
        done.counters
    );
    for phase in [
        "joined call",
        "speaker seen",
        "call ended",
        "transcribing",
        "uploaded",
    ] {
        assert!(
            logs.contains(phase),
            "no {phase:?} line in the logs:\n{logs}"
        );
    }
    for counter in [
        "audio_seconds",
        "speech_seconds",
        "segments",
        "real_time_factor",
    ] {
        assert!(
            done.counters.get(counter).is_some_and(|v| *v > 0.0),
            "counter {counter}: {:?}",
            done.counters
        );
    }

    let mut texts = BTreeMap::new();
    for name in ARTIFACTS {
        texts.insert(name, artifact(&stack.client, &job.id, name).await?);
    }
    eprintln!("transcript.txt:\n{}", texts["transcript.txt"]);
    assert!(
        texts["transcript.vtt"].starts_with("WEBVTT"),
        "{}",
        texts["transcript.vtt"]
    );
    for name in ["Alice", "Bob", "Carol"] {
        assert!(
            texts["transcript.vtt"].contains(&format!("<v {name}>")),
            "{}",
            texts["transcript.vtt"]
        );
    }
    let transcript: Value = serde_json::from_str(&texts["transcript.json"])?;
    let segments = transcript["segments"].as_array().context("segments")?;
    for (index, line) in SCRIPT.iter().enumerate() {
        let spoken = speech::duration_of(&speech[index]).as_secs_f64();
        let (from, to) = ((line.at - 1.0) * 1000.0, (line.at + spoken + 1.0) * 1000.0);
        let mine: Vec<&Value> = segments
            .iter()
            .filter(|s| s["speaker"] == line.speaker)
            .filter(|s| {
                let start = s["start_ms"].as_f64().unwrap_or(-1.0);
                start >= from && start <= to
            })
            .collect();
        let text: Vec<&str> = mine.iter().filter_map(|s| s["text"].as_str()).collect();
        let text = text.join(" ");
        let wer = word_error_rate(line.text, &text);
        eprintln!(
            "{} at {:.1} s: {text:?} (wer {:.0}%)",
            line.speaker,
            line.at,
            wer * 100.0
        );
        assert!(
            wer <= 0.15,
            "{}'s sentence {:?} heard as {text:?}",
            line.speaker,
            line.text
        );
        let first = mine
            .iter()
            .filter_map(|s| s["start_ms"].as_f64())
            .fold(f64::MAX, f64::min);
        assert!(
            (first / 1000.0 - line.at).abs() <= 1.0,
            "{}'s cue starts at {:.2} s, spoken at {:.2} s",
            line.speaker,
            first / 1000.0,
            line.at
        );
    }
    let during_noise: Vec<&Value> = segments
        .iter()
        .filter(|s| {
            let start = s["start_ms"].as_f64().unwrap_or(0.0) / 1000.0;
            start > NOISE_FROM + 0.5 && start < NOISE_FROM + NOISE_SECONDS
        })
        .collect();
    assert!(
        during_noise.is_empty(),
        "cues during the noise: {during_noise:?}"
    );

    alice.leave().await?;
    bob.leave().await?;
    stack.sfu.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_model_fails_with_the_models_the_image_has() -> anyhow::Result<()> {
    let _serial = serial().await;
    let stack = start_stack("txmodel").await?;
    let job = request(
        &stack,
        &stack.sfu.http_url(),
        &[("model", json!("huge-v9"))],
    )
    .await?;
    let done = stack
        .client
        .wait_final(&job.id, Duration::from_secs(60))
        .await?;
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let reason = done.failure_reason.unwrap_or_default();
    assert!(
        reason.contains("unknown model \"huge-v9\": available models are")
            && reason.contains("base"),
        "{reason}"
    );
    assert_no_artifacts(&stack.client, &job.id).await?;
    stack.sfu.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_sfu_fails_the_job_with_a_reason() -> anyhow::Result<()> {
    let _serial = serial().await;
    let stack = start_stack("txsfu").await?;
    // A port on the bridge address where nothing listens.
    let unused = std::net::TcpListener::bind((stack.bridge, 0))?.local_addr()?;
    let job = request(&stack, &format!("http://{unused}"), &[]).await?;
    let done = stack
        .client
        .wait_final(&job.id, Duration::from_secs(90))
        .await?;
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let reason = done.failure_reason.unwrap_or_default();
    assert!(reason.contains("call: joining"), "{reason}");
    assert_no_artifacts(&stack.client, &job.id).await?;
    stack.sfu.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_without_speech_succeeds_with_an_empty_transcript() -> anyhow::Result<()> {
    let _serial = serial().await;
    let stack = start_stack("txquiet").await?;
    let alice = join(&stack, "Alice").await?;
    let job = request(&stack, &stack.sfu.http_url(), &[]).await?;
    let t0 = wait_joined(&stack.client, &job).await?;
    // Silence (digital zero) for a few seconds, then the call ends for the bot by a stop request.
    alice.send_voice(vec![0; 48_000 * 4]).await??;
    tokio::time::sleep_until(t0 + Duration::from_secs(6)).await;
    stack.client.stop(&job.id).await?;
    let done = stack
        .client
        .wait_final(&job.id, Duration::from_secs(120))
        .await?;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert!(
        done.progress
            .as_deref()
            .is_some_and(|p| p.starts_with("no speech found")),
        "{done:?}"
    );
    let json: Value =
        serde_json::from_str(&artifact(&stack.client, &job.id, "transcript.json").await?)?;
    assert_eq!(json["segments"].as_array().map(Vec::len), Some(0), "{json}");
    let vtt = artifact(&stack.client, &job.id, "transcript.vtt").await?;
    assert!(vtt.starts_with("WEBVTT") && !vtt.contains("-->"), "{vtt}");
    alice.leave().await?;
    stack.sfu.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_container_mid_transcription_fails_the_job_with_its_last_lines(
) -> anyhow::Result<()> {
    let _serial = serial().await;
    let dir = tempfile::tempdir()?;
    let stack = start_stack("txkill").await?;
    let alice = join(&stack, "Alice").await?;
    // Not stopped through the API (that would make the job `cancelled`): Alice leaves, the bot is alone.
    let job = request(
        &stack,
        &stack.sfu.http_url(),
        &[("alone_timeout_sec", json!(2))],
    )
    .await?;
    wait_joined(&stack.client, &job).await?;
    let sentence = speech::speak(dir.path(), "long", &SCRIPT.map(|l| l.text).join(" "))?;
    alice.send_voice(sentence).await??;
    alice.leave().await?;
    // Kill it once it says it is transcribing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = docker::logs(&job.container_name).unwrap_or_default();
        if logs.contains("transcribing") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never started transcribing:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    docker::kill(&job.container_name)?;
    let done = stack
        .client
        .wait_final(&job.id, Duration::from_secs(60))
        .await?;
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    let reason = done.failure_reason.unwrap_or_default();
    assert!(reason.starts_with("exited 137 (signal 9)"), "{reason}");
    assert!(
        reason.contains("transcribing"),
        "the reason quotes the last log lines: {reason}"
    );
    assert_no_artifacts(&stack.client, &job.id).await?;
    stack.sfu.shutdown().await;
    Ok(())
}

async fn assert_no_artifacts(client: &Client, job_id: &str) -> anyhow::Result<()> {
    for name in ARTIFACTS {
        let reply = client
            .get(&format!("/jobs/{job_id}/artifacts/{name}"))
            .await?;
        assert_eq!(
            reply.status,
            reqwest::StatusCode::NOT_FOUND,
            "{name} exists"
        );
    }
    Ok(())
}
