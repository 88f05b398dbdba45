//! Live captions, the pure core: per speaker, decoded 16 kHz audio flagged speech / not speech by the VAD
//! goes in; windows for whisper and captions to publish come out. Time is passed in (call-time
//! milliseconds, the clock the audio is placed on); nothing here reads a clock, a socket or a model.
//!
//! How a caption is made:
//! - Each speaker's speech becomes an *utterance*: it starts at a VAD onset (with a little audio from before
//!   it), and ends after `end_silence_ms` without speech, when the speaker's audio stops (mute, leave), or by
//!   a forced cut at `max_utterance_ms` (at the latest pause when there is one).
//! - While an utterance grows, a *partial* window (all of its audio so far) is handed to a worker every
//!   `partial_interval_ms`; its hypothesis goes through the [`stabilise::Stabiliser`] and comes out as a
//!   partial caption (`final: false`). When the utterance ends, its *final* window is queued; its text comes
//!   out as the final caption under the same caption id, replacing the partials.
//! - When a speaker pauses (no speech for `tail_ms`), the utterance so far goes to a worker at once as a
//!   *pause* window, exactly the audio its final window would hold. If the pause lasts until the utterance
//!   ends, that decode's text is the final caption: the final's decode overlaps the silence that ends the
//!   utterance instead of starting after it. If the speaker goes on, the text was a partial like any other.
//! - Workers are a bounded pool sized to the job's CPUs. Finals go first, then pause windows, then partials
//!   (the longest waiting first). A final or pause window that finds every worker busy while one holds a
//!   partial cancels that partial (the most recently started) and takes its worker: a final never waits
//!   for a partial. A partial of an utterance whose pause or final window was just handed out or queued is
//!   cancelled too: its text would be older than what is coming, and it would slow that window down.
//!   A partial slot that passes while every worker is busy is dropped and counted; a final
//!   that waits longer than `final_max_wait_ms` is dropped, counted as a dropped window, and closes its
//!   caption with the last partial text.
//!
//! **Invariants:** at most one partial and one pause window per utterance are with workers at a time; a
//! partial caption never shows an older hypothesis than one already shown; a final caption's text comes
//! from a decode of the whole utterance up to its last speech; a partial result that arrives after its
//! utterance ended is never shown (the page would otherwise rewrite final text); memory is
//! bounded by the speakers' utterances (≤ `max_utterance_ms` each) plus finals waiting ≤ `final_max_wait_ms`.

pub mod stabilise;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};

use calls_protocol::job_metrics::{CAPTION_LATENCY_BOUNDS_S, NEW_AUDIO_BOUNDS_MS};
use stabilise::{PartialText, Stabiliser};

/// Samples per millisecond of the 16 kHz audio the core takes.
const SAMPLES_PER_MS: usize = 16;

fn ms_of(samples: usize) -> u64 {
    (samples / SAMPLES_PER_MS) as u64
}

fn samples_of(ms: u64) -> usize {
    usize::try_from(ms).unwrap_or(usize::MAX / 2) * SAMPLES_PER_MS
}

/// The knobs of live captioning. [`LiveSettings::default`] is what the job uses.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSettings {
    /// Windows transcribed at the same time (the job's CPUs).
    pub workers: usize,
    /// Speech needed before the first partial of an utterance.
    pub first_partial_ms: u64,
    /// A new partial window of a speaking person at most this often.
    pub partial_interval_ms: u64,
    /// This much non-speech ends an utterance.
    pub end_silence_ms: u64,
    /// Audio kept from before the VAD onset (the onset of a word is often soft).
    pub preroll_ms: u64,
    /// Audio kept after the last speech in a final window.
    pub tail_ms: u64,
    /// An utterance this long is cut (whisper is slower and partials lag on long windows).
    pub max_utterance_ms: u64,
    /// Utterances with less speech than this are noise blips: not transcribed.
    pub min_speech_ms: u64,
    /// A final not handed to a worker within this time after it was queued is dropped.
    pub final_max_wait_ms: u64,
    /// How late a speaker's audio may arrive before their silence ends an utterance.
    pub audio_grace_ms: u64,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            workers: 2,
            first_partial_ms: 500,
            partial_interval_ms: 800,
            end_silence_ms: 500,
            preroll_ms: 200,
            tail_ms: 150,
            max_utterance_ms: 10_000,
            min_speech_ms: 250,
            final_max_wait_ms: 10_000,
            audio_grace_ms: 300,
        }
    }
}

