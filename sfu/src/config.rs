//! Configuration of the SFU in two steps: a raw TOML file struct (`deny_unknown_fields`) that
//! `SFU_*` environment variables override key by key, then a validated `Config` with real types.
//!
//! Every key lives in exactly one place, the `KEYS` table below, which says its file key (its
//! environment variable follows from it) and how to apply a value; docs/sfu-config.md documents
//! the same table and a test checks that the two agree. Validation errors name the key (`ice.udp_port`) so an operator
//! knows what to fix.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use calls_protocol::duration::SecondsOrDuration;
use serde::Deserialize;

/// Shortest token secret accepted outside dev mode (bytes).
pub const MIN_SECRET_LEN: usize = 32;
/// Shortest API key accepted for `/calls`.
pub const MIN_API_KEY_LEN: usize = 16;
/// Secret used in dev mode when none is configured. Public on purpose: dev mode is for the local
/// demo only, and a fixed secret lets `calls-sfu token` mint tokens the running demo accepts.
pub const DEV_MODE_SECRET: &str = "calls-sfu-dev-mode-secret-never-use-in-production";

/// Environment variable naming the config file; read by `main.rs`, skipped by `apply_env`.
pub const CONFIG_FILE_ENV: &str = "SFU_CONFIG";

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("unknown environment variable {0} (see docs/sfu-config.md)")]
    UnknownEnv(String),
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("config key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The API key, the token secret and the TURN secret: the stack's one redacting type.
pub use calls_protocol::secret::Secret;

/// Address advertised in ICE candidates instead of the local one (for NAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOverride {
    Ip(IpAddr),
    Hostname(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// ICE transport settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceConfig {
    /// The one UDP port all sessions share; 0 picks an ephemeral port (tests).
    pub udp_port: u16,
    /// The one TCP port all sessions share (ICE-TCP passive); 0 picks an ephemeral port (tests).
    pub tcp_port: u16,
    /// Local addresses to gather host candidates on; empty means every non-loopback interface.
    pub host_addresses: Vec<IpAddr>,
    pub host_override: Option<HostOverride>,
    /// `stun:host:port` URLs used to discover a server-reflexive address.
    pub stun_servers: Vec<String>,
    /// Accept remote candidates on loopback addresses (issue 21, finding 8). Unset in the file:
    /// on only when the SFU itself listens on loopback (see `docs/sfu-config.md`).
    pub allow_loopback_candidates: bool,
    /// Accept remote candidates on link-local addresses (169.254/16, fe80::/10).
    pub allow_link_local_candidates: bool,
    /// Forward voice through the SFU's own SRTP straight to the shared UDP socket (`fastpath`),
    /// instead of through each receiver's webrtc driver.
    pub fast_path: bool,
    /// TURN servers handed to every session, with credentials made from `turn_secret`.
    pub turn: Option<TurnConfig>,
}

/// TURN servers for clients (coturn's `use-auth-secret` scheme, see `turn.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:`/`turns:` URLs, as the clients are given them.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub static_auth_secret: Secret,
    /// How long a session's TURN credential stays valid.
    pub credential_ttl: std::time::Duration,
}

