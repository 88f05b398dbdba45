//! The transcription job: join the call as a bot, capture every speaker's voice to disk while the call runs,
//! stop by the shared stop policy (call end, `job_stop`, SIGTERM, alone timeout), then decode and transcribe
//! each speaker, upload `transcript.{vtt,srt,txt,json}` (and each speaker's WAV with `KEEP_AUDIO=true`), and
//! report progress and counters to the offloader.
//!
//! The shell around the pure parts: `calls_job` ([`Lifecycle`], [`Roster`], the offloader client, the
//! heartbeat), [`crate::capture`] (packets to disk, placed on the call timeline), [`crate::decode`] (16 kHz
//! pieces) and the speech pipeline ([`Transcriber`]). Every phase logs one plain line so `docker logs` tells
//! the story: joined, speakers seen, call ended, transcribing N s of speech, uploaded.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use calls_job::shell::{report_failed, report_finished, report_started, spawn_progress};
use calls_job::{Heartbeat, Lifecycle, OffloaderClient, Roster, StopReason};
use calls_participant::{
    receive_track, ConnectionState, Event, JoinOptions, Participant, ReceiveOptions, RemoteTrack,
    TrackKind,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::capture::{Capture, CaptureSink, Speakers, QUEUE_PACKETS};
use crate::config::JobConfig;
use crate::decode::{decode_file, DecodeError, SAMPLE_RATE};
use crate::live_job::{LiveCaptions, LiveModels, LiveOptions};
use crate::pipeline::{AudioPiece, Progress, Speaker, TranscribeOptions, Transcriber};
use crate::transcript::{merge, SpeakerTranscript, Transcript};

/// The transcript artifacts, in upload order.
pub const ARTIFACTS: [&str; 4] = [
    "transcript.vtt",
    "transcript.srt",
    "transcript.txt",
    "transcript.json",
];
const TICK: Duration = Duration::from_secs(1);
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// What can end a transcription job early. Messages are lowercase; they become the job's failure reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid settings, or the offloader refused a report or an upload.
    #[error(transparent)]
    Shell(#[from] calls_job::Error),
    /// Joining or talking to the call failed.
    #[error("call: {0}")]
    Call(String),
    /// The model, the VAD or whisper failed (an unknown model lists the models the image has).
    #[error(transparent)]
    Speech(#[from] crate::Error),
    /// A speaker's capture could not be decoded.
    #[error("decoding the audio of {speaker}: {source}")]
    Decode {
        /// The speaker's name.
        speaker: String,
        /// What went wrong.
        source: DecodeError,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A worker thread died.
    #[error("{0} panicked")]
    Panicked(&'static str),
}

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// What a successful job did.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// Why the bot left the call.
    pub reason: StopReason,
    /// Speakers heard.
    pub speakers: usize,
    /// Segments in the transcript.
    pub segments: usize,
    /// Seconds of speech transcribed.
    pub speech_seconds: f64,
}

/// Runs the whole job. `shutdown` resolves on SIGTERM/SIGINT. On failure the offloader is told why, nothing
/// partial is uploaded, and the error is returned (the caller exits non-zero so the container is kept).
pub async fn run(
    config: JobConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<JobOutcome, Error> {
    let client = OffloaderClient::new(&config.identity)?;
    match transcribe_call(&config, &client, shutdown).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            report_failed(&client, &error).await;
            Err(error)
        }
    }
}

async fn transcribe_call(
    config: &JobConfig,
    client: &OffloaderClient,
    shutdown: impl Future<Output = ()>,
) -> Result<JobOutcome, Error> {
    tracing::info!(
        job_id = %config.identity.job_id,
        call_id = %config.call.call_id,
        model = %config.model,
        "transcriber starting"
    );
    // A model the image lacks fails the job before it joins anybody's call.
    let mut options = TranscribeOptions::for_model(&config.models_dir, &config.model)?;
    options.language = config.language.clone();
    options.beam_size = config.beam_size;
    options.threads = config.threads;
    options.initial_prompt = config.initial_prompt.clone();

    // Live captions (when asked) load their models before the bot joins, so a missing one fails first.
    let live_models = match &config.live_model {
        Some(name) => {
            let options = LiveOptions {
                model: crate::models::live_model_path(&config.models_dir, name)?,
                vad_model: options.vad_model.clone(),
                workers: config.threads.max(1) as usize,
                threads_per_worker: 1,
                language: config.language.clone(),
                initial_prompt: config.initial_prompt.clone(),
            };
            Some(LiveModels::load(&options)?)
        }
        None => None,
    };

    let capture_dir = config.output_dir.join("capture");
    let artifacts_dir = config.output_dir.join("artifacts");
    let capture =
        Capture::start(&capture_dir, QUEUE_PACKETS).map_err(io("starting the capture"))?;
    let mut heartbeat = Heartbeat::start(&config.heartbeat_file);

    let (mut me, origin) = join(config).await?;
    let mut roster = Roster::new(me.initial_participants(), me.session_id());
    tracing::info!(session_id = %me.session_id(), people = roster.count(), "joined call");
    report_started(client, "joined the call").await;

    let (mut live, live_tap) = match live_models {
        Some(models) => {
            let file = models.model_file().display().to_string();
            let (live, tap) = LiveCaptions::start(models, origin)?;
            tracing::info!(
                model = config.live_model.as_deref().unwrap_or_default(),
                %file,
                "live captions on"
            );
            (Some(live), Some(tap))
        }
        None => (None, None),
    };

    let mut lifecycle = Lifecycle::new(Duration::ZERO, config.alone_timeout);
    lifecycle.handle_participants(Duration::ZERO, roster.count());
    let mut speakers = Speakers::default();
    let stop_tracks = CancellationToken::new();
    let mut tracks: Vec<JoinHandle<()>> = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut report = tokio::time::interval_at(Instant::now() + REPORT_EVERY, REPORT_EVERY);
    report.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut ticks = 0u64;
    tokio::pin!(shutdown);

    let reason = loop {
        let now = origin.elapsed();
        if let Some(reason) = lifecycle.poll_stop(now) {
            break reason;
        }
        tokio::select! {
            _ = &mut shutdown => lifecycle.handle_signal(),
            _ = tick.tick() => {
                // While in the call the loop itself is the work: it beats as long as it runs.
                ticks += 1;
                heartbeat.poll(now, ticks + capture.packets_written());
            }
            _ = report.tick() => {
                let message = format!(
                    "in the call: {} speakers, {} voice packets captured",
                    speakers.len(),
                    capture.packets_written()
                );
                let counters = vec![
                    ("speakers", speakers.len() as f64),
                    ("voice_packets_captured", capture.packets_written() as f64),
                    ("voice_packets_dropped", capture.packets_dropped() as f64),
                ];
                spawn_progress(client, message, counters);
                if let Some(live) = &live {
                    spawn_live_report(client, live);
                }
            }
            Some(caption) = next_caption(&mut live) => {
                if let Err(error) = me.publish_caption(caption).await {
                    tracing::warn!(%error, "a live caption could not be published");
                }
            }
            event = me.next_event() => match event {
                None | Some(Event::Disconnected) => lifecycle.handle_call_ended(),
                Some(Event::Connection(ConnectionState::Failed | ConnectionState::Closed)) => {
                    lifecycle.handle_call_ended();
                }
                Some(Event::Track(track)) if track.kind() == TrackKind::Voice => {
                    let name = track
                        .owner_name
                        .clone()
                        .or_else(|| roster.name_of(track.owner()).map(str::to_owned))
                        .or_else(|| me.name_of(track.owner()))
                        .unwrap_or_else(|| track.owner().to_owned());
                    let (speaker, number) = speakers.handle_track(track.owner(), &name);
                    tracing::info!(speaker = %name, session_id = %track.owner(), track = number, "speaker seen");
                    let mut sink = CaptureSink::new(speaker, number, origin, capture.sender());
                    if let Some(tap) = &live_tap {
                        sink = sink.with_live(tap.clone(), track.owner(), &name);
                    }
                    tracks.push(tokio::spawn(capture_track(track, sink, stop_tracks.clone())));
                }
                Some(Event::ParticipantJoined(info)) => {
                    roster.handle_joined(&info);
                    lifecycle.handle_participants(now, roster.count());
                }
                Some(Event::ParticipantLeft { session_id }) => {
                    roster.handle_left(&session_id);
                    lifecycle.handle_participants(now, roster.count());
                }
                Some(Event::JobStop { reason }) => {
                    tracing::info!(%reason, "job_stop received");
                    lifecycle.handle_job_stop();
                }
                Some(_) => {}
            },
        }
    };

    let call_duration = origin.elapsed();
    tracing::info!(%reason, call_s = call_duration.as_secs(), speakers = speakers.len(), "call ended");
    stop_tracks.cancel();
    for track in tracks {
        let _ = track.await;
    }
    drop(live_tap);
    if let Some(mut live) = live {
        // The utterances in progress get their final captions before the bot leaves.
        live.finish();
        while let Ok(Some(caption)) =
            tokio::time::timeout(Duration::from_secs(10), live.next_caption()).await
        {
            if let Err(error) = me.publish_caption(caption).await {
                tracing::warn!(%error, "a live caption could not be published");
            }
        }
        // Awaited, not spawned: a background report still in flight could otherwise land after this last
        // one and leave older figures in the job's counters.
        if let Err(error) = client
            .report_update(calls_job::RetryPolicy::ONCE, &live.status_update())
            .await
        {
            tracing::warn!(%error, "live-caption metrics report failed");
        }
        tokio::task::spawn_blocking(move || live.join())
            .await
            .map_err(|_| Error::Panicked("the live captions"))?;
    }
    let leaving = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), me.leave()).await;
    });
    let summary = tokio::task::spawn_blocking(move || capture.finish())
        .await
        .map_err(|_| Error::Panicked("the capture thread"))?
        .map_err(io("finishing the capture"))?;
    if summary.dropped > 0 {
        tracing::warn!(
            dropped = summary.dropped,
            "voice packets were dropped during the call"
        );
    }

    // Transcription runs on a blocking thread; it publishes how much speech is done through a watch.
    let speaker_list = speakers.list();
    let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(0u8);
    let done_work = Arc::new(AtomicU64::new(0));
    let work = Arc::clone(&done_work);
    let post_call = PostCall {
        call_id: config.call.call_id.clone(),
        speakers: speaker_list,
        files: summary.files,
        options,
        keep_audio: config.keep_audio,
        call_ms: call_duration.as_millis() as u64,
        artifacts_dir: artifacts_dir.clone(),
        activity: Arc::clone(&done_work),
    };
    let mut transcribing = tokio::task::spawn_blocking(move || {
        post_call.run(&mut |percent| {
            work.fetch_add(1, Ordering::Relaxed);
            progress_tx.send_replace(percent);
        })
    });
    let mut progress_open = true;
    let outcome = loop {
        tokio::select! {
            result = &mut transcribing => break result.map_err(|_| Error::Panicked("the transcription"))?,
            _ = tick.tick() => heartbeat.poll(origin.elapsed(), ticks + done_work.load(Ordering::Relaxed)),
            changed = progress_rx.changed(), if progress_open => match changed {
                Ok(()) => {
                    let percent = *progress_rx.borrow_and_update();
                    spawn_progress(client, format!("transcribed {percent}% of the speech"), vec![("progress_percent", f64::from(percent))]);
                }
                // The transcription finished and dropped its sender; its result is about to arrive.
                Err(_) => progress_open = false,
            },
        }
    };
    let (transcript, wavs) = match outcome {
        Ok(done) => done,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&artifacts_dir);
            return Err(error);
        }
    };

    let counters = transcript_counters(&transcript, summary.dropped);
    let speech_seconds = transcript.summary.speech_s;
    let segments = transcript.summary.segments;
    if transcript.is_empty() {
        tracing::info!("no speech found: the transcript is empty");
    }
    let mut uploaded = Vec::new();
    for name in ARTIFACTS.iter().map(|n| (*n).to_owned()).chain(wavs) {
        let bytes = client.upload(&artifacts_dir.join(&name), &name).await?;
        tracing::info!(artifact = %name, bytes, "uploaded");
        uploaded.push(name);
    }
    let message = if transcript.is_empty() {
        format!(
            "no speech found: uploaded an empty transcript ({} speakers heard)",
            speakers.len()
        )
    } else {
        format!(
            "uploaded {} ({segments} segments, {speech_seconds:.0} s of speech from {} speakers)",
            uploaded.join(", "),
            transcript.speakers.len()
        )
    };
    report_finished(client, message, &counters).await;
    let _ = leaving.await;
    Ok(JobOutcome {
        reason,
        speakers: speakers.len(),
        segments,
        speech_seconds,
    })
}

