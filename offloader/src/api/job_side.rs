//! Routes a running job calls with its own `JOB_TOKEN` (bearer): `POST /jobs/{id}/status` and
//! `PUT /jobs/{id}/artifacts/{name}` (streamed, size-limited, SHA-256 recorded). A token only
//! works for its job and only while the job is active.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use calls_protocol::job_metrics::{self, SeriesKind};
use calls_protocol::jobs::{ArtifactInfo, JobStatusKind, JobStatusUpdate};

use super::ApiJson;
use crate::auth::{self, Credentials};
use crate::error::{Error, Result};
use crate::quota::ArtifactLimits;
use crate::store::JobRecord;
use crate::{files, now_ms, AppState};

pub const MAX_COUNTERS: usize = 32;
const MAX_TEXT_CHARS: usize = 2000;

/// The job a job token belongs to. Wrong or missing token → 401; a token cannot tell whether
/// another job id exists.
fn authenticate_job(state: &AppState, headers: &HeaderMap, id: &str) -> Result<JobRecord> {
    let unauthorized =
        || Error::Unauthorized("missing or invalid job token (JOB_TOKEN as bearer)".into());
    let token = match auth::parse_authorization(
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    ) {
        Some(Credentials::Bearer(token)) => token,
        _ => return Err(unauthorized()),
    };
    let job = state.store.job(id)?.ok_or_else(unauthorized)?;
    let expected = job.job_token_hash.as_bytes();
    if expected.is_empty() || !auth::constant_time_eq(expected, auth::token_hash(&token).as_bytes())
    {
        return Err(unauthorized());
    }
    if job.state.is_final() {
        return Err(Error::Conflict(format!(
            "job already finished ({})",
            job.state
        )));
    }
    Ok(job)
}

fn valid_counter_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn clip(text: Option<String>) -> Option<String> {
    text.map(|t| t.chars().take(MAX_TEXT_CHARS).collect())
}

/// The rules of one status report by itself: at most [`MAX_COUNTERS`] counters, names from
/// `calls_protocol::job_metrics::JOB_COUNTERS`, values finite and ≥ 0; histograms only of the known job series, with one
/// count per bucket of the series and a finite sum ≥ 0.
pub fn validate_status_update(update: &JobStatusUpdate) -> Result<()> {
    for (name, report) in &update.histograms {
        let Some(SeriesKind::Histogram(bounds)) = job_metrics::series(name).map(|s| s.kind) else {
            return Err(Error::BadRequest(format!(
                "histogram {name:?} is not a job series the offloader knows (see docs/offloader.md)"
            )));
        };
        if report.counts.len() != bounds.len() + 1 {
            return Err(Error::BadRequest(format!(
                "histogram {name:?} needs {} bucket counts (its bounds and one above them)",
                bounds.len() + 1
            )));
        }
        if !report.sum.is_finite() || report.sum < 0.0 {
            return Err(Error::BadRequest(format!(
                "histogram {name:?} must have a finite sum ≥ 0"
            )));
        }
    }
    if update.counters.len() > MAX_COUNTERS {
        return Err(Error::BadRequest(format!(
            "at most {MAX_COUNTERS} counters per update"
        )));
    }
    for (name, value) in &update.counters {
        if !valid_counter_name(name) {
            return Err(Error::BadRequest(format!(
                "counter name {name:?} must match [A-Za-z_][A-Za-z0-9_]{{0,63}}"
            )));
        }
        // A fixed list: every name becomes a series exported for good, so a job token must not
        // be able to invent them.
        if !job_metrics::is_job_counter(name) {
            return Err(Error::BadRequest(format!(
                "counter {name:?} is not a job counter the offloader knows (see docs/offloader.md)"
            )));
        }
        if !value.is_finite() || *value < 0.0 {
            return Err(Error::BadRequest(format!(
                "counter {name:?} must be a finite number ≥ 0"
            )));
        }
    }
    Ok(())
}

pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(update): ApiJson<JobStatusUpdate>,
) -> Result<StatusCode> {
    let job = authenticate_job(&state, &headers, &id)?;
    validate_status_update(&update)?;
    let mut counters = job.counters.clone();
    let known = update
        .counters
        .keys()
        .filter(|k| counters.contains_key(*k))
        .count();
    if counters.len() + update.counters.len() - known > MAX_COUNTERS * 4 {
        return Err(Error::BadRequest(
            "too many distinct counters for this job".into(),
        ));
    }
    for (name, value) in &update.counters {
        // Counters are absolute per job; the exported counter grows by the increase.
        let previous = counters.insert(name.clone(), *value).unwrap_or(0.0);
        state
            .metrics
            .job_counter_reported(job.job_type, name, (value - previous).max(0.0));
    }
    if counters.len() > MAX_COUNTERS * 4 {
        return Err(Error::BadRequest(
            "too many distinct counters for this job".into(),
        ));
    }
    state
        .metrics
        .job_histograms
        .record(&id, job.job_type, &update.histograms);
    let error = match update.status {
        JobStatusKind::Failed => Some(
            clip(update.error)
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| "the job reported a failure without details".into()),
        ),
        _ => clip(update.error),
    };
    let progress = match update.status {
        JobStatusKind::Started => Some(clip(update.message).unwrap_or_else(|| "started".into())),
        JobStatusKind::Finished => Some(clip(update.message).unwrap_or_else(|| "finished".into())),
        _ => clip(update.message),
    };
    state.store.record_status(
        &id,
        progress.as_deref(),
        error.as_deref(),
        &counters,
        update.status == JobStatusKind::Finished,
    )?;
    tracing::info!(job_id = id, status = ?update.status, "job reported status");
    Ok(StatusCode::NO_CONTENT)
}

/// The upload stream, failing when no chunk arrives for `idle` (a stalled upload must not hold
/// its connection and temporary file forever).
fn idle_timeout<S>(
    stream: S,
    idle: std::time::Duration,
) -> impl futures::Stream<Item = Result<bytes::Bytes, String>> + Unpin
where
    S: futures::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin + Send + 'static,
{
    Box::pin(futures::stream::unfold(
        stream,
        move |mut stream| async move {
            use futures::StreamExt;
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), stream)),
                Ok(Some(Err(e))) => Some((Err(e.to_string()), stream)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(format!(
                        "no data for {}s (api.body_read_timeout)",
                        idle.as_secs_f64()
                    )),
                    stream,
                )),
            }
        },
    ))
}

pub async fn upload_artifact(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ArtifactInfo>)> {
    authenticate_job(&state, &headers, &id)?;
    files::validate_artifact_name(&name)?;
    // Quotas per job: the count and the total size of its other artifacts (an upload under
    // an existing name replaces it), reserved together with the uploads in flight before a
    // byte is written (see `quota`).
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let reservation = state.uploads.reserve(
        &id,
        &name,
        || state.store.artifacts(&id),
        declared,
        ArtifactLimits {
            max_count: state.config.jobs.max_artifacts_per_job,
            max_total_bytes: state.config.jobs.max_job_artifact_bytes,
            max_one_bytes: state.config.jobs.max_artifact_bytes,
        },
    )?;
    let limit = reservation.limit;
    let (size, sha256) = files::store_artifact(
        &state.config.data_dir,
        &id,
        &name,
        idle_timeout(body.into_data_stream(), state.config.api.body_read_timeout),
        limit,
    )
    .await?;
    let info = ArtifactInfo {
        name,
        size,
        sha256,
        created_at: now_ms(),
    };
    state.store.upsert_artifact(&id, &info)?;
    // Only now, with the record stored, may the next upload's check count it instead.
    drop(reservation);
    tracing::info!(job_id = id, artifact = info.name, size, "artifact stored");
    Ok((StatusCode::CREATED, Json(info)))
}
