//! The whisper engine: one loaded ggml model and one decoding state, turning a buffer of 16 kHz mono
//! samples into timed text. Knows nothing about speakers or call time; the post-call pipeline
//! ([`crate::pipeline`]) and live captions both drive it with their own [`DecodeSettings`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use whisper_rs::{
    DtwMode, DtwModelPreset, DtwParameters, FullParams, SamplingStrategy, WhisperContext,
    WhisperContextParameters, WhisperState,
};

use crate::error::{Error, Result};

/// Samples per second whisper expects.
pub const SAMPLE_RATE: u32 = 16_000;

/// How one buffer is decoded. Defaults: greedy, 2 threads, English unless the model is multilingual.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeSettings {
    /// `None` detects the language (multilingual models only); otherwise an ISO 639-1 code (`en`).
    pub language: Option<String>,
    /// `None` or `Some(1)`: greedy decoding; `Some(n)`: beam search with `n` beams.
    pub beam_size: Option<u32>,
    /// Threads whisper.cpp uses for this decode.
    pub threads: u32,
    /// Text that primes the decoder (names, jargon).
    pub initial_prompt: Option<String>,
    /// Decode the buffer as one segment without carrying text over from earlier buffers (live windows).
    pub single_segment: bool,
    /// Do not condition on the previous buffer's text (avoids a hallucination feeding the next one).
    pub no_context: bool,
    /// Live windows: run the encoder over the window's length (plus a margin) instead of whisper's full
    /// 30 s, re-decode at a higher temperature only with `retry_on_failure`, decode no timestamps, stop after
    /// [`short_window_max_tokens`] tokens
    /// (a hypothesis stuck repeating a phrase otherwise runs to whisper's limit: 6 s for one partial). A 1 s window then costs a small fraction of a
    /// 30 s one; whisper.cpp's `audio_ctx`, which Mattermost's live captions set too (to 512).
    pub short_window: bool,
    /// With `short_window`: still re-decode at a higher temperature when the text fails whisper's
    /// checks (a phrase repeated over and over has too little entropy). Live finals take the extra
    /// decode; partials, cut in the middle of a word, would fail the checks too often to afford it.
    pub retry_on_failure: bool,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        DecodeSettings {
            language: Some("en".to_string()),
            beam_size: None,
            threads: 2,
            initial_prompt: None,
            single_segment: false,
            no_context: true,
            short_window: false,
            retry_on_failure: true,
        }
    }
}

impl DecodeSettings {
    /// How live captions decode a window: one segment, no context, a short window, greedy, in English
    /// unless the model is multilingual and `language` says otherwise.
    pub fn live_window(threads: u32) -> Self {
        DecodeSettings {
            beam_size: None,
            threads: threads.max(1),
            single_segment: true,
            no_context: true,
            short_window: true,
            retry_on_failure: false,
            ..DecodeSettings::default()
        }
    }
}

/// The encoder context for a short window of `samples` (16 kHz): whisper's encoder has 50 positions per
/// second of audio (1500 for 30 s); the window's positions plus 1 s of margin, rounded up to 32. The
/// encoder's cost grows with the context; without a margin whisper drops or garbles a sentence's last
/// words (20 meeting sentences, tiny.en: WER 4.4 % with 1 s or more of margin, 11 % with 0.5 s, 40 % with
/// none; 1 s instead of 2 s cut the CPU per sentence by a quarter).
pub fn short_window_audio_ctx(samples: usize) -> i32 {
    let positions = samples.div_ceil(SAMPLE_RATE as usize / 50) + 50;
    positions.div_ceil(32).saturating_mul(32).min(1500) as i32
}

/// The most tokens a short window may produce: 10 plus 6 a second, above the ~5 tokens a second of a fast
/// talker.
pub fn short_window_max_tokens(samples: usize) -> i32 {
    let seconds = samples.div_ceil(SAMPLE_RATE as usize);
    (10 + 6 * seconds).min(224) as i32
}

