//! The offloader's one error type. Every failure that can reach an HTTP client maps to a status
//! and one of the closed `error_codes`; store and Docker failures become `internal`/`unavailable`
//! with a message that never contains request secrets.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use calls_protocol::jobs::{error_codes, ErrorBody};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RangeNotSatisfiable(String),
    #[error("{0}")]
    QueueFull(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The job id (or other thing) was not found or belongs to another client.
    pub fn job_not_found() -> Error {
        Error::NotFound("job not found".into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest(_) | Error::Config(_) => {
                (StatusCode::BAD_REQUEST, error_codes::BAD_REQUEST)
            }
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, error_codes::UNAUTHORIZED),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, error_codes::FORBIDDEN),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, error_codes::NOT_FOUND),
            Error::Conflict(_) => (StatusCode::CONFLICT, error_codes::CONFLICT),
            Error::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                error_codes::PAYLOAD_TOO_LARGE,
            ),
            Error::RangeNotSatisfiable(_) => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                error_codes::RANGE_NOT_SATISFIABLE,
            ),
            Error::QueueFull(_) => (StatusCode::TOO_MANY_REQUESTS, error_codes::QUEUE_FULL),
            Error::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, error_codes::RATE_LIMITED),
            Error::Unavailable(_) | Error::Docker(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, error_codes::UNAVAILABLE)
            }
            Error::Store(_) | Error::Io(_) | Error::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, error_codes::INTERNAL)
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = ErrorBody {
            error: self.to_string(),
            code: code.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
