//! The post-call speech pipeline for one speaker: audio pieces on the call timeline → VAD → utterances
//! (regions closer than 1 s joined, ≤ 28 s) → whisper → segments mapped back to call time.
//!
//! The job shell decodes each speaker's captured Opus to 16 kHz mono [`AudioPiece`]s (one per stretch of
//! received audio, placed on the call timeline) and hands them to [`Transcriber::transcribe_speaker`];
//! [`crate::transcript::merge`] then interleaves all speakers.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

use crate::engine::{
    DecodeSettings, Decoded, LoadOptions, Prepared, RawSegment, RawToken, SpeechEngine, SAMPLE_RATE,
};
use crate::error::Result;
use crate::load::load_engine;
use crate::models;
/// The speaker a transcription is for (defined with the transcript, which names them).
pub use crate::transcript::Speaker;
use crate::transcript::{Segment, SpeakerTranscript, Word};
use crate::vad::{Vad, VadSettings};

/// A stretch of one speaker's audio: 16 kHz mono samples starting `start_ms` after the call began.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioPiece {
    /// Call time of the first sample, in milliseconds.
    pub start_ms: u64,
    /// 16 kHz mono samples in -1..1.
    pub samples: Vec<f32>,
}

/// What the caller chooses about a transcription.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeOptions {
    /// The whisper model: a ggml file, or a directory of CTranslate2 files (see
    /// [`models::resolve_model_path`]).
    pub model: PathBuf,
    /// The Silero VAD model file (see [`models::vad_model_path`]).
    pub vad_model: PathBuf,
    /// `None` or `Some("auto")`: detect per speaker (multilingual models); otherwise an ISO 639-1 code.
    pub language: Option<String>,
    /// `None`: greedy decoding (the default); `Some(n)`: beam search with n beams.
    pub beam_size: Option<u32>,
    /// Threads for whisper and the VAD.
    pub threads: u32,
    /// Text that primes the decoder (names, jargon).
    pub initial_prompt: Option<String>,
}

impl TranscribeOptions {
    /// Options for the model called `name` in the model directory `dir`, with the defaults: language
    /// detected, greedy, 2 threads, no prompt. `name` without a file of its own gets its quantised version
    /// ([`models::resolve_model_path`]). Fails with the list of models present if neither is there.
    pub fn for_model(dir: &Path, name: &str) -> Result<Self> {
        Ok(TranscribeOptions {
            model: models::resolve_model_path(dir, name)?,
            vad_model: models::vad_model_path(dir)?,
            language: None,
            beam_size: None,
            threads: 2,
            initial_prompt: None,
        })
    }
}

/// How far the current speaker's transcription is, in milliseconds of speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Speech of this speaker transcribed so far.
    pub done_ms: u64,
    /// All speech of this speaker found by the VAD.
    pub total_ms: u64,
}

/// Longest stretch of joined speech handed to whisper at once: just under its 30 s window, so a chunk is
/// decoded in one encoder pass.
pub const CHUNK_MAX_MS: u64 = 28_000;
/// Speech regions closer than this are decoded together, with the real audio between them.
pub const CHUNK_JOIN_MS: u64 = 1_000;
/// The VAD goes through a long piece in spans of at most this much audio (see [`speech_regions`]).
pub const VAD_SPAN_MS: u64 = 300_000;
/// Spans are not cut shorter than this to give every VAD one.
const VAD_SPAN_MIN_MS: u64 = 10_000;
/// Each span also covers this much of the span before it, so speech cut by a span's start is found
/// whole in the span before (the VAD drops bursts under 250 ms, which the cut could make).
const VAD_OVERLAP_MS: u64 = 1_000;

/// Segments whisper itself judged to be probably no speech, with a low token probability, are dropped.
const NO_SPEECH_DROP: f32 = 0.6;
const LOW_TOKEN_PROB: f32 = 0.4;

