//! A recording: owns the mixer, the compositor and the MP4 writer, and drives them from one media clock.
//!
//! The job shell decodes voices and the screen share and hands them in with their media time (time since the
//! recording started, derived from RTP timestamps or arrival). It calls [`Recording::tick`] with the current
//! media time; everything due is mixed, composed and encoded. Output trails the clock by the mixer's jitter
//! window, for audio and video alike, so late packets still land in place and the two streams stay aligned.
//! The voices also feed the speaking detector, polled with the picture's time, whose changes (and the roster's)
//! redraw the backdrop shown while nobody shares.
//!
//! Video has a variable frame rate: a tick whose picture did not change (a still slide, the backdrop while people
//! only talk) is not encoded again, the previous frame simply lasts longer. A frame is still written at least
//! once per keyframe interval, so a player seeking into a long still stretch finds a keyframe nearby.
//!
//! **Invariant:** after `finish(end)` the file holds exactly `end` of video (frames on the tick grid, the first at
//! 0, the last one at the last tick before `end`) and of audio (every sample up to `end`), both starting at 0, so
//! drift is bounded by one video frame.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use crate::backdrop::{self, Backdrop, Person};
use crate::compositor::{Compositor, CompositorConfig};
use crate::encoder::{EncodeSummary, Mp4Writer};
use crate::error::Result;
use crate::frame::{I420Frame, Yuv};
use crate::metrics::Progress;
use crate::mixer::{duration_from_samples, samples_from_duration, Mixer, MixerConfig};
use crate::profile::Profile;
use crate::speaking::{SpeakingConfig, SpeakingDetector};

/// The media core of one recording. Not `Send` (FFmpeg contexts): create it on the thread that drives it.
pub struct Recording {
    mixer: Mixer,
    compositor: Compositor,
    writer: Mp4Writer,
    latency: Duration,
    /// Most ticks a picture is held without writing a frame (the keyframe interval).
    max_hold_ticks: u64,
    sharer: Option<String>,
    /// Sharers whose share ended and has not started again: frames of theirs still in flight
    /// (decoded after the `screen_off` event) must not reopen the share and freeze its last frame.
    stopped_sharers: HashSet<String>,
    audio_frames_encoded: u64,
    /// What shows while nobody shares: the participants' tiles, the speakers highlighted.
    backdrop: Backdrop,
    speaking: SpeakingDetector,
}

impl Recording {
    /// Starts a recording into `path` with the default mixer settings.
    pub fn create(path: &Path, profile: &Profile) -> Result<Recording> {
        Recording::with_mixer(path, profile, MixerConfig::default())
    }

    /// Starts a recording with explicit mixer settings (jitter window, speaker limit).
    pub fn with_mixer(path: &Path, profile: &Profile, mixer: MixerConfig) -> Result<Recording> {
        let compositor = Compositor::new(CompositorConfig::from_profile(profile));
        let (width, height) = compositor.size();
        Ok(Recording {
            latency: duration_from_samples(mixer.jitter_window_samples),
            max_hold_ticks: u64::from(profile.keyframe_interval()),
            mixer: Mixer::new(mixer),
            compositor,
            writer: Mp4Writer::create(path, profile)?,
            sharer: None,
            stopped_sharers: HashSet::new(),
            audio_frames_encoded: 0,
            backdrop: Backdrop::new(width, height, Yuv::BACKGROUND, backdrop::default_font()),
            speaking: SpeakingDetector::new(SpeakingConfig::default()),
        })
    }

    /// How far output trails the media clock.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// The people in the call, shown as tiles while nobody shares. Without a font, or if drawing the names
    /// fails, the tiles show without names and the error is returned for the shell to log.
    pub fn handle_participants(&mut self, people: &[Person]) -> Result<()> {
        let drawn = self.backdrop.handle_participants(people);
        self.show_backdrop_changes()?;
        drawn
    }

    /// Decoded 48 kHz mono PCM from `speaker`, starting at media time `at`.
    pub fn handle_audio(&mut self, speaker: &str, at: Duration, pcm: &[i16]) -> Result<()> {
        self.speaking.handle_audio(speaker, at, pcm);
        self.mixer
            .handle_audio(speaker, samples_from_duration(at), pcm)
    }

    /// A speaker left the call; its buffered audio is still mixed.
    pub fn handle_speaker_left(&mut self, speaker: &str) {
        self.mixer.handle_speaker_left(speaker);
        self.speaking.handle_left(speaker);
    }

    /// A speaker muted or unmuted.
    pub fn handle_speaker_muted(&mut self, speaker: &str, muted: bool) {
        self.mixer.handle_speaker_muted(speaker, muted);
        self.speaking.handle_muted(speaker, muted);
    }

    /// A decoded screen-share frame from `sharer` captured at media time `at`. A frame from a different
    /// participant than the current sharer means they took over the share.
    pub fn handle_video(&mut self, sharer: &str, at: Duration, frame: I420Frame) {
        if self.stopped_sharers.contains(sharer) {
            return;
        }
        if self.sharer.as_deref() != Some(sharer) {
            self.sharer = Some(sharer.to_owned());
        }
        self.compositor.handle_frame(at, frame);
    }

