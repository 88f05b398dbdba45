//! REST bodies of the offloader job API (see docs/offloader.md). These are the wire shapes only:
//! the offloader converts them to its own validated types at the edge, and clients (tests, the
//! benchmark, other services) deserialize the same structs, so a change here is a change of the
//! public API. Timestamps are Unix milliseconds (UTC), like Mattermost's `start_at`/`stop_at`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The kind of work a job does; it picks the default runner image and the resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobType {
    Recording,
    Transcribing,
}

impl JobType {
    /// Every job type, in a stable order (for metrics and config tables).
    pub const ALL: [JobType; 2] = [JobType::Recording, JobType::Transcribing];

    /// The lowercase wire name, also used in container names and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Recording => "recording",
            JobType::Transcribing => "transcribing",
        }
    }

    /// Parses the wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<JobType> {
        JobType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The life cycle of a job: `queued → starting → running → stopping → succeeded | failed | cancelled`.
/// `stopping` is entered on a stop request or when the maximum duration is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Starting,
    Running,
    Stopping,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// Every state, in life-cycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Starting,
        JobState::Running,
        JobState::Stopping,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The lowercase wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses the wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True once the job can no longer change state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the offloader sends a signed `POST` on every state change of the client's jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// HMAC-SHA256 key for the `X-Calls-Signature` header (at least 16 characters). Never returned.
    pub secret: Secret,
}

/// `POST /register`. Authorised by the admin secret (`Authorization: Bearer <admin secret>`)
/// unless self-registration is enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// At least 32 characters; stored as an argon2 hash.
    #[serde(rename = "authKey")]
    pub auth_key: String,
    /// Optional webhook, also settable later with `PUT /webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

/// `POST /login` body (Basic auth with the same credentials works too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(rename = "authKey")]
    pub auth_key: String,
}

/// `POST /login` answer: a bearer token for `Authorization: Bearer <token>`. Every value is a JSON
/// string, because Mattermost's offloader client decodes this body as a map of strings and reads
/// `bearerToken`: `{"bearerToken": "…", "expires_at": "1733500000000"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    #[serde(rename = "bearerToken")]
    pub bearer_token: String,
    /// Unix milliseconds after which the token is refused (a decimal string on the wire).
    #[serde(with = "decimal_string")]
    pub expires_at: i64,
}

/// An `i64` written as a JSON string of its decimal digits (and read from one).
mod decimal_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `POST /unregister` answer (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisterResponse {
    #[serde(rename = "clientID")]
    pub client_id: String,
}

/// `POST /unregister` body: needed only when the admin secret unregisters another client; a
/// client authenticated with its own credentials unregisters itself with no body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnregisterRequest {
    #[serde(rename = "clientID")]
    pub client_id: String,
}

/// `POST /jobs`. Unknown fields are rejected so that a typo does not silently drop a setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// Image to run; must be on the allowlist. Defaults to the configured image for the type
    /// (also when empty: Mattermost's client always sends the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Defaults to the configured maximum for the type; may not exceed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_sec: Option<u64>,
    /// Passed to the container as environment variables with upper-cased keys. Only the keys the
    /// runner reads are accepted (`job_env::input_names` for this project's jobs, an operator-set
    /// list for other runners). Keys containing `token`, `secret`, `password` or `key`
    /// (case-insensitive) are secret: stored, handed to the container, never returned nor logged.
    #[serde(default, deserialize_with = "null_as_default")]
    pub input_data: BTreeMap<String, serde_json::Value>,
}

/// Reads JSON `null` as the type's default (Go clients send `null` for a nil map or slice).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The same body under the name the design notes use for it.
pub type JobSpec = CreateJobRequest;

/// The public view of a job. Secret `input_data` fields are removed; their names are listed in
/// `secret_fields` so a client can see they were received. It is also a superset of Mattermost's
/// `job.Job` (`id`, `type`, `runner`, `max_duration_sec`, `input_data`, `start_at`, `stop_at`),
/// so no field Mattermost's client decodes may change type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    #[serde(rename = "type")]
    pub job_type: JobType,
    pub state: JobState,
    /// The image the job runs.
    pub runner: String,
    /// `calls-<type>-<id>`: the Docker container name, for `docker logs` and friends.
    pub container_name: String,
    pub max_duration_sec: u64,
    pub input_data: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub secret_fields: Vec<String>,
    pub created_at: i64,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Why the job failed, phrased for a person: "image missing: ...", "container OOM-killed",
    /// "max duration exceeded", "exited 1: <last log lines>".
    #[serde(default)]
    pub failure_reason: Option<String>,
    /// The last progress message the job reported, if any.
    #[serde(default)]
    pub progress: Option<String>,
    /// Counters the job reported through the status API (latest value per name).
    #[serde(default)]
    pub counters: BTreeMap<String, f64>,
    /// Mattermost's name for `created_at`: when the job was accepted (Unix ms).
    #[serde(default)]
    pub start_at: i64,
    /// Mattermost's name for `finished_at`, absent until the job is final (its client reads a
    /// missing field as 0: still running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_at: Option<i64>,
}

