//! [`Participant`]: joins a call over the SFU's signalling WebSocket, negotiates one peer
//! connection, publishes voice and screen, and reports everything that happens as [`Event`]s.
//!
//! One task (the "actor") owns the WebSocket and the peer connection, so negotiation steps never
//! interleave. The client makes the first offer and renegotiates when it adds or removes its
//! screen track; the SFU offers when forwarded tracks change. The client is the *impolite* peer:
//! an SFU offer arriving while the client's own offer is pending is ignored (the SFU rolls back
//! and offers again after answering).

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calls_protocol::signalling::{
    Caption, ClientMessage, IceServer, ParticipantInfo, ServerMessage, TrackId, TrackKind,
    PROTOCOL_VERSION,
};
use calls_rtc::negotiation::{Negotiation, Side};
use calls_rtc::EventHandler;
use futures::SinkExt;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

use crate::actor::{next_server_message, Actor, Command, Socket};
use crate::event::Event;
use crate::media;
use crate::track::Names;
use crate::{peer, Error, Result};

/// How to join.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Call id to announce; the SFU checks it against the token.
    pub call_id: Option<String>,
    /// Local address for media; by default derived from the SFU URL's host (loopback for a
    /// loopback SFU, otherwise every interface).
    pub bind_ip: Option<IpAddr>,
    /// How long joining may take.
    pub timeout: Duration,
    /// Events buffered for a consumer that does not keep up; further events are dropped.
    pub event_capacity: usize,
    /// Use ICE over TCP only (no UDP), as a client behind a UDP-blocking firewall would.
    pub tcp_only: bool,
    /// Connect media only through the TURN servers the SFU hands out (relayed candidates).
    pub relay_only: bool,
    /// PEM CA certificates trusted for a `wss://` SFU besides the public roots (a stack's local
    /// CA). When `None`, the PEM in the environment variable `CALLS_CA_CERT_PEM`
    /// ([`calls_protocol::job_env::CA_CERT_PEM`], which the offloader sets for jobs) is used if set.
    pub ca_cert_pem: Option<String>,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            call_id: None,
            bind_ip: None,
            timeout: Duration::from_secs(10),
            event_capacity: 1024,
            tcp_only: false,
            relay_only: false,
            ca_cert_pem: None,
        }
    }
}

/// A member of a call.
pub struct Participant {
    session_id: String,
    call_id: String,
    initial: Vec<ParticipantInfo>,
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    state: watch::Receiver<RTCPeerConnectionState>,
    voice: Arc<TrackLocalStaticSample>,
    voice_ssrc: u32,
    screen: Option<media::ScreenShare>,
    names: Names,
    dropped: Arc<AtomicU64>,
    actor: JoinHandle<()>,
}

fn default_bind_ip(url: &str) -> IpAddr {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    let loopback = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| addr.ip().is_loopback());
    if loopback {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// The signalling WebSocket URL of an SFU given by its base URL, as operators and job settings
/// write it: `http(s)://host:port` or `ws(s)://host:port` become `ws(s)://host:port/ws`; a URL
/// that already names a path (`wss://host/ws`, `https://host/calls/ws`) keeps it.
pub fn signalling_url(sfu: &str) -> Result<String> {
    let sfu = sfu.trim().trim_end_matches('/');
    let invalid = |why: &str| Error::InvalidUrl(format!("{sfu:?} {why}"));
    let (scheme, rest) = sfu
        .split_once("://")
        .ok_or_else(|| invalid("has no scheme (http://, https://, ws://, wss://)"))?;
    let scheme = match scheme {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(invalid("has a scheme other than http, https, ws or wss")),
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("has no host"));
    }
    let path = if rest.contains('/') { "" } else { "/ws" };
    Ok(format!("{scheme}://{rest}{path}"))
}

/// How the signalling WebSocket is secured: `wss://` trusts the public roots and the CA of
/// [`JoinOptions::ca_cert_pem`] (or of `CALLS_CA_CERT_PEM`); `ws://` stays plain.
fn tls_connector(options: &JoinOptions) -> Result<tokio_tungstenite::Connector> {
    let from_env = || std::env::var(calls_protocol::job_env::CA_CERT_PEM).ok();
    let extra = match options.ca_cert_pem.clone().or_else(from_env) {
        None => Vec::new(),
        Some(pem) => calls_tls::parse_certificates(pem.as_bytes())
            .map_err(|reason| Error::Tls(format!("ca certificate: {reason}")))?,
    };
    let config = calls_tls::client_config(&extra).map_err(|err| Error::Tls(err.to_string()))?;
    Ok(tokio_tungstenite::Connector::Rustls(config))
}

