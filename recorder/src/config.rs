//! The recorder job's settings, read from its environment (the offloader turns a job's `input_data` keys into
//! upper-cased environment variables) and validated in one step, so a bad job fails at once with every problem
//! named.
//!
//! | Variable | Required | Meaning |
//! |---|---|---|
//! | `JOB_ID` | yes | the offloader's job id |
//! | `JOB_TOKEN` | yes | bearer token for this job's status and artifact API (secret) |
//! | `OFFLOADER_URL` | yes | `http(s)://…` base URL of the offloader |
//! | `CALL_ID` | yes | the call to record |
//! | `SFU_URL` | yes | `http(s)://` or `ws(s)://` base URL of the SFU |
//! | `BOT_TOKEN` (or `JOIN_TOKEN`) | yes | join token for the bot, scoped to the call (secret) |
//! | `PROFILE` | no | `low`, `medium` (default) or `high` |
//! | `WIDTH`, `HEIGHT`, `FPS`, `VIDEO_BITRATE`, `AUDIO_BITRATE` | no | profile overrides (see `profile.rs`) |
//! | `OUTPUT_DIR` | no | where `recording.mp4` is written (default `/data`, the job's volume) |
//! | `ALONE_TIMEOUT_SEC` | no | stop after the bot has been alone this long (default 60, 1..=86400) |
//! | `CALLS_HEARTBEAT_FILE` | no | file touched while frames are encoded, for the image's health check (default `/tmp/calls-recorder.alive`) |

use std::path::PathBuf;
use std::time::Duration;

use calls_job::settings::Settings;
pub use calls_job::{CallTarget, JobIdentity, Secret};
use calls_protocol::job_env::recording;

use crate::error::Result;
use crate::profile::{Profile, ProfileOverrides};

/// The heartbeat file when `CALLS_HEARTBEAT_FILE` is not set (the image sets the same path).
pub const DEFAULT_HEARTBEAT_FILE: &str = "/tmp/calls-recorder.alive";

/// Validated settings of one recording job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    /// `JOB_ID`, `JOB_TOKEN`, `OFFLOADER_URL`.
    pub identity: JobIdentity,
    /// `CALL_ID`, `SFU_URL`, `BOT_TOKEN`.
    pub call: CallTarget,
    /// Output size, rate and bitrates.
    pub profile: Profile,
    /// Directory that receives `recording.mp4`.
    pub output_dir: PathBuf,
    /// How long the bot may be alone in the call before it stops.
    pub alone_timeout: Duration,
    /// Touched while the pipeline makes progress (see `calls_job::heartbeat`).
    pub heartbeat_file: PathBuf,
}

impl JobConfig {
    /// Reads and validates every setting through `lookup` (e.g. `calls_job::settings::process_lookup()`).
    /// All problems are reported together.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<JobConfig> {
        let mut settings = Settings::new(lookup);
        let identity = settings.identity();
        let call = settings.call();
        let get = |key: &str| settings.get(key);
        let profile = ProfileOverrides::from_lookup(get)
            .and_then(|overrides| Profile::resolve(get(recording::PROFILE).as_deref(), &overrides));
        let profile = profile.unwrap_or_else(|error| {
            settings.problem(error.to_string());
            Profile::default()
        });
        let bot = settings.finish_bot_job(DEFAULT_HEARTBEAT_FILE)?;
        Ok(JobConfig {
            identity,
            call,
            profile,
            output_dir: bot.output_dir,
            alone_timeout: bot.alone_timeout,
            heartbeat_file: bot.heartbeat_file,
        })
    }

    /// Where the recording is written.
    pub fn output_path(&self) -> PathBuf {
        self.output_dir.join("recording.mp4")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileName;
    use calls_job::settings::{fixed_lookup as env, EXAMPLE_BOT_ENV};

    const VALID: [(&str, &str); 6] = EXAMPLE_BOT_ENV;

    #[test]
    fn a_complete_environment_gives_a_config_with_defaults() {
        let config = JobConfig::from_lookup(env(&VALID)).unwrap();
        assert_eq!(config.identity.job_id, "job-1");
        assert_eq!(config.identity.offloader_url, "http://offloader:4545");
        assert_eq!(config.call.join_token.expose(), "bot-secret-value");
        assert_eq!(config.profile, Profile::default());
        assert_eq!(config.output_path(), PathBuf::from("/data/recording.mp4"));
        assert_eq!(config.alone_timeout, Duration::from_secs(60));
        assert_eq!(
            config.heartbeat_file,
            PathBuf::from("/tmp/calls-recorder.alive")
        );
    }

    #[test]
    fn profile_and_overrides_come_from_the_environment() {
        let mut pairs = VALID.to_vec();
        pairs.extend([
            ("PROFILE", "high"),
            ("FPS", "25"),
            ("OUTPUT_DIR", "/tmp/x"),
            ("JOIN_TOKEN", "ignored"),
        ]);
        let config = JobConfig::from_lookup(env(&pairs)).unwrap();
        assert_eq!(config.profile.name, ProfileName::High);
        assert_eq!((config.profile.width, config.profile.fps), (1920, 25));
        assert_eq!(config.output_path(), PathBuf::from("/tmp/x/recording.mp4"));
        assert_eq!(
            config.call.join_token.expose(),
            "bot-secret-value",
            "BOT_TOKEN wins"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = JobConfig::from_lookup(env(&[
            ("OFFLOADER_URL", "offloader:4545"),
            ("PROFILE", "ultra"),
            ("ALONE_TIMEOUT_SEC", "0"),
        ]))
        .unwrap_err()
        .to_string();
        for expected in [
            "JOB_ID is required",
            "JOB_TOKEN is required",
            "CALL_ID is required",
            "SFU_URL is required",
            "BOT_TOKEN (or JOIN_TOKEN) is required",
            "OFFLOADER_URL \"offloader:4545\" must start with http:// or https://",
            "unknown profile \"ultra\"",
            "ALONE_TIMEOUT_SEC",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in {err}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = JobConfig::from_lookup(env(&VALID)).unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("secret-value"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }
}
