//! The payload type of one receiver's leg: what the forwarding writers (`forward.rs`) and the fast path
//! (`fastpath/`) both read, below both.

/// The payload type a forwarded track uses on one receiver's leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegCodec {
    /// The track's negotiation has not completed yet: packets are dropped, not counted.
    Pending,
    /// The receiver negotiated the codec under this payload type.
    Negotiated(u8),
    /// The receiver's answer accepted no codec the track can carry: every packet is an error.
    Refused,
}
