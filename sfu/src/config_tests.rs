//! Unit tests of the SFU configuration: defaults, file parsing, env overrides and validation errors.

use super::*;
use calls_protocol::env::pairs as env;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn from_text(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut raw = RawConfig::parse(text).map_err(|message| ConfigError::Parse {
        path: "test.toml".into(),
        message,
    })?;
    raw.apply_env(env(pairs))?;
    raw.validate()
}

fn invalid_key(result: Result<Config, ConfigError>) -> &'static str {
    match result {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an invalid key, got {other:?}"),
    }
}

#[test]
fn defaults_with_only_a_secret() {
    let config =
        Config::from_file_and_env(None, env(&[("SFU_AUTH_TOKEN_SECRET", SECRET)])).expect("valid");
    assert_eq!(
        config.http_listen_address,
        "0.0.0.0:8045".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.ice.udp_port, 8443);
    assert_eq!(config.ice.tcp_port, 8443);
    assert!(config.ice.host_addresses.is_empty());
    assert_eq!(config.ice.host_override, None);
    assert!(config.api_key.is_none());
    assert!(!config.dev_mode);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.limits.max_participants_per_call, 200);
}

#[test]
fn secret_is_required_outside_dev_mode() {
    assert_eq!(invalid_key(from_text("", &[])), "auth.token_secret");
    let config = from_text("[auth]\ndev_mode = true\n", &[]).expect("dev mode");
    assert_eq!(config.token_secret.expose(), DEV_MODE_SECRET);
}

#[test]
fn short_secret_and_api_key_are_refused() {
    let short = from_text("[auth]\ntoken_secret = \"short\"\n", &[]);
    assert_eq!(invalid_key(short), "auth.token_secret");
    let key = from_text(
        "",
        &[
            ("SFU_AUTH_TOKEN_SECRET", SECRET),
            ("SFU_HTTP_API_KEY", "abc"),
        ],
    );
    assert_eq!(invalid_key(key), "http.api_key");
}

#[test]
fn full_file_is_read() {
    let text = format!(
        r#"
[http]
listen_address = "127.0.0.1:9000"
api_key = "an-api-key-of-enough-length"
static_dir = "/srv/sfu"
[auth]
token_secret = "{SECRET}"
[ice]
udp_port = 0
tcp_port = 4443
host_addresses = ["10.0.0.5", "::1"]
host_override = "SFU.example.com"
stun_servers = ["stun:stun.example.com:3478", "stun:[::1]:3478"]
[limits]
max_participants_per_call = 5
messages_per_second = 10
[log]
format = "json"
level = "calls_sfu=debug"
"#
    );
    let config = from_text(&text, &[]).expect("valid file");
    assert_eq!(
        config.http_listen_address,
        "127.0.0.1:9000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.api_key.as_ref().map(Secret::expose),
        Some("an-api-key-of-enough-length")
    );
    assert_eq!(config.static_dir, Some(PathBuf::from("/srv/sfu")));
    assert_eq!(config.ice.udp_port, 0);
    assert_eq!(config.ice.tcp_port, 4443);
    assert_eq!(config.ice.host_addresses.len(), 2);
    assert_eq!(
        config.ice.host_override,
        Some(HostOverride::Hostname("sfu.example.com".into()))
    );
    assert_eq!(config.ice.stun_servers.len(), 2);
    assert_eq!(config.limits.max_participants_per_call, 5);
    assert_eq!(config.limits.messages_per_second, 10);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "calls_sfu=debug");
}

#[test]
fn env_overrides_the_file() {
    let text = format!("[auth]\ntoken_secret = \"{SECRET}\"\n[ice]\nudp_port = 1000\n");
    let config = from_text(
        &text,
        &[
            ("SFU_ICE_UDP_PORT", "2000"),
            ("SFU_ICE_HOST_ADDRESSES", "10.0.0.1, 10.0.0.2"),
            ("SFU_ICE_HOST_OVERRIDE", "203.0.113.7"),
            ("PATH", "/usr/bin"),
            ("SFU_CONFIG", "/etc/calls-sfu.toml"),
        ],
    )
    .expect("valid");
    assert_eq!(config.ice.udp_port, 2000);
    assert_eq!(config.ice.host_addresses.len(), 2);
    assert_eq!(
        config.ice.host_override,
        Some(HostOverride::Ip("203.0.113.7".parse::<IpAddr>().unwrap()))
    );
}

