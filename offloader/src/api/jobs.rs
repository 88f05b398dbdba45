//! Job routes of clients: create, list, get, stop, delete, and the image check `POST /jobs/init`.
//! Every lookup goes through `Store::client_job` with the caller's registration uid, so another
//! client's job (or that of an earlier registration of the same client id) is a 404.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use calls_protocol::job_env;
use calls_protocol::jobs::{
    CreateJobRequest, ImageStatus, InitRequest, Job, JobList, JobState, JobType,
};

use super::{parse_json, ApiBytes, ApiJson};
use crate::auth::ClientAuth;
use crate::error::{Error, Result};
use crate::store::{JobRecord, StopReason};
use crate::view::public_job;
use crate::{files, image_ref, now_ms, AppState};

pub const MAX_INPUT_KEYS: usize = 64;
/// Jobs per `GET /jobs` page unless `?limit=` says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest `?limit=`.
pub const MAX_PAGE_SIZE: usize = 500;

/// Checks a job request against the configuration and builds its queued record.
pub fn validate_request(
    state: &AppState,
    client_id: &str,
    owner: &str,
    request: CreateJobRequest,
) -> Result<JobRecord> {
    let job_type = request.job_type;
    let runner = runner_image(state, job_type, request.runner)?;
    let limit = state.config.runner(job_type).max_duration.as_secs().max(1);
    let max_duration_sec = request.max_duration_sec.unwrap_or(limit);
    if max_duration_sec == 0 || max_duration_sec > limit {
        return Err(Error::BadRequest(format!(
            "max_duration_sec must be between 1 and {limit} for {job_type} jobs"
        )));
    }
    check_inputs(state, job_type, &runner, &request.input_data)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    Ok(JobRecord {
        max_duration_sec,
        input_data: request.input_data.into(),
        ..JobRecord::queued(&id, client_id, owner, job_type, &runner)
    })
}

/// The image a job runs: the one it names when allowed for its type, else its type's image.
fn runner_image(state: &AppState, job_type: JobType, requested: Option<String>) -> Result<String> {
    // Mattermost's client always sends `runner`, empty when it has none in mind.
    match requested.filter(|image| !image.is_empty()) {
        Some(image) if !image_ref::is_valid_reference(&image) => Err(Error::BadRequest(format!(
            "runner {image:?} is not a Docker image reference (name[:tag][@digest])"
        ))),
        Some(image) if !state.config.image_allowed_for(job_type, &image) => {
            Err(Error::BadRequest(format!(
                "runner {image:?} is not allowed for {job_type} jobs (runners.{job_type}.image, .image_allowlist or .foreign_runners, or jobs.image_allowlist)"
            )))
        }
        Some(image) => Ok(image),
        None => Ok(state.config.runner(job_type).image.clone()),
    }
}

/// `input_data`: bounded in size and keys, each key an environment name the job's runner reads
/// (`Config::input_key_allowed`: the protocol's list for our jobs), none reserved or null.
fn check_inputs(
    state: &AppState,
    job_type: JobType,
    runner: &str,
    input_data: &BTreeMap<String, serde_json::Value>,
) -> Result<()> {
    // Stored whole and returned by every GET /jobs: bounded, so that one client cannot make
    // the store, the listing and every other client's answers slow and large.
    let input_bytes = serde_json::to_vec(input_data)
        .map_err(|e| Error::BadRequest(format!("input_data: {e}")))?
        .len();
    if input_bytes > state.config.jobs.max_input_bytes {
        return Err(Error::PayloadTooLarge(format!(
            "input_data is {input_bytes} bytes as JSON, over the {} byte limit (jobs.max_input_bytes)",
            state.config.jobs.max_input_bytes
        )));
    }
    if input_data.len() > MAX_INPUT_KEYS {
        return Err(Error::BadRequest(format!(
            "input_data has more than {MAX_INPUT_KEYS} keys"
        )));
    }
    // Keys become upper-cased environment names: two keys differing only in case would be one
    // variable twice, with the container seeing whichever Docker applies last.
    let mut upper = std::collections::BTreeSet::new();
    for key in input_data.keys() {
        if !upper.insert(key.to_ascii_uppercase()) {
            return Err(Error::BadRequest(format!(
                "input_data key {key:?} differs from another key only in case (keys become upper-case environment names)"
            )));
        }
    }
    for (key, value) in input_data {
        check_input_key(state, job_type, runner, key)?;
        if value.is_null() {
            return Err(Error::BadRequest(format!("input_data key {key:?} is null")));
        }
    }
    Ok(())
}