/// Loads the models once and transcribes speakers one after the other, each speaker's chunks on as
/// many engines at once as the model allows (see [`SpeechEngine::parallel_worker`]).
pub struct Transcriber {
    engine: Box<dyn SpeechEngine>,
    /// More engines on the same model, each decoding other chunks beside `engine` (CTranslate2: one
    /// replica per thread); empty for whisper.cpp, which splits each decode over its threads.
    workers: Vec<Box<dyn SpeechEngine>>,
    /// One VAD per engine: a long piece's spans are judged side by side.
    vads: Vec<Vad>,
    settings: DecodeSettings,
    activity: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Transcriber {
    /// Loads the whisper and VAD models and checks the options against the model. Tokens are timed by
    /// DTW over the alignment heads, for the transcript's word timestamps.
    pub fn new(options: &TranscribeOptions) -> Result<Self> {
        Self::new_with(
            options,
            LoadOptions {
                word_timestamps: true,
                ..LoadOptions::default()
            },
        )
    }

    /// [`Transcriber::new`] with the model loaded as `load` says (benchmarks compare the options).
    pub fn new_with(options: &TranscribeOptions, load: LoadOptions) -> Result<Self> {
        let engine = load_engine(&options.model, load, options.threads)?;
        // One VAD per thread: each runs on the thread that calls it, over its own span of a piece.
        let vads = (0..options.threads.max(1))
            .map(|_| Vad::load(&options.vad_model, VadSettings::default()))
            .collect::<Result<Vec<_>>>()?;
        let language = match options.language.as_deref().map(str::trim) {
            None | Some("") | Some("auto") => None,
            Some(code) => Some(code.to_ascii_lowercase()),
        };
        let settings = DecodeSettings {
            language,
            beam_size: options.beam_size,
            threads: options.threads,
            initial_prompt: options
                .initial_prompt
                .clone()
                .filter(|p| !p.trim().is_empty()),
            single_segment: false,
            no_context: true,
            short_window: false,
            retry_on_failure: true,
        };
        engine.check(&settings)?;
        let workers = (1..options.threads)
            .map_while(|_| engine.parallel_worker())
            .collect();
        Ok(Transcriber {
            engine,
            workers,
            vads,
            settings,
            activity: None,
        })
    }

    /// Counts whisper's progress into `counter` (see [`SpeechEngine::set_activity`]): the job's heartbeat follows
    /// it, so a long chunk on a busy machine keeps the job healthy and only a stuck one does not.
    pub fn set_activity(&mut self, counter: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        self.engine.set_activity(std::sync::Arc::clone(&counter));
        for worker in &mut self.workers {
            worker.set_activity(std::sync::Arc::clone(&counter));
        }
        self.activity = Some(counter);
    }

    /// Transcribes one speaker. `pieces` may come in any order; `progress` is called after the VAD pass
    /// and after each chunk. A speaker who never spoke yields no segments and `speech_ms == 0`.
    pub fn transcribe_speaker(
        &mut self,
        speaker: &Speaker,
        pieces: impl IntoIterator<Item = AudioPiece>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<SpeakerTranscript> {
        let started = Instant::now();
        let mut pieces: Vec<AudioPiece> = pieces.into_iter().collect();
        pieces.sort_by_key(|p| p.start_ms);
        let audio_ms = pieces.iter().map(|p| samples_to_ms(p.samples.len())).sum();

        // VAD over every piece first, so progress has a total (see `speech_regions`).
        let mut speech = Vec::with_capacity(pieces.len());
        for piece in &pieces {
            speech.push(speech_regions(
                &mut self.vads,
                &piece.samples,
                self.activity.as_deref(),
            )?);
        }
        let chunks = plan_speaker(&speech, 1 + self.workers.len());
        let total_ms: u64 = chunks.iter().map(Chunk::speech_ms).sum();
        progress(Progress {
            done_ms: 0,
            total_ms,
        });

        let mut settings = self.settings.clone();
        let mut segments = Vec::new();
        let mut done_ms = 0;
        let mut done = |chunk: &Chunk| {
            done_ms += chunk.speech_ms();
            progress(Progress { done_ms, total_ms });
        };
        let mut decoded = self.decode_chunks(&chunks, &pieces, &settings, &mut done)?;
        // An auto-detected language is the first chunk's, for the whole speaker: every chunk detects
        // its own (so that all decode at once), and one that heard another language is decoded again
        // in the first one's.
        if settings.language.is_none() {
            if let Some(first) = decoded.first().and_then(|d| d.language.clone()) {
                settings.language = Some(first);
                for (chunk, decoded) in chunks.iter().zip(decoded.iter_mut()).skip(1) {
                    if decoded.language != settings.language {
                        *decoded = self.engine.decode(&chunk.assemble(&pieces), &settings)?;
                    }
                }
            }
        }
        for (chunk, decoded) in chunks.iter().zip(decoded) {
            for raw in &decoded.segments {
                segments.extend(chunk.to_call_time(raw, &pieces));
            }
        }
        let mut language = settings.language;
        if language.is_none() && !self.engine.is_multilingual() {
            language = Some("en".to_string());
        }
        segments.sort_by_key(|s: &Segment| (s.start_ms, s.end_ms));
        Ok(SpeakerTranscript {
            speaker: speaker.clone(),
            language,
            segments,
            audio_ms,
            speech_ms: total_ms,
            processing: started.elapsed(),
        })
    }

    /// Decodes `chunks` (the result in their order); on every engine at once when there are several.
    /// `done` is called, on this thread, for each chunk as it is decoded. The first error stops the rest.
    ///
    /// A chunk's work is two tasks, its encoder pass ([`SpeechEngine::prepare`]) and its decode, which
    /// need not run on the same engine: an engine that is free encodes the next chunk while fewer chunks
    /// than there are engines wait encoded, and otherwise decodes the longest chunk waiting. Three chunks on
    /// two engines then take about half their time (one encodes the third while the other decodes the
    /// first), where whole chunks per engine would leave one engine idle for the third's length.
    fn decode_chunks(
        &mut self,
        chunks: &[Chunk],
        pieces: &[AudioPiece],
        settings: &DecodeSettings,
        done: &mut dyn FnMut(&Chunk),
    ) -> Result<Vec<Decoded>> {
        if self.workers.is_empty() || chunks.len() < 2 {
            let mut all = Vec::with_capacity(chunks.len());
            for chunk in chunks {
                all.push(self.engine.decode(&chunk.assemble(pieces), settings)?);
                done(chunk);
            }
            return Ok(all);
        }
        let engines = 1 + self.workers.len();
        let tasks = std::sync::Mutex::new(Tasks::new(chunks, engines));
        let mut results: Vec<Option<Decoded>> = chunks.iter().map(|_| None).collect();
        // Each engine sends one result and then goes on with its next task: room for one each.
        let (sender, receiver) = mpsc::sync_channel(engines);
        let all = std::iter::once(&mut self.engine).chain(self.workers.iter_mut());
        std::thread::scope(|scope| {
            for engine in all {
                let sender = sender.clone();
                let tasks = &tasks;
                scope
                    .spawn(move || work(engine.as_mut(), tasks, chunks, pieces, settings, &sender));
            }
            // The receiver ends once every engine's thread has ended and dropped its sender.
            drop(sender);
            let mut first_error = None;
            for (index, result) in receiver {
                match result {
                    Ok(decoded) => {
                        done(&chunks[index]);
                        results[index] = Some(decoded);
                    }
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        })?;
        // Without an error every chunk was decoded, so no slot is empty.
        Ok(results.into_iter().flatten().collect())
    }
}

/// One engine's share of [`Transcriber::decode_chunks`]: its tasks, one after another, until none is left
/// or one fails; each decode's result (and a failed encoder pass) goes to `results`.
fn work(
    engine: &mut dyn SpeechEngine,
    tasks: &std::sync::Mutex<Tasks>,
    chunks: &[Chunk],
    pieces: &[AudioPiece],
    settings: &DecodeSettings,
    results: &mpsc::SyncSender<(usize, Result<Decoded>)>,
) {
    // A poisoned lock means another engine's thread panicked: that panic ends the scope.
    let next = || tasks.lock().map(|mut t| t.next()).unwrap_or(Task::Stop);
    loop {
        let sent = match next() {
            Task::Stop => return,
            Task::Prepare(index) => {
                let samples = chunks[index].assemble(pieces);
                let prepared = engine.prepare(&samples);
                match tasks
                    .lock()
                    .ok()
                    .and_then(|mut t| t.prepared(index, samples, prepared))
                {
                    Some(error) => {
                        let _ = results.send((index, Err(error)));
                        return;
                    }
                    None => Ok(()),
                }
            }
            Task::Decode(index, samples, prepared) => {
                let result = engine.decode_prepared(&samples, settings, prepared);
                if result.is_err() {
                    if let Ok(mut tasks) = tasks.lock() {
                        tasks.failed = true;
                    }
                }
                results.send((index, result))
            }
        };
        // The receiver is gone only when the caller stopped listening.
        if sent.is_err() {
            return;
        }
    }
}

/// What the engines of [`Transcriber::decode_chunks`] do next, shared between them.
struct Tasks {
    /// Chunk indices, longest first, that no engine has started to encode yet.
    to_prepare: std::vec::IntoIter<usize>,
    /// Chunks being encoded now.
    preparing: usize,
    /// Encoded chunks waiting for a decode: index, samples, the encoder's work.
    ready: Vec<(usize, Vec<f32>, Option<Prepared>)>,
    /// Lengths of the chunks, by index.
    lengths: Vec<usize>,
    engines: usize,
    /// Set by the first error: every engine stops at its next task.
    failed: bool,
}

/// One engine's next task.
enum Task {
    Prepare(usize),
    Decode(usize, Vec<f32>, Option<Prepared>),
    Stop,
}

impl Tasks {
    fn new(chunks: &[Chunk], engines: usize) -> Self {
        let lengths: Vec<usize> = chunks.iter().map(Chunk::len).collect();
        let mut order: Vec<usize> = (0..chunks.len()).collect();
        order.sort_by_key(|&index| std::cmp::Reverse(lengths[index]));
        Tasks {
            to_prepare: order.into_iter(),
            preparing: 0,
            ready: Vec::new(),
            lengths,
            engines,
            failed: false,
        }
    }

    /// Encode ahead while fewer chunks than engines are encoded or being encoded (so that an engine
    /// finishing a decode finds one ready, and encoder outputs held stay few); otherwise decode the
    /// longest chunk ready. Nothing to encode and nothing ready: the chunks left are being encoded, each
    /// by an engine that then decodes it, so this engine stops.
    fn next(&mut self) -> Task {
        if self.failed {
            return Task::Stop;
        }
        if self.ready.len() + self.preparing < self.engines {
            if let Some(index) = self.to_prepare.next() {
                self.preparing += 1;
                return Task::Prepare(index);
            }
        }
        let longest = (0..self.ready.len()).max_by_key(|&k| self.lengths[self.ready[k].0]);
        match longest {
            Some(k) => {
                let (index, samples, prepared) = self.ready.swap_remove(k);
                Task::Decode(index, samples, prepared)
            }
            None => Task::Stop,
        }
    }

    /// Chunk `index`'s encoder pass ended: on success it waits for a decode; an error stops every engine
    /// and is returned to be reported.
    fn prepared(
        &mut self,
        index: usize,
        samples: Vec<f32>,
        result: Result<Option<Prepared>>,
    ) -> Option<crate::error::Error> {
        self.preparing -= 1;
        match result {
            Ok(prepared) => {
                self.ready.push((index, samples, prepared));
                None
            }
            Err(error) => {
                self.failed = true;
                Some(error)
            }
        }
    }
}

/// The speech regions of one piece, judged by `vads` side by side. The piece goes through in spans
/// ([`spans_of`]), each counted as activity: an hour of one speaker takes the VAD a minute on a busy
/// machine, longer than the health check waits. Regions found twice where spans overlap are merged,
/// and a region cut at a span's edge is joined again by the chunk planning (regions less than a second
/// apart are one utterance).
fn speech_regions(
    vads: &mut [Vad],
    samples: &[f32],
    activity: Option<&std::sync::atomic::AtomicU64>,
) -> Result<Vec<Range<usize>>> {
    let spans = spans_of(samples.len(), vads.len());
    let mut regions = Vec::new();
    for round in spans.chunks(vads.len().max(1)) {
        let found: Vec<Result<Vec<Range<usize>>>> = std::thread::scope(|scope| {
            let judged: Vec<_> = round
                .iter()
                .zip(vads.iter_mut())
                .map(|(span, vad)| {
                    scope.spawn(move || {
                        let found = vad.speech_regions(&samples[span.clone()])?;
                        Ok(found
                            .into_iter()
                            .map(|r| r.start + span.start..r.end + span.start)
                            .collect())
                    })
                })
                .collect();
            judged
                .into_iter()
                // A VAD that panicked (a bug) is a panic here too.
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|e| std::panic::resume_unwind(e))
                })
                .collect()
        });
        for span_regions in found {
            regions.extend(span_regions?);
            if let Some(activity) = activity {
                activity.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(crate::vad::normalise(regions))
}

/// The spans a piece of `len` samples goes through the VAD in, for `vads` VADs: of equal length, none
/// over [`VAD_SPAN_MS`], at least as many as there are VADs where each still gets
/// [`VAD_SPAN_MIN_MS`], each but the first reaching [`VAD_OVERLAP_MS`] back into the one before.
fn spans_of(len: usize, vads: usize) -> Vec<Range<usize>> {
    let mut count = len.div_ceil(ms_to_samples(VAD_SPAN_MS));
    if count < vads {
        count = vads.min(len / ms_to_samples(VAD_SPAN_MIN_MS)).max(count);
    }
    let span = len.div_ceil(count.max(1)).max(1);
    let overlap = ms_to_samples(VAD_OVERLAP_MS);
    (0..len.div_ceil(span))
        .map(|k| (k * span).saturating_sub(overlap)..((k + 1) * span).min(len))
        .collect()
}

/// Whether a decoded segment is text a person said, not whisper talking over silence: empty text,
/// non-speech markers and segments whisper itself doubts (high no-speech and low token probability) go.
pub fn is_speech(segment: &RawSegment) -> bool {
    let text = segment.text.trim();
    if text.is_empty() || !text.chars().any(char::is_alphanumeric) {
        return false;
    }
    let bracketed = (text.starts_with('[') && text.ends_with(']'))
        || (text.starts_with('(') && text.ends_with(')'))
        || (text.starts_with('*') && text.ends_with('*'));
    if bracketed {
        return false;
    }
    !(segment.no_speech_prob > NO_SPEECH_DROP && segment.avg_token_prob < LOW_TOKEN_PROB)
}

/// One part of a chunk: a speech region of one piece, and where it sits inside the chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    piece: usize,
    source: Range<usize>,
    chunk_offset: usize,
}

/// Speech handed to whisper in one call: one or more parts (today always one contiguous range of a piece),
/// at most [`CHUNK_MAX_MS`] unless a single region is longer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    parts: Vec<Part>,
}

/// Groups the speech regions of piece `piece` into chunks, in order. Regions less than
/// [`CHUNK_JOIN_MS`] apart are joined with the real audio between them (one utterance with short pauses);
/// a longer pause starts a new chunk, so whisper never sees two utterances glued together (its segment
/// times compress silence, which would put the second utterance's cue at the first one's time).
///
/// A new chunk also starts at each region `i` whose `cut_before[i]` is true ([`plan_speaker`]'s even
/// shares; empty: none).
fn plan_chunks(piece: usize, regions: &[Range<usize>], cut_before: &[bool]) -> Vec<Chunk> {
    let max = ms_to_samples(CHUNK_MAX_MS);
    let join = ms_to_samples(CHUNK_JOIN_MS);
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut current: Option<Range<usize>> = None;
    for (index, region) in regions.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
        let cut = cut_before.get(index).copied().unwrap_or(false);
        current = match current {
            Some(range)
                if !cut
                    && region.start.saturating_sub(range.end) < join
                    && region.end.saturating_sub(range.start) <= max =>
            {
                Some(range.start..region.end.max(range.end))
            }
            Some(range) => {
                chunks.push(Chunk::single(piece, range));
                Some(region.clone())
            }
            None => Some(region.clone()),
        };
    }
    if let Some(range) = current {
        chunks.push(Chunk::single(piece, range));
    }
    chunks
}

/// A speaker with fewer chunks than this per engine has them re-planned into equal shares
/// ([`plan_speaker`]); with more, engines taking the next chunk as they finish are balanced enough.
const BALANCED_CHUNKS_PER_ENGINE: usize = 4;

/// The chunks of one speaker, whose speech regions are `speech` (one list per piece), for `engines`
/// engines decoding at once. One engine, or speech that fits one chunk: [`plan_chunks`]. Otherwise, with
/// few chunks, the last one decoded decides when the speaker is done, so the same number of chunks is cut
/// at the pauses nearest to equal shares instead (24 + 24 + 9 s of sentences → 19 + 19 + 19 s): no chunk
/// is added (each costs a 30 s encoder pass), and [`Transcriber::decode_chunks`] overlaps one
/// chunk's encoding with another's decode.
fn plan_speaker(speech: &[Vec<Range<usize>>], engines: usize) -> Vec<Chunk> {
    let full = ms_to_samples(CHUNK_MAX_MS);
    let plan = |cut_before: &[bool]| -> Vec<Chunk> {
        let mut first = 0;
        let mut chunks = Vec::new();
        for (piece, regions) in speech.iter().enumerate() {
            let cuts = cut_before.get(first..first + regions.len()).unwrap_or(&[]);
            chunks.extend(plan_chunks(piece, regions, cuts));
            first += regions.len();
        }
        chunks
    };
    let natural = plan(&[]);
    let total: usize = natural.iter().map(Chunk::len).sum();
    let parts = natural.len();
    if engines < 2 || total <= full || parts < 2 || parts >= BALANCED_CHUNKS_PER_ENGINE * engines {
        return natural;
    }
    let lengths: Vec<usize> = speech.iter().flatten().map(|r| r.len()).collect();
    let speech_total: usize = lengths.iter().sum();
    // The share boundaries j × total / parts, each moved to the nearer end of the region it falls in.
    let mut cut_before = vec![false; lengths.len()];
    let (mut done, mut share) = (0, 1);
    for (index, length) in lengths.iter().enumerate() {
        while share < parts && share * speech_total / parts <= done + length / 2 {
            cut_before[index] = index > 0;
            share += 1;
        }
        done += length;
    }
    plan(&cut_before)
}

impl Chunk {
    fn single(piece: usize, source: Range<usize>) -> Self {
        Chunk {
            parts: vec![Part {
                piece,
                source,
                chunk_offset: 0,
            }],
        }
    }

