//! The recorder's track receivers: each remote track runs the participant library's receive loop in a task
//! of its own, decoding into a sink that places the media on the recording's clock ([`RtpClock`]) and hands
//! it to the media thread.

use std::time::Duration;

use calls_participant::clock::{RtpClock, OPUS_CLOCK_RATE, VIDEO_CLOCK_RATE};
use calls_participant::{
    receive_track, ReceiveOptions, RemoteTrack, TrackKind, TrackSink, VideoFrame,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::frame::I420Frame;
use crate::mixer::duration_from_samples;
use crate::worker::{MediaInput, MediaSender};

/// Receives `track` in a task of its own until it ends (or the task is aborted), feeding the media thread;
/// media time zero is `origin`.
pub fn spawn_track(track: RemoteTrack, sender: MediaSender, origin: Instant) -> JoinHandle<()> {
    tracing::info!(owner = %track.owner(), name = ?track.owner_name, kind = ?track.kind(), "receiving track");
    tokio::spawn(async move {
        let owner = track.owner().to_owned();
        let result = match track.kind() {
            TrackKind::Voice => {
                let mut sink = VoiceSink::new(owner.clone(), sender, origin);
                receive_track(&track, &ReceiveOptions::decoded(), &mut sink).await
            }
            TrackKind::Screen => {
                let mut sink = ScreenSink::new(owner.clone(), sender, origin);
                receive_track(&track, &ReceiveOptions::decoded(), &mut sink).await
            }
        };
        if let Err(error) = result {
            tracing::error!(%owner, %error, "cannot decode the track");
        }
    })
}

/// Feeds a decoded voice to the media thread. The decoder's output is contiguous (it conceals losses and
/// fills short gaps), so its sample count is the track's own clock, mapped onto the media clock by arrival.
struct VoiceSink {
    speaker: String,
    sender: MediaSender,
    origin: Instant,
    clock: RtpClock,
    position: u64,
}

impl VoiceSink {
    fn new(speaker: String, sender: MediaSender, origin: Instant) -> VoiceSink {
        VoiceSink {
            speaker,
            sender,
            origin,
            // Behind by more than the mixer's jitter window would be dropped; re-anchor before that.
            clock: RtpClock::new(
                OPUS_CLOCK_RATE,
                Duration::from_millis(100),
                Duration::from_millis(400),
            ),
            position: 0,
        }
    }
}

impl TrackSink for VoiceSink {
    type Error = calls_participant::Error;

    fn voice(&mut self, pcm: Vec<i16>, arrival: Instant) -> calls_participant::Result<()> {
        let arrival = arrival.duration_since(self.origin);
        let length = duration_from_samples(pcm.len() as u64);
        // The decoder's position is a 48 kHz timeline; wrapping to u32 is what RtpClock unwraps.
        let at = self
            .clock
            .handle_packet(self.position as u32, arrival.saturating_sub(length));
        self.position += pcm.len() as u64;
        self.sender.send(MediaInput::Audio {
            speaker: self.speaker.clone(),
            at,
            pcm,
        });
        Ok(())
    }
}

/// Feeds a decoded screen share to the media thread, placing each frame by its RTP timestamp (the shared
/// receive loop asks for keyframes after losses).
struct ScreenSink {
    sharer: String,
    sender: MediaSender,
    origin: Instant,
    clock: RtpClock,
}

impl ScreenSink {
    fn new(sharer: String, sender: MediaSender, origin: Instant) -> ScreenSink {
        ScreenSink {
            sharer,
            sender,
            origin,
            clock: RtpClock::new(
                VIDEO_CLOCK_RATE,
                Duration::from_millis(100),
                Duration::from_secs(1),
            ),
        }
    }
}

impl TrackSink for ScreenSink {
    type Error = calls_participant::Error;

    fn frame(
        &mut self,
        frame: VideoFrame,
        rtp_timestamp: u32,
        arrival: Instant,
    ) -> calls_participant::Result<()> {
        let at = self
            .clock
            .handle_packet(rtp_timestamp, arrival.duration_since(self.origin));
        match I420Frame::new(frame.width, frame.height, frame.data) {
            Ok(frame) => {
                self.sender.send(MediaInput::Video {
                    sharer: self.sharer.clone(),
                    at,
                    frame,
                });
            }
            Err(error) => {
                tracing::warn!(sharer = %self.sharer, %error, "dropping a malformed screen frame")
            }
        }
        Ok(())
    }
}
