//! Perfect negotiation of one peer connection as a sans-IO state machine: inputs go in through
//! `handle_*`, what to do next comes out of [`Negotiation::poll_action`]; nothing here awaits or
//! touches webrtc. The shell (the SFU's session, the participant's actor) applies each
//! [`Action`] (see [`crate::apply`]) and reports the result with the matching `handle_*`.
//!
//! The two sides of a call:
//! - the **client** is *impolite* and makes the first offer; an offer from the SFU that arrives
//!   while its own is pending is ignored (glare);
//! - the **SFU** is *polite* and offers only after it answered the client's first offer; on glare
//!   it rolls its own offer back, answers, and offers again afterwards.
//!
//! Either side asks for another offer when its tracks change ([`Negotiation::handle_renegotiation_needed`]);
//! while an offer is in flight the request waits, and one offer covers every change made meanwhile.
//! An answer when no offer is pending (one to an offer rolled back in glare) is refused
//! ([`StaleAnswer`]). Remote candidates that arrive before the first remote description are held
//! (at most [`EARLY_CANDIDATES`]) and handed over once it is applied.
//!
//! How a shell drives it, after each input:
//! ```text
//! while let Some(action) = negotiation.poll_action() {
//!     apply the action; on success report it (handle_rolled_back, handle_answer_sent,
//!     handle_answer_applied, handle_offer_made); on a failed description step call abandon()
//!     and stop: the state stays as the last reported step left it.
//! }
//! ```
//! An offer is produced lazily, when nothing else is queued: so an offer made after a first
//! answer includes whatever the shell changed while applying it.
//!
//! Architecture invariant: the state changes only on the reports, never on the decisions; a
//! step that failed leaves the state as it was before the step.

use std::collections::VecDeque;

use calls_protocol::signalling::IceCandidate;

/// Remote candidates held before the first remote description; later ones are dropped.
pub const EARLY_CANDIDATES: usize = 64;

/// Which side of perfect negotiation this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Rolls back its own offer on glare, and waits for the other side's first offer (the SFU).
    Polite,
    /// Ignores the other side's offer on glare, and makes the first offer (the client).
    Impolite,
}

/// What the shell is to do next. `D` is the session description type (webrtc's
/// `RTCSessionDescription` in the shells, a string in the tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<D> {
    /// Roll the pending local offer back; report [`Negotiation::handle_rolled_back`].
    RollbackOffer,
    /// Apply this remote offer, create and apply an answer and send it; report
    /// [`Negotiation::handle_answer_sent`].
    Answer(D),
    /// Apply this remote answer; report [`Negotiation::handle_answer_applied`].
    ApplyAnswer(D),
    /// Create and apply a local offer and send it; report [`Negotiation::handle_offer_made`] once
    /// it is applied.
    Offer,
    /// Give webrtc this remote candidate. A refused candidate is no failure of the negotiation.
    AddCandidate(IceCandidate),
}

/// An answer arrived while no offer of ours was pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleAnswer;

impl std::fmt::Display for StaleAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no offer is pending")
    }
}

impl std::error::Error for StaleAnswer {}

/// The negotiation state of one peer connection.
#[derive(Debug)]
pub struct Negotiation<D> {
    side: Side,
    /// A remote description has been applied (the first offer/answer exchange is done).
    negotiated: bool,
    /// A local offer is applied and awaits the remote answer.
    offer_pending: bool,
    /// Local tracks changed since the last offer: another offer is due.
    needs_offer: bool,
    early_candidates: Vec<IceCandidate>,
    actions: VecDeque<Action<D>>,
}

impl<D> Negotiation<D> {
    /// A new negotiation for `side`.
    pub fn new(side: Side) -> Self {
        Self {
            side,
            negotiated: false,
            offer_pending: false,
            needs_offer: false,
            early_candidates: Vec::new(),
            actions: VecDeque::new(),
        }
    }

    /// Whether the first offer/answer exchange is done.
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// Whether a local offer awaits its answer.
    pub fn offer_pending(&self) -> bool {
        self.offer_pending
    }

    /// Local tracks changed: an offer is due (made at once, or after the one in flight).
    pub fn handle_renegotiation_needed(&mut self) {
        self.needs_offer = true;
    }

    /// A remote offer arrived. False if it is ignored (the impolite side during its own offer).
    pub fn handle_remote_offer(&mut self, offer: D) -> bool {
        if self.offer_pending {
            if self.side == Side::Impolite {
                return false;
            }
            self.actions.push_back(Action::RollbackOffer);
        }
        self.actions.push_back(Action::Answer(offer));
        true
    }

    /// A remote answer arrived; refused when no offer of ours is pending.
    pub fn handle_remote_answer(&mut self, answer: D) -> Result<(), StaleAnswer> {
        if !self.offer_pending {
            return Err(StaleAnswer);
        }
        self.actions.push_back(Action::ApplyAnswer(answer));
        Ok(())
    }

    /// A remote candidate arrived: handed over now, or held until the first remote description.
    pub fn handle_remote_candidate(&mut self, candidate: IceCandidate) {
        if self.negotiated {
            self.actions.push_back(Action::AddCandidate(candidate));
        } else if self.early_candidates.len() < EARLY_CANDIDATES {
            self.early_candidates.push(candidate);
        }
    }

    /// The pending local offer was rolled back: it is to be made again.
    pub fn handle_rolled_back(&mut self) {
        self.offer_pending = false;
        self.needs_offer = true;
    }

    /// The remote offer is applied and answered.
    pub fn handle_answer_sent(&mut self) {
        self.remote_description_applied();
    }

    /// The remote answer is applied: the offer in flight is done.
    pub fn handle_answer_applied(&mut self) {
        self.offer_pending = false;
        self.remote_description_applied();
    }

    /// A local offer is applied (and is being sent): it awaits its answer.
    pub fn handle_offer_made(&mut self) {
        self.offer_pending = true;
        self.needs_offer = false;
    }

    /// A step failed: the rest of what was queued is dropped; the state stays as the last report
    /// left it (an offer still due is made after the next input).
    pub fn abandon(&mut self) {
        self.actions.clear();
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action<D>> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        let may_offer = self.negotiated || self.side == Side::Impolite;
        (self.needs_offer && !self.offer_pending && may_offer).then_some(Action::Offer)
    }

    fn remote_description_applied(&mut self) {
        self.negotiated = true;
        self.actions.extend(
            std::mem::take(&mut self.early_candidates)
                .into_iter()
                .map(Action::AddCandidate),
        );
    }
}

#[cfg(test)]
#[path = "negotiation_tests.rs"]
mod tests;
