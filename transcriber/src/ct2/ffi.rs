//! The C interface of `ct2/shim.cpp` (CTranslate2's Whisper) and safe owners of its objects.
//!
//! The shim (`libcalls_ct2.so`, built by `build.rs`) links the `libctranslate2` that faster-whisper's
//! `ctranslate2` wheel ships (Intel MKL and oneDNN inside, int8 GEMM); this module loads it at run time from
//! [`lib_dir`], so the crate builds and runs without it; see docs/transcriber.md.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, CStr, CString};
use std::path::Path;

use crate::error::{Error, Result};

#[repr(C)]
struct RawModel {
    _private: [u8; 0],
}

#[repr(C)]
struct RawEncoded {
    _private: [u8; 0],
}

/// `ct2w_options` in the shim.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct GenerateOptions {
    /// 1: greedy (or sampling when `sampling_topk` is not 1); more: beam search.
    pub beam_size: usize,
    /// Beam search patience (1 = stop when `beam_size` hypotheses are finished).
    pub patience: f32,
    /// Exponent of the length in the score's normalisation.
    pub length_penalty: f32,
    /// Most tokens in the sequence, prompt included.
    pub max_length: usize,
    /// 1: always the most probable token; 0: sample from the whole distribution.
    pub sampling_topk: usize,
    /// Temperature of the sampling.
    pub sampling_temperature: f32,
    /// The first timestamp may be at most this many 20 ms steps into the window.
    pub max_initial_timestamp_index: usize,
    /// Non-zero: no blank or end-of-text as the first token.
    pub suppress_blank: c_int,
}

/// The shim's functions, resolved from `libcalls_ct2.so` once per process.
struct Api {
    load: unsafe extern "C" fn(
        *const c_char,
        *const c_char,
        usize,
        usize,
        *mut c_char,
        usize,
    ) -> *mut RawModel,
    free: unsafe extern "C" fn(*mut RawModel),
    is_multilingual: unsafe extern "C" fn(*const RawModel) -> c_int,
    n_mels: unsafe extern "C" fn(*const RawModel) -> usize,
    encode: unsafe extern "C" fn(
        *mut RawModel,
        *const f32,
        usize,
        usize,
        *mut c_char,
        usize,
    ) -> *mut RawEncoded,
    encoded_free: unsafe extern "C" fn(*mut RawEncoded),
    #[allow(clippy::type_complexity)]
    generate: unsafe extern "C" fn(
        *mut RawModel,
        *const RawEncoded,
        *const usize,
        usize,
        *const GenerateOptions,
        *mut usize,
        usize,
        *mut usize,
        *mut f32,
        *mut f32,
        *mut c_char,
        usize,
    ) -> c_int,
    detect_language: unsafe extern "C" fn(
        *mut RawModel,
        *const RawEncoded,
        *mut c_char,
        usize,
        *mut c_char,
        usize,
    ) -> c_int,
    #[allow(clippy::type_complexity)]
    align: unsafe extern "C" fn(
        *mut RawModel,
        *const RawEncoded,
        *const usize,
        usize,
        *const usize,
        usize,
        usize,
        usize,
        *mut c_long,
        usize,
        *mut usize,
        *mut f32,
        *mut c_char,
        usize,
    ) -> c_int,
    /// Keeps the library mapped while the function pointers above are in use (for the whole process).
    _library: libloading::Library,
}

/// Environment variable naming the directory of `libcalls_ct2.so` and `libctranslate2` (the image sets
/// it); by default the directory the build put them in.
pub const LIB_DIR_ENV: &str = "CALLS_CT2_LIB_DIR";

/// The directory the CTranslate2 libraries are loaded from.
pub fn lib_dir() -> std::path::PathBuf {
    std::env::var_os(LIB_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CALLS_CT2_BUILD_LIB_DIR").into())
}

impl Api {
    fn open() -> std::result::Result<Api, String> {
        let path = lib_dir().join("libcalls_ct2.so");
        // SAFETY: loading runs the library's initialisers: libcalls_ct2 (our shim) and libctranslate2
        // with its libgomp, which only set up their own state.
        let library = unsafe { libloading::Library::new(&path) }.map_err(|e| {
            format!(
                "the CTranslate2 engine is not available ({}: {e}); build with ct2/fetch.sh's files or set {LIB_DIR_ENV}",
                path.display()
            )
        })?;
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: the symbol is the shim's function of this name, whose C signature is the
                // field's type (see ct2/shim.cpp).
                *unsafe { library.get($name) }.map_err(|e| format!("{}: {e}", path.display()))?
            };
        }
        Ok(Api {
            load: symbol!(b"ct2w_load\0"),
            free: symbol!(b"ct2w_free\0"),
            is_multilingual: symbol!(b"ct2w_is_multilingual\0"),
            n_mels: symbol!(b"ct2w_n_mels\0"),
            encode: symbol!(b"ct2w_encode\0"),
            encoded_free: symbol!(b"ct2w_encoded_free\0"),
            generate: symbol!(b"ct2w_generate\0"),
            detect_language: symbol!(b"ct2w_detect_language\0"),
            align: symbol!(b"ct2w_align\0"),
            _library: library,
        })
    }

    /// The shim, loaded on first use.
    fn get() -> Result<&'static Api> {
        static API: std::sync::OnceLock<std::result::Result<Api, String>> =
            std::sync::OnceLock::new();
        API.get_or_init(Api::open)
            .as_ref()
            .map_err(|reason| Error::Whisper(reason.clone()))
    }
}

