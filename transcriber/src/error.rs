//! The transcriber's one error type. Messages are lowercase and name the input that was wrong, because
//! they end up verbatim in a job's `failed` status (or on the terminal of `calls-transcriber models`).

use std::path::PathBuf;

/// Convenience alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the speech part: models, VAD, whisper, transcript output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model name that is not in the cache (or the image). Lists what is there so the caller can fix it.
    #[error("unknown model {name:?}: available models are {}", list_or_none(.available))]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The models present in the model directory.
        available: Vec<String>,
    },
    /// A model name that the `models fetch` command does not know how to obtain.
    #[error("no source for model {name:?}: known models are {known}")]
    UnknownSource {
        /// The name asked for.
        name: String,
        /// The names the fetcher knows.
        known: String,
    },
    /// A model file (CTranslate2, ggml, safetensors) that is malformed or of an unsupported kind.
    #[error("invalid model file {path}: {reason}")]
    InvalidModel {
        /// The file that was read.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A downloaded file whose SHA-256 is not the one in the manifest.
    #[error("checksum mismatch for {file}: expected {expected}, got {actual}")]
    Checksum {
        /// The file (package or member) that was checked.
        file: String,
        /// The hash in the committed manifest.
        expected: String,
        /// The hash of what was downloaded.
        actual: String,
    },
    /// The package registry could not be reached or answered something unexpected.
    #[error("download: {0}")]
    Download(String),
    /// An option the caller passed is out of range (threads, beam size, language, quantisation).
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option as the user spells it.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// whisper.cpp failed (model load, VAD or inference).
    #[error("whisper: {0}")]
    Whisper(String),
    /// A decode was cancelled by its caller before it finished (a live partial making room for a final).
    #[error("whisper: the decode was cancelled")]
    Cancelled,
    /// An audio or video file that cannot be read as audio (`calls-transcriber transcribe`).
    #[error("audio file {path}: {reason}")]
    Audio {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// File system trouble, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::InvalidModel`] for `path`.
    pub fn invalid_model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidModel {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<whisper_rs::WhisperError> for Error {
    fn from(error: whisper_rs::WhisperError) -> Self {
        Error::Whisper(error.to_string())
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none (run `calls-transcriber models fetch <name>`)".to_string()
    } else {
        names.join(", ")
    }
}
