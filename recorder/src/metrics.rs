//! Progress counters of a recording, reported through the job status API and logged by the job shell.
//!
//! The recorder has no Prometheus endpoint of its own (it is a short-lived job); the offloader exposes job
//! progress. These are the numbers it reports.

use std::time::Duration;

/// A snapshot of a recording's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Media time encoded so far (the video timeline; audio follows within one AAC frame).
    pub recorded: Duration,
    /// Video frames encoded.
    pub video_frames_encoded: u64,
    /// Share frames lost: older than what was on screen, backlog overflow, or failed to scale.
    pub video_frames_dropped: u64,
    /// Share frames replaced by a newer one before their tick (the share ran faster than the output fps).
    pub video_frames_skipped: u64,
    /// Share frames received.
    pub share_frames_received: u64,
    /// Mixed audio frames encoded.
    pub audio_frames_encoded: u64,
    /// Audio frames in which somebody spoke.
    pub audio_frames_with_voice: u64,
    /// Audio samples lost: too late for the jitter window, or far outside the timeline.
    pub audio_samples_dropped: u64,
    /// Whether a screen share is on screen now.
    pub sharing: bool,
}

impl Progress {
    /// Seconds recorded, as the status API reports it.
    pub fn seconds_recorded(&self) -> f64 {
        self.recorded.as_secs_f64()
    }
}
