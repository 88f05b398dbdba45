//! calls-recorder: joins a call as a bot and records it to MP4 (H.264 + AAC) without a browser.
//!
//! The media core is a set of pure parts driven by one media clock: [`mixer`] (voices → one track),
//! [`compositor`] (screen share → fixed-size frames), `encoder` (MP4 writer) and `recording`, which owns
//! them and is what the job shell feeds. `profile` holds the quality profiles and validated overrides.
//! The job plumbing (settings, offloader client, heartbeat, stop policy) is the shared `calls-job` crate.

pub mod backdrop;
pub mod compositor;
pub mod config;
mod encoder;
pub mod error;
pub mod frame;
pub mod job;
mod metrics;
pub mod mixer;
mod profile;
mod recording;
mod sinks;
pub mod speaking;
pub mod test_signal;
mod worker;

pub use compositor::{Compositor, CompositorConfig};
pub use encoder::{EncodeSummary, Mp4Writer};
pub use error::{Error, Result};
pub use frame::{I420Frame, Yuv};
pub use metrics::Progress;
pub use mixer::{Mixer, MixerConfig, FRAME_SAMPLES};
pub use profile::{Profile, ProfileName, ProfileOverrides};
pub use recording::Recording;
pub use worker::{MediaInput, MediaSender, MediaWorker};
