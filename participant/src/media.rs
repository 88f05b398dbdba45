//! Media tasks of a participant: pacing voice and screen frames into local tracks, and
//! [`RemoteTrack`], a received track with its owner, display name and kind, plus helpers that
//! decode it (voice to PCM, screen to I420 frames).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calls_protocol::signalling::{TrackId, TrackKind};
use rtc::media::Sample;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

use crate::audio::{VoiceDecoder, VoiceEncoder, FRAME_SAMPLES};
use crate::client::Names;
use crate::peer::{OPUS_PAYLOAD_TYPE, VP8_PAYLOAD_TYPE};
use crate::video::{pattern_frame, VideoFrame, Vp8Decoder, Vp8Encoder};
use crate::{Error, Result};

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

/// A running screen share of the test pattern.
pub(crate) struct ScreenShare {
    stop: CancellationToken,
    task: JoinHandle<()>,
    sender: Arc<dyn RtpSender>,
}

impl ScreenShare {
    pub(crate) fn start(
        track: Arc<TrackLocalStaticSample>,
        ssrc: u32,
        sender: Arc<dyn RtpSender>,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self> {
        let fps = fps.clamp(1, 60);
        let mut encoder = Vp8Encoder::new(width, height, fps, 500_000)?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / f64::from(fps));
            let mut ticker = tokio::time::interval(period);
            let mut index = 0u64;
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let picture = pattern_frame(width, height, index);
                let encoded = match encoder.encode(&picture, index == 0) {
                    Ok(encoded) => encoded,
                    Err(err) => {
                        tracing::warn!(error = %err, "vp8 encode failed");
                        return;
                    }
                };
                index += 1;
                for data in encoded {
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
        Ok(Self { stop, task, sender })
    }

    /// Stops encoding; returns the sender to remove from the connection.
    pub(crate) async fn stop(self) -> Arc<dyn RtpSender> {
        self.stop.cancel();
        let _ = self.task.await;
        self.sender
    }
}

/// A track received from the SFU.
pub struct RemoteTrack {
    /// Parsed id: kind, owner session, index.
    pub id: TrackId,
    /// Owner's display name, if the owner was announced.
    pub owner_name: Option<String>,
    inner: Arc<dyn TrackRemote>,
    media_ssrc: u32,
}

impl RemoteTrack {
    pub(crate) async fn new(inner: Arc<dyn TrackRemote>, names: &Names) -> Option<Self> {
        let track_id = inner.track_id().await;
        let Some(id) = TrackId::parse(&track_id) else {
            tracing::warn!(
                track_id,
                "ignoring a track that does not follow the id convention"
            );
            return None;
        };
        let owner_name = names
            .lock()
            .expect("names lock is never poisoned")
            .get(&id.session_id)
            .cloned();
        let media_ssrc = inner.ssrcs().await.first().copied().unwrap_or_default();
        Some(Self {
            id,
            owner_name,
            inner,
            media_ssrc,
        })
    }

    /// Voice or screen.
    pub fn kind(&self) -> TrackKind {
        self.id.kind
    }

    /// Session id of the owner.
    pub fn owner(&self) -> &str {
        &self.id.session_id
    }

    /// The next RTP packet; `None` when the track ended.
    pub async fn next_packet(&self) -> Option<rtp::Packet> {
        loop {
            match self.inner.poll().await? {
                TrackRemoteEvent::OnRtpPacket(packet) => return Some(packet),
                TrackRemoteEvent::OnEnded => return None,
                _ => continue,
            }
        }
    }

    /// Asks the sender (through the SFU) for a keyframe.
    pub async fn request_keyframe(&self) {
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: self.media_ssrc,
        };
        let _ = self.inner.write_rtcp(vec![Box::new(pli)]).await;
    }

    /// Decodes voice for `duration` (or until the track ends or stays silent for `idle`).
    pub async fn record_voice(&self, duration: Duration, idle: Duration) -> Result<Vec<i16>> {
        let mut decoder = VoiceDecoder::new()?;
        let deadline = tokio::time::Instant::now() + duration;
        let mut pcm = Vec::new();
        loop {
            let wait = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(idle);
            match tokio::time::timeout(wait, self.next_packet()).await {
                Ok(Some(packet)) => pcm.extend(decoder.push(packet)),
                Ok(None) | Err(_) => break,
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        Ok(pcm)
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
        let mut decoder = Vp8Decoder::new()?;
        self.request_keyframe().await;
        let deadline = tokio::time::Instant::now() + duration;
        let mut frames = Vec::new();
        loop {
            let wait = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(idle);
            match tokio::time::timeout(wait, self.next_packet()).await {
                Ok(Some(packet)) => {
                    let output = decoder.push(&packet);
                    frames.extend(output.frames);
                    if output.wants_keyframe {
                        self.request_keyframe().await;
                    }
                }
                Ok(None) | Err(_) => break,
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        Ok(frames)
    }
}