const ERROR_LEN: usize = 1024;

/// The message the shim wrote into `buffer`.
fn message(buffer: &[u8]) -> String {
    CStr::from_bytes_until_nul(buffer)
        .map(|m| m.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown CTranslate2 error".to_string())
}

/// `Ok` for the shim's status 0, else the error it wrote, after `what`.
fn succeeded(status: c_int, what: &str, error: &[u8]) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Error::Whisper(format!("{what}: {}", message(error))))
    }
}

/// A CTranslate2 Whisper model loaded on the CPU: one or more replicas sharing the weights.
pub struct Model {
    raw: *mut RawModel,
    api: &'static Api,
}

// SAFETY: CTranslate2's replica pool may be driven from any thread, and from several at once: each call
// posts a job to the pool's queue and waits for its own result (the shim keeps no state between calls).
unsafe impl Send for Model {}
// SAFETY: as above; no method mutates the Rust side of the model.
unsafe impl Sync for Model {}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `ct2w_load`, is not null, and is freed once, here.
        unsafe { (self.api.free)(self.raw) }
    }
}

/// An alignment: the dynamic-time-warping path as (text index, encoder position) pairs, and each text
/// token's probability.
pub type Alignment = (Vec<(usize, usize)>, Vec<f32>);

/// Generated tokens of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Token ids after the prompt.
    pub tokens: Vec<usize>,
    /// Log-probability of the sequence divided by its length.
    pub score: f32,
    /// Probability of `<|nospeech|>` at the first step.
    pub no_speech_prob: f32,
}

impl Model {
    /// Loads the CTranslate2 model directory `dir` with `compute_type` (`int8`, `float32`, ...) as
    /// `replicas` replicas of `threads` threads each (calls from `replicas` threads run in parallel).
    pub fn load(dir: &Path, compute_type: &str, threads: usize, replicas: usize) -> Result<Self> {
        let path = CString::new(dir.to_string_lossy().as_bytes())
            .map_err(|_| Error::invalid_model(dir, "the path contains a NUL byte"))?;
        let compute = CString::new(compute_type).map_err(|_| Error::InvalidOption {
            name: "compute_type",
            reason: "contains a NUL byte".to_string(),
        })?;
        let api = Api::get()?;
        let mut error = [0u8; ERROR_LEN];
        // SAFETY: both strings are NUL-terminated and outlive the call; `error` has `ERROR_LEN` bytes.
        let raw = unsafe {
            (api.load)(
                path.as_ptr(),
                compute.as_ptr(),
                threads.max(1),
                replicas.max(1),
                error.as_mut_ptr().cast(),
                ERROR_LEN,
            )
        };
        if raw.is_null() {
            return Err(Error::invalid_model(
                dir,
                format!("CTranslate2 cannot load it: {}", message(&error)),
            ));
        }
        Ok(Model { raw, api })
    }

    /// True for models that know more languages than English.
    pub fn is_multilingual(&self) -> bool {
        // SAFETY: `raw` is a live model.
        unsafe { (self.api.is_multilingual)(self.raw) != 0 }
    }

    /// Mel bands the model's encoder takes (80, or 128 for large-v3).
    pub fn n_mels(&self) -> usize {
        // SAFETY: `raw` is a live model.
        unsafe { (self.api.n_mels)(self.raw) }
    }

