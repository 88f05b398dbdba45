//! A job's settings from its environment, validated in one pass so a bad job fails at once with every
//! problem named.
//!
//! The offloader turns a job's `input_data` keys into upper-cased environment variables and adds the
//! contract variables (`calls_protocol::job_env`). [`Settings`] reads them through a lookup function
//! (the process environment in production, a map in tests) and collects problems instead of stopping at
//! the first. [`process_lookup`] is the production lookup: the environment, and for a secret that is not
//! there, the file `/run/secrets/<lowercase name>` that a swarm-style backend mounts.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use calls_protocol::duration;
use calls_protocol::job_env::{self, call};
use calls_protocol::jobs::is_secret_field;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The URL schemes an offloader URL may use.
pub const HTTP_SCHEMES: &[&str] = &["http://", "https://"];
/// The URL schemes an SFU URL may use.
pub const SFU_SCHEMES: &[&str] = &["http://", "https://", "ws://", "wss://"];

/// The process environment, falling back to `/run/secrets/<lowercase name>` for secret names.
pub fn process_lookup() -> impl Fn(&str) -> Option<String> {
    with_secret_files(
        |key: &str| std::env::var(key).ok(),
        PathBuf::from(job_env::SECRETS_DIR),
    )
}

/// A lookup over fixed `(name, value)` pairs instead of the process environment: what the job
/// binaries' settings tests (and tools that run a job's code in-process) read settings through.
pub fn fixed_lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    move |key| map.get(key).cloned()
}

/// A complete environment of a bot job (identity and call), as the offloader gives one: the base
/// each job binary's settings tests add their own inputs to.
pub const EXAMPLE_BOT_ENV: [(&str, &str); 6] = [
    (job_env::JOB_ID, "job-1"),
    (job_env::JOB_TOKEN, "job-secret-value"),
    (job_env::OFFLOADER_URL, "http://offloader:4545/"),
    (call::CALL_ID, "call-1"),
    (call::SFU_URL, "ws://sfu:8443"),
    (call::BOT_TOKEN, "bot-secret-value"),
];

/// `lookup`, and for a secret name (see `is_secret_field`) that it lacks or has empty, the content of
/// `dir/<lowercase name>` with surrounding whitespace removed. Other names never read files, so an input
/// cannot be used to read an arbitrary file.
pub fn with_secret_files(
    lookup: impl Fn(&str) -> Option<String>,
    dir: PathBuf,
) -> impl Fn(&str) -> Option<String> {
    move |key: &str| {
        lookup(key)
            .filter(|value| !value.trim().is_empty())
            .or_else(|| {
                is_secret_field(key)
                    .then(|| read_secret_file(&dir, key))
                    .flatten()
            })
    }
}

fn read_secret_file(dir: &Path, key: &str) -> Option<String> {
    let name = job_env::secret_file_name(key);
    // The name comes from our own constants or the offloader's validated keys ([A-Za-z0-9_]); refuse
    // anything else rather than build a path from it.
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Who the job is to the offloader: `JOB_ID`, `JOB_TOKEN`, `OFFLOADER_URL`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobIdentity {
    /// The offloader's job id.
    pub job_id: String,
    /// Bearer token for the job's own status and artifact endpoints.
    pub job_token: Secret,
    /// Base URL of the offloader (no trailing slash).
    pub offloader_url: String,
}

/// The call a bot job joins: `CALL_ID`, `SFU_URL`, `BOT_TOKEN` (or `JOIN_TOKEN`).
#[derive(Debug, Clone, PartialEq)]
pub struct CallTarget {
    /// The call to join.
    pub call_id: String,
    /// Base URL of the SFU (no trailing slash).
    pub sfu_url: String,
    /// Join token for the bot.
    pub join_token: Secret,
}

/// The settings every bot job has besides its identity and call: `ALONE_TIMEOUT_SEC`, `OUTPUT_DIR`,
/// `CALLS_HEARTBEAT_FILE` (see [`Settings::finish_bot_job`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BotJobSettings {
    /// How long the bot may be alone in the call before it stops.
    pub alone_timeout: Duration,
    /// Where the job writes its files (the job's volume by default).
    pub output_dir: PathBuf,
    /// The image health check's file.
    pub heartbeat_file: PathBuf,
}

/// Reads settings through a lookup and collects every problem.
pub struct Settings<L> {
    lookup: L,
    problems: Vec<String>,
}

impl<L: Fn(&str) -> Option<String>> Settings<L> {
    /// Settings read through `lookup` (e.g. [`process_lookup`]).
    pub fn new(lookup: L) -> Settings<L> {
        Settings {
            lookup,
            problems: Vec::new(),
        }
    }

