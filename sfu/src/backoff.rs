//! Backoff for the SFU's accept and receive loops: after an error a loop waits before it tries
//! again, the wait doubling on every consecutive error up to [`MAX_WAIT`], and it logs the error
//! at most once per [`LOG_INTERVAL`] with the number of errors it did not log.
//!
//! **Invariant:** no loop of the SFU retries a failing socket operation without a pause, and no
//! persistent error can write more than one log line per [`LOG_INTERVAL`] per loop. Issue 12
//! showed what happens otherwise: two cores busy and millions of log lines per call. Time is
//! passed in, so the policy is tested without a clock.

use std::time::{Duration, Instant};

/// First pause after an error.
pub const FIRST_WAIT: Duration = Duration::from_millis(10);
/// Longest pause between attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// Shortest spacing of two log lines about the same failing loop.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a loop does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    /// How long to wait before trying again.
    pub wait: Duration,
    /// `Some(n)`: log this error, mentioning the `n` errors not logged since the last line.
    pub log: Option<u64>,
}

/// The error history of one loop.
#[derive(Debug, Default)]
pub struct Backoff {
    consecutive: u32,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Backoff {
    /// A loop that has not failed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The operation succeeded: the next error starts from the first pause again.
    pub fn succeeded(&mut self) {
        self.consecutive = 0;
    }

    /// The operation failed at `now`: how long to wait and whether to log.
    pub fn failed(&mut self, now: Instant) -> Delay {
        let wait = FIRST_WAIT
            .saturating_mul(1u32 << self.consecutive.min(16))
            .min(MAX_WAIT);
        self.consecutive = self.consecutive.saturating_add(1);
        let log = match self.last_log {
            Some(at) if now.saturating_duration_since(at) < LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        };
        Delay { wait, log }
    }
}

impl Backoff {
    /// The outcome of one accept: the connection, or `None` after the pause an error calls for
    /// (the error logged as `what` at most once per [`LOG_INTERVAL`]); the accept loops of the
    /// HTTP server and of ICE-TCP share it.
    pub async fn accepted<T>(&mut self, result: std::io::Result<T>, what: &str) -> Option<T> {
        match result {
            Ok(accepted) => {
                self.succeeded();
                Some(accepted)
            }
            // Out of descriptors and the like: wait, growing the pause, and log rarely.
            Err(err) => {
                let delay = self.failed(Instant::now());
                if let Some(suppressed) = delay.log {
                    tracing::warn!(error = %err, suppressed, "{what} failed");
                }
                tokio::time::sleep(delay.wait).await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_on_success() {
        let now = Instant::now();
        let mut backoff = Backoff::new();
        let waits: Vec<u128> = (0..10)
            .map(|_| backoff.failed(now).wait.as_millis())
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(now).wait, FIRST_WAIT);
    }

    #[test]
    fn a_persistent_error_logs_once_per_interval_with_the_count_it_skipped() {
        let start = Instant::now();
        let mut backoff = Backoff::new();
        assert_eq!(backoff.failed(start).log, Some(0));
        let mut logged = 0;
        // A minute of errors every 100 ms: six log lines at most, not six hundred.
        for tick in 1..600u64 {
            if backoff
                .failed(start + Duration::from_millis(tick * 100))
                .log
                .is_some()
            {
                logged += 1;
            }
        }
        assert_eq!(logged, 5);
        assert_eq!(
            backoff.failed(start + Duration::from_secs(60)).log,
            Some(99),
            "the line after a quiet interval says how many were not logged"
        );
    }
}