/// Whether a window's text is tentative or final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The utterance so far, for a partial caption.
    Partial,
    /// The whole utterance, for its final caption.
    Final,
    /// The utterance up to a pause in its speech: a partial that becomes the final if the pause ends it.
    Pause,
}

/// Audio for a worker to transcribe.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Hand back with [`Captioner::handle_result`] or [`Captioner::handle_failure`].
    pub id: u64,
    /// Partial, pause or final.
    pub kind: WindowKind,
    /// Session of the speaker.
    pub session: String,
    /// Call time of the first sample.
    pub start_ms: u64,
    /// 16 kHz mono samples.
    pub samples: Vec<f32>,
}

/// A caption to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCaption {
    /// Same for an utterance's partials and its final: a final replaces the partials.
    pub id: String,
    /// Session of the speaker.
    pub session: String,
    /// Display name of the speaker.
    pub name: String,
    /// Call time the speech began.
    pub start_ms: u64,
    /// Call time of the end of the audio this text covers.
    pub end_ms: u64,
    /// For a partial: stable words and tentative tail; for a final: the whole text in `stable`.
    pub text: PartialText,
    /// Final or partial.
    pub is_final: bool,
}

/// A histogram with fixed upper bounds (Prometheus style: cumulative on export, plain counts here).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending (the `+Inf` bucket is implied).
    pub bounds: &'static [f64],
    /// Observations per bucket (`bounds.len() + 1` entries; the last is above every bound).
    pub counts: Vec<u64>,
    /// Sum of the observations.
    pub sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
    }

    /// How many values were observed.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What the core counted, for the job's metrics (the series of `calls_protocol::job_metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStats {
    /// Audio in each window that no earlier window of the utterance had, in ms.
    pub new_audio_len_ms: Histogram,
    /// End of speech → final caption handed out, in seconds.
    pub caption_latency_seconds: Histogram,
    /// Finals dropped because no worker was free in time.
    pub window_dropped: u64,
    /// Finals that found every worker busy when they were queued.
    pub transcriber_buf_full: u64,
    /// Partial slots skipped because every worker was busy, partials cancelled to make room for a final, and
    /// partial results that came after their final.
    pub partials_dropped: u64,
    /// Windows handed to workers.
    pub windows: u64,
    /// Utterances too short to transcribe (noise blips).
    pub blips: u64,
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats {
            new_audio_len_ms: Histogram::new(NEW_AUDIO_BOUNDS_MS),
            caption_latency_seconds: Histogram::new(CAPTION_LATENCY_BOUNDS_S),
            window_dropped: 0,
            transcriber_buf_full: 0,
            partials_dropped: 0,
            windows: 0,
            blips: 0,
        }
    }
}

#[derive(Debug)]
struct Utterance {
    caption_id: String,
    /// Call time of `samples[0]`.
    start_ms: u64,
    /// Call time the speech began (after the pre-roll).
    speech_start_ms: u64,
    samples: Vec<f32>,
    /// Milliseconds of frames flagged as speech.
    speech_ms: u64,
    /// Index just after the last speech sample.
    speech_end: usize,
    /// Index inside the latest pause: where a forced cut splits the fewest words.
    last_pause: Option<usize>,
    /// Samples covered by windows already handed out.
    dispatched: usize,
    /// When the next partial is due.
    partial_due_ms: u64,
    partial_in_flight: bool,
    stabiliser: Stabiliser,
    shown: Option<PartialText>,
    /// Call time of the end of the audio behind the latest hypothesis given to the stabiliser.
    hypothesis_end_ms: u64,
    /// The decode of the utterance up to its latest pause, if one was handed out.
    pause: Option<PauseDecode>,
}

