//! Test speech and finding it again: [`speak`] makes a sentence with espeak-ng and sox (48 kHz mono
//! 16-bit, what participants send), and [`locate`] finds where a sent clip lies in a recording's
//! decoded audio by cross-correlation — first on 10 ms energy envelopes over the whole recording,
//! then on the waveform (at 8 kHz) around the best envelope match — so a test can check that each
//! sentence is present, and when.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

/// Sample rate of everything here: what participants send and what recordings are decoded to.
pub const SAMPLE_RATE: u32 = 48_000;
const DECIMATION: usize = 6;
const ENVELOPE_WINDOW: usize = 80; // 10 ms at 8 kHz
const FINE_SEARCH: isize = 160; // ±20 ms at 8 kHz

/// `seconds` of low white noise at [`SAMPLE_RATE`] (about -40 dBFS, no speech in it), the same for the
/// same `seed`.
pub fn white_noise(seconds: f64, seed: u32) -> Vec<i16> {
    let mut state = seed;
    (0..(seconds * f64::from(SAMPLE_RATE)) as usize)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 16) as i16) / 100
        })
        .collect()
}

/// `sentence` spoken by espeak-ng, converted by sox to 48 kHz mono signed 16-bit samples.
pub fn speak(dir: &Path, name: &str, sentence: &str) -> anyhow::Result<Vec<i16>> {
    speak_with(dir, name, sentence, None)
}

/// Like [`speak`], in the espeak-ng voice `voice` (e.g. `en-us+f3`, `en+m7`) when given.
pub fn speak_with(
    dir: &Path,
    name: &str,
    sentence: &str,
    voice: Option<&str>,
) -> anyhow::Result<Vec<i16>> {
    let args: Vec<String> = match voice {
        Some(voice) => vec!["-v".to_owned(), voice.to_owned()],
        None => Vec::new(),
    };
    speak_with_args(dir, name, sentence, &args)
}

/// Like [`speak`], with these espeak-ng options (voice, rate, word gap...) before `-w FILE TEXT`.
pub fn speak_with_args(
    dir: &Path,
    name: &str,
    sentence: &str,
    espeak_args: &[String],
) -> anyhow::Result<Vec<i16>> {
    let wav = dir.join(format!("{name}.wav"));
    let status = Command::new("espeak-ng")
        .args(espeak_args)
        .arg("-w")
        .arg(&wav)
        .arg(sentence)
        .status()
        .context("cannot run espeak-ng (apt-get install espeak-ng)")?;
    if !status.success() {
        bail!("espeak-ng failed with {status}");
    }
    let output = Command::new("sox")
        .arg(&wav)
        .args(["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1"])
        .args(["-r", &SAMPLE_RATE.to_string(), "-"])
        .output()
        .context("cannot run sox (apt-get install sox)")?;
    if !output.status.success() {
        bail!(
            "sox failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// Where the speech in `samples` ends: just after the last sample louder than -40 dBFS. espeak-ng ends
/// every clip with about 0.45 s of silence, which is not speech.
pub fn speech_end(samples: &[i16]) -> usize {
    samples
        .iter()
        .rposition(|sample| sample.unsigned_abs() > 328)
        .map_or(0, |last| last + 1)
}

/// The duration of `samples` at [`SAMPLE_RATE`].
pub fn duration_of(samples: &[i16]) -> Duration {
    Duration::from_secs_f64(samples.len() as f64 / f64::from(SAMPLE_RATE))
}

/// Root mean square of `samples` between `from` and `to` seconds (clamped to the signal).
pub fn rms(samples: &[i16], from: f64, to: f64) -> f64 {
    let index = |t: f64| ((t.max(0.0) * f64::from(SAMPLE_RATE)) as usize).min(samples.len());
    let slice = &samples[index(from)..index(to)];
    if slice.is_empty() {
        return 0.0;
    }
    (slice.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / slice.len() as f64).sqrt()
}

/// Where a clip was found in a recording.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    /// Where the clip starts in the recording, in seconds.
    pub at: f64,
    /// Correlation of the energy envelopes at that place (-1..=1).
    pub envelope: f64,
    /// Normalised cross-correlation of the waveforms at that place (-1..=1; 1 = same up to gain).
    pub waveform: f64,
}

/// Finds `clip` in `recording` (both at [`SAMPLE_RATE`]); `None` when the recording is shorter
/// than the clip or either is empty.
pub fn locate(clip: &[i16], recording: &[i16]) -> Option<Found> {
    let clip = downsample(clip);
    let recording = downsample(recording);
    let (clip_env, rec_env) = (envelope(&clip), envelope(&recording));
    if clip_env.is_empty() || rec_env.len() < clip_env.len() {
        return None;
    }
    let (lag, envelope_score) = (0..=rec_env.len() - clip_env.len())
        .map(|lag| (lag, pearson(&clip_env, &rec_env[lag..lag + clip_env.len()])))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let coarse = (lag * ENVELOPE_WINDOW) as isize;
    let (best, waveform) = (coarse - FINE_SEARCH..=coarse + FINE_SEARCH)
        .map(|start| (start, ncc_at(&clip, &recording, start)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let rate = f64::from(SAMPLE_RATE) / DECIMATION as f64;
    Some(Found {
        at: best as f64 / rate,
        envelope: envelope_score,
        waveform,
    })
}

/// 48 kHz → 8 kHz by averaging groups of six samples (speech has little energy above 4 kHz).
fn downsample(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks_exact(DECIMATION)
        .map(|c| c.iter().map(|&s| f64::from(s)).sum::<f64>() / DECIMATION as f64)
        .collect()
}

/// Mean absolute value per 10 ms window.
fn envelope(samples: &[f64]) -> Vec<f64> {
    samples
        .chunks_exact(ENVELOPE_WINDOW)
        .map(|c| c.iter().map(|s| s.abs()).sum::<f64>() / ENVELOPE_WINDOW as f64)
        .collect()
}

/// Pearson correlation of two equally long series; 0 when either is constant.
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (mean_a, mean_b) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut dot, mut var_a, mut var_b) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - mean_a, y - mean_b);
        dot += dx * dy;
        var_a += dx * dx;
        var_b += dy * dy;
    }
    if var_a == 0.0 || var_b == 0.0 {
        return 0.0;
    }
    dot / (var_a * var_b).sqrt()
}

