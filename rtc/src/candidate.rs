//! ICE candidates between the signalling wire type ([`IceCandidate`]) and webrtc's
//! ([`RTCIceCandidateInit`]), in both directions.

use calls_protocol::signalling::IceCandidate;
use webrtc::peer_connection::RTCIceCandidateInit;

/// A candidate from the other side, as webrtc takes it.
pub fn candidate_init(candidate: IceCandidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: candidate.username_fragment,
        ..Default::default()
    }
}

/// A local candidate webrtc gathered, as the wire carries it.
pub fn wire_candidate(init: RTCIceCandidateInit) -> IceCandidate {
    IceCandidate {
        candidate: init.candidate,
        sdp_mid: init.sdp_mid,
        sdp_mline_index: init.sdp_mline_index,
        username_fragment: init.username_fragment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_crosses_both_ways_unchanged() {
        let candidate = IceCandidate {
            candidate: "candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host".to_owned(),
            sdp_mid: Some("0".to_owned()),
            sdp_mline_index: Some(0),
            username_fragment: Some("abcd".to_owned()),
        };
        let init = candidate_init(candidate.clone());
        assert_eq!(init.candidate, candidate.candidate);
        assert_eq!(init.sdp_mid.as_deref(), Some("0"));
        assert_eq!(wire_candidate(init), candidate);
    }
}
