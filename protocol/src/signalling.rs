//! Signalling messages exchanged over the SFU WebSocket (see docs/protocol.md).
//!
//! Every frame is one JSON object whose `type` field names the message. Clients send
//! [`ClientMessage`], the SFU sends [`ServerMessage`]. The first client message must be `join`
//! carrying [`PROTOCOL_VERSION`]; an unknown `type` or a malformed body is answered with an
//! `error` message rather than a dropped connection. Media track ids follow the
//! `voice_<session>_<n>` / `screen_<session>_<n>` convention (see [`TrackId`]) and the stream id
//! of every forwarded track is the owner's session id, so receivers can attribute what they get.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The signalling protocol version a client announces in `join`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Role of a participant, carried by its join token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A person (browser page, CLI, test client).
    Participant,
    /// A recorder or transcriber bot; may publish captions and receives `job_stop`.
    Bot,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Participant => "participant",
            Role::Bot => "bot",
        })
    }
}

/// Why a bot is in a call, carried by its join token (`purpose` claim) so that everyone in the
/// call can be told: the demo page shows "this call is being recorded / transcribed" while a bot
/// with a purpose is present. Optional and additive: tokens and clients without it still work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotPurpose {
    /// The bot records the call (calls-recorder).
    Recording,
    /// The bot transcribes the call or publishes live captions (calls-transcriber).
    Transcribing,
}

impl fmt::Display for BotPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BotPurpose::Recording => "recording",
            BotPurpose::Transcribing => "transcribing",
        })
    }
}

/// A trickle ICE candidate, in the browser's `RTCIceCandidateInit` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    /// The `candidate:...` attribute line (without `a=`).
    pub candidate: String,
    /// Media stream identification tag the candidate belongs to.
    #[serde(default, rename = "sdpMid", skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// Index of the media description the candidate belongs to.
    #[serde(
        default,
        rename = "sdpMLineIndex",
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    /// ICE username fragment the candidate belongs to.
    #[serde(
        default,
        rename = "usernameFragment",
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// A caption line published by a transcriber bot and relayed to everyone in the call.
///
/// Live captions come as partials (`final: false`) while someone speaks, then one final per utterance,
/// all under one `id`: a caption replaces the one shown with the same id. A partial's `text` holds the
/// words that will not change before the final; `tail` the tentative words after them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caption {
    /// The recognised text (for a partial: its stable words).
    pub text: String,
    /// For a partial: tentative words that follow `text` and may still change.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tail: String,
    /// One utterance's captions share an id; a later caption with the id replaces the earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Session id of the person who spoke.
    pub speaker_session: String,
    /// Display name of the speaker, when the bot knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker_name: Option<String>,
    /// Start of the spoken segment, milliseconds since the bot joined the call.
    pub start_ms: u64,
    /// End of the spoken segment, milliseconds since the bot joined the call.
    pub end_ms: u64,
    /// Whether this text is final (true) or may still be revised by a later caption (false).
    #[serde(default, rename = "final")]
    pub is_final: bool,
}

/// What the SFU knows about one participant of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Session id, unique per connection.
    pub session_id: String,
    /// Display name from the join token.
    pub name: String,
    /// Role from the join token.
    pub role: Role,
    /// What a bot is there for (from its join token); absent for people and for bots whose
    /// token names no purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<BotPurpose>,
    /// Whether the participant's voice is muted.
    pub muted: bool,
    /// Whether the participant shares a screen.
    pub screen_on: bool,
}

