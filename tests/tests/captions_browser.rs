//! Live captions as people in a browser see them (issue 8), with the real transcriber image: an
//! in-process SFU and the real `calls-offloader` on the Docker bridge run `calls-transcriber:latest`
//! as a `transcribing` job with live captions on tiny.en. Carol talks from the demo page in headless
//! Chromium, whose fake microphone plays a WAV file once (`--use-file-for-fake-audio-capture`:
//! silence, an espeak-ng sentence, silence); Alice and Bob, participant-library clients, say their
//! own sentences after her, one at a time. Dave follows the call on the demo page in a second
//! Chromium whose microphone plays silence all along. What Dave's page shows is read from its DOM
//! four times a second: each sentence must end as final caption lines under the right speaker's
//! name and session, with a word error rate of at most 30 %; a final line never changes again; the
//! speaker's latest words show under their name in the participant list; and silence gives no
//! caption: no line for Dave (his microphone plays silence all along), none for a speaker before they
//! speak, and no change at all to the page while, once every sentence shows final, all four send
//! silence for a while. Skipped, with a message, when Chromium is not installed (a failure under
//! `CI=true`).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use calls_browser_test::captions::{self, seconds_between, Timeline};
use calls_browser_test::{chromium_or_skip, demo, Chromium, LaunchOptions, Microphone, Page};
use calls_e2e::call::{wait_joined, CallStack};
use calls_e2e::offloader::{serial, OffloaderSettings};
use calls_e2e::speech;
use calls_participant::{audio, Participant};
use calls_protocol::jobs::{Job, JobState};
use calls_transcriber::evaluation::{self, word_error_rate};
use tokio::time::Instant;

const SECRET: &str = "captions-browser-token-secret-0123456789abcdef";
const CALL: &str = "call-captioned-in-a-browser";
const CAROL: &str = "Carol in Chromium";
const DAVE: &str = "Dave listening in Chromium";

/// Each speaker's sentence: an index into `evaluation::SENTENCES`, spoken in the voice the evaluation
/// gives that index.
const CAROL_SENTENCE: usize = 2;
const ALICE_SENTENCE: usize = 5;
const BOB_SENTENCE: usize = 6;
/// Silence at the start of Carol's microphone file. Her page opens the microphone when Join is
/// pressed; it must be in the call, and the transcriber receiving its audio, before she speaks.
const CAROL_LEAD_IN: Duration = Duration::from_secs(6);
/// When Alice and Bob start speaking, after Carol's page pressed Join (her sentence ends ≈ 10.5 s
/// after it).
const ALICE_AT: Duration = Duration::from_secs(12);
const BOB_AT: Duration = Duration::from_secs(18);
/// Once every sentence shows final, everybody is silent for this long — the browsers' microphones play
/// silence, Alice and Bob send digital silence — and Dave's page must not change at all.
const QUIET: Duration = Duration::from_secs(8);
/// How late a caption line may first appear after its speaker stopped: the transcriber gives up on a
/// final that waited 10 s (docs/transcriber.md), and the page is read every 250 ms. A line that
/// appears later, or before the speaker started, captions silence.
const LATEST_LINE: Duration = Duration::from_millis(10_500);
/// How long after Bob stops "every sentence shows final" is judged at the earliest: the end of his
/// sentence can be an utterance of its own whose final comes without a partial (a pause inside the
/// sentence on a loaded machine) about 0.5-1.5 s after his last word, so "all lines final" right at his
/// last word may not be the end yet (CI saw that final land 0.5 s into the quiet phase).
const SETTLE: Duration = Duration::from_secs(2);
/// How often Dave's page is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Someone who speaks in the call.
struct Speaker {
    name: &'static str,
    session: String,
    sentence: &'static str,
    /// When their sentence started and ended.
    spoke: (Instant, Instant),
}

/// A WAV for Carol's microphone (silence, her sentence, a second of silence), one for Dave's (a
/// second of silence, looped), and Alice's and Bob's sentences.
struct Speech {
    carol_wav: std::path::PathBuf,
    carol_seconds: f64,
    silence_wav: std::path::PathBuf,
    alice: Vec<i16>,
    bob: Vec<i16>,
}

fn sentence(index: usize) -> (&'static str, Vec<String>) {
    let voice = evaluation::VOICES[index % evaluation::VOICES.len()];
    (evaluation::SENTENCES[index], evaluation::espeak_args(voice))
}