/// A pause window of an utterance and what became of it.
#[derive(Debug)]
struct PauseDecode {
    /// `speech_end` of the utterance when the window was cut: still the same means no speech since.
    speech_end: usize,
    /// Samples in the window (`speech_end` plus the tail).
    end: usize,
    result: PauseResult,
}

#[derive(Debug)]
enum PauseResult {
    /// With the worker that has this window id.
    Pending(u64),
    /// Whisper's text for it.
    Text(String),
    /// Whisper failed on it: the final gets its own window (and this pause is not tried again).
    Failed,
}

impl Utterance {
    fn speech_end_ms(&self) -> u64 {
        self.start_ms + ms_of(self.speech_end)
    }
}

#[derive(Debug)]
struct Speaker {
    name: String,
    /// Call time just after the last sample received.
    audio_end_ms: Option<u64>,
    /// Recent audio outside any utterance (at most `preroll_ms`).
    preroll: VecDeque<f32>,
    utterance: Option<Utterance>,
    /// Utterances started so far (numbers the caption ids).
    utterances: u64,
}

#[derive(Debug)]
struct QueuedFinal {
    window: Window,
    caption_id: String,
    name: String,
    speech_start_ms: u64,
    speech_end_ms: u64,
    queued_ms: u64,
    new_audio: usize,
    shown: Option<PartialText>,
}

#[derive(Debug)]
struct InFlight {
    kind: WindowKind,
    session: String,
    caption_id: String,
    name: String,
    speech_start_ms: u64,
    end_ms: u64,
    shown: Option<PartialText>,
}

impl InFlight {
    /// The caption that shows this window's result as `text`.
    fn into_caption(self, text: PartialText, is_final: bool) -> LiveCaption {
        LiveCaption {
            id: self.caption_id,
            session: self.session,
            name: self.name,
            start_ms: self.speech_start_ms,
            end_ms: self.end_ms,
            text,
            is_final,
        }
    }
}

/// The captioning core for one call. See the module documentation.
#[derive(Debug)]
pub struct Captioner {
    settings: LiveSettings,
    speakers: BTreeMap<String, Speaker>,
    finals: VecDeque<QueuedFinal>,
    in_flight: HashMap<u64, InFlight>,
    captions: VecDeque<LiveCaption>,
    /// Windows whose workers should stop (partials that gave way to a final).
    cancelled: VecDeque<u64>,
    next_window: u64,
    stats: LiveStats,
}

impl Captioner {
    /// A captioner with no speakers yet.
    pub fn new(settings: LiveSettings) -> Self {
        Captioner {
            settings,
            speakers: BTreeMap::new(),
            finals: VecDeque::new(),
            in_flight: HashMap::new(),
            captions: VecDeque::new(),
            cancelled: VecDeque::new(),
            next_window: 0,
            stats: LiveStats::default(),
        }
    }

    /// What has been counted so far.
    pub fn stats(&self) -> &LiveStats {
        &self.stats
    }

    /// A participant's name, known before or after their first audio.
    pub fn handle_speaker(&mut self, session: &str, name: &str) {
        self.speaker(session).name = name.to_owned();
    }

