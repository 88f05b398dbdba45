//! Rewrites the SFU's own ICE candidates before they are signalled: host candidates advertise
//! the shared mux port (see `ice_mux`) instead of the per-connection port webrtc believes it
//! bound, and the configured `ice_host_override` address (NAT 1:1 IP or hostname) instead of the
//! local one. Pure string functions, so they are unit-tested directly.

/// How host candidates are advertised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertise {
    /// The shared UDP port.
    pub udp_port: u16,
    /// The shared ICE-TCP port, if ICE-TCP is on.
    pub tcp_port: Option<u16>,
    /// Address to advertise instead of the local one, if any.
    pub host_override: Option<String>,
}

/// Rewrites one `candidate:...` attribute value (without `a=`). Candidates that are not host
/// candidates, or are not well formed, are returned unchanged.
pub fn rewrite_candidate(candidate: &str, advertise: &Advertise) -> String {
    let fields: Vec<&str> = candidate.split(' ').collect();
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
    if fields.len() < 8 || fields[6] != "typ" || fields[7] != "host" {
        return candidate.to_owned();
    }
    let port = if fields[2].eq_ignore_ascii_case("udp") {
        advertise.udp_port
    } else if fields[2].eq_ignore_ascii_case("tcp") && fields.ends_with(&["tcptype", "passive"]) {
        match advertise.tcp_port {
            Some(port) => port,
            None => return candidate.to_owned(),
        }
    } else {
        return candidate.to_owned();
    };
    let port = port.to_string();
    let address = advertise.host_override.as_deref().unwrap_or(fields[4]);
    let mut out: Vec<&str> = fields.clone();
    out[4] = address;
    out[5] = &port;
    out.join(" ")
}

/// Rewrites every `a=candidate:` line of an SDP.
pub fn rewrite_sdp(sdp: &str, advertise: &Advertise) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        match body.strip_prefix("a=") {
            Some(value) if value.starts_with("candidate:") => {
                out.push_str("a=");
                out.push_str(&rewrite_candidate(value, advertise));
                out.push_str(ending);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// The media id of the first media section of `sdp` (`a=mid:` in the first `m=` section). With
/// BUNDLE every candidate of the SFU belongs to that section, so trickled candidates name it.
pub fn first_mid(sdp: &str) -> Option<String> {
    let mut in_media = false;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("m=") {
            if in_media {
                // The first section had no mid.
                return None;
            }
            in_media = true;
        } else if in_media {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                return (!mid.is_empty()).then(|| mid.to_owned());
            }
        }
    }
    None
}

/// The transport (`udp` or `tcp`, lower case) of a `candidate:` value, for metrics.
pub fn candidate_transport(candidate: &str) -> &'static str {
    match candidate.split(' ').nth(2) {
        Some(t) if t.eq_ignore_ascii_case("udp") => "udp",
        Some(t) if t.eq_ignore_ascii_case("tcp") => "tcp",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_media_sections_mid_is_found() {
        let sdp = "v=0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
        assert_eq!(first_mid(sdp).as_deref(), Some("0"));
        let firefox = "v=0\na=mid:session-level-is-not-a-mid\nm=audio 9 UDP/TLS/RTP/SAVPF 109\na=sendrecv\na=mid:{6ad2c1f2}\n";
        assert_eq!(first_mid(firefox).as_deref(), Some("{6ad2c1f2}"));
        assert_eq!(
            first_mid("v=0\r\nm=audio 9 RTP 0\r\nm=video 9 RTP 96\r\na=mid:1\r\n"),
            None
        );
        assert_eq!(first_mid("v=0\r\n"), None);
    }

    #[test]
    fn candidate_transports_are_named() {
        assert_eq!(
            candidate_transport("candidate:1 1 udp 5 127.0.0.1 5000 typ host"),
            "udp"
        );
        assert_eq!(
            candidate_transport("candidate:1 1 TCP 5 127.0.0.1 5000 typ host tcptype passive"),
            "tcp"
        );
        assert_eq!(candidate_transport("garbage"), "other");
    }

    fn advertise(host_override: Option<&str>) -> Advertise {
        Advertise {
            udp_port: 8443,
            tcp_port: Some(8443),
            host_override: host_override.map(str::to_owned),
        }
    }

    #[test]
    fn host_udp_candidates_get_the_mux_port() {
        let candidate = "candidate:1 1 udp 2130706431 10.0.0.5 53211 typ host";
        assert_eq!(
            rewrite_candidate(candidate, &advertise(None)),
            "candidate:1 1 udp 2130706431 10.0.0.5 8443 typ host"
        );
        assert_eq!(
            rewrite_candidate(candidate, &advertise(Some("sfu.example.com"))),
            "candidate:1 1 udp 2130706431 sfu.example.com 8443 typ host"
        );
    }

    #[test]
    fn passive_tcp_candidates_get_the_tcp_mux_port() {
        let candidate = "candidate:4 1 tcp 1518280447 10.0.0.5 40123 typ host tcptype passive";
        assert_eq!(
            rewrite_candidate(candidate, &advertise(None)),
            "candidate:4 1 tcp 1518280447 10.0.0.5 8443 typ host tcptype passive"
        );
    }

    #[test]
    fn other_candidates_are_untouched() {
        for candidate in [
            "candidate:2 1 udp 1694498815 1.2.3.4 40000 typ srflx raddr 10.0.0.5 rport 8443",
            "candidate:3 1 tcp 1 10.0.0.5 9 typ host tcptype active",
            "garbage",
            "",
        ] {
            assert_eq!(
                rewrite_candidate(candidate, &advertise(Some("x"))),
                candidate
            );
        }
    }

    #[test]
    fn sdp_lines_are_rewritten_and_line_endings_kept() {
        let sdp = "v=0\r\na=candidate:1 1 udp 5 127.0.0.1 5000 typ host\r\na=mid:0\r\n";
        assert_eq!(
            rewrite_sdp(sdp, &advertise(None)),
            "v=0\r\na=candidate:1 1 udp 5 127.0.0.1 8443 typ host\r\na=mid:0\r\n"
        );
    }
}
