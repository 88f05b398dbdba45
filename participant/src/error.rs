//! The one error type of the participant library.

/// Errors of the participant client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The signalling connection failed.
    #[error("signalling: {0}")]
    Signalling(String),
    /// The SFU refused a request (`error` message).
    #[error("sfu refused: {code:?}: {message}")]
    Refused {
        /// Error code from the SFU.
        code: calls_protocol::signalling::ErrorCode,
        /// Detail from the SFU.
        message: String,
    },
    /// The WebRTC stack failed.
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    /// Encoding or decoding media failed.
    #[error("media: {0}")]
    Media(String),
    /// Reading a WAV file failed.
    #[error("wav: {0}")]
    Wav(#[from] hound::Error),
    /// The participant has left or was disconnected.
    #[error("participant is disconnected")]
    Disconnected,
    /// An SFU URL that cannot be turned into a signalling URL.
    #[error("invalid sfu url: {0}")]
    InvalidUrl(String),
    /// A CA certificate to trust could not be read or used.
    #[error("tls: {0}")]
    Tls(String),
    /// Waiting for something took too long.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

impl From<opus::Error> for Error {
    fn from(err: opus::Error) -> Self {
        Error::Media(format!("opus: {err}"))
    }
}

impl From<ffmpeg_next::Error> for Error {
    fn from(err: ffmpeg_next::Error) -> Self {
        Error::Media(format!("ffmpeg: {err}"))
    }
}

impl From<calls_rtc::apply::StepError> for Error {
    fn from(err: calls_rtc::apply::StepError) -> Self {
        Error::WebRtc(err.error)
    }
}

/// Result with the participant error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
