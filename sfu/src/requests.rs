//! What a joined client asks of its call besides negotiation: mute and unmute, screen share on
//! and off, and captions (bots only, at most `limits.captions_per_second`). Each is a router
//! decision applied to the shared state; a refusal is the error the client is sent.

use std::sync::Arc;
use std::time::Instant;

use calls_protocol::signalling::{Caption, ErrorCode, TrackKind};

use crate::ratelimit::TokenBucket;
use crate::state::Shared;

/// Why a request was refused: the code and message of the `error` the client is sent.
pub type Refusal = (ErrorCode, String);

/// The requests of one session.
pub struct Requests {
    shared: Arc<Shared>,
    session_id: String,
    /// Captions a bot may publish per second (issue 21, finding 7).
    captions: TokenBucket,
}

impl Requests {
    /// A session's requests, from `now` on.
    pub fn new(shared: Arc<Shared>, session_id: String, now: Instant) -> Self {
        let per_second = shared.config.limits.captions_per_second;
        Self {
            captions: TokenBucket::new(per_second, per_second.saturating_mul(2), now),
            shared,
            session_id,
        }
    }

    /// `mute` (true) or `unmute`.
    pub fn handle_mute(&mut self, muted: bool) -> Result<(), Refusal> {
        let id = &self.session_id;
        let actions = self.shared.with_router(|r| r.handle_mute(id, muted));
        self.shared.set_voice_muted(id, muted);
        actions
            .map(|a| self.shared.apply(a))
            .map_err(|e| (e.code(), e.to_string()))
    }

    /// `screen_on` (true) or `screen_off`; turning it off also ends the screen tracks published.
    pub fn handle_screen(&mut self, on: bool) -> Result<(), Refusal> {
        let id = &self.session_id;
        let screens: Vec<_> = self
            .shared
            .with_router(|r| r.tracks_of(id))
            .into_iter()
            .filter(|t| t.kind == TrackKind::Screen)
            .collect();
        let actions = self.shared.with_router(|r| r.handle_screen(id, on));
        let result = actions
            .map(|a| self.shared.apply(a))
            .map_err(|e| (e.code(), e.to_string()));
        if !on {
            for track in screens {
                self.shared.unpublish(&track);
            }
        }
        result
    }

    /// A caption to relay, at `now`.
    pub fn handle_caption(&mut self, caption: Caption, now: Instant) -> Result<(), Refusal> {
        if !self.captions.try_take(now) {
            return Err((
                ErrorCode::RateLimited,
                format!(
                    "too many captions: at most {} a second; this one is dropped",
                    self.shared.config.limits.captions_per_second
                ),
            ));
        }
        let id = &self.session_id;
        self.shared
            .with_router(|r| r.handle_caption(id, caption))
            .map(|a| self.shared.apply(a))
            .map_err(|e| (e.code(), e.to_string()))
    }
}
