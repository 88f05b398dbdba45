//! The HTTP API: [`router`] assembles every route (see docs/offloader.md), the JSON body
//! extractor with our own rejections (400 malformed, 413 too large, both `{error, code}`), the
//! request metrics middleware and the service routes (`/version`, `/healthz`, `/metrics`,
//! `/openapi.json`).

mod clients;
mod job_side;
mod jobs;
mod output;

use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use calls_protocol::jobs::VersionInfo;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::AppState;

/// The whole API. Pure: no socket, so tests drive it with `oneshot`.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_json_body_bytes;
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
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// A JSON body parsed into a protocol type, rejected in our error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A raw body under the JSON routes' limit, rejected in our error shape.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::PayloadTooLarge(
                        "request body is over the JSON limit (api.max_json_body_bytes)".into(),
                    )
                } else {
                    Error::BadRequest(format!("could not read the request body: {rejection}"))
                }
            })
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
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    state
        .metrics
        .api_requests
        .with_label_values(&[&method, &route, response.status().as_str()])
        .inc();
    response
}

async fn not_found() -> Error {
    Error::NotFound("no such route (see GET /openapi.json)".into())
}

async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        name: env!("CARGO_PKG_NAME").to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

async fn healthz(State(state): State<AppState>) -> Result<Response> {
    state.store.counts()?;
    if let Some(docker) = &state.docker {
        docker
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
mod tests;
