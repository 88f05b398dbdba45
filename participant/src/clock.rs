//! Maps a track's RTP timestamps onto a job's timeline (the recording's media clock, the transcriber's call
//! clock).
//!
//! RTP timestamps give the spacing of a track's packets exactly but start at a random value, wrap at 2^32 and
//! jump when a sender restarts. Arrival times start on the recording's clock but jitter. [`RtpClock`] uses both:
//! the first packet is placed at its arrival time, later packets at `anchor + Δrtp / clock_rate`, and when that
//! estimate falls too far behind arrival (it would miss the jitter window: clock skew, a long mute the decoder
//! did not fill) or runs too far ahead (sender restart, a new timestamp base) the track is re-anchored at arrival. Late packets keep their RTP-derived place, so the mixer can put them
//! where they belong.

use std::time::Duration;

/// RTP clock rate of Opus audio.
pub const OPUS_CLOCK_RATE: u32 = 48_000;
/// RTP clock rate of video (VP8, H.264).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// Per-track timestamp mapper. Pure: arrival times are passed in.
#[derive(Debug, Clone)]
pub struct RtpClock {
    clock_rate: u32,
    max_behind: Duration,
    max_ahead: Duration,
    /// `(extended rtp timestamp, media time)` of the anchor packet.
    anchor: Option<(i64, Duration)>,
    /// Highest extended timestamp seen, to unwrap the next one.
    highest: i64,
    resyncs: u64,
}

impl RtpClock {
    /// A clock for a track with `clock_rate` Hz timestamps. An estimate more than `max_behind` earlier or
    /// `max_ahead` later than the arrival time re-anchors the track at arrival.
    pub fn new(clock_rate: u32, max_behind: Duration, max_ahead: Duration) -> RtpClock {
        RtpClock {
            clock_rate: clock_rate.max(1),
            max_behind,
            max_ahead,
            anchor: None,
            highest: 0,
            resyncs: 0,
        }
    }

    /// How often the track was re-anchored.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Media time of a packet with RTP timestamp `rtp` that arrived at media time `arrival`.
    pub fn handle_packet(&mut self, rtp: u32, arrival: Duration) -> Duration {
        let Some((anchor_rtp, anchor_time)) = self.anchor else {
            return self.reanchor(i64::from(rtp), arrival);
        };
        let extended = self.unwrap(rtp);
        let offset_ticks = extended - anchor_rtp;
        let offset = Duration::from_nanos(
            (offset_ticks.unsigned_abs() as u128 * 1_000_000_000 / u128::from(self.clock_rate))
                .try_into()
                .unwrap_or(u64::MAX),
        );
        let estimate = if offset_ticks >= 0 {
            anchor_time.checked_add(offset)
        } else {
            anchor_time.checked_sub(offset)
        };
        match estimate {
            Some(time) if time + self.max_behind >= arrival && time <= arrival + self.max_ahead => {
                self.highest = self.highest.max(extended);
                time
            }
            _ => {
                self.resyncs += 1;
                self.reanchor(extended, arrival)
            }
        }
    }

    fn reanchor(&mut self, extended: i64, arrival: Duration) -> Duration {
        self.anchor = Some((extended, arrival));
        self.highest = extended;
        arrival
    }

    /// Extends a 32-bit timestamp to the value nearest the highest one seen (handles wrap-around both ways).
    fn unwrap(&self, rtp: u32) -> i64 {
        let base = self.highest & !0xFFFF_FFFF;
        let candidates = [base - (1 << 32), base, base + (1 << 32)].map(|b| b + i64::from(rtp));
        candidates
            .into_iter()
            .min_by_key(|c| (c - self.highest).abs())
            .expect("three candidates")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn clock() -> RtpClock {
        RtpClock::new(
            OPUS_CLOCK_RATE,
            Duration::from_millis(100),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn first_packet_is_placed_at_arrival_and_the_rest_by_rtp_spacing() {
        let mut clock = clock();
        assert_eq!(clock.handle_packet(1_000_000, ms(500)), ms(500));
        // Arrives 30 ms late; still placed 20 ms after the first.
        assert_eq!(clock.handle_packet(1_000_960, ms(550)), ms(520));
        assert_eq!(
            clock.handle_packet(1_001_920, ms(531)),
            ms(540),
            "early arrival is fine too"
        );
    }

    #[test]
    fn reordered_packets_keep_their_place() {
        let mut clock = clock();
        clock.handle_packet(5_000, ms(100));
        assert_eq!(clock.handle_packet(6_920, ms(145)), ms(140));
        assert_eq!(clock.handle_packet(5_960, ms(146)), ms(120));
    }

    #[test]
    fn timestamps_wrap_around() {
        let mut clock = clock();
        let start = u32::MAX - 479;
        assert_eq!(clock.handle_packet(start, ms(1000)), ms(1000));
        assert_eq!(
            clock.handle_packet(start.wrapping_add(960), ms(1020)),
            ms(1020)
        );
        assert_eq!(
            clock.handle_packet(start.wrapping_add(1920), ms(1040)),
            ms(1040)
        );
        assert_eq!(clock.resyncs(), 0);
    }

    #[test]
    fn a_jump_in_rtp_timestamps_reanchors_at_arrival() {
        let mut clock = clock();
        clock.handle_packet(10_000, ms(0));
        assert_eq!(clock.handle_packet(99_999_999, ms(3000)), ms(3000));
        assert_eq!(clock.resyncs(), 1);
        assert_eq!(clock.handle_packet(100_000_959, ms(3021)), ms(3020));
    }

    #[test]
    fn falling_behind_arrival_beyond_the_window_reanchors() {
        let mut clock = clock();
        clock.handle_packet(0, ms(0));
        // A sender clock running slow: the estimate lags arrival more and more.
        assert_eq!(clock.handle_packet(48_000, ms(1090)), ms(1000));
        assert_eq!(
            clock.handle_packet(96_000, ms(2150)),
            ms(2150),
            "150 ms behind: re-anchored"
        );
        assert_eq!(clock.resyncs(), 1);
        // Late arrival within the window keeps the rtp-derived place.
        assert_eq!(clock.handle_packet(96_960, ms(2230)), ms(2170));
    }

    #[test]
    fn video_clock_uses_90_khz() {
        let mut clock = RtpClock::new(
            VIDEO_CLOCK_RATE,
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        clock.handle_packet(0, ms(0));
        assert_eq!(
            clock.handle_packet(6_000, ms(70)),
            Duration::from_nanos(66_666_666)
        );
    }
}
