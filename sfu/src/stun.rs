//! Just enough STUN to route a datagram (RFC 8489): tell STUN from DTLS and SRTP, read a binding
//! request's transaction id and the local ICE username fragment it names. Both shared ICE sockets
//! route by it: `ice_mux.rs` (UDP) and `tcp_mux.rs` (the first frame of an ICE-TCP connection).
//! Pure, and on the forwarding path: every datagram the UDP mux receives is classified.

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_ATTR_USERNAME: u16 = 0x0006;

/// What a datagram looks like to the demultiplexer.
#[derive(Debug, PartialEq, Eq)]
pub enum Stun<'a> {
    /// A binding request carrying `USERNAME = <local ufrag>:<remote ufrag>`.
    Request {
        local_ufrag: Option<&'a str>,
        transaction: [u8; 12],
    },
    /// Any other STUN message (responses, indications).
    Other { transaction: [u8; 12] },
    /// DTLS, SRTP, SRTCP.
    Media,
}

/// What `packet` is, and for a binding request, the ufrag it names. Inlined: the UDP mux calls it
/// for every datagram it receives.
#[inline]
pub fn classify(packet: &[u8]) -> Stun<'_> {
    if packet.len() < 20 || packet[0] > 3 || packet[4..8] != STUN_MAGIC_COOKIE {
        return Stun::Media;
    }
    let mut transaction = [0u8; 12];
    transaction.copy_from_slice(&packet[8..20]);
    let message_type = u16::from_be_bytes([packet[0], packet[1]]);
    let is_request = message_type & 0x0110 == 0;
    if !is_request {
        return Stun::Other { transaction };
    }
    let mut offset = 20;
    let mut local_ufrag = None;
    while offset + 4 <= packet.len() {
        let kind = u16::from_be_bytes([packet[offset], packet[offset + 1]]);
        let len = u16::from_be_bytes([packet[offset + 2], packet[offset + 3]]) as usize;
        let start = offset + 4;
        let Some(value) = packet.get(start..start + len) else {
            break;
        };
        if kind == STUN_ATTR_USERNAME {
            local_ufrag = std::str::from_utf8(value)
                .ok()
                .and_then(|username| username.split(':').next());
            break;
        }
        offset = start + len.div_ceil(4) * 4;
    }
    Stun::Request {
        local_ufrag,
        transaction,
    }
}

/// The local ufrag named by a STUN binding request (`USERNAME = <local>:<remote>`).
pub fn local_ufrag(packet: &[u8]) -> Option<&str> {
    match classify(packet) {
        Stun::Request { local_ufrag, .. } => local_ufrag,
        _ => None,
    }
}

/// STUN packets for the tests of the muxes.
#[cfg(test)]
pub(crate) mod test_packets {
    use super::*;

    /// A binding request with a PRIORITY attribute and, if given, `USERNAME = username`.
    pub fn binding_request(username: Option<&str>) -> Vec<u8> {
        let mut packet = vec![0x00, 0x01, 0, 0];
        packet.extend_from_slice(&STUN_MAGIC_COOKIE);
        packet.extend_from_slice(&[7u8; 12]);
        // A PRIORITY attribute first, so the parser has to skip one.
        packet.extend_from_slice(&[0x00, 0x24, 0, 4, 1, 2, 3, 4]);
        if let Some(username) = username {
            packet.extend_from_slice(&STUN_ATTR_USERNAME.to_be_bytes());
            packet.extend_from_slice(&(username.len() as u16).to_be_bytes());
            packet.extend_from_slice(username.as_bytes());
            while packet.len() % 4 != 0 {
                packet.push(0);
            }
        }
        let body = (packet.len() - 20) as u16;
        packet[2..4].copy_from_slice(&body.to_be_bytes());
        packet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_packets::binding_request;

    #[test]
    fn binding_requests_yield_the_local_ufrag() {
        let packet = binding_request(Some("serverfrag:clientfrag"));
        assert_eq!(
            classify(&packet),
            Stun::Request {
                local_ufrag: Some("serverfrag"),
                transaction: [7; 12]
            }
        );
        assert!(matches!(
            classify(&binding_request(None)),
            Stun::Request {
                local_ufrag: None,
                ..
            }
        ));
    }

    #[test]
    fn responses_and_media_are_told_apart() {
        let mut response = binding_request(None);
        response[0] = 0x01; // binding success response: class bits 0b10
        response[1] = 0x01;
        assert!(matches!(classify(&response), Stun::Other { .. }));
        // DTLS records start at 20..=63, RTP at 128..=191.
        assert_eq!(classify(&[22u8; 40]), Stun::Media);
        assert_eq!(classify(&[0x80u8; 40]), Stun::Media);
        assert_eq!(classify(&[0u8; 5]), Stun::Media);
        // Truncated attributes are tolerated.
        let mut truncated = binding_request(Some("a:b"));
        truncated.truncate(30);
        assert!(matches!(classify(&truncated), Stun::Request { .. }));
    }
}
