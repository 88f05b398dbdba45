//! Where a connection's media goes: kept apart from the fast path itself because the shared UDP socket
//! (`ice_mux.rs`) notes every datagram here, and the fast path sends through that socket.

use std::net::SocketAddr;
use std::sync::Mutex;

/// The remote address of the connection's media: where the driver last sent a DTLS or SRTP/SRTCP
/// datagram over the shared UDP socket, or where the peer last sent one from (both are the
/// selected candidate pair's; the second keeps the address fresh after an ICE restart moves a
/// receiver that the SFU sends nothing else to).
#[derive(Debug, Default)]
pub struct SendPath(Mutex<Option<SocketAddr>>);

impl SendPath {
    /// Notes a datagram sent to, or received from, `remote`.
    pub fn note(&self, datagram: &[u8], remote: SocketAddr) {
        // RFC 7983: DTLS records start with 20..=63, RTP and RTCP with 128..=191; STUN (0..=3)
        // also goes to and comes from candidate pairs that are not selected.
        if matches!(datagram.first(), Some(20..=63 | 128..=191)) {
            let mut path = self.0.lock().expect("path lock is never poisoned");
            if *path != Some(remote) {
                *path = Some(remote);
            }
        }
    }

    /// Where the connection's media goes now, if it goes over the shared UDP socket.
    pub fn remote(&self) -> Option<SocketAddr> {
        *self.0.lock().expect("path lock is never poisoned")
    }
}