    /// The next `samples` of a speaker's audio, starting at call time `start_ms`, flagged by the VAD.
    /// Frames are expected in order; a gap is silence, an overlap is trimmed.
    pub fn handle_audio(&mut self, session: &str, start_ms: u64, samples: &[f32], speech: bool) {
        let settings = self.settings.clone();
        let mut samples = samples;
        let mut start_ms = start_ms;
        if let Some(end) = self.speaker(session).audio_end_ms {
            if start_ms < end {
                let overlap = samples_of(end - start_ms).min(samples.len());
                samples = &samples[overlap..];
                start_ms = end;
            } else if start_ms > end {
                let gap = start_ms - end;
                if gap >= settings.end_silence_ms {
                    self.end_utterance(session, start_ms);
                } else if let Some(utterance) = &mut self.speaker(session).utterance {
                    // A short gap (lost packets, a brief mute) inside speech: keep the timeline with silence.
                    utterance
                        .samples
                        .resize(utterance.samples.len() + samples_of(gap), 0.0);
                    utterance.last_pause = Some(utterance.samples.len());
                }
            }
        }
        if samples.is_empty() {
            return;
        }
        let end_ms = start_ms + ms_of(samples.len());
        let speaker = self.speaker(session);
        speaker.audio_end_ms = Some(end_ms);
        match (&mut speaker.utterance, speech) {
            (Some(utterance), true) => {
                utterance.samples.extend_from_slice(samples);
                utterance.speech_ms += ms_of(samples.len());
                utterance.speech_end = utterance.samples.len();
            }
            (Some(utterance), false) => {
                utterance.samples.extend_from_slice(samples);
                utterance.last_pause = Some(utterance.samples.len() - samples.len() / 2);
                if end_ms.saturating_sub(utterance.speech_end_ms()) >= settings.end_silence_ms {
                    self.end_utterance(session, end_ms);
                }
            }
            (None, true) => {
                speaker.utterances += 1;
                let preroll: Vec<f32> = speaker.preroll.drain(..).collect();
                let mut audio = preroll;
                let preroll_ms = ms_of(audio.len());
                audio.extend_from_slice(samples);
                speaker.utterance = Some(Utterance {
                    caption_id: format!("{session}-{}", speaker.utterances),
                    start_ms: start_ms.saturating_sub(preroll_ms),
                    speech_start_ms: start_ms,
                    speech_end: audio.len(),
                    samples: audio,
                    speech_ms: ms_of(samples.len()),
                    last_pause: None,
                    dispatched: 0,
                    partial_due_ms: start_ms + settings.first_partial_ms,
                    partial_in_flight: false,
                    stabiliser: Stabiliser::default(),
                    shown: None,
                    hypothesis_end_ms: 0,
                    pause: None,
                });
            }
            (None, false) => {
                speaker.preroll.extend(samples);
                let keep = samples_of(settings.preroll_ms);
                if speaker.preroll.len() > keep {
                    let excess = speaker.preroll.len() - keep;
                    speaker.preroll.drain(..excess);
                }
            }
        }
        self.cut_if_too_long(session, end_ms);
    }

    /// Time passes: ends the utterances of speakers whose audio stopped (muted, gone, or a dead track).
    pub fn handle_tick(&mut self, now_ms: u64) {
        let silent: Vec<String> = self
            .speakers
            .iter()
            .filter(|(_, speaker)| {
                let (Some(utterance), Some(audio_end)) = (&speaker.utterance, speaker.audio_end_ms)
                else {
                    return false;
                };
                now_ms.saturating_sub(audio_end) >= self.settings.audio_grace_ms
                    && now_ms.saturating_sub(utterance.speech_end_ms())
                        >= self.settings.end_silence_ms + self.settings.audio_grace_ms
            })
            .map(|(session, _)| session.clone())
            .collect();
        for session in silent {
            self.end_utterance(&session, now_ms);
        }
        self.drop_late_finals(now_ms);
    }

    /// A participant left: their current utterance is final now.
    pub fn handle_speaker_left(&mut self, session: &str, now_ms: u64) {
        self.end_utterance(session, now_ms);
        self.speakers.remove(session);
    }

    /// The call ended: every utterance is final now.
    pub fn handle_call_end(&mut self, now_ms: u64) {
        let sessions: Vec<String> = self.speakers.keys().cloned().collect();
        for session in sessions {
            self.end_utterance(&session, now_ms);
        }
    }

