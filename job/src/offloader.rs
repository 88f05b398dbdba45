//! The job's side of the offloader API: status reports (`POST /jobs/{id}/status`) and artifact uploads
//! (`PUT /jobs/{id}/artifacts/{name}`), both with the job's own token as bearer.
//!
//! Uploads stream the file from disk and are retried with exponential backoff, because the artifact is the
//! whole point of the job: losing it to one network hiccup would be the worst outcome. Plain status reports
//! are one attempt with a short timeout (a missing progress report must never stall the work); reports that
//! decide the job's outcome (`finished`) use a [`RetryPolicy`]. An answer in the 4xx range other than 408 and
//! 429 is final: asking again cannot change it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use calls_protocol::jobs::{JobStatusKind, JobStatusUpdate};

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::settings::JobIdentity;

/// Upload attempts before giving up.
pub const UPLOAD_ATTEMPTS: u32 = 5;

/// Wait before retry number `attempt` (1-based): 1 s, 2 s, 4 s, 8 s, capped at 30 s.
pub fn upload_backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

/// How often to try a request and how long to wait between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least one is made).
    pub attempts: u32,
    /// `None`: exponential backoff ([`upload_backoff`]); `Some(wait)`: a fixed wait.
    pub fixed_wait: Option<Duration>,
}

impl RetryPolicy {
    /// One attempt.
    pub const ONCE: RetryPolicy = RetryPolicy {
        attempts: 1,
        fixed_wait: None,
    };
    /// Artifact uploads: [`UPLOAD_ATTEMPTS`] with exponential backoff (about 15 s in all).
    pub const UPLOAD: RetryPolicy = RetryPolicy {
        attempts: UPLOAD_ATTEMPTS,
        fixed_wait: None,
    };
    /// The `finished` report: a few quick attempts.
    pub const FINISHED: RetryPolicy = RetryPolicy::fixed(3, Duration::from_millis(500));

    /// `attempts` tries, `wait` apart.
    pub const fn fixed(attempts: u32, wait: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts,
            fixed_wait: Some(wait),
        }
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn wait(&self, attempt: u32) -> Duration {
        self.fixed_wait.unwrap_or_else(|| upload_backoff(attempt))
    }
}

/// One failed attempt: worth another try or not.
#[derive(Debug)]
enum Attempt {
    Retry(String),
    Final(String),
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
    /// A client for the job `identity`.
    pub fn new(identity: &JobIdentity) -> Result<OffloaderClient> {
        OffloaderClient::from_parts(
            &identity.offloader_url,
            &identity.job_id,
            identity.job_token.clone(),
        )
    }

    /// A client from raw parts, for reporting a job whose other settings were invalid. It never
    /// uses a proxy: `HTTP_PROXY` and friends in a job's environment must not route the job
    /// token and the artifacts anywhere but to `OFFLOADER_URL`.
    pub fn from_parts(base: &str, job_id: &str, token: Secret) -> Result<OffloaderClient> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .no_proxy();
        // A stack with its own CA hands it to jobs (`jobs.ca_cert_file`): trust it too.
        if let Ok(pem) = std::env::var(calls_protocol::job_env::CA_CERT_PEM) {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
                Error::Offloader(format!("{}: {e}", calls_protocol::job_env::CA_CERT_PEM))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Offloader(format!("building the http client: {e}")))?;
        Ok(OffloaderClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            job_id: job_id.to_owned(),
            token,
        })
    }

    /// Sends a status update once; errors say what the offloader answered.
    pub async fn report(
        &self,
        status: JobStatusKind,
        message: Option<String>,
        error: Option<String>,
        counters: &[(&str, f64)],
    ) -> Result<()> {
        self.report_with(RetryPolicy::ONCE, status, message, error, counters)
            .await
    }

    /// Sends a status update, retrying by `policy` while the offloader is unreachable or failing.
    pub async fn report_with(
        &self,
        policy: RetryPolicy,
        status: JobStatusKind,
        message: Option<String>,
        error: Option<String>,
        counters: &[(&str, f64)],
    ) -> Result<()> {
        let update = JobStatusUpdate {
            status,
            message,
            error,
            counters: counters
                .iter()
                .map(|(name, value)| ((*name).to_owned(), *value))
                .collect::<BTreeMap<_, _>>(),
            histograms: BTreeMap::new(),
        };
        self.report_update(policy, &update).await
    }

    /// Sends a whole status update (e.g. with histograms), retrying by `policy`.
    pub async fn report_update(&self, policy: RetryPolicy, update: &JobStatusUpdate) -> Result<()> {
        retry(policy, "status report", || self.report_once(update)).await
    }

    async fn report_once(&self, update: &JobStatusUpdate) -> Result<(), Attempt> {
        let response = self
            .http
            .post(format!("{}/jobs/{}/status", self.base, self.job_id))
            .bearer_auth(self.token.expose())
            .timeout(Duration::from_secs(5))
            .json(update)
            .send()
            .await
            .map_err(|e| Attempt::Retry(format!("status report: {e}")))?;
        check(response, "status report").await
    }

    /// Uploads `path` as artifact `name`, retrying with backoff ([`RetryPolicy::UPLOAD`]). Returns the bytes
    /// sent.
    pub async fn upload(&self, path: &Path, name: &str) -> Result<u64> {
        self.upload_with(RetryPolicy::UPLOAD, path, name).await
    }

    /// Uploads `path` as artifact `name`, retrying by `policy`. Returns the bytes sent.
    pub async fn upload_with(&self, policy: RetryPolicy, path: &Path, name: &str) -> Result<u64> {
        let what = format!("upload of {name}");
        let bytes = AtomicU64::new(0);
        retry(policy, &what, || async {
            bytes.store(self.upload_once(path, name).await?, Ordering::Relaxed);
            Ok(())
        })
        .await?;
        Ok(bytes.load(Ordering::Relaxed))
    }

    async fn upload_once(&self, path: &Path, name: &str) -> Result<u64, Attempt> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Attempt::Final(format!("opening {} for upload: {e}", path.display())))?;
        let bytes = file
            .metadata()
            .await
            .map_err(|e| Attempt::Final(format!("reading the size of {}: {e}", path.display())))?
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
            .header(reqwest::header::CONTENT_TYPE, content_type(name))
            .body(body)
            .send()
            .await
            .map_err(|e| Attempt::Retry(format!("upload: {e}")))?;
        check(response, "upload").await?;
        Ok(bytes)
    }
}

