//! Who is speaking, from the voices' audio levels: the state the backdrop highlights.
//!
//! Each voice's decoded PCM is cut into 20 ms windows and each window's RMS level compared with a threshold.
//! A highlight that blinks with every syllable or lights up at every cough would be worse than none, so the
//! decision has hysteresis: a voice becomes *speaking* once it has been loud for [`SpeakingConfig::start_after`]
//! (dips shorter than [`SpeakingConfig::bridge`] do not restart that count), and *quiet* again only after
//! [`SpeakingConfig::quiet_after`] without a loud window. Quiet is decided by time passing, not by quiet
//! windows, because a client may stop sending packets in silence (Opus DTX) or leave.
//!
//! A pure state machine with time passed in: [`SpeakingDetector::handle_audio`] queues the loud windows at
//! their media time, [`SpeakingDetector::poll_speaking`] applies those that end by `now` and yields the set of
//! speakers when it changed. Audio arrives ahead of the picture (the recording trails the media clock by the
//! jitter window), so polling with the time of the picture being composed keeps highlight and sound in step.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use crate::mixer::duration_from_samples;
use crate::profile::AUDIO_SAMPLE_RATE;

/// Samples in one level window (20 ms at 48 kHz, one Opus packet).
pub const WINDOW_SAMPLES: usize = AUDIO_SAMPLE_RATE as usize / 50;

/// Hysteresis settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakingConfig {
    /// RMS (of i16 full scale 32768) at or above which a window counts as voice.
    pub loud_rms: f32,
    /// Voice must last this long before the speaker is highlighted: longer than a cough or a click.
    pub start_after: Duration,
    /// A pause shorter than this between loud windows still counts as one stretch of voice.
    pub bridge: Duration,
    /// A speaker stays highlighted until this long after their last loud window, across pauses between words.
    pub quiet_after: Duration,
    /// Loud windows waiting for their time; beyond this the oldest are applied early (bounded memory when the
    /// caller stops polling or a voice's timestamps run far ahead).
    pub max_pending: usize,
}

impl Default for SpeakingConfig {
    fn default() -> Self {
        SpeakingConfig {
            // -45 dBFS: below speech picked up by a headset, above the residual noise after a client's noise
            // suppression.
            loud_rms: 184.0,
            start_after: Duration::from_millis(300),
            bridge: Duration::from_millis(200),
            quiet_after: Duration::from_millis(800),
            // About 10 s of one voice talking, or 300 ms of 32 voices at once.
            max_pending: 512,
        }
    }
}

/// Root mean square of a block of samples (0 for an empty block).
pub fn rms(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return 0.0;
    }
    let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (energy / pcm.len() as f64).sqrt() as f32
}

/// One loud window, queued until the picture reaches its time.
#[derive(Debug)]
struct LoudWindow {
    speaker: String,
    at: Duration,
    end: Duration,
}

/// One voice's hysteresis state.
#[derive(Debug, Default)]
struct Voice {
    /// Start of the current stretch of voice (loud windows no further apart than `bridge`).
    stretch_start: Option<Duration>,
    /// End of the latest loud window applied.
    loud_until: Duration,
    speaking: bool,
    muted: bool,
}

/// The speaking state machine. See the module documentation.
#[derive(Debug)]
pub struct SpeakingDetector {
    config: SpeakingConfig,
    pending: VecDeque<LoudWindow>,
    voices: HashMap<String, Voice>,
    /// The set last returned by `poll_speaking`.
    reported: BTreeSet<String>,
}

impl SpeakingDetector {
    /// A detector in which nobody speaks yet.
    pub fn new(config: SpeakingConfig) -> SpeakingDetector {
        SpeakingDetector {
            config,
            pending: VecDeque::new(),
            voices: HashMap::new(),
            reported: BTreeSet::new(),
        }
    }