    /// The next window for a free worker, if a worker is free and a window is due: finals first.
    pub fn poll_window(&mut self, now_ms: u64) -> Option<Window> {
        self.drop_late_finals(now_ms);
        let workers = self.settings.workers.max(1);
        if self.in_flight.len() >= workers
            && (!self.finals.is_empty() || self.paused_speaker().is_some())
        {
            self.cancel_a_partial();
        }
        if self.in_flight.len() >= workers {
            return None;
        }
        if let Some(final_window) = self.finals.pop_front() {
            self.stats
                .new_audio_len_ms
                .observe(ms_of(final_window.new_audio) as f64);
            self.stats.windows += 1;
            self.in_flight.insert(
                final_window.window.id,
                InFlight {
                    kind: WindowKind::Final,
                    session: final_window.window.session.clone(),
                    caption_id: final_window.caption_id,
                    name: final_window.name,
                    speech_start_ms: final_window.speech_start_ms,
                    end_ms: final_window.speech_end_ms,
                    shown: final_window.shown,
                },
            );
            return Some(final_window.window);
        }
        if let Some(window) = self.next_pause_window() {
            return Some(window);
        }
        self.next_partial(now_ms)
    }

    /// A worker's text for a window.
    pub fn handle_result(&mut self, window_id: u64, text: &str, now_ms: u64) {
        let Some(done) = self.in_flight.remove(&window_id) else {
            return;
        };
        let text = &stabilise::without_repeats(text);
        if done.kind == WindowKind::Final {
            self.finish_final(done, text, now_ms);
            return;
        }
        let Some(utterance) = self.utterance_of(&done) else {
            // The utterance ended while this window was with a worker; its final says more.
            self.stats.partials_dropped += 1;
            return;
        };
        match done.kind {
            WindowKind::Partial => utterance.partial_in_flight = false,
            WindowKind::Pause => {
                if let Some(pause) = utterance.pause.as_mut() {
                    if matches!(pause.result, PauseResult::Pending(id) if id == window_id) {
                        pause.result = PauseResult::Text(text.to_owned());
                    }
                }
            }
            WindowKind::Final => {}
        }
        // Hypotheses are shown in the order of the audio they cover, whatever order workers finish in.
        if done.end_ms < utterance.hypothesis_end_ms {
            return;
        }
        utterance.hypothesis_end_ms = done.end_ms;
        let shown = utterance.stabiliser.handle_hypothesis(text);
        if shown.text().is_empty() || utterance.shown.as_ref() == Some(&shown) {
            return;
        }
        utterance.shown = Some(shown.clone());
        self.captions.push_back(done.into_caption(shown, false));
    }

    /// A worker failed on a window: a final closes its caption with the last partial text, if any.
    pub fn handle_failure(&mut self, window_id: u64) {
        let Some(done) = self.in_flight.remove(&window_id) else {
            return;
        };
        match done.kind {
            WindowKind::Final => {
                if let Some(shown) = done.shown.clone() {
                    self.push_final(done, shown.text());
                }
            }
            WindowKind::Partial | WindowKind::Pause => {
                if let Some(utterance) = self.utterance_of(&done) {
                    if done.kind == WindowKind::Partial {
                        utterance.partial_in_flight = false;
                    } else if utterance.pause.as_ref().is_some_and(
                        |pause| matches!(pause.result, PauseResult::Pending(id) if id == window_id),
                    ) {
                        if let Some(pause) = utterance.pause.as_mut() {
                            pause.result = PauseResult::Failed;
                        }
                    }
                }
            }
        }
    }

