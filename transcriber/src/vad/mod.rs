//! Voice activity detection: which parts of a speaker's audio are speech. Silero VAD (a small neural
//! network), run by our own code ([`network`]) on the weights `calls-transcriber models fetch` converts
//! from the `silero-vad` PyPI package into whisper.cpp's ggml VAD file (see [`crate::models::silero`]),
//! with whisper.cpp's rules for turning its per-frame probabilities into regions ([`segments`]). Only the
//! regions it returns go to whisper, so silence, room noise and hum never reach the model that would
//! hallucinate text on them. Works on any buffer length, so live captions can run it on short windows
//! too. Until this code, whisper.cpp ran the network itself, a ggml graph per 32 ms frame: several times
//! the CPU for the same probabilities (within 0.005) and regions (within 4 ms, its centisecond rounding).

use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
use network::{Network, Scratch, FRAME};

mod network;
mod segments;

/// Tuning of the speech detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadSettings {
    /// Speech probability above which a 32 ms frame counts as speech.
    pub threshold: f32,
    /// Shorter bursts of speech are dropped (clicks, coughs).
    pub min_speech_ms: u32,
    /// A pause must last this long to end a region.
    pub min_silence_ms: u32,
    /// Regions longer than this are split (whisper's window is 30 s).
    pub max_speech_s: f32,
    /// Audio kept on both sides of a region, so first and last syllables are not clipped.
    pub pad_ms: u32,
}

impl Default for VadSettings {
    fn default() -> Self {
        VadSettings {
            threshold: 0.5,
            min_speech_ms: 250,
            min_silence_ms: 400,
            max_speech_s: 25.0,
            pad_ms: 200,
        }
    }
}

/// A loaded Silero VAD model.
pub struct Vad {
    // Boxed: a `Vad` sits in the job's live-caption state, which should stay small to move.
    network: Box<Network>,
    scratch: Box<Scratch>,
    probs: Vec<f32>,
    settings: VadSettings,
}

impl Vad {
    /// Loads the VAD model (`ggml-silero-vad.bin`). It runs on the calling thread.
    pub fn load(model: &Path, settings: VadSettings) -> Result<Self> {
        if !model.is_file() {
            return Err(Error::invalid_model(
                model,
                "no such file (run `calls-transcriber models fetch silero-vad`)",
            ));
        }
        let bytes = std::fs::read(model).map_err(|error| Error::io(model, error))?;
        let network = Network::from_ggml(&bytes).map_err(|reason| {
            Error::invalid_model(model, format!("not a Silero VAD model: {reason}"))
        })?;
        Ok(Vad {
            network: Box::new(network),
            scratch: Box::default(),
            probs: Vec::new(),
            settings,
        })
    }

    /// The speech regions of `samples` (16 kHz mono), as sample ranges in time order, padded and clamped
    /// to the buffer.
    pub fn speech_regions(&mut self, samples: &[f32]) -> Result<Vec<Range<usize>>> {
        // Silero works on 512-sample frames; shorter input has no frame to judge.
        if samples.len() < FRAME {
            return Ok(Vec::new());
        }
        self.network
            .probabilities(samples, &mut self.scratch, &mut self.probs);
        Ok(normalise(segments::speech_regions(
            &self.probs,
            &self.settings,
            samples.len(),
        )))
    }
}