/// The next live caption, or never when live captions are off or finished.
async fn next_caption(
    live: &mut Option<LiveCaptions>,
) -> Option<calls_protocol::signalling::Caption> {
    match live {
        Some(live) => live.next_caption().await,
        None => std::future::pending().await,
    }
}

/// Sends the live-caption series (counters and histograms) to the offloader in the background.
fn spawn_live_report(client: &OffloaderClient, live: &LiveCaptions) {
    let client = client.clone();
    let update = live.status_update();
    tokio::spawn(async move {
        if let Err(error) = client
            .report_update(calls_job::RetryPolicy::ONCE, &update)
            .await
        {
            tracing::warn!(%error, "live-caption metrics report failed");
        }
    });
}

/// Joins the call and waits for media; returns the participant and the call clock's origin.
async fn join(config: &JobConfig) -> Result<(Participant, Instant), Error> {
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
    Ok((me, Instant::now()))
}

/// Receives one voice track into the capture until it ends or the job stops.
async fn capture_track(track: RemoteTrack, mut sink: CaptureSink, stop: CancellationToken) {
    let options = ReceiveOptions::default().until_cancelled(stop);
    if let Err(error) = receive_track(&track, &options, &mut sink).await {
        tracing::warn!(owner = %track.owner(), %error, "voice capture ended with an error");
    }
}

