//! Webhook delivery: on every state change of a job whose client has a webhook, a `POST` of
//! [`WebhookEvent`] signed with `X-Calls-Signature: sha256=<hex HMAC-SHA256(secret, body)>`,
//! retried with doubling backoff. Deliveries are best effort: they are not persisted, so a crash
//! loses the ones in flight (the job state itself is never lost; clients can poll `GET /jobs`).

use std::sync::Arc;
use std::time::Duration;

use calls_protocol::jobs::{WebhookConfig, WebhookEvent};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{JobRecord, Store};
use crate::view::public_job;

pub const SIGNATURE_HEADER: &str = "X-Calls-Signature";
pub const DELIVERY_HEADER: &str = "X-Calls-Delivery";

/// `sha256=<hex>` of the body keyed with the secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before retry `attempt` (1-based): initial, 2×, 4×... capped at 5 minutes.
pub fn backoff(initial: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    initial.saturating_mul(factor).min(Duration::from_secs(300))
}

/// Checks a webhook given at registration or with `PUT /webhook`.
pub fn validate(webhook: &WebhookConfig) -> crate::error::Result<()> {
    let url = webhook.url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
        return Err(crate::error::Error::BadRequest(
            "webhook.url must be an http:// or https:// URL".into(),
        ));
    }
    if webhook.secret.chars().count() < 16 {
        return Err(crate::error::Error::BadRequest(
            "webhook.secret must be at least 16 characters".into(),
        ));
    }
    Ok(())
}

#[derive(Clone)]
pub struct Webhooks {
    http: reqwest::Client,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    max_attempts: u32,
    initial_backoff: Duration,
}

impl Webhooks {
    pub fn new(config: &Config, store: Arc<Store>, metrics: Arc<Metrics>) -> Webhooks {
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Webhooks {
            http,
            store,
            metrics,
            max_attempts: config.webhook_max_attempts,
            initial_backoff: config.webhook_initial_backoff,
        }
    }

    /// Sends the job's current state to its client's webhook, if any, in the background.
    pub fn notify(&self, job: &JobRecord) {
        let webhook = match self.store.client(&job.client_id) {
            Ok(Some(client)) => client.webhook,
            _ => None,
        };
        let Some(webhook) = webhook else { return };
        let event = WebhookEvent {
            event: "job.state_changed".into(),
            job: public_job(job),
            sent_at: crate::now_ms(),
        };
        let body = serde_json::to_vec(&event).expect("webhook events always serialize");
        let this = self.clone();
        let job_id = job.id.clone();
        tokio::spawn(async move { this.deliver(webhook, body, job_id).await });
    }

    async fn deliver(&self, webhook: WebhookConfig, body: Vec<u8>, job_id: String) {
        let signature = signature(&webhook.secret, &body);
        let delivery = uuid::Uuid::new_v4().to_string();
        for attempt in 1..=self.max_attempts {
            let result = self
                .http
                .post(&webhook.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .header(DELIVERY_HEADER, &delivery)
                .body(body.clone())
                .send()
                .await;
            let error = match result {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => format!("status {}", response.status()),
                Err(e) => e.without_url().to_string(),
            };
            let gave_up = attempt == self.max_attempts;
            self.metrics
                .webhook_failures
                .with_label_values(&[if gave_up { "true" } else { "false" }])
                .inc();
            tracing::warn!(job_id, attempt, gave_up, error, "webhook delivery failed");
            if !gave_up {
                tokio::time::sleep(backoff(self.initial_backoff, attempt)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs(1);
        assert_eq!(backoff(s, 1), s);
        assert_eq!(backoff(s, 2), 2 * s);
        assert_eq!(backoff(s, 4), 8 * s);
        assert_eq!(backoff(s, 40), Duration::from_secs(300));
    }
}