/// The server certificate files of the HTTP listener (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Bounds on what one call or session may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_participants_per_call: usize,
    /// Largest signalling message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Sustained signalling messages per second per session.
    pub messages_per_second: u32,
    /// Messages a session may send in a burst above the sustained rate.
    pub message_burst: u32,
    /// Outgoing signalling messages queued per session before it counts as stuck and is dropped.
    pub session_queue_size: usize,
    /// RTP packets queued per forwarded track before packets are dropped.
    pub rtp_queue_size: usize,
    /// Voice tracks one session may publish at a time.
    pub voice_tracks_per_session: usize,
    /// Screen tracks one session may publish at a time (0 disables screen sharing).
    pub screen_tracks_per_session: usize,
    /// Live sessions one join token may hold at a time.
    pub sessions_per_token: usize,
    /// HTTP connections (WebSockets included) served at once.
    pub max_http_connections: usize,
    /// Time a client has to send a request's headers, and its body.
    pub http_read_timeout: std::time::Duration,
    /// HTTP connections one client address (an IPv6 /64) may hold at once.
    pub max_http_connections_per_address: usize,
    /// While the server has a response or WebSocket data the client does not take, the client
    /// must take at least [`crate::write_deadline::MIN_PROGRESS_BYTES`] within this time.
    pub http_write_timeout: std::time::Duration,
    /// SDP offers a session may send per minute (sustained) ...
    pub offers_per_minute: u32,
    /// ... and in a burst above that rate.
    pub offer_burst: u32,
    /// Distinct remote ICE candidates one session may add.
    pub ice_candidates_per_session: usize,
    /// Largest caption a bot may publish (text, tail and id together), in bytes.
    pub max_caption_bytes: usize,
    /// Captions one bot session may publish per second (bursts of twice that).
    pub captions_per_second: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directive, e.g. `info` or `calls_sfu=debug`.
    pub level: String,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub http_listen_address: SocketAddr,
    /// Serve HTTPS (and WSS) with these files instead of plain HTTP.
    pub http_tls: Option<TlsFiles>,
    /// Key for `GET /calls*`; `None` disables those endpoints.
    pub api_key: Option<Secret>,
    /// Directory holding the demo page (`index.html`); `None` means the built-in search path.
    pub static_dir: Option<PathBuf>,
    /// Origin (`scheme://host[:port]`) of the URL people open the page at, allowed on `/ws`.
    pub public_origin: Option<String>,
    /// Further origins allowed to open `/ws` from a browser (`*` allows any).
    pub allowed_origins: Vec<String>,
    pub token_secret: Secret,
    /// Permissive local-demo mode: a built-in token secret is used when none is configured.
    pub dev_mode: bool,
    pub ice: IceConfig,
    pub limits: Limits,
    pub log: LogConfig,
}

impl Config {
    /// A configuration for tests: everything on 127.0.0.1 with ephemeral ports.
    pub fn for_local_test(token_secret: &str) -> Config {
        Config {
            http_listen_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_tls: None,
            api_key: None,
            static_dir: None,
            public_origin: None,
            allowed_origins: Vec::new(),
            token_secret: Secret::new(token_secret),
            dev_mode: false,
            ice: IceConfig {
                udp_port: 0,
                tcp_port: 0,
                host_addresses: vec![IpAddr::from([127, 0, 0, 1])],
                host_override: None,
                stun_servers: Vec::new(),
                turn: None,
                allow_loopback_candidates: true,
                allow_link_local_candidates: false,
                fast_path: true,
            },
            limits: RawLimits::default().validate().expect("defaults are valid"),
            log: LogConfig {
                format: LogFormat::Text,
                level: "info".into(),
            },
        }
    }

    /// Reads the optional TOML file, applies `SFU_*` variables from `env` (pass
    /// `std::env::vars()` in production), and validates the result.
    pub fn from_file_and_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut raw = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                RawConfig::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
            None => RawConfig::default(),
        };
        raw.apply_env(env)?;
        raw.validate()
    }
}

/// The config file as written; every field optional so that defaults and env can fill it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub ice: RawIce,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen_address: Option<String>,
    pub api_key: Option<String>,
    pub static_dir: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub public_url: Option<String>,
    pub allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub token_secret: Option<String>,
    pub dev_mode: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIce {
    pub udp_port: Option<u16>,
    pub tcp_port: Option<u16>,
    pub host_addresses: Option<Vec<String>>,
    pub host_override: Option<String>,
    pub stun_servers: Option<Vec<String>>,
    pub turn_urls: Option<Vec<String>>,
    pub turn_static_auth_secret: Option<String>,
    pub turn_credential_ttl_secs: Option<SecondsOrDuration>,
    pub allow_loopback_candidates: Option<bool>,
    pub allow_link_local_candidates: Option<bool>,
    pub fast_path: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_participants_per_call: Option<usize>,
    pub max_message_bytes: Option<usize>,
    pub messages_per_second: Option<u32>,
    pub message_burst: Option<u32>,
    pub session_queue_size: Option<usize>,
    pub rtp_queue_size: Option<usize>,
    pub voice_tracks_per_session: Option<usize>,
    pub screen_tracks_per_session: Option<usize>,
    pub sessions_per_token: Option<usize>,
    pub max_http_connections: Option<usize>,
    pub http_read_timeout_secs: Option<SecondsOrDuration>,
    pub max_http_connections_per_address: Option<usize>,
    pub http_write_timeout_secs: Option<SecondsOrDuration>,
    pub offers_per_minute: Option<u32>,
    pub offer_burst: Option<u32>,
    pub ice_candidates_per_session: Option<usize>,
    pub max_caption_bytes: Option<usize>,
    pub captions_per_second: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// One configuration key: where it lives in the file, its default and how an environment value
/// is applied to the raw config. Its environment variable is derived from the file key
/// (`env_var`).
pub struct Key {
    pub file_key: &'static str,
    /// The value used when neither the file nor the environment sets the key, as an environment
    /// value would write it; `None` for keys whose absence means something (unset, required, or
    /// derived from other keys, as docs/sfu-config.md says). Validation reads it from here only.
    pub default: Option<&'static str>,
    apply: fn(&mut RawConfig, &str) -> Result<(), String>,
}

impl Key {
    /// `SFU_` plus the upper-cased file key with `.` as `_`: `ice.udp_port` is `SFU_ICE_UDP_PORT`.
    pub fn env_var(&self) -> String {
        format!(
            "SFU_{}",
            self.file_key.replace('.', "_").to_ascii_uppercase()
        )
    }
}

fn text(value: &str) -> Result<String, String> {
    Ok(value.to_owned())
}

fn parse<T: std::str::FromStr>(value: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    value.trim().parse::<T>().map_err(|error| error.to_string())
}

/// A comma-separated list; blanks around items and empty items are dropped.
fn list(value: &str) -> Result<Vec<String>, String> {
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect())
}

