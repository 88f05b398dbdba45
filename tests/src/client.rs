//! A REST client of the offloader for tests and the benchmark: sends requests exactly as given
//! (so malformed bodies can be tested), keeps every answer whole, and records every answer body
//! in a transcript shared by all clients of one offloader, so a test can prove that no answer
//! ever contained a secret.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use calls_protocol::jobs::{CreateJobRequest, ErrorBody, Job, JobList};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

/// One HTTP answer, kept whole so tests can look at status, headers and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("unexpected body for {}: {}", self.status, self.text()))
    }

    /// The `{error, code}` body every error answer carries.
    pub fn error(&self) -> anyhow::Result<ErrorBody> {
        self.json()
    }

    /// `self` when the status is a success, else an error naming the answer.
    pub fn ok(self) -> anyhow::Result<Self> {
        if !self.status.is_success() {
            bail!("expected success, got {}: {}", self.status, self.text());
        }
        Ok(self)
    }

    /// `self.json()` when the status is a success, else an error naming the answer.
    pub fn ok_json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        if !self.status.is_success() {
            bail!("expected success, got {}: {}", self.status, self.text());
        }
        self.json()
    }
}

/// How a [`Client`] authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    Bearer(String),
    Basic { client_id: String, auth_key: String },
    None,
}

/// A REST client of one offloader. Every answer body is appended to a transcript shared by all
/// clients of that offloader, so a test can prove no answer ever contained a secret.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    pub auth: Auth,
    pub client_id: String,
    transcript: Arc<Mutex<Vec<String>>>,
}

impl Client {
    /// A client of the API at `base` (`http://host:port`) that appends answers to `transcript`.
    pub fn new(
        http: reqwest::Client,
        base: String,
        auth: Auth,
        client_id: String,
        transcript: Arc<Mutex<Vec<String>>>,
    ) -> Self {
        Self {
            http,
            base,
            auth,
            client_id,
            transcript,
        }
    }

    /// Sends a request; `body` is sent as JSON bytes verbatim (so malformed bodies can be tested).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Reply> {
        self.request_with(method, path, body, &[]).await
    }

    /// [`Client::request`] with extra headers.
    pub async fn request_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut builder = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        builder = match &self.auth {
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::Basic {
                client_id,
                auth_key,
            } => builder.basic_auth(client_id, Some(auth_key)),
            Auth::None => builder,
        };
        if let Some(body) = body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = builder
            .send()
            .await
            .with_context(|| format!("{method} {path} did not answer"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("{method} {path}: body"))?;
        self.transcript
            .lock()
            .expect("transcript lock is never held across a panic")
            .push(String::from_utf8_lossy(&body).into_owned());
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<Reply> {
        let bytes = serde_json::to_vec(body).context("serializing the request")?;
        self.request(Method::POST, path, Some(bytes)).await
    }

    /// `POST /jobs`, expecting success.
    pub async fn create_job(&self, spec: &CreateJobRequest) -> anyhow::Result<Job> {
        self.post_json("/jobs", spec).await?.ok_json()
    }

    pub async fn job(&self, id: &str) -> anyhow::Result<Job> {
        self.get(&format!("/jobs/{id}")).await?.ok_json()
    }

    pub async fn jobs(&self) -> anyhow::Result<Vec<Job>> {
        Ok(self.get("/jobs").await?.ok_json::<JobList>()?.jobs)
    }

    pub async fn stop(&self, id: &str) -> anyhow::Result<Reply> {
        self.request(Method::POST, &format!("/jobs/{id}/stop"), None)
            .await
    }

    /// `POST /jobs/{id}/stop`, expecting success; then waits until the job reaches a final state.
    pub async fn stop_and_wait(&self, id: &str, timeout: Duration) -> anyhow::Result<Job> {
        self.stop(id).await?.ok()?;
        self.wait_final(id, timeout).await
    }

    pub async fn logs(&self, id: &str) -> anyhow::Result<String> {
        let reply = self.get(&format!("/jobs/{id}/logs")).await?;
        if !reply.status.is_success() {
            bail!("logs of {id}: {} {}", reply.status, reply.text());
        }
        Ok(reply.text())
    }

    /// Polls the job every 200 ms until `done(job)` holds, or fails after `timeout` with the last view.
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Job) -> bool,
    ) -> anyhow::Result<Job> {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id).await?;
            if done(&job) {
                return Ok(job);
            }
            if Instant::now() >= deadline {
                bail!("job {id} not {what} after {timeout:?}: {job:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the job reaches a final state.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> anyhow::Result<Job> {
        self.wait_for(id, timeout, "final", |job| job.state.is_final())
            .await
    }
}
