//! The call loop every bot job shares (the recorder, the transcriber): join the call, keep the roster,
//! apply the stop policy ([`Lifecycle`]: call end, `job_stop`, SIGTERM, alone timeout), run the timers
//! (the job's tick, the heartbeat, a progress report every 5 s), dispatch the call's events, then leave,
//! upload and report `finished`.
//!
//! A job is a [`BotJob`]: it says what to do with a track, a roster change, a tick, and what to do once
//! the call is over; [`run_bot_job`] owns the call and calls it. The driver never decides anything itself:
//! the stop decision is [`Lifecycle`]'s, the roster [`Roster`]'s, the heartbeat [`Heartbeat`]'s.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use calls_participant::{
    ConnectionState, Event, JoinOptions, Participant, ParticipantInfo, RemoteTrack,
};
use calls_protocol::signalling::Caption;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::error::Error;
use crate::heartbeat::Heartbeat;
use crate::lifecycle::{Lifecycle, Roster, StopReason};
use crate::offloader::OffloaderClient;
use crate::settings::{CallTarget, JobIdentity};
use crate::shell::{report_failed, report_finished, report_started};

/// How often the job's progress goes to the offloader while it is in the call.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How long the bot waits for media to connect after joining.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long leaving may take before the bot just goes.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the driver needs to know about the call a job joins.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// `JOB_ID`, `JOB_TOKEN`, `OFFLOADER_URL`.
    pub identity: JobIdentity,
    /// `CALL_ID`, `SFU_URL`, `BOT_TOKEN`.
    pub call: CallTarget,
    /// How long the bot may be alone in the call before it stops.
    pub alone_timeout: Duration,
    /// The image health check's file (see [`crate::heartbeat`]).
    pub heartbeat_file: PathBuf,
}

/// The call as a job sees it when the driver calls it.
pub struct InCall<'a> {
    /// Call time zero: when the bot's media connected (the job's timeline starts here).
    pub origin: Instant,
    /// Call time when the event arrived.
    pub now: Duration,
    /// The people in the call (bots excluded), already updated with the event being handled.
    pub roster: &'a Roster,
    participant: &'a Participant,
}

impl InCall<'_> {
    /// The display name of a track's owner: as announced with the track, else as the roster or the
    /// signalling knows them, else the session id.
    pub fn owner_name(&self, track: &RemoteTrack) -> String {
        track
            .owner_name
            .clone()
            .or_else(|| self.roster.name_of(track.owner()).map(str::to_owned))
            .or_else(|| self.participant.name_of(track.owner()))
            .unwrap_or_else(|| track.owner().to_owned())
    }
}

/// A change of the roster, after the driver applied it.
#[derive(Debug, Clone)]
pub enum RosterChange {
    /// Someone joined.
    Joined(ParticipantInfo),
    /// Someone left.
    Left {
        /// Their session.
        session_id: String,
    },
}

/// A change of someone's media (mute, screen share), as the SFU announced it.
#[derive(Debug, Clone)]
pub enum MediaChange {
    /// Someone muted or unmuted.
    Mute {
        /// Whose.
        session_id: String,
        /// The new state.
        muted: bool,
    },
    /// Someone started or stopped sharing their screen.
    Screen {
        /// Whose.
        session_id: String,
        /// The new state.
        on: bool,
    },
}

/// What the job reports with `finished` once its artifacts are uploaded, and what it returns.
pub struct Finished<O> {
    /// The `finished` message an operator reads.
    pub message: String,
    /// The counters sent with it.
    pub counters: Vec<(&'static str, f64)>,
    /// The job's result.
    pub outcome: O,
}

/// One uploaded artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Its artifact name.
    pub name: String,
    /// Its size.
    pub bytes: u64,
}

/// A job that sits in a call: what it does with what the call brings. The driver calls the methods in
/// this order: [`on_joined`](Self::on_joined), then while in the call any of `on_track`, `on_roster`,
/// `on_media`, `on_tick`, `on_report`, `next_caption`; once the stop policy says so,
/// [`on_stop`](Self::on_stop) (still in the call), [`finish`](Self::finish) (while leaving) and
/// [`delivered`](Self::delivered) (after the upload).
pub trait BotJob {
    /// What a successful job returns.
    type Outcome;
    /// The job's error; the shell's own failures (joining, the offloader) convert into it.
    type Error: From<Error> + std::fmt::Display + Sync;

    /// How often [`on_tick`](Self::on_tick) runs.
    const TICK: Duration;

