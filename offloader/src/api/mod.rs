//! The HTTP API: [`router`] assembles every route (see docs/offloader.md), the JSON body
//! extractor with our own rejections (400 malformed, 413 too large, both `{error, code}`), the
//! request metrics middleware and the service routes (`/version`, `/healthz`, `/metrics`,
//! `/openapi.json`).

mod clients;
mod job_side;
pub mod jobs;
mod output;

pub use crate::auth::registration::validate_registration;
pub use job_side::{validate_status_update, MAX_COUNTERS};

use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use calls_protocol::jobs::VersionInfo;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::AppState;

/// The whole API. Pure: no socket, so tests drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/register", post(clients::register))
        .route("/unregister", post(clients::unregister))
        .route("/login", post(clients::login))
        .route(
            "/webhook",
            put(clients::set_webhook).delete(clients::delete_webhook),
        )
        .route("/jobs", post(jobs::create).get(jobs::list))
        .route("/jobs/init", post(jobs::init))
        .route("/jobs/{id}", get(jobs::get_one).delete(jobs::delete))
        .route("/jobs/{id}/stop", post(jobs::stop))
        .route("/jobs/{id}/status", post(job_side::status))
        .route("/jobs/{id}/logs", get(output::logs))
        .route("/jobs/{id}/artifacts", get(output::list_artifacts))
        .route(
            "/jobs/{id}/artifacts/{name}",
            get(output::download_artifact).put(job_side::upload_artifact),
        )
        .fallback(not_found)
        // JSON routes enforce api.max_json_body_bytes in ApiBytes; uploads stream with their own
        // limit. axum's default 2 MB limit is off so it cannot cut an upload short.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// A JSON body parsed into a protocol type, rejected in our error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self> {
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Bytes read and thrown away after a body went over the limit, so that the client finishes
/// sending and reads our 413 instead of a connection reset. Beyond this, the connection drops.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// A raw body under the JSON routes' limit (`api.max_json_body_bytes`), rejected in our error
/// shape.
pub struct ApiBytes(pub Bytes);

impl FromRequest<AppState> for ApiBytes {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self> {
        let limit = state.config.api.max_json_body_bytes;
        let timeout = state.config.api.body_read_timeout;
        let mut stream = req.into_body().into_data_stream();
        let mut body = Vec::new();
        let mut seen = 0usize;
        let read = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    Error::BadRequest(format!("could not read the request body: {e}"))
                })?;
                seen += chunk.len();
                if seen <= limit {
                    body.extend_from_slice(&chunk);
                } else if seen > DRAIN_LIMIT {
                    break;
                }
            }
            Ok::<(), Error>(())
        };
        tokio::time::timeout(timeout, read).await.map_err(|_| {
            Error::BadRequest(format!(
                "the request body did not arrive within {}s (api.body_read_timeout)",
                timeout.as_secs_f64()
            ))
        })??;
        if seen > limit {
            return Err(Error::PayloadTooLarge(format!(
                "request body is over the {limit} byte JSON limit (api.max_json_body_bytes)"
            )));
        }
        Ok(ApiBytes(Bytes::from(body)))
    }
}

/// Parses a JSON body; the serde message names the field and position at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(request.method());
    let response = next.run(request).await;
    state
        .metrics
        .api_requests
        .with_label_values(&[method, &route, response.status().as_str()])
        .inc();
    response
}

/// The `method` label: the standard methods by name, anything else `other`, so a client cannot
/// create label values (and memory in every scraper) with made-up methods.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

async fn not_found() -> Error {
    Error::NotFound("no such route (see GET /openapi.json)".into())
}

/// Our name and version, and Mattermost's fields: `buildVersion` is the calls-offloader API
/// release we speak (its Calls plugin checks it against `min_offloader_version`); hash and date
/// come from the build environment when a build sets them (`CALLS_BUILD_HASH`, `CALLS_BUILD_DATE`).
async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        name: env!("CARGO_PKG_NAME").to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        build_version: calls_protocol::jobs::MATTERMOST_API_VERSION.to_string(),
        build_hash: option_env!("CALLS_BUILD_HASH")
            .unwrap_or_default()
            .to_string(),
        build_date: option_env!("CALLS_BUILD_DATE")
            .unwrap_or_default()
            .to_string(),
        go_version: String::new(),
    })
}

async fn healthz(State(state): State<AppState>) -> Result<Response> {
    state.store.counts()?;
    if let Some(backend) = &state.backend {
        backend
            .ping()
            .await
            .map_err(|e| Error::Unavailable(format!("docker unreachable: {e}")))?;
    }
    Ok(Json(serde_json::json!({ "status": "ok" })).into_response())
}

async fn metrics(State(state): State<AppState>) -> Result<Response> {
    let text = state.metrics.render(&state.store)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

#[cfg(test)]
mod job_side_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
