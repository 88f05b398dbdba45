//! Shared harness of the router tests: an `AppState` on a temporary data dir with no Docker,
//! a `oneshot` request helper and client registration.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use calls_protocol::jobs::{ErrorBody, Job, JobState, LoginResponse};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{AppState, Config};

pub const ADMIN: &str = "admin-secret-for-unit-tests-0123456789";
pub const KEY_A: &str = "key-of-client-a-0123456789abcdefghij";
pub const KEY_B: &str = "key-of-client-b-0123456789abcdefghij";

pub struct Harness {
    pub state: AppState,
    pub router: Router,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn error(&self) -> ErrorBody {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!("not an error body: {}", String::from_utf8_lossy(&self.body))
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn harness(extra_env: &[(&str, &str)]) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = vec![
        ("OFFLOADER_API_ADMIN_SECRET".to_string(), ADMIN.to_string()),
        (
            "OFFLOADER_STORE_DATA_DIR".to_string(),
            dir.path().display().to_string(),
        ),
        (
            "OFFLOADER_API_MAX_JSON_BODY_BYTES".to_string(),
            "4096".to_string(),
        ),
        (
            "OFFLOADER_JOBS_MAX_QUEUE_LENGTH".to_string(),
            "3".to_string(),
        ),
        // One client fills the whole (small) queue in these tests.
        (
            "OFFLOADER_JOBS_CLIENT_QUEUE_SHARE".to_string(),
            "1.0".to_string(),
        ),
        (
            "OFFLOADER_JOBS_MAX_ARTIFACT_BYTES".to_string(),
            "1000".to_string(),
        ),
        (
            "OFFLOADER_JOBS_IMAGE_ALLOWLIST".to_string(),
            "extra:1".to_string(),
        ),
    ];
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let config = Config::load("", env).expect("test config validates");
    let state = AppState::new(config).expect("store opens");
    Harness {
        router: crate::router(state.clone()),
        state,
        _dir: dir,
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn basic(id: &str, key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{key}"))
    )
}

impl Harness {
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        self.send_with(method, uri, auth, body, &[]).await
    }

    pub async fn send_with(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .expect("valid request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        Reply {
            status,
            headers,
            body: body.to_vec(),
        }
    }

    pub async fn post(&self, uri: &str, auth: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, uri, auth, Some(body.to_string().into_bytes()))
            .await
    }

    /// `POST /unregister {"clientID": client_id}` with `auth`.
    pub async fn unregister(&self, auth: &str, client_id: &str) -> Reply {
        self.post("/unregister", Some(auth), json!({ "clientID": client_id }))
            .await
    }

    /// `POST /jobs/{id}/stop` with `auth`.
    pub async fn stop(&self, auth: &str, job_id: &str) -> Reply {
        let uri = format!("/jobs/{job_id}/stop");
        self.send(Method::POST, &uri, Some(auth), None).await
    }

    pub async fn get(&self, uri: &str, auth: Option<&str>) -> Reply {
        self.send(Method::GET, uri, auth, None).await
    }

    /// Registers with the admin secret and logs in; returns the bearer header.
    pub async fn client(&self, id: &str, key: &str) -> String {
        let reply = self
            .post(
                "/register",
                Some(&bearer(ADMIN)),
                json!({"clientID": id, "authKey": key}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        let reply = self
            .post("/login", None, json!({"clientID": id, "authKey": key}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let login: LoginResponse = serde_json::from_slice(&reply.body).expect("login body");
        assert!(login.expires_at > crate::now_ms());
        bearer(&login.bearer_token)
    }

    pub async fn create(&self, auth: &str, body: Value) -> Job {
        let reply = self.post("/jobs", Some(auth), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        serde_json::from_slice(&reply.body).expect("job body")
    }

    pub fn job_count(&self) -> usize {
        self.state
            .store
            .jobs_in(&JobState::ALL)
            .expect("store")
            .len()
    }
}
