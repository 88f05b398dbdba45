//! The codecs of a call and the peer-connection pieces built from them: Opus and VP8 only,
//! registered as payload types 111 and 96 on both sides (a browser may negotiate others, see
//! [`negotiated_payload_type`]), webrtc's default interceptors (NACK, RTCP reports, TWCC) plus
//! the [`KeyframeRequestMarker`](crate::keyframe::KeyframeRequestMarker), and local tracks that
//! carry one of the two codecs.

use rtc::media_stream::MediaStreamTrack;
pub use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::error::Result;
use webrtc::peer_connection::{register_default_interceptors, MediaEngine, Registry};

use crate::keyframe::{marker_slot, KeyframeRequestMarker};

/// Payload type Opus is registered under (what this side offers; a remote offer may use another).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// Payload type VP8 is registered under (what this side offers; a remote offer may use another).
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

/// The VP8 codec as negotiated, with the feedback a screen share needs (FIR, NACK, PLI).
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

/// The codec of a track of `kind`: Opus for audio, VP8 for video.
pub fn codec_of(kind: RtpCodecKind) -> RTCRtpCodec {
    match kind {
        RtpCodecKind::Video => vp8_codec(),
        _ => opus_codec(),
    }
}

/// The payload type negotiated for `mime_type` (e.g. `audio/opus`) among a sender's negotiated
/// codecs, or `None` if the receiver accepted no such codec. Firefox offers Opus as 109, aiortc
/// as 96: a packet written with any other type is refused by the sender.
pub fn negotiated_payload_type(codecs: &[RTCRtpCodecParameters], mime_type: &str) -> Option<u8> {
    codecs
        .iter()
        .find(|codec| codec.rtp_codec.mime_type.eq_ignore_ascii_case(mime_type))
        .map(|codec| codec.payload_type)
}

/// A media engine with the two codecs, and the interceptor chain to build a peer connection
/// with: webrtc's defaults plus the keyframe-request marker after them.
pub fn engine_and_interceptors() -> Result<(MediaEngine, Registry)> {
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
    let registry = register_default_interceptors(Registry::new(), &mut engine)?
        .with(marker_slot(), KeyframeRequestMarker::default());
    Ok((engine, registry))
}

/// A local track of `kind` (in stream `stream_id`, named `track_id`) sent with `ssrc` and the
/// codec of its kind.
pub fn local_track(
    kind: RtpCodecKind,
    stream_id: &str,
    track_id: &str,
    ssrc: u32,
) -> MediaStreamTrack {
    MediaStreamTrack::new(
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
            codec: codec_of(kind),
            ..Default::default()
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn each_kind_carries_its_codec() {
        assert_eq!(codec_of(RtpCodecKind::Audio).mime_type, MIME_TYPE_OPUS);
        assert_eq!(codec_of(RtpCodecKind::Video).mime_type, MIME_TYPE_VP8);
    }

    #[test]
    fn the_engine_registers_both_codecs() {
        engine_and_interceptors().expect("the two codecs and the default interceptors register");
    }
}
