//! The recorder job: a [`BotJob`] that feeds everything the call brings to the media thread, finalises
//! the file when the shared driver (`calls_job::driver`) stops it, and hands it over for upload.
//!
//! The driver joins, keeps the roster, applies the stop policy and uploads; the [`MediaWorker`] owns the
//! encoders; `sinks` places each track's media on the media clock. Every phase logs one line to
//! stdout so `docker logs` tells the story of a recording.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use calls_job::shell::spawn_progress;
use calls_job::{
    AfterCall, BotJob, CallSettings, Finished, InCall, MediaChange, OffloaderClient, Roster,
    RosterChange, StopReason, Uploaded,
};
use calls_participant::{Participant, RemoteTrack};
use tokio::task::JoinHandle;

use crate::backdrop::Person;
use crate::config::JobConfig;
use crate::error::{Error, Result};
use crate::metrics::Progress;
use crate::mixer::{duration_from_samples, MixerConfig};
use crate::sinks::spawn_track;
use crate::worker::{MediaInput, MediaSender, MediaWorker};

/// Name of the uploaded artifact.
pub const ARTIFACT_NAME: &str = "recording.mp4";
/// Inputs the media thread may fall behind by before they are dropped (about 2 s of two voices and a share).
const MEDIA_QUEUE: usize = 1024;

/// What a successful job did.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// Why recording stopped.
    pub reason: StopReason,
    /// Media time recorded.
    pub recorded: Duration,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// Runs the whole job. `shutdown` resolves on SIGTERM/SIGINT. On failure the offloader is told why (best
/// effort) and the error is returned; the caller exits non-zero so the container and its data are kept.
pub async fn run(config: JobConfig, shutdown: impl Future<Output = ()>) -> Result<JobOutcome> {
    let settings = CallSettings {
        identity: config.identity.clone(),
        call: config.call.clone(),
        alone_timeout: config.alone_timeout,
        heartbeat_file: config.heartbeat_file.clone(),
    };
    calls_job::run_bot_job(&settings, || Recorder::start(&config), shutdown).await
}

/// The recording in progress.
struct Recorder {
    path: PathBuf,
    worker: Option<MediaWorker>,
    sender: MediaSender,
    origin: tokio::time::Instant,
    tracks: Vec<JoinHandle<()>>,
    milestones: Milestones,
    /// Set when the call ends: the media time recorded and the counters at that moment.
    end: Duration,
    progress: Progress,
}

impl Recorder {
    /// Opens the output and starts the media thread, before the bot joins anybody's call.
    fn start(config: &JobConfig) -> Result<Recorder> {
        let profile = &config.profile;
        // The VP8 decoder warns about every frame until the first keyframe; errors are what an operator needs.
        ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Error);
        tracing::info!(
            job_id = %config.identity.job_id,
            call_id = %config.call.call_id,
            profile = %profile.name,
            size = %format!("{}x{}", profile.width, profile.height),
            fps = profile.fps,
            "recorder starting"
        );
        std::fs::create_dir_all(&config.output_dir).map_err(|source| Error::Io {
            context: "creating the output directory",
            source,
        })?;
        let path = config.output_path();
        let worker = MediaWorker::spawn(
            path.clone(),
            profile.clone(),
            MixerConfig::default(),
            MEDIA_QUEUE,
        )?;
        Ok(Recorder {
            path,
            sender: worker.sender(),
            progress: worker.progress(),
            worker: Some(worker),
            origin: tokio::time::Instant::now(),
            tracks: Vec::new(),
            milestones: Milestones::default(),
            end: Duration::ZERO,
        })
    }

    fn send_people(&self, roster: &Roster) {
        // Sorted by name, so those already there when the bot joined appear alphabetically, later
        // arrivals after them.
        let people = roster
            .people()
            .map(|(session_id, name)| Person::new(session_id, name))
            .collect();
        self.sender.send(MediaInput::Participants { people });
    }
}

impl BotJob for Recorder {
    type Outcome = JobOutcome;
    type Error = Error;
    const TICK: Duration = Duration::from_millis(20);

    fn on_joined(&mut self, call: &InCall<'_>) -> Result<()> {
        self.origin = call.origin;
        self.send_people(call.roster);
        Ok(())
    }

