//! The HTTP surface of the SFU: the `/ws` signalling endpoint, `/version`, `/healthz`,
//! `/metrics`, the API-key protected `/calls` endpoints and the demo page (built in from
//! `sfu/static`, or read from `http.static_dir`).

use std::sync::Arc;

use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use calls_protocol::jobs::ErrorBody;
use calls_protocol::sfu_api::{error_codes, CallJson, JobStopBody};
use calls_protocol::signalling::ParticipantInfo;
use serde::Serialize;

use crate::state::Shared;

/// The demo page, built into the binary so that every way of running the SFU (the image, a
/// release binary copied anywhere, `cargo run`) serves it.
pub const DEMO_PAGE: &str = include_str!("../static/index.html");

/// Builds the router over the shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ws", get(websocket))
        .route("/version", get(version))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/calls", get(calls))
        .route("/calls/{id}/sessions", get(sessions))
        .route(
            "/calls/{id}/sessions/{session}/job_stop",
            axum::routing::post(job_stop),
        )
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            shared.config.limits.http_read_timeout,
        ))
        .with_state(shared)
}

/// `/`: the page from `http.static_dir` when one is configured (an override for people changing
/// the page without rebuilding), else the built-in one.
async fn index(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(dir) = &shared.config.static_dir {
        let path = dir.join("index.html");
        match tokio::fs::read_to_string(&path).await {
            Ok(page) => return page_response(page),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "http.static_dir page unreadable; serving the built-in page");
            }
        }
    }
    page_response(DEMO_PAGE.to_owned())
}

/// The page with the headers that keep other sites from framing it or injecting script into it
/// (issue 21, finding 12; `web_security.rs`).
fn page_response(page: String) -> Response {
    let policy = crate::web_security::content_security_policy(&page);
    (
        [
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_FRAME_OPTIONS, "DENY".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        Html(page),
    )
        .into_response()
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A browser page on another site may not open a session (issue 21, finding 12).
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let handshake = crate::web_security::Handshake {
        origin: text("origin"),
        host: text("host"),
        forwarded_host: text("x-forwarded-host").and_then(|hosts| hosts.split(',').next()),
    };
    if !crate::web_security::origin_allowed(
        &handshake,
        shared.config.public_origin.as_deref(),
        &shared.config.allowed_origins,
    ) {
        shared.metrics.record_error("ws_origin_refused");
        tracing::debug!(origin = ?handshake.origin, "websocket from a foreign origin refused");
        return ApiError::ForeignOrigin.into_response();
    }
    let max = shared.config.limits.max_message_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| crate::session::run(shared, socket))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Version {
    build_version: &'static str,
    build_hash: &'static str,
    build_date: &'static str,
}

async fn version() -> Json<Version> {
    Json(Version {
        build_version: env!("CARGO_PKG_VERSION"),
        build_hash: option_env!("CALLS_BUILD_HASH").unwrap_or("dev"),
        build_date: option_env!("CALLS_BUILD_DATE").unwrap_or("unknown"),
    })
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
        .into_response()
}

/// Every refusal of the SFU's HTTP routes: one status and `code` each, answered as the
/// protocol's `ErrorBody` (`{"error": …, "code": …}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// 403: a browser page on another origin opened `/ws`.
    ForeignOrigin,
    /// 404: no `http.api_key`, so the calls API is off.
    Disabled,
    /// 401: missing or wrong API key.
    Unauthorized,
    /// 404: no such call.
    NoSuchCall,
    /// 404: no such session in the call.
    NoSuchSession,
}

impl ApiError {
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::ForeignOrigin => (
                StatusCode::FORBIDDEN,
                error_codes::FORBIDDEN,
                "this origin may not open a session (see http.allowed_origins)",
            ),
            ApiError::Disabled => (
                StatusCode::NOT_FOUND,
                error_codes::DISABLED,
                "the calls API is disabled (no api key configured)",
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                error_codes::UNAUTHORIZED,
                "missing or wrong api key",
            ),
            ApiError::NoSuchCall => (
                StatusCode::NOT_FOUND,
                error_codes::NOT_FOUND,
                "no such call",
            ),
            ApiError::NoSuchSession => (
                StatusCode::NOT_FOUND,
                error_codes::NOT_FOUND,
                "no such session in this call",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body = ErrorBody {
            error: message.to_owned(),
            code: code.to_owned(),
        };
        (status, Json(body)).into_response()
    }
}

/// Checks `Authorization: Bearer <api key>` in constant time.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &shared.config.api_key else {
        return Err(ApiError::Disabled);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = key.as_bytes();
    let matches = presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if matches {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

async fn calls(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Vec<CallJson>>, ApiError> {
    authorize(&shared, &headers)?;
    let calls: Vec<CallJson> = shared
        .calls()
        .into_iter()
        .map(|call| CallJson {
            call_id: call.call_id,
            participants: call.participants,
            tracks: call.tracks,
        })
        .collect();
    Ok(Json(calls))
}

async fn sessions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(call_id): Path<String>,
) -> Result<Json<Vec<ParticipantInfo>>, ApiError> {
    authorize(&shared, &headers)?;
    shared
        .sessions_of(&call_id)
        .map(Json)
        .ok_or(ApiError::NoSuchCall)
}

/// Sends `job_stop` to a bot session of a call (used by the offloader to end a recording).
async fn job_stop(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((call_id, session_id)): Path<(String, String)>,
    body: Option<Json<JobStopBody>>,
) -> Result<StatusCode, ApiError> {
    authorize(&shared, &headers)?;
    let in_call = shared
        .sessions_of(&call_id)
        .is_some_and(|sessions| sessions.iter().any(|s| s.session_id == session_id));
    let reason = body
        .and_then(|Json(body)| body.reason)
        .unwrap_or_else(|| "stopped by the api".to_owned());
    if in_call && shared.stop_job(&session_id, &reason) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NoSuchSession)
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
