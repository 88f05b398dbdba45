//! The transcription job: a [`BotJob`] that captures every speaker's voice to disk while the call runs
//! (and captions it live when asked), then decodes and transcribes each speaker, and hands over
//! `transcript.{vtt,srt,txt,json}` (and each speaker's WAV with `KEEP_AUDIO=true`) for upload.
//!
//! The shared driver (`calls_job::driver`) joins, keeps the roster, applies the stop policy (call end,
//! `job_stop`, SIGTERM, alone timeout) and uploads. Around the pure parts: [`crate::capture`] (packets to
//! disk, placed on the call timeline), [`crate::live_job`] (live captions), `decode` (16 kHz
//! pieces) and the speech pipeline ([`Transcriber`]). Every phase logs one plain line so `docker logs`
//! tells the story: joined, speakers seen, call ended, transcribing N s of speech, uploaded.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use calls_job::shell::spawn_progress;
use calls_job::{
    AfterCall, BotJob, CallSettings, Finished, InCall, OffloaderClient, StopReason, Uploaded,
};
use calls_participant::{receive_track, Participant, ReceiveOptions, RemoteTrack, TrackKind};
use calls_protocol::signalling::Caption;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::capture::{Capture, CaptureFiles, CaptureSink, CaptureSummary, Speakers, QUEUE_PACKETS};
use crate::config::JobConfig;
use crate::decode::{decode_file, DecodeError, SAMPLE_RATE};
use crate::live_job::{LiveCaptions, LiveModels, LiveOptions, LiveTap};
use crate::pipeline::{AudioPiece, Progress, TranscribeOptions, Transcriber};
use crate::transcript::{merge, Speaker, SpeakerTranscript, Transcript};

/// The transcript artifacts, in upload order.
pub const ARTIFACTS: [&str; 4] = [
    "transcript.vtt",
    "transcript.srt",
    "transcript.txt",
    "transcript.json",
];

/// What can end a transcription job early. Messages are lowercase; they become the job's failure reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid settings, joining the call failed, or the offloader refused a report or an upload.
    #[error(transparent)]
    Shell(#[from] calls_job::Error),
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
    let settings = CallSettings {
        identity: config.identity.clone(),
        call: config.call.clone(),
        alone_timeout: config.alone_timeout,
        heartbeat_file: config.heartbeat_file.clone(),
    };
    calls_job::run_bot_job(&settings, || TranscriptionJob::prepare(&config), shutdown).await
}

/// Live captions: the models until the bot joins, then the captioner and the capture's tap into it.
enum Live {
    Off,
    Loaded {
        models: LiveModels,
        name: String,
    },
    On {
        captions: LiveCaptions,
        tap: LiveTap,
    },
}

/// A transcription job, from capture during the call to the transcript.
struct TranscriptionJob {
    call_id: String,
    options: TranscribeOptions,
    keep_audio: bool,
    artifacts_dir: PathBuf,
    capture: Option<Capture>,
    live: Live,
    speakers: Speakers,
    stop_tracks: CancellationToken,
    tracks: Vec<JoinHandle<()>>,
    origin: tokio::time::Instant,
    /// Ticks while in the call, then units of transcription done: the heartbeat's work counter.
    work: u64,
    call_duration: Duration,
    /// Set by `finish`: the transcript and the capture's drops.
    transcript: Option<(Transcript, u64)>,
}