    /// The bot is in the call and its media connected; call time starts now.
    fn on_joined(&mut self, call: &InCall<'_>) -> Result<(), Self::Error>;

    /// A remote track started arriving.
    fn on_track(&mut self, track: RemoteTrack, call: &InCall<'_>);

    /// Someone joined or left (the roster in `call` already says so).
    fn on_roster(&mut self, _change: RosterChange, _call: &InCall<'_>) {}

    /// Someone muted, unmuted, or started or stopped a screen share.
    fn on_media(&mut self, _change: MediaChange, _call: &InCall<'_>) {}

    /// Every [`TICK`](Self::TICK): returns the job's work counter (anything that grows only while its
    /// work advances), which keeps the heartbeat going.
    fn on_tick(&mut self, now: Duration) -> u64;

    /// Every [`REPORT_EVERY`] while in the call: send progress to the offloader (in the background).
    fn on_report(&mut self, client: &OffloaderClient);

    /// The next caption to publish in the call; never ready for a job that publishes none.
    fn next_caption(&mut self) -> impl Future<Output = Option<Caption>> {
        std::future::pending()
    }

    /// The job is to stop for `reason`; the bot is still in the call (to publish its last captions).
    fn on_stop(
        &mut self,
        reason: &StopReason,
        call: &Participant,
        client: &OffloaderClient,
    ) -> impl Future<Output = Result<(), Self::Error>>;

    /// The work after the call, while the bot leaves: returns the files to upload, in order, as
    /// (path, artifact name). Nothing is uploaded when it fails.
    fn finish(
        &mut self,
        after: &mut AfterCall<'_>,
    ) -> impl Future<Output = Result<Vec<(PathBuf, String)>, Self::Error>>;

    /// Every artifact is uploaded: what to report with `finished`, and the job's outcome.
    fn delivered(self, reason: StopReason, uploaded: &[Uploaded]) -> Finished<Self::Outcome>;
}

/// What [`BotJob::finish`] may use: the offloader client and the heartbeat on the call's clock.
pub struct AfterCall<'a> {
    /// The job's offloader client (progress reports).
    pub client: &'a OffloaderClient,
    /// The call's time zero.
    pub origin: Instant,
    heartbeat: &'a mut Heartbeat,
}

impl AfterCall<'_> {
    /// Beats the heartbeat when `work_done` advanced (see [`Heartbeat::poll`]).
    pub fn heartbeat(&mut self, work_done: u64) {
        self.heartbeat.poll(self.origin.elapsed(), work_done);
    }
}

/// Runs a bot job from joining the call to `finished`: `prepare` makes the job before the bot joins
/// anybody's call (a missing model fails here), then the driver joins and runs it. `shutdown` resolves on
/// SIGTERM/SIGINT. On failure the offloader is told why (best effort), nothing is uploaded, and the error
/// is returned: the caller exits non-zero so the container and its data are kept.
pub async fn run_bot_job<J: BotJob>(
    settings: &CallSettings,
    prepare: impl FnOnce() -> Result<J, J::Error>,
    shutdown: impl Future<Output = ()>,
) -> Result<J::Outcome, J::Error> {
    let client = OffloaderClient::new(&settings.identity)?;
    let result = match prepare() {
        Ok(job) => drive(job, settings, &client, shutdown).await,
        Err(error) => Err(error),
    };
    if let Err(error) = &result {
        report_failed(&client, error).await;
    }
    result
}

async fn drive<J: BotJob>(
    mut job: J,
    settings: &CallSettings,
    client: &OffloaderClient,
    shutdown: impl Future<Output = ()>,
) -> Result<J::Outcome, J::Error> {
    let mut heartbeat = Heartbeat::start(&settings.heartbeat_file);
    let mut me = join(&settings.call).await?;
    let origin = Instant::now();
    let mut roster = Roster::new(me.initial_participants(), me.session_id());
    tracing::info!(session_id = %me.session_id(), people = roster.count(), "joined call");
    report_started(client, "joined the call").await;
    job.on_joined(&InCall {
        origin,
        now: Duration::ZERO,
        roster: &roster,
        participant: &me,
    })?;

    let mut lifecycle = Lifecycle::new(Duration::ZERO, settings.alone_timeout);
    lifecycle.handle_participants(Duration::ZERO, roster.count());
    let mut tick = interval(Instant::now(), J::TICK);
    // The first progress report comes one period after `started`, not right on top of it.
    let mut report = interval(Instant::now() + REPORT_EVERY, REPORT_EVERY);
    tokio::pin!(shutdown);
    let reason = loop {
        let now = origin.elapsed();
        if let Some(reason) = lifecycle.poll_stop(now) {
            break reason;
        }
        tokio::select! {
            _ = &mut shutdown => lifecycle.handle_signal(),
            _ = tick.tick() => heartbeat.poll(now, job.on_tick(now)),
            _ = report.tick() => job.on_report(client),
            Some(caption) = job.next_caption() => {
                if let Err(error) = me.publish_caption(caption).await {
                    tracing::warn!(%error, "a live caption could not be published");
                }
            }
            event = me.next_event() => {
                let mut call = Dispatch { lifecycle: &mut lifecycle, roster: &mut roster, me: &me, origin, now };
                call.handle_event(&mut job, event);
            }
        }
    };

    tracing::info!(%reason, call_s = origin.elapsed().as_secs_f64(), "call ended");
    let dropped = me.events_dropped();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "events of the call were dropped: its queues were full"
        );
    }
    job.on_stop(&reason, &me, client).await?;
    // Leave while finishing and uploading: the bot should disappear from the call promptly.
    let leaving = tokio::spawn(async move {
        if tokio::time::timeout(LEAVE_TIMEOUT, me.leave())
            .await
            .is_err()
        {
            tracing::warn!("leaving the call timed out");
        }
    });
    let mut after = AfterCall {
        client,
        origin,
        heartbeat: &mut heartbeat,
    };
    let artifacts = job.finish(&mut after).await?;
    let mut uploaded = Vec::with_capacity(artifacts.len());
    for (path, name) in artifacts {
        let bytes = client.upload(&path, &name).await?;
        tracing::info!(artifact = %name, bytes, "uploaded");
        uploaded.push(Uploaded { name, bytes });
    }
    let finished = job.delivered(reason, &uploaded);
    // `finished` tells the offloader the work is delivered: a job stopped through its API then ends
    // `succeeded` rather than `cancelled`. It decides the job's outcome, so it is retried.
    report_finished(client, finished.message, &finished.counters).await;
    if leaving.await.is_err() {
        tracing::warn!("the leaving task panicked");
    }
    Ok(finished.outcome)
}

