//! The participant's peer connection: the same two codecs as the SFU (Opus 111, VP8 96),
//! default interceptors plus one that hands keyframe requests to the screen share, an ephemeral
//! UDP port on the address that reaches the SFU.

use std::net::IpAddr;
use std::sync::Arc;

use calls_protocol::signalling::IceServer;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy,
    Registry, SettingEngineBuilder,
};

use crate::Result;

/// Payload type of Opus.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Payload type of VP8.
pub const VP8_PAYLOAD_TYPE: u8 = 96;

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
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

/// How the peer connection reaches the SFU.
pub struct Transport<'a> {
    /// Local address of its sockets (ephemeral ports).
    pub bind_ip: IpAddr,
    /// ICE over TCP only (no UDP).
    pub tcp_only: bool,
    /// STUN/TURN servers from the SFU's `joined`.
    pub ice_servers: &'a [IceServer],
    /// Only relayed candidates (through the TURN servers).
    pub relay_only: bool,
}

/// Builds the peer connection, bound to `bind_ip` on an ephemeral port (UDP, or TCP only).
pub async fn build(
    transport: Transport<'_>,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>> {
    let Transport {
        bind_ip,
        tcp_only,
        ice_servers,
        relay_only,
    } = transport;
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
    let registry = register_default_interceptors(Registry::new(), &mut engine)?.with(
        crate::feedback::marker_slot(),
        crate::feedback::KeyframeRequestMarker::default(),
    );
    let local = std::net::SocketAddr::new(bind_ip, 0);
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .build();
    let peer = PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(
                    ice_servers
                        .iter()
                        .map(|server| RTCIceServer {
                            urls: server.urls.clone(),
                            username: server.username.clone().unwrap_or_default(),
                            credential: server.credential.clone().unwrap_or_default(),
                        })
                        .collect(),
                )
                .with_ice_transport_policy(if relay_only {
                    RTCIceTransportPolicy::Relay
                } else {
                    RTCIceTransportPolicy::All
                })
                .build(),
        )
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(handler)
        .with_udp_addrs(if tcp_only { Vec::new() } else { vec![local] })
        .with_tcp_addrs(if tcp_only { vec![local] } else { Vec::new() })
        .build()
        .await?;
    Ok(Arc::new(peer))
}

/// A local track fed with encoded frames. Returns the track and its SSRC.
pub fn sample_track(
    kind: RtpCodecKind,
    stream_id: &str,
    track_id: &str,
) -> Result<(Arc<TrackLocalStaticSample>, u32)> {
    let ssrc = rand::random::<u32>();
    let codec = match kind {
        RtpCodecKind::Video => vp8_codec(),
        _ => opus_codec(),
    };
    let track = MediaStreamTrack::new(
        stream_id.to_owned(),
        track_id.to_owned(),
        track_id.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec,
            ..Default::default()
        }],
    );
    let track = TrackLocalStaticSample::new(std::time::Instant::now(), track)?;
    Ok((Arc::new(track), ssrc))
}
