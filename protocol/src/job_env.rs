//! The container contract between the offloader and a job binary: the environment variables a job
//! container gets, defined once here and used by the offloader (which builds the environment), the
//! shared job shell (`calls-job`) and every job (recorder, transcriber, the test job).
//!
//! The offloader sets the [`RESERVED`] names itself; every other variable comes from the
//! job's `input_data`, whose keys are upper-cased ([`env_name`]). So the input names a job type
//! reads are listed here by their environment spelling, and a client writes them in lowercase
//! (`call_id`, `bot_token`, ...). A secret input (see [`crate::jobs::is_secret_field`]) may also be
//! handed to the container as a file `/run/secrets/<lowercase name>` ([`secret_file_name`]) by a
//! backend that supports it; the job shell reads the file when the variable is absent.

use crate::jobs::JobType;

/// The offloader's job id.
pub const JOB_ID: &str = "JOB_ID";
/// The job type's wire name (`recording`, `transcribing`).
pub const JOB_TYPE: &str = "JOB_TYPE";
/// Base URL of the offloader API, as a container reaches it.
pub const OFFLOADER_URL: &str = "OFFLOADER_URL";
/// Bearer token for the job's own status and artifact routes (secret).
pub const JOB_TOKEN: &str = "JOB_TOKEN";
/// PEM certificates of a CA the job trusts besides the public roots when it connects to an
/// `https://`/`wss://` SFU or offloader (a stack with its own local CA; `jobs.ca_cert_file`).
/// Set by the offloader, only when configured.
pub const CA_CERT_PEM: &str = "CALLS_CA_CERT_PEM";
/// The names the offloader sets; an `input_data` key with one of these names is refused.
pub const RESERVED: [&str; 5] = [JOB_ID, JOB_TYPE, OFFLOADER_URL, JOB_TOKEN, CA_CERT_PEM];

/// Where a backend may mount secret inputs as files.
pub const SECRETS_DIR: &str = "/run/secrets";

/// Inputs of every job that joins a call as a bot (recording and transcribing).
pub mod call {
    /// The call to join.
    pub const CALL_ID: &str = "CALL_ID";
    /// Base URL of the SFU (`http(s)://` or `ws(s)://`).
    pub const SFU_URL: &str = "SFU_URL";
    /// The bot's join token, scoped to the call (secret).
    pub const BOT_TOKEN: &str = "BOT_TOKEN";
    /// Older name of [`BOT_TOKEN`], still accepted.
    pub const JOIN_TOKEN: &str = "JOIN_TOKEN";
    /// Stop after the bot has been alone in the call this many seconds.
    pub const ALONE_TIMEOUT_SEC: &str = "ALONE_TIMEOUT_SEC";
    /// Where the job writes its files (default `/data`, the job's volume).
    pub const OUTPUT_DIR: &str = "OUTPUT_DIR";
    /// The file touched for the image's health check.
    pub const HEARTBEAT_FILE: &str = "CALLS_HEARTBEAT_FILE";
    /// The job's log filter (`tracing` directives such as `info,calls_transcriber=debug`); the
    /// job shell reads it instead of `RUST_LOG`, which is not an input.
    pub const LOG_FILTER: &str = "LOG_FILTER";

    /// Every input of a job that joins a call.
    pub const ALL: [&str; 8] = [
        CALL_ID,
        SFU_URL,
        BOT_TOKEN,
        JOIN_TOKEN,
        ALONE_TIMEOUT_SEC,
        OUTPUT_DIR,
        HEARTBEAT_FILE,
        LOG_FILTER,
    ];
}

/// Inputs of a `recording` job (besides [`call`]).
pub mod recording {
    /// `low`, `medium` or `high`.
    pub const PROFILE: &str = "PROFILE";
    /// Output width in pixels.
    pub const WIDTH: &str = "WIDTH";
    /// Output height in pixels.
    pub const HEIGHT: &str = "HEIGHT";
    /// Output frame rate.
    pub const FPS: &str = "FPS";
    /// Video bitrate in kbit/s.
    pub const VIDEO_BITRATE: &str = "VIDEO_BITRATE";
    /// Audio bitrate in kbit/s.
    pub const AUDIO_BITRATE: &str = "AUDIO_BITRATE";