/// One event of the call, applied: the stop policy and the roster first, then the job.
struct Dispatch<'a> {
    lifecycle: &'a mut Lifecycle,
    roster: &'a mut Roster,
    me: &'a Participant,
    origin: Instant,
    now: Duration,
}

impl Dispatch<'_> {
    fn handle_event<J: BotJob>(&mut self, job: &mut J, event: Option<Event>) {
        let change = match event {
            None | Some(Event::Disconnected) => return self.lifecycle.handle_call_ended(),
            Some(Event::Connection(ConnectionState::Failed | ConnectionState::Closed)) => {
                return self.lifecycle.handle_call_ended();
            }
            Some(Event::JobStop { reason }) => {
                tracing::info!(%reason, "job_stop received");
                return self.lifecycle.handle_job_stop();
            }
            Some(Event::Track(track)) => return job.on_track(track, &self.call()),
            Some(Event::MuteState { session_id, muted }) => {
                let change = MediaChange::Mute { session_id, muted };
                return job.on_media(change, &self.call());
            }
            Some(Event::ScreenState {
                session_id,
                screen_on,
            }) => {
                let change = MediaChange::Screen {
                    session_id,
                    on: screen_on,
                };
                return job.on_media(change, &self.call());
            }
            Some(Event::ParticipantJoined(info)) => {
                self.roster.handle_joined(&info);
                RosterChange::Joined(info)
            }
            Some(Event::ParticipantLeft { session_id }) => {
                self.roster.handle_left(&session_id);
                RosterChange::Left { session_id }
            }
            Some(_) => return,
        };
        self.lifecycle
            .handle_participants(self.now, self.roster.count());
        job.on_roster(change, &self.call());
    }

    fn call(&self) -> InCall<'_> {
        InCall {
            origin: self.origin,
            now: self.now,
            roster: self.roster,
            participant: self.me,
        }
    }
}

/// Joins the call and waits for media.
async fn join(call: &CallTarget) -> Result<Participant, Error> {
    let options = JoinOptions {
        call_id: Some(call.call_id.clone()),
        ..JoinOptions::default()
    };
    let url =
        calls_participant::signalling_url(&call.sfu_url).map_err(|e| Error::Call(e.to_string()))?;
    let mut me = Participant::join(&url, call.join_token.expose(), options)
        .await
        .map_err(|e| Error::Call(format!("joining {url}: {e}")))?;
    me.wait_connected(CONNECT_TIMEOUT)
        .await
        .map_err(|e| Error::Call(format!("connecting media: {e}")))?;
    Ok(me)
}

/// A timer that skips the ticks it missed rather than bursting to catch up.
fn interval(start: Instant, period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(start, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    interval
}