/// The media type of an artifact, from its extension.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("mp4") => "video/mp4",
        Some("vtt") => "text/vtt; charset=utf-8",
        Some("srt") => "application/x-subrip",
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("wav") => "audio/wav",
        _ => "application/octet-stream",
    }
}

async fn retry<F, Fut>(policy: RetryPolicy, what: &str, mut once: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Attempt>>,
{
    let attempts = policy.attempts.max(1);
    for attempt in 1..=attempts {
        match once().await {
            Ok(()) => return Ok(()),
            Err(Attempt::Final(error)) => return Err(Error::Offloader(error)),
            Err(Attempt::Retry(error)) if attempt == attempts => {
                return Err(Error::Offloader(if attempts == 1 {
                    error
                } else {
                    format!("{what} failed after {attempts} attempts: {error}")
                }));
            }
            Err(Attempt::Retry(error)) => {
                tracing::warn!(attempt, %error, "{what} failed, retrying");
                tokio::time::sleep(policy.wait(attempt)).await;
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

async fn check(response: reqwest::Response, what: &str) -> Result<(), Attempt> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let detail: String = body.chars().take(300).collect();
    let error = format!("{what}: offloader answered {status}: {detail}");
    let worth_retrying = status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
    Err(if worth_retrying {
        Attempt::Retry(error)
    } else {
        Attempt::Final(error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let waits: Vec<u64> = (1..=8).map(|a| upload_backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            RetryPolicy::FINISHED.wait(2),
            Duration::from_millis(500),
            "fixed waits stay fixed"
        );
    }

    #[test]
    fn artifacts_get_their_media_type() {
        assert_eq!(content_type("recording.mp4"), "video/mp4");
        assert_eq!(content_type("transcript.vtt"), "text/vtt; charset=utf-8");
        assert_eq!(content_type("blob"), "application/octet-stream");
    }

    /// A server answering 503 `failures` times, then 204; and 403 on any request to `/jobs/denied/...`.
    async fn flaky_server(failures: u32) -> (String, Arc<AtomicU32>) {
        use axum::http::StatusCode;
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&calls);
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let seen = Arc::clone(&seen);
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                if uri.path().starts_with("/jobs/denied/") {
                    StatusCode::FORBIDDEN
                } else if n < failures {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), calls)
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_refusals_are_final() {
        let (base, calls) = flaky_server(2).await;
        let policy = RetryPolicy::fixed(5, Duration::from_millis(10));
        let client = OffloaderClient::from_parts(&base, "j1", Secret::new("t")).unwrap();
        client
            .report_with(policy, JobStatusKind::Finished, None, None, &[])
            .await
            .expect("the third attempt succeeds");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let denied = OffloaderClient::from_parts(&base, "denied", Secret::new("t")).unwrap();
        let before = calls.load(Ordering::SeqCst);
        let error = denied
            .report_with(policy, JobStatusKind::Progress, None, None, &[])
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 1,
            "a 403 is not retried"
        );
        assert!(error.contains("403"), "{error}");
    }

    #[tokio::test]
    async fn a_missing_file_fails_at_once() {
        let (base, calls) = flaky_server(0).await;
        let client = OffloaderClient::from_parts(&base, "j1", Secret::new("t")).unwrap();
        let error = client
            .upload(Path::new("/nonexistent/file.vtt"), "file.vtt")
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/file.vtt"), "{error}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
