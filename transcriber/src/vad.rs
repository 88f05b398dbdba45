//! Voice activity detection: which parts of a speaker's audio are speech. Silero VAD (a small neural
//! network) run by whisper.cpp, with weights converted from the `silero-vad` PyPI package by
//! `calls-transcriber models fetch` (see [`crate::models::silero`]). Only the regions it returns go to
//! whisper, so silence, room noise and hum never reach the model that would hallucinate text on them.
//! Works on any buffer length, so live captions can run it on short windows too.

use std::ops::Range;
use std::path::Path;

use whisper_rs::{WhisperVadContext, WhisperVadContextParams, WhisperVadParams};

use crate::engine::SAMPLE_RATE;
use crate::error::{Error, Result};

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
    context: WhisperVadContext,
    settings: VadSettings,
}

impl Vad {
    /// Loads the VAD model (`ggml-silero-vad.bin`).
    pub fn load(model: &Path, settings: VadSettings, threads: u32) -> Result<Self> {
        whisper_rs::install_logging_hooks();
        if !model.is_file() {
            return Err(Error::invalid_model(
                model,
                "no such file (run `calls-transcriber models fetch silero-vad`)",
            ));
        }
        let path = model
            .to_str()
            .ok_or_else(|| Error::invalid_model(model, "path is not valid UTF-8"))?;
        if path.contains('\0') {
            return Err(Error::invalid_model(model, "path contains a NUL byte"));
        }
        let mut params = WhisperVadContextParams::new();
        params.set_n_threads(threads.max(1) as i32);
        params.set_use_gpu(false);
        let context = WhisperVadContext::new(path, params).map_err(|error| {
            Error::invalid_model(
                model,
                format!("whisper cannot load it as a VAD model: {error}"),
            )
        })?;
        Ok(Vad { context, settings })
    }

    /// The speech regions of `samples` (16 kHz mono), as sample ranges in time order, padded and clamped
    /// to the buffer.
    pub fn speech_regions(&mut self, samples: &[f32]) -> Result<Vec<Range<usize>>> {
        // Silero works on 512-sample frames; shorter input has no frame to judge.
        if samples.len() < 512 {
            return Ok(Vec::new());
        }
        let mut params = WhisperVadParams::new();
        params.set_threshold(self.settings.threshold);
        params.set_min_speech_duration(self.settings.min_speech_ms as i32);
        params.set_min_silence_duration(self.settings.min_silence_ms as i32);
        params.set_max_speech_duration(self.settings.max_speech_s);
        params.set_speech_pad(self.settings.pad_ms as i32);
        params.set_samples_overlap(0.0);
        let segments = self.context.segments_from_samples(params, samples)?;
        let mut regions = Vec::new();
        for index in 0..segments.num_segments() {
            let (Some(start), Some(end)) = (
                segments.get_segment_start_timestamp(index),
                segments.get_segment_end_timestamp(index),
            ) else {
                continue;
            };
            // whisper.cpp reports VAD segment bounds in centiseconds.
            let to_sample =
                |cs: f32| ((cs.max(0.0) as f64 / 100.0) * SAMPLE_RATE as f64).round() as usize;
            let range = to_sample(start).min(samples.len())..to_sample(end).min(samples.len());
            if !range.is_empty() {
                regions.push(range);
            }
        }
        Ok(normalise(regions))
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