/// What whisper.cpp's abort callback reads and writes during one decode: the cancel flag it answers with,
/// and the activity counter it advances (the job's heartbeat follows it).
struct CallbackData<'a> {
    cancel: Option<&'a AtomicBool>,
    activity: Option<&'a AtomicU64>,
}

/// whisper.cpp's abort callback, called before the encoder and at every decoding step (each token), so it
/// is whisper's own progress: it counts a step of work done and answers whether to stop. Called from one
/// of whisper's threads at a time.
#[allow(unsafe_code)]
unsafe extern "C" fn step_done(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `data` points to the `CallbackData` that `decode_cancellable` keeps alive on its stack until
    // whisper.cpp returns (see `set_callback`); its atomics may be used from any thread.
    let data = unsafe { &*(data as *const CallbackData<'_>) };
    if let Some(activity) = data.activity {
        activity.fetch_add(1, Ordering::Relaxed);
    }
    data.cancel.is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// Registers [`step_done`] with `data`. Not whisper-rs' `set_abort_callback_safe`: in whisper-rs 0.16 its
/// trampoline reads the boxed closure as the wrong type, so the callback returned garbage and aborted about
/// half of the live windows (whisper error -6) until this replaced it.
#[allow(unsafe_code)]
fn set_callback(params: &mut FullParams, data: &CallbackData<'_>) {
    // SAFETY: the pointer stays valid while whisper.cpp may call the callback: `decode_cancellable` keeps
    // `data` alive until after `WhisperState::full` returns, and `params` is consumed by that call.
    unsafe {
        params.set_abort_callback(Some(step_done));
        params
            .set_abort_callback_user_data(data as *const CallbackData<'_> as *mut std::ffi::c_void);
    }
}

/// One decoded segment, in milliseconds from the start of the buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSegment {
    /// Start, ms from the buffer's first sample.
    pub start_ms: u64,
    /// End, ms from the buffer's first sample.
    pub end_ms: u64,
    /// Text as whisper produced it, trimmed.
    pub text: String,
    /// Mean probability of the segment's text tokens (special tokens such as timestamps left out).
    pub avg_token_prob: f32,
    /// Whisper's no-speech probability for the window this segment came from.
    pub no_speech_prob: f32,
    /// The segment's text tokens with their own times (special tokens left out). Lets the pipeline
    /// split a segment that runs across two packed speech regions.
    pub tokens: Vec<RawToken>,
}

/// One text token of a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct RawToken {
    /// Start, ms from the buffer's first sample.
    pub start_ms: u64,
    /// End, ms from the buffer's first sample.
    pub end_ms: u64,
    /// The token's text (often starts with a space).
    pub text: String,
    /// Its probability.
    pub probability: f32,
}

/// The result of decoding one buffer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// Segments in time order.
    pub segments: Vec<RawSegment>,
    /// The language used: the one asked for, or the detected one.
    pub language: Option<String>,
}

/// How a model is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Time every text token by dynamic time warping over the model's alignment heads (whisper.cpp's
    /// `dtw_token_timestamps`, the method of OpenAI's `word_timestamps`): word times within a few tens of
    /// milliseconds, where the timestamp-token heuristic was off by up to 0.7 s. Costs one extra decoder
    /// pass per segment; only for models whose alignment heads whisper.cpp knows (tiny … large-v3).
    pub word_timestamps: bool,
    /// whisper.cpp's fused attention kernel (`flash_attn`). whisper.cpp cannot time tokens by DTW with it,
    /// so it turns `word_timestamps` off (word times then come from the timestamp-token heuristic).
    pub flash_attn: bool,
}

