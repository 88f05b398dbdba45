//! The mel filterbank whisper's front end uses: Slaney's mel scale with Slaney area normalisation, for
//! 16 kHz audio and a 400-point FFT (201 frequency bins), computed rather than copied so the converter
//! needs nothing but the CTranslate2 weights.

/// Frequency bins of a 400-point FFT.
pub const N_FFT_BINS: usize = 201;
const SAMPLE_RATE: f64 = 16_000.0;
const N_FFT: f64 = 400.0;

/// Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (a factor of 6.4 every
/// 27 mels).
const HZ_PER_MEL: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / HZ_PER_MEL;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / HZ_PER_MEL
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        HZ_PER_MEL * mel
    }
}

/// `n_mels × bins` triangular filters, row-major, from 0 Hz to the Nyquist frequency.
pub fn slaney_filters(n_mels: usize, bins: usize) -> Vec<f32> {
    let fft_freqs: Vec<f64> = (0..bins).map(|k| k as f64 * SAMPLE_RATE / N_FFT).collect();
    let top = hz_to_mel(SAMPLE_RATE / 2.0);
    let mel_points: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = Vec::with_capacity(n_mels * bins);
    for m in 0..n_mels {
        let (left, centre, right) = (mel_points[m], mel_points[m + 1], mel_points[m + 2]);
        let norm = 2.0 / (right - left);
        for f in &fft_freqs {
            let lower = (f - left) / (centre - left);
            let upper = (right - f) / (right - centre);
            out.push((lower.min(upper).max(0.0) * norm) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mel_scale_is_linear_below_1_khz_and_invertible() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        for hz in [0.0, 123.0, 999.0, 1000.0, 4321.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6);
        }
    }

    #[test]
    fn filters_match_librosa_at_known_points() {
        // Reference values computed with librosa's formula (`librosa.filters.mel(sr=16000, n_fft=400,
        // n_mels=80)`, Slaney scale and norm) in numpy.
        let filters = slaney_filters(80, N_FFT_BINS);
        assert_eq!(filters.len(), 80 * 201);
        // Each triangle has unit area in Hz after Slaney normalisation, so every row is non-negative,
        // non-empty, and the first filter peaks at bin 1 with 2 / (f2 - f0).
        for row in filters.chunks(201) {
            assert!(row.iter().all(|v| *v >= 0.0));
            assert!(row.iter().any(|v| *v > 0.0));
        }
        assert!((filters[1] - 0.024_862_595).abs() < 1e-7, "{}", filters[1]);
        let band_40 = &filters[40 * 201..41 * 201];
        let (peak_bin, peak) = band_40
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        assert_eq!(peak_bin, 43);
        assert!((peak - 0.014_735_566).abs() < 1e-7, "{peak}");
    }
}
