//! The recorder job: join the call as a bot, feed received media to the media thread, stop when told to (or
//! when alone, or when the call ends), finalise the file, upload it, and report to the offloader.
//!
//! This is the thin async shell around the pure parts: [`Lifecycle`] decides when to stop, [`Roster`] who is
//! there, [`RtpClock`] where packets belong on the media clock, and the [`MediaWorker`] owns the encoders.
//! Every phase logs one line to stdout so `docker logs` tells the story of a recording.

use std::future::Future;
use std::time::Duration;

use calls_job::shell::{report_failed, report_finished, report_started, spawn_progress};
use calls_job::{Heartbeat, Lifecycle, OffloaderClient, Roster, StopReason};
use calls_participant::clock::{RtpClock, OPUS_CLOCK_RATE, VIDEO_CLOCK_RATE};
use calls_participant::{
    receive_track, ConnectionState, Event, JoinOptions, Participant, ReceiveOptions, RemoteTrack,
    TrackKind, TrackSink, VideoFrame,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::backdrop::Person;
use crate::config::JobConfig;
use crate::error::{Error, Result};
use crate::frame::I420Frame;
use crate::mixer::{duration_from_samples, MixerConfig};
use crate::worker::{MediaInput, MediaSender, MediaWorker};

/// Name of the uploaded artifact.
pub const ARTIFACT_NAME: &str = "recording.mp4";
const TICK: Duration = Duration::from_millis(20);
const REPORT_EVERY: Duration = Duration::from_secs(5);
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
    let client = OffloaderClient::new(&config.identity)?;
    match record_and_upload(&config, &client, shutdown).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            report_failed(&client, &error).await;
            Err(error)
        }
    }
}

async fn record_and_upload(
    config: &JobConfig,
    client: &OffloaderClient,
    shutdown: impl Future<Output = ()>,
) -> Result<JobOutcome> {
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
    let mut heartbeat = Heartbeat::start(&config.heartbeat_file);
    let worker = MediaWorker::spawn(
        path.clone(),
        profile.clone(),
        MixerConfig::default(),
        MEDIA_QUEUE,
    )?;

    let options = JoinOptions {
        call_id: Some(config.call.call_id.clone()),
        ..JoinOptions::default()
    };
    let url = calls_participant::signalling_url(&config.call.sfu_url)
        .map_err(|e| Error::Call(e.to_string()))?;
    let mut me = Participant::join(&url, config.call.join_token.expose(), options)
        .await
        .map_err(|e| Error::Call(format!("joining {url}: {e}")))?;
    me.wait_connected(Duration::from_secs(15))
        .await
        .map_err(|e| Error::Call(format!("connecting media: {e}")))?;
    let origin = Instant::now();
    let mut roster = Roster::new(me.initial_participants(), me.session_id());
    tracing::info!(session_id = %me.session_id(), people = roster.count(), "joined call");
    report_started(client, "joined the call").await;

    let sender = worker.sender();
    let mut lifecycle = Lifecycle::new(Duration::ZERO, config.alone_timeout);
    lifecycle.handle_participants(Duration::ZERO, roster.count());
    sender.send(MediaInput::Participants {
        people: people(&roster),
    });
    let mut tracks: Vec<JoinHandle<()>> = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // The first progress report comes one period after `started`, not right on top of it.
    let mut report = tokio::time::interval_at(Instant::now() + REPORT_EVERY, REPORT_EVERY);
    report.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut milestones = Milestones::default();
    tokio::pin!(shutdown);

    let reason = loop {
        let now = origin.elapsed();
        if let Some(reason) = lifecycle.poll_stop(now) {
            break reason;
        }
        tokio::select! {
            _ = &mut shutdown => lifecycle.handle_signal(),
            _ = tick.tick() => {
                sender.send(MediaInput::Tick { now });
                let progress = worker.progress();
                milestones.log(&progress);
                // Ticks processed, not frames encoded: a still picture is encoded only every few seconds.
                heartbeat.poll(now, u64::try_from(progress.recorded.as_millis()).unwrap_or(u64::MAX));
            }
            _ = report.tick() => {
                let progress = worker.progress();
                let message = format!("recorded {:.0} s", progress.seconds_recorded());
                spawn_progress(client, message, progress.counters().to_vec());
            }
            event = me.next_event() => match event {
                None | Some(Event::Disconnected) => lifecycle.handle_call_ended(),
                Some(Event::Connection(ConnectionState::Failed | ConnectionState::Closed)) => {
                    lifecycle.handle_call_ended();
                }
                Some(Event::Track(track)) => tracks.push(spawn_track(track, sender.clone(), origin)),
                Some(Event::ParticipantJoined(info)) => {
                    roster.handle_joined(&info);
                    lifecycle.handle_participants(now, roster.count());
                    sender.send(MediaInput::Participants { people: people(&roster) });
                }
                Some(Event::ParticipantLeft { session_id }) => {
                    roster.handle_left(&session_id);
                    lifecycle.handle_participants(now, roster.count());
                    sender.send(MediaInput::Participants { people: people(&roster) });
                    sender.send(MediaInput::ShareStopped { sharer: session_id.clone(), at: now });
                    sender.send(MediaInput::SpeakerLeft { speaker: session_id });
                }
                Some(Event::MuteState { session_id, muted }) => {
                    sender.send(MediaInput::SpeakerMuted { speaker: session_id, muted });
                }
                Some(Event::ScreenState { session_id, screen_on: false }) => {
                    sender.send(MediaInput::ShareStopped { sharer: session_id, at: now });
                }
                Some(Event::ScreenState { session_id, screen_on: true }) => {
                    sender.send(MediaInput::ShareStarted { sharer: session_id });
                }
                Some(Event::JobStop { reason }) => {
                    tracing::info!(%reason, "job_stop received");
                    lifecycle.handle_job_stop();
                }
                Some(_) => {}
            },
        }
    };

    let end = origin.elapsed();
    tracing::info!(%reason, recorded_s = end.as_secs_f64(), "stopping");
    for track in &tracks {
        track.abort();
    }
    let progress = worker.progress();
    let summary = tokio::task::spawn_blocking(move || worker.finish(end))
        .await
        .map_err(|_| Error::MediaThread("panicked while finishing"))??;
    tracing::info!(
        bytes = summary.bytes,
        video_frames = summary.video_frames,
        seconds = duration_from_samples(summary.audio_samples).as_secs_f64(),
        "recording finalised"
    );
    // Leave while uploading: the bot should disappear from the call promptly.
    let leaving = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), me.leave()).await;
    });
    let bytes = client.upload(&path, ARTIFACT_NAME).await?;
    tracing::info!(bytes, artifact = ARTIFACT_NAME, "uploaded");
    let message = format!(
        "uploaded {ARTIFACT_NAME} ({bytes} bytes, {:.1} s)",
        end.as_secs_f64()
    );
    // `finished` tells the offloader the work is delivered: a job stopped through its API then ends
    // `succeeded` rather than `cancelled`. It decides the job's outcome, so it is retried.
    report_finished(client, message, &progress.counters()).await;
    let _ = leaving.await;
    Ok(JobOutcome {
        reason,
        recorded: end,
        bytes,
    })
}