/// `key!(section.field, convert)`: the key `section.field`, whose environment value goes through
/// `convert` into `RawConfig::section::field`.
macro_rules! key {
    ($section:ident . $field:ident, $convert:expr) => {
        key!(@ $section.$field, $convert, None)
    };
    ($section:ident . $field:ident, $convert:expr, $default:literal) => {
        key!(@ $section.$field, $convert, Some($default))
    };
    (@ $section:ident . $field:ident, $convert:expr, $default:expr) => {
        Key {
            file_key: concat!(stringify!($section), ".", stringify!($field)),
            default: $default,
            apply: |raw, value| {
                raw.$section.$field = Some($convert(value)?);
                Ok(())
            },
        }
    };
}

/// Every configuration key, in documentation order.
pub const KEYS: &[Key] = &[
    key!(http.listen_address, text, "0.0.0.0:8045"),
    key!(http.api_key, text),
    key!(http.static_dir, text),
    key!(http.tls_cert_file, text),
    key!(http.tls_key_file, text),
    key!(http.public_url, text),
    key!(http.allowed_origins, list),
    key!(auth.token_secret, text),
    key!(auth.dev_mode, parse, "false"),
    key!(ice.udp_port, parse, "8443"),
    key!(ice.tcp_port, parse, "8443"),
    key!(ice.host_addresses, list),
    key!(ice.host_override, text),
    key!(ice.stun_servers, list),
    key!(ice.turn_urls, list),
    key!(ice.turn_static_auth_secret, text),
    key!(ice.turn_credential_ttl_secs, parse, "86400"),
    key!(ice.allow_loopback_candidates, parse),
    key!(ice.allow_link_local_candidates, parse, "false"),
    key!(ice.fast_path, parse, "true"),
    key!(limits.max_participants_per_call, parse, "200"),
    key!(limits.max_message_bytes, parse, "262144"),
    key!(limits.messages_per_second, parse, "50"),
    key!(limits.message_burst, parse, "100"),
    key!(limits.session_queue_size, parse, "256"),
    key!(limits.rtp_queue_size, parse, "512"),
    key!(limits.voice_tracks_per_session, parse, "1"),
    key!(limits.screen_tracks_per_session, parse, "1"),
    key!(limits.sessions_per_token, parse, "1"),
    key!(limits.max_http_connections, parse, "4096"),
    key!(limits.http_read_timeout_secs, parse, "10"),
    key!(limits.max_http_connections_per_address, parse, "256"),
    key!(limits.http_write_timeout_secs, parse, "10"),
    key!(limits.offers_per_minute, parse, "30"),
    key!(limits.offer_burst, parse, "10"),
    key!(limits.ice_candidates_per_session, parse, "50"),
    key!(limits.max_caption_bytes, parse, "2048"),
    key!(limits.captions_per_second, parse, "20"),
    key!(log.format, text, "text"),
    key!(log.level, text, "info"),
];

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// `value`, or when neither the file nor the environment set it, `key`'s default from [`KEYS`]
/// (the one place a default is written).
fn or_default<T: std::str::FromStr>(key: &'static str, value: Option<T>) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    if let Some(value) = value {
        return Ok(value);
    }
    let default = KEYS
        .iter()
        .find(|row| row.file_key == key)
        .and_then(|row| row.default)
        .ok_or_else(|| invalid(key, "has no default in KEYS"))?;
    parse(default).map_err(|error| invalid(key, format!("default {default:?}: {error}")))
}