    fn speech_ms(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| samples_to_ms(p.source.len()))
            .sum()
    }

    fn len(&self) -> usize {
        self.parts
            .last()
            .map_or(0, |p| p.chunk_offset + p.source.len())
    }

    /// The chunk's samples: each region copied to its offset, silence between.
    fn assemble(&self, pieces: &[AudioPiece]) -> Vec<f32> {
        let mut samples = vec![0.0; self.len()];
        for part in &self.parts {
            let source = &pieces[part.piece].samples[part.source.clone()];
            samples[part.chunk_offset..part.chunk_offset + source.len()].copy_from_slice(source);
        }
        samples
    }

    /// Call time (ms) where something starting at `chunk_ms` inside the chunk starts: a start in a gap
    /// belongs to the next region; past the end, to the end of the last region.
    fn call_start_ms(&self, chunk_ms: u64, pieces: &[AudioPiece]) -> u64 {
        let position = ms_to_samples(chunk_ms);
        let part = self
            .parts
            .iter()
            .find(|p| position < p.chunk_offset + p.source.len())
            .or(self.parts.last());
        part.map_or(0, |part| part_call_ms(part, position, pieces))
    }

    /// Call time (ms) where something ending at `chunk_ms` inside the chunk ends: an end in a gap belongs
    /// to the region before it.
    fn call_end_ms(&self, chunk_ms: u64, pieces: &[AudioPiece]) -> u64 {
        let position = ms_to_samples(chunk_ms);
        let part = self
            .parts
            .iter()
            .rev()
            .find(|p| position >= p.chunk_offset)
            .or(self.parts.first());
        part.map_or(0, |part| part_call_ms(part, position, pieces))
    }

