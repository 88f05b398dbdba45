//! Registering a client: the rules of a registration (client id, key length, webhook) and the
//! insert with the key's argon2 hash. Used by `POST /register` and by self-registration, where an
//! unknown client registers on its first request with Basic credentials (`api.self_registration`,
//! how Mattermost's Calls plugin starts using an offloader).

use calls_protocol::jobs::RegisterRequest;

use crate::error::{Error, Result};
use crate::store::ClientRecord;
use crate::{now_ms, webhook, AppState};

const MIN_KEY_CHARS: usize = 32;

fn validate_client_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "clientID must be 1-64 of A-Z a-z 0-9 . _ -".into(),
        ))
    }
}

/// The rules of a registration body by itself: client id 1–64 of `A-Z a-z 0-9 . _ -`, key of
/// 32–256 characters, webhook (if any) as `webhook::validate` says.
pub fn validate_registration(request: &RegisterRequest, allow_private: bool) -> Result<()> {
    validate_client_id(&request.client_id)?;
    let key_chars = request.auth_key.chars().count();
    if !(MIN_KEY_CHARS..=256).contains(&key_chars) {
        return Err(Error::BadRequest(format!(
            "authKey must be {MIN_KEY_CHARS} to 256 characters"
        )));
    }
    if let Some(webhook) = &request.webhook {
        webhook::validate(webhook, allow_private)?;
    }
    Ok(())
}

/// Validates and stores a new client; 409 `conflict` when the id is taken.
pub async fn register_client(state: &AppState, request: RegisterRequest) -> Result<()> {
    validate_registration(&request, state.config.webhooks.allow_private)?;
    if state.store.client(&request.client_id)?.is_some() {
        return Err(already_registered(&request.client_id));
    }
    let key_hash = state.keys.hash(&request.auth_key).await?;
    state.store.insert_client(
        &ClientRecord {
            id: request.client_id.clone(),
            uid: uuid::Uuid::new_v4().simple().to_string(),
            key_hash,
            webhook: request.webhook,
        },
        now_ms(),
    )?;
    tracing::info!(client_id = request.client_id, "client registered");
    Ok(())
}

fn already_registered(client_id: &str) -> Error {
    Error::Conflict(format!("client {client_id:?} is already registered"))
}

/// Self-registration: with `api.self_registration` on, Basic credentials of an unknown client
/// register it before they are checked (so its first request, say `POST /jobs/init`, succeeds).
/// A client that exists, or that a concurrent request registered first, is left alone: its key
/// is then checked as usual. Credentials that could not be registered are a 401.
pub async fn register_on_first_use(
    state: &AppState,
    client_id: &str,
    auth_key: &str,
) -> Result<()> {
    if !state.config.api.self_registration || state.store.client(client_id)?.is_some() {
        return Ok(());
    }
    let request = RegisterRequest {
        client_id: client_id.to_string(),
        auth_key: auth_key.to_string(),
        webhook: None,
    };
    match register_client(state, request).await {
        Ok(()) | Err(Error::Conflict(_)) => Ok(()),
        Err(Error::BadRequest(why)) => Err(Error::Unauthorized(format!(
            "unknown client, and self-registration refused it: {why}"
        ))),
        Err(other) => Err(other),
    }
}