    /// The value of `key` with surrounding whitespace removed; `None` when absent or empty.
    pub fn get(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Records a problem found by the caller.
    pub fn problem(&mut self, text: impl Into<String>) {
        self.problems.push(text.into());
    }

    /// A required value; a missing one is a problem (and reads as an empty string).
    pub fn required(&mut self, key: &str) -> String {
        self.get(key).unwrap_or_else(|| {
            self.problem(format!("{key} is required"));
            String::new()
        })
    }

    /// A required URL with one of `schemes`, without its trailing slash.
    pub fn url(&mut self, key: &str, schemes: &[&str]) -> String {
        let url = self.required(key);
        if !url.is_empty() && !schemes.iter().any(|scheme| url.starts_with(scheme)) {
            self.problem(format!(
                "{key} {url:?} must start with {}",
                schemes.join(" or ")
            ));
        }
        url.trim_end_matches('/').to_owned()
    }

    /// Whole seconds (`"90"`) or a duration (`"90s"`, `"2m"`: `calls_protocol::duration`) in
    /// `range` seconds, `default` seconds when absent.
    pub fn seconds(&mut self, key: &str, default: u64, range: RangeInclusive<u64>) -> Duration {
        let (min, max) = (*range.start(), *range.end());
        match self
            .get(key)
            .map(|v| duration::parse_seconds_or_duration(&v))
        {
            None => Duration::from_secs(default),
            Some(Ok(value))
                if (Duration::from_secs(min)..=Duration::from_secs(max)).contains(&value) =>
            {
                value
            }
            Some(_) => {
                self.problem(format!(
                    "{key} must be whole seconds in {min}..={max} (or a duration such as \"90s\")"
                ));
                Duration::from_secs(default)
            }
        }
    }

    /// A number in `range`, `default` when absent; `what` names the unit in the problem
    /// (`"whole seconds"` gives "KEY must be whole seconds in 1..=10").
    pub fn number<T>(&mut self, key: &str, default: T, range: RangeInclusive<T>, what: &str) -> T
    where
        T: FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        match self.get(key).map(|v| v.parse::<T>()) {
            None => default,
            Some(Ok(value)) if range.contains(&value) => value,
            Some(_) => {
                self.problem(format!(
                    "{key} must be {what} in {}..={}",
                    range.start(),
                    range.end()
                ));
                default
            }
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`), `default` when absent.
    pub fn flag(&mut self, key: &str, default: bool) -> bool {
        match self.get(key).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => true,
            Some(v) if ["false", "0", "no"].contains(&v.as_str()) => false,
            Some(v) => {
                self.problem(format!("{key} must be true or false, not {v:?}"));
                default
            }
        }
    }

    /// `JOB_ID`, `JOB_TOKEN` and `OFFLOADER_URL`.
    pub fn identity(&mut self) -> JobIdentity {
        JobIdentity {
            job_id: self.required(job_env::JOB_ID),
            job_token: Secret::new(self.required(job_env::JOB_TOKEN)),
            offloader_url: self.url(job_env::OFFLOADER_URL, HTTP_SCHEMES),
        }
    }

    /// `CALL_ID`, `SFU_URL` and `BOT_TOKEN` (or the older `JOIN_TOKEN`).
    pub fn call(&mut self) -> CallTarget {
        let call_id = self.required(call::CALL_ID);
        let sfu_url = self.url(call::SFU_URL, SFU_SCHEMES);
        let join_token = match self
            .get(call::BOT_TOKEN)
            .or_else(|| self.get(call::JOIN_TOKEN))
        {
            Some(token) => Secret::new(token),
            None => {
                self.problem(format!(
                    "{} (or {}) is required",
                    call::BOT_TOKEN,
                    call::JOIN_TOKEN
                ));
                Secret::new("")
            }
        };
        CallTarget {
            call_id,
            sfu_url,
            join_token,
        }
    }

    /// `ALONE_TIMEOUT_SEC`: 1..=86400 s, default 60 s.
    fn alone_timeout(&mut self) -> Duration {
        self.seconds(call::ALONE_TIMEOUT_SEC, 60, 1..=86_400)
    }

    /// `OUTPUT_DIR`, default `/data` (the job's volume).
    fn output_dir(&self) -> PathBuf {
        PathBuf::from(
            self.get(call::OUTPUT_DIR)
                .unwrap_or_else(|| "/data".to_owned()),
        )
    }

    /// `CALLS_HEARTBEAT_FILE`, or the job's own default.
    fn heartbeat_file(&self, default: &str) -> PathBuf {
        PathBuf::from(
            self.get(call::HEARTBEAT_FILE)
                .unwrap_or_else(|| default.to_owned()),
        )
    }

    /// What every bot job reads after its own settings ([`BotJobSettings`], the heartbeat file defaulting
    /// to `default_heartbeat_file`), then [`Settings::finish`].
    pub fn finish_bot_job(mut self, default_heartbeat_file: &str) -> Result<BotJobSettings> {
        let settings = BotJobSettings {
            alone_timeout: self.alone_timeout(),
            output_dir: self.output_dir(),
            heartbeat_file: self.heartbeat_file(default_heartbeat_file),
        };
        self.finish()?;
        Ok(settings)
    }

    /// Ok when nothing was wrong, else every problem in one [`Error::InvalidJob`].
    pub fn finish(self) -> Result<()> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidJob(self.problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_call_are_read_and_trimmed() {
        let mut settings = Settings::new(fixed_lookup(&[
            ("JOB_ID", " j1 "),
            ("JOB_TOKEN", "t"),
            ("OFFLOADER_URL", "http://o:4545/"),
            ("CALL_ID", "c"),
            ("SFU_URL", "ws://s:8045"),
            ("JOIN_TOKEN", "old"),
        ]));
        let identity = settings.identity();
        let call = settings.call();
        settings.finish().unwrap();
        assert_eq!(identity.job_id, "j1");
        assert_eq!(identity.offloader_url, "http://o:4545");
        assert_eq!(call.join_token.expose(), "old", "JOIN_TOKEN still accepted");
    }

    #[test]
    fn every_problem_is_listed() {
        let mut settings = Settings::new(fixed_lookup(&[
            ("OFFLOADER_URL", "o:4545"),
            ("ALONE_TIMEOUT_SEC", "0"),
            ("KEEP_AUDIO", "maybe"),
            ("BEAM_SIZE", "x"),
        ]));
        settings.identity();
        settings.call();
        settings.alone_timeout();
        settings.flag("KEEP_AUDIO", false);
        settings.number("BEAM_SIZE", 1u32, 1..=16, "a whole number");
        let err = settings.finish().unwrap_err().to_string();
        for expected in [
            "JOB_ID is required",
            "JOB_TOKEN is required",
            "OFFLOADER_URL \"o:4545\" must start with http:// or https://",
            "CALL_ID is required",
            "BOT_TOKEN (or JOIN_TOKEN) is required",
            "ALONE_TIMEOUT_SEC must be whole seconds in 1..=86400",
            "KEEP_AUDIO must be true or false",
            "BEAM_SIZE must be a whole number in 1..=16",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in {err}");
        }
    }

    #[test]
    fn seconds_take_a_duration_too() {
        let mut settings = Settings::new(fixed_lookup(&[("ALONE_TIMEOUT_SEC", "2m")]));
        assert_eq!(settings.alone_timeout(), Duration::from_secs(120));
        settings.finish().unwrap();
        let mut settings = Settings::new(fixed_lookup(&[("ALONE_TIMEOUT_SEC", "2d")]));
        settings.alone_timeout();
        let err = settings.finish().unwrap_err().to_string();
        assert!(
            err.contains("ALONE_TIMEOUT_SEC must be whole seconds in 1..=86400"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_secret_is_read_from_its_file_and_other_names_never_are() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bot_token"), "from-file\n").unwrap();
        std::fs::write(dir.path().join("call_id"), "not-a-secret").unwrap();
        let lookup = with_secret_files(
            fixed_lookup(&[("JOB_TOKEN", "from-env")]),
            dir.path().into(),
        );
        assert_eq!(lookup("BOT_TOKEN").as_deref(), Some("from-file"));
        assert_eq!(lookup("JOB_TOKEN").as_deref(), Some("from-env"));
        assert_eq!(lookup("CALL_ID"), None, "only secrets come from files");
        assert_eq!(lookup("API_KEY"), None, "no file, no value");
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bot_token"), "from-file").unwrap();
        let lookup = with_secret_files(
            fixed_lookup(&[("BOT_TOKEN", "from-env")]),
            dir.path().into(),
        );
        assert_eq!(lookup("BOT_TOKEN").as_deref(), Some("from-env"));
        let empty = with_secret_files(fixed_lookup(&[("BOT_TOKEN", " ")]), dir.path().into());
        assert_eq!(empty("BOT_TOKEN").as_deref(), Some("from-file"));
    }
}
