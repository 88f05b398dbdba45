//! Which remote ICE candidates a session may give the SFU (issue 21, finding 8). Every remote
//! candidate makes the SFU send STUN connectivity checks to the address it names, so a client
//! could otherwise point the SFU's traffic at any address and port: services on the SFU's own
//! loopback, link-local neighbours, the cloud metadata service. Pure code, unit-tested here;
//! `negotiation.rs` applies it to trickled candidates and to the `a=candidate` lines of SDP.
//!
//! Refused, whatever the settings: addresses that are not IP literals (mDNS `.local` names and
//! host names, which the SFU does not resolve anyway), unspecified, multicast and broadcast
//! addresses, port 0, and the cloud metadata addresses ([`METADATA_ADDRESSES`]). Refused unless
//! configured: loopback (`ice.allow_loopback_candidates`) and link-local
//! (`ice.allow_link_local_candidates`). At most `limits.ice_candidates_per_session` distinct
//! candidates (transport, address, port) per session; repeats (a re-offer lists the same ones
//! again) are free. TCP `active` candidates are dropped: the SFU is passive on ICE-TCP and
//! never connects to one.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Cloud instance-metadata and platform endpoints (AWS, GCP, Azure, Oracle, Alibaba, ECS): never
/// a participant.
pub const METADATA_ADDRESSES: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0023)),
];

/// Why a candidate was not given to the WebRTC stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is not allowed (see the module docs); counted as `ice_candidate_refused`.
    Address,
    /// The session already gave its quota of distinct candidates; counted as `ice_candidate_limit`.
    Limit,
    /// Harmless and useless to the SFU (a TCP active candidate); not counted.
    Ignored,
}

impl Refusal {
    /// The `sfu_rtc_errors_total` type this refusal counts under, if any.
    pub fn metric(self) -> Option<&'static str> {
        match self {
            Refusal::Address => Some("ice_candidate_refused"),
            Refusal::Limit => Some("ice_candidate_limit"),
            Refusal::Ignored => None,
        }
    }
}

/// Which special addresses are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidatePolicy {
    pub allow_loopback: bool,
    pub allow_link_local: bool,
}

/// The address and port a candidate names, or why it is refused. `Ok(None)` for a line that is
/// not a well-formed candidate: it goes to the WebRTC stack unchanged, which refuses it with an
/// error the client sees, as before.
fn parse(
    candidate: &str,
    policy: CandidatePolicy,
) -> Result<Option<(String, IpAddr, u16)>, Refusal> {
    let candidate = candidate.trim();
    let candidate = candidate.strip_prefix("a=").unwrap_or(candidate);
    let fields: Vec<&str> = candidate.split_ascii_whitespace().collect();
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
    if fields.len() < 8 || !fields[0].starts_with("candidate:") || fields[6] != "typ" {
        return Ok(None);
    }
    let transport = fields[2].to_ascii_lowercase();
    let Ok(port) = fields[5].parse::<u16>() else {
        return Ok(None);
    };
    if transport == "tcp" {
        let tcp_type = fields
            .windows(2)
            .find(|pair| pair[0] == "tcptype")
            .map(|pair| pair[1]);
        if tcp_type == Some("active") {
            return Err(Refusal::Ignored);
        }
    }
    let address = fields[4].trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = address.parse::<IpAddr>() else {
        return Err(Refusal::Address);
    };
    if port == 0 || !address_allowed(ip, policy) {
        return Err(Refusal::Address);
    }
    Ok(Some((transport, ip, port)))
}

/// Whether the SFU may send to `ip` on a client's word.
pub fn address_allowed(ip: IpAddr, policy: CandidatePolicy) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    if ip.is_unspecified() || ip.is_multicast() || METADATA_ADDRESSES.contains(&ip) {
        return false;
    }
    let (loopback, link_local) = match ip {
        IpAddr::V4(v4) => {
            if v4.is_broadcast() {
                return false;
            }
            (v4.is_loopback(), v4.is_link_local())
        }
        IpAddr::V6(v6) => (v6.is_loopback(), (v6.segments()[0] & 0xffc0) == 0xfe80),
    };
    (!loopback || policy.allow_loopback) && (!link_local || policy.allow_link_local)
}

/// The remote candidates one session has given.
#[derive(Debug)]
pub struct RemoteCandidates {
    policy: CandidatePolicy,
    limit: usize,
    seen: HashSet<(String, IpAddr, u16)>,
}

