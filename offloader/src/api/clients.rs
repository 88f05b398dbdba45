//! Client routes: `POST /register`, `POST /unregister`, `POST /login`, `PUT|DELETE /webhook`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use calls_protocol::jobs::{
    LoginRequest, LoginResponse, RegisterRequest, UnregisterRequest, WebhookConfig,
};

use super::{parse_json, ApiBytes, ApiJson};
use crate::auth::{self, ClientAuth, Credentials, MaybeCredentials};
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

pub async fn register(
    State(state): State<AppState>,
    MaybeCredentials(credentials, _source): MaybeCredentials,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response> {
    if !auth::is_admin(&state, credentials.as_ref()) && !state.config.self_registration {
        return Err(Error::Unauthorized(
            "registration needs the admin secret as a bearer token (self-registration is off)"
                .into(),
        ));
    }
    validate_registration(&request, state.config.allow_private_webhooks)?;
    if state.store.client(&request.client_id)?.is_some() {
        return Err(Error::Conflict(format!(
            "client {:?} is already registered",
            request.client_id
        )));
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
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "clientID": request.client_id })),
    )
        .into_response())
}

/// Unregisters the calling client (its own Basic/bearer credentials, no body needed) or, with
/// the admin secret, the client named in the body.
pub async fn unregister(
    State(state): State<AppState>,
    MaybeCredentials(credentials, source): MaybeCredentials,
    ApiBytes(body): ApiBytes,
) -> Result<StatusCode> {
    let client_id = if auth::is_admin(&state, credentials.as_ref()) {
        parse_json::<UnregisterRequest>(&body)?.client_id
    } else {
        let client_id = match credentials {
            Some(Credentials::Basic {
                client_id,
                auth_key,
            }) if auth::verify_client(&state, &client_id, &auth_key, source).await? => client_id,
            Some(Credentials::Bearer(token)) => {
                state
                    .store
                    .token_client(&auth::token_hash(&token), now_ms())?
                    .ok_or_else(|| Error::Unauthorized("invalid or expired token".into()))?
                    .0
            }
            _ => {
                return Err(Error::Unauthorized(
                    "unregister needs the client's credentials or the admin secret".into(),
                ))
            }
        };
        if !body.is_empty() {
            let named = parse_json::<UnregisterRequest>(&body)?.client_id;
            if named != client_id {
                return Err(Error::Forbidden(
                    "a client can only unregister itself".into(),
                ));
            }
        }
        client_id
    };
    let Some(client) = state.store.client(&client_id)? else {
        return Err(Error::NotFound(format!(
            "client {client_id:?} is not registered"
        )));
    };
    // The registration goes first (no new job or token can appear), then its jobs.
    if !state.store.delete_client(&client_id)? {
        return Err(Error::NotFound(format!(
            "client {client_id:?} is not registered"
        )));
    }
    state.keys.forget_all();
    let jobs = crate::runner::remove_client_jobs(&state, &client.uid).await?;
    tracing::info!(
        client_id,
        jobs_removed = jobs.removed,
        jobs_cancelled = jobs.cancelled,
        jobs_stopping = jobs.stopping,
        "client unregistered; its running jobs are removed when they end"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Exchanges credentials (JSON body or Basic header) for a bearer token.
pub async fn login(
    State(state): State<AppState>,
    MaybeCredentials(credentials, source): MaybeCredentials,
    ApiBytes(body): ApiBytes,
) -> Result<Json<LoginResponse>> {
    let (client_id, auth_key) = if !body.is_empty() {
        let request: LoginRequest = parse_json(&body)?;
        (request.client_id, request.auth_key)
    } else if let Some(Credentials::Basic {
        client_id,
        auth_key,
    }) = credentials
    {
        (client_id, auth_key)
    } else {
        return Err(Error::Unauthorized(
            "login needs {clientID, authKey} in the body or Basic auth".into(),
        ));
    };
    let Some(client) = auth::verified_client(&state, &client_id, &auth_key, source).await? else {
        return Err(Error::Unauthorized(
            "unknown clientID or wrong authKey".into(),
        ));
    };
    let token = auth::new_token();
    let expires_at = now_ms() + state.config.token_ttl.as_millis() as i64;
    let revoked = state.store.insert_token(
        &auth::token_hash(&token),
        &client,
        expires_at,
        state.config.max_tokens_per_client,
    )?;
    if revoked > 0 {
        tracing::info!(
            client_id = client.id,
            revoked,
            "revoked the oldest bearer tokens (api.max_tokens_per_client)"
        );
    }
    Ok(Json(LoginResponse { token, expires_at }))
}

pub async fn set_webhook(
    State(state): State<AppState>,
    ClientAuth { client_id, .. }: ClientAuth,
    ApiJson(config): ApiJson<WebhookConfig>,
) -> Result<StatusCode> {
    webhook::validate(&config, state.config.allow_private_webhooks)?;
    state.store.set_webhook(&client_id, Some(&config))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    ClientAuth { client_id, .. }: ClientAuth,
) -> Result<StatusCode> {
    state.store.set_webhook(&client_id, None)?;
    Ok(StatusCode::NO_CONTENT)
}