    /// `sharer` stopped sharing at media time `at`. Ignored if somebody else shares now.
    pub fn handle_share_stopped(&mut self, sharer: &str, at: Duration) {
        self.stopped_sharers.insert(sharer.to_owned());
        if self.sharer.as_deref() == Some(sharer) {
            self.sharer = None;
            self.compositor.handle_share_stopped(at);
        }
    }

    /// `sharer` started a (new) share: its frames are composed again.
    pub fn handle_share_started(&mut self, sharer: &str) {
        self.stopped_sharers.remove(sharer);
    }

    /// Encodes everything due at media time `now` (minus the latency).
    pub fn tick(&mut self, now: Duration) -> Result<()> {
        let due = now.saturating_sub(self.latency);
        while let Some(frame) = self.mixer.poll_frame(samples_from_duration(now)) {
            self.writer.write_audio(&frame.samples)?;
            self.audio_frames_encoded += 1;
        }
        self.update_speakers(due)?;
        let hold = self.max_hold_ticks;
        while let Some(composed) = self.compositor.poll_frame(due) {
            if needs_frame(
                composed.changed,
                composed.index,
                self.writer.last_video_tick(),
                hold,
            ) {
                self.writer.write_video(composed.frame, composed.index)?;
            }
        }
        Ok(())
    }

    /// Highlights who speaks as of media time `at` (the picture's time, so highlight and voice line up).
    fn update_speakers(&mut self, at: Duration) -> Result<()> {
        if let Some(speaking) = self.speaking.poll_speaking(at) {
            self.backdrop.handle_speaking(&speaking);
        }
        self.show_backdrop_changes()
    }

    /// Hands a changed backdrop to the compositor; nothing to do (and nothing copied) while it is unchanged.
    fn show_backdrop_changes(&mut self) -> Result<()> {
        match self.backdrop.poll_frame() {
            Some(picture) => self.compositor.set_background(picture),
            None => Ok(()),
        }
    }

    /// Counters for progress reports.
    pub fn progress(&self) -> Progress {
        let mixer = self.mixer.stats();
        let video = self.compositor.stats();
        Progress {
            recorded: self.compositor.tick_time(self.compositor.next_tick()),
            video_frames_encoded: self.writer.video_frames(),
            video_frames_dropped: video.frames_stale + video.frames_overflow + video.scale_failures,
            video_frames_skipped: video.frames_skipped,
            share_frames_received: video.frames_received,
            share_frames_unchanged: video.frames_unchanged,
            audio_frames_encoded: self.audio_frames_encoded,
            audio_frames_with_voice: mixer.frames_with_voice,
            audio_samples_dropped: mixer.samples_late + mixer.samples_too_early,
            sharing: self.compositor.is_sharing(),
            // Counted by the media worker, which sits in front of the recording.
            ..Progress::default()
        }
    }

    /// Encodes everything up to media time `end` (no longer waiting for late data), then finalises the file.
    pub fn finish(mut self, end: Duration) -> Result<EncodeSummary> {
        let end_sample = samples_from_duration(end);
        while self.mixer.next_sample() < end_sample {
            let frame = self.mixer.flush_frame();
            let keep = usize::try_from(end_sample - frame.start_sample)
                .unwrap_or(usize::MAX)
                .min(frame.samples.len());
            self.writer.write_audio(&frame.samples[..keep])?;
            self.audio_frames_encoded += 1;
        }
        self.update_speakers(end)?;
        let hold = self.max_hold_ticks;
        while self.compositor.tick_time(self.compositor.next_tick()) < end {
            let last = self.compositor.tick_time(self.compositor.next_tick() + 1) >= end;
            let composed = self
                .compositor
                .poll_frame(end)
                .expect("the next tick is before end, so it is due");
            // The last tick is always written: the video track then lasts exactly to `end`.
            if last
                || needs_frame(
                    composed.changed,
                    composed.index,
                    self.writer.last_video_tick(),
                    hold,
                )
            {
                self.writer.write_video(composed.frame, composed.index)?;
            }
        }
        self.writer.finish()
    }
}

/// Whether the output frame of tick `index` is encoded: when its picture changed, or when the last frame
/// written is `max_hold` ticks old (so keyframes keep coming on a still screen), or when nothing was written yet.
pub fn needs_frame(changed: bool, index: u64, last_written: Option<u64>, max_hold: u64) -> bool {
    match last_written {
        None => true,
        Some(last) => changed || index >= last + max_hold.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::needs_frame;

    #[test]
    fn repeats_are_skipped_but_a_frame_comes_every_keyframe_interval() {
        assert!(needs_frame(false, 0, None, 40), "the first tick is written");
        assert!(needs_frame(true, 1, Some(0), 40), "a change is written");
        assert!(!needs_frame(false, 1, Some(0), 40));
        assert!(!needs_frame(false, 39, Some(0), 40));
        assert!(needs_frame(false, 40, Some(0), 40), "held for the interval");
        assert!(
            needs_frame(false, 2, Some(1), 0),
            "a zero hold writes every tick"
        );
    }
}
