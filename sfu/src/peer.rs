//! Builds the SFU side of one session's peer connection: Opus and VP8 only (registered as
//! payload types 111 and 96; a client may negotiate others, and forwarded packets are rewritten
//! to each receiver's own, see [`negotiated_payload_type`]), default interceptors (NACK, RTCP
//! reports, TWCC) plus [`KeyframeRequestMarker`], a known ICE ufrag so the shared UDP mux can
//! route to it, no mDNS.
//!
//! webrtc 0.21 stops all inbound RTCP at the end of the interceptor chain unless an interceptor
//! marks a packet `DeliverToApplication`; without the marker a receiver's PLI/FIR never reaches
//! `forward::run_feedback` and a sharer that sends keyframes only on request (every browser) is
//! never asked for one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rand::distributions::{Alphanumeric, DistString};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceServer, Registry,
    SettingEngineBuilder,
};

use crate::fastpath::FastLeg;
use crate::ice_mux::{MuxRuntime, UdpMux};
use crate::tcp_mux::TcpMux;
use crate::{config::IceConfig, Result};

/// Payload type the SFU registers Opus under (what it offers; a client's offer may use another).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Payload type the SFU registers VP8 under (what it offers; a client's offer may use another).
pub const VP8_PAYLOAD_TYPE: u8 = 96;

/// The payload type negotiated for `mime_type` (e.g. `audio/opus`) among a sender's negotiated
/// codecs, or `None` if the receiver accepted no such codec. Firefox offers Opus as 109, aiortc
/// as 96: a packet written with any other type is refused by the sender.
pub fn negotiated_payload_type(codecs: &[RTCRtpCodecParameters], mime_type: &str) -> Option<u8> {
    codecs
        .iter()
        .find(|codec| codec.rtp_codec.mime_type.eq_ignore_ascii_case(mime_type))
        .map(|codec| codec.payload_type)
}

/// The Opus codec as negotiated.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The VP8 codec as negotiated.
pub fn vp8_codec() -> RTCRtpCodec {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            feedback("ccm", "fir"),
            feedback("nack", ""),
            feedback("nack", "pli"),
        ],
    }
}

fn media_engine() -> Result<MediaEngine> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PAYLOAD_TYPE,
        },
        RtpCodecKind::Audio,
    )?;
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: vp8_codec(),
            payload_type: VP8_PAYLOAD_TYPE,
        },
        RtpCodecKind::Video,
    )?;
    Ok(engine)
}

/// Creates a session's peer connection on the shared mux, its keys and UDP sends watched by
/// `fast` (see `fastpath`).
pub async fn build(
    ice: &IceConfig,
    mux: &Arc<UdpMux>,
    tcp: Option<&Arc<TcpMux>>,
    handler: Arc<dyn PeerConnectionEventHandler>,
    fast: &FastLeg,
) -> Result<Arc<dyn PeerConnection>> {
    let (ufrag, password) = {
        let mut rng = rand::thread_rng();
        (
            Alphanumeric.sample_string(&mut rng, 16),
            Alphanumeric.sample_string(&mut rng, 32),
        )
    };
    let mut engine = media_engine()?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?
        .with(Slot::from(MARKER_SLOT), KeyframeRequestMarker::default());
    let settings = SettingEngineBuilder::new()
        .with_ice_credentials(ufrag.clone(), password)
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .with_crypto_provider(fast.crypto_provider())
        .with_srtp_protection_profiles(crate::fastpath::keys::OFFERED_PROFILES.to_vec())
        .build();
    let ice_servers = if ice.stun_servers.is_empty() {
        Vec::new()
    } else {
        vec![RTCIceServer {
            urls: ice.stun_servers.clone(),
            ..Default::default()
        }]
    };
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(ice_servers)
        .build();
    let udp_addrs: Vec<String> = if ice.host_addresses.is_empty() {
        vec!["0.0.0.0:0".to_owned()]
    } else {
        ice.host_addresses
            .iter()
            .map(|ip| std::net::SocketAddr::new(*ip, 0).to_string())
            .collect()
    };
    let peer = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_runtime(Arc::new(MuxRuntime::new(
            Arc::clone(mux),
            tcp.cloned(),
            ufrag,
            fast.path(),
        )))
        .with_handler(handler)
        .with_tcp_addrs(if tcp.is_some() {
            udp_addrs.clone()
        } else {
            Vec::new()
        })
        .with_udp_addrs(udp_addrs)
        .build()
        .await?;
    Ok(Arc::new(peer))
}

/// Chain position of the marker: after every built-in interceptor (the jitter buffer is at
/// 13 000), so they all see the whole of the inbound RTCP first.
const MARKER_SLOT: usize = 14_000;

fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Passes inbound PLI/FIR on to the application (other inbound RTCP is left for the chain's end
/// to drop, as without this interceptor); outbound packets pass untouched.
#[derive(Default)]
pub struct KeyframeRequestMarker {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestMarker {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                let requests = packets
                    .iter()
                    .filter(|p| is_keyframe_request(p.as_ref()))
                    .cloned()
                    .collect();
                msg.message.packet = Packet::Rtcp(requests);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> std::result::Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }
}

impl Interceptor for KeyframeRequestMarker {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::shared::TransportContext;

    fn read(
        marker: &mut KeyframeRequestMarker,
        packets: Vec<Box<dyn rtc::rtcp::Packet>>,
    ) -> TaggedPacket {
        marker
            .handle_read(TaggedPacket {
                now: Instant::now(),
                transport: TransportContext::default(),
                message: AttributedPacket::new(Packet::Rtcp(packets)),
            })
            .expect("the marker accepts every packet");
        marker
            .poll_read()
            .expect("the marker passes every packet on")
    }

    #[test]
    fn the_receivers_payload_type_is_used() {
        let codec = |mime: &str, payload_type: u8| RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                ..opus_codec()
            },
            payload_type,
        };
        let firefox = [
            codec("audio/opus", 109),
            codec("audio/telephone-event", 101),
        ];
        assert_eq!(negotiated_payload_type(&firefox, MIME_TYPE_OPUS), Some(109));
        let aiortc = [codec("video/VP8", 97), codec("video/rtx", 98)];
        assert_eq!(negotiated_payload_type(&aiortc, "video/vp8"), Some(97));
        assert_eq!(negotiated_payload_type(&aiortc, MIME_TYPE_OPUS), None);
        assert_eq!(negotiated_payload_type(&[], MIME_TYPE_VP8), None);
    }

    #[test]
    fn keyframe_requests_are_marked_for_the_application_and_reports_are_not() {
        let mut marker = KeyframeRequestMarker::default();
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 42,
        };
        let out = read(
            &mut marker,
            vec![Box::new(ReceiverReport::default()), Box::new(pli)],
        );
        assert!(out.message.has(&Attribute::DeliverToApplication));
        let Packet::Rtcp(kept) = &out.message.packet else {
            panic!("rtcp stays rtcp");
        };
        assert_eq!(kept.len(), 1, "only the request is handed over");
        assert!(kept[0].as_any().is::<PictureLossIndication>());

        let out = read(&mut marker, vec![Box::new(ReceiverReport::default())]);
        assert!(!out.message.has(&Attribute::DeliverToApplication));
    }
}