impl TranscriptionJob {
    /// Loads what the job needs before the bot joins anybody's call (a missing model fails the job
    /// first) and starts the capture.
    fn prepare(config: &JobConfig) -> Result<TranscriptionJob, Error> {
        tracing::info!(
            job_id = %config.identity.job_id,
            call_id = %config.call.call_id,
            model = %config.model,
            "transcriber starting"
        );
        let mut options = TranscribeOptions::for_model(&config.models_dir, &config.model)?;
        options.language = config.language.clone();
        options.beam_size = config.beam_size;
        options.threads = config.threads;
        options.initial_prompt = config.initial_prompt.clone();
        let live = match &config.live_model {
            Some(name) => {
                let live_options = LiveOptions {
                    model: crate::models::live_model_path(&config.models_dir, name)?,
                    vad_model: options.vad_model.clone(),
                    workers: config.threads.max(1) as usize,
                    threads_per_worker: 1,
                    language: config.language.clone(),
                    initial_prompt: config.initial_prompt.clone(),
                    caption_id_prefix: config.identity.job_id.chars().take(8).collect(),
                };
                let models = LiveModels::load(&live_options)?;
                Live::Loaded {
                    models,
                    name: name.clone(),
                }
            }
            None => Live::Off,
        };
        let capture = Capture::start(&config.output_dir.join("capture"), QUEUE_PACKETS)
            .map_err(io("starting the capture"))?;
        Ok(TranscriptionJob {
            call_id: config.call.call_id.clone(),
            options,
            keep_audio: config.keep_audio,
            artifacts_dir: config.output_dir.join("artifacts"),
            capture: Some(capture),
            live,
            speakers: Speakers::default(),
            stop_tracks: CancellationToken::new(),
            tracks: Vec::new(),
            origin: tokio::time::Instant::now(),
            work: 0,
            call_duration: Duration::ZERO,
            transcript: None,
        })
    }