/// The counters reported with `finished`.
pub fn transcript_counters(transcript: &Transcript, dropped: u64) -> Vec<(&'static str, f64)> {
    let summary = &transcript.summary;
    vec![
        ("audio_seconds", summary.audio_s),
        ("speech_seconds", summary.speech_s),
        ("segments", summary.segments as f64),
        ("real_time_factor", summary.real_time_factor),
        ("speakers", transcript.speakers.len() as f64),
        ("voice_packets_dropped", dropped as f64),
        ("progress_percent", 100.0),
    ]
}

/// Everything after the call, on a blocking thread: decode, transcribe, write the artifacts.
struct PostCall {
    call_id: String,
    speakers: Vec<Speaker>,
    files: Vec<Option<(PathBuf, u64)>>,
    options: TranscribeOptions,
    keep_audio: bool,
    call_ms: u64,
    artifacts_dir: PathBuf,
    /// Whisper's own progress is counted here too, so the heartbeat advances within a long chunk.
    activity: Arc<AtomicU64>,
}

impl PostCall {
    /// Returns the transcript and the names of the WAV artifacts written (with `keep_audio`).
    fn run(self, progress: &mut dyn FnMut(u8)) -> Result<(Transcript, Vec<String>), Error> {
        std::fs::create_dir_all(&self.artifacts_dir)
            .map_err(io("creating the artifact directory"))?;
        let mut decoded: Vec<(Speaker, Vec<AudioPiece>)> = Vec::new();
        for (index, speaker) in self.speakers.iter().enumerate() {
            let Some(Some((path, _))) = self.files.get(index) else {
                decoded.push((speaker.clone(), Vec::new()));
                continue;
            };
            let pieces = decode_file(path).map_err(|source| Error::Decode {
                speaker: speaker.name.clone(),
                source,
            })?;
            decoded.push((speaker.clone(), pieces));
        }
        let audio_ms: Vec<u64> = decoded
            .iter()
            .map(|(_, pieces)| pieces.iter().map(|p| samples_ms(p.samples.len())).sum())
            .collect();
        let total_audio_ms: u64 = audio_ms.iter().sum::<u64>().max(1);
        tracing::info!(
            speakers = decoded.len(),
            audio_s = audio_ms.iter().sum::<u64>() / 1000,
            "decoded the captured audio"
        );
        let mut wavs = Vec::new();
        if self.keep_audio {
            for (index, (speaker, pieces)) in decoded.iter().enumerate() {
                let name = format!("audio-{index}-{}.wav", ascii_stem(&speaker.name));
                write_wav(&self.artifacts_dir.join(&name), pieces, self.call_ms)?;
                wavs.push(name);
            }
        }

        let mut transcriber = Transcriber::new(&self.options)?;
        transcriber.set_activity(Arc::clone(&self.activity));
        let mut transcripts: Vec<SpeakerTranscript> = Vec::new();
        let mut audio_done = 0u64;
        let mut last_percent = 0u8;
        for ((speaker, pieces), audio) in decoded.into_iter().zip(&audio_ms) {
            let mut announced = false;
            let transcript = transcriber.transcribe_speaker(&speaker, pieces, &mut |p: Progress| {
                if !announced {
                    announced = true;
                    tracing::info!(speaker = %speaker.name, speech_s = p.total_ms / 1000, "transcribing {} s of speech", p.total_ms / 1000);
                }
                // Percent of all captured audio behind us, the current speaker's share by its speech done.
                let share = if p.total_ms == 0 { 1.0 } else { p.done_ms as f64 / p.total_ms as f64 };
                let done = audio_done as f64 + *audio as f64 * share;
                let percent = ((done / total_audio_ms as f64) * 100.0).floor().min(99.0) as u8;
                if percent > last_percent {
                    last_percent = percent;
                    progress(percent);
                }
            })?;
            audio_done += audio;
            tracing::info!(
                speaker = %speaker.name,
                segments = transcript.segments.len(),
                language = transcript.language.as_deref().unwrap_or("?"),
                "speaker transcribed"
            );
            transcripts.push(transcript);
        }
        let model = self
            .options
            .model
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.trim_start_matches("ggml-").to_owned())
            .unwrap_or_default();
        let transcript = merge(&self.call_id, &model, self.call_ms, transcripts);
        for (name, text) in ARTIFACTS.iter().zip([
            transcript.to_vtt(),
            transcript.to_srt(),
            transcript.to_txt(),
            transcript.to_json(),
        ]) {
            std::fs::write(self.artifacts_dir.join(name), text)
                .map_err(io("writing the transcript"))?;
        }
        Ok((transcript, wavs))
    }
}

