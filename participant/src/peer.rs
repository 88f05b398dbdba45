//! The participant's peer connection: the call's two codecs, webrtc's default interceptors and
//! the keyframe-request marker that hands PLI/FIR to the screen share (all from
//! `calls_rtc::codecs`), an ephemeral UDP port on the address that reaches the SFU.

use std::net::IpAddr;
use std::sync::Arc;

use calls_protocol::signalling::IceServer;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceServer, RTCIceTransportPolicy, SettingEngineBuilder,
};

use crate::Result;

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
    let (engine, registry) = calls_rtc::codecs::engine_and_interceptors()?;
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
    let track = calls_rtc::codecs::local_track(kind, stream_id, track_id, ssrc);
    let track = TrackLocalStaticSample::new(std::time::Instant::now(), track)?;
    Ok((Arc::new(track), ssrc))
}
