//! The webrtc calls behind each [`Action`](crate::negotiation::Action) of the negotiation, so
//! that the SFU and the participant apply a step the same way. Each call says which step
//! failed ([`Step`]): the SFU counts failed local steps by name.

use std::fmt;

use calls_protocol::signalling::IceCandidate;
use webrtc::error::Error;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::candidate::candidate_init;

/// A webrtc call the negotiation makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    CreateOffer,
    CreateAnswer,
    SetLocalDescription,
    SetRemoteDescription,
}

impl Step {
    /// The step's name (`create_offer`, `set_local_description`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Step::CreateOffer => "create_offer",
            Step::CreateAnswer => "create_answer",
            Step::SetLocalDescription => "set_local_description",
            Step::SetRemoteDescription => "set_remote_description",
        }
    }
}

/// A step that webrtc refused, and why.
#[derive(Debug)]
pub struct StepError {
    pub step: Step,
    pub error: Error,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step.name(), self.error)
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

fn at(step: Step) -> impl FnOnce(Error) -> StepError {
    move |error| StepError { step, error }
}

/// Creates an offer and applies it as the local description; returns its SDP, to send.
pub async fn make_offer(pc: &dyn PeerConnection) -> Result<String, StepError> {
    let offer = pc.create_offer(None).await.map_err(at(Step::CreateOffer))?;
    let sdp = offer.sdp.clone();
    pc.set_local_description(offer)
        .await
        .map_err(at(Step::SetLocalDescription))?;
    Ok(sdp)
}

/// Applies a remote offer, creates an answer and applies it as the local description; returns the
/// answer's SDP, to send. An offer webrtc cannot read fails as [`Step::SetRemoteDescription`].
pub async fn answer(pc: &dyn PeerConnection, offer: String) -> Result<String, StepError> {
    let offer = RTCSessionDescription::offer(offer).map_err(at(Step::SetRemoteDescription))?;
    pc.set_remote_description(offer)
        .await
        .map_err(at(Step::SetRemoteDescription))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(at(Step::CreateAnswer))?;
    let sdp = answer.sdp.clone();
    pc.set_local_description(answer)
        .await
        .map_err(at(Step::SetLocalDescription))?;
    Ok(sdp)
}

/// Applies a remote answer to the pending local offer.
pub async fn apply_answer(pc: &dyn PeerConnection, answer: String) -> Result<(), StepError> {
    let answer = RTCSessionDescription::answer(answer).map_err(at(Step::SetRemoteDescription))?;
    pc.set_remote_description(answer)
        .await
        .map_err(at(Step::SetRemoteDescription))
}

/// Rolls the pending local offer back (the polite side of glare).
pub async fn rollback(pc: &dyn PeerConnection) -> Result<(), StepError> {
    let rollback = RTCSessionDescription::rollback(None).map_err(at(Step::SetLocalDescription))?;
    pc.set_local_description(rollback)
        .await
        .map_err(at(Step::SetLocalDescription))
}

/// Gives webrtc a remote ICE candidate.
pub async fn add_candidate(pc: &dyn PeerConnection, candidate: IceCandidate) -> Result<(), Error> {
    pc.add_ice_candidate(candidate_init(candidate)).await
}