    fn on_track(&mut self, track: RemoteTrack, call: &InCall<'_>) {
        let sender = self.sender.clone();
        self.tracks.push(spawn_track(track, sender, call.origin));
    }

    fn on_roster(&mut self, change: RosterChange, call: &InCall<'_>) {
        self.send_people(call.roster);
        if let RosterChange::Left { session_id } = change {
            let at = call.now;
            let sharer = session_id.clone();
            self.sender.send(MediaInput::ShareStopped { sharer, at });
            self.sender.send(MediaInput::SpeakerLeft {
                speaker: session_id,
            });
        }
    }

    fn on_media(&mut self, change: MediaChange, call: &InCall<'_>) {
        self.sender.send(match change {
            MediaChange::Mute { session_id, muted } => MediaInput::SpeakerMuted {
                speaker: session_id,
                muted,
            },
            MediaChange::Screen {
                session_id,
                on: false,
            } => MediaInput::ShareStopped {
                sharer: session_id,
                at: call.now,
            },
            MediaChange::Screen {
                session_id,
                on: true,
            } => MediaInput::ShareStarted { sharer: session_id },
        });
    }

    fn on_tick(&mut self, now: Duration) -> u64 {
        self.sender.send(MediaInput::Tick { now });
        let Some(worker) = &self.worker else {
            return 0; // not called after `on_stop`, which takes the worker
        };
        let progress = worker.progress();
        self.milestones.log(&progress);
        // Ticks processed, not frames encoded: a still picture is encoded only every few seconds.
        u64::try_from(progress.recorded.as_millis()).unwrap_or(u64::MAX)
    }

    fn on_report(&mut self, client: &OffloaderClient) {
        if let Some(worker) = &self.worker {
            let progress = worker.progress();
            let message = format!("recorded {:.0} s", progress.seconds_recorded());
            spawn_progress(client, message, progress.counters().to_vec());
        }
    }

    async fn on_stop(
        &mut self,
        _: &StopReason,
        _: &Participant,
        _: &OffloaderClient,
    ) -> Result<()> {
        self.end = self.origin.elapsed();
        for track in &self.tracks {
            track.abort();
        }
        let worker = self
            .worker
            .take()
            .ok_or(Error::MediaThread("stopped twice"))?;
        self.progress = worker.progress();
        let end = self.end;
        let summary = tokio::task::spawn_blocking(move || worker.finish(end))
            .await
            .map_err(|_| Error::MediaThread("panicked while finishing"))??;
        tracing::info!(
            bytes = summary.bytes,
            video_frames = summary.video_frames,
            seconds = duration_from_samples(summary.audio_samples).as_secs_f64(),
            "recording finalised"
        );
        Ok(())
    }

    async fn finish(&mut self, _: &mut AfterCall<'_>) -> Result<Vec<(PathBuf, String)>> {
        Ok(vec![(self.path.clone(), ARTIFACT_NAME.to_owned())])
    }

    fn delivered(self, reason: StopReason, uploaded: &[Uploaded]) -> Finished<JobOutcome> {
        let bytes = uploaded.iter().map(|artifact| artifact.bytes).sum();
        let seconds = self.end.as_secs_f64();
        Finished {
            message: format!("uploaded {ARTIFACT_NAME} ({bytes} bytes, {seconds:.1} s)"),
            counters: self.progress.counters().to_vec(),
            outcome: JobOutcome {
                reason,
                recorded: self.end,
                bytes,
            },
        }
    }
}

/// Logs the first audio and the first screen frame once each.
#[derive(Default)]
struct Milestones {
    audio: bool,
    screen: bool,
}

impl Milestones {
    fn log(&mut self, progress: &Progress) {
        if !self.audio && progress.audio_frames_with_voice > 0 {
            self.audio = true;
            tracing::info!(recorded_s = progress.seconds_recorded(), "first audio");
        }
        if !self.screen && progress.share_frames_received > 0 {
            self.screen = true;
            tracing::info!(
                recorded_s = progress.seconds_recorded(),
                "first screen frame"
            );
        }
    }
}

pub use calls_job::shell::{report_invalid_settings, shutdown_signal};
