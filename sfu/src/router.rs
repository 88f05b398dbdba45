//! The pure routing core of the SFU: which calls exist, who is in them, which tracks each member
//! publishes and therefore which forwarded tracks every other member must receive.
//!
//! Nothing here touches sockets, WebRTC or clocks. Every input is a `handle_*` call that returns
//! the [`Action`]s the async shell must carry out (send a signalling message, add or remove a
//! forwarded track on a subscriber's peer connection). **Architecture invariant:** a member
//! receives every track published by every *other* member of its call and never its own.

use std::collections::{BTreeMap, HashMap};

use calls_protocol::signalling::{
    Caption, ErrorCode, ParticipantInfo, Role, ServerMessage, TrackId, TrackKind,
};

/// Largest caption a bot may publish unless configured (`limits.max_caption_bytes`).
pub const DEFAULT_MAX_CAPTION_BYTES: usize = 2048;

/// Something the shell must do as a consequence of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a signalling message to one session.
    Send {
        /// Receiving session.
        to: String,
        /// The message.
        message: ServerMessage,
    },
    /// Start forwarding `track` to `subscriber` (adds a track to its peer connection).
    Subscribe {
        /// Receiving session.
        subscriber: String,
        /// The published track.
        track: TrackId,
    },
    /// Stop forwarding `track` to `subscriber` (removes the track from its peer connection).
    Unsubscribe {
        /// Receiving session.
        subscriber: String,
        /// The published track.
        track: TrackId,
    },
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The call already holds the maximum number of members.
    #[error("call is full ({0} participants)")]
    CallFull(usize),
    /// The session id is already in use.
    #[error("session already joined")]
    AlreadyJoined,
    /// The session is not in any call.
    #[error("session is not in a call")]
    UnknownSession,
    /// Only bots may publish captions.
    #[error("only bots may publish captions")]
    NotABot,
    /// The session already publishes as many tracks of this kind as allowed.
    #[error("at most {limit} {kind:?} track(s) per session")]
    TrackLimit { kind: TrackKind, limit: usize },
    /// A caption names a speaker who is not in the bot's call.
    #[error("the caption's speaker is not in this call")]
    UnknownSpeaker,
    /// A caption's text, tail and id are larger than allowed.
    #[error("the caption is {bytes} bytes; at most {limit} are allowed")]
    CaptionTooLarge { bytes: usize, limit: usize },
}

impl RouteError {
    /// The wire error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            RouteError::CallFull(_) => ErrorCode::CallFull,
            RouteError::AlreadyJoined | RouteError::UnknownSession => ErrorCode::NotJoined,
            RouteError::NotABot | RouteError::UnknownSpeaker => ErrorCode::Forbidden,
            RouteError::CaptionTooLarge { .. } => ErrorCode::BadMessage,
            RouteError::TrackLimit { .. } => ErrorCode::TrackLimit,
        }
    }
}

#[derive(Debug)]
struct Member {
    info: ParticipantInfo,
    /// Tracks this member publishes, by their formatted id.
    tracks: BTreeMap<String, TrackId>,
    /// Next index per kind for `voice_<session>_<n>` / `screen_<session>_<n>`.
    next_voice: u32,
    next_screen: u32,
}

/// One call: its members keyed by session id (ordered, so outputs are deterministic).
#[derive(Debug, Default)]
struct Call {
    members: BTreeMap<String, Member>,
}

/// Summary of a call for the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    /// Call id.
    pub call_id: String,
    /// Number of members.
    pub participants: usize,
    /// Number of published tracks.
    pub tracks: usize,
}

/// The routing state of every call.
#[derive(Debug)]
pub struct Router {
    calls: BTreeMap<String, Call>,
    call_of: HashMap<String, String>,
    max_participants_per_call: usize,
    /// Voice and screen tracks one member may publish at a time.
    track_limits: (usize, usize),
    /// Largest caption (text, tail and id) a bot may publish, in bytes.
    max_caption_bytes: usize,
}

impl Router {
    /// An empty router admitting at most `max_participants_per_call` members per call, each
    /// publishing at most one voice and one screen track (see [`Router::with_track_limits`]).
    pub fn new(max_participants_per_call: usize) -> Self {
        Self {
            calls: BTreeMap::new(),
            call_of: HashMap::new(),
            max_participants_per_call,
            track_limits: (1, 1),
            max_caption_bytes: DEFAULT_MAX_CAPTION_BYTES,
        }
    }

    /// Sets how many voice and screen tracks one member may publish at a time. Every extra
    /// track would add a transceiver, two tasks and a renegotiation to every other member.
    pub fn with_track_limits(mut self, voice: usize, screen: usize) -> Self {
        self.track_limits = (voice, screen);
        self
    }

    /// Sets the largest caption a bot may publish (`limits.max_caption_bytes`).
    pub fn with_max_caption_bytes(mut self, bytes: usize) -> Self {
        self.max_caption_bytes = bytes;
        self
    }