/// `GET /jobs` answer: one page of the client's jobs, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Present when more jobs follow: pass it back as `?cursor=` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What a job reports about itself with `POST /jobs/{id}/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatusKind {
    /// The job is up and doing its work.
    Started,
    /// A progress note and/or counter update.
    Progress,
    /// The job gave up; `error` says why (becomes the failure reason if it then exits non-zero).
    Failed,
    /// The job's work is done and delivered (artifacts uploaded); it is about to exit. A job
    /// stopped through the API ends `succeeded` instead of `cancelled` if it reported this and
    /// exits 0.
    Finished,
}

/// `POST /jobs/{id}/status`, authenticated with the job's own `JOB_TOKEN` as a bearer token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobStatusUpdate {
    pub status: JobStatusKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Named counters (absolute values), exported on `/metrics` as
    /// `calls_offloader_job_reported{job_type, name}`, and the series of
    /// [`crate::job_metrics::JOB_SERIES`] also under their own names.
    #[serde(default)]
    pub counters: BTreeMap<String, f64>,
    /// Histograms of [`crate::job_metrics::JOB_SERIES`] (absolute values for the job so far).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms: BTreeMap<String, HistogramReport>,
}

/// A job's histogram so far: observations per bucket of the series' bounds (not cumulative; one more
/// entry than bounds, for values above every bound) and their sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramReport {
    pub counts: Vec<u64>,
    pub sum: f64,
}

/// One stored artifact of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    pub name: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub created_at: i64,
}

/// `GET /jobs/{id}/artifacts` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactList {
    pub artifacts: Vec<ArtifactInfo>,
}

/// `POST /jobs/init` body: images to check (defaults to every configured image when empty/absent).
/// `Runners` is Mattermost's spelling (its Go struct has no JSON tag); `null` reads as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitRequest {
    #[serde(default, alias = "Runners", deserialize_with = "null_as_default")]
    pub runners: Vec<String>,
}

/// Presence of one image: on the Docker engine (engine mode), or on every node that may run
/// jobs (swarm mode; see [`InitResponse::nodes`] for which node lacks it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageStatus {
    pub image: String,
    pub present: bool,
    #[serde(default)]
    pub allowed: bool,
}

/// The checked images one node has and lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeImages {
    /// The node's host name (the engine's, in engine mode).
    pub node: String,
    /// The swarm node id; empty in engine mode.
    #[serde(default)]
    pub node_id: String,
    pub present: Vec<String>,
    pub missing: Vec<String>,
}

/// `POST /jobs/init` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitResponse {
    pub images: Vec<ImageStatus>,
    /// Per node that may run jobs: one entry in engine mode, one per eligible swarm node.
    #[serde(default)]
    pub nodes: Vec<NodeImages>,
}

/// `GET /version` answer: our `name` and `version`, and Mattermost's four fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub name: String,
    pub version: String,
    /// The calls-offloader release whose API this server speaks ([`MATTERMOST_API_VERSION`]):
    /// Mattermost's Calls plugin compares it with its `min_offloader_version`.
    #[serde(rename = "buildVersion")]
    pub build_version: String,
    /// The source revision, when the build was given one (`CALLS_BUILD_HASH`); else empty.
    #[serde(rename = "buildHash")]
    pub build_hash: String,
    /// The build date, when the build was given one (`CALLS_BUILD_DATE`); else empty.
    #[serde(rename = "buildDate")]
    pub build_date: String,
    /// Always empty: there is no Go here. Present because Mattermost's client reads it.
    #[serde(rename = "goVersion")]
    pub go_version: String,
}

/// The release of Mattermost's calls-offloader whose client API this offloader implements
/// (`GET /version`'s `buildVersion`; docs/mattermost.md).
pub const MATTERMOST_API_VERSION: &str = "v0.9.5";

/// Body of a webhook call (`POST` to the client's URL), sent on every state change. Headers:
/// `X-Calls-Signature: sha256=<hex HMAC-SHA256 of the raw body keyed with the webhook secret>`,
/// `X-Calls-Delivery: <unique id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Always `job.state_changed` for now.
    pub event: String,
    pub job: Job,
    pub sent_at: i64,
}

/// Every error answer: `{"error": "<what went wrong, for a person>", "code": "<one of error_codes>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
}

