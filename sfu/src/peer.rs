//! Builds the SFU side of one session's peer connection: Opus and VP8 only (fixed payload types
//! 111 and 96, the ones the participant client uses too), default interceptors (NACK, RTCP
//! reports, TWCC), a known ICE ufrag so the shared UDP mux can route to it, no mDNS.

use std::sync::Arc;

use rand::distributions::{Alphanumeric, DistString};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceServer, Registry,
    SettingEngineBuilder,
};

use crate::ice_mux::{MuxRuntime, UdpMux};
use crate::tcp_mux::TcpMux;
use crate::{config::IceConfig, Result};

/// Payload type of Opus on every leg.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Payload type of VP8 on every leg.
pub const VP8_PAYLOAD_TYPE: u8 = 96;

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

/// Creates a session's peer connection on the shared mux.
pub async fn build(
    ice: &IceConfig,
    mux: &Arc<UdpMux>,
    tcp: Option<&Arc<TcpMux>>,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>> {
    let (ufrag, password) = {
        let mut rng = rand::thread_rng();
        (
            Alphanumeric.sample_string(&mut rng, 16),
            Alphanumeric.sample_string(&mut rng, 32),
        )
    };
    let mut engine = media_engine()?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    let settings = SettingEngineBuilder::new()
        .with_ice_credentials(ufrag.clone(), password)
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
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
