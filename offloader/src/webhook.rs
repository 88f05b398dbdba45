//! Webhook delivery: on every state change of a job whose client has a webhook, a `POST` of
//! [`WebhookEvent`] signed with `X-Calls-Signature: sha256=<hex HMAC-SHA256(secret, body)>`,
//! retried with doubling backoff. Deliveries are best effort: they are not persisted, so a crash
//! loses the ones in flight (the job state itself is never lost; clients can poll `GET /jobs`).
//!
//! A webhook URL is chosen by a client, so it must not become a way into the offloader's own
//! network (SSRF): unless `webhooks.allow_private` is set, the host is resolved at every attempt,
//! loopback, private, link-local (cloud metadata), shared, multicast and reserved addresses are
//! refused, the request is pinned to the address that was checked (a second DNS answer cannot
//! swap it), and redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// True for addresses a webhook may reach without `webhooks.allow_private`: not loopback,
/// private (RFC 1918, ULA), link-local (which holds the cloud metadata services), shared
/// (CGNAT), unspecified, broadcast, multicast, documentation or reserved ranges. IPv4-mapped,
/// IPv4-compatible and well-known NAT64 (`64:ff9b::/96`) IPv6 addresses are judged by the IPv4
/// address they carry; the prefixes whose IPv4 address sits where it cannot be checked in
/// general (local-use NAT64 `64:ff9b:1::/48`, Teredo `2001::/32`, 6to4 `2002::/16`) are refused.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                   // "this network"
        || a == 10                              // private
        || a == 127                             // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT, some metadata)
        || (a == 169 && b == 254)               // link-local, cloud metadata 169.254.169.254
        || (a == 172 && (16..32).contains(&b))  // private
        || (a == 192 && b == 0 && c == 0)       // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)       // documentation
        || (a == 192 && b == 88 && c == 99)     // 6to4 relay anycast
        || (a == 192 && b == 168)               // private
        || (a == 198 && (b == 18 || b == 19))   // benchmarking
        || (a == 198 && b == 51 && c == 100)    // documentation
        || (a == 203 && b == 0 && c == 113)     // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) carry an IPv4 address.
    if s[..6] == [0, 0, 0, 0, 0, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return !ip.is_loopback() && !ip.is_unspecified() && is_public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00          // unique local fc00::/7 (AWS metadata fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80          // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0          // site-local (deprecated) fec0::/10
        || (s[0] & 0xff00) == 0xff00          // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001) // local-use NAT64 64:ff9b:1::/48 (RFC 8215): any IPv4, any embedding
        || (s[0] & 0xff00) == 0 // the rest of ::/8 (reserved by the IETF; NAT64 and the mapped forms were judged above)
        || (s[0] == 0x2001 && s[1] == 0x0000) // Teredo 2001::/32: tunnels to an IPv4 address of either kind
        || s[0] == 0x2002) // 6to4: carries an IPv4 address of either kind
}

/// The host of a URL: an address, or a name still to resolve.
enum UrlHost<'a> {
    Address(IpAddr),
    Name(&'a str),
}

/// `Url::host_str` writes IPv6 in brackets and IPv4 normalised (`http://2130706433/` becomes
/// `127.0.0.1`), so parsing it back gives the address the URL really names.
fn url_host(url: &reqwest::Url) -> Option<UrlHost<'_>> {
    let host = url.host_str().filter(|h| !h.is_empty())?;
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse()
            .ok()
            .map(|v6: Ipv6Addr| UrlHost::Address(IpAddr::V6(v6)));
    }
    Some(match host.parse::<Ipv4Addr>() {
        Ok(v4) => UrlHost::Address(IpAddr::V4(v4)),
        Err(_) => UrlHost::Name(host),
    })
}

/// Checks a webhook given at registration or with `PUT /webhook`: an http(s) URL with a host
/// and no credentials, a secret of at least 16 characters, and (unless `allow_private`) no
/// literal address that is not public. Host names are checked when each delivery resolves them.
pub fn validate(webhook: &WebhookConfig, allow_private: bool) -> crate::error::Result<()> {
    let bad = |why: &str| crate::error::Error::BadRequest(format!("webhook.url {why}"));
    let text = webhook.url.trim();
    if text.len() > 2048 {
        return Err(bad("is longer than 2048 characters"));
    }
    let url = reqwest::Url::parse(text).map_err(|_| bad("must be an http:// or https:// URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not contain credentials (the body is signed instead)",
        ));
    }
    let literal = match url_host(&url) {
        None => return Err(bad("has no host")),
        Some(UrlHost::Address(ip)) => Some(ip),
        Some(UrlHost::Name(_)) => None,
    };
    if literal.is_some_and(|ip| !allow_private && !is_public_address(ip)) {
        return Err(bad(
            "points at a loopback, private, link-local or reserved address (allowed only with webhooks.allow_private)",
        ));
    }
    if webhook.secret.char_count() < 16 {
        return Err(crate::error::Error::BadRequest(
            "webhook.secret must be at least 16 characters".into(),
        ));
    }
    Ok(())
}

