//! Isolation, secrecy and input validation against the real offloader: a client sees only its own
//! jobs, a secret input reaches the container but no answer and no log line, and bad requests get
//! clear JSON errors without changing anything. Ownership and secrecy run in both backends
//! (`::engine`, `::swarm`, where the secret is a Docker secret file instead of a variable).

use std::time::Duration;

use calls_e2e::docker;
use calls_e2e::in_both_modes;
use calls_e2e::offloader::{serial, test_job, Auth, Mode, Offloader, OffloaderSettings};
use calls_e2e::swarm;
use calls_e2e::test_job::secret_digest;
use calls_protocol::jobs::JobState;
use reqwest::{Method, StatusCode};
use serde_json::json;

const SECRET: &str = "bot-token-s3cr3t-7f1c2a9e-do-not-leak";

in_both_modes!(clients_see_only_their_own_jobs_and_secrets_never_leave);

async fn clients_see_only_their_own_jobs_and_secrets_never_leave(mode: Mode) -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        mode,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("isolation", settings).await?;
    let alice = offloader.register("alice").await?;
    let bob = offloader.register_basic("bob").await?;

    let spec = test_job(
        "sleep",
        &[("bot_token", json!(SECRET)), ("call_id", json!("call-1"))],
    );
    let job = alice.create_job(&spec).await?;
    assert!(!job.input_data.contains_key("bot_token"), "{job:?}");
    assert_eq!(job.input_data.get("call_id"), Some(&json!("call-1")));
    assert!(
        job.secret_fields.contains(&"bot_token".to_owned()),
        "{job:?}"
    );
    let id = job.id.clone();

    // The secret reached the container (the job logs its digest, never the value).
    let digest_line = format!(
        "secret BOT_TOKEN received, sha256 prefix {}",
        secret_digest(SECRET)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = alice.job(&id).await?.state;
        if state == JobState::Running && alice.logs(&id).await?.contains(&digest_line) {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "job never logged {digest_line:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // In swarm mode neither the service nor its container shows the secret.
    if mode == Mode::Swarm {
        let name = &job.container_name;
        let service = swarm::service_inspect(name).unwrap_or_default();
        assert!(service.contains("bot_token"), "a secret file: {service}");
        assert!(
            !service.contains(SECRET),
            "docker service inspect: {service}"
        );
        let container = swarm::task_container_inspect(name, "{{json .}}").unwrap_or_default();
        assert!(!container.is_empty(), "the task's container exists");
        assert!(!container.contains(SECRET), "docker inspect: {container}");
    }

    // Bob: every route answers 404 for Alice's job, and his list is empty.
    for (method, path) in [
        (Method::GET, format!("/jobs/{id}")),
        (Method::GET, format!("/jobs/{id}/logs")),
        (Method::GET, format!("/jobs/{id}/artifacts")),
        (Method::POST, format!("/jobs/{id}/stop")),
        (Method::DELETE, format!("/jobs/{id}")),
    ] {
        let reply = bob.request(method.clone(), &path, None).await?;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            reply.text()
        );
        assert_eq!(reply.error()?.code, "not_found");
    }
    assert!(bob.jobs().await?.is_empty());
    // Bob's attempts changed nothing.
    let still = alice.job(&id).await?;
    assert_eq!(still.state, JobState::Running, "{still:?}");
    assert_eq!(alice.jobs().await?.len(), 1);

    // Alice herself can stop and delete it.
    let done = alice.stop_and_wait(&id, Duration::from_secs(30)).await?;
    assert_eq!(done.state, JobState::Cancelled);
    alice
        .request(Method::DELETE, &format!("/jobs/{id}"), None)
        .await?
        .ok()?;
    assert_eq!(
        alice.get(&format!("/jobs/{id}")).await?.status,
        StatusCode::NOT_FOUND
    );

    // No answer body and no offloader log line ever contained the secret.
    for body in offloader.transcript() {
        assert!(
            !body.contains(SECRET),
            "an answer leaked the secret: {body}"
        );
    }
    let log = offloader.log_text();
    assert!(!log.is_empty(), "the offloader logs something");
    assert!(!log.contains(SECRET), "the offloader log leaked the secret");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_json_errors_and_change_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        max_json_body_bytes: 16 * 1024,
        max_duration: "60s".into(),
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("badinput", settings).await?;
    let client = offloader.register("a").await?;

    let valid = serde_json::to_vec(&test_job("exit0", &[]))?;
    let huge = serde_json::to_vec(&test_job(
        "exit0",
        &[("padding", json!("x".repeat(20 * 1024)))],
    ))?;
    let cases: Vec<(&str, Vec<u8>, &[StatusCode], &str)> = vec![
        (
            "malformed JSON",
            b"{\"type\": \"recording\",".to_vec(),
            &[StatusCode::BAD_REQUEST],
            "bad_request",
        ),
        (
            "not an object",
            b"[1, 2]".to_vec(),
            &[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY],
            "bad_request",
        ),
        (
            "unknown job type",
            br#"{"type":"mining","input_data":{}}"#.to_vec(),
            &[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY],
            "bad_request",
        ),
        (
            "unknown field",
            br#"{"type":"recording","colour":"red"}"#.to_vec(),
            &[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY],
            "bad_request",
        ),
        (
            "runner not allowed",
            br#"{"type":"recording","runner":"alpine:latest"}"#.to_vec(),
            &[StatusCode::BAD_REQUEST, StatusCode::FORBIDDEN],
            "",
        ),
        (
            "max duration too long",
            br#"{"type":"recording","max_duration_sec":100000}"#.to_vec(),
            &[StatusCode::BAD_REQUEST],
            "bad_request",
        ),
        (
            "oversized body",
            huge,
            &[StatusCode::PAYLOAD_TOO_LARGE],
            "payload_too_large",
        ),
    ];
    for (what, body, statuses, code) in cases {
        // The server answers 413 without reading the body and then drops the connection, so
        // the request asks not to keep it for the next one.
        let reply = client
            .request_with(
                Method::POST,
                "/jobs",
                Some(body),
                &[("Connection", "close")],
            )
            .await?;
        assert!(
            statuses.contains(&reply.status),
            "{what}: got {} {}",
            reply.status,
            reply.text()
        );
        let error = reply
            .error()
            .map_err(|e| anyhow::anyhow!("{what}: not a JSON error: {e}"))?;
        assert!(!error.error.is_empty(), "{what}: empty message");
        if !code.is_empty() {
            assert_eq!(error.code, code, "{what}: {}", error.error);
        }
    }

    // Bad credentials of every kind: 401 with a JSON error, nothing created.
    let mut wrong_key = client.clone();
    wrong_key.auth = Auth::Basic {
        client_id: client.client_id.clone(),
        auth_key: "wrong-key-wrong-key-wrong-key-wrong-key".into(),
    };
    let mut wrong_token = client.clone();
    wrong_token.auth = Auth::Bearer("not-a-token".into());
    let anonymous = offloader.anonymous();
    for (what, who) in [
        ("wrong key", &wrong_key),
        ("wrong token", &wrong_token),
        ("no auth", &anonymous),
    ] {
        for (method, path, body) in [
            (Method::POST, "/jobs", Some(valid.clone())),
            (Method::GET, "/jobs", None),
        ] {
            let reply = who.request(method.clone(), path, body).await?;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{what} {method} {path}: {}",
                reply.text()
            );
            assert_eq!(reply.error()?.code, "unauthorized", "{what}");
        }
    }
    // Registering without the admin secret is refused, and short keys too.
    let reply = anonymous
        .post_json(
            "/register",
            &json!({"clientID": "intruder", "authKey": "k".repeat(40)}),
        )
        .await?;
    assert!(
        matches!(
            reply.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ),
        "{}",
        reply.text()
    );
    let reply = offloader
        .admin()
        .post_json(
            "/register",
            &json!({"clientID": "shorty", "authKey": "short"}),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let reply = anonymous
        .post_json(
            "/login",
            &json!({"clientID": "intruder", "authKey": "k".repeat(40)}),
        )
        .await?;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());

    // Unknown job ids are 404 JSON errors too.
    let reply = client.get("/jobs/does-not-exist").await?;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error()?.code, "not_found");

    // Nothing changed: no job, no container.
    assert!(client.jobs().await?.is_empty());
    assert!(docker::containers_with_label(&Offloader::label_of(&client))?.is_empty());
    // And the API still works after all that.
    let job = client.create_job(&test_job("exit0", &[])).await?;
    let job = client.wait_final(&job.id, Duration::from_secs(60)).await?;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_id_registered_again_does_not_inherit_the_old_jobs() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("reregister", OffloaderSettings::default()).await?;
    let client_id = format!("e2e-reregister-{}", std::process::id());
    let first_key = "first-owner-key-0123456789abcdefghij";
    let register = |key: &'static str| {
        let admin = offloader.admin();
        let client_id = client_id.clone();
        async move {
            let reply = admin
                .post_json("/register", &json!({"clientID": client_id, "authKey": key}))
                .await?;
            anyhow::ensure!(reply.status == StatusCode::CREATED, "{}", reply.text());
            anyhow::Ok(())
        }
    };
    register(first_key).await?;
    let first = offloader.basic(&client_id, first_key);
    let job = first
        .create_job(&test_job("upload", &[("artifact_bytes", json!(1000))]))
        .await?;
    let job = first.wait_final(&job.id, Duration::from_secs(60)).await?;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let artifacts = first.get(&format!("/jobs/{}/artifacts", job.id)).await?;
    assert_eq!(artifacts.status, StatusCode::OK, "{}", artifacts.text());

    // The admin unregisters the client; someone registers the same id with another key.
    let reply = offloader
        .admin()
        .post_json("/unregister", &json!({"clientID": client_id}))
        .await?;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let second_key = "second-owner-key-0123456789abcdefghij";
    register(second_key).await?;
    let second = offloader.basic(&client_id, second_key);

    // The new owner sees nothing of the old registration's job, logs or artifacts.
    assert!(second.jobs().await?.is_empty());
    for path in [
        format!("/jobs/{}", job.id),
        format!("/jobs/{}/logs", job.id),
        format!("/jobs/{}/artifacts", job.id),
        format!("/jobs/{}/artifacts/output.bin", job.id),
    ] {
        let reply = second.get(&path).await?;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.text()
        );
    }
    // The old key does not work any more either.
    assert_eq!(first.get("/jobs").await?.status, StatusCode::UNAUTHORIZED);
    Ok(())
}