#[test]
fn unknown_file_keys_and_env_vars_are_refused() {
    let result = from_text("[ice]\nudp_prot = 1\n", &[]);
    assert!(
        matches!(&result, Err(ConfigError::Parse { message, .. }) if message.contains("udp_prot")),
        "{result:?}"
    );
    let result = from_text("", &[("SFU_ICE_UDP_PROT", "1")]);
    assert!(matches!(result, Err(ConfigError::UnknownEnv(name)) if name == "SFU_ICE_UDP_PROT"));
}

#[test]
fn bad_values_name_their_key() {
    let secret = ("SFU_AUTH_TOKEN_SECRET", SECRET);
    let result = from_text("", &[secret, ("SFU_ICE_UDP_PORT", "70000")]);
    assert!(matches!(result, Err(ConfigError::Env { var, .. }) if var == "SFU_ICE_UDP_PORT"));
    let cases = [
        ("SFU_HTTP_LISTEN_ADDRESS", "nope", "http.listen_address"),
        (
            "SFU_ICE_HOST_ADDRESSES",
            "10.0.0.1,bad",
            "ice.host_addresses",
        ),
        ("SFU_ICE_HOST_OVERRIDE", "bad host!", "ice.host_override"),
        ("SFU_ICE_STUN_SERVERS", "http://x", "ice.stun_servers"),
        (
            "SFU_ICE_STUN_SERVERS",
            "stun:host:99999",
            "ice.stun_servers",
        ),
        (
            "SFU_LIMITS_MAX_PARTICIPANTS_PER_CALL",
            "0",
            "limits.max_participants_per_call",
        ),
        (
            "SFU_LIMITS_MAX_MESSAGE_BYTES",
            "10",
            "limits.max_message_bytes",
        ),
        ("SFU_LOG_FORMAT", "xml", "log.format"),
        ("SFU_LOG_LEVEL", " ", "log.level"),
    ];
    for (var, value, key) in cases {
        assert_eq!(
            invalid_key(from_text("", &[secret, (var, value)])),
            key,
            "{var}={value}"
        );
    }
}

#[test]
fn missing_file_is_a_read_error() {
    let result = Config::from_file_and_env(Some(Path::new("/nonexistent/sfu.toml")), env(&[]));
    assert!(matches!(result, Err(ConfigError::Read { .. })));
}

#[test]
fn file_on_disk_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sfu.toml");
    std::fs::write(&path, format!("[auth]\ntoken_secret = \"{SECRET}\"\n")).expect("write");
    let config = Config::from_file_and_env(Some(&path), env(&[])).expect("valid");
    assert_eq!(config.token_secret.expose(), SECRET);
}

#[test]
fn secrets_are_not_in_debug_output() {
    let mut config = Config::for_local_test(SECRET);
    config.api_key = Some(Secret::new("an-api-key-of-enough-length"));
    let debug = format!("{config:?}");
    assert!(!debug.contains(SECRET));
    assert!(!debug.contains("an-api-key"));
}

#[test]
fn every_key_is_documented() {
    let docs = include_str!("../../docs/sfu-config.md");
    for key in KEYS {
        assert!(
            docs.contains(&format!("| `{}` | `{}` |", key.file_key, key.env_var())),
            "{} undocumented",
            key.file_key
        );
    }
    assert_eq!(
        KEYS.len(),
        docs.lines().filter(|line| line.starts_with("| `")).count()
    );
}

