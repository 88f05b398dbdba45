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

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::profile::{Profile, ProfileOverrides};

/// A value that must never reach logs or responses; `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (an `Authorization` header, a join request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Validated settings of one recording job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    /// The offloader's job id.
    pub job_id: String,
    /// Bearer token for the job's own status and artifact endpoints.
    pub job_token: Secret,
    /// Base URL of the offloader (no trailing slash).
    pub offloader_url: String,
    /// The call to record.
    pub call_id: String,
    /// Base URL of the SFU (no trailing slash).
    pub sfu_url: String,
    /// Join token for the bot.
    pub join_token: Secret,
    /// Output size, rate and bitrates.
    pub profile: Profile,
    /// Directory that receives `recording.mp4`.
    pub output_dir: PathBuf,
    /// How long the bot may be alone in the call before it stops.
    pub alone_timeout: Duration,
    /// Touched while the pipeline makes progress (see `heartbeat.rs`).
    pub heartbeat_file: PathBuf,
}

impl JobConfig {
    /// Reads and validates every setting through `lookup` (e.g. `|k| std::env::var(k).ok()`). All problems are
    /// reported together.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<JobConfig> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut problems: Vec<String> = Vec::new();
        let mut required = |key: &'static str| {
            get(key).unwrap_or_else(|| {
                problems.push(format!("{key} is required"));
                String::new()
            })
        };
        let job_id = required("JOB_ID");
        let job_token = Secret::new(required("JOB_TOKEN"));
        let offloader_url = required("OFFLOADER_URL");
        let call_id = required("CALL_ID");
        let sfu_url = required("SFU_URL");
        let join_token = match get("BOT_TOKEN").or_else(|| get("JOIN_TOKEN")) {
            Some(token) => Secret::new(token),
            None => {
                problems.push("BOT_TOKEN (or JOIN_TOKEN) is required".to_owned());
                Secret::new("")
            }
        };
        for (key, url, schemes) in [
            (
                "OFFLOADER_URL",
                &offloader_url,
                &["http://", "https://"][..],
            ),
            (
                "SFU_URL",
                &sfu_url,
                &["http://", "https://", "ws://", "wss://"][..],
            ),
        ] {
            if !url.is_empty() && !schemes.iter().any(|scheme| url.starts_with(scheme)) {
                problems.push(format!(
                    "{key} {url:?} must start with {}",
                    schemes.join(" or ")
                ));
            }
        }
        let profile = ProfileOverrides::from_lookup(get)
            .and_then(|overrides| Profile::resolve(get("PROFILE").as_deref(), &overrides));
        let profile = profile.unwrap_or_else(|error| {
            problems.push(error.to_string());
            Profile::default()
        });
        let alone_timeout = match get("ALONE_TIMEOUT_SEC").map(|v| v.parse::<u64>()) {
            None => Duration::from_secs(60),
            Some(Ok(seconds)) if (1..=86_400).contains(&seconds) => Duration::from_secs(seconds),
            Some(_) => {
                problems.push("ALONE_TIMEOUT_SEC must be whole seconds in 1..=86400".to_owned());
                Duration::from_secs(60)
            }
        };
        if !problems.is_empty() {
            return Err(Error::InvalidJob(problems.join("; ")));
        }
        Ok(JobConfig {
            job_id,
            job_token,
            offloader_url: offloader_url.trim_end_matches('/').to_owned(),
            call_id,
            sfu_url: sfu_url.trim_end_matches('/').to_owned(),
            join_token,
            profile,
            output_dir: PathBuf::from(get("OUTPUT_DIR").unwrap_or_else(|| "/data".to_owned())),
            alone_timeout,
            heartbeat_file: PathBuf::from(
                get("CALLS_HEARTBEAT_FILE")
                    .unwrap_or_else(|| crate::heartbeat::DEFAULT_HEARTBEAT_FILE.to_owned()),
            ),
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
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| map.get(key).cloned()
    }

    const VALID: [(&str, &str); 6] = [
        ("JOB_ID", "job-1"),
        ("JOB_TOKEN", "job-secret-value"),
        ("OFFLOADER_URL", "http://offloader:4545/"),
        ("CALL_ID", "call-1"),
        ("SFU_URL", "ws://sfu:8443"),
        ("BOT_TOKEN", "bot-secret-value"),
    ];

    #[test]
    fn a_complete_environment_gives_a_config_with_defaults() {
        let config = JobConfig::from_lookup(env(&VALID)).unwrap();
        assert_eq!(config.job_id, "job-1");
        assert_eq!(config.offloader_url, "http://offloader:4545");
        assert_eq!(config.join_token.expose(), "bot-secret-value");
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
            config.join_token.expose(),
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
        assert!(printed.contains("Secret(***)"));
    }
}
