//! [`Event`]: what a [`Participant`](crate::Participant) reports about its call.

use calls_protocol::signalling::{Caption, ErrorCode, ParticipantInfo};
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::track::RemoteTrack;

/// Something that happened in the call.
pub enum Event {
    /// Someone joined.
    ParticipantJoined(ParticipantInfo),
    /// Someone left.
    ParticipantLeft {
        /// Who.
        session_id: String,
    },
    /// Someone muted or unmuted (this participant included).
    MuteState {
        /// Who.
        session_id: String,
        /// New state.
        muted: bool,
    },
    /// Someone started or stopped a screen share.
    ScreenState {
        /// Who.
        session_id: String,
        /// New state.
        screen_on: bool,
    },
    /// A caption relayed by the SFU.
    Caption(Caption),
    /// The SFU asks this bot to stop its job.
    JobStop {
        /// Why.
        reason: String,
    },
    /// The SFU refused something.
    Error {
        /// Code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// A remote track started arriving.
    Track(RemoteTrack),
    /// The media connection changed state.
    Connection(RTCPeerConnectionState),
    /// The signalling connection closed.
    Disconnected,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::ParticipantJoined(info) => write!(f, "ParticipantJoined({})", info.session_id),
            Event::ParticipantLeft { session_id } => write!(f, "ParticipantLeft({session_id})"),
            Event::MuteState { session_id, muted } => write!(f, "MuteState({session_id}, {muted})"),
            Event::ScreenState {
                session_id,
                screen_on,
            } => write!(f, "ScreenState({session_id}, {screen_on})"),
            Event::Caption(caption) => write!(f, "Caption({:?})", caption.text),
            Event::JobStop { reason } => write!(f, "JobStop({reason})"),
            Event::Error { code, message } => write!(f, "Error({code:?}, {message})"),
            Event::Track(track) => write!(f, "Track({})", track.id),
            Event::Connection(state) => write!(f, "Connection({state})"),
            Event::Disconnected => write!(f, "Disconnected"),
        }
    }
}
