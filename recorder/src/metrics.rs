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
    /// Video frames encoded (only ticks whose picture changed, and one per keyframe interval on a still one).
    pub video_frames_encoded: u64,
    /// Share frames lost: older than what was on screen, backlog overflow, or failed to scale.
    pub video_frames_dropped: u64,
    /// Share frames replaced by a newer one before their tick (the share ran faster than the output fps).
    pub video_frames_skipped: u64,
    /// Share frames received.
    pub share_frames_received: u64,
    /// Share frames identical to the one on screen (a still slide): neither scaled nor encoded again.
    pub share_frames_unchanged: u64,
    /// Mixed audio frames encoded.
    pub audio_frames_encoded: u64,
    /// Audio frames in which somebody spoke.
    pub audio_frames_with_voice: u64,
    /// Audio samples lost: too late for the jitter window, or far outside the timeline.
    pub audio_samples_dropped: u64,
    /// Inputs the media thread could not take because it was behind (see `worker.rs`).
    pub inputs_dropped: u64,
    /// Inputs refused (e.g. a speaker beyond the mixer's limit).
    pub inputs_rejected: u64,
    /// Whether a screen share is on screen now.
    pub sharing: bool,
}

impl Progress {
    /// Seconds recorded, as the status API reports it.
    pub fn seconds_recorded(&self) -> f64 {
        self.recorded.as_secs_f64()
    }

    /// The counters under the names the job status API carries (`JobStatusUpdate::counters`).
    pub fn counters(&self) -> [(&'static str, f64); 11] {
        [
            ("seconds_recorded", self.seconds_recorded()),
            ("video_frames_encoded", self.video_frames_encoded as f64),
            ("video_frames_dropped", self.video_frames_dropped as f64),
            ("video_frames_skipped", self.video_frames_skipped as f64),
            ("share_frames_received", self.share_frames_received as f64),
            ("share_frames_unchanged", self.share_frames_unchanged as f64),
            ("audio_frames_encoded", self.audio_frames_encoded as f64),
            (
                "audio_frames_with_voice",
                self.audio_frames_with_voice as f64,
            ),
            ("audio_samples_dropped", self.audio_samples_dropped as f64),
            ("inputs_dropped", self.inputs_dropped as f64),
            ("inputs_rejected", self.inputs_rejected as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_carry_every_number_under_a_stable_name() {
        let progress = Progress {
            recorded: Duration::from_millis(2500),
            video_frames_encoded: 50,
            video_frames_dropped: 1,
            ..Progress::default()
        };
        let counters = progress.counters();
        assert_eq!(counters[0], ("seconds_recorded", 2.5));
        assert_eq!(counters[1], ("video_frames_encoded", 50.0));
        assert_eq!(counters[2], ("video_frames_dropped", 1.0));
        let mut names: Vec<_> = counters.iter().map(|(name, _)| *name).collect();
        names.dedup();
        assert_eq!(names.len(), 11);
        // The offloader refuses counter names that are not on its list.
        for name in names {
            assert!(
                calls_protocol::job_metrics::is_job_counter(name),
                "{name} is missing from calls_protocol::job_metrics::JOB_COUNTERS"
            );
        }
    }
}