/// A number in `min..=max`, its [`KEYS`] default when unset.
/// A bound of a `_secs` key.
fn secs(seconds: u64) -> SecondsOrDuration {
    SecondsOrDuration(std::time::Duration::from_secs(seconds))
}

fn in_range<T>(key: &'static str, value: Option<T>, min: T, max: T) -> Result<T, ConfigError>
where
    T: PartialOrd + fmt::Display + Copy + std::str::FromStr,
    T::Err: fmt::Display,
{
    let value = or_default(key, value)?;
    if value < min || value > max {
        return Err(invalid(key, format!("{value} is outside {min}..={max}")));
    }
    Ok(value)
}

impl RawConfig {
    /// Parses the TOML text of a config file.
    pub fn parse(text: &str) -> Result<RawConfig, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }

    /// Applies every `SFU_*` variable of `env` except `SFU_CONFIG`; other variables are ignored,
    /// an unknown `SFU_*` name is an error (a typo would otherwise be silently ignored).
    pub fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in env {
            if !name.starts_with("SFU_") || name == CONFIG_FILE_ENV {
                continue;
            }
            let key = KEYS
                .iter()
                .find(|key| key.env_var() == name)
                .ok_or_else(|| ConfigError::UnknownEnv(name.clone()))?;
            (key.apply)(self, &value).map_err(|reason| ConfigError::Env { var: name, reason })?;
        }
        Ok(())
    }

    /// Checks every value and fills the defaults, section by section.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let dev_mode = or_default("auth.dev_mode", self.auth.dev_mode)?;
        let mut ice = self.ice.validate()?;
        // Loopback candidates only make sense when every client is on this host: allowed by
        // default only when the SFU's ICE itself is on loopback alone.
        ice.allow_loopback_candidates = self.ice.allow_loopback_candidates.unwrap_or_else(|| {
            !ice.host_addresses.is_empty() && ice.host_addresses.iter().all(IpAddr::is_loopback)
        });
        let http = self.http;
        Ok(Config {
            http_listen_address: listen_address(http.listen_address)?,
            http_tls: tls_files(http.tls_cert_file, http.tls_key_file)?,
            api_key: api_key(http.api_key)?,
            static_dir: match http.static_dir.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(dir) => Some(PathBuf::from(dir)),
            },
            public_origin: public_origin(http.public_url.as_deref())?,
            allowed_origins: allowed_origins(http.allowed_origins.unwrap_or_default())?,
            token_secret: token_secret(self.auth.token_secret, dev_mode)?,
            dev_mode,
            ice,
            limits: self.limits.validate()?,
            log: self.log.validate()?,
        })
    }
}

fn listen_address(value: Option<String>) -> Result<SocketAddr, ConfigError> {
    let listen = or_default("http.listen_address", value)?;
    listen
        .parse::<SocketAddr>()
        .map_err(|_| invalid("http.listen_address", format!("{listen:?} is not ip:port")))
}

fn api_key(value: Option<String>) -> Result<Option<Secret>, ConfigError> {
    match value {
        None => Ok(None),
        Some(key) if key.len() < MIN_API_KEY_LEN => Err(invalid(
            "http.api_key",
            format!("must be at least {MIN_API_KEY_LEN} characters"),
        )),
        Some(key) => Ok(Some(Secret::new(key))),
    }
}

fn token_secret(value: Option<String>, dev_mode: bool) -> Result<Secret, ConfigError> {
    match value {
        Some(secret) if secret.len() >= MIN_SECRET_LEN => Ok(Secret::new(secret)),
        Some(_) => Err(invalid(
            "auth.token_secret",
            format!("must be at least {MIN_SECRET_LEN} bytes"),
        )),
        None if dev_mode => Ok(Secret::new(DEV_MODE_SECRET)),
        None => Err(invalid(
            "auth.token_secret",
            "is required (or set auth.dev_mode = true for a local demo)",
        )),
    }
}

