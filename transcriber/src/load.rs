//! Which engine runs a model: the one place that knows both (`engine.rs` is whisper.cpp's and the
//! trait, `ct2/` is CTranslate2's; each only knows the trait).

use std::path::Path;

use crate::ct2::Ct2Engine;
use crate::engine::{Engine, LoadOptions, SpeechEngine};
use crate::error::Result;

/// Loads the model at `path` with the engine its files are for: a directory of CTranslate2 files
/// (`model.bin`, `config.json`, `vocabulary.txt`) with CTranslate2 as `threads` single-threaded replicas
/// (one decode per thread, see [`SpeechEngine::parallel_worker`]: a second thread inside one decode of a
/// short utterance mostly waits, two decodes side by side do not), a ggml file with whisper.cpp
/// (`options` apply to it; it takes its thread count per decode).
pub fn load_engine(
    path: &Path,
    options: LoadOptions,
    threads: u32,
) -> Result<Box<dyn SpeechEngine>> {
    if path.is_dir() {
        Ok(Box::new(Ct2Engine::load(path, threads)?))
    } else {
        Ok(Box::new(Engine::load_with(path, options)?))
    }
}
