//! A small reorder buffer for RTP: packets come out in sequence order; a missing packet is given
//! up on once `depth` later packets have arrived, and reported as a gap so the decoder can
//! conceal it (Opus PLC, or a keyframe request for video). Pure, so it is unit-tested directly.

use std::collections::BTreeMap;

/// What the buffer yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<T> {
    /// The next packet in order.
    Packet(T),
    /// This many packets are lost before the next one.
    Gap(u16),
}

/// Reorders items keyed by a 16-bit wrapping sequence number.
#[derive(Debug)]
pub struct Reorder<T> {
    depth: usize,
    next: Option<u64>,
    /// Highest extended sequence seen, for unwrapping.
    highest: Option<u64>,
    pending: BTreeMap<u64, T>,
}

impl<T> Reorder<T> {
    /// A buffer that waits for at most `depth` packets past a hole.
    pub fn new(depth: usize) -> Self {
        Self {
            depth: depth.max(1),
            next: None,
            highest: None,
            pending: BTreeMap::new(),
        }
    }

    fn extend(&self, sequence: u16) -> u64 {
        let Some(highest) = self.highest else {
            return (1 << 16) + u64::from(sequence);
        };
        let candidates = [
            (highest & !0xffff).wrapping_sub(1 << 16) | u64::from(sequence),
            (highest & !0xffff) | u64::from(sequence),
            ((highest & !0xffff) + (1 << 16)) | u64::from(sequence),
        ];
        *candidates
            .iter()
            .min_by_key(|c| c.abs_diff(highest))
            .expect("three candidates")
    }

    /// Adds a packet; late duplicates and packets older than what was already output are dropped.
    pub fn push(&mut self, sequence: u16, item: T) {
        let extended = self.extend(sequence);
        if self.next.is_some_and(|next| extended < next) {
            return;
        }
        self.highest = Some(self.highest.map_or(extended, |h| h.max(extended)));
        if self.next.is_none() {
            self.next = Some(extended);
        }
        self.pending.entry(extended).or_insert(item);
    }

    /// The next output, if one is ready.
    pub fn pop(&mut self) -> Option<Output<T>> {
        let next = self.next?;
        if let Some(item) = self.pending.remove(&next) {
            self.next = Some(next + 1);
            return Some(Output::Packet(item));
        }
        if self.pending.len() >= self.depth {
            let (&first, _) = self.pending.iter().next()?;
            self.next = Some(first);
            return Some(Output::Gap(u16::try_from(first - next).unwrap_or(u16::MAX)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(buffer: &mut Reorder<u16>) -> Vec<Output<u16>> {
        std::iter::from_fn(|| buffer.pop()).collect()
    }

    #[test]
    fn reorders_within_depth() {
        let mut buffer = Reorder::new(3);
        buffer.push(10, 10);
        buffer.push(12, 12);
        buffer.push(11, 11);
        assert_eq!(
            drain(&mut buffer),
            vec![Output::Packet(10), Output::Packet(11), Output::Packet(12)]
        );
    }

    #[test]
    fn reports_gaps_after_depth_and_drops_late_packets() {
        let mut buffer = Reorder::new(2);
        buffer.push(1, 1);
        assert_eq!(drain(&mut buffer), vec![Output::Packet(1)]);
        buffer.push(4, 4);
        assert_eq!(drain(&mut buffer), vec![]);
        buffer.push(5, 5);
        assert_eq!(
            drain(&mut buffer),
            vec![Output::Gap(2), Output::Packet(4), Output::Packet(5)]
        );
        buffer.push(2, 2);
        buffer.push(5, 5);
        assert_eq!(drain(&mut buffer), vec![]);
    }

    #[test]
    fn handles_wraparound() {
        let mut buffer = Reorder::new(3);
        buffer.push(65534, 1);
        buffer.push(0, 3);
        buffer.push(65535, 2);
        assert_eq!(
            drain(&mut buffer),
            vec![Output::Packet(1), Output::Packet(2), Output::Packet(3)]
        );
    }
}
