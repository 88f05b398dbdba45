//! Measuring the transcriber: real speech from espeak-ng (resampled to 16 kHz by sox), test noises, and
//! the word error rate. Used by `transcriber-bench`, the speech tests and the job's end-to-end tests.

use std::path::Path;
use std::process::Command;

use crate::engine::SAMPLE_RATE;
use crate::error::{Error, Result};

/// What people say in a call, each 2-4 s when spoken. Ordinary meeting sentences rather than the Harvard
/// lists: those are built to be unpredictable, and espeak-ng's formant speech of them is misheard even
/// on the raw WAV (faster-whisper float32 on the same weights: "The merch can be slid" for "The birch canoe
/// slid", 35-60% WER for tiny.en across voices, docs/transcriber.md). No numbers: whisper writes digits
/// for some number words and that is not an error.
pub const SENTENCES: &[&str] = &[
    "Good morning everyone, let's start with the status update.",
    "I finished the database migration yesterday afternoon.",
    "Can you share your screen so we can look at the report?",
    "The new release is planned for the end of next month.",
    "We should ask the customer before we change the price.",
    "Please send me the meeting notes after the call.",
    "The test results look much better than last week.",
    "I think we need more people on the support team.",
    "Let's take a short break and continue in a few minutes.",
    "The server was down for about an hour on Sunday night.",
    "Thank you all for joining, see you next Tuesday.",
    "Our budget for the summer campaign is almost spent.",
    "The designers will present the new logo on Friday.",
    "Could you check why the login page is so slow?",
];

/// espeak-ng voices that sound clearly different (two male variants, a female one, the Klatt synthesiser,
/// British English) and that whisper hears well at [`ESPEAK_SPEED`] with [`ESPEAK_WORD_GAP`]. Measured on
/// [`SENTENCES`], raw WAV, faster-whisper tiny.en float32: 1-5% WER each (docs/transcriber.md). Sentence
/// `i` is spoken by voice `i % VOICES.len()` in the tests and the benchmark; the order keeps the one
/// sentence the female voice garbles ("database migration": "day to make my nation") with a male voice.
pub const VOICES: &[&str] = &["en-us+m3", "en-us+m1", "en-us+f2", "en-us+klatt3", "en-gb"];

/// espeak-ng speaking rate (words per minute) for test speech: a little slower than its default 175,
/// closer to a person presenting in a call; whisper mishears espeak-ng far less at this rate.
pub const ESPEAK_SPEED: u32 = 150;
/// Pause between words, in 10 ms units (espeak-ng `-g`): espeak-ng runs words together more than people do.
pub const ESPEAK_WORD_GAP: u32 = 5;

/// The espeak-ng arguments for test speech in `voice` (before `-w FILE TEXT`).
pub fn espeak_args(voice: &str) -> Vec<String> {
    vec![
        "-v".to_owned(),
        voice.to_owned(),
        "-s".to_owned(),
        ESPEAK_SPEED.to_string(),
        "-g".to_owned(),
        ESPEAK_WORD_GAP.to_string(),
    ]
}

/// Speaks `text` with espeak-ng `voice` (see [`espeak_args`]) and returns 16 kHz mono samples.
pub fn synthesize(text: &str, voice: &str, work_dir: &Path) -> Result<Vec<f32>> {
    let raw = work_dir.join("espeak.wav");
    let resampled = work_dir.join("speech16k.raw");
    run(Command::new("espeak-ng")
        .args(espeak_args(voice))
        .arg("-w")
        .arg(&raw)
        .arg(text))?;
    run(Command::new("sox")
        .arg(&raw)
        .args(["-t", "raw", "-e", "float", "-b", "32", "-c", "1", "-r"])
        .arg(SAMPLE_RATE.to_string())
        .arg(&resampled))?;
    let bytes = std::fs::read(&resampled).map_err(|e| Error::io(&resampled, e))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// A sox-synthesised test noise of `seconds`, 16 kHz mono: `brownnoise`, `pinknoise`, or a mains hum
/// (`hum50`, `hum60`: the fundamental plus harmonics).
pub fn noise(kind: &str, seconds: f32, volume: f32, work_dir: &Path) -> Result<Vec<f32>> {
    let out = work_dir.join("noise16k.raw");
    let mut command = Command::new("sox");
    command
        .args([
            "-n", "-t", "raw", "-e", "float", "-b", "32", "-c", "1", "-r",
        ])
        .arg(SAMPLE_RATE.to_string())
        .arg(&out)
        .args(["synth", &seconds.to_string()]);
    match kind {
        "hum50" | "hum60" => {
            let base: u32 = if kind == "hum50" { 50 } else { 60 };
            command.args([
                "sine",
                &base.to_string(),
                "sine",
                &(base * 2).to_string(),
                "sine",
                &(base * 3).to_string(),
            ]);
            command.args(["remix", "-"]);
        }
        other => {
            command.arg(other);
        }
    }
    command.args(["vol", &volume.to_string()]);
    run(&mut command)?;
    let bytes = std::fs::read(&out).map_err(|e| Error::io(&out, e))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .map_err(|e| Error::io(command.get_program().to_string_lossy().into_owned(), e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            name: "test audio",
            reason: format!(
                "{} failed: {}",
                command.get_program().to_string_lossy(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// Lowercase words without punctuation, for comparing transcripts. Number words and digits are
/// compared as written: the test sentences avoid numbers where whisper might write digits.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace(['-', '—'], " ")
        .split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word edit distance between the reference and the hypothesis (substitutions, insertions, deletions).
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r = words(reference);
    let h = words(hypothesis);
    let mut previous: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut current = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let substitution = previous[j] + usize::from(rw != hw);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    (previous[h.len()], r.len())
}

/// Word error rate: edits ÷ reference words (0 for an empty reference and hypothesis).
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let (errors, total) = word_errors(reference, hypothesis);
    if total == 0 {
        return if errors == 0 { 0.0 } else { 1.0 };
    }
    errors as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_error_rate_counts_edits_over_reference_words() {
        assert_eq!(
            word_error_rate("The birch canoe slid.", "the Birch canoe, slid"),
            0.0
        );
        assert_eq!(word_error_rate("a b c d", "a x c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a b c d e f"), 0.5);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("", "hello"), 1.0);
        assert_eq!(
            words("It's a well-known fact."),
            vec!["it's", "a", "well", "known", "fact"]
        );
    }
}