/// One `input_data` key: an environment name, not one the offloader sets, read by the runner.
fn check_input_key(state: &AppState, job_type: JobType, runner: &str, key: &str) -> Result<()> {
    let env_safe = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.len() <= 128
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !env_safe {
        return Err(Error::BadRequest(format!(
            "input_data key {key:?} must be a valid environment name ([A-Za-z_][A-Za-z0-9_]*)"
        )));
    }
    if job_env::RESERVED.contains(&job_env::env_name(key).as_str()) {
        return Err(Error::BadRequest(format!(
            "input_data key {key:?} is reserved (the offloader sets it)"
        )));
    }
    if !state.config.input_key_allowed(job_type, runner, key) {
        return Err(unknown_input(state, job_type, runner, key));
    }
    Ok(())
}

/// The 400 for an input key the job's runner does not read, naming the keys it does.
fn unknown_input(state: &AppState, job_type: JobType, runner: &str, key: &str) -> Error {
    let accepted = if state.config.is_foreign_runner(job_type, runner) {
        let keys = &state.config.runner(job_type).foreign_input_keys;
        format!(
            "runners.{job_type}.foreign_input_keys for {runner:?}: {}",
            keys.join(", ")
        )
    } else {
        let names: Vec<String> = job_env::input_names(job_type)
            .map(str::to_ascii_lowercase)
            .collect();
        format!("{job_type} jobs read {}", names.join(", "))
    };
    Error::BadRequest(format!(
        "input_data key {key:?} is not an input of this job (accepted: {accepted})"
    ))
}

pub async fn create(
    State(state): State<AppState>,
    ClientAuth { client_id, owner }: ClientAuth,
    ApiJson(request): ApiJson<CreateJobRequest>,
) -> Result<Response> {
    let record = validate_request(&state, &client_id, &owner, request)?;
    state.store.insert_job(
        &record,
        state.config.jobs.max_concurrent,
        state.config.jobs.max_queue_length,
        state.config.jobs.max_queue_per_client,
        state.config.jobs.max_jobs_per_client,
    )?;
    tracing::info!(job_id = record.id, job_type = %record.job_type, client_id, "job queued");
    state.job_changed(&record.id);
    state.runner.wake();
    let job = state
        .store
        .job(&record.id)?
        .ok_or_else(|| Error::Internal("job vanished right after insert".into()))?;
    // 200, not 201: Mattermost's client takes only 200 as success (docs/mattermost.md).
    Ok((StatusCode::OK, Json(public_job(&job))).into_response())
}

/// What `GET /jobs` was asked for: `state`, `limit` and `cursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub state: Option<JobState>,
    /// Jobs per page, 1 to [`MAX_PAGE_SIZE`].
    pub limit: usize,
    /// Jobs after the one with this sequence number (0: from the first).
    pub after: i64,
}

/// Parses the query string of `GET /jobs`; unknown or malformed parameters are a 400.
pub fn parse_list_query(query: Option<&str>) -> Result<ListQuery> {
    let mut parsed = ListQuery {
        state: None,
        limit: DEFAULT_PAGE_SIZE,
        after: 0,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("state", value)) => {
                parsed.state = Some(JobState::parse(value).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "unknown state {value:?}: use queued, starting, running, stopping, succeeded, failed or cancelled"
                    ))
                })?)
            }
            Some(("limit", value)) => {
                parsed.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| {
                        Error::BadRequest(format!(
                            "limit {value:?} must be a number from 1 to {MAX_PAGE_SIZE}"
                        ))
                    })?
            }
            Some(("cursor", value)) => {
                parsed.after = value.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "cursor {value:?} is not one this API returned (next_cursor)"
                    ))
                })?
            }
            _ => return Err(Error::BadRequest(format!("unknown query parameter {pair:?}"))),
        }
    }
    Ok(parsed)
}

