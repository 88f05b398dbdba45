//! The metric series jobs report through `POST /jobs/{id}/status` that the offloader exports under their
//! own names (`calls_offloader_jobs_<name>{type}`), next to the generic `calls_offloader_job_reported_total`.
//!
//! A job reports absolute values for itself (counters in `counters`, histograms in `histograms` with the
//! bucket bounds below); the offloader adds the increase since the job's previous report. The names after
//! the prefix are Mattermost's live-caption series, so dashboards and alerts written for theirs translate.

/// What kind of series a job reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeriesKind {
    /// A counter: a monotonically growing number.
    Counter,
    /// A histogram with these upper bucket bounds (ascending; `+Inf` implied).
    Histogram(&'static [f64]),
}

/// One series a job may report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobSeries {
    /// The reported name; exported as `calls_offloader_jobs_<name>`.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Counter or histogram.
    pub kind: SeriesKind,
}

/// Bounds of `live_captions_new_audio_len_ms`: Mattermost's 2/4/6/8 s, with finer ones below for short windows.
pub const NEW_AUDIO_BOUNDS_MS: &[f64] = &[250.0, 500.0, 1000.0, 2000.0, 4000.0, 6000.0, 8000.0];
/// Bounds of `live_captions_caption_latency_seconds` (end of speech → final caption sent).
pub const CAPTION_LATENCY_BOUNDS_S: &[f64] = &[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0];

/// Live captions: a window's audio that no earlier window of the utterance had.
pub const NEW_AUDIO_LEN_MS: &str = "live_captions_new_audio_len_ms";
/// Live captions: end of speech → final caption sent.
pub const CAPTION_LATENCY_SECONDS: &str = "live_captions_caption_latency_seconds";
/// Live captions: windows dropped without a caption (no worker free in time).
pub const WINDOW_DROPPED: &str = "live_captions_window_dropped";
/// Live captions: windows that found every worker busy.
pub const TRANSCRIBER_BUF_FULL: &str = "live_captions_transcriber_buf_full";
/// Live captions: voice packets dropped because the captioner's packet queue was full.
pub const PKT_PAYLOAD_CH_BUF_FULL: &str = "live_captions_pktPayloadCh_buf_full";
/// Live captions: partial captions skipped (workers busy) or superseded by their final.
pub const PARTIALS_DROPPED: &str = "live_captions_partials_dropped";

/// Every series the offloader exports under its own name.
pub const JOB_SERIES: &[JobSeries] = &[
    JobSeries {
        name: NEW_AUDIO_LEN_MS,
        help: "live captions: milliseconds of new audio in each transcribed window",
        kind: SeriesKind::Histogram(NEW_AUDIO_BOUNDS_MS),
    },
    JobSeries {
        name: CAPTION_LATENCY_SECONDS,
        help: "live captions: seconds from the end of speech to its final caption",
        kind: SeriesKind::Histogram(CAPTION_LATENCY_BOUNDS_S),
    },
    JobSeries {
        name: WINDOW_DROPPED,
        help: "live captions: windows dropped without a caption because no worker was free in time",
        kind: SeriesKind::Counter,
    },
    JobSeries {
        name: TRANSCRIBER_BUF_FULL,
        help: "live captions: windows that found every transcription worker busy",
        kind: SeriesKind::Counter,
    },
    JobSeries {
        name: PKT_PAYLOAD_CH_BUF_FULL,
        help: "live captions: voice packets dropped because the captioner's queue was full",
        kind: SeriesKind::Counter,
    },
    JobSeries {
        name: PARTIALS_DROPPED,
        help: "live captions: partial captions skipped while workers were busy or superseded by the final",
        kind: SeriesKind::Counter,
    },
];

/// Every counter name a job may report in `JobStatusUpdate::counters` (the offloader refuses any
/// other name, so a job token cannot create metric series at will). The recorder's progress
/// counters, the transcriber's (call, transcript and live-caption ones) and the test job's. A job
/// binary that reports a new counter adds its name here in the same change.
pub const JOB_COUNTERS: &[&str] = &[
    // calls-recorder
    "seconds_recorded",
    "video_frames_encoded",
    "video_frames_dropped",
    "video_frames_skipped",
    "share_frames_received",
    "share_frames_unchanged",
    "audio_frames_encoded",
    "audio_frames_with_voice",
    "audio_samples_dropped",
    "inputs_dropped",
    "inputs_rejected",
    // calls-transcriber, in the call and with `finished`
    "speakers",
    "voice_packets_captured",
    "voice_packets_dropped",
    "audio_seconds",
    "speech_seconds",
    "segments",
    "real_time_factor",
    "progress_percent",
    // calls-transcriber, live captions (the exported series and the window count)
    WINDOW_DROPPED,
    TRANSCRIBER_BUF_FULL,
    PKT_PAYLOAD_CH_BUF_FULL,
    PARTIALS_DROPPED,
    "live_captions_windows",
    // calls-test-job (the offloader's end-to-end tests)
    "test_job_ticks",
];

/// True when `name` is on [`JOB_COUNTERS`].
pub fn is_job_counter(name: &str) -> bool {
    JOB_COUNTERS.contains(&name)
}

/// The series called `name`, if the offloader exports it.
pub fn series(name: &str) -> Option<&'static JobSeries> {
    JOB_SERIES.iter().find(|series| series.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names_are_valid_prometheus_names_and_bounds_ascend() {
        for series in JOB_SERIES {
            assert!(series
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if let SeriesKind::Histogram(bounds) = series.kind {
                assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{}", series.name);
            }
        }
        assert_eq!(
            series(WINDOW_DROPPED).map(|s| s.kind),
            Some(SeriesKind::Counter)
        );
        assert!(series("made_up").is_none());
    }

    #[test]
    fn counter_names_are_unique_and_include_every_counter_series() {
        let mut names = JOB_COUNTERS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), JOB_COUNTERS.len());
        for series in JOB_SERIES {
            if series.kind == SeriesKind::Counter {
                assert!(is_job_counter(series.name), "{}", series.name);
            }
        }
        assert!(!is_job_counter("made_up"));
    }
}
