//! Whisper's log-mel features, computed as faster-whisper computes them for CTranslate2: a 400-point STFT
//! (Hann window, reflect padding, 160-sample hop) over the samples followed by 160 zeros, power spectrum,
//! Slaney mel filters ([`crate::models::mel`]), `log10`, clamped to 8 below the loudest value, scaled as
//! `(x + 4) / 4`. One frame per 10 ms; a 30 s window is [`WINDOW_FRAMES`] frames, padded with zeros.

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use crate::models::mel::{slaney_filters, N_FFT_BINS};

const N_FFT: usize = 400;
/// Samples per frame step (10 ms at 16 kHz).
pub const HOP: usize = 160;
/// Frames of one 30 s window, what the encoder takes.
pub const WINDOW_FRAMES: usize = 3000;

/// One triangular filter: its first non-zero bin and weights.
struct Filter {
    first: usize,
    weights: Vec<f32>,
}

/// The STFT plan, window and mel filters, made once per model.
pub struct MelExtractor {
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    filters: Vec<Filter>,
}

/// Log-mel features: `n_mels` rows of `frames` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Mel bands (rows).
    pub n_mels: usize,
    /// Frames of content (columns).
    pub frames: usize,
    /// The values.
    pub values: Vec<f32>,
}

impl MelExtractor {
    /// An extractor for `n_mels` bands.
    pub fn new(n_mels: usize) -> Self {
        let dense = slaney_filters(n_mels, N_FFT_BINS);
        let filters = dense
            .chunks(N_FFT_BINS)
            .map(|row| {
                let first = row.iter().position(|w| *w > 0.0).unwrap_or(0);
                let last = row.iter().rposition(|w| *w > 0.0).unwrap_or(first);
                Filter {
                    first,
                    weights: row[first..=last].to_vec(),
                }
            })
            .collect();
        // The periodic Hann window (numpy's `hanning(n + 1)[:-1]`).
        let window = (0..N_FFT)
            .map(|n| {
                0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos() as f32
            })
            .collect();
        MelExtractor {
            fft: FftPlanner::new().plan_fft_forward(N_FFT),
            window,
            filters,
        }
    }

    /// The features of `samples` (16 kHz mono): one frame per [`HOP`] samples.
    pub fn compute(&self, samples: &[f32]) -> Features {
        let n_mels = self.filters.len();
        let pad = N_FFT / 2;
        // The samples, 160 zeros after them, and `pad` reflected samples on each side (numpy's reflect
        // mode: the edge sample itself is not repeated).
        let mut padded: Vec<f32> = samples.to_vec();
        padded.extend(std::iter::repeat_n(0.0, HOP));
        let content = padded.len();
        let reflect = |index: isize| -> f32 {
            let last = content as isize - 1;
            let mut i = index;
            if i < 0 {
                i = -i;
            }
            if i > last {
                i = 2 * last - i;
            }
            padded[i.clamp(0, last.max(0)) as usize]
        };
        // numpy's STFT makes 1 + content / HOP frames; whisper drops the last one.
        let frames = content / HOP;
        let mut power = vec![0f32; N_FFT_BINS];
        let mut buffer = vec![Complex32::new(0.0, 0.0); N_FFT];
        let mut scratch = vec![Complex32::new(0.0, 0.0); self.fft.get_inplace_scratch_len()];
        let mut values = vec![0f32; n_mels * frames];
        for frame in 0..frames {
            let start = (frame * HOP) as isize - pad as isize;
            for (n, slot) in buffer.iter_mut().enumerate() {
                let at = start + n as isize;
                let sample = if at >= 0 && (at as usize) < content {
                    padded[at as usize]
                } else {
                    reflect(at)
                };
                *slot = Complex32::new(sample * self.window[n], 0.0);
            }
            self.fft.process_with_scratch(&mut buffer, &mut scratch);
            for (bin, value) in power.iter_mut().enumerate() {
                *value = buffer[bin].norm_sqr();
            }
            for (band, filter) in self.filters.iter().enumerate() {
                let energy: f32 = filter
                    .weights
                    .iter()
                    .zip(&power[filter.first..])
                    .map(|(w, p)| w * p)
                    .sum();
                values[band * frames + frame] = energy.max(1e-10).log10();
            }
        }
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for value in &mut values {
            *value = ((*value).max(max - 8.0) + 4.0) / 4.0;
        }
        Features {
            n_mels,
            frames,
            values,
        }
    }
}

impl Features {
    /// Frames that hold audio: faster-whisper leaves out the last one (it covers the padding).
    pub fn content_frames(&self) -> usize {
        self.frames.saturating_sub(1)
    }

    /// The window of `size` frames starting at frame `seek`, padded with zeros to `frames` frames per
    /// band (at most [`WINDOW_FRAMES`], whisper's 30 s, what post-call windows take; live windows take
    /// their own length and a margin).
    pub fn window(&self, seek: usize, size: usize, frames: usize) -> Vec<f32> {
        let frames = frames.clamp(1, WINDOW_FRAMES);
        let mut out = vec![0f32; self.n_mels * frames];
        let end = (seek + size.min(frames)).min(self.frames);
        if seek < end {
            for band in 0..self.n_mels {
                let row = &self.values[band * self.frames..(band + 1) * self.frames];
                out[band * frames..band * frames + (end - seek)].copy_from_slice(&row[seek..end]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_lights_the_band_of_its_frequency_and_frames_follow_the_hop() {
        let extractor = MelExtractor::new(80);
        // 1 s of a 1 kHz tone: 100 frames (16 000 + 160 samples / 160, the last one dropped).
        let samples: Vec<f32> = (0..16_000)
            .map(|n| 0.5 * (2.0 * std::f32::consts::PI * 1_000.0 * n as f32 / 16_000.0).sin())
            .collect();
        let features = extractor.compute(&samples);
        assert_eq!((features.n_mels, features.frames), (80, 101));
        // 1 kHz is mel 15, i.e. the band whose centre is nearest 15 mel on an 80-band scale up to 8 kHz
        // (45.2 mel): band 25 (centre (25 + 1) × 45.2 / 81 = 14.5 mel).
        let middle = 50;
        let loudest = (0..80)
            .max_by(|a, b| {
                features.values[a * 101 + middle].total_cmp(&features.values[b * 101 + middle])
            })
            .unwrap();
        assert!((25..=26).contains(&loudest), "loudest band {loudest}");
        // Values are scaled into whisper's range: the loudest is (log10(max) + 4) / 4, the floor 2 lower.
        let max = features.values.iter().copied().fold(f32::MIN, f32::max);
        let min = features.values.iter().copied().fold(f32::MAX, f32::min);
        assert!((max - min - 2.0).abs() < 1e-4, "max {max} min {min}");
    }

    #[test]
    fn a_window_is_3000_frames_with_zeros_past_the_content() {
        let features = MelExtractor::new(80).compute(&vec![0.1f32; 16_000]);
        assert_eq!(features.content_frames(), 100);
        let window = features.window(0, features.content_frames(), WINDOW_FRAMES);
        assert_eq!(window.len(), 80 * WINDOW_FRAMES);
        assert_eq!(window[99], features.values[99]);
        assert!(window[WINDOW_FRAMES - 1] == 0.0 && window[100] == 0.0);
        // A live window: its own frames and zeros after them, rows `frames` long.
        let short = features.window(0, features.content_frames(), 200);
        assert_eq!(short.len(), 80 * 200);
        assert_eq!(short[200 + 99], features.values[101 + 99]);
        assert!(short[100] == 0.0 && short[199] == 0.0);
    }
}
