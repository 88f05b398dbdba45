//! The job shell's one error type. Messages are lowercase and end up verbatim in a job's `failed` status.

/// Convenience alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the shell around a job's own work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job's environment is incomplete or wrong; every problem is listed, separated by `; `.
    #[error("invalid job settings: {0}")]
    InvalidJob(String),
    /// Joining or talking to the call failed.
    #[error("call: {0}")]
    Call(String),
    /// The offloader could not be reached or refused a request.
    #[error("offloader: {0}")]
    Offloader(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
