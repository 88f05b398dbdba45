//! The job's side of the offloader API: status reports (`POST /jobs/{id}/status`) and the artifact upload
//! (`PUT /jobs/{id}/artifacts/{name}`), both with the job's own token as bearer.
//!
//! Uploads stream the file from disk and are retried with exponential backoff, because the recording is the
//! whole point of the job: losing it to one network hiccup would be the worst outcome. Status reports are
//! best effort with a short timeout; a missing progress report must never stall the recording.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use calls_protocol::jobs::{JobStatusKind, JobStatusUpdate};

use crate::config::{JobConfig, Secret};
use crate::error::{Error, Result};

/// Upload attempts before giving up.
pub const UPLOAD_ATTEMPTS: u32 = 5;

/// Wait before retry number `attempt` (1-based): 1 s, 2 s, 4 s, 8 s, capped at 30 s.
pub fn upload_backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// Talks to the offloader on behalf of one job.
#[derive(Debug, Clone)]
pub struct OffloaderClient {
    http: reqwest::Client,
    base: String,
    job_id: String,
    token: Secret,
}

impl OffloaderClient {
    /// A client for the job described by `config`.
    pub fn new(config: &JobConfig) -> Result<OffloaderClient> {
        OffloaderClient::from_parts(
            &config.offloader_url,
            &config.job_id,
            config.job_token.clone(),
        )
    }

    /// A client from raw parts, for reporting a job whose other settings were invalid.
    pub fn from_parts(base: &str, job_id: &str, token: Secret) -> Result<OffloaderClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Offloader(format!("building the http client: {e}")))?;
        Ok(OffloaderClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            job_id: job_id.to_owned(),
            token,
        })
    }

    /// Sends a status update; errors say what the offloader answered.
    pub async fn report(
        &self,
        status: JobStatusKind,
        message: Option<String>,
        error: Option<String>,
        counters: &[(&'static str, f64)],
    ) -> Result<()> {
        let update = JobStatusUpdate {
            status,
            message,
            error,
            counters: counters
                .iter()
                .map(|(name, value)| ((*name).to_owned(), *value))
                .collect::<BTreeMap<_, _>>(),
        };
        let response = self
            .http
            .post(format!("{}/jobs/{}/status", self.base, self.job_id))
            .bearer_auth(self.token.expose())
            .timeout(Duration::from_secs(5))
            .json(&update)
            .send()
            .await
            .map_err(|e| Error::Offloader(format!("status report: {e}")))?;
        check(response, "status report").await
    }

    /// Uploads `path` as artifact `name`, retrying with backoff. Returns the bytes sent.
    pub async fn upload(&self, path: &Path, name: &str) -> Result<u64> {
        let mut last_error = String::new();
        for attempt in 1..=UPLOAD_ATTEMPTS {
            match self.upload_once(path, name).await {
                Ok(bytes) => return Ok(bytes),
                Err(error) => {
                    tracing::warn!(attempt, %error, "artifact upload failed");
                    last_error = error.to_string();
                }
            }
            if attempt < UPLOAD_ATTEMPTS {
                tokio::time::sleep(upload_backoff(attempt)).await;
            }
        }
        Err(Error::Offloader(format!(
            "upload of {name} failed after {UPLOAD_ATTEMPTS} attempts: {last_error}"
        )))
    }

    async fn upload_once(&self, path: &Path, name: &str) -> Result<u64> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| Error::Io {
                context: "opening the recording for upload",
                source,
            })?;
        let bytes = file
            .metadata()
            .await
            .map_err(|source| Error::Io {
                context: "reading the recording's size",
                source,
            })?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let response = self
            .http
            .put(format!(
                "{}/jobs/{}/artifacts/{name}",
                self.base, self.job_id
            ))
            .bearer_auth(self.token.expose())
            .header(reqwest::header::CONTENT_LENGTH, bytes)
            .header(reqwest::header::CONTENT_TYPE, "video/mp4")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Offloader(format!("upload: {e}")))?;
        check(response, "upload").await?;
        Ok(bytes)
    }
}

async fn check(response: reqwest::Response, what: &str) -> Result<()> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let detail: String = body.chars().take(300).collect();
    Err(Error::Offloader(format!(
        "{what}: offloader answered {status}: {detail}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let waits: Vec<u64> = (1..=8).map(|a| upload_backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