/// Where one delivery goes: the URL's host resolved now, the first acceptable address.
/// `Err` says why nothing acceptable was found (never containing the URL's path or query).
async fn resolve_target(url: &reqwest::Url, allow_private: bool) -> Result<SocketAddr, String> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "the URL has no port".to_string())?;
    let candidates: Vec<SocketAddr> = match url_host(url) {
        Some(UrlHost::Address(ip)) => vec![SocketAddr::new(ip, port)],
        Some(UrlHost::Name(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| format!("cannot resolve the webhook host: {e}"))?
            .collect(),
        None => return Err("the URL has no host".into()),
    };
    candidates
        .iter()
        .copied()
        .find(|address| allow_private || is_public_address(address.ip()))
        .ok_or_else(|| {
            "refused: the webhook host resolves only to loopback, private, link-local or reserved addresses (webhooks.allow_private is off)".to_string()
        })
}

#[derive(Clone)]
pub struct Webhooks {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    max_attempts: u32,
    initial_backoff: Duration,
    timeout: Duration,
    allow_private: bool,
}

impl Webhooks {
    pub fn new(config: &Config, store: Arc<Store>, metrics: Arc<Metrics>) -> Webhooks {
        Webhooks {
            store,
            metrics,
            max_attempts: config.webhooks.max_attempts,
            initial_backoff: config.webhooks.initial_backoff,
            timeout: config.webhooks.timeout,
            allow_private: config.webhooks.allow_private,
        }
    }

    /// One attempt: resolve and check the host, then POST to the checked address only, without
    /// following redirects. `Err` is a message for the log.
    async fn attempt(
        &self,
        url: &reqwest::Url,
        body: &[u8],
        signature: &str,
        delivery: &str,
    ) -> Result<(), String> {
        let target = resolve_target(url, self.allow_private).await?;
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(UrlHost::Name(name)) = url_host(url) {
            // Pinned: the connection goes to the address checked above, whatever DNS says next.
            builder = builder.resolve(name, target);
        }
        let http = builder
            .build()
            .map_err(|e| format!("http client: {}", e.without_url()))?;
        let response = http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(DELIVERY_HEADER, delivery)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(format!("status {status}: redirects are not followed"))
        } else {
            Err(format!("status {status}"))
        }
    }

    /// Sends the job's current state to its client's webhook, if any, in the background.
    pub fn notify(&self, job: &JobRecord) {
        // The owner registration's webhook: a later registration of the same client id is
        // another client and hears nothing of these jobs.
        let webhook = match self.store.client_by_uid(&job.owner) {
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
        let signature = signature(webhook.secret.expose(), &body);
        let delivery = uuid::Uuid::new_v4().to_string();
        let url = reqwest::Url::parse(webhook.url.trim());
        for attempt in 1..=self.max_attempts {
            let result = match &url {
                Ok(url) => self.attempt(url, &body, &signature, &delivery).await,
                Err(_) => Err("the stored webhook URL does not parse".to_string()),
            };
            let Err(error) = result else { return };
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
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.170",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "fec0::1",
            // Local-use NAT64 (RFC 8215), whatever IPv4 address it embeds where.
            "64:ff9b:1::a00:1",
            "64:ff9b:1:a00:1::",
            "64:ff9b:1::101:101",
            // Teredo: the client's IPv4 address is obfuscated in the last 32 bits.
            "2001::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            // Well-known NAT64 with private, loopback, CGNAT and metadata IPv4 addresses.
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b::c0a8:101",
            "64:ff9b::6440:1",
            // The rest of ::/8 is reserved by the IETF.
            "64:ff9b:2::1",
            "1::1",
        ] {
            let ip: IpAddr = private.parse().expect("address");
            assert!(!is_public_address(ip), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "169.253.1.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2001:4860:4860::8888",
        ] {
            let ip: IpAddr = public.parse().expect("address");
            assert!(is_public_address(ip), "{public}");
        }
    }

    #[test]
    fn webhook_urls_are_checked() {
        let hook = |url: &str| WebhookConfig {
            url: url.into(),
            secret: "0123456789abcdef".into(),
        };
        assert!(validate(&hook("https://hooks.example.com/x"), false).is_ok());
        assert!(validate(&hook("http://1.1.1.1:8080/x"), false).is_ok());
        for bad in [
            "ftp://x",
            "http://",
            "not a url",
            "http://127.0.0.1/x",
            "http://[::1]:80/x",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/x",
            "http://user:pass@example.com/x",
            "http://2130706433/x",
            "http://0x7f.1/x",
        ] {
            assert!(validate(&hook(bad), false).is_err(), "{bad}");
        }
        assert!(validate(&hook("http://127.0.0.1/x"), true).is_ok());
        let short = WebhookConfig {
            url: "https://example.com".into(),
            secret: "short".into(),
        };
        assert!(validate(&short, false).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_unless_allowed() {
        let url = reqwest::Url::parse("http://localhost:9/hook").expect("url");
        let refused = resolve_target(&url, false).await.expect_err("loopback");
        assert!(refused.contains("webhooks.allow_private"), "{refused}");
        let allowed = resolve_target(&url, true).await.expect("allowed");
        assert!(allowed.ip().is_loopback());
        assert_eq!(allowed.port(), 9);
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
