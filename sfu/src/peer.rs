//! Builds the SFU side of one session's peer connection: the call's two codecs, webrtc's default
//! interceptors and the keyframe-request marker (all from `calls_rtc::codecs`), a known ICE ufrag
//! so the shared UDP mux can route to it, no mDNS.

use std::sync::Arc;

use rand::distributions::{Alphanumeric, DistString};
use rtc::ice::mdns::MulticastDnsMode;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceServer, SettingEngineBuilder,
};

use crate::fastpath::FastLeg;
use crate::ice_mux::{MuxRuntime, UdpMux};
use crate::tcp_mux::TcpMux;
use crate::{config::IceConfig, Result};

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
    let (engine, registry) = calls_rtc::codecs::engine_and_interceptors()?;
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