    /// Publishes the captions of the utterances in progress, reports the live series one last time and
    /// stops the captioner.
    async fn finish_live(
        &mut self,
        call: &Participant,
        client: &OffloaderClient,
    ) -> Result<(), Error> {
        let Live::On {
            captions: mut live,
            tap,
        } = std::mem::replace(&mut self.live, Live::Off)
        else {
            return Ok(());
        };
        drop(tap);
        live.finish();
        while let Ok(Some(caption)) =
            tokio::time::timeout(Duration::from_secs(10), live.next_caption()).await
        {
            if let Err(error) = call.publish_caption(caption).await {
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
            .map_err(|_| Error::Panicked("the live captions"))
    }

    /// Decodes and transcribes on a blocking thread, reporting its progress (percent of speech) and
    /// beating the heartbeat while it advances.
    async fn transcribe(
        &mut self,
        files: CaptureFiles,
        after: &mut AfterCall<'_>,
    ) -> Result<(Transcript, Vec<String>), Error> {
        let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(0u8);
        let done_work = Arc::new(AtomicU64::new(0));
        let work = Arc::clone(&done_work);
        let post_call = PostCall {
            call_id: self.call_id.clone(),
            speakers: self.speakers.list(),
            files,
            options: self.options.clone(),
            keep_audio: self.keep_audio,
            call_ms: self.call_duration.as_millis() as u64,
            artifacts_dir: self.artifacts_dir.clone(),
            activity: Arc::clone(&done_work),
        };
        let mut transcribing = tokio::task::spawn_blocking(move || {
            post_call.run(&mut |percent| {
                work.fetch_add(1, Ordering::Relaxed);
                progress_tx.send_replace(percent);
            })
        });
        let mut tick = tokio::time::interval(Self::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut progress_open = true;
        loop {
            tokio::select! {
                result = &mut transcribing => break result.map_err(|_| Error::Panicked("the transcription"))?,
                _ = tick.tick() => after.heartbeat(self.work + done_work.load(Ordering::Relaxed)),
                changed = progress_rx.changed(), if progress_open => match changed {
                    Ok(()) => {
                        let percent = *progress_rx.borrow_and_update();
                        spawn_progress(after.client, format!("transcribed {percent}% of the speech"), vec![("progress_percent", f64::from(percent))]);
                    }
                    // The transcription finished and dropped its sender; its result is about to arrive.
                    Err(_) => progress_open = false,
                },
            }
        }
    }
}

impl BotJob for TranscriptionJob {
    type Outcome = JobOutcome;
    type Error = Error;
    const TICK: Duration = Duration::from_secs(1);

    fn on_joined(&mut self, call: &InCall<'_>) -> Result<(), Error> {
        self.origin = call.origin;
        if let Live::Loaded { models, name } = std::mem::replace(&mut self.live, Live::Off) {
            let file = models.model_file().display().to_string();
            let (captions, tap) = LiveCaptions::start(models, call.origin)?;
            tracing::info!(model = %name, %file, "live captions on");
            self.live = Live::On { captions, tap };
        }
        Ok(())
    }

    fn on_track(&mut self, track: RemoteTrack, call: &InCall<'_>) {
        let Some(capture) = &self.capture else { return };
        if track.kind() != TrackKind::Voice {
            return;
        }
        let name = call.owner_name(&track);
        let (speaker, number) = self.speakers.handle_track(track.owner(), &name);
        tracing::info!(speaker = %name, session_id = %track.owner(), track = number, "speaker seen");
        let mut sink = CaptureSink::new(speaker, number, call.origin, capture.sender());
        if let Live::On { tap, .. } = &self.live {
            sink = sink.with_live(tap.clone(), track.owner(), &name);
        }
        let stop = self.stop_tracks.clone();
        self.tracks
            .push(tokio::spawn(capture_track(track, sink, stop)));
    }

    fn on_tick(&mut self, _now: Duration) -> u64 {
        // While in the call the loop itself is the work: it beats as long as it runs.
        self.work += 1;
        self.work + self.capture.as_ref().map_or(0, Capture::packets_written)
    }

    fn on_report(&mut self, client: &OffloaderClient) {
        let Some(capture) = &self.capture else { return };
        let speakers = self.speakers.len();
        let message = format!(
            "in the call: {speakers} speakers, {} voice packets captured",
            capture.packets_written()
        );
        let counters = vec![
            ("speakers", speakers as f64),
            ("voice_packets_captured", capture.packets_written() as f64),
            ("voice_packets_dropped", capture.packets_dropped() as f64),
        ];
        spawn_progress(client, message, counters);
        if let Live::On { captions, .. } = &self.live {
            spawn_live_report(client, captions);
        }
    }

    async fn next_caption(&mut self) -> Option<Caption> {
        match &mut self.live {
            Live::On { captions, .. } => captions.next_caption().await,
            _ => std::future::pending().await,
        }
    }

    async fn on_stop(
        &mut self,
        _: &StopReason,
        call: &Participant,
        client: &OffloaderClient,
    ) -> Result<(), Error> {
        self.call_duration = self.origin.elapsed();
        self.stop_tracks.cancel();
        for track in self.tracks.drain(..) {
            if track.await.is_err() {
                tracing::warn!("a voice capture task panicked");
            }
        }
        self.finish_live(call, client).await
    }

    async fn finish(&mut self, after: &mut AfterCall<'_>) -> Result<Vec<(PathBuf, String)>, Error> {
        let capture = self
            .capture
            .take()
            .ok_or(Error::Panicked("the capture (finished twice)"))?;
        let summary: CaptureSummary = tokio::task::spawn_blocking(move || capture.finish())
            .await
            .map_err(|_| Error::Panicked("the capture thread"))?
            .map_err(io("finishing the capture"))?;
        if summary.dropped > 0 {
            tracing::warn!(
                dropped = summary.dropped,
                "voice packets were dropped during the call"
            );
        }
        let (transcript, wavs) = match self.transcribe(summary.files, after).await {
            Ok(done) => done,
            Err(error) => {
                // Never a partial artifact: what was written goes.
                let _ = std::fs::remove_dir_all(&self.artifacts_dir);
                return Err(error);
            }
        };
        if transcript.is_empty() {
            tracing::info!("no speech found: the transcript is empty");
        }
        self.transcript = Some((transcript, summary.dropped));
        let names = ARTIFACTS.iter().map(|name| (*name).to_owned()).chain(wavs);
        Ok(names
            .map(|name| (self.artifacts_dir.join(&name), name))
            .collect())
    }

    fn delivered(self, reason: StopReason, uploaded: &[Uploaded]) -> Finished<JobOutcome> {
        // The driver calls `delivered` only after `finish` succeeded, and `finish` sets the transcript.
        let (transcript, dropped) = self.transcript.expect("finish set the transcript");
        let speakers = self.speakers.len();
        let summary = &transcript.summary;
        let message = if transcript.is_empty() {
            format!("no speech found: uploaded an empty transcript ({speakers} speakers heard)")
        } else {
            let names: Vec<&str> = uploaded
                .iter()
                .map(|artifact| artifact.name.as_str())
                .collect();
            format!(
                "uploaded {} ({} segments, {:.0} s of speech from {} speakers)",
                names.join(", "),
                summary.segments,
                summary.speech_s,
                transcript.speakers.len()
            )
        };
        Finished {
            message,
            counters: transcript_counters(&transcript, dropped),
            outcome: JobOutcome {
                reason,
                speakers,
                segments: summary.segments,
                speech_seconds: summary.speech_s,
            },
        }
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
    files: CaptureFiles,
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
