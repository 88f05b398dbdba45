//! Live captions during the call: the threads around the pure [`crate::live::Captioner`].
//!
//! - The voice tracks' receive loops hand every placed packet to a [`LiveTap`] as well as to the capture. The
//!   tap is a bounded queue ([`PACKET_QUEUE`] packets over all speakers, Mattermost's per-track channel size);
//!   a full queue drops the packet and counts it (`live_captions_pktPayloadCh_buf_full`): the post-call
//!   transcript still has it, only the live caption misses it.
//! - One captioner thread decodes each speaker to 16 kHz (libopus, no resampler), judges the new audio every
//!   [`VAD_STEP_MS`] with the Silero VAD (with the preceding 0.5 s as context), feeds the core 32 ms frames
//!   flagged speech or not, and hands the core's windows to the workers.
//! - `workers` whisper threads (one CTranslate2 replica or whisper.cpp model state each, 1 thread each by
//!   default: on a 2-CPU job two single-threaded workers beat one two-threaded one) decode windows as one
//!   segment without context, the encoder over the window's length only.
//! - Captions go to the job's async loop, which publishes them through the SFU; the core's counters are read
//!   by the job's status reports ([`LiveCaptions::status_update`]).
//!
//! Time is the call clock: milliseconds since the bot joined, the same clock the capture places packets on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use calls_participant::audio::VoiceDecoder;
use calls_protocol::job_metrics as series;
use calls_protocol::jobs::{HistogramReport, JobStatusKind, JobStatusUpdate};
use calls_protocol::signalling::Caption;
use rtc::rtp;
use tokio::time::Instant;

use crate::capture_file::CapturedPacket;
use crate::engine::{DecodeSettings, LoadOptions, SpeechEngine, SAMPLE_RATE};
use crate::error::Result;
use crate::live::{Captioner, Histogram, LiveCaption, LiveSettings, LiveStats, Window, WindowKind};
use crate::load::load_engine;
use crate::pipeline::is_speech;
use crate::vad::{Vad, VadSettings};

/// Voice packets the captioner may fall behind by, over all speakers.
pub const PACKET_QUEUE: usize = 600;
/// New audio judged by the VAD at once.
pub const VAD_STEP_MS: u64 = 128;
/// Audio before the new audio that the VAD sees as context (Silero restarts on every step).
const VAD_CONTEXT_MS: u64 = 512;
/// The core's frame: one Silero window (512 samples).
const FRAME_SAMPLES: usize = 512;
/// How often the captioner thread looks at the clock when no packet arrives.
const TICK: Duration = Duration::from_millis(40);
/// A jump this large between where a speaker's audio ended and where their next packet is placed is a
/// pause in sending (mute, reconnect): their audio restarts at the packet's place.
const REANCHOR_MS: u64 = 200;
/// Captions waiting for the job loop to publish them.
const CAPTION_QUEUE: usize = 256;
/// After the call, how long the last finals may take before the captioner gives up on them.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

const SAMPLES_PER_MS: u64 = SAMPLE_RATE as u64 / 1000;

/// The live VAD only flags 32 ms frames as speech or not; the core decides where an utterance ends
/// (`LiveSettings::end_silence_ms`) and how much audio it keeps around speech (`preroll_ms`, `tail_ms`).
/// So no long minimum silence and little padding here: whisper.cpp's VAD keeps a region open to the end
/// of the buffer until `min_silence_ms` of silence is seen, and pads its end by `pad_ms`, so the post-call
/// values (400 + 200 ms) marked the first ~0.4 s of every pause as speech and delayed every final by as much.
const LIVE_VAD: VadSettings = VadSettings {
    threshold: 0.5,
    min_speech_ms: 250,
    min_silence_ms: 100,
    max_speech_s: 25.0,
    pad_ms: 30,
};

