//! The SFU's HTTP API (`GET /calls`, `GET /calls/{id}/sessions`, `POST
//! /calls/{id}/sessions/{session}/job_stop`), called with `Authorization: Bearer <http.api_key>`.
//! A session list is a JSON array of [`crate::signalling::ParticipantInfo`]; every error is a
//! [`crate::jobs::ErrorBody`] with one of [`error_codes`]. See docs/protocol.md.

use serde::{Deserialize, Serialize};

/// One entry of `GET /calls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallJson {
    pub call_id: String,
    /// Sessions in the call.
    pub participants: usize,
    /// Tracks published in the call.
    pub tracks: usize,
}

/// The optional body of `POST /calls/{id}/sessions/{session}/job_stop`: why the bot is asked to
/// stop (the SFU passes it on in the `job_stop` message; a default when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStopBody {
    #[serde(default)]
    pub reason: Option<String>,
}

/// The `code` of the SFU's error answers.
pub mod error_codes {
    pub use crate::jobs::error_codes::{FORBIDDEN, NOT_FOUND, UNAUTHORIZED};
    /// 404: the calls API is off (no `http.api_key` configured).
    pub const DISABLED: &str = "disabled";
}
