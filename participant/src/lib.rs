//! Participant client library: join a call through the SFU, publish voice and screen, receive
//! tracks. The one client that bots, tests and load tools share.
//!
//! ```no_run
//! # async fn demo(url: &str, token: &str) -> calls_participant::Result<()> {
//! use calls_participant::{Event, JoinOptions, Participant};
//! let mut me = Participant::join(url, token, JoinOptions::default()).await?;
//! me.wait_connected(std::time::Duration::from_secs(10)).await?;
//! while let Some(event) = me.next_event().await {
//!     if let Event::Track(track) = event {
//!         println!("receiving {:?} from {}", track.kind(), track.owner());
//!     }
//! }
//! # Ok(()) }
//! ```

mod actor;
pub mod audio;
pub mod cli;
mod client;
pub mod clock;
pub mod cpu;
pub mod error;
mod event;
mod jitter;
mod media;
mod peer;
mod receive;
mod track;
pub mod video;

pub use calls_protocol::signalling::{
    Caption, ErrorCode, ParticipantInfo, Role, TrackId, TrackKind,
};
pub use client::{signalling_url, JoinOptions, Participant};
pub use error::{Error, Result};
pub use event::Event;
pub use media::{KeyframePolicy, ScreenOptions, ScreenStats};
pub use receive::{receive_track, ReceiveOptions, ReceiveStats, TrackSink};
pub use track::RemoteTrack;
pub use video::VideoFrame;
pub use webrtc::peer_connection::RTCPeerConnectionState as ConnectionState;