    fn member(&self, session_id: &str) -> Option<(&Call, &Member)> {
        let call = self.calls.get(self.call_of.get(session_id)?)?;
        Some((call, call.members.get(session_id)?))
    }

    /// The call `session_id` is a member of.
    fn call_of_member_mut(&mut self, session_id: &str) -> Result<&mut Call, RouteError> {
        let call_id = self
            .call_of
            .get(session_id)
            .ok_or(RouteError::UnknownSession)?;
        Ok(self
            .calls
            .get_mut(call_id)
            .expect("call_of only names calls that exist"))
    }

    /// Adds `info` to `call_id`. Returns the members already there and the actions: tell them,
    /// and subscribe the newcomer to everything they publish.
    pub fn handle_join(
        &mut self,
        call_id: &str,
        info: ParticipantInfo,
    ) -> Result<(Vec<ParticipantInfo>, Vec<Action>), RouteError> {
        if self.call_of.contains_key(&info.session_id) {
            return Err(RouteError::AlreadyJoined);
        }
        let call = self.calls.entry(call_id.to_owned()).or_default();
        if call.members.len() >= self.max_participants_per_call {
            let full = call.members.len();
            if call.members.is_empty() {
                self.calls.remove(call_id);
            }
            return Err(RouteError::CallFull(full));
        }
        let mut actions = Vec::new();
        let mut others = Vec::new();
        for (other_id, other) in &call.members {
            others.push(other.info.clone());
            actions.push(Action::Send {
                to: other_id.clone(),
                message: ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                },
            });
            for track in other.tracks.values() {
                actions.push(Action::Subscribe {
                    subscriber: info.session_id.clone(),
                    track: track.clone(),
                });
            }
        }
        let session_id = info.session_id.clone();
        call.members.insert(
            session_id.clone(),
            Member {
                info,
                tracks: BTreeMap::new(),
                next_voice: 0,
                next_screen: 0,
            },
        );
        self.call_of.insert(session_id, call_id.to_owned());
        Ok((others, actions))
    }

    /// Removes a session (leave or disconnect). Unknown sessions yield no actions, so the shell
    /// may call this more than once.
    pub fn handle_leave(&mut self, session_id: &str) -> Vec<Action> {
        let Some(call_id) = self.call_of.remove(session_id) else {
            return Vec::new();
        };
        let call = self
            .calls
            .get_mut(&call_id)
            .expect("call_of only names calls that exist");
        let member = call
            .members
            .remove(session_id)
            .expect("call_of and members agree");
        let mut actions = Vec::new();
        for other_id in call.members.keys() {
            for track in member.tracks.values() {
                actions.push(Action::Unsubscribe {
                    subscriber: other_id.clone(),
                    track: track.clone(),
                });
            }
            actions.push(Action::Send {
                to: other_id.clone(),
                message: ServerMessage::ParticipantLeft {
                    session_id: session_id.to_owned(),
                },
            });
        }
        if call.members.is_empty() {
            self.calls.remove(&call_id);
        }
        actions
    }

    /// A member started publishing a track of `kind`; returns its id and the subscriptions.
    pub fn handle_publish(
        &mut self,
        session_id: &str,
        kind: TrackKind,
    ) -> Result<(TrackId, Vec<Action>), RouteError> {
        let limit = match kind {
            TrackKind::Voice => self.track_limits.0,
            TrackKind::Screen => self.track_limits.1,
        };
        let call = self.call_of_member_mut(session_id)?;
        let member = call
            .members
            .get_mut(session_id)
            .expect("call_of and members agree");
        let published = member.tracks.values().filter(|t| t.kind == kind).count();
        if published >= limit {
            return Err(RouteError::TrackLimit { kind, limit });
        }
        let counter = match kind {
            TrackKind::Voice => &mut member.next_voice,
            TrackKind::Screen => &mut member.next_screen,
        };
        let track = TrackId::new(kind, session_id, *counter);
        *counter += 1;
        member.tracks.insert(track.to_string(), track.clone());
        let actions = call
            .members
            .keys()
            .filter(|id| id.as_str() != session_id)
            .map(|id| Action::Subscribe {
                subscriber: id.clone(),
                track: track.clone(),
            })
            .collect();
        Ok((track, actions))
    }

    /// A published track ended. Unknown tracks yield no actions.
    pub fn handle_unpublish(&mut self, track: &TrackId) -> Vec<Action> {
        let Ok(call) = self.call_of_member_mut(&track.session_id) else {
            return Vec::new();
        };
        let Some(member) = call.members.get_mut(&track.session_id) else {
            return Vec::new();
        };
        if member.tracks.remove(&track.to_string()).is_none() {
            return Vec::new();
        }
        call.members
            .keys()
            .filter(|id| **id != track.session_id)
            .map(|id| Action::Unsubscribe {
                subscriber: id.clone(),
                track: track.clone(),
            })
            .collect()
    }

    /// The tracks a member publishes.
    pub fn tracks_of(&self, session_id: &str) -> Vec<TrackId> {
        self.member(session_id)
            .map(|(_, member)| member.tracks.values().cloned().collect())
            .unwrap_or_default()
    }

    fn broadcast(call: &Call, message: ServerMessage) -> Vec<Action> {
        call.members
            .keys()
            .map(|id| Action::Send {
                to: id.clone(),
                message: message.clone(),
            })
            .collect()
    }

    /// Sets the on/off state of a member that `state` picks to `value`: the member's call when that
    /// changed the state, `None` when it already had that value.
    fn set_state(
        &mut self,
        session_id: &str,
        value: bool,
        state: fn(&mut ParticipantInfo) -> &mut bool,
    ) -> Result<Option<&mut Call>, RouteError> {
        let call = self.call_of_member_mut(session_id)?;
        let member = call
            .members
            .get_mut(session_id)
            .expect("call_of and members agree");
        let current = state(&mut member.info);
        if *current == value {
            return Ok(None);
        }
        *current = value;
        Ok(Some(call))
    }

    /// Mute or unmute; tells everyone in the call (the member included) when the state changes.
    pub fn handle_mute(
        &mut self,
        session_id: &str,
        muted: bool,
    ) -> Result<Vec<Action>, RouteError> {
        let Some(call) = self.set_state(session_id, muted, |info| &mut info.muted)? else {
            return Ok(Vec::new());
        };
        Ok(Self::broadcast(
            call,
            ServerMessage::MuteState {
                session_id: session_id.to_owned(),
                muted,
            },
        ))
    }

    /// Screen share on or off; tells everyone in the call when the state changes. Turning it off
    /// also unpublishes the member's screen tracks.
    pub fn handle_screen(
        &mut self,
        session_id: &str,
        screen_on: bool,
    ) -> Result<Vec<Action>, RouteError> {
        let Some(call) = self.set_state(session_id, screen_on, |info| &mut info.screen_on)? else {
            return Ok(Vec::new());
        };
        let screens: Vec<TrackId> = if screen_on {
            Vec::new()
        } else {
            // `set_state` found the member in this call.
            call.members[session_id]
                .tracks
                .values()
                .filter(|t| t.kind == TrackKind::Screen)
                .cloned()
                .collect()
        };
        let mut actions = Self::broadcast(
            call,
            ServerMessage::ScreenState {
                session_id: session_id.to_owned(),
                screen_on,
            },
        );
        for track in screens {
            actions.extend(self.handle_unpublish(&track));
        }
        Ok(actions)
    }

    /// A bot published a caption: relay it to every other member. The speaker must be a member
    /// of the bot's call, and the name shown is the speaker's name from the roster, whatever the
    /// bot wrote (issue 21, finding 7); captions larger than the limit are refused.
    pub fn handle_caption(
        &mut self,
        session_id: &str,
        mut caption: Caption,
    ) -> Result<Vec<Action>, RouteError> {
        let (call, member) = self.member(session_id).ok_or(RouteError::UnknownSession)?;
        if member.info.role != Role::Bot {
            return Err(RouteError::NotABot);
        }
        let bytes = caption.text.len()
            + caption.tail.len()
            + caption.id.as_ref().map_or(0, String::len)
            + caption.speaker_session.len();
        if bytes > self.max_caption_bytes {
            return Err(RouteError::CaptionTooLarge {
                bytes,
                limit: self.max_caption_bytes,
            });
        }
        let speaker = call
            .members
            .get(&caption.speaker_session)
            .ok_or(RouteError::UnknownSpeaker)?;
        caption.speaker_name = Some(speaker.info.name.clone());
        Ok(call
            .members
            .keys()
            .filter(|id| id.as_str() != session_id)
            .map(|id| Action::Send {
                to: id.clone(),
                message: ServerMessage::Caption(Box::new(caption.clone())),
            })
            .collect())
    }

    /// Whether a member is muted (unknown sessions count as muted: forward nothing).
    pub fn is_muted(&self, session_id: &str) -> bool {
        self.member(session_id)
            .map(|(_, member)| member.info.muted)
            .unwrap_or(true)
    }

    /// Display name and role of a member.
    pub fn info(&self, session_id: &str) -> Option<ParticipantInfo> {
        self.member(session_id).map(|(_, m)| m.info.clone())
    }

    /// Every call, for `GET /calls`.
    pub fn calls(&self) -> Vec<CallSummary> {
        self.calls
            .iter()
            .map(|(call_id, call)| CallSummary {
                call_id: call_id.clone(),
                participants: call.members.len(),
                tracks: call.members.values().map(|m| m.tracks.len()).sum(),
            })
            .collect()
    }

    /// Members of one call, for `GET /calls/{id}/sessions`; `None` when the call does not exist.
    pub fn sessions(&self, call_id: &str) -> Option<Vec<ParticipantInfo>> {
        self.calls
            .get(call_id)
            .map(|call| call.members.values().map(|m| m.info.clone()).collect())
    }

    /// Number of sessions in all calls.
    pub fn session_count(&self) -> usize {
        self.call_of.len()
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