/// What the SFU's `joined` says.
struct Welcome {
    session_id: String,
    call_id: String,
    participants: Vec<ParticipantInfo>,
    ice_servers: Vec<IceServer>,
}

/// Opens the signalling WebSocket, sends `join` and reads the SFU's `joined` (or its refusal).
async fn signal_join(url: &str, token: &str, options: &JoinOptions) -> Result<(Socket, Welcome)> {
    let connector = tls_connector(options)?;
    let (mut socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
            .await
            .map_err(|err| Error::Signalling(format!("cannot connect to {url}: {err}")))?;
    let join = ClientMessage::Join {
        version: PROTOCOL_VERSION,
        token: token.to_owned(),
        call_id: options.call_id.clone(),
    };
    socket
        .send(Message::Text(join.to_json().into()))
        .await
        .map_err(|err| Error::Signalling(err.to_string()))?;
    match next_server_message(&mut socket).await? {
        ServerMessage::Joined {
            session_id,
            call_id,
            participants,
            ice_servers,
        } => Ok((
            socket,
            Welcome {
                session_id,
                call_id,
                participants,
                ice_servers,
            },
        )),
        ServerMessage::Error { code, message } => Err(Error::Refused { code, message }),
        other => Err(Error::Signalling(format!(
            "expected joined, got {}",
            other.to_json()
        ))),
    }
}

/// Adds the participant's voice: a send-only track, silent until voice is sent.
async fn add_voice(
    pc: &Arc<dyn PeerConnection>,
    session_id: &str,
) -> Result<(Arc<TrackLocalStaticSample>, u32)> {
    let (voice, voice_ssrc) = peer::sample_track(
        RtpCodecKind::Audio,
        session_id,
        &TrackId::new(TrackKind::Voice, session_id, 0).to_string(),
    )?;
    pc.add_transceiver_from_track(
        Arc::clone(&voice) as Arc<dyn TrackLocal>,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![session_id.to_owned()],
            send_encodings: Vec::new(),
        }),
    )
    .await?;
    Ok((voice, voice_ssrc))
}

impl Participant {
    /// Joins the call the token is for. Returns once the SFU accepted the join and the first
    /// offer is sent; media connects shortly after (see [`Participant::wait_connected`]).
    pub async fn join(sfu_ws_url: &str, token: &str, options: JoinOptions) -> Result<Participant> {
        tokio::time::timeout(
            options.timeout,
            Self::join_inner(sfu_ws_url, token, options.clone()),
        )
        .await
        .map_err(|_| Error::Timeout("join"))?
    }

    async fn join_inner(url: &str, token: &str, options: JoinOptions) -> Result<Participant> {
        let (socket, welcome) = signal_join(url, token, &options).await?;
        let names: Names = Arc::new(Mutex::new(
            welcome
                .participants
                .iter()
                .map(|p| (p.session_id.clone(), p.name.clone()))
                .collect(),
        ));
        let (peer_tx, peer_rx) = mpsc::channel(1024);
        let dropped = Arc::new(AtomicU64::new(0));
        let bind_ip = options.bind_ip.unwrap_or_else(|| default_bind_ip(url));
        if options.relay_only && welcome.ice_servers.is_empty() {
            return Err(Error::Signalling(
                "relay only, but the sfu hands out no turn server (ice.turn_urls)".into(),
            ));
        }
        let pc = peer::build(
            peer::Transport {
                bind_ip,
                tcp_only: options.tcp_only,
                ice_servers: &welcome.ice_servers,
                relay_only: options.relay_only,
            },
            Arc::new(EventHandler::new(peer_tx, Arc::clone(&dropped))),
        )
        .await?;
        let (voice, voice_ssrc) = add_voice(&pc, &welcome.session_id).await?;
        let (command_tx, command_rx) = mpsc::channel(64);
        let (event_tx, event_rx) = mpsc::channel(options.event_capacity.max(16));
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let mut actor = Actor {
            socket,
            pc,
            events: event_tx,
            state: state_tx,
            names: Arc::clone(&names),
            negotiation: Negotiation::new(Side::Impolite),
            dropped: Arc::clone(&dropped),
        };
        actor.renegotiate().await?;
        let actor = tokio::spawn(actor.run(command_rx, peer_rx));
        Ok(Participant {
            session_id: welcome.session_id,
            call_id: welcome.call_id,
            initial: welcome.participants,
            commands: command_tx,
            events: event_rx,
            state: state_rx,
            voice,
            voice_ssrc,
            screen: None,
            names,
            dropped,
            actor,
        })
    }

