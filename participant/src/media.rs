//! Media tasks of a participant: pacing voice and screen frames into local tracks, and reading the
//! keyframe requests that come back for the screen share.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::media::Sample;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::rtp_transceiver::RtpSender;

use calls_rtc::codecs::{OPUS_PAYLOAD_TYPE, VP8_PAYLOAD_TYPE};
use calls_rtc::keyframe::is_keyframe_request;

use crate::audio::{VoiceEncoder, FRAME_SAMPLES};
use crate::video::{pattern_frame, Vp8Encoder};
use crate::Result;

static SCREEN_INDEX: AtomicU32 = AtomicU32::new(0);

/// A process-wide counter for screen track ids.
pub(crate) fn next_screen_index() -> u32 {
    SCREEN_INDEX.fetch_add(1, Ordering::Relaxed)
}

/// Sends PCM as paced 20 ms Opus frames.
pub(crate) fn spawn_voice(
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    pcm: Vec<i16>,
) -> JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let mut encoder = VoiceEncoder::new()?;
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for frame in pcm.chunks(FRAME_SAMPLES) {
            ticker.tick().await;
            let data = encoder.encode(frame)?;
            let sample = Sample {
                data: data.into(),
                timestamp: Instant::now(),
                duration: Duration::from_millis(20),
                packet_timestamp: 0,
                prev_dropped_packets: 0,
                prev_padding_packets: 0,
            };
            // Before the connection is up the track is unbound and the frame is dropped, like a
            // microphone that nobody hears yet.
            let _ = track
                .write_sample(ssrc, OPUS_PAYLOAD_TYPE, &sample, &[])
                .await;
        }
        Ok(())
    })
}

/// When the screen share's VP8 encoder emits keyframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyframePolicy {
    /// The first frame, every `fps` frames (one a second), and on request.
    #[default]
    Periodic,
    /// The first frame and on request (PLI/FIR) only, like a browser: a receiver that missed the
    /// first keyframe sees nothing until its request reaches the sharer.
    OnRequestOnly,
}

/// How to share the moving test pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenOptions {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second (clamped to 1..=60).
    pub fps: u32,
    /// Keyframe policy of the encoder.
    pub keyframes: KeyframePolicy,
    /// Share the pattern's first picture over and over (a still slide) instead of the moving bar.
    pub still: bool,
}

impl ScreenOptions {
    /// `width`×`height` at `fps`, periodic keyframes.
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        Self {
            width,
            height,
            fps,
            keyframes: KeyframePolicy::Periodic,
            still: false,
        }
    }
}

/// What a screen share has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScreenStats {
    /// Frames encoded.
    pub frames: u64,
    /// Keyframes among them.
    pub keyframes: u64,
    /// Keyframe requests (PLI/FIR) received from the SFU.
    pub keyframe_requests: u64,
}

#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    keyframes: AtomicU64,
    keyframe_requests: AtomicU64,
    keyframe_wanted: AtomicBool,
}

/// A running screen share of the test pattern.
pub(crate) struct ScreenShare {
    stop: CancellationToken,
    tasks: [JoinHandle<()>; 2],
    sender: Arc<dyn RtpSender>,
    counters: Arc<Counters>,
}

/// Whether an encoded VP8 frame is a keyframe (RFC 6386 §9.1: bit 0 of the frame tag is 0).
fn is_vp8_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|tag| tag & 1 == 0)
}

impl ScreenShare {
    pub(crate) fn start(
        track: Arc<TrackLocalStaticSample>,
        ssrc: u32,
        sender: Arc<dyn RtpSender>,
        options: ScreenOptions,
    ) -> Result<Self> {
        let ScreenOptions {
            width,
            height,
            fps,
            keyframes,
            still,
        } = options;
        let fps = fps.clamp(1, 60);
        // libvpx inserts a keyframe every `gop` frames; "only on request" is a gop longer than
        // any call (a day of frames).
        let gop = match keyframes {
            KeyframePolicy::Periodic => fps,
            KeyframePolicy::OnRequestOnly => fps * 86_400,
        };
        let mut encoder = Vp8Encoder::with_gop(width, height, fps, gop, 500_000)?;
        let stop = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        let feedback = tokio::spawn(read_keyframe_requests(
            Arc::clone(&track),
            Arc::clone(&counters),
            stop.clone(),
        ));
        let stopped = stop.clone();
        let state = Arc::clone(&counters);
        let encode = tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / f64::from(fps));
            let mut ticker = tokio::time::interval(period);
            let mut index = 0u64;
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let picture = pattern_frame(width, height, if still { 0 } else { index });
                let requested = state.keyframe_wanted.swap(false, Ordering::Relaxed);
                let encoded = match encoder.encode(&picture, index == 0 || requested) {
                    Ok(encoded) => encoded,
                    Err(err) => {
                        tracing::warn!(error = %err, "vp8 encode failed");
                        return;
                    }
                };
                index += 1;
                for data in encoded {
                    state.frames.fetch_add(1, Ordering::Relaxed);
                    if is_vp8_keyframe(&data) {
                        state.keyframes.fetch_add(1, Ordering::Relaxed);
                    }
                    let sample = Sample {
                        data,
                        timestamp: Instant::now(),
                        duration: period,
                        packet_timestamp: 0,
                        prev_dropped_packets: 0,
                        prev_padding_packets: 0,
                    };
                    let _ = track
                        .write_sample(ssrc, VP8_PAYLOAD_TYPE, &sample, &[])
                        .await;
                }
            }
        });
        Ok(Self {
            stop,
            tasks: [encode, feedback],
            sender,
            counters,
        })
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> ScreenStats {
        ScreenStats {
            frames: self.counters.frames.load(Ordering::Relaxed),
            keyframes: self.counters.keyframes.load(Ordering::Relaxed),
            keyframe_requests: self.counters.keyframe_requests.load(Ordering::Relaxed),
        }
    }

    /// Stops encoding; returns the sender to remove from the connection.
    pub(crate) async fn stop(self) -> Arc<dyn RtpSender> {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.sender
    }
}

/// Reads the RTCP the SFU sends about the screen track and flags the next frame as a keyframe
/// on every PLI/FIR.
async fn read_keyframe_requests(
    track: Arc<TrackLocalStaticSample>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            event = track.poll() => event,
        };
        let Some(TrackLocalEvent::OnRtcpPacket(packets)) = event else {
            // Not bound yet (negotiation in flight): nothing to read until it is.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        };
        if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
            counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
            counters.keyframe_wanted.store(true, Ordering::Relaxed);
        }
    }
}