    /// Runs the encoder over `mel` (`n_mels` rows of `mel.len() / n_mels` frames).
    pub fn encode(&self, mel: &[f32], n_mels: usize) -> Result<Encoded> {
        let mut error = [0u8; ERROR_LEN];
        // SAFETY: `mel` holds `n_mels × frames` values; `raw` is live; `error` has `ERROR_LEN` bytes.
        let raw = unsafe {
            (self.api.encode)(
                self.raw,
                mel.as_ptr(),
                n_mels,
                mel.len() / n_mels.max(1),
                error.as_mut_ptr().cast(),
                ERROR_LEN,
            )
        };
        if raw.is_null() {
            return Err(Error::Whisper(format!(
                "CTranslate2 encoder: {}",
                message(&error)
            )));
        }
        Ok(Encoded { raw, api: self.api })
    }

    /// Decodes the window `encoded` from `prompt`.
    pub fn generate(
        &self,
        encoded: &Encoded,
        prompt: &[usize],
        options: &GenerateOptions,
    ) -> Result<Generated> {
        let mut tokens = vec![0usize; options.max_length.max(1)];
        let (mut n_tokens, mut score, mut no_speech_prob) = (0usize, 0f32, 0f32);
        let mut error = [0u8; ERROR_LEN];
        // SAFETY: every pointer is valid for the length passed with it for the whole call.
        let status = unsafe {
            (self.api.generate)(
                self.raw,
                encoded.raw,
                prompt.as_ptr(),
                prompt.len(),
                options,
                tokens.as_mut_ptr(),
                tokens.len(),
                &mut n_tokens,
                &mut score,
                &mut no_speech_prob,
                error.as_mut_ptr().cast(),
                ERROR_LEN,
            )
        };
        succeeded(status, "CTranslate2 generate", &error)?;
        tokens.truncate(n_tokens);
        Ok(Generated {
            tokens,
            score,
            no_speech_prob,
        })
    }

    /// The most probable language token of the window (`<|en|>`).
    pub fn detect_language(&self, encoded: &Encoded) -> Result<String> {
        let mut language = [0u8; 64];
        let mut error = [0u8; ERROR_LEN];
        // SAFETY: both buffers are valid for the lengths passed; `raw` and `encoded` are live.
        let status = unsafe {
            (self.api.detect_language)(
                self.raw,
                encoded.raw,
                language.as_mut_ptr().cast(),
                language.len(),
                error.as_mut_ptr().cast(),
                ERROR_LEN,
            )
        };
        succeeded(status, "CTranslate2 language detection", &error)?;
        Ok(message(&language))
    }

    /// Aligns `text` (token ids) to the audio of `encoded` after the prompt `start`, its first `frames` mel
    /// frames (10 ms each; CTranslate2 halves them into encoder positions) holding audio: the dynamic-time-warping path as (text index, encoder position) pairs, and each text
    /// token's probability.
    pub fn align(
        &self,
        encoded: &Encoded,
        start: &[usize],
        text: &[usize],
        frames: usize,
    ) -> Result<Alignment> {
        if text.is_empty() || frames == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        // The path moves one step in text or time (or both) at a time: at most their sum, plus the end.
        let capacity = text.len() + frames + 2;
        let mut path: Vec<c_long> = vec![0; capacity * 2];
        let mut path_len = 0usize;
        let mut probs = vec![0f32; text.len()];
        let mut error = [0u8; ERROR_LEN];
        // Faster-whisper's median filter width over the attention weights.
        const MEDIAN_FILTER_WIDTH: usize = 7;
        // SAFETY: every pointer is valid for the length passed with it (`path` holds 2 × `capacity`).
        let status = unsafe {
            (self.api.align)(
                self.raw,
                encoded.raw,
                start.as_ptr(),
                start.len(),
                text.as_ptr(),
                text.len(),
                frames,
                MEDIAN_FILTER_WIDTH,
                path.as_mut_ptr(),
                capacity,
                &mut path_len,
                probs.as_mut_ptr(),
                error.as_mut_ptr().cast(),
                ERROR_LEN,
            )
        };
        succeeded(status, "CTranslate2 align", &error)?;
        let pairs = path[..path_len * 2]
            .chunks_exact(2)
            .map(|pair| (pair[0].max(0) as usize, pair[1].max(0) as usize))
            .collect();
        Ok((pairs, probs))
    }
}

/// The encoder's output for one window, kept for decoding and aligning it.
pub struct Encoded {
    raw: *mut RawEncoded,
    api: &'static Api,
}

// SAFETY: an encoder output lives in CPU memory (`to_cpu`), owned by this handle alone; CTranslate2 only
// reads it, from whichever thread a later call on it runs.
unsafe impl Send for Encoded {}

impl Drop for Encoded {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `ct2w_encode`, is not null, and is freed once, here.
        unsafe { (self.api.encoded_free)(self.raw) }
    }
}
