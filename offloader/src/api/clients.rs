//! Client routes: `POST /register`, `POST /unregister`, `POST /login`, `PUT|DELETE /webhook`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use calls_protocol::jobs::{
    LoginRequest, LoginResponse, RegisterRequest, UnregisterRequest, UnregisterResponse,
    WebhookConfig,
};

use super::{parse_json, ApiBytes, ApiJson};
use crate::auth::registration::register_client;
use crate::auth::{self, ClientAuth, Credentials, MaybeCredentials};
use crate::error::{Error, Result};
use crate::{now_ms, webhook, AppState};

pub async fn register(
    State(state): State<AppState>,
    MaybeCredentials(credentials, _source): MaybeCredentials,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response> {
    if !auth::is_admin(&state, credentials.as_ref()) && !state.config.api.self_registration {
        return Err(Error::Unauthorized(
            "registration needs the admin secret (bearer, or Basic with an empty user; self-registration is off)"
                .into(),
        ));
    }
    let client_id = request.client_id.clone();
    register_client(&state, request).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "clientID": client_id })),
    )
        .into_response())
}

/// Unregisters the calling client (its own Basic/bearer credentials, no body needed) or, with
/// the admin secret, the client named in the body. 200 with `{"clientID"}`.
pub async fn unregister(
    State(state): State<AppState>,
    MaybeCredentials(credentials, source): MaybeCredentials,
    ApiBytes(body): ApiBytes,
) -> Result<Json<UnregisterResponse>> {
    let client_id = if auth::is_admin(&state, credentials.as_ref()) {
        let client_id = parse_json::<UnregisterRequest>(&body)?.client_id;
        if client_id.is_empty() {
            return Err(Error::BadRequest("clientID must not be empty".into()));
        }
        client_id
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
    Ok(Json(UnregisterResponse { client_id }))
}

/// Exchanges credentials (JSON body or Basic header) for a bearer token:
/// `{"bearerToken", "expires_at"}`, every value a string (see `LoginResponse`).
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
    let expires_at = now_ms() + state.config.api.token_ttl.as_millis() as i64;
    let revoked = state.store.insert_token(
        &auth::token_hash(&token),
        &client,
        expires_at,
        state.config.api.max_tokens_per_client,
    )?;
    if revoked > 0 {
        tracing::info!(
            client_id = client.id,
            revoked,
            "revoked the oldest bearer tokens (api.max_tokens_per_client)"
        );
    }
    Ok(Json(LoginResponse {
        bearer_token: token,
        expires_at,
    }))
}

pub async fn set_webhook(
    State(state): State<AppState>,
    ClientAuth { client_id, .. }: ClientAuth,
    ApiJson(config): ApiJson<WebhookConfig>,
) -> Result<StatusCode> {
    webhook::validate(&config, state.config.webhooks.allow_private)?;
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