/// Messages a client sends to the SFU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Enter the call named by the token. Must be the first message.
    Join {
        /// Protocol version the client speaks ([`PROTOCOL_VERSION`]).
        version: u32,
        /// Signed join token.
        token: String,
        /// The call the client means to join; when present it must match the token's call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    /// SDP offer from the client (initial negotiation or client-side renegotiation).
    Offer {
        /// Session description.
        sdp: String,
    },
    /// SDP answer to an offer the SFU sent.
    Answer {
        /// Session description.
        sdp: String,
    },
    /// A trickled local ICE candidate of the client.
    IceCandidate {
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Stop forwarding this client's voice.
    Mute,
    /// Resume forwarding this client's voice.
    Unmute,
    /// The client started a screen share (its screen track follows in the next offer).
    ScreenOn,
    /// The client stopped its screen share.
    ScreenOff,
    /// A caption a bot publishes for everyone.
    Caption(Caption),
    /// Leave the call; the SFU closes the connection afterwards.
    Leave,
}

/// An ICE server as `RTCPeerConnection` takes it (`{urls, username, credential}`), so the page
/// can pass the list on unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username (coturn REST scheme: `<unix expiry>:<session id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password (base64 of HMAC-SHA1 of the username under the TURN secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Messages the SFU sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// The join succeeded.
    Joined {
        /// Session id assigned to this connection.
        session_id: String,
        /// The call joined.
        call_id: String,
        /// Everyone already in the call (not including this session).
        participants: Vec<ParticipantInfo>,
        /// STUN/TURN servers the client should use, with this session's time-limited TURN
        /// credentials; empty (and left out) when the SFU has none configured.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
    },
    /// SDP offer from the SFU (it adds or removes forwarded tracks).
    Offer {
        /// Session description.
        sdp: String,
    },
    /// SDP answer to the client's offer.
    Answer {
        /// Session description.
        sdp: String,
    },
    /// A trickled local ICE candidate of the SFU.
    IceCandidate {
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Someone joined the call.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left the call.
    ParticipantLeft {
        /// Session id of who left.
        session_id: String,
    },
    /// A participant muted or unmuted.
    MuteState {
        /// Whose state changed.
        session_id: String,
        /// The new state.
        muted: bool,
    },
    /// A participant started or stopped a screen share.
    ScreenState {
        /// Whose state changed.
        session_id: String,
        /// The new state.
        screen_on: bool,
    },
    /// A caption relayed from a bot (boxed: the largest message, and a rare one).
    Caption(Box<Caption>),
    /// Tells a bot to finish its job and leave.
    JobStop {
        /// Why the job stops.
        reason: String,
    },
    /// Something the client sent was refused.
    Error {
        /// Stable machine-readable code (see [`ErrorCode`]).
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// Stable error codes of the `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON or not a known message.
    BadMessage,
    /// The protocol version is not supported.
    UnsupportedVersion,
    /// The join token is malformed, badly signed or expired.
    BadToken,
    /// A message other than `join` arrived before joining, or `join` twice.
    NotJoined,
    /// The SDP or ICE candidate was rejected by the WebRTC stack.
    BadSdp,
    /// The client sent too many messages; the session is closed.
    RateLimited,
    /// The client may not do this (e.g. a participant publishing captions).
    Forbidden,
    /// The call is full.
    CallFull,
    /// A server-side failure.
    Internal,
    /// The SFU is shutting down (SIGTERM); it closes the connection right after this message.
    ShuttingDown,
    /// A publication beyond the session's track limit (`limits.voice_tracks_per_session`,
    /// `limits.screen_tracks_per_session`); the extra track is not forwarded.
    TrackLimit,
    /// The join token already holds `limits.sessions_per_token` live sessions.
    TokenInUse,
}

/// Kind of a media track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Opus microphone audio.
    Voice,
    /// VP8 screen share.
    Screen,
}

impl TrackKind {
    fn prefix(self) -> &'static str {
        match self {
            TrackKind::Voice => "voice",
            TrackKind::Screen => "screen",
        }
    }
}

/// A parsed media track id: `voice_<session>_<n>` or `screen_<session>_<n>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackId {
    /// Voice or screen.
    pub kind: TrackKind,
    /// Owner's session id (may itself contain `_`; the counter is the last segment).
    pub session_id: String,
    /// Per-owner counter distinguishing successive tracks of the same kind.
    pub index: u32,
}

impl TrackId {
    /// Builds a track id.
    pub fn new(kind: TrackKind, session_id: impl Into<String>, index: u32) -> Self {
        Self {
            kind,
            session_id: session_id.into(),
            index,
        }
    }

    /// Parses a track id; `None` when it does not follow the convention.
    pub fn parse(id: &str) -> Option<Self> {
        let (kind, rest) = if let Some(rest) = id.strip_prefix("voice_") {
            (TrackKind::Voice, rest)
        } else if let Some(rest) = id.strip_prefix("screen_") {
            (TrackKind::Screen, rest)
        } else {
            return None;
        };
        let (session, index) = rest.rsplit_once('_')?;
        if session.is_empty() || index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            kind,
            session_id: session.to_owned(),
            index: index.parse().ok()?,
        })
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}",
            self.kind.prefix(),
            self.session_id,
            self.index
        )
    }
}

impl ClientMessage {
    /// Parses one WebSocket text frame.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Serialises to one WebSocket text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client messages contain only strings and numbers")
    }
}