/// Normalised cross-correlation of `clip` with `recording[start..]` (zeros outside the recording).
fn ncc_at(clip: &[f64], recording: &[f64], start: isize) -> f64 {
    let (mut dot, mut energy_clip, mut energy_rec) = (0.0, 0.0, 0.0);
    for (i, x) in clip.iter().enumerate() {
        let j = start + i as isize;
        let y = if j >= 0 && (j as usize) < recording.len() {
            recording[j as usize]
        } else {
            0.0
        };
        dot += x * y;
        energy_clip += x * x;
        energy_rec += y * y;
    }
    if energy_clip == 0.0 || energy_rec == 0.0 {
        return 0.0;
    }
    dot / (energy_clip * energy_rec).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic speech-like signal: noise bursts (syllables) of varying length and pitch.
    fn babble(seed: u64, seconds: f64) -> Vec<i16> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / f64::from(1u32 << 31)
        };
        let len = (seconds * f64::from(SAMPLE_RATE)) as usize;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let syllable = (0.08 + 0.25 * next()) * f64::from(SAMPLE_RATE);
            let pause = (0.03 + 0.15 * next()) * f64::from(SAMPLE_RATE);
            let pitch = 120.0 + 200.0 * next();
            for i in 0..syllable as usize {
                let t = i as f64 / f64::from(SAMPLE_RATE);
                let shape = (std::f64::consts::PI * i as f64 / syllable).sin();
                let tone = (t * pitch * std::f64::consts::TAU).sin()
                    + 0.5 * (t * pitch * 2.0 * std::f64::consts::TAU).sin();
                out.push((shape * 6000.0 * (tone + 0.3 * (next() - 0.5))) as i16);
            }
            out.extend(std::iter::repeat_n(0, pause as usize));
        }
        out.truncate(len);
        out
    }

    fn place(recording: &mut [i16], clip: &[i16], at: f64, gain: f64) {
        let start = (at * f64::from(SAMPLE_RATE)) as usize;
        for (i, s) in clip.iter().enumerate() {
            recording[start + i] = (f64::from(*s) * gain) as i16;
        }
    }

    #[test]
    fn finds_each_clip_where_it_was_placed() {
        let (a, b) = (babble(1, 2.0), babble(2, 2.5));
        let mut recording = vec![0i16; 10 * SAMPLE_RATE as usize];
        place(&mut recording, &a, 1.25, 0.5);
        place(&mut recording, &b, 6.1, 0.8);
        let found_a = locate(&a, &recording).unwrap();
        let found_b = locate(&b, &recording).unwrap();
        assert!((found_a.at - 1.25).abs() < 0.002, "{found_a:?}");
        assert!((found_b.at - 6.1).abs() < 0.002, "{found_b:?}");
        assert!(found_a.waveform > 0.99 && found_b.waveform > 0.99);
    }

    #[test]
    fn a_different_clip_correlates_poorly() {
        let (a, b) = (babble(3, 2.0), babble(4, 2.0));
        let mut recording = vec![0i16; 5 * SAMPLE_RATE as usize];
        place(&mut recording, &b, 2.0, 1.0);
        let found = locate(&a, &recording).unwrap();
        assert!(found.waveform < 0.3, "{found:?}");
    }

    #[test]
    fn short_or_silent_input_is_handled() {
        assert_eq!(locate(&[], &[0; 48_000]), None);
        assert_eq!(locate(&[1; 48_000], &[0; 4_800]), None);
        let found = locate(&babble(5, 0.5), &[0; 48_000]).unwrap();
        assert_eq!(found.waveform, 0.0);
        assert_eq!(rms(&[], 0.0, 1.0), 0.0);
        assert!((rms(&[100; 48_000], 0.25, 0.5) - 100.0).abs() < 1e-9);
    }
}
