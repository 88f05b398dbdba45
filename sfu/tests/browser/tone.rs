//! Measurements of the fake microphone's beep as received through the SFU: loudness per 10 ms
//! window, the onsets of the beeps, and the dominant frequency of the loudest stretch.

/// 10 ms at 48 kHz.
const WINDOW: usize = 480;

/// What the received audio looks like.
#[derive(Debug)]
pub struct Beeps {
    /// Seconds of audio analysed.
    pub seconds: f64,
    /// RMS of the loudest 10 ms window, relative to full scale (1.0).
    pub peak_rms: f64,
    /// RMS of the quietest 10 ms window.
    pub floor_rms: f64,
    /// Start of each beep, in seconds.
    pub onsets: Vec<f64>,
    /// Strongest frequency (Hz) in the loudest 20 ms.
    pub tone_hz: f64,
    /// Share of the loudest 20 ms's energy at `tone_hz` (±30 Hz), 0..1.
    pub tone_share: f64,
}

fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples
        .iter()
        .map(|s| (f64::from(*s) / 32768.0).powi(2))
        .sum();
    (sum / samples.len() as f64).sqrt()
}

/// Power of `samples` at `hz` (Goertzel).
fn power_at(samples: &[i16], hz: f64) -> f64 {
    let coefficient = 2.0 * (std::f64::consts::TAU * hz / 48_000.0).cos();
    let (mut previous, mut before) = (0.0, 0.0);
    for sample in samples {
        let current = f64::from(*sample) / 32768.0 + coefficient * previous - before;
        before = previous;
        previous = current;
    }
    previous * previous + before * before - coefficient * previous * before
}

/// Analyses 48 kHz mono PCM.
pub fn analyse(pcm: &[i16]) -> Beeps {
    let levels: Vec<f64> = pcm.chunks_exact(WINDOW).map(rms).collect();
    let peak_rms = levels.iter().copied().fold(0.0, f64::max);
    let floor_rms = levels.iter().copied().fold(f64::INFINITY, f64::min);
    let loud = peak_rms / 4.0;
    let mut onsets = Vec::new();
    let mut in_beep = false;
    for (index, level) in levels.iter().enumerate() {
        if *level >= loud && !in_beep {
            onsets.push(index as f64 * WINDOW as f64 / 48_000.0);
        }
        // Hysteresis: a beep ends only when the level falls well below the onset threshold.
        in_beep = if in_beep {
            *level >= loud / 4.0
        } else {
            *level >= loud
        };
    }
    let loudest = levels
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(index, _)| index);
    let start = loudest * WINDOW;
    let stretch = &pcm[start..(start + 2 * WINDOW).min(pcm.len())];
    let spectrum: Vec<(f64, f64)> = (10..=400)
        .map(|step| f64::from(step) * 10.0)
        .map(|hz| (hz, power_at(stretch, hz)))
        .collect();
    let total: f64 = spectrum.iter().map(|(_, power)| power).sum();
    let (tone_hz, _) = spectrum
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0.0, 0.0));
    let near: f64 = spectrum
        .iter()
        .filter(|(hz, _)| (hz - tone_hz).abs() <= 30.0)
        .map(|(_, power)| power)
        .sum();
    Beeps {
        seconds: pcm.len() as f64 / 48_000.0,
        peak_rms,
        floor_rms: if floor_rms.is_finite() {
            floor_rms
        } else {
            0.0
        },
        onsets,
        tone_hz: if total > 0.0 { tone_hz } else { 0.0 },
        tone_share: if total > 0.0 { near / total } else { 0.0 },
    }
}
