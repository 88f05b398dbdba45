//! What a job leaves for its client: `GET /jobs/{id}/logs` (live from the backend while the
//! job's container or service exists, from the persisted file once it ended; `?follow=true` streams) and its artifacts
//! (`GET /jobs/{id}/artifacts`, `GET /jobs/{id}/artifacts/{name}` with `Range`).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use calls_protocol::jobs::ArtifactList;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::auth::ClientAuth;
use crate::error::{Error, Result};
use crate::{files, AppState};

fn text(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

pub async fn logs(
    State(state): State<AppState>,
    client: ClientAuth,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let mut follow = false;
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=').unwrap_or((pair, "true")) {
            ("follow", "true" | "1") => follow = true,
            ("follow", "false" | "0") => follow = false,
            _ => {
                return Err(Error::BadRequest(format!(
                    "unknown query parameter {pair:?} (only follow=true|false)"
                )))
            }
        }
    }
    let job = state.store.client_job(&id, &client.owner)?;
    let saved = files::logs_path(&state.config.data_dir, &id);
    if job.state.is_final() || job.container_removed {
        return match tokio::fs::File::open(&saved).await {
            Ok(file) => Ok(text(Body::from_stream(ReaderStream::new(file)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(text(Body::empty())),
            Err(e) => Err(e.into()),
        };
    }
    let Some(backend) = &state.backend else {
        return Ok(text(Body::empty()));
    };
    let name = job.container_name();
    if backend.status(&name).await?.is_none() {
        // Queued or not yet created: nothing logged yet.
        return Ok(text(Body::empty()));
    }
    // The stream owns its Docker client: it outlives this handler.
    let stream = backend
        .logs(&name, follow)
        .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
    Ok(text(Body::from_stream(stream)))
}

pub async fn list_artifacts(
    State(state): State<AppState>,
    client: ClientAuth,
    Path(id): Path<String>,
) -> Result<Json<ArtifactList>> {
    state.store.client_job(&id, &client.owner)?;
    Ok(Json(ArtifactList {
        artifacts: state.store.artifacts(&id)?,
    }))
}

pub async fn download_artifact(
    State(state): State<AppState>,
    client: ClientAuth,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    state.store.client_job(&id, &client.owner)?;
    files::validate_artifact_name(&name)?;
    let info = state
        .store
        .artifacts(&id)?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| Error::NotFound(format!("artifact {name:?} not found")))?;
    let mut file = tokio::fs::File::open(files::artifact_path(&state.config.data_dir, &id, &name))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("artifact {name:?} not found")),
            _ => e.into(),
        })?;
    let size = file.metadata().await?.len();
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = match files::parse_range(range_header, size) {
        Ok(range) => range,
        Err(error) => {
            let mut response = error.into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                format!("bytes */{size}")
                    .parse()
                    .expect("ASCII header value"),
            );
            return Ok(response);
        }
    };
    let common = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::ETAG, format!("\"{}\"", info.sha256)),
    ];
    match range {
        None => Ok((
            common,
            [(header::CONTENT_LENGTH, size.to_string())],
            Body::from_stream(ReaderStream::new(file)),
        )
            .into_response()),
        Some((start, end)) => {
            file.seek(std::io::SeekFrom::Start(start)).await?;
            let length = end - start + 1;
            Ok((
                StatusCode::PARTIAL_CONTENT,
                common,
                [
                    (header::CONTENT_LENGTH, length.to_string()),
                    (header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}")),
                ],
                Body::from_stream(ReaderStream::new(file.take(length))),
            )
                .into_response())
        }
    }
}
