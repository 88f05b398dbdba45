//! Shared helpers of the SFU integration tests: an in-process SFU on 127.0.0.1, join tokens,
//! speech made with espeak-ng and sox, and waiting for participant events.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use calls_participant::{audio, Event, JoinOptions, Participant, RemoteTrack, Role, TrackKind};
use calls_protocol::signalling::{ErrorCode, ServerMessage, PROTOCOL_VERSION};
use calls_sfu::{Config, RunningSfu};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

pub async fn start_sfu() -> RunningSfu {
    let mut config = Config::for_local_test(SECRET);
    config.api_key = Some(calls_sfu::config::Secret::new("test-api-key-0123456789"));
    calls_sfu::start(config).await.expect("sfu starts")
}

pub fn token(call: &str, name: &str, role: Role) -> String {
    calls_sfu::token::mint(
        SECRET.as_bytes(),
        call,
        name,
        role,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .expect("token mints")
}

pub async fn join(sfu: &RunningSfu, call: &str, name: &str) -> Participant {
    join_with_token(&sfu.ws_url(), &token(call, name, Role::Participant)).await
}

/// Joins the SFU at `ws_url` with `token` and waits (up to 10 s) until media connects.
pub async fn join_with_token(ws_url: &str, token: &str) -> Participant {
    let options = JoinOptions::default();
    Participant::join_connected(ws_url, token, options, Duration::from_secs(10))
        .await
        .expect("join succeeds and media connects")
}

/// Speaks `sentence` with espeak-ng and converts it to 48 kHz mono 16-bit with sox.
pub fn speech(dir: &Path, name: &str, sentence: &str) -> Vec<i16> {
    let raw = dir.join(format!("{name}-raw.wav"));
    let converted = dir.join(format!("{name}.wav"));
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&raw)
        .arg(sentence)
        .status()
        .expect("espeak-ng runs");
    assert!(status.success(), "espeak-ng failed");
    let status = Command::new("sox")
        .arg(&raw)
        .args(["-r", "48000", "-c", "1", "-b", "16"])
        .arg(&converted)
        .status()
        .expect("sox runs");
    assert!(status.success(), "sox failed");
    audio::read_wav(&converted).expect("wav reads")
}

/// The two sentences the voice tests send: Alice's and Bob's, spoken with [`speech`].
pub fn alice_and_bob_words(dir: &Path) -> (Vec<i16>, Vec<i16>) {
    (
        speech(dir, "alice", "The quick brown fox jumps over the lazy dog."),
        speech(dir, "bob", "Seven silver swans swam silently seaward."),
    )
}

/// `GET url` with `http`, whatever the status; panics when no answer comes.
pub async fn get(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The body of `GET url`, which must succeed.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    let reply = get(http, url).await;
    assert!(reply.status().is_success(), "GET {url}: {}", reply.status());
    reply.text().await.expect("a text body")
}

/// `count` connections to `addr` that each sent part of a request header and then nothing more (a
/// slow-loris client).
pub async fn slow_header_connections(
    addr: std::net::SocketAddr,
    count: usize,
) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut streams = Vec::new();
    for _ in 0..count {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: sfu\r\nX-Slow: ")
            .await
            .expect("partial header is sent");
        streams.push(stream);
    }
    streams
}

/// Silence first, so the track is established before the words start.
pub fn with_lead_in(pcm: &[i16], lead_in: Duration) -> Vec<i16> {
    let mut out = vec![0i16; (lead_in.as_secs_f64() * 48_000.0) as usize];
    out.extend_from_slice(pcm);
    out
}

/// Waits for a remote track of `kind` owned by `owner`, skipping other events.
pub async fn wait_track(
    participant: &mut Participant,
    owner: &str,
    kind: TrackKind,
) -> RemoteTrack {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match participant.next_event_within(left).await {
            Some(Event::Track(track)) if track.owner() == owner && track.kind() == kind => {
                return track
            }
            Some(_) => continue,
            None => panic!("no {kind:?} track from {owner} arrived"),
        }
    }
}

/// Waits for an event matching `predicate`, skipping others.
pub async fn wait_event(
    participant: &mut Participant,
    what: &str,
    mut predicate: impl FnMut(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match participant.next_event_within(left).await {
            Some(event) if predicate(&event) => return event,
            Some(_) => continue,
            None => panic!("timed out waiting for {what}"),
        }
    }
}

// Raw signalling sockets, for clients that misbehave on purpose.

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(sfu: &calls_sfu::RunningSfu) -> Socket {
    tokio_tungstenite::connect_async(sfu.ws_url())
        .await
        .expect("websocket connects")
        .0
}

pub async fn send(socket: &mut Socket, text: impl Into<String>) {
    socket
        .send(Message::Text(text.into().into()))
        .await
        .expect("frame is sent");
}

pub fn join_message(token: &str, call_id: Option<&str>) -> String {
    let mut message =
        serde_json::json!({"type": "join", "version": PROTOCOL_VERSION, "token": token});
    if let Some(call_id) = call_id {
        message["call_id"] = call_id.into();
    }
    message.to_string()
}

/// Every error code the server sends until it closes the socket (or `wait` passes), and whether
/// it closed it.
pub async fn errors_until_close(socket: &mut Socket, wait: Duration) -> (Vec<ErrorCode>, bool) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut codes = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return (codes, false),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return (codes, true),
            Ok(Some(Ok(Message::Text(text)))) => {
                if let Ok(ServerMessage::Error { code, .. }) = ServerMessage::from_json(&text) {
                    codes.push(code);
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}
