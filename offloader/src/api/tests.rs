//! Router tests with `oneshot`: no socket, no Docker (jobs stay queued). They check what a
//! client sees: auth, per-client isolation, validation errors in the `{error, code}` shape,
//! that rejected requests change nothing, and that secrets never come back.

use axum::http::{Method, StatusCode};
use calls_protocol::jobs::{Job, JobList, JobState};
use serde_json::json;

use super::test_support::{basic, bearer, harness, ADMIN, KEY_A, KEY_B};

#[tokio::test]
async fn registration_needs_the_admin_secret_unless_self_registration_is_on() {
    let h = harness(&[]);
    let body = json!({"clientID": "a", "authKey": KEY_A});
    let reply = h.post("/register", None, body.clone()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error().code, "unauthorized");
    let reply = h
        .post("/register", Some(&bearer("wrong-secret")), body.clone())
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(h.state.store.client("a").expect("store").is_none());

    let short = h
        .post(
            "/register",
            Some(&bearer(ADMIN)),
            json!({"clientID": "a", "authKey": "short"}),
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.error().error.contains("32"), "{}", short.text());

    assert_eq!(
        h.post("/register", Some(&bearer(ADMIN)), body.clone())
            .await
            .status,
        StatusCode::CREATED
    );
    let again = h.post("/register", Some(&bearer(ADMIN)), body).await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let open = harness(&[("OFFLOADER_API_SELF_REGISTRATION", "true")]);
    let reply = open
        .post(
            "/register",
            None,
            json!({"clientID": "self", "authKey": KEY_A}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
}

#[tokio::test]
async fn login_basic_auth_and_unregister() {
    let h = harness(&[]);
    let token = h.client("a", KEY_A).await;
    assert_eq!(h.get("/jobs", Some(&token)).await.status, StatusCode::OK);
    assert_eq!(
        h.get("/jobs", Some(&basic("a", KEY_A))).await.status,
        StatusCode::OK
    );
    for bad in [
        basic("a", KEY_B),
        basic("nobody", KEY_A),
        bearer("not-a-token"),
        "Digest x".into(),
    ] {
        let reply = h.get("/jobs", Some(&bad)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(reply.error().code, "unauthorized");
    }
    assert_eq!(h.get("/jobs", None).await.status, StatusCode::UNAUTHORIZED);
    let wrong = h
        .post("/login", None, json!({"clientID": "a", "authKey": KEY_B}))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let via_basic = h
        .send(Method::POST, "/login", Some(&basic("a", KEY_A)), None)
        .await;
    assert_eq!(via_basic.status, StatusCode::OK, "{}", via_basic.text());

    let reply = h
        .send(Method::POST, "/unregister", Some(&token), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json(), json!({"clientID": "a"}));
    assert_eq!(
        h.get("/jobs", Some(&token)).await.status,
        StatusCode::UNAUTHORIZED,
        "tokens die with the client"
    );
    h.client("b", KEY_B).await;
    let reply = h.unregister(&bearer(ADMIN), "b").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(h.state.store.client("b").expect("store").is_none());
}

#[tokio::test]
async fn a_client_sees_only_its_own_jobs() {
    let h = harness(&[]);
    let a = h.client("a", KEY_A).await;
    let b = h.client("b", KEY_B).await;
    let job = h
        .create(
            &a,
            json!({"type": "recording", "input_data": {"call_id": "c1"}}),
        )
        .await;
    let paths = [
        (Method::GET, format!("/jobs/{}", job.id)),
        (Method::POST, format!("/jobs/{}/stop", job.id)),
        (Method::DELETE, format!("/jobs/{}", job.id)),
        (Method::GET, format!("/jobs/{}/logs", job.id)),
        (Method::GET, format!("/jobs/{}/artifacts", job.id)),
        (Method::GET, format!("/jobs/{}/artifacts/x.mp4", job.id)),
    ];
    for (method, path) in &paths {
        let reply = h.send(method.clone(), path, Some(&b), None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(reply.error().code, "not_found");
    }
    let listed: JobList =
        serde_json::from_slice(&h.get("/jobs", Some(&b)).await.body).expect("list");
    assert!(listed.jobs.is_empty());
    let listed: JobList =
        serde_json::from_slice(&h.get("/jobs", Some(&a)).await.body).expect("list");
    assert_eq!(listed.jobs.len(), 1);
    let mine = h.get(&format!("/jobs/{}", job.id), Some(&a)).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(
        h.state
            .store
            .job(&job.id)
            .expect("store")
            .expect("job")
            .state,
        JobState::Queued,
        "B changed nothing"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors_and_change_nothing() {
    let h = harness(&[]);
    let a = h.client("a", KEY_A).await;
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            json!({"type": "mining"}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
            "unknown variant `mining`",
        ),
        (
            json!({"type": "recording", "extra": 1})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "unknown field `extra`",
        ),
        (
            json!({"type": "recording", "runner": "evil:latest"})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "allowlist",
        ),
        (
            json!({"type": "recording", "max_duration_sec": 0})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "max_duration_sec",
        ),
        (
            json!({"type": "recording", "max_duration_sec": 999_999_999})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "max_duration_sec",
        ),
        (
            json!({"type": "recording", "input_data": {"bad key": "x"}})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "environment name",
        ),
        (
            json!({"type": "recording", "input_data": {"job_token": "x"}})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "reserved",
        ),
        (
            json!({"type": "recording", "input_data": {"PROFLE": "high"}})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "\"PROFLE\" is not an input of this job (accepted: recording jobs read call_id,",
        ),
        (
            json!({"type": "transcribing", "input_data": {"profile": "high"}})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "not an input of this job",
        ),
        (
            json!({"type": "recording", "runner": "extra:1/../x"})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "not a Docker image reference",
        ),
        (vec![b' '; 5000], StatusCode::PAYLOAD_TOO_LARGE, "limit"),
    ];
    for (body, status, needle) in cases {
        let reply = h.send(Method::POST, "/jobs", Some(&a), Some(body)).await;
        assert_eq!(reply.status, status, "{}", reply.text());
        let error = reply.error();
        assert!(
            error.error.contains(needle),
            "{:?} should mention {needle:?}",
            error.error
        );
        assert_eq!(
            error.code,
            if status == StatusCode::BAD_REQUEST {
                "bad_request"
            } else {
                "payload_too_large"
            }
        );
    }
    let unauthenticated = h.post("/jobs", None, json!({"type": "recording"})).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.job_count(), 0, "no rejected request created a job");
    let unknown = h.get("/nope", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error().code, "not_found");
    let filter = h.get("/jobs?state=nonsense", Some(&a)).await;
    assert_eq!(filter.status, StatusCode::BAD_REQUEST);
}

/// Issue 21 finding 3: environment variables that steer a program (proxies, the loader, the
/// search path, the log filter) were accepted as inputs; only each runner's own inputs are.
#[tokio::test]
async fn only_the_runners_own_inputs_are_accepted() {
    let h = harness(&[(
        "OFFLOADER_RUNNERS_RECORDING_FOREIGN_RUNNERS",
        "mattermost/calls-recorder:v*",
    )]);
    let a = h.client("a", KEY_A).await;
    for key in [
        "http_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "no_proxy",
        "ld_preload",
        "path",
        "rust_log",
        "home",
    ] {
        for runner in ["", "mattermost/calls-recorder:v0.8.5"] {
            let reply = h
                .post(
                    "/jobs",
                    Some(&a),
                    json!({"type": "recording", "runner": runner, "input_data": {"call_id": "c", key: "x"}}),
                )
                .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{key} {runner}");
            assert!(
                reply.error().error.contains("not an input of this job"),
                "{}",
                reply.text()
            );
        }
    }
    assert_eq!(h.job_count(), 0);
    // Mattermost's recorder gets its own keys (the operator's list), ours gets ours.
    let mm = h
        .create(
            &a,
            json!({"type": "recording", "runner": "mattermost/calls-recorder:v0.8.5", "max_duration_sec": 60,
                   "input_data": {"site_url": "http://mm", "call_id": "c", "auth_token": "t", "width": 1280}}),
        )
        .await;
    assert_eq!(mm.runner, "mattermost/calls-recorder:v0.8.5");
    assert_eq!(mm.secret_fields, vec!["auth_token"]);
    let reply = h
        .post(
            "/jobs",
            Some(&a),
            json!({"type": "recording", "input_data": {"site_url": "http://mm"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let reply = h
        .post(
            "/jobs",
            Some(&a),
            json!({"type": "transcribing", "runner": "mattermost/calls-recorder:v0.8.5"}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "a recorder is no transcriber"
    );
}

/// Mattermost's client: admin Basic auth with an empty user, 200 answers, `bearerToken`,
/// self-registration on first use, the job shape with `start_at`/`stop_at`.
#[tokio::test]
async fn mattermost_client_conventions() {
    let h = harness(&[]);
    let admin = basic("", ADMIN);
    let reply = h
        .post(
            "/register",
            Some(&admin),
            json!({"clientID": "mm", "authKey": KEY_A}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    for not_admin in [basic("", &format!("{ADMIN}_")), basic("x", ADMIN)] {
        let reply = h
            .post(
                "/register",
                Some(&not_admin),
                json!({"clientID": "other", "authKey": KEY_B}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{not_admin}");
    }
    let login = h
        .post("/login", None, json!({"clientID": "mm", "authKey": KEY_A}))
        .await;
    let body: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&login.body).expect("every value a string");
    assert!(body["bearerToken"].len() >= 43);
    let job = h
        .create(
            &basic("mm", KEY_A),
            json!({"type": "recording", "runner": "", "max_duration_sec": 60}),
        )
        .await;
    let view = h
        .get(&format!("/jobs/{}", job.id), Some(&basic("mm", KEY_A)))
        .await
        .json();
    assert_eq!(view["start_at"], json!(job.created_at));
    assert!(view.get("stop_at").is_none(), "absent until final: {view}");
    let init = h
        .post(
            "/jobs/init",
            Some(&basic("mm", KEY_A)),
            json!({"Runners": null}),
        )
        .await;
    assert_ne!(init.status, StatusCode::BAD_REQUEST, "{}", init.text());
    let empty = h.unregister(&admin, "").await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let gone = h.unregister(&admin, "mm").await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.text());

    // Self-registration: off, an unknown client is a 401; on, its first request registers it.
    let unknown = basic("newcomer", KEY_B);
    assert_eq!(
        h.get("/jobs", Some(&unknown)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(h.state.store.client("newcomer").expect("store").is_none());
    let open = harness(&[("OFFLOADER_API_SELF_REGISTRATION", "true")]);
    assert_eq!(
        open.get("/jobs", Some(&unknown)).await.status,
        StatusCode::OK
    );
    assert!(open
        .state
        .store
        .client("newcomer")
        .expect("store")
        .is_some());
    let wrong = basic("newcomer", KEY_A);
    assert_eq!(
        open.get("/jobs", Some(&wrong)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let short = open.get("/jobs", Some(&basic("shorty", "short"))).await;
    assert_eq!(short.status, StatusCode::UNAUTHORIZED);
    assert!(short.error().error.contains("32"), "{}", short.text());
    // Unregistering never registers.
    let reply = open.unregister(&basic("ghost", KEY_A), "ghost").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(open.state.store.client("ghost").expect("store").is_none());
}

#[tokio::test]
async fn secret_inputs_are_stored_but_never_returned() {
    let h = harness(&[]);
    let a = h.client("a", KEY_A).await;
    let secret = "xoxb-very-secret-bot-token-value";
    let job = h
        .create(&a, json!({"type": "transcribing", "input_data": {"call_id": "c1", "BOT_TOKEN": secret, "join_token": secret}}))
        .await;
    assert_eq!(job.secret_fields, vec!["BOT_TOKEN", "join_token"]);
    assert_eq!(job.input_data.len(), 1);
    for path in [
        format!("/jobs/{}", job.id),
        "/jobs".to_string(),
        "/metrics".to_string(),
    ] {
        let reply = h.get(&path, Some(&a)).await;
        assert!(!reply.text().contains(secret), "{path} leaked the secret");
    }
    let stored = h.state.store.job(&job.id).expect("store").expect("job");
    assert_eq!(
        stored.input_data["BOT_TOKEN"],
        json!(secret),
        "the container still needs it"
    );
}

#[tokio::test]
async fn the_queue_refuses_only_when_full_and_stop_cancels_queued_jobs() {
    let h = harness(&[("OFFLOADER_JOBS_MAX_CONCURRENT", "1")]);
    let a = h.client("a", KEY_A).await;
    let body = json!({"type": "recording"});
    // No Docker here, so nothing starts: 1 free slot + a queue of 3 admit 4 jobs.
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(h.create(&a, body.clone()).await.id);
    }
    let full = h.post("/jobs", Some(&a), body.clone()).await;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(full.error().code, "queue_full");
    assert_eq!(h.job_count(), 4);

    let stopped = h.stop(&a, &ids[0]).await;
    assert_eq!(stopped.status, StatusCode::OK);
    let job: Job = serde_json::from_slice(&stopped.body).expect("job");
    assert_eq!(job.state, JobState::Cancelled);
    assert!(job.finished_at.is_some());
    let again = h.stop(&a, &ids[0]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        h.create(&a, body).await.state,
        JobState::Queued,
        "a place freed up"
    );

    let queued = h
        .send(Method::DELETE, &format!("/jobs/{}", ids[1]), Some(&a), None)
        .await;
    assert_eq!(
        queued.status,
        StatusCode::CONFLICT,
        "active jobs must be stopped first"
    );
    let deleted = h
        .send(Method::DELETE, &format!("/jobs/{}", ids[0]), Some(&a), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("/jobs/{}", ids[0]), Some(&a)).await.status,
        StatusCode::NOT_FOUND
    );
    let filtered: JobList =
        serde_json::from_slice(&h.get("/jobs?state=queued", Some(&a)).await.body).expect("list");
    assert_eq!(filtered.jobs.len(), 4);
}

#[tokio::test]
async fn service_routes_answer() {
    let h = harness(&[]);
    let version = h.get("/version", None).await.json();
    assert_eq!(version["name"], "calls-offloader");
    assert_eq!(h.get("/healthz", None).await.status, StatusCode::OK);
    let metrics = h.get("/metrics", None).await.text();
    for name in [
        "calls_offloader_jobs{state=\"queued\",type=\"recording\"} 0",
        "calls_offloader_queue_length 0",
        "calls_offloader_api_requests_total",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    let openapi = h.get("/openapi.json", None).await.json();
    let paths = openapi["paths"].as_object().expect("openapi paths");
    for path in [
        "/register",
        "/login",
        "/jobs",
        "/jobs/{id}",
        "/jobs/{id}/logs",
        "/jobs/{id}/status",
        "/jobs/{id}/artifacts/{name}",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "openapi.json lacks {path}");
    }
}
