//! Synthetic inputs for tests and the benchmark: sine tones and a moving coloured-bar screen pattern.
//!
//! The pattern's top half is four fixed vertical bars (red, green, blue, white) so a test can check colours at
//! known places after encoding; the bottom half carries a white block that moves every frame, so the encoder
//! sees motion like a real screen share (a scrolling document, a moving cursor).

use crate::frame::{I420Frame, Yuv};
use crate::profile::AUDIO_SAMPLE_RATE;

/// The colours of the four fixed bars, left to right.
pub const BAR_COLOURS: [(u8, u8, u8); 4] =
    [(220, 40, 40), (40, 200, 60), (40, 60, 220), (235, 235, 235)];

/// Background of the pattern's bottom half.
pub const PATTERN_FLOOR: (u8, u8, u8) = (20, 20, 20);

/// `len` samples of a sine at `frequency` Hz and `amplitude` (0..=1 of full scale), continuing from sample
/// position `start` so consecutive chunks join without clicks.
pub fn tone(frequency: f64, amplitude: f64, start: u64, len: usize) -> Vec<i16> {
    let rate = f64::from(AUDIO_SAMPLE_RATE);
    (0..len)
        .map(|i| {
            let t = (start + i as u64) as f64 / rate;
            let value =
                amplitude.clamp(0.0, 1.0) * 32767.0 * (std::f64::consts::TAU * frequency * t).sin();
            value.round() as i16
        })
        .collect()
}

/// The bar pattern at `frame_index`: fixed bars on top, a moving block below.
pub fn bar_pattern(width: u32, height: u32, frame_index: u64) -> I420Frame {
    let floor = Yuv::from_rgb(PATTERN_FLOOR.0, PATTERN_FLOOR.1, PATTERN_FLOOR.2);
    let mut frame = I420Frame::filled(width, height, floor);
    let bar_width = width / 4;
    for (index, (r, g, b)) in BAR_COLOURS.iter().enumerate() {
        let x = bar_width * index as u32;
        let w = if index == 3 { width - x } else { bar_width };
        frame.fill_rect(x, 0, w, height / 2, Yuv::from_rgb(*r, *g, *b));
    }
    let block = (width / 8).max(2);
    let travel = u64::from(width.saturating_sub(block).max(1));
    let x = ((frame_index * 16) % travel) as u32 & !1;
    frame.fill_rect(
        x,
        height / 2 + height / 8,
        block,
        height / 4,
        Yuv::from_rgb(255, 255, 255),
    );
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_sit_where_the_tests_look_for_them() {
        let frame = bar_pattern(1024, 768, 0);
        for (index, (r, g, b)) in BAR_COLOURS.iter().enumerate() {
            let x = 128 + 256 * index as u32;
            assert_eq!(frame.pixel(x, 100), Some(Yuv::from_rgb(*r, *g, *b)));
        }
    }

    #[test]
    fn the_block_moves_between_frames() {
        assert_ne!(bar_pattern(640, 480, 0), bar_pattern(640, 480, 5));
    }

    #[test]
    fn tone_chunks_join_seamlessly() {
        let whole = tone(440.0, 0.5, 0, 1920);
        let mut parts = tone(440.0, 0.5, 0, 960);
        parts.extend(tone(440.0, 0.5, 960, 960));
        assert_eq!(whole, parts);
    }
}