/// whisper.cpp's alignment-head preset for the model in `path`, from its ggml header (vocabulary size,
/// widths and layer counts tell the published models apart). `None` for a model it does not know.
fn alignment_heads(path: &Path) -> Option<DtwModelPreset> {
    use std::io::Read;
    let mut header = [0u8; 44];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    let field = |index: usize| {
        let at = index * 4;
        i32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if field(0) != 0x6767_6d6c {
        return None;
    }
    // After the magic: n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx,
    // n_text_state, n_text_head, n_text_layer, n_mels.
    let (n_vocab, n_audio_state, n_text_layer, n_mels) = (field(1), field(3), field(9), field(10));
    let english = n_vocab == 51_864;
    Some(match (n_audio_state, english) {
        (384, true) => DtwModelPreset::TinyEn,
        (384, false) => DtwModelPreset::Tiny,
        (512, true) => DtwModelPreset::BaseEn,
        (512, false) => DtwModelPreset::Base,
        (768, true) => DtwModelPreset::SmallEn,
        (768, false) => DtwModelPreset::Small,
        (1024, true) => DtwModelPreset::MediumEn,
        (1024, false) => DtwModelPreset::Medium,
        (1280, false) if n_mels == 128 && n_text_layer == 4 => DtwModelPreset::LargeV3Turbo,
        (1280, false) if n_mels == 128 => DtwModelPreset::LargeV3,
        (1280, false) => DtwModelPreset::LargeV2,
        _ => return None,
    })
}

/// One buffer to decode: 16 kHz mono samples (not empty), how, and the flag that cancels it.
pub struct DecodeRequest<'a> {
    /// The samples.
    pub samples: &'a [f32],
    /// How to decode them.
    pub settings: &'a DecodeSettings,
    /// Set to stop the decode with [`Error::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
}

/// A speech-to-text engine: whisper.cpp ([`Engine`], ggml models) or CTranslate2
/// (`ct2::Ct2Engine`, the model's CTranslate2 files; [`load_engine`](crate::load::load_engine) picks one). The pipeline and live captions drive either
/// through this trait.
pub trait SpeechEngine: Send {
    /// Counts the engine's progress into `counter`: it grows at every decoding step of every decode from
    /// now on (several a second while the engine works, none when it is stuck), which a heartbeat can
    /// follow.
    fn set_activity(&mut self, counter: Arc<AtomicU64>);

    /// True for models that know more languages than English (`auto` only makes sense for those).
    fn is_multilingual(&self) -> bool;

    /// Checks settings against this model: an English-only model cannot detect or speak other languages.
    fn check(&self, settings: &DecodeSettings) -> Result<()> {
        check_settings(settings, self.is_multilingual())
    }

    /// Decodes a buffer that is not empty (see [`SpeechEngine::decode_cancellable`]).
    fn decode_samples(&mut self, request: DecodeRequest<'_>) -> Result<Decoded>;

    /// [`SpeechEngine::decode`], stopped early with [`Error::Cancelled`] once `cancel` is set.
    fn decode_cancellable(
        &mut self,
        samples: &[f32],
        settings: &DecodeSettings,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<Decoded> {
        if samples.is_empty() {
            return Ok(Decoded::default());
        }
        self.decode_samples(DecodeRequest {
            samples,
            settings,
            cancel,
        })
    }

    /// Decodes one buffer of 16 kHz mono samples.
    fn decode(&mut self, samples: &[f32], settings: &DecodeSettings) -> Result<Decoded> {
        self.decode_cancellable(samples, settings, None)
    }

    /// The work on `samples` that can be done before their decode, on this thread, for a later
    /// [`SpeechEngine::decode_prepared`] of the same samples with post-call settings on any engine of
    /// this model (CTranslate2: the mel features and the first 30 s window's encoder pass). `None` where
    /// the engine does it all inside its decode (whisper.cpp). The pipeline uses it to keep every engine
    /// busy: one encodes the next chunk while another decodes.
    fn prepare(&mut self, samples: &[f32]) -> Result<Option<Prepared>> {
        let _ = samples;
        Ok(None)
    }

    /// [`SpeechEngine::decode`], starting from what [`SpeechEngine::prepare`] made of the same `samples`
    /// (a `prepared` the engine does not recognise is ignored).
    fn decode_prepared(
        &mut self,
        samples: &[f32],
        settings: &DecodeSettings,
        prepared: Option<Prepared>,
    ) -> Result<Decoded> {
        let _ = prepared;
        self.decode(samples, settings)
    }

    /// Another engine on the same loaded model that decodes at the same time as this one, for another
    /// thread; `None` where the engine has no more room (CTranslate2 loads one replica per worker the
    /// job may run; whisper.cpp runs one decode per model and splits it over threads instead).
    fn parallel_worker(&self) -> Option<Box<dyn SpeechEngine>> {
        None
    }
}

/// What [`SpeechEngine::prepare`] made of a buffer, opaque to everything but the engine that reads it.
pub struct Prepared(pub Box<dyn std::any::Any + Send>);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared(..)")
    }
}

