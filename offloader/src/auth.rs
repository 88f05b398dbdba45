//! Credentials: client keys hashed with argon2id (verified through [`keys::KeyVerifier`], which
//! bounds what that costs), bearer and job tokens (random, 256 bit) stored as SHA-256 hashes
//! (enough for high-entropy tokens, and fast on every request), parsing of the `Authorization`
//! header, and the [`ClientAuth`] extractor used by every client route.

pub mod keys;
pub mod registration;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::ClientRecord;
use crate::AppState;

/// What an `Authorization` header carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    Basic { client_id: String, auth_key: String },
    Bearer(String),
}

/// Parses `Basic <base64 id:key>` or `Bearer <token>`; `None` when absent or malformed.
pub fn parse_authorization(header: Option<&str>) -> Option<Credentials> {
    let header = header?.trim();
    let (scheme, value) = header.split_once(' ')?;
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
        return Some(Credentials::Bearer(value.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (client_id, auth_key) = text.split_once(':')?;
        return Some(Credentials::Basic {
            client_id: client_id.to_string(),
            auth_key: auth_key.to_string(),
        });
    }
    None
}

/// A fresh 256-bit token, URL-safe base64.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when the header carries the configured admin secret: as a bearer token, or as the
/// password of Basic auth with an empty user (how Mattermost's admin client sends it).
pub fn is_admin(state: &AppState, credentials: Option<&Credentials>) -> bool {
    match (&state.config.api.admin_secret, credentials) {
        (Some(secret), Some(Credentials::Bearer(given))) => {
            constant_time_eq(secret.as_bytes(), given.as_bytes())
        }
        (
            Some(secret),
            Some(Credentials::Basic {
                client_id,
                auth_key,
            }),
        ) if client_id.is_empty() => constant_time_eq(secret.as_bytes(), auth_key.as_bytes()),
        _ => false,
    }
}

/// Verifies a client id and key (cached, bounded and rate-limited: see [`keys`]).
pub async fn verify_client(
    state: &AppState,
    client_id: &str,
    auth_key: &str,
    source: Option<IpAddr>,
) -> Result<bool> {
    Ok(verified_client(state, client_id, auth_key, source)
        .await?
        .is_some())
}

/// [`verify_client`], returning the client's record when the key is right.
pub async fn verified_client(
    state: &AppState,
    client_id: &str,
    auth_key: &str,
    source: Option<IpAddr>,
) -> Result<Option<ClientRecord>> {
    let checks = &state.metrics.auth_key_checks;
    match state
        .keys
        .verify(&state.store, client_id, auth_key, source)
        .await
    {
        Ok((client, outcome)) => {
            checks.with_label_values(&[outcome.as_str()]).inc();
            Ok(client)
        }
        Err(error) => {
            if matches!(error, Error::RateLimited(_)) {
                checks.with_label_values(&["rate_limited"]).inc();
            }
            Err(error)
        }
    }
}

/// The peer address of the connection a request came on (absent when driven without a socket).
pub fn source_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

fn authorization(parts: &Parts) -> Option<Credentials> {
    parse_authorization(
        parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The authenticated client of a request (Basic id:key or a bearer token from `/login`): its
/// client id and the internal uid of its registration, which is what owns jobs.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub client_id: String,
    pub owner: String,
}

impl FromRequestParts<AppState> for ClientAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let unauthorized = || {
            Error::Unauthorized(
                "missing or invalid credentials: use Basic clientID:authKey or a bearer token from /login"
                    .into(),
            )
        };
        match authorization(parts) {
            Some(Credentials::Basic {
                client_id,
                auth_key,
            }) => {
                registration::register_on_first_use(state, &client_id, &auth_key).await?;
                match verified_client(state, &client_id, &auth_key, source_address(parts)).await? {
                    Some(client) => Ok(ClientAuth {
                        client_id: client.id,
                        owner: client.uid,
                    }),
                    None => Err(unauthorized()),
                }
            }
            Some(Credentials::Bearer(token)) => {
                match state
                    .store
                    .token_client(&token_hash(&token), crate::now_ms())?
                {
                    Some((client_id, owner)) => Ok(ClientAuth { client_id, owner }),
                    None => Err(unauthorized()),
                }
            }
            None => Err(unauthorized()),
        }
    }
}

/// The raw credentials of a request, for routes that accept admin or client auth, with the
/// connection's source address (for the failure limit).
#[derive(Debug)]
pub struct MaybeCredentials(pub Option<Credentials>, pub Option<IpAddr>);

impl FromRequestParts<AppState> for MaybeCredentials {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self> {
        Ok(MaybeCredentials(
            authorization(parts),
            source_address(parts),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers_parse() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("client:key:with:colons")
        );
        assert_eq!(
            parse_authorization(Some(&basic)),
            Some(Credentials::Basic {
                client_id: "client".into(),
                auth_key: "key:with:colons".into()
            })
        );
        assert_eq!(
            parse_authorization(Some("bearer abc")),
            Some(Credentials::Bearer("abc".into()))
        );
        assert_eq!(parse_authorization(Some("Basic !!!")), None);
        assert_eq!(parse_authorization(Some("Bearer ")), None);
        assert_eq!(parse_authorization(None), None);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