fn samples_ms(samples: usize) -> u64 {
    samples as u64 * 1000 / u64::from(SAMPLE_RATE)
}

/// A speaker's audio on the call timeline (silence where they did not send) as a 16 kHz 16-bit WAV.
fn write_wav(path: &Path, pieces: &[AudioPiece], call_ms: u64) -> Result<(), Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let wav_error = |e: hound::Error| Error::Io {
        context: "writing a speaker's wav",
        source: std::io::Error::other(e),
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(wav_error)?;
    let per_ms = u64::from(SAMPLE_RATE / 1000);
    let mut written = 0u64;
    for piece in pieces {
        let start = piece.start_ms * per_ms;
        while written < start {
            writer.write_sample(0i16).map_err(wav_error)?;
            written += 1;
        }
        for &sample in &piece.samples {
            // In range by the clamp; the cast only drops the fraction.
            writer
                .write_sample((sample.clamp(-1.0, 1.0) * 32_767.0) as i16)
                .map_err(wav_error)?;
            written += 1;
        }
    }
    while written < call_ms * per_ms {
        writer.write_sample(0i16).map_err(wav_error)?;
        written += 1;
    }
    writer.finalize().map_err(wav_error)
}

/// An artifact-safe ASCII file name part from a display name.
pub fn ascii_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    if stem.trim_matches('_').is_empty() {
        "speaker".to_owned()
    } else {
        stem
    }
}

/// Resolves on SIGTERM or SIGINT.
pub use calls_job::shell::{report_invalid_settings, shutdown_signal};