    /// Decoded 48 kHz mono PCM from `speaker` starting at media time `at`: its loud 20 ms windows are queued.
    pub fn handle_audio(&mut self, speaker: &str, at: Duration, pcm: &[i16]) {
        if self.voices.get(speaker).is_some_and(|voice| voice.muted) {
            return;
        }
        let mut offset = 0;
        for window in pcm.chunks(WINDOW_SAMPLES) {
            if rms(window) >= self.config.loud_rms {
                let start = at + duration_from_samples(offset as u64);
                self.handle_loud(
                    speaker,
                    start,
                    start + duration_from_samples(window.len() as u64),
                );
            }
            offset += window.len();
        }
    }

    /// A loud stretch of `speaker`'s voice from `at` to `end` (what `handle_audio` derives from samples).
    pub fn handle_loud(&mut self, speaker: &str, at: Duration, end: Duration) {
        if self.pending.len() >= self.config.max_pending {
            if let Some(oldest) = self.pending.pop_front() {
                self.apply(&oldest);
            }
        }
        // Kept in order of their end; windows come almost in order, so the search only matters for reordered
        // packets and for voices whose clocks run apart.
        let index = self.pending.partition_point(|window| window.end <= end);
        self.pending.insert(
            index,
            LoudWindow {
                speaker: speaker.to_owned(),
                at,
                end,
            },
        );
    }

    /// While muted a speaker is never highlighted (a muted client may still send comfort noise).
    pub fn handle_muted(&mut self, speaker: &str, muted: bool) {
        let voice = self.voices.entry(speaker.to_owned()).or_default();
        voice.muted = muted;
        if muted {
            voice.speaking = false;
            voice.stretch_start = None;
            self.pending.retain(|window| window.speaker != speaker);
        }
    }

    /// A speaker left: forgotten at once.
    pub fn handle_left(&mut self, speaker: &str) {
        self.voices.remove(speaker);
        self.pending.retain(|window| window.speaker != speaker);
    }

    /// The speakers as of media time `now` when that set differs from the one returned last; `None` when it is
    /// unchanged (so the caller redraws nothing).
    pub fn poll_speaking(&mut self, now: Duration) -> Option<BTreeSet<String>> {
        while self.pending.front().is_some_and(|window| window.end <= now) {
            let window = self.pending.pop_front().expect("front was just checked");
            self.apply(&window);
        }
        let quiet_after = self.config.quiet_after;
        for voice in self.voices.values_mut() {
            if voice.speaking && now >= voice.loud_until + quiet_after {
                voice.speaking = false;
                voice.stretch_start = None;
            }
        }
        let speaking: BTreeSet<String> = self
            .voices
            .iter()
            .filter(|(_, voice)| voice.speaking)
            .map(|(speaker, _)| speaker.clone())
            .collect();
        if speaking == self.reported {
            return None;
        }
        self.reported = speaking.clone();
        Some(speaking)
    }

    /// Whether `speaker` counted as speaking at the last poll.
    pub fn is_speaking(&self, speaker: &str) -> bool {
        self.reported.contains(speaker)
    }

    fn apply(&mut self, window: &LoudWindow) {
        let config = self.config;
        let voice = self.voices.entry(window.speaker.clone()).or_default();
        if voice.muted {
            return;
        }
        // The voice may have gone quiet between two polls (the caller polls less often than windows end).
        if voice.speaking && window.at >= voice.loud_until + config.quiet_after {
            voice.speaking = false;
            voice.stretch_start = None;
        }
        let continues = voice
            .stretch_start
            .is_some_and(|_| window.at <= voice.loud_until + config.bridge);
        if !continues && !voice.speaking {
            voice.stretch_start = Some(window.at);
        }
        voice.loud_until = voice.loud_until.max(window.end);
        if let Some(start) = voice.stretch_start {
            if voice.loud_until.saturating_sub(start) >= config.start_after {
                voice.speaking = true;
            }
        }
    }
}

#[cfg(test)]
#[path = "speaking_tests.rs"]
mod tests;