impl ServerMessage {
    /// Parses one WebSocket text frame.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Serialises to one WebSocket text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages contain only strings and numbers")
    }

    /// Shorthand for an `error` message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caption() -> Caption {
        Caption {
            id: None,
            tail: String::new(),
            text: "hello there".into(),
            speaker_session: "s1".into(),
            speaker_name: Some("Alice".into()),
            start_ms: 100,
            end_ms: 900,
            is_final: true,
        }
    }

    #[test]
    fn client_messages_round_trip() {
        let messages = vec![
            ClientMessage::Join {
                version: PROTOCOL_VERSION,
                token: "t".into(),
                call_id: Some("c".into()),
            },
            ClientMessage::Offer { sdp: "v=0".into() },
            ClientMessage::Answer { sdp: "v=0".into() },
            ClientMessage::IceCandidate {
                candidate: IceCandidate {
                    candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                },
            },
            ClientMessage::Mute,
            ClientMessage::Unmute,
            ClientMessage::ScreenOn,
            ClientMessage::ScreenOff,
            ClientMessage::Caption(caption()),
            ClientMessage::Leave,
        ];
        for message in messages {
            let json = message.to_json();
            assert_eq!(ClientMessage::from_json(&json).unwrap(), message, "{json}");
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let info = ParticipantInfo {
            session_id: "s1".into(),
            name: "Alice".into(),
            role: Role::Participant,
            purpose: None,
            muted: false,
            screen_on: true,
        };
        let recorder = ParticipantInfo {
            session_id: "s3".into(),
            name: "Recorder".into(),
            role: Role::Bot,
            purpose: Some(BotPurpose::Recording),
            muted: true,
            screen_on: false,
        };
        let messages = vec![
            ServerMessage::Joined {
                session_id: "s2".into(),
                call_id: "c".into(),
                participants: vec![info.clone()],
                ice_servers: vec![IceServer {
                    urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
                    username: Some("1700000000:s2".into()),
                    credential: Some("c2VjcmV0".into()),
                }],
            },
            ServerMessage::Joined {
                session_id: "s2".into(),
                call_id: "c".into(),
                participants: vec![],
                ice_servers: vec![],
            },
            ServerMessage::Offer { sdp: "v=0".into() },
            ServerMessage::Answer { sdp: "v=0".into() },
            ServerMessage::ParticipantJoined { participant: info },
            ServerMessage::ParticipantJoined {
                participant: recorder.clone(),
            },
            ServerMessage::ParticipantLeft {
                session_id: "s1".into(),
            },
            ServerMessage::MuteState {
                session_id: "s1".into(),
                muted: true,
            },
            ServerMessage::ScreenState {
                session_id: "s1".into(),
                screen_on: false,
            },
            ServerMessage::Caption(Box::new(caption())),
            ServerMessage::JobStop {
                reason: "stopped".into(),
            },
            ServerMessage::error(ErrorCode::BadToken, "token expired"),
            ServerMessage::error(ErrorCode::ShuttingDown, "the sfu is shutting down"),
        ];
        for message in messages {
            let json = message.to_json();
            assert_eq!(ServerMessage::from_json(&json).unwrap(), message, "{json}");
        }
        let json = ServerMessage::ParticipantJoined {
            participant: recorder,
        }
        .to_json();
        assert!(json.contains(r#""purpose":"recording""#), "{json}");
    }

    #[test]
    fn participants_without_a_purpose_keep_the_old_wire_shape() {
        // Written by an SFU from before the purpose field: still parses, as no purpose.
        let old = r#"{"type":"participant_joined","participant":{"session_id":"s","name":"Bot","role":"bot","muted":false,"screen_on":false}}"#;
        let ServerMessage::ParticipantJoined { participant } =
            ServerMessage::from_json(old).expect("old shape parses")
        else {
            panic!("wrong message");
        };
        assert_eq!(participant.purpose, None);
        assert!(!ServerMessage::ParticipantJoined { participant }
            .to_json()
            .contains("purpose"));
    }

    #[test]
    fn wire_shape_is_tagged_snake_case() {
        let json = ClientMessage::ScreenOn.to_json();
        assert_eq!(json, r#"{"type":"screen_on"}"#);
        let json = ClientMessage::Caption(caption()).to_json();
        assert!(json.contains(r#""type":"caption""#), "{json}");
        assert!(json.contains(r#""final":true"#), "{json}");
        let parsed = ClientMessage::from_json(
            r#"{"type":"ice_candidate","candidate":{"candidate":"candidate:x","sdpMid":"0","sdpMLineIndex":0}}"#,
        )
        .unwrap();
        assert!(matches!(parsed, ClientMessage::IceCandidate { .. }));
    }

    #[test]
    fn unknown_or_malformed_messages_are_rejected() {
        for bad in [
            r#"{"type":"explode"}"#,
            r#"{"sdp":"v=0"}"#,
            r#"{"type":"offer"}"#,
            r#"{"type":"join","version":"one","token":"t"}"#,
            r#"{"type":"offer","sdp":"v=0","extra":1}"#,
            "not json",
            "[]",
        ] {
            assert!(ClientMessage::from_json(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn track_ids_parse_and_format() {
        let id = TrackId::new(TrackKind::Voice, "ab_cd", 3);
        assert_eq!(id.to_string(), "voice_ab_cd_3");
        assert_eq!(TrackId::parse("voice_ab_cd_3"), Some(id));
        assert_eq!(
            TrackId::parse("screen_s1_0"),
            Some(TrackId::new(TrackKind::Screen, "s1", 0))
        );
        for bad in [
            "audio_s1_0",
            "voice_s1",
            "voice__0",
            "voice_s1_x",
            "screen_",
            "",
        ] {
            assert_eq!(TrackId::parse(bad), None, "{bad}");
        }
    }
}
