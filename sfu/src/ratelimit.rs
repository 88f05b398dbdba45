//! A token bucket limiting what one session may send (signalling messages, offers, captions).
//! Time is passed in.

use std::time::Instant;

/// Allows `rate` messages per second on average and bursts of `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Allows `per_minute` a minute on average and bursts of `burst`; full at `now`.
    pub fn per_minute(per_minute: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(per_minute.max(1)) / 60.0,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token; `false` when the bucket is empty (the message exceeds the limit).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Time until one more token is available (zero when one is).
    #[cfg(test)]
    pub fn wait_time(&self) -> std::time::Duration {
        if self.tokens >= 1.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_sustained_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5, start);
        for _ in 0..5 {
            assert!(bucket.try_take(start));
        }
        assert!(!bucket.try_take(start), "burst exhausted");
        assert!(bucket.wait_time() > Duration::ZERO);
        assert!(bucket.try_take(start + Duration::from_millis(100)));
        assert!(!bucket.try_take(start + Duration::from_millis(100)));
        // A long pause refills only up to the burst size.
        let later = start + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(bucket.try_take(later));
        }
        assert!(!bucket.try_take(later));
    }
}
