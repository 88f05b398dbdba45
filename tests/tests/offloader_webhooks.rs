//! Webhooks end to end: the real offloader calls a client's URL on every state change of its
//! jobs, signs each body with HMAC-SHA256, retries a failed delivery with the same delivery id,
//! and never puts a secret input in the body.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use calls_e2e::offloader::{serial, test_job, Offloader, OffloaderSettings};
use calls_e2e::webhook_sink::{expected_signature, WebhookSink};
use calls_protocol::jobs::{JobState, WebhookConfig, WebhookEvent};
use serde_json::json;

const HOOK_SECRET: &str = "e2e-webhook-secret-0123456789";
const INPUT_SECRET: &str = "bot-token-in-webhook-test-5e6f7a8b";

#[tokio::test(flavor = "multi_thread")]
async fn state_changes_are_posted_signed_and_retried() -> anyhow::Result<()> {
    let _serial = serial().await;
    // The first delivery is answered 500, so at least one retry must happen.
    let sink = WebhookSink::start(1).await?;
    let offloader = Offloader::start("webhooks", OffloaderSettings::default()).await?;
    let webhook = WebhookConfig {
        url: sink.url.clone(),
        secret: HOOK_SECRET.to_owned(),
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
