//! The one loop that receives a remote track: read its RTP packets as they arrive, optionally decode them
//! (voice to 48 kHz PCM, screen to I420 frames), and ask the sender for a keyframe when a screen share
//! starts or loses a packet. The CLI, the test helpers on [`RemoteTrack`], the recorder and the
//! transcriber all receive through [`receive_track`]; what they do with the media is a [`TrackSink`].
//!
//! The loop stops when the track ends, when the optional stop token fires, at an optional deadline, or
//! after an optional idle time without packets; a sink error stops it too and is returned.

use std::time::Duration;

use rtc::rtp;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audio::VoiceDecoder;
use crate::track::RemoteTrack;
use crate::video::{VideoFrame, Vp8Decoder};
use crate::{Error, Result};
use calls_protocol::signalling::TrackKind;

/// The shortest time between two keyframe requests: a burst of losses asks once, not once per packet.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// What a receiver does with a track's media. Every method has a default that ignores its input, so a sink
/// implements only what it needs; an error stops the loop and is returned by [`receive_track`].
pub trait TrackSink {
    /// The sink's error; decoder set-up errors of the participant library convert into it.
    type Error: From<crate::Error>;

    /// Every RTP packet, as received (before any reordering or decoding), with its arrival time.
    fn packet(&mut self, _packet: &rtp::Packet, _arrival: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Decoded voice (48 kHz mono, contiguous: losses concealed, gaps filled), never empty, with the
    /// arrival time of the packet that completed it. Only when decoding is on.
    fn voice(&mut self, _pcm: Vec<i16>, _arrival: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    /// A decoded screen frame, the RTP timestamp of the packet that completed it, and its arrival time.
    /// Only when decoding is on.
    fn frame(
        &mut self,
        _frame: VideoFrame,
        _rtp_timestamp: u32,
        _arrival: Instant,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// When to stop receiving, and whether to decode.
#[derive(Debug, Clone, Default)]
pub struct ReceiveOptions {
    /// Decode voice to PCM and screen packets to frames (asking for keyframes); off, the sink sees only
    /// packets.
    pub decode: bool,
    /// Stop when this token is cancelled.
    pub stop: Option<CancellationToken>,
    /// Stop at this instant.
    pub deadline: Option<Instant>,
    /// Stop after this long without a packet.
    pub idle: Option<Duration>,
}

impl ReceiveOptions {
    /// Decoding on, no limit but the end of the track.
    pub fn decoded() -> ReceiveOptions {
        ReceiveOptions {
            decode: true,
            ..ReceiveOptions::default()
        }
    }

    /// Also stop when `stop` is cancelled.
    pub fn until_cancelled(mut self, stop: CancellationToken) -> ReceiveOptions {
        self.stop = Some(stop);
        self
    }
}

/// What one receive loop saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// RTP packets received.
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Voice samples decoded (48 kHz).
    pub samples: u64,
    /// Screen frames decoded.
    pub frames: u64,
    /// Keyframe requests sent.
    pub keyframe_requests: u64,
}

enum Decoder {
    None,
    Voice(VoiceDecoder),
    Screen(Vp8Decoder),
}

/// Receives `track` into `sink` until the track ends or `options` say stop.
pub async fn receive_track<S: TrackSink>(
    track: &RemoteTrack,
    options: &ReceiveOptions,
    sink: &mut S,
) -> Result<ReceiveStats, S::Error> {
    let mut stats = ReceiveStats::default();
    let mut decoder = match (options.decode, track.kind()) {
        (false, _) => Decoder::None,
        (true, TrackKind::Voice) => Decoder::Voice(VoiceDecoder::new()?),
        (true, TrackKind::Screen) => Decoder::Screen(Vp8Decoder::new()?),
    };
    let mut last_keyframe_request: Option<Instant> = None;
    if matches!(decoder, Decoder::Screen(_)) {
        track.request_keyframe().await;
        stats.keyframe_requests += 1;
        last_keyframe_request = Some(Instant::now());
    }
    let stop = options.stop.clone().unwrap_or_default();
    loop {
        let now = Instant::now();
        if options.deadline.is_some_and(|deadline| now >= deadline) {
            break;
        }
        let wait = match (options.deadline, options.idle) {
            (Some(deadline), Some(idle)) => Some(deadline.saturating_duration_since(now).min(idle)),
            (Some(deadline), None) => Some(deadline.saturating_duration_since(now)),
            (None, idle) => idle,
        };
        let next = async {
            match wait {
                Some(wait) => tokio::time::timeout(wait, track.next_packet())
                    .await
                    .ok()
                    .flatten(),
                None => track.next_packet().await,
            }
        };
        let packet = tokio::select! {
            _ = stop.cancelled() => break,
            packet = next => match packet {
                Some(packet) => packet,
                None => break,
            },
        };
        let arrival = Instant::now();
        stats.packets += 1;
        stats.bytes += packet.payload.len() as u64;
        sink.packet(&packet, arrival)?;
        match &mut decoder {
            Decoder::None => {}
            Decoder::Voice(voice) => {
                let pcm = voice.push(packet);
                if !pcm.is_empty() {
                    stats.samples += pcm.len() as u64;
                    sink.voice(pcm, arrival)?;
                }
            }
            Decoder::Screen(screen) => {
                let timestamp = packet.header.timestamp;
                let output = screen.push(&packet);
                if output.wants_keyframe
                    && last_keyframe_request
                        .is_none_or(|at| at.elapsed() > KEYFRAME_REQUEST_INTERVAL)
                {
                    last_keyframe_request = Some(Instant::now());
                    track.request_keyframe().await;
                    stats.keyframe_requests += 1;
                }
                for frame in output.frames {
                    stats.frames += 1;
                    sink.frame(frame, timestamp, arrival)?;
                }
            }
        }
    }
    Ok(stats)
}

/// Two short-recording helpers for tests, decoding through [`receive_track`].
impl RemoteTrack {
    /// Decodes voice for `duration` (or until the track ends or stays silent for `idle`).
    pub async fn record_voice(&self, duration: Duration, idle: Duration) -> Result<Vec<i16>> {
        let mut collected = Collect::default();
        receive_track(self, &Self::limits(duration, idle), &mut collected).await?;
        Ok(collected.pcm)
    }

    /// Decodes screen frames for `duration` (or until the track ends or stays idle for
    /// `idle`), requesting a keyframe at the start and after losses.
    pub async fn record_frames(
        &self,
        duration: Duration,
        idle: Duration,
    ) -> Result<Vec<VideoFrame>> {
        if self.id.kind != TrackKind::Screen {
            return Err(Error::Media("not a screen track".into()));
        }
        let mut collected = Collect::default();
        receive_track(self, &Self::limits(duration, idle), &mut collected).await?;
        Ok(collected.frames)
    }

    fn limits(duration: Duration, idle: Duration) -> ReceiveOptions {
        ReceiveOptions {
            deadline: Some(tokio::time::Instant::now() + duration),
            idle: Some(idle),
            ..ReceiveOptions::decoded()
        }
    }
}

/// Keeps everything decoded, for the short recordings of tests.
#[derive(Default)]
struct Collect {
    pcm: Vec<i16>,
    frames: Vec<VideoFrame>,
}

impl TrackSink for Collect {
    type Error = Error;

    fn voice(&mut self, pcm: Vec<i16>, _arrival: tokio::time::Instant) -> Result<()> {
        self.pcm.extend(pcm);
        Ok(())
    }

    fn frame(
        &mut self,
        frame: VideoFrame,
        _rtp_timestamp: u32,
        _arrival: tokio::time::Instant,
    ) -> Result<()> {
        self.frames.push(frame);
        Ok(())
    }
}
