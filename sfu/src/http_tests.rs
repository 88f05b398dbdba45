//! The HTTP routes through the router alone (`oneshot`, no socket for HTTP): the calls API's
//! key check and its answers, `job_stop` reaching the bot's queue, and every refusal in the
//! protocol's error shape. The end-to-end run over a real socket is `tests/http.rs`.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use calls_protocol::jobs::ErrorBody;
use calls_protocol::sfu_api::CallJson;
use calls_protocol::signalling::{ParticipantInfo, Role, ServerMessage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::*;
use crate::config::Secret;
use crate::ice_mux::UdpMux;
use crate::metrics::Metrics;
use crate::state::SessionHandle;
use crate::tcp_mux::TcpMux;

const API_KEY: &str = "unit-test-api-key-0123";

/// The shared state of an SFU on loopback ports, with `api_key` as its calls API key.
async fn shared(api_key: Option<&str>) -> Arc<Shared> {
    let mut config = crate::Config::for_local_test("0123456789abcdef0123456789abcdef");
    config.api_key = api_key.map(Secret::new);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mux = UdpMux::bind(loopback).await.expect("udp binds");
    let tcp_mux = TcpMux::bind(loopback).await.expect("tcp binds");
    Arc::new(Shared::new(config, Arc::new(Metrics::new()), mux, tcp_mux))
}

/// Puts `session_id` into `call_id` as a bot and returns its outgoing signalling queue.
fn join_bot(shared: &Shared, call_id: &str, session_id: &str) -> mpsc::Receiver<ServerMessage> {
    let info = ParticipantInfo {
        session_id: session_id.to_owned(),
        name: "Recorder".to_owned(),
        role: Role::Bot,
        purpose: None,
        muted: true,
        screen_on: false,
    };
    shared
        .with_router(|router| router.handle_join(call_id, info))
        .expect("the call has room");
    let (out, queue) = mpsc::channel(4);
    let (commands, _) = mpsc::channel(4);
    shared.add_session(
        session_id,
        SessionHandle {
            out,
            commands,
            kill: CancellationToken::new(),
        },
    );
    queue
}

/// Sends one request through the router; the answer's status and body.
async fn call(
    shared: &Arc<Shared>,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .expect("a valid request");
    let response = router(Arc::clone(shared))
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body reads");
    (status, body.to_vec())
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .expect("an error answer is an ErrorBody")
        .code
}

#[tokio::test]
async fn the_calls_api_is_off_without_a_key_and_refuses_a_wrong_one() {
    let off = shared(None).await;
    let (status, body) = call(&off, Method::GET, "/calls", Some(API_KEY), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "disabled");

    let on = shared(Some(API_KEY)).await;
    for key in [
        None,
        Some("wrong-key-wrong-key-12"),
        Some("unit-test-api-key-012"),
    ] {
        let (status, body) = call(&on, Method::GET, "/calls", key, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(error_code(&body), "unauthorized");
    }
    let (status, _) = call(&on, Method::GET, "/calls", Some(API_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn calls_and_sessions_answer_in_the_protocol_shapes() {
    let shared = shared(Some(API_KEY)).await;
    let _queue = join_bot(&shared, "call-1", "bot-1");
    let (status, body) = call(&shared, Method::GET, "/calls", Some(API_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
    let calls: Vec<CallJson> = serde_json::from_slice(&body).expect("a list of calls");
    assert_eq!(
        calls,
        [CallJson {
            call_id: "call-1".into(),
            participants: 1,
            tracks: 0
        }]
    );
    let uri = "/calls/call-1/sessions";
    let (status, body) = call(&shared, Method::GET, uri, Some(API_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
    let sessions: Vec<ParticipantInfo> = serde_json::from_slice(&body).expect("sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].name.as_str(), sessions[0].role),
        ("Recorder", Role::Bot)
    );
    let uri = "/calls/nope/sessions";
    let (status, body) = call(&shared, Method::GET, uri, Some(API_KEY), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn job_stop_reaches_the_bot_with_its_reason_or_a_default() {
    let shared = shared(Some(API_KEY)).await;
    let mut queue = join_bot(&shared, "call-1", "bot-1");
    let uri = "/calls/call-1/sessions/bot-1/job_stop";
    let (status, _) = call(&shared, Method::POST, uri, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(queue.try_recv().is_err(), "nothing sent without the key");

    let given = Some(r#"{"reason": "max duration"}"#);
    for (body, reason) in [(given, "max duration"), (None, "stopped by the api")] {
        let (status, _) = call(&shared, Method::POST, uri, Some(API_KEY), body).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body:?}");
        let stop = ServerMessage::JobStop {
            reason: reason.into(),
        };
        assert_eq!(queue.try_recv().expect("job_stop queued"), stop);
    }

    for uri in [
        "/calls/other/sessions/bot-1/job_stop",
        "/calls/call-1/sessions/nobody/job_stop",
    ] {
        let (status, body) = call(&shared, Method::POST, uri, Some(API_KEY), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(error_code(&body), "not_found");
    }
    assert!(queue.try_recv().is_err(), "no stop for another call");
}

#[tokio::test]
async fn version_and_health_need_no_key() {
    let shared = shared(Some(API_KEY)).await;
    let (status, body) = call(&shared, Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
        serde_json::json!({"status": "ok"})
    );
    let (status, body) = call(&shared, Method::GET, "/version", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let version: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(version["buildVersion"], env!("CARGO_PKG_VERSION"));
}
