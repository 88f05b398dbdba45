//! The fast path for forwarded voice: the SFU encrypts a forwarded packet for a receiver with
//! its own copy of that receiver's SRTP sending context and writes it straight to the shared UDP
//! socket, from the publisher's reading task, instead of handing it to a writer task and the
//! receiver connection's webrtc driver (a full event-loop turn, the interceptor chain and a copy
//! per stage for every packet: three quarters of a forwarded packet's cost, see
//! docs/benchmarks.md).
//!
//! - **Keys**: [`keys::KeySpy`] is the connection's crypto provider and recovers the local SRTP
//!   master key and salt its DTLS handshake produced. When the connection reports `connected`,
//!   [`FastLeg::arm`] builds the SFU's own `srtp::Context` from them.
//! - **Where to**: [`SendPath`] remembers the remote address of the DTLS and SRTP/SRTCP datagrams
//!   the connection's driver sends, and its peer sends, through the shared UDP socket: those use
//!   only the selected candidate pair. A connection over ICE-TCP has no such datagram on UDP, so it
//!   is never armed and keeps the driver's path; a client behind TURN is a UDP address like any
//!   other.
//! - **Handover, one SSRC one context**: a forwarded track starts on the old path (its writer
//!   holds packets until the leg is up, then writes them to the driver). The writer hands the
//!   track over at the first packet it sends once the leg is armed: it primes the SFU's context
//!   with the first and last sequence numbers the driver encrypted for that SSRC (so both agree on
//!   the rollover counter), sends through the fast path from then on, and marks the
//!   [`FastPair`] owned; the publisher's task then encrypts and sends every later packet itself.
//!   The driver never sees that SSRC's RTP again, so no sequence number is encrypted twice.
//! - **What the bypass drops**: accurate RTCP sender reports. webrtc's reporter keeps sending them
//!   for a stream that had packets through the driver, the RTP time extrapolated from the last of
//!   those (right while the publisher's clock runs at its rate), the counts frozen at the
//!   handover; a stream that never went through the driver gets none. Browsers use SR for
//!   audio/video sync and statistics; this path carries voice alone. No transport-wide sequence
//!   numbers either (header extensions are stripped on both paths; a receiver sends no TWCC
//!   feedback for these packets), and no NACK answers (none negotiated for Opus). Video keeps the old path: it needs NACK/RTX and
//!   keyframe handling from the driver.
//! - **Renegotiation, ICE restart, reconnect**: the keys do not change with a renegotiation or an
//!   ICE restart (DTLS is not redone), and the destination follows the next DTLS or SRTP/SRTCP
//!   datagram either way (a receiver's RTCP reports, every few seconds); a reconnect is a new
//!   session with a new connection and new keys.

pub mod keys;
pub(crate) mod path;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rtc::rtp;
use rtc::shared::marshal::Marshal;
use rtc::srtp::context::Context;
use tokio::sync::watch;

use crate::ice_mux::UdpMux;
use crate::leg_codec::LegCodec;
use keys::KeySpy;
pub use path::SendPath;