    /// Every input of a recording job besides [`super::call::ALL`].
    pub const ALL: [&str; 6] = [PROFILE, WIDTH, HEIGHT, FPS, VIDEO_BITRATE, AUDIO_BITRATE];
}

/// Inputs of a `transcribing` job (besides [`call`]).
pub mod transcribing {
    /// Whisper model name (one the image has).
    pub const MODEL: &str = "MODEL";
    /// Spoken language code, or `auto`.
    pub const LANGUAGE: &str = "LANGUAGE";
    /// Beam size; 1 is greedy.
    pub const BEAM_SIZE: &str = "BEAM_SIZE";
    /// Whisper threads.
    pub const THREADS: &str = "THREADS";
    /// Text given to whisper as context (names, jargon).
    pub const INITIAL_PROMPT: &str = "INITIAL_PROMPT";
    /// `true` to upload each speaker's audio as a WAV artifact too.
    pub const KEEP_AUDIO: &str = "KEEP_AUDIO";
    /// `true` to publish live captions during the call (the transcript still comes after it).
    pub const LIVE_CAPTIONS: &str = "LIVE_CAPTIONS";
    /// Whisper model for live captions (default: `MODEL`); a smaller one keeps captions quick.
    pub const LIVE_MODEL: &str = "LIVE_MODEL";

    /// Every input of a transcribing job besides [`super::call::ALL`].
    pub const ALL: [&str; 8] = [
        MODEL,
        LANGUAGE,
        BEAM_SIZE,
        THREADS,
        INITIAL_PROMPT,
        KEEP_AUDIO,
        LIVE_CAPTIONS,
        LIVE_MODEL,
    ];
}

/// The inputs (environment spelling) this project's job binary of `job_type` reads: the only
/// `input_data` keys the offloader accepts for it (compared upper-cased, see [`is_input_of`]).
pub fn input_names(job_type: JobType) -> impl Iterator<Item = &'static str> {
    let own: &'static [&'static str] = match job_type {
        JobType::Recording => &recording::ALL,
        JobType::Transcribing => &transcribing::ALL,
    };
    call::ALL.iter().chain(own).copied()
}

/// True when the `input_data` key `key` (any case) is an input of `job_type`'s job binary.
pub fn is_input_of(job_type: JobType, key: &str) -> bool {
    let name = env_name(key);
    input_names(job_type).any(|known| known == name)
}

/// The environment name of an `input_data` key: the key upper-cased.
pub fn env_name(input_key: &str) -> String {
    input_key.to_ascii_uppercase()
}

/// The file name under [`SECRETS_DIR`] that holds the secret input `env_name`: lowercase.
pub fn secret_file_name(env_name: &str) -> String {
    env_name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_keys_map_to_env_names_and_secret_files() {
        assert_eq!(env_name("bot_token"), call::BOT_TOKEN);
        assert_eq!(secret_file_name(call::BOT_TOKEN), "bot_token");
        assert!(RESERVED.contains(&env_name("job_token").as_str()));
    }

    #[test]
    fn each_job_type_knows_its_inputs_and_no_others() {
        assert!(is_input_of(JobType::Recording, "profile"));
        assert!(is_input_of(JobType::Recording, "BOT_TOKEN"));
        assert!(is_input_of(JobType::Transcribing, "live_model"));
        assert!(!is_input_of(JobType::Recording, "model"));
        assert!(!is_input_of(JobType::Transcribing, "profile"));
        for bad in [
            "PROFLE",
            "http_proxy",
            "ld_preload",
            "path",
            "rust_log",
            "job_token",
        ] {
            assert!(!is_input_of(JobType::Recording, bad), "{bad}");
            assert!(!is_input_of(JobType::Transcribing, bad), "{bad}");
        }
    }

    #[test]
    fn tokens_are_secret_fields_and_ids_are_not() {
        use crate::jobs::is_secret_field;
        for name in [JOB_TOKEN, call::BOT_TOKEN, call::JOIN_TOKEN] {
            assert!(is_secret_field(name), "{name}");
        }
        for name in [JOB_ID, call::CALL_ID, call::SFU_URL, transcribing::MODEL] {
            assert!(!is_secret_field(name), "{name}");
        }
    }
}
