//! The transcription job's settings, read from its environment (the offloader upper-cases a job's
//! `input_data` keys; names in `calls_protocol::job_env`) and validated in one step, so a bad job fails at
//! once with every problem named.
//!
//! | Variable | Required | Meaning |
//! |---|---|---|
//! | `JOB_ID`, `JOB_TOKEN`, `OFFLOADER_URL` | yes | set by the offloader (the token is secret) |
//! | `CALL_ID` | yes | the call to transcribe |
//! | `SFU_URL` | yes | `http(s)://` or `ws(s)://` base URL of the SFU |
//! | `BOT_TOKEN` (or `JOIN_TOKEN`) | yes | join token for the bot, scoped to the call (secret) |
//! | `MODEL` | no | whisper model the image has (default `models::DEFAULT_MODEL`) |
//! | `LANGUAGE` | no | `auto` (default: detected per speaker) or a language code such as `en` |
//! | `BEAM_SIZE` | no | 1 (default, greedy) ..= 8 |
//! | `THREADS` | no | whisper threads, 1..=16: decodes run side by side, one thread each (CTranslate2 replicas on one copy of the weights; live captions: workers) (default: the container's CPU limit from its cgroup `cpu.max`, e.g. 2 for the job's default 2 CPUs) |
//! | `INITIAL_PROMPT` | no | text that primes whisper (names, jargon), at most 1000 characters |
//! | `KEEP_AUDIO` | no | `true`: also upload each speaker's audio as `audio-<n>-<name>.wav` |
//! | `LIVE_CAPTIONS` | no | `true`: also caption the call live through the SFU (default `false`) |
//! | `LIVE_MODEL` | no | whisper model for live captions (default: `MODEL`) |
//! | `ALONE_TIMEOUT_SEC` | no | stop after the bot has been alone this long (default 60, 1..=86400) |
//! | `OUTPUT_DIR` | no | where capture files and artifacts are written (default `/data`, the job's volume) |
//! | `CALLS_TRANSCRIBER_MODELS` | no | the model directory (the image sets `/models`) |
//! | `CALLS_HEARTBEAT_FILE` | no | touched while the job makes progress (default `/tmp/calls-transcriber.alive`) |

use std::path::PathBuf;
use std::time::Duration;

use calls_job::settings::Settings;
use calls_job::{CallTarget, JobIdentity};
use calls_protocol::job_env::transcribing;

use crate::models;

/// The heartbeat file when `CALLS_HEARTBEAT_FILE` is not set (the image sets the same path).
pub const DEFAULT_HEARTBEAT_FILE: &str = "/tmp/calls-transcriber.alive";
/// Longest accepted initial prompt, in characters (whisper uses at most half its 448-token context).
pub const MAX_PROMPT_CHARS: usize = 1_000;

/// Validated settings of one transcription job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    /// `JOB_ID`, `JOB_TOKEN`, `OFFLOADER_URL`.
    pub identity: JobIdentity,
    /// `CALL_ID`, `SFU_URL`, `BOT_TOKEN`.
    pub call: CallTarget,
    /// The whisper model's name.
    pub model: String,
    /// Where the models are.
    pub models_dir: PathBuf,
    /// `None`: detect per speaker.
    pub language: Option<String>,
    /// `None`: greedy.
    pub beam_size: Option<u32>,
    /// Whisper threads.
    pub threads: u32,
    /// Priming text.
    pub initial_prompt: Option<String>,
    /// Upload each speaker's WAV too.
    pub keep_audio: bool,
    /// The model for live captions, when they are on.
    pub live_model: Option<String>,
    /// How long the bot may be alone in the call before it stops.
    pub alone_timeout: Duration,
    /// Capture files and artifacts.
    pub output_dir: PathBuf,
    /// Touched while the job makes progress.
    pub heartbeat_file: PathBuf,
}

impl JobConfig {
    /// Reads and validates every setting through `lookup` (e.g. `calls_job::settings::process_lookup()`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> calls_job::Result<JobConfig> {
        let models_dir = lookup(models::MODELS_DIR_ENV)
            .filter(|dir| !dir.trim().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(models::default_dir);
        let mut settings = Settings::new(lookup);
        let identity = settings.identity();
        let call = settings.call();
        let model = settings
            .get(transcribing::MODEL)
            .unwrap_or_else(|| models::DEFAULT_MODEL.to_owned());
        if !is_model_name(&model) {
            settings.problem(format!(
                "{} {model:?} is not a model name (letters, digits, '.', '-', '_')",
                transcribing::MODEL
            ));
        }
        let language = match settings.get(transcribing::LANGUAGE) {
            None => None,
            Some(code) if code.eq_ignore_ascii_case("auto") => None,
            Some(code)
                if (2..=3).contains(&code.len())
                    && code.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                Some(code.to_ascii_lowercase())
            }
            Some(code) => {
                settings.problem(format!(
                    "{} {code:?} must be auto or a language code such as en",
                    transcribing::LANGUAGE
                ));
                None
            }
        };
        let beam_size = settings.number(transcribing::BEAM_SIZE, 1u32, 1..=8, "a whole number");
        // More threads than the container's CPU quota only make whisper's threads wait for each other.
        let default_threads = crate::cpus::available().clamp(1, 16);
        let threads = settings.number(
            transcribing::THREADS,
            default_threads,
            1..=16,
            "a whole number",
        );
        let initial_prompt = settings.get(transcribing::INITIAL_PROMPT);
        if initial_prompt
            .as_ref()
            .is_some_and(|p| p.chars().count() > MAX_PROMPT_CHARS)
        {
            settings.problem(format!(
                "{} is longer than {MAX_PROMPT_CHARS} characters",
                transcribing::INITIAL_PROMPT
            ));
        }
        let keep_audio = settings.flag(transcribing::KEEP_AUDIO, false);
        let live_captions = settings.flag(transcribing::LIVE_CAPTIONS, false);
        let live_model = settings.get(transcribing::LIVE_MODEL);
        if let Some(name) = live_model.as_ref().filter(|name| !is_model_name(name)) {
            settings.problem(format!(
                "{} {name:?} is not a model name (letters, digits, '.', '-', '_')",
                transcribing::LIVE_MODEL
            ));
        }
        if live_model.is_some() && !live_captions {
            settings.problem(format!(
                "{} is set but {} is not true",
                transcribing::LIVE_MODEL,
                transcribing::LIVE_CAPTIONS
            ));
        }
        let live_model = live_captions.then(|| live_model.unwrap_or_else(|| model.clone()));
        let bot = settings.finish_bot_job(DEFAULT_HEARTBEAT_FILE)?;
        Ok(JobConfig {
            identity,
            call,
            model,
            models_dir,
            language,
            beam_size: (beam_size > 1).then_some(beam_size),
            threads,
            initial_prompt,
            keep_audio,
            live_model,
            alone_timeout: bot.alone_timeout,
            output_dir: bot.output_dir,
            heartbeat_file: bot.heartbeat_file,
        })
    }
}

