//! The ICE servers handed to each session in `joined`: the configured TURN servers with a
//! credential of coturn's "REST API" scheme (`use-auth-secret` + `static-auth-secret`), which
//! coturn checks without asking anyone: the username is `<unix expiry>:<session id>` and the
//! password is `base64(HMAC-SHA1(secret, username))`. A credential is good until its expiry, so a
//! leaked one stops working by itself; the secret never leaves the SFU.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use calls_protocol::signalling::IceServer;
use hmac::{Hmac, Mac};

use crate::config::{IceConfig, TurnConfig};

/// The coturn REST-scheme credential for `id`, valid until `now + ttl`: (username, password).
pub fn credential(secret: &[u8], id: &str, now: SystemTime, ttl: Duration) -> (String, String) {
    let expiry = (now + ttl)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let username = format!("{expiry}:{id}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

/// What a session is told to use: the TURN servers with its own credential, or nothing.
pub fn ice_servers(ice: &IceConfig, session_id: &str, now: SystemTime) -> Vec<IceServer> {
    let Some(TurnConfig {
        urls,
        static_auth_secret,
        credential_ttl,
    }) = &ice.turn
    else {
        return Vec::new();
    };
    let (username, password) = credential(
        static_auth_secret.as_bytes(),
        session_id,
        now,
        *credential_ttl,
    );
    vec![IceServer {
        urls: urls.clone(),
        username: Some(username),
        credential: Some(password),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn credentials_follow_the_coturn_rest_scheme() {
        // Reference value computed independently:
        // printf '%s' '1700003600:s1' | openssl dgst -sha1 -hmac 'north-south-east-west' -binary | base64
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (user, pass) = credential(
            b"north-south-east-west",
            "s1",
            now,
            Duration::from_secs(3600),
        );
        assert_eq!(user, "1700003600:s1");
        assert_eq!(pass, REFERENCE);
    }

    const REFERENCE: &str = "DlD3aHVbpUdCcj0ymSN5UAllzxU=";

    #[test]
    fn every_session_gets_its_own_expiring_credential() {
        let mut ice = crate::Config::for_local_test("x").ice;
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(ice_servers(&ice, "s1", now).is_empty());
        ice.turn = Some(TurnConfig {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            static_auth_secret: Secret::new("0123456789abcdef"),
            credential_ttl: Duration::from_secs(600),
        });
        let a = ice_servers(&ice, "s1", now);
        let b = ice_servers(&ice, "s2", now);
        assert_eq!(a[0].urls, ["turn:127.0.0.1:3478?transport=udp"]);
        assert_eq!(a[0].username.as_deref(), Some("1600:s1"));
        assert_ne!(a[0].credential, b[0].credential);
        let json = serde_json::to_string(&a).unwrap();
        assert!(
            !json.contains("0123456789abcdef"),
            "the secret leaks: {json}"
        );
    }
}