    /// Nothing left to do: no utterance in progress, no window queued or with a worker, no caption waiting.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
            && self.finals.is_empty()
            && self.captions.is_empty()
            && self
                .speakers
                .values()
                .all(|speaker| speaker.utterance.is_none())
    }

    /// The next caption to publish.
    pub fn poll_caption(&mut self) -> Option<LiveCaption> {
        self.captions.pop_front()
    }

    /// The next window whose worker should stop at once (its result, if any still comes, is ignored).
    pub fn poll_cancelled(&mut self) -> Option<u64> {
        self.cancelled.pop_front()
    }

    /// Frees a worker for a final or pause window: the partial started last gives way (the one least likely
    /// to be nearly done), counted as a dropped partial.
    fn cancel_a_partial(&mut self) {
        let Some(id) = self
            .in_flight
            .iter()
            .filter(|(_, window)| window.kind == WindowKind::Partial)
            .map(|(id, _)| *id)
            .max()
        else {
            return;
        };
        self.cancel_partial(id);
    }

    /// Cancels the partial of `caption_id` that is with a worker, if any: a pause or final window of the
    /// same utterance, with more audio, was just handed out or queued.
    fn cancel_partial_of(&mut self, caption_id: &str) {
        let stale = self
            .in_flight
            .iter()
            .find(|(_, window)| {
                window.kind == WindowKind::Partial && window.caption_id == caption_id
            })
            .map(|(id, _)| *id);
        if let Some(id) = stale {
            self.cancel_partial(id);
        }
    }

    fn cancel_partial(&mut self, id: u64) {
        // Invariant: `id` was just found in `in_flight`.
        let window = self.in_flight.remove(&id).expect("in flight");
        if let Some(utterance) = self.utterance_of(&window) {
            utterance.partial_in_flight = false;
        }
        self.stats.partials_dropped += 1;
        self.cancelled.push_back(id);
    }

    /// The utterance a window was cut from, if it is still going on (not ended, not cut into a new one).
    fn utterance_of(&mut self, window: &InFlight) -> Option<&mut Utterance> {
        self.speakers
            .get_mut(&window.session)
            .and_then(|speaker| speaker.utterance.as_mut())
            .filter(|utterance| utterance.caption_id == window.caption_id)
    }

    fn speaker(&mut self, session: &str) -> &mut Speaker {
        self.speakers
            .entry(session.to_owned())
            .or_insert_with(|| Speaker {
                name: session.to_owned(),
                audio_end_ms: None,
                preroll: VecDeque::new(),
                utterance: None,
                utterances: 0,
            })
    }

    /// A final's text is in: the final caption, and the latency from the end of speech to it.
    fn finish_final(&mut self, done: InFlight, text: &str, now_ms: u64) {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        // A final with no words still closes partials that were shown.
        if !text.is_empty() || done.shown.is_some() {
            self.stats
                .caption_latency_seconds
                .observe(now_ms.saturating_sub(done.end_ms) as f64 / 1000.0);
            self.push_final(done, text);
        }
    }

    fn push_final(&mut self, done: InFlight, text: String) {
        self.captions
            .push_back(done.into_caption(PartialText::settled(text), true));
    }

    /// Ends `session`'s utterance (if any) and queues its final window.
    fn end_utterance(&mut self, session: &str, now_ms: u64) {
        let Some(speaker) = self.speakers.get_mut(session) else {
            return;
        };
        let Some(utterance) = speaker.utterance.take() else {
            return;
        };
        let name = speaker.name.clone();
        let end =
            (utterance.speech_end + samples_of(self.settings.tail_ms)).min(utterance.samples.len());
        self.queue_final(session, name, utterance, end, now_ms);
    }

    /// Cuts an utterance that reached `max_utterance_ms`, at its latest pause when that keeps at least a
    /// second on both sides, and goes on with the rest as a new utterance.
    fn cut_if_too_long(&mut self, session: &str, now_ms: u64) {
        let max = samples_of(self.settings.max_utterance_ms);
        let second = samples_of(1000);
        let settings = self.settings.clone();
        let Some(speaker) = self.speakers.get_mut(session) else {
            return;
        };
        let long_enough = speaker
            .utterance
            .as_ref()
            .is_some_and(|utterance| utterance.samples.len() >= max);
        if !long_enough {
            return;
        }
        // Invariant: checked just above that the utterance exists.
        let mut utterance = speaker.utterance.take().expect("utterance present");
        let cut = utterance
            .last_pause
            .filter(|pause| *pause >= second && utterance.samples.len() - pause >= second / 4)
            .unwrap_or(utterance.samples.len());
        let rest = utterance.samples.split_off(cut);
        let rest_start_ms = utterance.start_ms + ms_of(cut);
        speaker.utterances += 1;
        let continuation = (!rest.is_empty()).then(|| Utterance {
            caption_id: format!("{session}-{}", speaker.utterances),
            start_ms: rest_start_ms,
            speech_start_ms: rest_start_ms,
            speech_ms: ms_of(rest.len()),
            speech_end: rest.len(),
            samples: rest,
            last_pause: None,
            dispatched: 0,
            partial_due_ms: now_ms + settings.partial_interval_ms / 2,
            partial_in_flight: false,
            stabiliser: Stabiliser::default(),
            shown: None,
            hypothesis_end_ms: 0,
            pause: None,
        });
        speaker.utterance = continuation;
        let name = speaker.name.clone();
        // The whole cut part is speech for this purpose: a forced cut happens in the middle of talk.
        utterance.speech_end = utterance.samples.len();
        let end = utterance.samples.len();
        self.queue_final(session, name, utterance, end, now_ms);
    }

    fn queue_final(
        &mut self,
        session: &str,
        name: String,
        mut utterance: Utterance,
        end: usize,
        now_ms: u64,
    ) {
        if utterance.speech_ms < self.settings.min_speech_ms && utterance.shown.is_none() {
            self.stats.blips += 1;
            return;
        }
        if let Some(pause) = utterance.pause.take().filter(|pause| pause.end == end) {
            // No speech since the pause window was cut: its decode is the final's.
            let finished = InFlight {
                kind: WindowKind::Final,
                session: session.to_owned(),
                caption_id: utterance.caption_id.clone(),
                name: name.clone(),
                speech_start_ms: utterance.speech_start_ms,
                end_ms: utterance.speech_end_ms(),
                shown: utterance.shown.clone(),
            };
            match pause.result {
                PauseResult::Text(text) => {
                    self.finish_final(finished, &text, now_ms);
                    return;
                }
                PauseResult::Pending(id) => {
                    if let Some(in_flight) = self.in_flight.get_mut(&id) {
                        *in_flight = finished;
                        return;
                    }
                }
                PauseResult::Failed => {}
            }
        }
        self.cancel_partial_of(&utterance.caption_id);
        utterance.samples.truncate(end);
        if self.in_flight.len() >= self.settings.workers.max(1) {
            self.stats.transcriber_buf_full += 1;
        }
        let id = self.next_window_id();
        self.finals.push_back(QueuedFinal {
            new_audio: utterance.samples.len().saturating_sub(utterance.dispatched),
            speech_end_ms: utterance.speech_end_ms(),
            window: Window {
                id,
                kind: WindowKind::Final,
                session: session.to_owned(),
                start_ms: utterance.start_ms,
                samples: utterance.samples,
            },
            caption_id: utterance.caption_id,
            name,
            speech_start_ms: utterance.speech_start_ms,
            queued_ms: now_ms,
            shown: utterance.shown,
        });
    }

    fn drop_late_finals(&mut self, now_ms: u64) {
        while let Some(oldest) = self.finals.front() {
            if now_ms.saturating_sub(oldest.queued_ms) <= self.settings.final_max_wait_ms {
                break;
            }
            // Invariant: `front()` just returned an element.
            let late = self.finals.pop_front().expect("queue not empty");
            self.stats.window_dropped += 1;
            if let Some(shown) = late.shown {
                self.captions.push_back(LiveCaption {
                    id: late.caption_id,
                    session: late.window.session,
                    name: late.name,
                    start_ms: late.speech_start_ms,
                    end_ms: late.speech_end_ms,
                    text: PartialText::settled(shown.text()),
                    is_final: true,
                });
            }
        }
    }

    /// The pause window of the speaker whose speech paused first, if any speaker paused since their last
    /// window: the utterance up to its last speech plus the tail, as its final window would hold it.
    fn next_pause_window(&mut self) -> Option<Window> {
        let tail = samples_of(self.settings.tail_ms);
        let session = self.paused_speaker()?;
        let id = self.next_window_id();
        let speaker = self.speakers.get_mut(&session)?;
        let name = speaker.name.clone();
        let utterance = speaker.utterance.as_mut()?;
        let end = utterance.speech_end + tail;
        let caption_id = utterance.caption_id.clone();
        self.stats
            .new_audio_len_ms
            .observe(ms_of(end.saturating_sub(utterance.dispatched)) as f64);
        self.stats.windows += 1;
        utterance.dispatched = utterance.dispatched.max(end);
        utterance.pause = Some(PauseDecode {
            speech_end: utterance.speech_end,
            end,
            result: PauseResult::Pending(id),
        });
        self.in_flight.insert(
            id,
            InFlight {
                kind: WindowKind::Pause,
                session: session.clone(),
                caption_id: utterance.caption_id.clone(),
                name,
                speech_start_ms: utterance.speech_start_ms,
                end_ms: utterance.start_ms + ms_of(end),
                shown: None,
            },
        );
        let window = Window {
            id,
            kind: WindowKind::Pause,
            session,
            start_ms: utterance.start_ms,
            samples: utterance.samples[..end].to_vec(),
        };
        self.cancel_partial_of(&caption_id);
        Some(window)
    }

    /// The speaker whose speech paused first among those with a pause window due.
    fn paused_speaker(&self) -> Option<String> {
        let tail = samples_of(self.settings.tail_ms);
        self.speakers
            .iter()
            .filter_map(|(session, speaker)| {
                let utterance = speaker.utterance.as_ref()?;
                let paused = utterance.samples.len() >= utterance.speech_end + tail
                    && utterance.speech_ms >= self.settings.min_speech_ms
                    && utterance
                        .pause
                        .as_ref()
                        .is_none_or(|pause| pause.speech_end != utterance.speech_end);
                paused.then_some((session, utterance.speech_end_ms()))
            })
            .min_by_key(|(_, speech_end_ms)| *speech_end_ms)
            .map(|(session, _)| session.clone())
    }

    /// The partial window due longest, if any; counts the slots that passed while workers were busy.
    fn next_partial(&mut self, now_ms: u64) -> Option<Window> {
        let interval = self.settings.partial_interval_ms.max(1);
        let min_new = samples_of(100);
        let (session, _) = self
            .speakers
            .iter()
            .filter_map(|(session, speaker)| {
                let utterance = speaker.utterance.as_ref()?;
                let paused = utterance
                    .pause
                    .as_ref()
                    .is_some_and(|pause| pause.speech_end == utterance.speech_end);
                let due = !utterance.partial_in_flight
                    && !paused
                    && now_ms >= utterance.partial_due_ms
                    && utterance.samples.len() >= utterance.dispatched + min_new;
                due.then_some((session, utterance.partial_due_ms))
            })
            .min_by_key(|(_, due)| *due)?;
        let session = session.clone();
        let id = self.next_window_id();
        let speaker = self.speakers.get_mut(&session)?;
        let name = speaker.name.clone();
        let utterance = speaker.utterance.as_mut()?;
        self.stats.partials_dropped += (now_ms - utterance.partial_due_ms) / interval;
        let new_audio = utterance.samples.len() - utterance.dispatched;
        self.stats.new_audio_len_ms.observe(ms_of(new_audio) as f64);
        self.stats.windows += 1;
        utterance.dispatched = utterance.samples.len();
        utterance.partial_due_ms = now_ms + interval;
        utterance.partial_in_flight = true;
        let end_ms = utterance.start_ms + ms_of(utterance.samples.len());
        self.in_flight.insert(
            id,
            InFlight {
                kind: WindowKind::Partial,
                session: session.clone(),
                caption_id: utterance.caption_id.clone(),
                name,
                speech_start_ms: utterance.speech_start_ms,
                end_ms,
                shown: None,
            },
        );
        Some(Window {
            id,
            kind: WindowKind::Partial,
            session,
            start_ms: utterance.start_ms,
            samples: utterance.samples.clone(),
        })
    }

    fn next_window_id(&mut self) -> u64 {
        self.next_window += 1;
        self.next_window
    }
}