    /// Index of the part a position (ms inside the chunk) belongs to; a gap belongs to the next part.
    fn part_index(&self, chunk_ms: u64) -> usize {
        let position = ms_to_samples(chunk_ms);
        self.parts
            .iter()
            .position(|p| position < p.chunk_offset + p.source.len())
            .unwrap_or(self.parts.len().saturating_sub(1))
    }

    /// A decoded segment placed on the call timeline: one segment per packed region it covers (cut by
    /// its tokens' times), non-speech dropped.
    fn to_call_time(&self, raw: &RawSegment, pieces: &[AudioPiece]) -> Vec<Segment> {
        let mut groups: Vec<(usize, Vec<&RawToken>)> = Vec::new();
        for token in &raw.tokens {
            let part = self.part_index(token.start_ms);
            match groups.last_mut() {
                Some((last, tokens)) if *last == part => tokens.push(token),
                _ => groups.push((part, vec![token])),
            }
        }
        let pieces_of_text: Vec<RawSegment> = if groups.len() <= 1 {
            vec![raw.clone()]
        } else {
            groups
                .into_iter()
                .map(|(_, tokens)| {
                    let probability: f32 = tokens.iter().map(|t| t.probability).sum();
                    RawSegment {
                        start_ms: tokens.first().map_or(raw.start_ms, |t| t.start_ms),
                        end_ms: tokens.last().map_or(raw.end_ms, |t| t.end_ms),
                        text: tokens.iter().map(|t| t.text.as_str()).collect(),
                        avg_token_prob: probability / tokens.len().max(1) as f32,
                        no_speech_prob: raw.no_speech_prob,
                        tokens: tokens.into_iter().cloned().collect(),
                    }
                })
                .collect()
        };
        pieces_of_text
            .into_iter()
            .filter(is_speech)
            .map(|part| {
                let start_ms = self.call_start_ms(part.start_ms, pieces);
                let end_ms = self.call_end_ms(part.end_ms, pieces).max(start_ms);
                let words = words_of(&part.tokens)
                    .into_iter()
                    .map(|word| {
                        let start = self.call_start_ms(word.start_ms, pieces);
                        Word {
                            start_ms: start,
                            end_ms: self.call_end_ms(word.end_ms, pieces).max(start),
                            ..word
                        }
                    })
                    .collect();
                Segment {
                    start_ms,
                    end_ms,
                    text: part.text.trim().to_string(),
                    avg_token_prob: part.avg_token_prob,
                    no_speech_prob: part.no_speech_prob,
                    words,
                }
            })
            .collect()
    }
}