fn public_origin(url: Option<&str>) -> Result<Option<String>, ConfigError> {
    match url.map(str::trim) {
        None | Some("") => Ok(None),
        Some(url) => crate::web_security::origin_of(url)
            .map(Some)
            .ok_or_else(|| invalid("http.public_url", format!("{url:?} is not an http(s) URL"))),
    }
}

fn allowed_origins(origins: Vec<String>) -> Result<Vec<String>, ConfigError> {
    origins
        .iter()
        .map(|origin| {
            if origin == "*" {
                return Ok("*".to_owned());
            }
            crate::web_security::origin_of(origin).ok_or_else(|| {
                invalid(
                    "http.allowed_origins",
                    format!("{origin:?} is not an origin (scheme://host[:port]) or *"),
                )
            })
        })
        .collect()
}

impl RawIce {
    fn validate(&self) -> Result<IceConfig, ConfigError> {
        let host_addresses = self
            .host_addresses
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|address| {
                address.parse::<IpAddr>().map_err(|_| {
                    invalid(
                        "ice.host_addresses",
                        format!("{address:?} is not an IP address"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let host_override = match self.host_override.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(value) => Some(parse_host_override(value)?),
        };
        let stun_servers = self.stun_servers.clone().unwrap_or_default();
        for url in &stun_servers {
            check_stun_url(url)?;
        }
        let turn = turn_config(
            self.turn_urls.clone().unwrap_or_default(),
            self.turn_static_auth_secret.clone(),
            self.turn_credential_ttl_secs,
        )?;
        Ok(IceConfig {
            udp_port: or_default("ice.udp_port", self.udp_port)?,
            tcp_port: or_default("ice.tcp_port", self.tcp_port)?,
            host_addresses,
            host_override,
            stun_servers,
            turn,
            // Set from the other ICE keys when unset: see `RawConfig::validate`.
            allow_loopback_candidates: self.allow_loopback_candidates.unwrap_or(false),
            allow_link_local_candidates: or_default(
                "ice.allow_link_local_candidates",
                self.allow_link_local_candidates,
            )?,
            fast_path: or_default("ice.fast_path", self.fast_path)?,
        })
    }
}

/// Both files or neither; the files themselves are read (and checked) when the SFU starts.
fn tls_files(cert: Option<String>, key: Option<String>) -> Result<Option<TlsFiles>, ConfigError> {
    let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty()).map(PathBuf::from);
    match (given(cert), given(key)) {
        (None, None) => Ok(None),
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsFiles {
            cert_file,
            key_file,
        })),
        (Some(_), None) => Err(invalid(
            "http.tls_key_file",
            "is required when http.tls_cert_file is set",
        )),
        (None, Some(_)) => Err(invalid(
            "http.tls_cert_file",
            "is required when http.tls_key_file is set",
        )),
    }
}

/// Shortest TURN secret accepted: coturn's REST scheme credentials are only as good as it.
pub const MIN_TURN_SECRET_LEN: usize = 16;

fn turn_config(
    urls: Vec<String>,
    secret: Option<String>,
    ttl: Option<SecondsOrDuration>,
) -> Result<Option<TurnConfig>, ConfigError> {
    let secret = secret.filter(|s| !s.is_empty());
    let credential_ttl = in_range(
        "ice.turn_credential_ttl_secs",
        ttl,
        secs(60),
        secs(30 * 86_400),
    )?
    .0;
    for url in &urls {
        check_turn_url(url)?;
    }
    match (urls.is_empty(), secret) {
        (true, None) => Ok(None),
        (true, Some(_)) => Err(invalid(
            "ice.turn_urls",
            "is required when ice.turn_static_auth_secret is set",
        )),
        (false, None) => Err(invalid(
            "ice.turn_static_auth_secret",
            "is required when ice.turn_urls is set (coturn's static-auth-secret)",
        )),
        (false, Some(secret)) if secret.len() < MIN_TURN_SECRET_LEN => Err(invalid(
            "ice.turn_static_auth_secret",
            format!("must be at least {MIN_TURN_SECRET_LEN} characters"),
        )),
        (false, Some(secret)) => Ok(Some(TurnConfig {
            urls,
            static_auth_secret: Secret::new(secret),
            credential_ttl,
        })),
    }
}

/// `turn:host[:port][?transport=udp|tcp]` or `turns:...`, as browsers accept them.
fn check_turn_url(url: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| invalid("ice.turn_urls", format!("{url:?} {why}"));
    let rest = url
        .strip_prefix("turn:")
        .or_else(|| url.strip_prefix("turns:"))
        .ok_or_else(|| bad("must start with turn: or turns:"))?;
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    if let Some(query) = query {
        if !matches!(query, "transport=udp" | "transport=tcp") {
            return Err(bad("may only carry ?transport=udp or ?transport=tcp"));
        }
    }
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (address, None),
    };
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port != 0));
    if host.is_empty() || host.contains('/') || !port_ok {
        return Err(bad("is not turn:host[:port][?transport=udp|tcp]"));
    }
    Ok(())
}

