//! Keyframe requests (PLI/FIR) reaching the application. webrtc 0.21 stops every inbound RTCP
//! packet at the end of its interceptor chain unless an interceptor marks it
//! `DeliverToApplication`; [`KeyframeRequestMarker`], registered last, marks exactly the keyframe
//! requests. Without it a receiver's PLI/FIR never reaches the SFU's feedback task, and a sharer
//! that sends keyframes only on request (every browser) is never asked for one; the participant's
//! screen share answers the requests it marks with a keyframe.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Chain position of the marker: after every built-in interceptor (the jitter buffer is 13 000),
/// so they all see the whole of the inbound RTCP first.
const MARKER_SLOT: usize = 14_000;

/// The slot to register [`KeyframeRequestMarker`] at.
pub(crate) fn marker_slot() -> Slot {
    Slot::from(MARKER_SLOT)
}

/// Whether an RTCP packet asks for a keyframe.
pub fn is_keyframe_request(packet: &dyn rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Passes inbound PLI/FIR on to the application (other RTCP is left for the chain's end to
/// drop, as it would be without this interceptor); outbound packets pass untouched.
#[derive(Default)]
pub struct KeyframeRequestMarker {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestMarker {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                let requests = packets
                    .iter()
                    .filter(|p| is_keyframe_request(p.as_ref()))
                    .cloned()
                    .collect();
                msg.message.packet = Packet::Rtcp(requests);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }
}

impl Interceptor for KeyframeRequestMarker {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::shared::TransportContext;

    fn read(
        marker: &mut KeyframeRequestMarker,
        packets: Vec<Box<dyn rtcp::Packet>>,
    ) -> TaggedPacket {
        marker
            .handle_read(TaggedPacket {
                now: Instant::now(),
                transport: TransportContext::default(),
                message: AttributedPacket::new(Packet::Rtcp(packets)),
            })
            .expect("the marker accepts every packet");
        marker
            .poll_read()
            .expect("the marker passes every packet on")
    }

    #[test]
    fn keyframe_requests_are_marked_for_the_application_and_reports_are_not() {
        let mut marker = KeyframeRequestMarker::default();
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 42,
        };
        let out = read(
            &mut marker,
            vec![Box::new(ReceiverReport::default()), Box::new(pli)],
        );
        assert!(out.message.has(&Attribute::DeliverToApplication));
        let Packet::Rtcp(kept) = &out.message.packet else {
            panic!("rtcp stays rtcp");
        };
        assert_eq!(kept.len(), 1, "only the request is handed over");
        assert!(kept[0].as_any().is::<PictureLossIndication>());

        let out = read(&mut marker, vec![Box::new(ReceiverReport::default())]);
        assert!(!out.message.has(&Attribute::DeliverToApplication));
    }

    #[test]
    fn a_full_intra_request_asks_for_a_keyframe() {
        let fir = FullIntraRequest::default();
        assert!(is_keyframe_request(&fir));
        assert!(!is_keyframe_request(&ReceiverReport::default()));
    }
}
