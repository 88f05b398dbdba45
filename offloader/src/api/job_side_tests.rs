//! Router tests of the job-side API (status reports, artifact upload) and of what clients read
//! back (artifacts with Range, persisted logs), plus webhook delivery to a local receiver.

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use calls_protocol::jobs::{ArtifactInfo, ArtifactList, Job, JobState, WebhookEvent};
use serde_json::json;

use super::test_support::{bearer, harness, Harness, KEY_A, KEY_B};
use crate::{auth, files};

/// A job of client `a`, moved to `starting` with a known job token (as the dispatcher does).
async fn started_job(h: &Harness) -> (String, String, String) {
    let a = h.client("a", KEY_A).await;
    let job = h.create(&a, json!({"type": "recording"})).await;
    let token = auth::new_token();
    assert!(h
        .state
        .store
        .mark_starting(&job.id, &auth::token_hash(&token))
        .expect("store"));
    (a, job.id, token)
}

#[tokio::test]
async fn status_reports_need_the_jobs_own_token() {
    let h = harness(&[]);
    let (a, id, token) = started_job(&h).await;
    let update = json!({"status": "progress", "message": "joined call", "counters": {"video_frames_encoded": 42}});
    let uri = format!("/jobs/{id}/status");
    for bad in [None, Some(bearer("wrong")), Some(a.clone())] {
        let reply = h.post(&uri, bad.as_deref(), update.clone()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    let reply = h.post(&uri, Some(&bearer(&token)), update).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    let job: Job =
        serde_json::from_slice(&h.get(&format!("/jobs/{id}"), Some(&a)).await.body).expect("job");
    assert_eq!(job.progress.as_deref(), Some("joined call"));
    assert_eq!(job.counters["video_frames_encoded"], 42.0);
    let metrics = h.get("/metrics", None).await.text();
    assert!(
        metrics.contains(
            "calls_offloader_job_reported_total{name=\"video_frames_encoded\",type=\"recording\"} 42"
        ),
        "{metrics}"
    );
    let bad_counter = h
        .post(
            &uri,
            Some(&bearer(&token)),
            json!({"status": "progress", "counters": {"bad name": 1}}),
        )
        .await;
    assert_eq!(bad_counter.status, StatusCode::BAD_REQUEST);
    // Another job's token does not work here.
    let other = h.create(&a, json!({"type": "recording"})).await;
    let reply = h
        .post(
            &format!("/jobs/{}/status", other.id),
            Some(&bearer(&token)),
            json!({"status": "started"}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "queued jobs have no token yet"
    );
}

#[tokio::test]
async fn artifacts_upload_with_checksum_and_download_with_ranges() {
    let h = harness(&[]);
    let (a, id, token) = started_job(&h).await;
    let content: Vec<u8> = (0..=255u8).cycle().take(700).collect();
    let uri = format!("/jobs/{id}/artifacts/recording.mp4");
    let denied = h
        .send(Method::PUT, &uri, Some(&a), Some(content.clone()))
        .await;
    assert_eq!(
        denied.status,
        StatusCode::UNAUTHORIZED,
        "clients cannot upload"
    );
    let reply = h
        .send(
            Method::PUT,
            &uri,
            Some(&bearer(&token)),
            Some(content.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let info: ArtifactInfo = serde_json::from_slice(&reply.body).expect("info");
    assert_eq!(info.size, 700);
    assert_eq!(
        info.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&content))
    );

    let too_big = h
        .send(
            Method::PUT,
            &format!("/jobs/{id}/artifacts/big.bin"),
            Some(&bearer(&token)),
            Some(vec![0; 1001]),
        )
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    let bad_name = h
        .send(
            Method::PUT,
            &format!("/jobs/{id}/artifacts/..hidden"),
            Some(&bearer(&token)),
            Some(vec![1]),
        )
        .await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);

    let list: ArtifactList =
        serde_json::from_slice(&h.get(&format!("/jobs/{id}/artifacts"), Some(&a)).await.body)
            .expect("list");
    assert_eq!(list.artifacts, vec![info.clone()]);
    let whole = h.get(&uri, Some(&a)).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body, content);
    let part = h
        .send_with(
            Method::GET,
            &uri,
            Some(&a),
            None,
            &[("range", "bytes=100-199")],
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, content[100..200]);
    assert_eq!(part.headers["content-range"], "bytes 100-199/700");
    let tail = h
        .send_with(Method::GET, &uri, Some(&a), None, &[("range", "bytes=-50")])
        .await;
    assert_eq!(tail.body, content[650..]);
    let outside = h
        .send_with(
            Method::GET,
            &uri,
            Some(&a),
            None,
            &[("range", "bytes=700-")],
        )
        .await;
    assert_eq!(outside.status, StatusCode::RANGE_NOT_SATISFIABLE);

    // Once the job is final its token stops working; the artifact stays downloadable.
    h.state
        .store
        .finish(&id, JobState::Succeeded, Some(0), None, crate::now_ms())
        .expect("store");
    let late = h
        .send(Method::PUT, &uri, Some(&bearer(&token)), Some(vec![1]))
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(h.get(&uri, Some(&a)).await.body, content);
}

#[tokio::test]
async fn logs_of_a_finished_job_come_from_the_data_dir() {
    let h = harness(&[]);
    let (a, id, _token) = started_job(&h).await;
    files::persist_logs(&h.state.config.data_dir, &id, b"line one\nline two\n")
        .await
        .expect("logs written");
    h.state
        .store
        .finish(
            &id,
            JobState::Failed,
            Some(1),
            Some("exited 1: line two"),
            crate::now_ms(),
        )
        .expect("store");
    let reply = h.get(&format!("/jobs/{id}/logs"), Some(&a)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "line one\nline two\n");
    let follow = h
        .get(&format!("/jobs/{id}/logs?follow=true"), Some(&a))
        .await;
    assert_eq!(
        follow.text(),
        "line one\nline two\n",
        "follow of a finished job ends"
    );
    let b = h.client("b", KEY_B).await;
    assert_eq!(
        h.get(&format!("/jobs/{id}/logs"), Some(&b)).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn state_changes_reach_the_signed_webhook() {
    type Calls = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let received: Calls = Arc::default();
    let sink = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let signature = headers
                        .get(crate::webhook::SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    sink.lock().expect("lock").push((signature, body.to_vec()));
                    StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    // The receiver is on loopback, which webhooks may only reach when allowed.
    let h = harness(&[("OFFLOADER_WEBHOOKS_ALLOW_PRIVATE", "true")]);
    let a = h.client("a", KEY_A).await;
    let secret = "webhook-secret-0123456789";
    let hook = json!({"url": format!("http://{address}/hook"), "secret": secret});
    let reply = h
        .send(
            Method::PUT,
            "/webhook",
            Some(&a),
            Some(hook.to_string().into_bytes()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    let job = h
        .create(
            &a,
            json!({"type": "recording", "input_data": {"bot_token": "hidden-value"}}),
        )
        .await;
    h.stop(&a, &job.id).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while received.lock().expect("lock").len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let calls = received.lock().expect("lock").clone();
    let mut states: Vec<JobState> = Vec::new();
    for (signature, body) in &calls {
        assert_eq!(
            signature,
            &crate::webhook::signature(secret, body),
            "signature matches the body"
        );
        assert!(!String::from_utf8_lossy(body).contains("hidden-value"));
        let event: WebhookEvent = serde_json::from_slice(body).expect("event");
        assert_eq!(event.job.id, job.id);
        states.push(event.job.state);
    }
    states.sort();
    assert_eq!(states, vec![JobState::Queued, JobState::Cancelled]);
    let bad = h
        .send(
            Method::PUT,
            "/webhook",
            Some(&a),
            Some(
                json!({"url": "ftp://x", "secret": secret})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn failed_webhook_calls_are_retried_and_counted() {
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = attempts.clone();
    // Fails twice, then accepts.
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let h = harness(&[
        ("OFFLOADER_WEBHOOKS_INITIAL_BACKOFF", "10ms"),
        ("OFFLOADER_WEBHOOKS_ALLOW_PRIVATE", "true"),
    ]);
    let secret = "webhook-secret-0123456789";
    let reply = h
        .post(
            "/register",
            Some(&bearer(super::test_support::ADMIN)),
            json!({"clientID": "w", "authKey": KEY_A, "webhook": {"url": format!("http://{address}/hook"), "secret": secret}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let login = h
        .post("/login", None, json!({"clientID": "w", "authKey": KEY_A}))
        .await;
    let token: calls_protocol::jobs::LoginResponse =
        serde_json::from_slice(&login.body).expect("login");
    h.create(&bearer(&token.bearer_token), json!({"type": "recording"}))
        .await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while attempts.load(std::sync::atomic::Ordering::SeqCst) < 3
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    let metrics = h.get("/metrics", None).await.text();
    assert!(
        metrics.contains("calls_offloader_webhook_failures_total{gave_up=\"false\"} 2"),
        "{metrics}"
    );
}