/// The roster as the backdrop's people: sorted by name, so those already there when the bot joined appear
/// alphabetically and later arrivals after them.
fn people(roster: &Roster) -> Vec<Person> {
    roster
        .people()
        .map(|(session_id, name)| Person::new(session_id, name))
        .collect()
}

/// Logs the first audio and the first screen frame once each.
#[derive(Default)]
struct Milestones {
    audio: bool,
    screen: bool,
}

impl Milestones {
    fn log(&mut self, progress: &crate::metrics::Progress) {
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

fn spawn_track(track: RemoteTrack, sender: MediaSender, origin: Instant) -> JoinHandle<()> {
    tracing::info!(owner = %track.owner(), name = ?track.owner_name, kind = ?track.kind(), "receiving track");
    tokio::spawn(async move {
        let owner = track.owner().to_owned();
        let result = match track.kind() {
            TrackKind::Voice => {
                let mut sink = VoiceSink::new(owner.clone(), sender, origin);
                receive_track(&track, &ReceiveOptions::decoded(), &mut sink).await
            }
            TrackKind::Screen => {
                let mut sink = ScreenSink::new(owner.clone(), sender, origin);
                receive_track(&track, &ReceiveOptions::decoded(), &mut sink).await
            }
        };
        if let Err(error) = result {
            tracing::error!(%owner, %error, "cannot decode the track");
        }
    })
}

/// Feeds a decoded voice to the media thread. The decoder's output is contiguous (it conceals losses and
/// fills short gaps), so its sample count is the track's own clock, mapped onto the media clock by arrival.
struct VoiceSink {
    speaker: String,
    sender: MediaSender,
    origin: Instant,
    clock: RtpClock,
    position: u64,
}

impl VoiceSink {
    fn new(speaker: String, sender: MediaSender, origin: Instant) -> VoiceSink {
        VoiceSink {
            speaker,
            sender,
            origin,
            // Behind by more than the mixer's jitter window would be dropped; re-anchor before that.
            clock: RtpClock::new(
                OPUS_CLOCK_RATE,
                Duration::from_millis(100),
                Duration::from_millis(400),
            ),
            position: 0,
        }
    }
}

impl TrackSink for VoiceSink {
    type Error = calls_participant::Error;

    fn voice(&mut self, pcm: Vec<i16>, arrival: Instant) -> calls_participant::Result<()> {
        let arrival = arrival.duration_since(self.origin);
        let length = duration_from_samples(pcm.len() as u64);
        // The decoder's position is a 48 kHz timeline; wrapping to u32 is what RtpClock unwraps.
        let at = self
            .clock
            .handle_packet(self.position as u32, arrival.saturating_sub(length));
        self.position += pcm.len() as u64;
        self.sender.send(MediaInput::Audio {
            speaker: self.speaker.clone(),
            at,
            pcm,
        });
        Ok(())
    }
}

/// Feeds a decoded screen share to the media thread, placing each frame by its RTP timestamp (the shared
/// receive loop asks for keyframes after losses).
struct ScreenSink {
    sharer: String,
    sender: MediaSender,
    origin: Instant,
    clock: RtpClock,
}

impl ScreenSink {
    fn new(sharer: String, sender: MediaSender, origin: Instant) -> ScreenSink {
        ScreenSink {
            sharer,
            sender,
            origin,
            clock: RtpClock::new(
                VIDEO_CLOCK_RATE,
                Duration::from_millis(100),
                Duration::from_secs(1),
            ),
        }
    }
}

impl TrackSink for ScreenSink {
    type Error = calls_participant::Error;

    fn frame(
        &mut self,
        frame: VideoFrame,
        rtp_timestamp: u32,
        arrival: Instant,
    ) -> calls_participant::Result<()> {
        let at = self
            .clock
            .handle_packet(rtp_timestamp, arrival.duration_since(self.origin));
        match I420Frame::new(frame.width, frame.height, frame.data) {
            Ok(frame) => {
                self.sender.send(MediaInput::Video {
                    sharer: self.sharer.clone(),
                    at,
                    frame,
                });
            }
            Err(error) => {
                tracing::warn!(sharer = %self.sharer, %error, "dropping a malformed screen frame")
            }
        }
        Ok(())
    }
}

pub use calls_job::shell::{report_invalid_settings, shutdown_signal};