/// What live captioning runs with.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The whisper model: a directory of CTranslate2 files or a ggml file ([`load_engine`]).
    pub model: PathBuf,
    /// The Silero VAD model file.
    pub vad_model: PathBuf,
    /// Whisper workers (windows transcribed at once).
    pub workers: usize,
    /// Threads per worker.
    pub threads_per_worker: u32,
    /// Language code for multilingual models (`None`: detect per window).
    pub language: Option<String>,
    /// Text that primes the decoder (names, jargon).
    pub initial_prompt: Option<String>,
    /// Put before every caption id, so that two captioning jobs in one call never share an id (the core
    /// numbers each speaker's utterances; the job's id is unique).
    pub caption_id_prefix: String,
}

struct LivePacket {
    session: String,
    name: String,
    track: u16,
    packet: CapturedPacket,
}

/// Where the receive loops hand voice packets to live captioning. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct LiveTap {
    sender: SyncSender<LivePacket>,
    dropped: Arc<AtomicU64>,
}

impl LiveTap {
    /// Queues a copy of `packet` of `session`'s track `track`; counts it when the queue is full.
    pub fn send(&self, session: &str, name: &str, track: u16, packet: &CapturedPacket) {
        let live = LivePacket {
            session: session.to_owned(),
            name: name.to_owned(),
            track,
            packet: packet.clone(),
        };
        match self.sender.try_send(live) {
            Ok(()) => {}
            // A full queue, or a captioner that already stopped: the live caption misses this packet.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The models live captioning needs, loaded before the bot joins (a missing model fails the job first).
pub struct LiveModels {
    model: PathBuf,
    engines: Vec<Box<dyn SpeechEngine>>,
    vad: Vad,
    decode: DecodeSettings,
    caption_id_prefix: String,
}

impl LiveModels {
    /// The whisper model file the workers run.
    pub fn model_file(&self) -> &Path {
        &self.model
    }

    /// Loads the model for every worker and the VAD: CTranslate2 loads the weights once, as one
    /// single-threaded replica per worker; whisper.cpp one model state per worker.
    pub fn load(options: &LiveOptions) -> Result<LiveModels> {
        let workers = options.workers.max(1);
        let mut engines = vec![load_engine(
            &options.model,
            LoadOptions::default(),
            workers as u32,
        )?];
        while engines.len() < workers {
            let next = match engines[0].parallel_worker() {
                Some(engine) => engine,
                None => load_engine(&options.model, LoadOptions::default(), 1)?,
            };
            engines.push(next);
        }
        let vad = Vad::load(&options.vad_model, LIVE_VAD)?;
        let decode = DecodeSettings {
            language: options.language.clone(),
            initial_prompt: options.initial_prompt.clone(),
            ..DecodeSettings::live_window(options.threads_per_worker)
        };
        Ok(LiveModels {
            model: options.model.clone(),
            engines,
            vad,
            decode,
            caption_id_prefix: options.caption_id_prefix.clone(),
        })
    }
}

/// Live captioning of one call, running on its own threads.
pub struct LiveCaptions {
    captions: tokio::sync::mpsc::Receiver<Caption>,
    stats: Arc<Mutex<LiveStats>>,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LiveCaptions {
    /// Starts the threads on loaded models. `origin` is the call clock's zero (the capture's).
    pub fn start(models: LiveModels, origin: Instant) -> Result<(LiveCaptions, LiveTap)> {
        let LiveModels {
            model: _,
            engines,
            vad,
            decode,
            caption_id_prefix,
        } = models;
        let workers = engines.len();
        let (packet_tx, packet_rx) = mpsc::sync_channel(PACKET_QUEUE);
        let (caption_tx, caption_rx) = tokio::sync::mpsc::channel(CAPTION_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(LiveStats::default()));
        let captioner = CaptionerThread {
            core: Captioner::new(LiveSettings {
                workers,
                ..LiveSettings::default()
            }),
            vad,
            speakers: HashMap::new(),
            origin,
            captions: caption_tx,
            caption_id_prefix,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("live-captions".into())
            .spawn(move || captioner.run(packet_rx, engines, decode))
            .map_err(|e| crate::Error::io("live-captions thread", e))?;
        let tap = LiveTap {
            sender: packet_tx,
            dropped: Arc::clone(&dropped),
        };
        Ok((
            LiveCaptions {
                captions: caption_rx,
                stats,
                dropped,
                stop,
                thread: Some(thread),
            },
            tap,
        ))
    }

    /// The next caption to publish; `None` once the captioner stopped and every caption was taken.
    pub async fn next_caption(&mut self) -> Option<Caption> {
        self.captions.recv().await
    }

    /// A progress update carrying the live-caption series (counters and histograms) so far.
    pub fn status_update(&self) -> JobStatusUpdate {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let counters = [
            (series::WINDOW_DROPPED, stats.window_dropped as f64),
            (
                series::TRANSCRIBER_BUF_FULL,
                stats.transcriber_buf_full as f64,
            ),
            (
                series::PKT_PAYLOAD_CH_BUF_FULL,
                self.dropped.load(Ordering::Relaxed) as f64,
            ),
            (series::PARTIALS_DROPPED, stats.partials_dropped as f64),
            ("live_captions_windows", stats.windows as f64),
        ];
        let report = |histogram: &Histogram| HistogramReport {
            counts: histogram.counts.clone(),
            sum: histogram.sum,
        };
        JobStatusUpdate {
            status: JobStatusKind::Progress,
            message: None,
            error: None,
            counters: counters
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            histograms: BTreeMap::from([
                (
                    series::NEW_AUDIO_LEN_MS.to_owned(),
                    report(&stats.new_audio_len_ms),
                ),
                (
                    series::CAPTION_LATENCY_SECONDS.to_owned(),
                    report(&stats.caption_latency_seconds),
                ),
            ]),
        }
    }

    /// The call ended: the captioner finishes the utterances in progress (their finals still come out of
    /// [`LiveCaptions::next_caption`], for at most a few seconds), then stops.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the threads to end (after [`LiveCaptions::finish`]).
    pub fn join(mut self) {
        self.finish();
        self.captions.close();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the live-caption thread panicked");
            }
        }
    }
}

/// One speaker track's audio on its way to the core.
struct SpeakerAudio {
    decoder: VoiceDecoder,
    /// Call time just after the last decoded sample.
    end_ms: Option<u64>,
    /// Decoded audio not yet judged by the VAD, and the call time of its first sample.
    pending: Vec<f32>,
    pending_start_ms: u64,
    /// The last judged audio, as VAD context.
    context: VecDeque<f32>,
}

struct CaptionerThread {
    core: Captioner,
    vad: Vad,
    speakers: HashMap<(String, u16), SpeakerAudio>,
    origin: Instant,
    captions: tokio::sync::mpsc::Sender<Caption>,
    caption_id_prefix: String,
    stats: Arc<Mutex<LiveStats>>,
    stop: Arc<AtomicBool>,
}

impl CaptionerThread {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn run(
        mut self,
        packets: Receiver<LivePacket>,
        engines: Vec<Box<dyn SpeechEngine>>,
        decode: DecodeSettings,
    ) {
        // The core hands out a window only to a free worker (or one whose partial it just cancelled), so
        // at most two windows per worker are ever queued or in flight, and as many results.
        let capacity = engines.len() * 2 + 2;
        let (work_tx, work_rx) = mpsc::sync_channel::<(Window, Arc<AtomicBool>)>(capacity);
        // Each window handed out has a flag its worker checks to stop early (a partial giving way).
        let mut cancel_flags: HashMap<u64, Arc<AtomicBool>> = HashMap::new();
        let work_rx = Arc::new(Mutex::new(work_rx));
        let (result_tx, result_rx) = mpsc::sync_channel(capacity);
        let workers: Vec<JoinHandle<()>> = engines
            .into_iter()
            .enumerate()
            .filter_map(|(index, engine)| {
                let work = Arc::clone(&work_rx);
                let results = result_tx.clone();
                let settings = decode.clone();
                std::thread::Builder::new()
                    .name(format!("live-whisper-{index}"))
                    .spawn(move || worker(engine, settings, &work, &results))
                    .map_err(|error| tracing::warn!(%error, "a live-caption worker did not start"))
                    .ok()
            })
            .collect();
        drop(result_tx);
        let mut draining_since: Option<std::time::Instant> = None;
        loop {
            match packets.recv_timeout(TICK) {
                Ok(packet) => {
                    self.handle_packet(packet);
                    // Take what else is queued before looking at the clock.
                    for packet in packets.try_iter().take(256) {
                        self.handle_packet(packet);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.stop.store(true, Ordering::Relaxed),
            }
            let now = self.now_ms();
            if self.stop.load(Ordering::Relaxed) && draining_since.is_none() {
                self.core.handle_call_end(now);
                draining_since = Some(std::time::Instant::now());
            }
            self.core.handle_tick(now);
            for (id, text) in result_rx.try_iter() {
                cancel_flags.remove(&id);
                tracing::debug!(id, now_ms = now, text = ?text, "live window transcribed");
                match text {
                    Some(text) => self.core.handle_result(id, &text, now),
                    None => self.core.handle_failure(id),
                }
            }
            while let Some(window) = self.core.poll_window(now) {
                tracing::debug!(
                    id = window.id,
                    kind = ?window.kind,
                    session = %window.session,
                    start_ms = window.start_ms,
                    audio_ms = window.samples.len() as u64 / SAMPLES_PER_MS,
                    now_ms = now,
                    "live window to a worker"
                );
                let cancel = Arc::new(AtomicBool::new(false));
                cancel_flags.insert(window.id, Arc::clone(&cancel));
                if work_tx.send((window, cancel)).is_err() {
                    tracing::warn!("no live-caption worker is running: live captions stop");
                    self.stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
            while let Some(id) = self.core.poll_cancelled() {
                tracing::debug!(id, now_ms = now, "live window cancelled");
                if let Some(flag) = cancel_flags.remove(&id) {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            while let Some(caption) = self.core.poll_caption() {
                self.publish(caption);
            }
            *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = self.core.stats().clone();
            if let Some(since) = draining_since {
                if self.core.is_idle() || since.elapsed() > DRAIN_LIMIT {
                    break;
                }
            }
        }
        drop(work_tx);
        for worker in workers {
            let _ = worker.join();
        }
    }

    fn handle_packet(&mut self, live: LivePacket) {
        self.core.handle_speaker(&live.session, &live.name);
        let key = (live.session.clone(), live.track);
        if !self.speakers.contains_key(&key) {
            match VoiceDecoder::with_sample_rate(SAMPLE_RATE) {
                Ok(decoder) => {
                    self.speakers.insert(
                        key.clone(),
                        SpeakerAudio {
                            decoder,
                            end_ms: None,
                            pending: Vec::new(),
                            pending_start_ms: 0,
                            context: VecDeque::new(),
                        },
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "no live-caption decoder for a track");
                    return;
                }
            }
        }
        let at_ms = live.packet.at_us / 1000;
        let header = rtp::header::Header {
            sequence_number: live.packet.sequence,
            timestamp: live.packet.timestamp,
            ..rtp::header::Header::default()
        };
        let packet = rtp::Packet {
            header,
            payload: live.packet.payload.into(),
        };
        // Invariant: inserted above when missing.
        let audio = self.speakers.get_mut(&key).expect("speaker audio present");
        let pcm = audio.decoder.push(packet);
        if pcm.is_empty() {
            return;
        }
        let jumped = audio
            .end_ms
            .is_none_or(|end| at_ms.abs_diff(end) > REANCHOR_MS);
        if jumped {
            // A new stretch of audio: judge what was pending, then start again at the packet's place.
            let pending = std::mem::take(&mut audio.pending);
            let start = audio.pending_start_ms;
            audio.context.clear();
            audio.pending_start_ms = at_ms;
            audio.end_ms = Some(at_ms);
            if !pending.is_empty() {
                self.judge(&key, start, pending);
            }
        }
        // Invariant: present (inserted above; `judge` never removes speakers).
        let audio = self.speakers.get_mut(&key).expect("speaker audio present");
        audio
            .pending
            .extend(pcm.iter().map(|&s| f32::from(s) / 32_768.0));
        audio.end_ms = audio
            .end_ms
            .map(|end| end + pcm.len() as u64 / SAMPLES_PER_MS);
        if audio.pending.len() as u64 >= VAD_STEP_MS * SAMPLES_PER_MS {
            let pending = std::mem::take(&mut audio.pending);
            let start = audio.pending_start_ms;
            audio.pending_start_ms = start + pending.len() as u64 / SAMPLES_PER_MS;
            self.judge(&key, start, pending);
        }
    }

    /// Flags `new` audio (starting at call time `start_ms`) with the VAD and hands it to the core in frames.
    fn judge(&mut self, key: &(String, u16), start_ms: u64, new: Vec<f32>) {
        let Some(audio) = self.speakers.get_mut(key) else {
            return;
        };
        let context: Vec<f32> = audio.context.iter().copied().collect();
        let mut buffer = context;
        let offset = buffer.len();
        buffer.extend_from_slice(&new);
        let regions = self.vad.speech_regions(&buffer).unwrap_or_else(|error| {
            tracing::warn!(%error, "live VAD failed on a window; treated as silence");
            Vec::new()
        });
        let keep = (VAD_CONTEXT_MS * SAMPLES_PER_MS) as usize;
        let tail = buffer.len().saturating_sub(keep);
        audio.context = buffer[tail..].iter().copied().collect();
        tracing::trace!(
            session = %key.0,
            start_ms,
            audio_ms = new.len() as u64 / SAMPLES_PER_MS,
            regions = regions.len(),
            "live VAD step"
        );
        for (index, frame) in new.chunks(FRAME_SAMPLES).enumerate() {
            let middle = offset + index * FRAME_SAMPLES + frame.len() / 2;
            let speech = regions.iter().any(|region| region.contains(&middle));
            let frame_ms = start_ms + (index * FRAME_SAMPLES) as u64 / SAMPLES_PER_MS;
            self.core.handle_audio(&key.0, frame_ms, frame, speech);
        }
    }

    fn publish(&self, caption: LiveCaption) {
        let caption = Caption {
            id: Some(format!("{}-{}", self.caption_id_prefix, caption.id)),
            text: caption.text.stable,
            tail: caption.text.tail,
            speaker_session: caption.session,
            speaker_name: Some(caption.name),
            start_ms: caption.start_ms,
            end_ms: caption.end_ms,
            is_final: caption.is_final,
        };
        if self.captions.try_send(caption).is_err() {
            // The job loop publishes as fast as the SFU takes them; a full queue means it is gone or stuck.
            tracing::warn!(
                "a live caption was not published (the caption queue is full or closed)"
            );
        }
    }
}

/// One whisper worker: takes windows until the captioner hangs up; answers each with its text (`None`
/// when whisper failed on it).
fn worker(
    mut engine: Box<dyn SpeechEngine>,
    settings: DecodeSettings,
    work: &Mutex<Receiver<(Window, Arc<AtomicBool>)>>,
    results: &SyncSender<(u64, Option<String>)>,
) {
    loop {
        let window = {
            let receiver = work.lock().unwrap_or_else(|e| e.into_inner());
            receiver.recv()
        };
        let Ok((window, cancel)) = window else {
            return;
        };
        // A pause or final window's text is the final caption: it may take whisper's retries at a higher
        // temperature when its first decode fails the checks (e.g. one phrase repeated over and over).
        let settings = DecodeSettings {
            retry_on_failure: window.kind != WindowKind::Partial,
            ..settings.clone()
        };
        let text = match engine.decode_cancellable(&window.samples, &settings, Some(cancel)) {
            Ok(decoded) => Some(
                decoded
                    .segments
                    .iter()
                    .filter(|segment| is_speech(segment))
                    .map(|segment| segment.text.trim())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            // The captioner gave this worker to a final; it already stopped waiting for this window.
            Err(crate::Error::Cancelled) => None,
            Err(error) => {
                tracing::warn!(%error, "whisper failed on a live window");
                None
            }
        };
        if results.send((window.id, text)).is_err() {
            return;
        }
    }
}