/// A model name: letters, digits, '.', '-', '_', not starting with '.', at most 64 characters (it becomes a
/// file name under the model directory).
fn is_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use calls_job::settings::{fixed_lookup as env, EXAMPLE_BOT_ENV};

    const VALID: [(&str, &str); 7] = {
        let [a, b, c, d, e, f] = EXAMPLE_BOT_ENV;
        [a, b, c, d, e, f, ("CALLS_TRANSCRIBER_MODELS", "/models")]
    };

    #[test]
    fn defaults_are_greedy_auto_threads_of_the_cpu_limit_default_model() {
        let config = JobConfig::from_lookup(env(&VALID)).unwrap();
        assert_eq!(config.model, models::DEFAULT_MODEL);
        assert_eq!(config.models_dir, PathBuf::from("/models"));
        assert_eq!(
            (config.language.clone(), config.beam_size, config.threads),
            (None, None, crate::cpus::available().clamp(1, 16))
        );
        assert!(!config.keep_audio);
        assert_eq!(config.live_model, None, "live captions are off by default");
        assert_eq!(config.output_dir, PathBuf::from("/data"));
        assert_eq!(config.heartbeat_file, PathBuf::from(DEFAULT_HEARTBEAT_FILE));
    }

    #[test]
    fn inputs_are_read() {
        let mut pairs = VALID.to_vec();
        pairs.extend([
            ("MODEL", "tiny.en"),
            ("LANGUAGE", "EN"),
            ("BEAM_SIZE", "5"),
            ("THREADS", "1"),
            ("INITIAL_PROMPT", "Alice, Bob"),
            ("KEEP_AUDIO", "true"),
            ("ALONE_TIMEOUT_SEC", "5"),
            ("LIVE_CAPTIONS", "true"),
        ]);
        let config = JobConfig::from_lookup(env(&pairs)).unwrap();
        assert_eq!(config.model, "tiny.en");
        assert_eq!(config.language.as_deref(), Some("en"));
        assert_eq!((config.beam_size, config.threads), (Some(5), 1));
        assert_eq!(config.initial_prompt.as_deref(), Some("Alice, Bob"));
        assert!(config.keep_audio);
        assert_eq!(config.alone_timeout, Duration::from_secs(5));
        assert_eq!(
            config.live_model.as_deref(),
            Some("tiny.en"),
            "live uses MODEL"
        );
        pairs.push(("LIVE_MODEL", "base"));
        let config = JobConfig::from_lookup(env(&pairs)).unwrap();
        assert_eq!(config.live_model.as_deref(), Some("base"));
    }

    #[test]
    fn bad_inputs_are_all_named() {
        let long_prompt = "x".repeat(MAX_PROMPT_CHARS + 1);
        let mut pairs = VALID.to_vec();
        pairs.retain(|(k, _)| *k != "BOT_TOKEN");
        pairs.extend([
            ("MODEL", "../etc/passwd"),
            ("LANGUAGE", "english!"),
            ("BEAM_SIZE", "0"),
            ("THREADS", "many"),
            ("INITIAL_PROMPT", long_prompt.as_str()),
            ("KEEP_AUDIO", "perhaps"),
            ("LIVE_MODEL", "../x"),
        ]);
        let err = JobConfig::from_lookup(env(&pairs)).unwrap_err().to_string();
        for expected in [
            "BOT_TOKEN (or JOIN_TOKEN) is required",
            "MODEL \"../etc/passwd\" is not a model name",
            "LANGUAGE \"english!\" must be auto or a language code",
            "BEAM_SIZE must be a whole number in 1..=8",
            "THREADS must be a whole number in 1..=16",
            "INITIAL_PROMPT is longer than 1000 characters",
            "KEEP_AUDIO must be true or false",
            "LIVE_MODEL \"../x\" is not a model name",
            "LIVE_MODEL is set but LIVE_CAPTIONS is not true",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in {err}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let printed = format!("{:?}", JobConfig::from_lookup(env(&VALID)).unwrap());
        assert!(!printed.contains("secret-value"), "{printed}");
    }
}
