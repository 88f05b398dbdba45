//! [`RemoteTrack`]: a track received from the SFU, with its owner, display name and kind, and the
//! display names of the call's members ([`Names`]) that label it. The receive loop (`receive.rs`) reads
//! it; the actor creates it when a track arrives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use calls_protocol::signalling::{TrackId, TrackKind};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// Display names of the call's members by session, shared by the client and its actor.
pub(crate) type Names = Arc<Mutex<HashMap<String, String>>>;

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
}
