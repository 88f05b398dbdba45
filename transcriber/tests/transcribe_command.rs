//! `calls-transcriber transcribe FILE…` as an operator runs it: the built binary on espeak-ng speech in a
//! `.wav` and an AAC `.m4a` (made by the ffmpeg CLI, as the recorder's MP4 audio is AAC), the four
//! artifacts read back. Also the word timestamps of `transcript.json`, checked against where espeak-ng
//! really put each word (it leaves a silent gap between words). Needs espeak-ng, ffmpeg and the tiny.en
//! model (any variant: `tiny.en` resolves to `tiny.en-q8_0` when only that is present).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use calls_transcriber::evaluation::{word_errors, words, SENTENCES, VOICES};
use calls_transcriber::files::read_audio;
use calls_transcriber::models;

const BINARY: &str = env!("CARGO_BIN_EXE_calls-transcriber");
const MODEL: &str = "tiny.en";

/// Each word's start in `transcript.json` must be this close to where it is in the audio.
const WORD_START_TOLERANCE_MS: u64 = 150;

fn require_model() {
    let dir = models::default_dir();
    if let Err(error) = models::resolve_model_path(&dir, MODEL) {
        panic!("{error}; run `cargo run -p calls-transcriber -- models fetch {MODEL}` first");
    }
}

/// Speaks `text` into `path` (espeak-ng's own 22.05 kHz WAV) with `gap_10ms` of silence between words.
fn speak(text: &str, voice: &str, gap_10ms: u32, path: &Path) {
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-g", &gap_10ms.to_string(), "-w"])
        .arg(path)
        .arg(text)
        .status()
        .expect("espeak-ng runs");
    assert!(status.success(), "espeak-ng failed");
}