impl RemoteCandidates {
    /// A session that may give `limit` distinct candidates under `policy`.
    pub fn new(policy: CandidatePolicy, limit: usize) -> Self {
        Self {
            policy,
            limit,
            seen: HashSet::new(),
        }
    }

    /// Whether `candidate` may go to the WebRTC stack (and, if new, takes one of the quota).
    pub fn admit(&mut self, candidate: &str) -> Result<(), Refusal> {
        let Some(key) = parse(candidate, self.policy)? else {
            return Ok(());
        };
        if self.seen.contains(&key) {
            return Ok(());
        }
        if self.seen.len() >= self.limit {
            return Err(Refusal::Limit);
        }
        self.seen.insert(key);
        Ok(())
    }

    /// `sdp` without the `a=candidate:` lines that are not admitted, and the refusals.
    pub fn filter_sdp(&mut self, sdp: &str) -> (String, Vec<Refusal>) {
        let mut out = String::with_capacity(sdp.len());
        let mut refused = Vec::new();
        for line in sdp.split_inclusive('\n') {
            let body = line.trim_end_matches(['\r', '\n']);
            if body.starts_with("a=candidate:") {
                if let Err(refusal) = self.admit(body) {
                    refused.push(refusal);
                    continue;
                }
            }
            out.push_str(line);
        }
        (out, refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: CandidatePolicy = CandidatePolicy {
        allow_loopback: false,
        allow_link_local: false,
    };

    fn host(address: &str, port: u16) -> String {
        format!("candidate:1 1 udp 2130706431 {address} {port} typ host")
    }

    #[test]
    fn special_addresses_are_refused() {
        let mut session = RemoteCandidates::new(STRICT, 100);
        for address in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "168.63.129.16",
            "::ffff:127.0.0.1",
            "abcd.local",
            "evil.example.com",
        ] {
            assert_eq!(
                session.admit(&host(address, 5000)),
                Err(Refusal::Address),
                "{address}"
            );
        }
        assert_eq!(session.admit(&host("10.0.0.5", 0)), Err(Refusal::Address));
        for address in [
            "10.0.0.5",
            "192.168.1.2",
            "203.0.113.9",
            "2001:db8::5",
            "fd12::1",
        ] {
            assert_eq!(session.admit(&host(address, 5000)), Ok(()), "{address}");
        }
        let tcp_active = "candidate:2 1 tcp 1518280447 10.0.0.5 9 typ host tcptype active";
        assert_eq!(session.admit(tcp_active), Err(Refusal::Ignored));
        let relay = "candidate:3 1 udp 41885439 198.51.100.7 61000 typ relay raddr 0.0.0.0 rport 0";
        assert_eq!(session.admit(relay), Ok(()));
        // Not a candidate at all: left to the WebRTC stack, which reports it.
        assert_eq!(session.admit("garbage"), Ok(()));
    }

    #[test]
    fn settings_allow_loopback_and_link_local_but_never_metadata() {
        let open = CandidatePolicy {
            allow_loopback: true,
            allow_link_local: true,
        };
        let mut session = RemoteCandidates::new(open, 100);
        assert_eq!(session.admit(&host("127.0.0.1", 5000)), Ok(()));
        assert_eq!(session.admit(&host("169.254.3.4", 5000)), Ok(()));
        assert_eq!(session.admit(&host("fe80::2", 5000)), Ok(()));
        assert_eq!(
            session.admit(&host("169.254.169.254", 80)),
            Err(Refusal::Address)
        );
    }

    #[test]
    fn distinct_candidates_are_capped_and_repeats_are_free() {
        let mut session = RemoteCandidates::new(STRICT, 3);
        for port in 5000..5003 {
            assert_eq!(session.admit(&host("10.0.0.5", port)), Ok(()));
        }
        assert_eq!(session.admit(&host("10.0.0.5", 5003)), Err(Refusal::Limit));
        assert_eq!(session.admit(&host("10.0.0.5", 5001)), Ok(()), "a repeat");
    }

    #[test]
    fn sdp_lines_are_filtered() {
        let mut session = RemoteCandidates::new(STRICT, 10);
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n\
                   a=candidate:2 1 udp 1 10.0.0.5 5000 typ host\r\na=end-of-candidates\r\n";
        let (filtered, refused) = session.filter_sdp(sdp);
        assert_eq!(refused, vec![Refusal::Address]);
        assert!(!filtered.contains("127.0.0.1"));
        assert!(filtered.contains("a=candidate:2 1 udp 1 10.0.0.5 5000 typ host\r\n"));
        assert!(filtered.ends_with("a=end-of-candidates\r\n"));
    }
}