/// A segment's text tokens grouped into words, times as the tokens': a token that starts with a space
/// starts a word, unless it holds no letter or digit (a dash, a quote), which joins the word before, as do
/// tokens without a space (the rest of a word, its punctuation).
pub fn words_of(tokens: &[RawToken]) -> Vec<Word> {
    let mut words: Vec<(Word, u32)> = Vec::new();
    for token in tokens {
        let starts_word = token.text.starts_with(char::is_whitespace)
            && token.text.chars().any(char::is_alphanumeric);
        match words.last_mut() {
            Some((word, count)) if !starts_word => {
                word.text.push_str(&token.text);
                word.end_ms = word.end_ms.max(token.end_ms);
                word.probability += token.probability;
                *count += 1;
            }
            _ => words.push((
                Word {
                    start_ms: token.start_ms,
                    end_ms: token.end_ms.max(token.start_ms),
                    text: token.text.clone(),
                    probability: token.probability,
                },
                1,
            )),
        }
    }
    words
        .into_iter()
        .filter_map(|(mut word, count)| {
            word.text = word.text.trim().to_string();
            word.probability /= count as f32;
            (!word.text.is_empty()).then_some(word)
        })
        .collect()
}

/// Call time of sample `position` of the chunk, clamped to the part.
fn part_call_ms(part: &Part, position: usize, pieces: &[AudioPiece]) -> u64 {
    let inside = position
        .saturating_sub(part.chunk_offset)
        .min(part.source.len());
    pieces[part.piece].start_ms + samples_to_ms(part.source.start + inside)
}

fn ms_to_samples(ms: u64) -> usize {
    (ms * u64::from(SAMPLE_RATE) / 1000) as usize
}

fn samples_to_ms(samples: usize) -> u64 {
    samples as u64 * 1000 / u64::from(SAMPLE_RATE)
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