fn make_speech(dir: &Path) -> anyhow::Result<Speech> {
    let spoken = |name: &str, index: usize| {
        let (text, args) = sentence(index);
        speech::speak_with_args(dir, name, text, &args)
    };
    let rate = speech::SAMPLE_RATE as f64;
    let carol = spoken("carol", CAROL_SENTENCE)?;
    let mut file = vec![0i16; (CAROL_LEAD_IN.as_secs_f64() * rate) as usize];
    file.extend_from_slice(&carol);
    file.extend(std::iter::repeat_n(0i16, rate as usize));
    let carol_wav = dir.join("carol-microphone.wav");
    audio::write_wav(&carol_wav, &file)?;
    let silence_wav = dir.join("silence.wav");
    audio::write_wav(&silence_wav, &vec![0i16; rate as usize])?;
    Ok(Speech {
        carol_wav,
        carol_seconds: speech::duration_of(&carol).as_secs_f64(),
        silence_wav,
        alice: spoken("alice", ALICE_SENTENCE)?,
        bob: spoken("bob", BOB_SENTENCE)?,
    })
}

/// A Chromium whose fake microphone plays `wav` (once, or `looped`), allowed to use it on the SFU's
/// plain-HTTP bridge address, and a tab in it.
async fn browser(
    binary: &Path,
    origin: &str,
    wav: &Path,
    looped: bool,
) -> anyhow::Result<(Chromium, Page)> {
    let options = LaunchOptions {
        microphone: Microphone::Wav {
            path: wav.to_owned(),
            looped,
        },
        secure_origins: vec![origin.to_owned()],
        ..LaunchOptions::default()
    };
    let chromium = Chromium::launch_with(binary, &options).await?;
    let page = chromium.new_page().await?;
    Ok((chromium, page))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn captions_of_a_browser_and_two_library_speakers_show_in_another_page() {
    let test = "captions_of_a_browser_and_two_library_speakers_show_in_another_page";
    let Some(binary) = chromium_or_skip(test) else {
        return;
    };
    let _serial = serial().await;
    let started = std::time::Instant::now();
    // Where the time goes, for the test's wall time in tests/README.md.
    let phase = |what: &str| println!("{:6.1} s {what}", started.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let speech = make_speech(dir.path()).expect("test speech (espeak-ng, sox)");
    let settings = OffloaderSettings {
        transcribing_image: calls_e2e::docker::image("transcriber"),
        stop_grace_period: "120s".into(),
        memory_mb: 2048,
        max_duration: "600s".into(),
        ..OffloaderSettings::default()
    };
    let stack = CallStack::start(
        "transcriber",
        "captions-browser",
        SECRET,
        CALL,
        settings,
        "browser",
    )
    .await
    .expect("the SFU and the offloader start");
    phase("SFU and offloader started, transcriber image ensured");
    let job = stack
        .live_captions_job("tiny.en")
        .await
        .expect("the transcribing job is created");
    let origin = stack.sfu.http_url();
    // Both browsers start while the transcriber's container starts.
    let (joined, carol_browser, dave_browser) = tokio::join!(
        wait_joined(&stack.client, &job),
        browser(&binary, &origin, &speech.carol_wav, false),
        browser(&binary, &origin, &speech.silence_wav, true),
    );
    joined.expect("the transcriber joins the call");
    let (carol_chromium, carol_page) = carol_browser.expect("Carol's Chromium starts");
    let (dave_chromium, dave_page) = dave_browser.expect("Dave's Chromium starts");
    phase("the transcriber joined, both browsers started");

    let outcome = async {
        let (observed, speakers, quiet_from) =
            run_call(&stack, &speech, &carol_page, &dave_page).await?;
        phase("the call is over");
        check(&observed, &speakers, quiet_from)?;
        // The job still runs; its post-call transcript is captions_e2e's and transcriber_e2e's subject,
        // so it is stopped without waiting for it (the offloader removes the container when dropped).
        let view = stack.client.job(&job.id).await?;
        anyhow::ensure!(view.state == JobState::Running, "the job is {view:?}");
        let stop = stack.client.stop(&job.id).await?;
        anyhow::ensure!(stop.status.is_success(), "{} {}", stop.status, stop.text());
        Ok(())
    }
    .await;
    if let Err(error) = outcome {
        fail(
            error,
            &stack,
            &job,
            [(&carol_page, &carol_chromium), (&dave_page, &dave_chromium)],
        )
        .await;
    }
    drop((carol_page, carol_chromium, dave_page, dave_chromium));
    stack.sfu.shutdown().await;
    println!(
        "{test} took {:.1} s (load average {})",
        started.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}

/// Fails the test with `error`, what both pages and browsers said and the transcriber's logs.
async fn fail(
    error: anyhow::Error,
    stack: &CallStack,
    job: &Job,
    pages: [(&Page, &Chromium); 2],
) -> ! {
    let mut report = String::new();
    for ((page, chromium), whose) in pages.into_iter().zip([CAROL, DAVE]) {
        report.push_str(&format!(
            "\n=== {whose} ===\n{}",
            demo::report(page, chromium).await
        ));
    }
    let logs = stack.client.logs(&job.id).await.unwrap_or_default();
    let tail: Vec<&str> = logs.lines().rev().take(80).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!(
        "{error:#}\n{report}\n=== transcriber logs (tail) ===\n{}",
        tail.join("\n")
    );
}

/// Alice and Bob join with the library, then Dave's page and Carol's; Carol's file plays her sentence,
/// Alice and Bob speak theirs, and Dave's page is read until every sentence shows final, then while
/// everybody is silent for [`QUIET`]. Returns what the page showed, who spoke when, and when the
/// silence began.
async fn run_call(
    stack: &CallStack,
    speech: &Speech,
    carol_page: &Page,
    dave_page: &Page,
) -> anyhow::Result<(Timeline, Vec<Speaker>, Instant)> {
    let alice = stack.join("Alice").await?;
    let bob = stack.join("Bob").await?;
    let base = stack.sfu.http_url();
    let dave = demo::join(
        dave_page,
        &base,
        &stack.token(DAVE, calls_participant::Role::Participant),
    )
    .await
    .context("Dave's page joins")?;
    let carol = demo::join(
        carol_page,
        &base,
        &stack.token(CAROL, calls_participant::Role::Participant),
    )
    .await
    .context("Carol's page joins")?;
    // The page opens its microphone (and the file starts) between pressing Join and being connected.
    let t0 = carol.clicked_at;
    let took = t0.elapsed();
    println!(
        "Carol's page joined {:.2} s after pressing Join",
        took.as_secs_f64()
    );
    anyhow::ensure!(
        took + Duration::from_secs(1) < CAROL_LEAD_IN,
        "Carol's page needed {took:?} to join: her sentence may have started before her audio reached \
         the call (CAROL_LEAD_IN is {CAROL_LEAD_IN:?})"
    );
    let carol_starts = t0 + CAROL_LEAD_IN;
    let carol_ends = t0 + took + CAROL_LEAD_IN + Duration::from_secs_f64(speech.carol_seconds);
    let bob_ends = t0 + BOB_AT + speech::duration_of(&speech.bob);
    let sessions = [
        carol.session_id.clone(),
        alice.session_id().to_owned(),
        bob.session_id().to_owned(),
    ];

    // Until every sentence shows final (or a final is overdue: the checks say what is missing).
    let mut observed = Timeline::new(t0);
    let (watched, spoken) = tokio::join!(
        captions::watch(dave_page, &mut observed, SAMPLE_EVERY, |observed, now| {
            now >= bob_ends + LATEST_LINE
                || (now >= bob_ends + SETTLE
                    && observed.all_final()
                    && sessions.iter().all(|s| observed.has_line_of(s)))
        }),
        async {
            let alice_spoke = speak_at(&alice, &speech.alice, t0 + ALICE_AT).await?;
            let bob_spoke = speak_at(&bob, &speech.bob, t0 + BOB_AT).await?;
            anyhow::Ok((alice_spoke, bob_spoke))
        }
    );
    watched?;
    let (alice_spoke, bob_spoke) = spoken?;
    // Then silence from everybody.
    let quiet_from = Instant::now();
    let silence = vec![0i16; (QUIET.as_secs_f64() * f64::from(speech::SAMPLE_RATE)) as usize];
    let (watched, alice_silent, bob_silent) = tokio::join!(
        captions::watch(dave_page, &mut observed, SAMPLE_EVERY, |_, now| {
            now >= quiet_from + QUIET
        }),
        alice.send_voice(silence.clone()),
        bob.send_voice(silence),
    );
    watched?;
    alice_silent??;
    bob_silent??;
    let speakers = vec![
        Speaker {
            name: CAROL,
            session: carol.session_id,
            sentence: sentence(CAROL_SENTENCE).0,
            spoke: (carol_starts, carol_ends),
        },
        Speaker {
            name: "Alice",
            session: alice.session_id().to_owned(),
            sentence: sentence(ALICE_SENTENCE).0,
            spoke: alice_spoke,
        },
        Speaker {
            name: "Bob",
            session: bob.session_id().to_owned(),
            sentence: sentence(BOB_SENTENCE).0,
            spoke: bob_spoke,
        },
    ];
    print_timeline(&observed, &speakers, &dave.session_id);
    println!(
        "everybody silent from {:.2} s",
        seconds_between(t0, quiet_from)
    );
    alice.leave().await?;
    bob.leave().await?;
    Ok((observed, speakers, quiet_from))
}

/// `who` sends `pcm` from `at`; returns when it started and ended.
async fn speak_at(
    who: &Participant,
    pcm: &[i16],
    at: Instant,
) -> anyhow::Result<(Instant, Instant)> {
    tokio::time::sleep_until(at).await;
    let start = Instant::now();
    who.send_voice(pcm.to_vec()).await??;
    Ok((start, Instant::now()))
}

/// Prints every line's states (seconds after Carol's page pressed Join) and each speaker's interval.
fn print_timeline(observed: &Timeline, speakers: &[Speaker], dave: &str) {
    let at = |i: Instant| seconds_between(observed.t0, i);
    for speaker in speakers {
        println!(
            "{} ({}) spoke {:.2}..{:.2} s: {:?}",
            speaker.name,
            speaker.session,
            at(speaker.spoke.0),
            at(speaker.spoke.1),
            speaker.sentence
        );
    }
    println!("Dave's page is session {dave}");
    println!("{}", observed.show_all());
}

/// What Dave's page must have shown; everybody was silent from `quiet_from`.
fn check(observed: &Timeline, speakers: &[Speaker], quiet_from: Instant) -> anyhow::Result<()> {
    anyhow::ensure!(
        !observed.lines.is_empty(),
        "Dave's page showed no caption at all"
    );
    for (id, states) in &observed.lines {
        let (first_seen, first) = &states[0];
        let (_, last) = states.last().expect("a recorded line has a state");
        let Some(speaker) = speakers.iter().find(|s| s.session == first.session) else {
            anyhow::bail!(
                "a caption line for someone who never spoke (session {}):{}",
                first.session,
                observed.show_line(id)
            );
        };
        anyhow::ensure!(
            states.iter().all(
                |(_, l)| l.who == format!("{}: ", speaker.name) && l.session == speaker.session
            ),
            "caption {id} is not attributed to {} throughout:{}",
            speaker.name,
            observed.show_line(id)
        );
        let (from, to) = speaker.spoke;
        anyhow::ensure!(
            *first_seen + Duration::from_millis(500) >= from && *first_seen <= to + LATEST_LINE,
            "caption {id} of {} appeared {:.2} s after their sentence started (it lasted {:.2} s): a caption of \
             silence?{}",
            speaker.name,
            seconds_between(from, *first_seen),
            seconds_between(from, to),
            observed.show_line(id)
        );
        anyhow::ensure!(
            last.is_final && !last.partial && last.tail.is_empty(),
            "caption {id} never became final:{}",
            observed.show_line(id)
        );
        let final_at = states
            .iter()
            .position(|(_, l)| l.is_final)
            .expect("the last state is final");
        anyhow::ensure!(
            states[final_at..].iter().all(|(_, l)| l == last),
            "caption {id} changed after it was final:{}",
            observed.show_line(id)
        );
    }
    let during_silence: Vec<&(Instant, captions::Line)> = observed
        .lines
        .values()
        .flatten()
        .filter(|(seen, _)| *seen >= quiet_from)
        .collect();
    anyhow::ensure!(
        during_silence.is_empty(),
        "the captions changed while everybody was silent (from {:.2} s):\n{}",
        seconds_between(observed.t0, quiet_from),
        observed.show(&during_silence)
    );
    for speaker in speakers {
        let finals: Vec<&captions::Line> = observed
            .lines
            .values()
            .filter_map(|states| states.last().map(|(_, line)| line))
            .filter(|line| line.session == speaker.session)
            .collect();
        let text = finals
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let wer = word_error_rate(speaker.sentence, &text);
        // When the page first showed each of the speaker's lines final, after the sentence ended.
        let final_after: Vec<String> = observed
            .lines
            .values()
            .filter(|states| states[0].1.session == speaker.session)
            .filter_map(|states| states.iter().find(|(_, l)| l.is_final))
            .map(|(seen, _)| format!("{:.2} s", seconds_between(speaker.spoke.1, *seen)))
            .collect();
        let partials = observed
            .lines
            .values()
            .flatten()
            .filter(|(_, l)| l.session == speaker.session && l.partial)
            .count();
        println!(
            "{}: WER {:.0} % — {text:?}; {} line(s), final {} after the sentence ended; {partials} partial state(s) seen",
            speaker.name,
            wer * 100.0,
            finals.len(),
            final_after.join(", ")
        );
        anyhow::ensure!(
            !finals.is_empty(),
            "no caption of {}'s sentence {:?}",
            speaker.name,
            speaker.sentence
        );
        anyhow::ensure!(
            wer <= 0.30,
            "{}'s captions {text:?} for {:?}: WER {:.0} %",
            speaker.name,
            speaker.sentence,
            wer * 100.0
        );
        let said = observed
            .under_names
            .iter()
            .find(|item| item.session == speaker.session)
            .and_then(|item| item.said.clone());
        anyhow::ensure!(
            said.as_deref()
                .is_some_and(|said| finals.iter().any(|l| l.text == said)),
            "under {}'s name the page shows {said:?}, not one of their final captions",
            speaker.name
        );
    }
    Ok(())
}