/// The closed set of `ErrorBody::code` values.
pub mod error_codes {
    /// 400: malformed JSON, unknown job type, invalid field.
    pub const BAD_REQUEST: &str = "bad_request";
    /// 401: missing or wrong credentials / token.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: authenticated but not allowed (e.g. registering without the admin secret).
    pub const FORBIDDEN: &str = "forbidden";
    /// 404: no such job (or not the caller's), artifact or route.
    pub const NOT_FOUND: &str = "not_found";
    /// 409: the request conflicts with the job's state or an existing client.
    pub const CONFLICT: &str = "conflict";
    /// 413: body over the limit.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 416: unsatisfiable Range.
    pub const RANGE_NOT_SATISFIABLE: &str = "range_not_satisfiable";
    /// 429: the job queue is full.
    pub const QUEUE_FULL: &str = "queue_full";
    /// 429: too many failed key checks for a client id from one address.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// 500: a bug or a store failure.
    pub const INTERNAL: &str = "internal";
    /// 503: Docker unreachable or the offloader shutting down.
    pub const UNAVAILABLE: &str = "unavailable";
}

/// True when an `input_data` key names a secret: it contains `token`, `secret`, `password` or
/// `key`, compared case-insensitively (`BOT_TOKEN`, `apiKey`, `db_password`, `keyfile`...).
pub fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["token", "secret", "password", "key"]
        .iter()
        .any(|needle| lower.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_job_request_parses_the_documented_shape() {
        let body = r#"{"type":"recording","max_duration_sec":60,"input_data":{"call_id":"c1","bot_token":"s"}}"#;
        let req: CreateJobRequest = serde_json::from_str(body).expect("valid body");
        assert_eq!(req.job_type, JobType::Recording);
        assert_eq!(req.max_duration_sec, Some(60));
        assert_eq!(req.input_data.len(), 2);
        assert!(req.runner.is_none());
    }

    #[test]
    fn unknown_job_type_and_unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<CreateJobRequest>(r#"{"type":"mining"}"#).is_err());
        assert!(serde_json::from_str::<CreateJobRequest>(r#"{"type":"recording","x":1}"#).is_err());
    }

    #[test]
    fn register_request_uses_mattermost_field_names() {
        let req = RegisterRequest {
            client_id: "a".into(),
            auth_key: "b".into(),
            webhook: None,
        };
        let json = serde_json::to_string(&req).expect("serializable");
        assert_eq!(json, r#"{"clientID":"a","authKey":"b"}"#);
    }

    #[test]
    fn mattermost_client_shapes() {
        // Its Login decodes the whole body as map[string]string: every value must be a string.
        let login = LoginResponse {
            bearer_token: "t".into(),
            expires_at: 1_733_500_000_000,
        };
        let json = serde_json::to_value(&login).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({"bearerToken": "t", "expires_at": "1733500000000"})
        );
        assert_eq!(
            serde_json::from_value::<LoginResponse>(json).expect("round trip"),
            login
        );
        // Its Init sends the Go field name, and null for a nil slice.
        let init: InitRequest =
            serde_json::from_str(r#"{"Runners":["mattermost/calls-recorder:v0.8.5"]}"#)
                .expect("Go spelling");
        assert_eq!(init.runners, vec!["mattermost/calls-recorder:v0.8.5"]);
        let init: InitRequest = serde_json::from_str(r#"{"Runners":null}"#).expect("null");
        assert!(init.runners.is_empty());
        // Its job.Config, as encoding/json writes it (input_data omitted when empty).
        let req: CreateJobRequest = serde_json::from_str(
            r#"{"type":"recording","max_duration_sec":3600,"runner":"mattermost/calls-recorder:v0.8.5","input_data":{"width":1280,"call_id":"c"}}"#,
        )
        .expect("Go job.Config");
        assert_eq!(req.max_duration_sec, Some(3600));
        let req: CreateJobRequest =
            serde_json::from_str(r#"{"type":"transcribing","max_duration_sec":60,"runner":""}"#)
                .expect("no input_data");
        assert!(req.input_data.is_empty());
    }

    #[test]
    fn secret_field_rule_is_case_insensitive_substring() {
        for name in ["BOT_TOKEN", "apiKey", "db_password", "Secret", "keyfile"] {
            assert!(is_secret_field(name), "{name}");
        }
        for name in ["call_id", "site_url", "language", "max_speakers"] {
            assert!(!is_secret_field(name), "{name}");
        }
    }

    #[test]
    fn states_round_trip_and_finality() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).expect("serializable");
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert!(JobState::Cancelled.is_final());
        assert!(!JobState::Stopping.is_final());
    }
}
