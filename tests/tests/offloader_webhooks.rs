//! Webhooks end to end: the real offloader calls a client's URL on every state change of its
//! jobs, signs each body with HMAC-SHA256, retries a failed delivery with the same delivery id,
//! and never puts a secret input in the body. By default it refuses webhooks that reach
//! loopback or private addresses (the sinks here listen on loopback, so the delivery tests turn
//! `webhooks.allow_private` on) and it never follows a redirect.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calls_e2e::offloader::{serial, test_job, Offloader, OffloaderSettings};
use calls_e2e::webhook_sink::{expected_signature, WebhookSink};
use calls_protocol::jobs::{JobState, WebhookConfig, WebhookEvent};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOOK_SECRET: &str = "e2e-webhook-secret-0123456789";
const INPUT_SECRET: &str = "bot-token-in-webhook-test-5e6f7a8b";

#[tokio::test(flavor = "multi_thread")]
async fn state_changes_are_posted_signed_and_retried() -> anyhow::Result<()> {
    let _serial = serial().await;
    // The first delivery is answered 500, so at least one retry must happen.
    let sink = WebhookSink::start(1).await?;
    let offloader = Offloader::start("webhooks", allow_private()).await?;
    let webhook = WebhookConfig {
        url: sink.url.clone(),
        secret: HOOK_SECRET.into(),
    };
    let client = offloader.register_with_webhook("a", Some(webhook)).await?;

    let job = client
        .create_job(&test_job("exit0", &[("bot_token", json!(INPUT_SECRET))]))
        .await?;
    let job = client.wait_final(&job.id, Duration::from_secs(60)).await?;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");

    // Deliveries are asynchronous: wait until the final state has been accepted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let deliveries = loop {
        let deliveries = sink.deliveries();
        let done = deliveries.iter().any(|d| {
            d.answered == 200
                && serde_json::from_slice::<WebhookEvent>(&d.body)
                    .is_ok_and(|e| e.job.state == JobState::Succeeded)
        });
        if done {
            break deliveries;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no accepted `succeeded` webhook: {deliveries:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let mut states = BTreeSet::new();
    for delivery in &deliveries {
        let signature = delivery
            .headers
            .get("x-calls-signature")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            signature,
            expected_signature(HOOK_SECRET, &delivery.body),
            "signed over the exact body"
        );
        let text = String::from_utf8_lossy(&delivery.body);
        assert!(!text.contains(INPUT_SECRET), "a webhook leaked the secret");
        assert!(!text.contains(HOOK_SECRET), "a webhook leaked its own key");
        let event: WebhookEvent = serde_json::from_slice(&delivery.body)?;
        assert_eq!(event.event, "job.state_changed");
        assert_eq!(event.job.id, job.id);
        states.insert(event.job.state);
    }
    for state in [JobState::Running, JobState::Succeeded] {
        assert!(states.contains(&state), "no {state} webhook: {states:?}");
    }

    // The refused delivery came again with the same delivery id and was then accepted.
    let refused = deliveries
        .iter()
        .find(|d| d.answered == 500)
        .expect("the sink refused the first delivery");
    let id = refused.headers.get("x-calls-delivery").cloned();
    assert!(id.is_some(), "{:?}", refused.headers);
    let retried = deliveries
        .iter()
        .filter(|d| d.headers.get("x-calls-delivery") == id.as_ref())
        .collect::<Vec<_>>();
    assert!(
        retried.len() >= 2 && retried.iter().any(|d| d.answered == 200),
        "{retried:?}"
    );
    assert!(retried.windows(2).all(|w| w[0].body == w[1].body));
    Ok(())
}

/// Test offloaders whose webhooks may reach the loopback sinks.
fn allow_private() -> OffloaderSettings {
    OffloaderSettings {
        extra_env: vec![("OFFLOADER_WEBHOOKS_ALLOW_PRIVATE".into(), "true".into())],
        ..OffloaderSettings::default()
    }
}

/// Waits until the offloader gave up on a webhook delivery; returns its log.
async fn wait_gave_up(offloader: &Offloader) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let gave_up = offloader
            .metric("calls_offloader_webhook_failures_total{gave_up=\"true\"}")
            .await?;
        if gave_up >= 1.0 {
            return Ok(offloader.log_text());
        }
        anyhow::ensure!(Instant::now() < deadline, "no delivery was given up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_to_private_addresses_are_refused_by_default() -> anyhow::Result<()> {
    let _serial = serial().await;
    let sink = WebhookSink::start(0).await?;
    let offloader = Offloader::start("webhookssrf", OffloaderSettings::default()).await?;
    let port = sink.url.rsplit(':').next().unwrap_or_default().to_owned();

    // A literal loopback, private or metadata address is refused when it is given.
    for url in [
        sink.url.clone(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://[::1]/hook".to_owned(),
    ] {
        let reply = offloader
            .admin()
            .post_json(
                "/register",
                &json!({"clientID": "ssrf-literal", "authKey": "k".repeat(40),
                        "webhook": {"url": url, "secret": HOOK_SECRET}}),
            )
            .await?;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{url}: {}",
            reply.text()
        );
        assert!(
            reply.text().contains("webhooks.allow_private"),
            "{}",
            reply.text()
        );
    }

    // A name that resolves to loopback passes the check at registration, but every delivery
    // resolves it, finds no public address and refuses: the sink never hears from us.
    let by_name = WebhookConfig {
        url: format!("http://localhost:{port}"),
        secret: HOOK_SECRET.into(),
    };
    let client = offloader.register_with_webhook("a", Some(by_name)).await?;
    let job = client.create_job(&test_job("exit0", &[])).await?;
    let job = client.wait_final(&job.id, Duration::from_secs(60)).await?;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let log = wait_gave_up(&offloader).await?;
    assert!(log.contains("resolves only to loopback"), "{log}");
    assert!(sink.deliveries().is_empty(), "{:?}", sink.deliveries());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_redirects_are_not_followed() -> anyhow::Result<()> {
    let _serial = serial().await;
    let sink = WebhookSink::start(0).await?;
    // Answers every request with a 307 to the sink, which would receive the body if followed.
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let redirector_url = format!("http://{}/hook", redirector.local_addr()?);
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let location = sink.url.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = redirector.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 16 * 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    let offloader = Offloader::start("webhookredirect", allow_private()).await?;
    let webhook = WebhookConfig {
        url: redirector_url,
        secret: HOOK_SECRET.into(),
    };
    let client = offloader.register_with_webhook("a", Some(webhook)).await?;
    let job = client.create_job(&test_job("exit0", &[])).await?;
    client.wait_final(&job.id, Duration::from_secs(60)).await?;
    let log = wait_gave_up(&offloader).await?;
    server.abort();
    assert!(
        hits.load(Ordering::SeqCst) >= 1,
        "the redirector was called"
    );
    assert!(log.contains("redirects are not followed"), "{log}");
    assert!(sink.deliveries().is_empty(), "{:?}", sink.deliveries());
    Ok(())
}