fn parse_host_override(value: &str) -> Result<HostOverride, ConfigError> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(HostOverride::Ip(ip));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if value.len() <= 253 && value.split('.').all(valid_label) {
        return Ok(HostOverride::Hostname(value.to_ascii_lowercase()));
    }
    Err(invalid(
        "ice.host_override",
        format!("{value:?} is neither an IP address nor a hostname"),
    ))
}

fn check_stun_url(url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("stun:")
        .or_else(|| url.strip_prefix("stuns:"))
        .ok_or_else(|| invalid("ice.stun_servers", format!("{url:?} must start with stun:")))?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (rest, None),
    };
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port != 0));
    if host.is_empty() || !port_ok {
        return Err(invalid(
            "ice.stun_servers",
            format!("{url:?} is not stun:host[:port]"),
        ));
    }
    Ok(())
}

/// `limits.<field>` in `min..=max`, its [`KEYS`] default when unset: the key is the field's name.
/// A `_secs` field gives a [`SecondsOrDuration`], bounded by [`secs`].
macro_rules! limit {
    ($raw:ident . $field:ident, $min:expr, $max:expr) => {
        in_range(
            concat!("limits.", stringify!($field)),
            $raw.$field,
            $min,
            $max,
        )?
    };
}

impl RawLimits {
    fn validate(self) -> Result<Limits, ConfigError> {
        let messages_per_second = limit!(self.messages_per_second, 1, 10_000);
        Ok(Limits {
            max_participants_per_call: limit!(self.max_participants_per_call, 1, 10_000),
            max_message_bytes: limit!(self.max_message_bytes, 1024, 16 * 1024 * 1024),
            messages_per_second,
            message_burst: limit!(self.message_burst, 1, 100_000),
            session_queue_size: limit!(self.session_queue_size, 1, 1_000_000),
            rtp_queue_size: limit!(self.rtp_queue_size, 1, 1_000_000),
            voice_tracks_per_session: limit!(self.voice_tracks_per_session, 1, 16),
            screen_tracks_per_session: limit!(self.screen_tracks_per_session, 0, 16),
            sessions_per_token: limit!(self.sessions_per_token, 1, 1000),
            max_http_connections: limit!(self.max_http_connections, 16, 1_000_000),
            http_read_timeout: limit!(self.http_read_timeout_secs, secs(1), secs(300)).0,
            max_http_connections_per_address: limit!(
                self.max_http_connections_per_address,
                1,
                1_000_000
            ),
            http_write_timeout: limit!(self.http_write_timeout_secs, secs(1), secs(300)).0,
            offers_per_minute: limit!(self.offers_per_minute, 1, 60_000),
            offer_burst: limit!(self.offer_burst, 1, 1000),
            ice_candidates_per_session: limit!(self.ice_candidates_per_session, 1, 10_000),
            max_caption_bytes: limit!(self.max_caption_bytes, 256, 1024 * 1024),
            captions_per_second: limit!(self.captions_per_second, 1, 10_000),
        })
    }
}

impl RawLog {
    fn validate(self) -> Result<LogConfig, ConfigError> {
        let format = match or_default("log.format", self.format)?.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("{other:?} is not \"text\" or \"json\""),
                ))
            }
        };
        let level = or_default("log.level", self.level)?.trim().to_owned();
        if level.is_empty() {
            return Err(invalid("log.level", "is empty"));
        }
        Ok(LogConfig { format, level })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
