//! Audio mixer: per-speaker 48 kHz mono PCM chunks in, one continuous mixed stream of fixed-size frames out.
//!
//! The mixer is a pure state machine on a sample timeline that starts at 0 when the recording starts. Callers
//! place each decoded chunk at its media position (derived from RTP timestamps or the arrival clock) with
//! [`Mixer::handle_audio`], and pull [`FRAME_SAMPLES`]-sample frames with [`Mixer::poll_frame`] as the media
//! clock advances. Output trails the clock by a small jitter window so reordered packets still land at the right
//! place; data older than what was already emitted is dropped and counted, gaps come out as silence.
//!
//! **Invariant:** the output never skips or repeats a sample position: frame `n` covers samples
//! `n * FRAME_SAMPLES .. (n + 1) * FRAME_SAMPLES`, which is what keeps audio and video on one clock.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::profile::AUDIO_SAMPLE_RATE;

/// Samples per output frame: what the AAC encoder consumes per packet.
pub const FRAME_SAMPLES: usize = 1024;

/// Above this fraction of full scale the limiter starts bending the signal; below it the mix is a plain sum.
const LIMITER_KNEE: f32 = 0.75;

/// Converts a media time into a sample position on the 48 kHz timeline (rounded to the nearest sample).
pub fn samples_from_duration(time: Duration) -> u64 {
    let nanos = time.as_nanos();
    let samples = (nanos * u128::from(AUDIO_SAMPLE_RATE) + 500_000_000) / 1_000_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX)
}

/// Converts a sample position on the 48 kHz timeline back into a media time.
pub fn duration_from_samples(samples: u64) -> Duration {
    let nanos = u128::from(samples) * 1_000_000_000 / u128::from(AUDIO_SAMPLE_RATE);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Mixer tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixerConfig {
    /// How far output trails the media clock, in samples; late packets within it are still placed.
    pub jitter_window_samples: u64,
    /// How far ahead of the output position a chunk may start before it is treated as a bad timestamp.
    pub lookahead_samples: u64,
    /// Speakers mixed at once; more is refused, because each one costs a buffer.
    pub max_speakers: usize,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            jitter_window_samples: u64::from(AUDIO_SAMPLE_RATE) * 150 / 1000,
            lookahead_samples: u64::from(AUDIO_SAMPLE_RATE) / 2,
            max_speakers: 32,
        }
    }
}

/// Counters for progress reports and debugging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixerStats {
    /// Frames handed out by `poll_frame`/`flush_frame`.
    pub frames_emitted: u64,
    /// Frames in which at least one speaker had data.
    pub frames_with_voice: u64,
    /// Chunks accepted (possibly partly dropped).
    pub chunks_received: u64,
    /// Samples that arrived after their position was already emitted.
    pub samples_late: u64,
    /// Samples too far ahead of the output position (a broken or jumping timestamp).
    pub samples_too_early: u64,
    /// Samples that repeated a position this speaker had already filled (duplicate packets).
    pub samples_duplicate: u64,
    /// Samples ignored because their speaker was muted.
    pub samples_muted: u64,
    /// Frames in which the limiter had to bend the signal.
    pub frames_limited: u64,
}

/// One frame of mixed audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixedFrame {
    /// Position of the first sample on the recording's timeline.
    pub start_sample: u64,
    /// Exactly [`FRAME_SAMPLES`] samples.
    pub samples: Vec<i16>,
    /// How many speakers contributed to this frame.
    pub voices: usize,
}

impl MixedFrame {
    /// Whether nobody spoke in this frame (it is pure silence).
    pub fn is_silent(&self) -> bool {
        self.voices == 0
    }
}

/// A speaker's pending samples, kept in a ring that spans the output position plus the lookahead.
#[derive(Debug)]
struct SpeakerBuffer {
    samples: Vec<i16>,
    filled: Vec<bool>,
    muted: bool,
    left: bool,
    /// One past the last position ever written, to know when a leaving speaker has been fully emitted.
    written_end: u64,
}