/// Checks settings against a model (`multilingual` or English-only): an English-only model cannot detect
/// or speak other languages.
pub fn check_settings(settings: &DecodeSettings, multilingual: bool) -> Result<()> {
    if settings.threads == 0 {
        return Err(Error::InvalidOption {
            name: "threads",
            reason: "must be at least 1".to_string(),
        });
    }
    if let Some(beam) = settings.beam_size {
        if !(1..=16).contains(&beam) {
            return Err(Error::InvalidOption {
                name: "beam_size",
                reason: format!("{beam} is outside 1..=16"),
            });
        }
    }
    match settings.language.as_deref() {
        None => {}
        Some(code) if whisper_rs::get_lang_id(code).is_none() => {
            return Err(Error::InvalidOption {
                name: "language",
                reason: format!("{code:?} is not a language whisper knows (use an ISO 639-1 code such as en, de, fr, or auto)"),
            })
        }
        Some(code) if !multilingual && code != "en" => {
            return Err(Error::InvalidOption {
                name: "language",
                reason: format!("this model is English-only and cannot transcribe {code:?}; use a multilingual model such as base"),
            })
        }
        Some(_) => {}
    }
    Ok(())
}

/// A loaded whisper model with its decoding state. Loading is the expensive part; keep one per thread.
pub struct Engine {
    // Field order matters: the state refers to the context and is dropped first.
    state: WhisperState,
    context: WhisperContext,
    multilingual: bool,
    activity: Option<Arc<AtomicU64>>,
    dtw: bool,
}

impl Engine {
    /// Loads a ggml whisper model. Errors name the file.
    pub fn load(model: &Path) -> Result<Self> {
        Self::load_with(model, LoadOptions::default())
    }

    /// [`Engine::load`] with options.
    pub fn load_with(model: &Path, options: LoadOptions) -> Result<Self> {
        whisper_rs::install_logging_hooks();
        if !model.is_file() {
            return Err(Error::invalid_model(model, "no such file"));
        }
        let mut parameters = WhisperContextParameters::default();
        parameters.use_gpu(false);
        parameters.flash_attn(options.flash_attn);
        let preset = (options.word_timestamps && !options.flash_attn)
            .then(|| alignment_heads(model))
            .flatten();
        let dtw = preset.is_some();
        if let Some(model_preset) = preset {
            parameters.dtw_parameters(DtwParameters {
                mode: DtwMode::ModelPreset { model_preset },
                ..DtwParameters::default()
            });
        }
        let context = WhisperContext::new_with_params(model, parameters).map_err(|error| {
            Error::invalid_model(model, format!("whisper cannot load it: {error}"))
        })?;
        let state = context.create_state()?;
        let multilingual = context.is_multilingual();
        Ok(Engine {
            state,
            context,
            multilingual,
            activity: None,
            dtw,
        })
    }
}

impl SpeechEngine for Engine {
    fn set_activity(&mut self, counter: Arc<AtomicU64>) {
        self.activity = Some(counter);
    }

    fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// Stops early with [`Error::Cancelled`] once `cancel` is set (whisper.cpp checks it at every decoding
    /// step, so within one token's time).
    fn decode_samples(&mut self, request: DecodeRequest<'_>) -> Result<Decoded> {
        let DecodeRequest {
            samples,
            settings,
            cancel,
        } = request;
        let mut params = self.full_params(samples.len(), settings);
        let callback = CallbackData {
            cancel: cancel.as_deref(),
            activity: self.activity.as_deref(),
        };
        if callback.cancel.is_some() || callback.activity.is_some() {
            set_callback(&mut params, &callback);
        }
        // `callback` lives on to the end of this function, past the call that may use it.
        let done = self.state.full(params, samples);
        if cancel.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
            return Err(Error::Cancelled);
        }
        done?;
        let segments = self.segments(samples)?;
        let language = if self.multilingual {
            whisper_rs::get_lang_str(self.state.full_lang_id_from_state()).map(str::to_string)
        } else {
            Some("en".to_string())
        };
        Ok(Decoded { segments, language })
    }
}

impl Engine {
    /// whisper.cpp's parameters for decoding `n_samples` samples as `settings` say.
    fn full_params<'a>(
        &self,
        n_samples: usize,
        settings: &'a DecodeSettings,
    ) -> FullParams<'a, 'a> {
        let strategy = match settings.beam_size {
            Some(beam) if beam > 1 => SamplingStrategy::BeamSearch {
                beam_size: beam as i32,
                patience: -1.0,
            },
            _ => SamplingStrategy::Greedy { best_of: 1 },
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(settings.threads as i32);
        let language = match (&settings.language, self.multilingual) {
            (_, false) => Some("en"),
            (Some(code), true) => Some(code.as_str()),
            (None, true) => None,
        };
        // `None` makes whisper.cpp detect the language ("auto").
        params.set_language(Some(language.unwrap_or("auto")));
        params.set_translate(false);
        params.set_no_context(settings.no_context);
        params.set_single_segment(settings.single_segment);
        if settings.short_window {
            params.set_audio_ctx(short_window_audio_ctx(n_samples));
            if !settings.retry_on_failure {
                params.set_temperature_inc(0.0);
            }
            params.set_max_tokens(short_window_max_tokens(n_samples));
        }
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        // Per-token times, so a segment spanning two packed regions can be cut between them. Live windows
        // are one segment whose text is all they need: no timestamp tokens to decode (about 15 % of a
        // window's CPU on tiny.en, the same WER).
        params.set_token_timestamps(!settings.short_window);
        params.set_no_timestamps(settings.short_window);
        // Non-speech tokens ("[Music]", "(applause)", "♪") are never what a participant said.
        params.set_suppress_nst(true);
        params.set_suppress_blank(true);
        if let Some(prompt) = &settings.initial_prompt {
            params.set_initial_prompt(prompt);
        }
        params
    }

    /// The segments of the last decode of `samples`, with their text tokens timed.
    fn segments(&self, samples: &[f32]) -> Result<Vec<RawSegment>> {
        let eot = self.context.token_eot();
        let mut segments = Vec::new();
        for segment in self.state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map_err(Error::from)?
                .trim()
                .to_string();
            let mut tokens = Vec::new();
            for index in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(index) else {
                    continue;
                };
                // Special tokens (timestamps, <|en|>, <|endoftext|>...) sit at or above end-of-text.
                if token.token_id() >= eot {
                    continue;
                }
                let data = token.token_data();
                // With alignment heads DTW gives the time where the next token takes over, i.e. this
                // token's end (the starts follow below); else whisper's timestamp-token estimates.
                let (start_ms, end_ms) = if self.dtw && data.t_dtw >= 0 {
                    (0, data.t_dtw as u64 * 10)
                } else {
                    let start = (data.t0.max(0) as u64) * 10;
                    (start, ((data.t1.max(0) as u64) * 10).max(start))
                };
                tokens.push(RawToken {
                    start_ms,
                    end_ms,
                    text: token
                        .to_str_lossy()
                        .map(|t| t.into_owned())
                        .unwrap_or_default(),
                    probability: token.token_probability(),
                });
            }
            let start_ms = (segment.start_timestamp().max(0) as u64) * 10;
            let end_ms = ((segment.end_timestamp().max(0) as u64) * 10).max(start_ms);
            if self.dtw {
                time_tokens_from_ends(&mut tokens, start_ms, end_ms, samples);
            }
            segments.push(RawSegment {
                start_ms,
                end_ms,
                text,
                avg_token_prob: mean_probability(&tokens),
                no_speech_prob: segment.no_speech_probability(),
                tokens,
            });
        }
        Ok(segments)
    }
}