/// Issue 21: the hardening settings' defaults, the loopback-candidate rule and the origin checks.
#[test]
fn hardening_settings_default_and_validate() {
    let secret = ("SFU_AUTH_TOKEN_SECRET", SECRET);
    let config = from_text("", &[secret]).expect("defaults");
    assert_eq!(config.limits.max_http_connections_per_address, 256);
    assert_eq!(
        config.limits.http_write_timeout,
        std::time::Duration::from_secs(10)
    );
    assert_eq!(
        (config.limits.offers_per_minute, config.limits.offer_burst),
        (30, 10)
    );
    assert_eq!(config.limits.ice_candidates_per_session, 50);
    assert_eq!(config.limits.max_caption_bytes, 2048);
    assert_eq!(config.limits.captions_per_second, 20);
    assert!(!config.ice.allow_link_local_candidates);
    assert!(
        !config.ice.allow_loopback_candidates,
        "ICE on every interface: loopback candidates refused"
    );
    assert!(config.public_origin.is_none() && config.allowed_origins.is_empty());

    let loopback_only = from_text("", &[secret, ("SFU_ICE_HOST_ADDRESSES", "127.0.0.1")]).unwrap();
    assert!(loopback_only.ice.allow_loopback_candidates);
    let forced = from_text(
        "",
        &[
            secret,
            ("SFU_ICE_HOST_ADDRESSES", "127.0.0.1"),
            ("SFU_ICE_ALLOW_LOOPBACK_CANDIDATES", "false"),
        ],
    )
    .unwrap();
    assert!(!forced.ice.allow_loopback_candidates);

    let origins = from_text(
        "[http]\npublic_url = \"https://Calls.Example.com/join\"\nallowed_origins = [\"http://10.0.0.5:8045\", \"*\"]\n",
        &[secret],
    )
    .unwrap();
    assert_eq!(
        origins.public_origin.as_deref(),
        Some("https://calls.example.com")
    );
    assert_eq!(origins.allowed_origins, ["http://10.0.0.5:8045", "*"]);
    assert_eq!(
        invalid_key(from_text(
            "",
            &[secret, ("SFU_HTTP_PUBLIC_URL", "calls.example.com")]
        )),
        "http.public_url"
    );
    assert_eq!(
        invalid_key(from_text(
            "",
            &[secret, ("SFU_HTTP_ALLOWED_ORIGINS", "ftp://x")]
        )),
        "http.allowed_origins"
    );
    assert_eq!(
        invalid_key(from_text("", &[secret, ("SFU_LIMITS_OFFER_BURST", "0")])),
        "limits.offer_burst"
    );
}

/// The `_secs` keys take the stack's duration format as well as bare seconds, and their
/// defaults come from `KEYS`.
#[test]
fn seconds_keys_take_durations_and_defaults_come_from_keys() {
    let secret = ("SFU_AUTH_TOKEN_SECRET", SECRET);
    let config = from_text(
        "[limits]\nhttp_write_timeout_secs = \"1m\"\n[ice]\nturn_credential_ttl_secs = 3600\n",
        &[secret, ("SFU_LIMITS_HTTP_READ_TIMEOUT_SECS", "30s")],
    )
    .expect("valid");
    assert_eq!(
        config.limits.http_read_timeout,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(
        config.limits.http_write_timeout,
        std::time::Duration::from_secs(60)
    );
    let too_long = from_text("[limits]\nhttp_read_timeout_secs = \"10m\"\n", &[secret]);
    assert_eq!(invalid_key(too_long), "limits.http_read_timeout_secs");
    let bad = from_text("", &[secret, ("SFU_LIMITS_HTTP_READ_TIMEOUT_SECS", "soon")]);
    assert!(matches!(bad, Err(ConfigError::Env { .. })), "{bad:?}");

    let defaults = from_text("", &[secret]).expect("defaults");
    for key in KEYS {
        if let Some(default) = key.default {
            let set = from_text("", &[secret, (key.env_var().as_str(), default)]).expect(default);
            assert_eq!(set, defaults, "{} = {default} is its default", key.file_key);
        }
    }
}
