//! The recorder's one error type. Messages are lowercase and say which input was wrong and why, because
//! they end up verbatim in a job's `failed` status where an operator reads them.

/// Convenience alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while configuring or running the recorder's media core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A profile name or an override (width, height, fps, bitrate) was rejected.
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting {
        /// The setting as the user spells it (e.g. `WIDTH`, `PROFILE`).
        name: &'static str,
        /// Why it was rejected, including the accepted range.
        reason: String,
    },
    /// A video frame whose buffer does not match its declared size.
    #[error("invalid video frame: {0}")]
    InvalidFrame(String),
    /// More simultaneous speakers than the mixer accepts.
    #[error("too many speakers: the mixer accepts at most {limit}")]
    TooManySpeakers {
        /// The configured limit.
        limit: usize,
    },
    /// The encoder was used after `finish`, or a stream was fed out of order.
    #[error("encoder misuse: {0}")]
    EncoderState(&'static str),
    /// The media thread could not start, or died.
    #[error("media thread: {0}")]
    MediaThread(&'static str),
    /// The job shell failed: invalid settings, joining the call, or the offloader could not be reached or
    /// refused a request.
    #[error(transparent)]
    Job(#[from] calls_job::Error),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A call into FFmpeg failed.
    #[error("ffmpeg {context}: {source}")]
    Ffmpeg {
        /// What we were doing (e.g. `opening libx264`).
        context: &'static str,
        /// The error FFmpeg returned.
        #[source]
        source: ffmpeg_next::Error,
    },
    /// The H.264 or AAC encoder is missing from the FFmpeg build.
    #[error("encoder {0} is not available in this ffmpeg build")]
    EncoderMissing(&'static str),
}

impl Error {
    /// Wraps an FFmpeg error with what we were doing when it happened.
    pub(crate) fn ffmpeg(context: &'static str) -> impl FnOnce(ffmpeg_next::Error) -> Error {
        move |source| Error::Ffmpeg { context, source }
    }

    pub(crate) fn setting(name: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidSetting {
            name,
            reason: reason.into(),
        }
    }
}