/// Sorts regions and merges overlapping or touching ones.
pub fn normalise(mut regions: Vec<Range<usize>>) -> Vec<Range<usize>> {
    regions.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(regions.len());
    for region in regions {
        match out.last_mut() {
            Some(last) if region.start <= last.end => last.end = last.end.max(region.end),
            _ => out.push(region),
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::{noise, synthesize, SENTENCES, VOICES};
    use crate::models;

    fn load(settings: VadSettings) -> Vad {
        let path = models::vad_model_path(&models::default_dir()).unwrap();
        Vad::load(&path, settings).unwrap()
    }

    /// Every sentence spoken by the test voices in turn, with 1, 1.5 and 2 s of digital silence between
    /// them; and the span of each sentence's sound (espeak-ng's own leading and trailing silence left out).
    fn spoken_sentences(work: &Path) -> (Vec<f32>, Vec<Range<usize>>) {
        let mut audio = vec![0.0; 16_000];
        let mut spans = Vec::new();
        for (index, sentence) in SENTENCES.iter().enumerate() {
            let clip = synthesize(sentence, VOICES[index % VOICES.len()], work).unwrap();
            let loud = |x: &f32| x.abs() > 1e-3;
            let first = clip.iter().position(loud).unwrap();
            let last = clip.iter().rposition(loud).unwrap();
            spans.push(audio.len() + first..audio.len() + last + 1);
            audio.extend(&clip);
            audio.extend(std::iter::repeat_n(0.0, 16_000 + 8_000 * (index % 3)));
        }
        (audio, spans)
    }

    #[test]
    fn each_spoken_sentence_is_one_region_and_pauses_are_not_speech() {
        let work = tempfile::tempdir().unwrap();
        let (audio, spans) = spoken_sentences(work.path());
        let regions = load(VadSettings::default()).speech_regions(&audio).unwrap();
        assert_eq!(regions.len(), spans.len(), "{regions:?} for {spans:?}");
        for (region, span) in regions.iter().zip(&spans) {
            // The whole sentence, plus at most the padding and a frame around it.
            assert!(
                region.start <= span.start && region.end >= span.end,
                "{region:?} misses part of {span:?}"
            );
            assert!(
                span.start - region.start <= 3_200 + 512
                    && region.end - span.end <= 6_400 + 3_200 + 512,
                "{region:?} reaches far beyond {span:?}"
            );
        }
    }

    #[test]
    fn live_settings_find_the_same_sentences() {
        let work = tempfile::tempdir().unwrap();
        let (audio, spans) = spoken_sentences(work.path());
        let live = VadSettings {
            min_silence_ms: 100,
            pad_ms: 30,
            ..VadSettings::default()
        };
        let regions = load(live).speech_regions(&audio).unwrap();
        // Shorter pauses end regions, so a sentence may be several; but each lies within its sentence,
        // give or take 200 ms (Silero's probability falls a few frames after the sound, then the padding).
        for span in &spans {
            let inside: Vec<_> = regions
                .iter()
                .filter(|r| r.start < span.end && r.end > span.start)
                .collect();
            assert!(!inside.is_empty(), "nothing found in {span:?}: {regions:?}");
            for region in inside {
                assert!(
                    region.start + 3_200 >= span.start && region.end <= span.end + 3_200,
                    "{region:?} spills out of {span:?}"
                );
            }
        }
    }

    #[test]
    fn silence_noise_and_hum_are_not_speech() {
        let work = tempfile::tempdir().unwrap();
        let mut vad = load(VadSettings::default());
        assert_eq!(
            vad.speech_regions(&vec![0.0f32; 16_000 * 10]).unwrap(),
            Vec::<Range<usize>>::new()
        );
        for (kind, volume) in [
            ("brownnoise", 0.3),
            ("pinknoise", 0.1),
            ("hum50", 0.3),
            ("hum60", 0.3),
        ] {
            let audio = noise(kind, 10.0, volume, work.path()).unwrap();
            assert_eq!(
                vad.speech_regions(&audio).unwrap(),
                Vec::<Range<usize>>::new(),
                "{kind}"
            );
        }
    }

    #[test]
    fn short_buffers_have_no_regions_and_a_partial_last_frame_counts() {
        let work = tempfile::tempdir().unwrap();
        let mut vad = load(VadSettings::default());
        assert_eq!(
            vad.speech_regions(&[0.1f32; 511]).unwrap(),
            Vec::<Range<usize>>::new()
        );
        // A sentence cut mid-word, not on a frame boundary: its region runs to the end of the buffer.
        let clip = synthesize(SENTENCES[0], VOICES[0], work.path()).unwrap();
        let cut = &clip[..clip.len() / 2 + 100];
        let regions = vad.speech_regions(cut).unwrap();
        assert_eq!(
            regions.last().map(|r| r.end),
            Some(cut.len()),
            "{regions:?}"
        );
    }

    #[test]
    fn a_missing_or_foreign_model_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ggml-silero-vad.bin");
        let error = Vad::load(&missing, VadSettings::default()).err().unwrap();
        assert!(
            error.to_string().contains("models fetch silero-vad"),
            "{error}"
        );

        std::fs::write(&missing, b"not a model at all").unwrap();
        let error = Vad::load(&missing, VadSettings::default()).err().unwrap();
        assert!(
            error.to_string().contains("not a Silero VAD model"),
            "{error}"
        );

        // The real file cut short.
        let real = std::fs::read(models::vad_model_path(&models::default_dir()).unwrap()).unwrap();
        std::fs::write(&missing, &real[..real.len() / 2]).unwrap();
        let error = Vad::load(&missing, VadSettings::default()).err().unwrap();
        assert!(error.to_string().contains("ends early"), "{error}");
    }

    /// The VAD's CPU time on about 70 s of speech with pauses:
    /// `cargo test -p calls-transcriber --lib vad_cpu_time -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn vad_cpu_time() {
        let work = tempfile::tempdir().unwrap();
        let (audio, _) = spoken_sentences(work.path());
        let mut vad = load(VadSettings::default());
        let rounds = 20;
        let start = cpu_seconds();
        for _ in 0..rounds {
            vad.speech_regions(&audio).unwrap();
        }
        let per_run = (cpu_seconds() - start) / rounds as f64;
        eprintln!(
            "{:.1} s of audio: {:.1} ms CPU per run",
            audio.len() as f64 / 16_000.0,
            per_run * 1000.0
        );
    }

    /// This process's user + system CPU time (Linux).
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
}