/// One page of the caller's jobs, oldest first; `next_cursor` when more follow.
pub async fn list(
    State(state): State<AppState>,
    client: ClientAuth,
    RawQuery(query): RawQuery,
) -> Result<Json<JobList>> {
    let query = parse_list_query(query.as_deref())?;
    let (jobs, more) =
        state
            .store
            .client_jobs_page(&client.owner, query.state, query.after, query.limit)?;
    Ok(Json(JobList {
        next_cursor: more
            .then(|| jobs.last().map(|job| job.seq.to_string()))
            .flatten(),
        jobs: jobs.iter().map(public_job).collect(),
    }))
}

pub async fn get_one(
    State(state): State<AppState>,
    client: ClientAuth,
    Path(id): Path<String>,
) -> Result<Json<Job>> {
    Ok(Json(public_job(
        &state.store.client_job(&id, &client.owner)?,
    )))
}

/// Queued jobs are cancelled at once; started ones get SIGTERM, the grace period, then SIGKILL.
pub async fn stop(
    State(state): State<AppState>,
    client: ClientAuth,
    Path(id): Path<String>,
) -> Result<Json<Job>> {
    let job = state.store.client_job(&id, &client.owner)?;
    match job.state {
        JobState::Queued => {
            if state
                .store
                .finish(&id, JobState::Cancelled, None, None, now_ms())?
            {
                state.job_changed(&id);
            }
        }
        JobState::Starting | JobState::Running => {
            if state.store.mark_stopping(&id, StopReason::User)? {
                tracing::info!(job_id = id, "stop requested");
                state.job_changed(&id);
            }
            state.runner.request_stop(&id);
        }
        JobState::Stopping => state.runner.request_stop(&id),
        finished => {
            return Err(Error::Conflict(format!(
                "job already finished ({finished})"
            )));
        }
    }
    Ok(Json(public_job(
        &state.store.client_job(&id, &client.owner)?,
    )))
}

/// Deletes a finished job: its container (if kept), logs, artifacts and record.
pub async fn delete(
    State(state): State<AppState>,
    client: ClientAuth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let job = state.store.client_job(&id, &client.owner)?;
    if !job.state.is_final() {
        return Err(Error::Conflict(format!(
            "job is {}: stop it first (POST /jobs/{id}/stop)",
            job.state
        )));
    }
    if let Some(backend) = &state.backend {
        backend.remove(&job.container_name()).await?;
    }
    files::remove_job_files(&state.config.data_dir, &id).await?;
    state.store.delete_job(&id)?;
    tracing::info!(job_id = id, "job deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Reports which images (the given ones, or every configured one) exist on the engine, or in
/// swarm mode on each node that may run jobs (`present` then means: on every one of them).
/// Nothing is pulled: images are built or loaded by the operator (scripts/load-images.sh).
pub async fn init(
    State(state): State<AppState>,
    _client: ClientAuth,
    ApiBytes(body): ApiBytes,
) -> Result<Json<calls_protocol::jobs::InitResponse>> {
    let request: InitRequest = if body.is_empty() {
        InitRequest::default()
    } else {
        parse_json(&body)?
    };
    if request.runners.len() > MAX_INPUT_KEYS {
        return Err(Error::BadRequest(format!(
            "at most {MAX_INPUT_KEYS} runners per request"
        )));
    }
    let images = if request.runners.is_empty() {
        state.config.all_images()
    } else {
        request.runners
    };
    let backend = state
        .backend
        .as_ref()
        .ok_or_else(|| Error::Unavailable("docker is not connected".into()))?;
    // Checked before any reaches Docker, whose API takes the name as part of a URL path.
    for image in &images {
        if !image_ref::is_valid_reference(image) {
            return Err(Error::BadRequest(format!(
                "runner {image:?} is not a Docker image reference (name[:tag][@digest])"
            )));
        }
        if !state.config.image_allowed(image) {
            return Err(Error::BadRequest(format!(
                "runner {image:?} is neither a configured runner image nor on the image allowlist"
            )));
        }
    }
    let nodes = backend.images(&images).await?;
    let out = images
        .into_iter()
        .map(|image| ImageStatus {
            present: !nodes.is_empty() && nodes.iter().all(|n| n.present.contains(&image)),
            allowed: true,
            image,
        })
        .collect();
    Ok(Json(calls_protocol::jobs::InitResponse {
        images: out,
        nodes,
    }))
}