    /// This session's id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The call joined.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Who was in the call when this participant joined.
    pub fn initial_participants(&self) -> &[ParticipantInfo] {
        &self.initial
    }

    /// Display name of a member, when known.
    pub fn name_of(&self, session_id: &str) -> Option<String> {
        self.names
            .lock()
            .expect("names lock is never poisoned")
            .get(session_id)
            .cloned()
    }

    /// Events and peer-connection events dropped so far because this participant's queues were full
    /// (a consumer that stopped reading, or a stuck connection task).
    pub fn events_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The next event; `None` once the participant is gone and all events were read.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event within `timeout`.
    pub async fn next_event_within(&mut self, timeout: Duration) -> Option<Event> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Joins like [`Participant::join`], then waits (up to `connect_timeout`) until the media
    /// connection is up: what a caller that publishes or listens straight away wants.
    pub async fn join_connected(
        sfu_ws_url: &str,
        token: &str,
        options: JoinOptions,
        connect_timeout: Duration,
    ) -> Result<Participant> {
        let mut me = Self::join(sfu_ws_url, token, options).await?;
        me.wait_connected(connect_timeout).await?;
        Ok(me)
    }

    /// Waits until the media connection is up.
    pub async fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        let wait = self
            .state
            .wait_for(|state| *state == RTCPeerConnectionState::Connected);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Disconnected),
            Err(_) => Err(Error::Timeout("media connection")),
        }
    }

    async fn command(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Disconnected)
    }

    /// Sends a signalling message as is (tests use this to send odd input).
    pub async fn send_raw(&self, message: ClientMessage) -> Result<()> {
        self.command(Command::Send(message)).await
    }

    /// Stops the SFU forwarding this participant's voice.
    pub async fn mute(&self) -> Result<()> {
        self.send_raw(ClientMessage::Mute).await
    }

    /// Resumes forwarding this participant's voice.
    pub async fn unmute(&self) -> Result<()> {
        self.send_raw(ClientMessage::Unmute).await
    }

    /// Publishes a caption (bots only; the SFU answers others with an error event).
    pub async fn publish_caption(&self, caption: Caption) -> Result<()> {
        self.send_raw(ClientMessage::Caption(caption)).await
    }

    /// Sends 48 kHz mono PCM as Opus in real time (20 ms frames). The task ends when the
    /// samples are sent or the participant leaves.
    pub fn send_voice(&self, pcm: Vec<i16>) -> JoinHandle<Result<()>> {
        media::spawn_voice(Arc::clone(&self.voice), self.voice_ssrc, pcm)
    }

    /// Starts sharing the moving test pattern (`width`×`height` at `fps`) as VP8, with a
    /// keyframe every second and on request.
    pub async fn start_screen(&mut self, width: u32, height: u32, fps: u32) -> Result<()> {
        self.start_screen_with(media::ScreenOptions::new(width, height, fps))
            .await
    }

    /// Starts sharing the moving test pattern as VP8 with the given options.
    pub async fn start_screen_with(&mut self, options: media::ScreenOptions) -> Result<()> {
        if self.screen.is_some() {
            return Ok(());
        }
        let index = media::next_screen_index();
        let (track, ssrc) = peer::sample_track(
            RtpCodecKind::Video,
            &self.session_id,
            &TrackId::new(TrackKind::Screen, &self.session_id, index).to_string(),
        )?;
        self.send_raw(ClientMessage::ScreenOn).await?;
        let (reply, added) = oneshot::channel();
        self.command(Command::AddTrack(Arc::clone(&track), reply))
            .await?;
        let sender = added.await.map_err(|_| Error::Disconnected)??;
        self.screen = Some(media::ScreenShare::start(track, ssrc, sender, options)?);
        Ok(())
    }

    /// What the running screen share has sent and been asked for; `None` when not sharing.
    pub fn screen_stats(&self) -> Option<media::ScreenStats> {
        self.screen.as_ref().map(media::ScreenShare::stats)
    }

    /// Stops the screen share.
    pub async fn stop_screen(&mut self) -> Result<()> {
        let Some(screen) = self.screen.take() else {
            return Ok(());
        };
        let sender = screen.stop().await;
        self.command(Command::RemoveTrack(sender)).await?;
        self.send_raw(ClientMessage::ScreenOff).await
    }

    /// Leaves the call cleanly and closes the connection.
    pub async fn leave(mut self) -> Result<()> {
        if let Some(screen) = self.screen.take() {
            screen.stop().await;
        }
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), finished).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.actor).await;
        Ok(())
    }

    /// Drops the connection without saying goodbye (a crashed client), for tests.
    pub fn abort(self) {
        self.actor.abort();
    }
}
