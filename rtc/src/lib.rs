//! calls-rtc: the WebRTC plumbing that the SFU and the participant client share, written once.
//!
//! - [`codecs`]: the two codecs of a call (Opus 111, VP8 96), the media engine that registers
//!   them, the interceptor chain, and local tracks that carry them;
//! - [`keyframe`]: the interceptor that lets keyframe requests (PLI/FIR) reach the application;
//! - [`events`]: the peer-connection event handler that queues events for the owning task and
//!   counts what it drops;
//! - [`candidate`]: ICE candidates between the wire type and webrtc's;
//! - [`negotiation`]: perfect negotiation as a sans-IO state machine (inputs through
//!   `handle_*`, what to do through `poll_action`), and [`apply`] the webrtc calls each action
//!   stands for.
//!
//! Architecture invariant: nothing here decodes or encodes media, so the SFU, which depends on
//! this crate, links no codec library (opus, ffmpeg).

pub mod apply;
pub mod candidate;
pub mod codecs;
pub mod events;
pub mod keyframe;
pub mod negotiation;

pub use events::{EventHandler, PeerEvent};
pub use negotiation::{Action, Negotiation, StaleAnswer};