/// Why a packet did not go out on the fast path.
#[derive(Debug, thiserror::Error)]
pub enum FastError {
    /// The leg has no keys or no UDP destination.
    #[error("the leg is not armed")]
    NotArmed,
    /// The SRTP context refused the packet.
    #[error("srtp: {0}")]
    Srtp(#[from] rtc::shared::error::Error),
    /// The socket refused the datagram (its send buffer is full, say).
    #[error("send: {0}")]
    Send(#[from] io::Error),
}

struct Armed {
    /// The master key the context was built from (to tell a new handshake's).
    key: Vec<u8>,
    context: Context,
}

/// One receiving session's fast path: its keys, its destination, and the SFU's SRTP context.
pub struct FastLeg {
    keys: Arc<KeySpy>,
    path: Arc<SendPath>,
    mux: Arc<UdpMux>,
    srtp: Mutex<Option<Armed>>,
    armed: AtomicBool,
}

impl FastLeg {
    /// A leg that sends through `mux`, not armed yet.
    pub fn new(mux: Arc<UdpMux>) -> rtc::shared::error::Result<Arc<Self>> {
        let inner = rtc::crypto::default_provider()
            .map_err(|err| rtc::shared::error::Error::Other(err.to_string()))?;
        Ok(Arc::new(Self {
            keys: Arc::new(KeySpy::new(inner)),
            path: Arc::new(SendPath::default()),
            mux,
            srtp: Mutex::new(None),
            armed: AtomicBool::new(false),
        }))
    }

    /// The crypto provider the connection must be built with.
    pub fn crypto_provider(&self) -> Arc<KeySpy> {
        Arc::clone(&self.keys)
    }

    /// What the connection's UDP socket must report its sends to.
    pub fn path(&self) -> Arc<SendPath> {
        Arc::clone(&self.path)
    }

    /// Builds the SFU's sending context from the latest handshake's keys, if the connection's
    /// media goes over the shared UDP socket. Called when the connection is up; returns whether
    /// the leg is armed. The same keys keep the same context (its rollover counters).
    pub fn arm(&self) -> bool {
        let (Some(key), Some(_)) = (self.keys.local_key(), self.path.remote()) else {
            return self.armed.load(Ordering::Acquire);
        };
        let mut srtp = self.srtp.lock().expect("srtp lock is never poisoned");
        if srtp.as_ref().is_some_and(|armed| armed.key == key.key) {
            return true;
        }
        match Context::new(
            &key.key,
            &key.salt,
            key.profile,
            None,
            None,
            self.keys.inner_crypto(),
        ) {
            Ok(context) => {
                *srtp = Some(Armed {
                    key: key.key,
                    context,
                });
                self.armed.store(true, Ordering::Release);
                true
            }
            Err(err) => {
                tracing::warn!(error = %err, profile = ?key.profile, "fast path: srtp context refused the keys");
                false
            }
        }
    }

    /// Whether [`FastLeg::arm`] succeeded.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// Encrypts `plaintext` (an RTP packet whose header is `header`) and sends it. `prime` are
    /// sequence numbers of `header.ssrc` the driver encrypted before, oldest first: the context
    /// runs them through first so its rollover counter agrees with the receiver's.
    fn send(&self, plaintext: &[u8], header: &rtp::Header, prime: &[u16]) -> Result<(), FastError> {
        let to = self.path.remote().ok_or(FastError::NotArmed)?;
        let protected = {
            let mut srtp = self.srtp.lock().expect("srtp lock is never poisoned");
            let armed = srtp.as_mut().ok_or(FastError::NotArmed)?;
            for &sequence_number in prime {
                let earlier = rtp::Header {
                    sequence_number,
                    ..header.clone()
                };
                let bytes = earlier.marshal()?;
                armed.context.encrypt_rtp_with_header(&bytes, &earlier)?;
            }
            armed.context.encrypt_rtp_with_header(plaintext, header)?
        };
        self.mux.try_send_to(&protected, to)?;
        Ok(())
    }
}

/// Sequence numbers the driver encrypted for one forwarded SSRC before the handover.
#[derive(Debug, Default, Clone, Copy)]
struct DriverSent {
    first: Option<u16>,
    last: Option<u16>,
}

/// One voice track forwarded to one fast-capable receiver (see the module documentation).
pub struct FastPair {
    leg: Arc<FastLeg>,
    ssrc: u32,
    codec: watch::Receiver<LegCodec>,
    driver_sent: Mutex<DriverSent>,
    owned: AtomicBool,
}

impl FastPair {
    /// The track sent as `ssrc` to `leg`, with the leg's payload type in `codec`.
    pub fn new(leg: Arc<FastLeg>, ssrc: u32, codec: watch::Receiver<LegCodec>) -> Arc<Self> {
        Arc::new(Self {
            leg,
            ssrc,
            codec,
            driver_sent: Mutex::new(DriverSent::default()),
            owned: AtomicBool::new(false),
        })
    }

    /// Whether the leg can take this track's packets now.
    pub fn is_armed(&self) -> bool {
        self.leg.is_armed()
    }

    /// Whether the fast path sends this track (the publisher's task sends every packet).
    pub fn is_owned(&self) -> bool {
        self.owned.load(Ordering::Acquire)
    }

    /// The writer handed `sequence_number` to the driver.
    pub fn note_driver_sent(&self, sequence_number: u16) {
        let mut sent = self
            .driver_sent
            .lock()
            .expect("sent lock is never poisoned");
        sent.first.get_or_insert(sequence_number);
        sent.last = Some(sequence_number);
    }

    /// Sends a packet already rewritten for this leg (SSRC, payload type, no extensions), taking
    /// the track over from the driver if this is the first. The writer's way.
    pub fn send_rewritten(&self, packet: &rtp::Packet) -> Result<(), FastError> {
        let plaintext = packet.marshal()?;
        if self.is_owned() {
            return self.leg.send(&plaintext, &packet.header, &[]);
        }
        let sent = *self
            .driver_sent
            .lock()
            .expect("sent lock is never poisoned");
        let prime: Vec<u16> = sent.first.into_iter().chain(sent.last).collect();
        self.leg.send(&plaintext, &packet.header, &prime)?;
        self.owned.store(true, Ordering::Release);
        Ok(())
    }

    /// Sends one packet of the publisher's, `plaintext` being its marshalled form (no header
    /// extensions) and `header` its header, rewritten into `scratch` for this leg. `None` when
    /// the pair is not owned or the leg has no payload type now: the writer takes the packet.
    pub fn forward(
        &self,
        plaintext: &[u8],
        header: &rtp::Header,
        scratch: &mut Vec<u8>,
    ) -> Option<Result<(), FastError>> {
        if !self.is_owned() {
            return None;
        }
        let LegCodec::Negotiated(payload_type) = *self.codec.borrow() else {
            return None;
        };
        scratch.clear();
        scratch.extend_from_slice(plaintext);
        // The fixed header: marker and payload type in byte 1, SSRC in bytes 8..12.
        scratch[1] = (scratch[1] & 0x80) | (payload_type & 0x7f);
        scratch[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let header = rtp::Header {
            payload_type,
            ssrc: self.ssrc,
            ..header.clone()
        };
        Some(self.leg.send(scratch, &header, &[]))
    }
}