fn transcribe(args: &[&str], files: &[&Path], out: &Path) -> Output {
    Command::new(BINARY)
        .arg("transcribe")
        .args(files)
        .args([
            "--model",
            MODEL,
            "--language",
            "en",
            "--threads",
            "1",
            "--out",
        ])
        .arg(out)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "calls-transcriber transcribe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read_json(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("transcript.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Where each word starts, from the audio itself: the ends of the silent gaps (≥ 150 ms below -40 dBFS,
/// in 10 ms frames) that espeak-ng leaves between words, and the first sound.
fn word_starts_ms(samples: &[f32]) -> Vec<u64> {
    let loud: Vec<bool> = samples
        .chunks(160)
        .map(|frame| {
            let energy = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
            energy.sqrt() > 0.01
        })
        .collect();
    let mut starts = Vec::new();
    let mut quiet_frames = usize::MAX;
    for (index, &is_loud) in loud.iter().enumerate() {
        if is_loud {
            if quiet_frames >= 15 {
                starts.push(index as u64 * 10);
            }
            quiet_frames = 0;
        } else {
            quiet_frames = quiet_frames.saturating_add(1);
        }
    }
    starts
}

#[test]
fn a_wav_becomes_the_four_artifacts_with_word_times_where_the_words_are_spoken() {
    require_model();
    let work = tempfile::tempdir().unwrap();
    let sentence = "Please send the meeting notes to everyone before lunch";
    let wav = work.path().join("notes.wav");
    // 250 ms between words: gaps a person could hear, and a ground truth for every word's start.
    speak(sentence, "en-us+m3", 25, &wav);
    let truth = word_starts_ms(&read_audio(&wav).unwrap());
    let reference = words(sentence);
    assert_eq!(
        truth.len(),
        reference.len(),
        "the test audio should have one silent gap between each two words: starts {truth:?}"
    );

    let out = work.path().join("out");
    let output = transcribe(&[], &[&wav], &out);
    succeeded(&output);
    for name in [
        "transcript.vtt",
        "transcript.srt",
        "transcript.txt",
        "transcript.json",
    ] {
        let path: PathBuf = out.join(name);
        assert!(path.is_file(), "{name} missing");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(&*path.to_string_lossy()), "{stdout}");
    }
    let vtt = std::fs::read_to_string(out.join("transcript.vtt")).unwrap();
    assert!(
        vtt.starts_with("WEBVTT") && vtt.contains("<v notes>"),
        "{vtt}"
    );

    let json = read_json(&out);
    // The model used: its CTranslate2 files (`ct2-tiny.en`) where the model directory has them.
    let model = json["model"].as_str().unwrap();
    assert!(
        model.trim_start_matches("ct2-").starts_with(MODEL),
        "{model}"
    );
    let segments = json["segments"].as_array().unwrap();
    let text: Vec<&str> = segments
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let text = text.join(" ");
    let (errors, _) = word_errors(sentence, &text);
    assert!(errors <= 1, "{sentence:?} heard as {text:?}");

    let heard: Vec<(String, u64, u64)> = segments
        .iter()
        .flat_map(|s| s["words"].as_array().unwrap().iter())
        .map(|w| {
            (
                w["text"].as_str().unwrap().to_owned(),
                w["start_ms"].as_u64().unwrap(),
                w["end_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    let heard_words: Vec<String> = heard.iter().flat_map(|(w, _, _)| words(w)).collect();
    assert_eq!(
        heard_words, reference,
        "one entry per word in transcript.json: {heard:?}"
    );
    let mut report = Vec::new();
    let mut late = Vec::new();
    for ((word, start, end), spoken) in heard.iter().zip(&truth) {
        assert!(end >= start, "{word}: {start}..{end}");
        report.push(format!("{word} {start} (spoken {spoken})"));
        if start.abs_diff(*spoken) > WORD_START_TOLERANCE_MS {
            late.push(format!("{word}: {start} ms, spoken at {spoken} ms"));
        }
    }
    eprintln!("word starts: {}", report.join(", "));
    assert!(
        late.is_empty(),
        "word starts off by more than {WORD_START_TOLERANCE_MS} ms: {late:?}"
    );
}

#[test]
fn an_m4a_and_a_wav_are_two_named_speakers_on_one_timeline() {
    require_model();
    let work = tempfile::tempdir().unwrap();
    let first = SENTENCES[0];
    let second = SENTENCES[6];
    let wav = work.path().join("one.wav");
    speak(first, VOICES[0], 5, &wav);
    // The recorder's MP4 audio is AAC: the same codec in an .m4a.
    let aac_source = work.path().join("two.wav");
    speak(second, VOICES[1], 5, &aac_source);
    let m4a = work.path().join("two.m4a");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&aac_source)
        .args(["-c:a", "aac", "-b:a", "64k"])
        .arg(&m4a)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());

    let out = work.path().join("out");
    let output = transcribe(
        &["--speaker", "Alice", "--speaker", "Bob"],
        &[&wav, &m4a],
        &out,
    );
    succeeded(&output);
    let json = read_json(&out);
    let said = |name: &str| {
        let text: Vec<&str> = json["segments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["speaker"] == name)
            .map(|s| s["text"].as_str().unwrap())
            .collect();
        text.join(" ")
    };
    for (name, sentence) in [("Alice", first), ("Bob", second)] {
        let text = said(name);
        let (errors, count) = word_errors(sentence, &text);
        assert!(
            errors * 4 <= count,
            "{name}: {sentence:?} heard as {text:?}"
        );
    }
    let txt = std::fs::read_to_string(out.join("transcript.txt")).unwrap();
    assert!(
        txt.contains("Alice (00:00:0") && txt.contains("Bob (00:00:0"),
        "{txt}"
    );
    let srt = std::fs::read_to_string(out.join("transcript.srt")).unwrap();
    assert!(srt.starts_with("1\n00:00:0"), "{srt}");
}

#[test]
fn bad_input_is_named_and_nothing_is_written() {
    require_model();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let missing = work.path().join("missing.wav");
    let output = transcribe(&[], &[&missing], &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("missing.wav") && stderr.contains("no such file"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written for a bad input");

    let wav = work.path().join("a.wav");
    speak("Hello", "en-us", 5, &wav);
    let output = transcribe(&["--speaker", "A", "--speaker", "B"], &[&wav], &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("one --speaker per file"), "{stderr}");

    let output = Command::new(BINARY)
        .args(["transcribe", "--model", "huge", "--out"])
        .arg(&out)
        .arg(&wav)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown model \"huge\""), "{stderr}");
}
