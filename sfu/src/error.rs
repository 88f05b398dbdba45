//! The one error type of the SFU library.

/// Errors of the SFU.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket could not be bound or an I/O operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The WebRTC stack refused an operation.
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// A TLS certificate or key file could not be loaded (the message names the file).
    #[error("{0}")]
    Tls(#[from] calls_tls::Error),
}

/// Result with the SFU error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