impl SpeakerBuffer {
    fn new(capacity: usize) -> SpeakerBuffer {
        SpeakerBuffer {
            samples: vec![0; capacity],
            filled: vec![false; capacity],
            muted: false,
            left: false,
            written_end: 0,
        }
    }
}

/// The mixer state machine. See the module documentation.
#[derive(Debug)]
pub struct Mixer {
    config: MixerConfig,
    /// Ring size in samples: a multiple of [`FRAME_SAMPLES`] so a frame never wraps inside the ring.
    capacity: u64,
    /// Next sample position to emit; everything before it is final.
    emitted: u64,
    speakers: HashMap<String, SpeakerBuffer>,
    stats: MixerStats,
    accumulator: Vec<i32>,
}

impl Mixer {
    /// A mixer whose output starts at sample 0.
    pub fn new(config: MixerConfig) -> Mixer {
        let frame = FRAME_SAMPLES as u64;
        let wanted = config.lookahead_samples.max(config.jitter_window_samples) + frame;
        let capacity = wanted.div_ceil(frame) * frame;
        Mixer {
            config,
            capacity,
            emitted: 0,
            speakers: HashMap::new(),
            stats: MixerStats::default(),
            accumulator: vec![0; FRAME_SAMPLES],
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> MixerStats {
        self.stats
    }

    /// The next sample position `poll_frame` will emit.
    pub fn next_sample(&self) -> u64 {
        self.emitted
    }

    /// Speakers currently known (joined and not yet fully drained after leaving).
    pub fn speaker_count(&self) -> usize {
        self.speakers.len()
    }

    /// Registers a speaker before its first audio (audio from an unknown speaker also registers it).
    pub fn handle_speaker_joined(&mut self, speaker: &str) -> Result<()> {
        self.speaker_mut(speaker).map(|buffer| buffer.left = false)
    }

    /// Marks a speaker as gone: what it already sent is still mixed, then its buffer is released.
    pub fn handle_speaker_left(&mut self, speaker: &str) {
        if let Some(buffer) = self.speakers.get_mut(speaker) {
            buffer.left = true;
        }
        self.release_drained_speakers();
    }

    /// While muted, a speaker's audio is ignored (some clients keep sending comfort noise after muting).
    pub fn handle_speaker_muted(&mut self, speaker: &str, muted: bool) {
        if let Some(buffer) = self.speakers.get_mut(speaker) {
            buffer.muted = muted;
        }
    }

    /// Places a chunk of 48 kHz mono PCM from `speaker` starting at sample position `start`.
    ///
    /// Parts that fall before the output position (too late) or beyond the lookahead (broken timestamp) are
    /// dropped and counted; the rest is kept. Errors only when a new speaker would exceed `max_speakers`.
    pub fn handle_audio(&mut self, speaker: &str, start: u64, pcm: &[i16]) -> Result<()> {
        let emitted = self.emitted;
        let horizon = emitted + self.capacity;
        let capacity = self.capacity;
        let buffer = self.speaker_mut(speaker)?;
        let mut counts = MixerStats {
            chunks_received: 1,
            ..MixerStats::default()
        };
        if buffer.muted {
            counts.samples_muted = pcm.len() as u64;
        } else {
            for (offset, &sample) in pcm.iter().enumerate() {
                let position = start + offset as u64;
                if position < emitted {
                    counts.samples_late += 1;
                } else if position >= horizon {
                    counts.samples_too_early += 1;
                } else {
                    // `position - emitted < capacity`, and the ring index only needs position modulo capacity.
                    let index = (position % capacity) as usize;
                    if buffer.filled[index] {
                        counts.samples_duplicate += 1;
                    } else {
                        buffer.samples[index] = sample;
                        buffer.filled[index] = true;
                        buffer.written_end = buffer.written_end.max(position + 1);
                    }
                }
            }
        }
        let stats = &mut self.stats;
        stats.chunks_received += counts.chunks_received;
        stats.samples_late += counts.samples_late;
        stats.samples_too_early += counts.samples_too_early;
        stats.samples_duplicate += counts.samples_duplicate;
        stats.samples_muted += counts.samples_muted;
        Ok(())
    }

    /// The next mixed frame if the media clock (`now`, a sample position) is at least one jitter window past
    /// its end; `None` means "not yet". Call in a loop until `None`.
    pub fn poll_frame(&mut self, now: u64) -> Option<MixedFrame> {
        let ready_until = now.saturating_sub(self.config.jitter_window_samples);
        if self.emitted + FRAME_SAMPLES as u64 > ready_until {
            return None;
        }
        Some(self.flush_frame())
    }

    /// The next mixed frame regardless of the clock: used at the end of a recording to drain the jitter window.
    pub fn flush_frame(&mut self) -> MixedFrame {
        let start_sample = self.emitted;
        let ring_start = (start_sample % self.capacity) as usize;
        let ring = ring_start..ring_start + FRAME_SAMPLES;
        self.accumulator.fill(0);
        let mut voices = 0;
        for buffer in self.speakers.values_mut() {
            let mut spoke = false;
            let filled = &mut buffer.filled[ring.clone()];
            let samples = &mut buffer.samples[ring.clone()];
            for ((sum, was_filled), sample) in self.accumulator.iter_mut().zip(filled).zip(samples)
            {
                if *was_filled {
                    *sum += i32::from(*sample);
                    *was_filled = false;
                    *sample = 0;
                    spoke = true;
                }
            }
            voices += usize::from(spoke);
        }
        let mut limited = false;
        let samples = self
            .accumulator
            .iter()
            .map(|&sum| {
                let (sample, bent) = soft_limit(sum);
                limited |= bent;
                sample
            })
            .collect();
        self.emitted += FRAME_SAMPLES as u64;
        self.stats.frames_emitted += 1;
        self.stats.frames_with_voice += u64::from(voices > 0);
        self.stats.frames_limited += u64::from(limited);
        self.release_drained_speakers();
        MixedFrame {
            start_sample,
            samples,
            voices,
        }
    }

    fn speaker_mut(&mut self, speaker: &str) -> Result<&mut SpeakerBuffer> {
        if !self.speakers.contains_key(speaker) {
            if self.speakers.len() >= self.config.max_speakers {
                return Err(Error::TooManySpeakers {
                    limit: self.config.max_speakers,
                });
            }
            let ring =
                usize::try_from(self.capacity).expect("ring capacity is a few seconds of samples");
            self.speakers
                .insert(speaker.to_owned(), SpeakerBuffer::new(ring));
        }
        Ok(self
            .speakers
            .get_mut(speaker)
            .expect("the speaker was inserted just above"))
    }

    fn release_drained_speakers(&mut self) {
        let emitted = self.emitted;
        self.speakers
            .retain(|_, buffer| !(buffer.left && buffer.written_end <= emitted));
    }
}

/// Maps a sum of voices onto i16 without wrap-around: unchanged below the knee, bent smoothly (tanh) towards full
/// scale above it. Returns the sample and whether it was bent.
fn soft_limit(sum: i32) -> (i16, bool) {
    let knee = LIMITER_KNEE * 32767.0;
    let magnitude = (sum as f32).abs();
    if magnitude <= knee {
        // Below the knee |sum| < 32767, so the cast is exact.
        return (sum as i16, false);
    }
    let headroom = 32767.0 - knee;
    let bent = knee + headroom * ((magnitude - knee) / headroom).tanh();
    let signed = if sum < 0 { -bent } else { bent };
    (signed.round().clamp(-32767.0, 32767.0) as i16, true)
}

#[cfg(test)]
#[path = "mixer_tests.rs"]
mod tests;
