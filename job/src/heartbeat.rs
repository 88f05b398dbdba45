//! Liveness for an image's `HEALTHCHECK`: a job touches a file (`$CALLS_HEARTBEAT_FILE`; each job has its own
//! default, e.g. `/tmp/calls-recorder.alive`) while its work makes progress, and the health check fails when
//! the file is older than 30 s. A live process whose pipeline is stuck therefore shows as `unhealthy` in
//! `docker ps`.
//!
//! [`HeartbeatPolicy`] is the pure decision (beat at most every [`HEARTBEAT_EVERY`], and only when the job's
//! work counter advanced since the last beat: video frames encoded, packets captured, audio transcribed);
//! [`Heartbeat`] adds the file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the file is touched while work advances (the health check allows 30 s).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// When to beat: at most once per period, and only when the work counter advanced since the last beat.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatPolicy {
    last_beat: Option<Duration>,
    last_work: Option<u64>,
}

impl HeartbeatPolicy {
    /// Whether to beat now, given the job's clock and its work counter (anything that only grows while the
    /// job makes progress); a `true` answer counts as a beat.
    pub fn poll(&mut self, now: Duration, work_done: u64) -> bool {
        if self
            .last_beat
            .is_some_and(|at| now.saturating_sub(at) < HEARTBEAT_EVERY)
        {
            return false;
        }
        if self.last_work.is_some_and(|seen| work_done <= seen) {
            return false;
        }
        self.last_beat = Some(now);
        self.last_work = Some(work_done);
        true
    }
}

/// The heartbeat file and its policy. Failing to touch the file is logged once and never stops a job.
#[derive(Debug)]
pub struct Heartbeat {
    path: PathBuf,
    policy: HeartbeatPolicy,
    warned: bool,
}

impl Heartbeat {
    /// A heartbeat on `path`; touches it at once, so the file exists while the job starts.
    pub fn start(path: &Path) -> Heartbeat {
        let mut heartbeat = Heartbeat {
            path: path.to_owned(),
            policy: HeartbeatPolicy::default(),
            warned: false,
        };
        heartbeat.touch();
        heartbeat
    }

    /// Touches the file when the policy says so.
    pub fn poll(&mut self, now: Duration, work_done: u64) {
        if self.policy.poll(now, work_done) {
            self.touch();
        }
    }

    fn touch(&mut self) {
        let touched = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .and_then(|file| file.set_modified(SystemTime::now()));
        if let Err(error) = touched {
            if !self.warned {
                self.warned = true;
                tracing::warn!(path = %self.path.display(), %error, "cannot touch the heartbeat file; the container health check will fail");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn beats_at_most_every_period_while_frames_advance() {
        let mut policy = HeartbeatPolicy::default();
        assert!(policy.poll(secs(0.0), 0), "the first poll beats");
        assert!(!policy.poll(secs(1.0), 15), "too soon");
        assert!(!policy.poll(secs(4.9), 70), "too soon");
        assert!(policy.poll(secs(5.0), 75));
        assert!(policy.poll(secs(10.2), 150));
    }

    #[test]
    fn a_stuck_encoder_stops_the_heartbeat_until_it_moves_again() {
        let mut policy = HeartbeatPolicy::default();
        assert!(policy.poll(secs(0.0), 10));
        for t in [5.0, 10.0, 30.0, 60.0] {
            assert!(!policy.poll(secs(t), 10), "no progress at {t} s");
        }
        assert!(policy.poll(secs(61.0), 11), "progress again");
    }

    #[test]
    fn the_file_is_created_and_refreshed() {
        let dir = std::env::temp_dir().join(format!("calls-heartbeat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alive");
        let _ = std::fs::remove_file(&path);
        let old = SystemTime::now() - Duration::from_secs(120);
        let mut heartbeat = Heartbeat::start(&path);
        assert!(path.exists());
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        heartbeat.poll(secs(0.0), 1);
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(modified > old + Duration::from_secs(60), "refreshed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_path_does_not_panic() {
        let mut heartbeat = Heartbeat::start(Path::new("/nonexistent-dir/calls/alive"));
        heartbeat.poll(secs(0.0), 1);
        heartbeat.poll(secs(5.0), 2);
        assert!(heartbeat.warned);
    }
}
