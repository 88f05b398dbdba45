//! Speech regions from per-frame speech probabilities, as whisper.cpp's VAD (after Silero's Python
//! `get_speech_timestamps`) finds them: hysteresis between the threshold and 0.15 below it, pauses shorter
//! than the minimum silence bridged, overlong regions split at their last pause of 98 ms or more (else
//! cut), regions closer than 200 ms merged, short ones dropped, then padding that at most meets halfway
//! between neighbours.

use std::ops::Range;

use super::network::FRAME;
use super::VadSettings;
use crate::engine::SAMPLE_RATE;

/// A pause longer than this inside an overlong region is where it may be split.
const SPLIT_PAUSE_MS: usize = 98;
/// Regions closer than this are merged.
const MERGE_GAP_MS: usize = 200;

fn ms_to_samples(ms: usize) -> usize {
    SAMPLE_RATE as usize * ms / 1000
}

/// Sample ranges of speech, in order, for `probs` (one per [`FRAME`] samples) of `n_samples` samples.
pub fn speech_regions(
    probs: &[f32],
    settings: &VadSettings,
    n_samples: usize,
) -> Vec<Range<usize>> {
    let min_speech = ms_to_samples(settings.min_speech_ms as usize);
    let pad = ms_to_samples(settings.pad_ms as usize);
    let total = probs.len() * FRAME;
    let regions = raw_regions(probs, settings, pad);
    let mut merged = merge_close(regions, min_speech);
    pad_regions(&mut merged, pad, total);
    for region in &mut merged {
        region.start = region.start.min(n_samples);
        region.end = region.end.min(n_samples);
    }
    merged.retain(|r| !r.is_empty());
    merged
}

/// The regions before merging and padding (`pad`: the padding to come, which whisper.cpp takes off the
/// longest region): hysteresis between the threshold and 0.15 below it, pauses shorter than the minimum
/// silence bridged, overlong regions split at their last long pause (else cut), short ones dropped.
fn raw_regions(probs: &[f32], settings: &VadSettings, pad: usize) -> Vec<Range<usize>> {
    let threshold = settings.threshold;
    let low = (threshold - 0.15).max(0.01);
    let min_silence = ms_to_samples(settings.min_silence_ms as usize);
    let min_speech = ms_to_samples(settings.min_speech_ms as usize);
    let split_pause = ms_to_samples(SPLIT_PAUSE_MS);
    // The longest region before padding (whisper.cpp counts whole seconds).
    let max_speech = (SAMPLE_RATE as usize * settings.max_speech_s.max(0.0) as usize)
        .checked_sub(FRAME + 2 * pad)
        .filter(|max| *max > 0)
        .unwrap_or(usize::MAX / 2);
    let total = probs.len() * FRAME;

    let mut regions: Vec<Range<usize>> = Vec::new();
    // The open region's start, while in speech.
    let mut start: Option<usize> = None;
    // Where the current pause began.
    let mut pause_start: Option<usize> = None;
    // The start of the last pause of at least `split_pause` in the open region, and where speech resumed
    // after it.
    let mut split_at: Option<usize> = None;
    let mut resumed_at: Option<usize> = None;
    for (index, &prob) in probs.iter().enumerate() {
        let at = index * FRAME;
        if prob >= threshold && pause_start.take().is_some() && resumed_at < split_at {
            resumed_at = Some(at);
        }
        let Some(mut begun) = start else {
            if prob >= threshold {
                start = Some(at);
            }
            continue;
        };
        if at - begun > max_speech {
            pause_start = None;
            match (split_at.take(), resumed_at.take()) {
                // Speech resumed after the last long pause: split there.
                (Some(split), Some(resumed)) if resumed >= split => {
                    regions.push(begun..split);
                    begun = resumed;
                    start = Some(resumed);
                }
                // Still in that pause: the region ends at its start.
                (Some(split), _) => {
                    regions.push(begun..split);
                    start = None;
                    continue;
                }
                // No long pause: cut here.
                (None, _) => {
                    regions.push(begun..at);
                    start = None;
                    continue;
                }
            }
        }
        if prob < low {
            let pause = *pause_start.get_or_insert(at);
            if at - pause > split_pause {
                split_at = Some(pause);
            }
            if at - pause >= min_silence {
                if pause.saturating_sub(begun) > min_speech {
                    regions.push(begun..pause);
                }
                start = None;
                split_at = None;
                resumed_at = None;
                pause_start = None;
            }
        }
    }
    if let Some(begun) = start.filter(|begun| total - begun > min_speech) {
        regions.push(begun..total);
    }

    regions
}

/// `regions` with those closer than [`MERGE_GAP_MS`] merged, then those shorter than `min_speech`
/// dropped.
fn merge_close(regions: Vec<Range<usize>>, min_speech: usize) -> Vec<Range<usize>> {
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(regions.len());
    for region in regions {
        match merged.last_mut() {
            Some(last)
                if (region.start as isize - last.end as isize)
                    < ms_to_samples(MERGE_GAP_MS) as isize =>
            {
                last.end = region.end;
            }
            _ => merged.push(region),
        }
    }
    merged.retain(|r| r.end.saturating_sub(r.start) >= min_speech);
    merged
}

/// Pads each region by `pad` where its neighbours are far apart, else to halfway between them; the last
/// ends at `total` at most.
fn pad_regions(regions: &mut [Range<usize>], pad: usize, total: usize) {
    let ends: Vec<Range<usize>> = regions.to_vec();
    for (index, region) in regions.iter_mut().enumerate() {
        let before = index
            .checked_sub(1)
            .map(|previous| ends[previous].end)
            .filter(|end| region.start - end < 2 * pad);
        region.start = match before {
            Some(end) => region.start - (region.start - end) / 2,
            None => region.start.saturating_sub(pad),
        };
        let after = ends
            .get(index + 1)
            .map(|next| next.start)
            .filter(|start| start - region.end < 2 * pad);
        region.end = match after {
            Some(next) => region.end + (next - region.end) / 2,
            None => (region.end + pad).min(total),
        };
    }
}
