//! What a session's SDP may cost the SFU (issue 21, finding 1: one participant sent 100 offers of
//! 700 audio sections at 45/s, all answered, 1.3 of 2 cores busy). Checked before the WebRTC
//! stack parses anything; pure, with time passed in.
//!
//! - **Sections per offer.** Media sections are never removed in a session (JSEP recycles them),
//!   so a client's offer holds the sections already negotiated (one per track the SFU forwards to
//!   it and one per track it published or received before) plus the ones it adds now. It may add
//!   at most its own publication allowance (`limits.voice_tracks_per_session` +
//!   `limits.screen_tracks_per_session`) plus [`SPARE_NEW_SECTIONS`] per offer. An answer holds
//!   exactly the sections of the SFU's offer, never more.
//! - **Bytes per section.** At most [`MAX_SDP_BYTES_PER_SECTION`] per media section. Measured
//!   (2026-12-05, the offers the SFU received in its own browser, aiortc and participant tests,
//!   and offers made by the browsers themselves): for voice + screen share Chromium sends 6.1–6.3 KB
//!   in 2 sections (its video section ≈ 4.9 KB), Firefox 3.3 KB, aiortc 2.7 KB, our participant
//!   2.1 KB; each section received from the SFU adds ≈ 1.3 KB (Chromium), 0.9 KB (Firefox) or
//!   0.6 KB (participant) to later offers. 16 KiB per section is 3× Chromium's largest section.
//! - **Offers per minute.** `limits.offers_per_minute` sustained, bursts of `limits.offer_burst`
//!   (a join, a screen share on and off, an ICE restart are one offer each). An offer beyond the
//!   rate is refused with `rate_limited`; the session stays.

use std::time::Instant;

use crate::ratelimit::TokenBucket;

/// Bytes an SDP may hold per media section.
pub const MAX_SDP_BYTES_PER_SECTION: usize = 16 * 1024;
/// New sections an offer may add beyond the session's own publication allowance (a data channel,
/// a receive-only transceiver).
pub const SPARE_NEW_SECTIONS: usize = 2;

/// Number of media sections (`m=` lines) in `sdp`.
pub fn media_sections(sdp: &str) -> usize {
    sdp.split('\n')
        .filter(|line| line.starts_with("m="))
        .count()
}

/// Why an SDP was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpRefusal {
    #[error("too many offers: at most {per_minute} a minute (bursts of {burst}); try again later")]
    TooFast { per_minute: u32, burst: u32 },
    #[error("the description has {sections} media sections; at most {allowed} are allowed here")]
    TooManySections { sections: usize, allowed: usize },
    #[error(
        "the description is {bytes} bytes; at most {allowed} for its {sections} media section(s)"
    )]
    TooLarge {
        bytes: usize,
        sections: usize,
        allowed: usize,
    },
}

/// The SDP limits of one session.
#[derive(Debug)]
pub struct SdpGuard {
    offers: TokenBucket,
    per_minute: u32,
    burst: u32,
    /// Sections an offer may add.
    new_sections: usize,
    /// Most sections of any description negotiated so far (they are never removed).
    known_sections: usize,
}

impl SdpGuard {
    /// A new session's limits: `per_minute` offers sustained, `burst` at once, `publications`
    /// tracks of its own.
    pub fn new(per_minute: u32, burst: u32, publications: usize, now: Instant) -> Self {
        Self {
            offers: TokenBucket::per_minute(per_minute, burst, now),
            per_minute,
            burst,
            new_sections: publications + SPARE_NEW_SECTIONS,
            known_sections: 0,
        }
    }

    /// Checks a client's offer at `now` (each offer checked takes one of the rate).
    pub fn check_offer(&mut self, sdp: &str, now: Instant) -> Result<(), SdpRefusal> {
        if !self.offers.try_take(now) {
            return Err(SdpRefusal::TooFast {
                per_minute: self.per_minute,
                burst: self.burst,
            });
        }
        let sections = media_sections(sdp);
        check_size(sdp, sections, self.known_sections + self.new_sections)
    }

    /// Checks a client's answer to an SFU offer of `offered` sections.
    pub fn check_answer(&self, sdp: &str, offered: usize) -> Result<(), SdpRefusal> {
        check_size(sdp, media_sections(sdp), offered)
    }

    /// Records a description that was applied (either side's), so later offers may repeat its
    /// sections.
    pub fn note_applied(&mut self, sdp: &str) {
        self.known_sections = self.known_sections.max(media_sections(sdp));
    }
}

fn check_size(sdp: &str, sections: usize, allowed: usize) -> Result<(), SdpRefusal> {
    if sections > allowed {
        return Err(SdpRefusal::TooManySections { sections, allowed });
    }
    let max_bytes = MAX_SDP_BYTES_PER_SECTION * sections.max(1);
    if sdp.len() > max_bytes {
        return Err(SdpRefusal::TooLarge {
            bytes: sdp.len(),
            sections,
            allowed: max_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sdp(sections: usize, padding: usize) -> String {
        let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n");
        for mid in 0..sections {
            sdp.push_str(&format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{mid}\r\n"
            ));
        }
        sdp.push_str(&"a=x\r\n".repeat(padding / 5));
        sdp
    }

    #[test]
    fn an_offer_adds_at_most_the_allowance() {
        let now = Instant::now();
        let mut guard = SdpGuard::new(600, 100, 2, now);
        assert_eq!(guard.check_offer(&sdp(4, 0), now), Ok(()));
        assert_eq!(
            guard.check_offer(&sdp(5, 0), now),
            Err(SdpRefusal::TooManySections {
                sections: 5,
                allowed: 4
            })
        );
        assert!(guard.check_offer(&sdp(700, 0), now).is_err());
        // The SFU offered 20 forwarded tracks and they were negotiated: later offers repeat them.
        guard.note_applied(&sdp(21, 0));
        assert_eq!(guard.check_offer(&sdp(25, 0), now), Ok(()));
        assert!(guard.check_offer(&sdp(26, 0), now).is_err());
    }

    #[test]
    fn bytes_per_section_are_capped() {
        let now = Instant::now();
        let mut guard = SdpGuard::new(600, 100, 2, now);
        assert_eq!(guard.check_offer(&sdp(2, 30_000), now), Ok(()));
        assert!(matches!(
            guard.check_offer(&sdp(1, 30_000), now),
            Err(SdpRefusal::TooLarge { .. })
        ));
    }

    #[test]
    fn answers_hold_no_more_than_the_offer() {
        let guard = SdpGuard::new(600, 100, 2, Instant::now());
        assert_eq!(guard.check_answer(&sdp(30, 0), 30), Ok(()));
        assert!(guard.check_answer(&sdp(31, 0), 30).is_err());
    }

    #[test]
    fn offers_are_rate_limited() {
        let start = Instant::now();
        let mut guard = SdpGuard::new(30, 10, 2, start);
        for _ in 0..10 {
            assert_eq!(guard.check_offer(&sdp(1, 0), start), Ok(()));
        }
        assert!(matches!(
            guard.check_offer(&sdp(1, 0), start),
            Err(SdpRefusal::TooFast { .. })
        ));
        // 30 a minute: one more every 2 s.
        assert!(guard
            .check_offer(&sdp(1, 0), start + Duration::from_millis(1500))
            .is_err());
        assert_eq!(
            guard.check_offer(&sdp(1, 0), start + Duration::from_millis(3600)),
            Ok(())
        );
    }
}
