//! What the SFU's load examples (`bench`, `listeners`) share.

/// A voice-like test signal: two tones under a syllable-rate envelope.
pub fn voice_signal(seconds: f64) -> Vec<i16> {
    let samples = (seconds * 48_000.0) as usize;
    (0..samples)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            let envelope = 0.5 + 0.5 * (t * 4.0 * std::f64::consts::TAU).sin();
            let tone = (t * 220.0 * std::f64::consts::TAU).sin()
                + 0.5 * (t * 660.0 * std::f64::consts::TAU).sin();
            (envelope * tone * 6000.0) as i16
        })
        .collect()
}