/// The mean probability of `tokens` (0 for none).
pub fn mean_probability(tokens: &[RawToken]) -> f32 {
    if tokens.is_empty() {
        0.0
    } else {
        tokens.iter().map(|t| t.probability).sum::<f32>() / tokens.len() as f32
    }
}

/// Token times from DTW's token ends: each token starts where the one before it ends (the first where
/// the segment starts), then moves past any silence at its start to its first sound. DTW switches to the
/// next token where the earlier word's sound stops, so without the second step a word after a pause
/// would start the whole pause early (by 250 ms in the espeak-ng test). Times in ms from the buffer's
/// start; `samples` at 16 kHz.
pub fn time_tokens_from_ends(
    tokens: &mut [RawToken],
    segment_start_ms: u64,
    segment_end_ms: u64,
    samples: &[f32],
) {
    let frame = SAMPLE_RATE as usize / 100;
    let levels: Vec<f32> = samples
        .chunks(frame)
        .map(|f| (f.iter().map(|s| s * s).sum::<f32>() / f.len() as f32).sqrt())
        .collect();
    // A 10 ms frame is sound when it is within 20 dB of the buffer's loud speech (its 95th percentile).
    let mut sorted = levels.clone();
    sorted.sort_by(f32::total_cmp);
    let loud = sorted
        .get(sorted.len().saturating_sub(1) * 95 / 100)
        .copied()
        .unwrap_or(0.0);
    let threshold = (loud * 0.1).max(1e-4);
    let mut previous_end = segment_start_ms;
    for token in tokens.iter_mut() {
        let end = token
            .end_ms
            .clamp(previous_end, segment_end_ms.max(previous_end));
        let mut start = previous_end;
        let (first, last) = ((start / 10) as usize, (end / 10) as usize);
        if levels.get(first).is_some_and(|&level| level < threshold) {
            if let Some(offset) = levels
                .get(first..last.min(levels.len()))
                .and_then(|span| span.iter().position(|&level| level >= threshold))
            {
                start = (first + offset) as u64 * 10;
            }
        }
        token.start_ms = start;
        token.end_ms = end;
        previous_end = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(end_ms: u64, text: &str) -> RawToken {
        RawToken {
            start_ms: 0,
            end_ms,
            text: text.to_string(),
            probability: 0.9,
        }
    }

    #[test]
    fn dtw_token_ends_become_starts_that_skip_the_silence_before_a_word() {
        // 0.2 s silence, "one" 0.2..0.6 s, silence to 0.9 s, "two" 0.9..1.3 s, silence.
        let mut samples = vec![0.0f32; 16_000 * 3 / 2];
        for range in [3_200..9_600, 14_400..20_800] {
            for (n, sample) in samples[range].iter_mut().enumerate() {
                *sample = 0.3 * (n as f32 * 0.2).sin();
            }
        }
        // DTW switched to "two" where "one" fell silent (0.6 s); "two" runs to 1.4 s.
        let mut tokens = vec![token(600, " one"), token(1_400, " two"), token(1_400, ".")];
        time_tokens_from_ends(&mut tokens, 0, 1_500, &samples);
        let times: Vec<(u64, u64)> = tokens.iter().map(|t| (t.start_ms, t.end_ms)).collect();
        assert_eq!(times, vec![(200, 600), (900, 1_400), (1_400, 1_400)]);
    }

    #[test]
    fn short_windows_get_an_encoder_context_of_their_length_plus_a_margin() {
        // 1 s = 50 positions + 100 margin = 150, rounded up to 192; 8 s = 400 + 100 → 512; at most 1500.
        assert_eq!(short_window_audio_ctx(16_000), 128);
        assert_eq!(short_window_audio_ctx(8 * 16_000), 480);
        assert_eq!(short_window_audio_ctx(40 * 16_000), 1500);
    }
}
