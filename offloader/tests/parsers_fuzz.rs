//! Property tests over every parser of the offloader that takes network input: the JSON bodies
//! of job creation, registration, login and job status reports (parsed and validated exactly as
//! the routes do), `Range` headers, artifact names, `Authorization` headers, runner image
//! references and webhook URLs. Each property feeds generated inputs — random bytes, random
//! JSON, and near-valid inputs with one thing wrong — and checks that nothing panics and that
//! whatever is accepted satisfies the documented rules, judged by an oracle written separately
//! from the parser.
//!
//! Issue 21 added a case per finding that has a parser or a pure decision: `input_data` size,
//! `GET /jobs` pagination queries, the failure-limit key, the fixed counter list (in the status
//! property), concurrent artifact reservations, NAT64/Teredo webhook addresses and run-slot
//! admission. (Slow readers, token rotation, unregistering and the compose file are covered
//! end to end in `tests/tests/offloader_hardening.rs`.)
//!
//! Case count: proptest's `PROPTEST_CASES` (default 256 per property, the smoke run of
//! `cargo test`). The long run (17 properties): `PROPTEST_CASES=60000 cargo test --release -p
//! calls-offloader --test parsers_fuzz` = 1.02 million cases (docs/offloader.md, "Tests").

use std::collections::BTreeMap;

use base64::Engine;
use calls_offloader::api::jobs::{validate_request, MAX_INPUT_KEYS};
use calls_offloader::api::{
    parse_json, validate_registration, validate_status_update, MAX_COUNTERS,
};
use calls_offloader::auth::{parse_authorization, Credentials};
use calls_offloader::files::{parse_range, validate_artifact_name};
use calls_offloader::image_ref::is_valid_reference;
use calls_offloader::{webhook, AppState, Config};
use calls_protocol::jobs::{
    CreateJobRequest, JobStatusUpdate, JobType, LoginRequest, RegisterRequest, WebhookConfig,
};
use calls_protocol::{job_env, job_metrics};
use proptest::prelude::*;
use serde_json::{json, Value};

fn state() -> &'static (AppState, tempfile::TempDir) {
    static STATE: std::sync::OnceLock<(AppState, tempfile::TempDir)> = std::sync::OnceLock::new();
    STATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = vec![
            (
                "OFFLOADER_STORE_DATA_DIR".to_string(),
                dir.path().display().to_string(),
            ),
            (
                "OFFLOADER_JOBS_IMAGE_ALLOWLIST".to_string(),
                "extra:1".to_string(),
            ),
            (
                "OFFLOADER_RUNNERS_RECORDING_IMAGE_ALLOWLIST".to_string(),
                "rec-extra:2".to_string(),
            ),
        ];
        let config = Config::load("", env).expect("config");
        (AppState::new(config).expect("state"), dir)
    })
}

/// Text from an alphabet rich in the characters parsers care about.
fn tricky_text(max: usize) -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        6 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('A', 'Z'),
        2 => proptest::char::range('0', '9'),
        4 => proptest::sample::select(vec![
            '.', '_', '-', '/', '\\', ':', '@', '?', '#', '%', ' ', '\t', '\n', '\0', '[', ']',
            '=', ',', '+', '*', '"', '\'', 'é', 'ß', '\u{202e}', '\u{ff0f}', '😀',
        ]),
        1 => any::<char>(),
    ];
    proptest::collection::vec(chars, 0..max).prop_map(|c| c.into_iter().collect())
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        tricky_text(24).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(tricky_text(12), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn env_safe(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 128
}

/// A job body near the valid ones: each field is valid or broken in one of a few ways.
fn job_body() -> impl Strategy<Value = Value> {
    let job_type = prop_oneof![
        4 => Just(json!("recording")),
        4 => Just(json!("transcribing")),
        1 => json_value(),
    ];
    let runner = prop_oneof![
        3 => Just(None),
        1 => Just(Some(json!("calls-recorder:latest"))),
        1 => Just(Some(json!("calls-transcriber:latest"))),
        1 => Just(Some(json!("extra:1"))),
        1 => Just(Some(json!("rec-extra:2"))),
        1 => Just(Some(json!("../containers/x/json?"))),
        1 => tricky_text(40).prop_map(|t| Some(json!(t))),
    ];
    let duration = prop_oneof![
        3 => Just(None),
        2 => (0u64..30_000).prop_map(|n| Some(json!(n))),
        1 => any::<i64>().prop_map(|n| Some(json!(n))),
        1 => json_value().prop_map(Some),
    ];
    let key = prop_oneof![
        4 => "[a-z_][a-z0-9_]{0,10}",
        2 => "[A-Z_][A-Z0-9_]{0,10}",
        1 => Just("JOB_TOKEN".to_string()),
        1 => Just("job_id".to_string()),
        1 => Just("call_id".to_string()),
        1 => Just("CALL_ID".to_string()),
        1 => tricky_text(16),
    ];
    let value = prop_oneof![
        4 => tricky_text(20).prop_map(Value::String),
        1 => json_value(),
    ];
    let input = proptest::collection::btree_map(key, value, 0..8);
    (
        job_type,
        runner,
        duration,
        input,
        any::<bool>(),
        json_value(),
    )
        .prop_map(|(job_type, runner, duration, input, extra_field, extra)| {
            let mut body = serde_json::Map::new();
            body.insert("type".into(), job_type);
            if let Some(runner) = runner {
                body.insert("runner".into(), runner);
            }
            if let Some(duration) = duration {
                body.insert("max_duration_sec".into(), duration);
            }
            body.insert(
                "input_data".into(),
                Value::Object(input.into_iter().collect()),
            );
            if extra_field {
                body.insert("colour".into(), extra);
            }
            Value::Object(body)
        })
}

/// What an accepted job body must satisfy (docs/offloader.md, "input_data" and "Containers").
fn job_oracle(request: &CreateJobRequest, accepted_runner: &str, max_duration: u64) {
    let config = &state().0.config;
    let runner = config.runner(request.job_type);
    let allowed = accepted_runner == runner.image
        || runner.image_allowlist.iter().any(|i| i == accepted_runner)
        || config
            .jobs
            .image_allowlist
            .iter()
            .any(|i| i == accepted_runner);
    assert!(
        allowed,
        "runner {accepted_runner:?} accepted for {:?}",
        request.job_type
    );
    assert!(is_valid_reference(accepted_runner));
    assert!((1..=runner.max_duration.as_secs()).contains(&max_duration));
    assert!(request.input_data.len() <= MAX_INPUT_KEYS);
    let mut upper = std::collections::BTreeSet::new();
    for (key, value) in &request.input_data {
        assert!(env_safe(key), "key {key:?} accepted");
        assert!(
            !job_env::RESERVED.contains(&key.to_ascii_uppercase().as_str()),
            "{key}"
        );
        assert!(
            upper.insert(key.to_ascii_uppercase()),
            "case twin {key:?} accepted"
        );
        assert!(!value.is_null(), "null value of {key:?} accepted");
    }
}

fn client_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn registration_body() -> impl Strategy<Value = Value> {
    let id = prop_oneof![3 => "[A-Za-z0-9._-]{1,64}", 1 => tricky_text(70)];
    let key = prop_oneof![
        3 => "[ -~]{32,256}",
        1 => tricky_text(40),
        1 => "[a-z]{257,300}",
    ];
    let webhook = prop_oneof![
        2 => Just(None),
        1 => ("https://[a-z]{1,10}\\.example\\.com/[a-z]{0,8}", "[a-z0-9]{16,20}")
            .prop_map(|(url, secret)| Some(json!({"url": url, "secret": secret}))),
        1 => (
            prop_oneof![
                Just("http://127.0.0.1/x".to_string()),
                Just("http://169.254.169.254/".to_string()),
                Just("http://[::1]:80/".to_string()),
                Just("http://2130706433/".to_string()),
                Just("ftp://example.com/".to_string()),
                Just("http://user:pw@example.com/".to_string()),
                tricky_text(40),
            ],
            "[a-z0-9]{0,20}",
        )
            .prop_map(|(url, secret)| Some(json!({"url": url, "secret": secret}))),
        1 => json_value().prop_map(Some),
    ];
    (id, key, webhook).prop_map(|(id, key, webhook)| {
        let mut body = json!({"clientID": id, "authKey": key});
        if let Some(webhook) = webhook {
            body["webhook"] = webhook;
        }
        body
    })
}

fn webhook_oracle(webhook: &WebhookConfig) {
    let url = reqwest::Url::parse(webhook.url.trim()).expect("an accepted URL parses");
    assert!(matches!(url.scheme(), "http" | "https"), "{}", webhook.url);
    assert!(url.username().is_empty() && url.password().is_none());
    let host = url.host_str().expect("an accepted URL has a host");
    let literal: Option<std::net::IpAddr> = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    if let Some(ip) = literal {
        assert!(webhook::is_public_address(ip), "private {ip} accepted");
    }
    assert!(webhook.secret.expose().chars().count() >= 16);
}

fn status_body() -> impl Strategy<Value = Value> {
    let status = prop_oneof![
        4 => proptest::sample::select(vec!["started", "progress", "failed", "finished"])
            .prop_map(|s| json!(s)),
        1 => json_value(),
    ];
    let name = prop_oneof![
        4 => proptest::sample::select(job_metrics::JOB_COUNTERS.to_vec()).prop_map(str::to_string),
        2 => "[A-Za-z_][A-Za-z0-9_]{0,70}",
        1 => tricky_text(20),
    ];
    let number = prop_oneof![
        4 => (0.0f64..1e9).prop_map(|f| json!(f)),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => json_value(),
    ];
    let counters = proptest::collection::btree_map(name, number, 0..40);
    (status, tricky_text(30), counters).prop_map(|(status, message, counters)| {
        json!({"status": status, "message": message,
               "counters": Value::Object(counters.into_iter().collect())})
    })
}

fn counter_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `bytes=` ranges near the valid ones, and arbitrary text.
fn range_header() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        3 => (0u64..2000).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => Just(String::new()),
        1 => tricky_text(6),
        1 => Just("18446744073709551616".to_string()),
    ];
    prop_oneof![
        4 => (
            prop_oneof![Just("bytes="), Just("bytes= "), Just("BYTES="), Just("items="), Just("")],
            number.clone(),
            prop_oneof![Just("-"), Just(""), Just("--"), Just(" - ")],
            number,
            prop_oneof![Just(""), Just(",0-1"), Just(" "), Just(";x")],
        )
            .prop_map(|(unit, a, dash, b, tail)| format!("{unit}{a}{dash}{b}{tail}")),
        1 => tricky_text(30),
    ]
}

proptest! {
    #[test]
    fn job_bodies_never_panic_and_accept_only_valid_jobs(body in job_body()) {
        let bytes = serde_json::to_vec(&body).expect("serializable");
        if let Ok(request) = parse_json::<CreateJobRequest>(&bytes) {
            if let Ok(record) = validate_request(&state().0, "fuzz", "owner", request.clone()) {
                job_oracle(&request, &record.runner, record.max_duration_sec);
            }
        }
    }

    #[test]
    fn random_bytes_into_every_json_body_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_json::<CreateJobRequest>(&bytes);
        let _ = parse_json::<RegisterRequest>(&bytes).map(|r| validate_registration(&r, false));
        let _ = parse_json::<LoginRequest>(&bytes);
        let _ = parse_json::<JobStatusUpdate>(&bytes).map(|u| validate_status_update(&u));
    }

    #[test]
    fn random_json_into_every_body_never_panics(value in json_value()) {
        let bytes = serde_json::to_vec(&value).expect("serializable");
        if let Ok(request) = parse_json::<CreateJobRequest>(&bytes) {
            if let Ok(record) = validate_request(&state().0, "fuzz", "owner", request.clone()) {
                job_oracle(&request, &record.runner, record.max_duration_sec);
            }
        }
        if let Ok(request) = parse_json::<RegisterRequest>(&bytes) {
            let _ = validate_registration(&request, false);
        }
        if let Ok(update) = parse_json::<JobStatusUpdate>(&bytes) {
            let _ = validate_status_update(&update);
        }
    }

    #[test]
    fn registrations_accept_only_valid_clients(body in registration_body(), allow_private in any::<bool>()) {
        let bytes = serde_json::to_vec(&body).expect("serializable");
        if let Ok(request) = parse_json::<RegisterRequest>(&bytes) {
            if validate_registration(&request, allow_private).is_ok() {
                prop_assert!(client_id_ok(&request.client_id), "{:?}", request.client_id);
                prop_assert!((32..=256).contains(&request.auth_key.chars().count()));
                if let Some(webhook) = &request.webhook {
                    if allow_private {
                        let url = reqwest::Url::parse(webhook.url.trim()).expect("parses");
                        prop_assert!(matches!(url.scheme(), "http" | "https"));
                    } else {
                        webhook_oracle(webhook);
                    }
                }
            }
        }
        // Login bodies share the field names: they parse or fail cleanly.
        let _ = parse_json::<LoginRequest>(&bytes);
    }

    #[test]
    fn status_reports_accept_only_valid_counters(body in status_body()) {
        let bytes = serde_json::to_vec(&body).expect("serializable");
        if let Ok(update) = parse_json::<JobStatusUpdate>(&bytes) {
            if validate_status_update(&update).is_ok() {
                prop_assert!(update.counters.len() <= MAX_COUNTERS);
                for (name, value) in &update.counters {
                    prop_assert!(counter_name_ok(name), "{name:?}");
                    prop_assert!(job_metrics::is_job_counter(name), "made-up counter {name:?} accepted");
                    prop_assert!(value.is_finite() && *value >= 0.0, "{value}");
                }
            }
        }
    }

    #[test]
    fn ranges_stay_inside_the_file(header in range_header(), size in prop_oneof![Just(0u64), 1u64..5000, any::<u64>()]) {
        if let Ok(Some((start, end))) = parse_range(Some(&header), size) {
            prop_assert!(start <= end && end < size, "{header:?} on {size}: {start}-{end}");
        }
    }

    #[test]
    fn satisfiable_ranges_are_served_exactly(size in 1u64..1_000_000, a in 0u64..1_000_000, len in 0u64..1_000_000) {
        let start = a % size;
        let end = (start + len).min(size - 1);
        prop_assert_eq!(
            parse_range(Some(&format!("bytes={start}-{end}")), size).expect("satisfiable"),
            Some((start, end))
        );
        let suffix = len.max(1);
        prop_assert_eq!(
            parse_range(Some(&format!("bytes=-{suffix}")), size).expect("satisfiable"),
            Some((size.saturating_sub(suffix), size - 1))
        );
    }

    #[test]
    fn artifact_names_stay_plain_file_names(name in prop_oneof![tricky_text(140), "[A-Za-z0-9._-]{1,130}"]) {
        let expected = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        prop_assert_eq!(validate_artifact_name(&name).is_ok(), expected, "{:?}", name);
    }

    #[test]
    fn authorization_headers_parse_only_what_they_say(
        header in prop_oneof![tricky_text(60), "(Basic|basic|Bearer|BEARER) [A-Za-z0-9+/=]{0,40}"],
        id in "[A-Za-z0-9._-]{1,20}",
        key in "[ -~]{0,40}",
    ) {
        match parse_authorization(Some(&header)) {
            Some(Credentials::Bearer(token)) => {
                prop_assert!(header.trim().to_ascii_lowercase().starts_with("bearer "));
                prop_assert!(!token.is_empty() && header.contains(token.as_str()));
            }
            Some(Credentials::Basic { client_id, auth_key }) => {
                prop_assert!(header.trim().to_ascii_lowercase().starts_with("basic "));
                prop_assert!(!client_id.contains(':'));
                let value = header.trim()[6..].trim();
                let decoded = base64::engine::general_purpose::STANDARD.decode(value).expect("decodes");
                prop_assert_eq!(decoded, format!("{client_id}:{auth_key}").into_bytes());
            }
            None => {}
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{key}"));
        prop_assert_eq!(
            parse_authorization(Some(&format!("Basic {encoded}"))),
            Some(Credentials::Basic { client_id: id, auth_key: key })
        );
    }

    #[test]
    fn image_references_are_docker_grammar_only(
        text in prop_oneof![tricky_text(60), "[a-z0-9._/:@-]{1,60}"],
        valid in (
            proptest::option::of("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z]{2,5}){1,2}(:[0-9]{1,5})?"),
            proptest::collection::vec("[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}", 1..4),
            proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            proptest::option::of("[0-9a-f]{32,64}"),
        ),
    ) {
        if is_valid_reference(&text) {
            prop_assert!(!text.is_empty() && !text.starts_with('/') && !text.contains(".."));
            prop_assert!(!text.contains("//"));
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/:@[]".contains(&b)), "{text:?}");
        }
        let (domain, path, tag, digest) = valid;
        // Without a domain a first component holding '.' would be read as one (Docker's rule),
        // so the generated path then starts with a plain component.
        let mut reference = path.join("/");
        reference = match domain {
            Some(domain) => format!("{domain}/{reference}"),
            None => format!("library/{reference}"),
        };
        if let Some(tag) = tag {
            reference = format!("{reference}:{tag}");
        }
        if let Some(digest) = digest {
            reference = format!("{reference}@sha256:{digest}");
        }
        prop_assert!(is_valid_reference(&reference), "{reference:?}");
    }

    #[test]
    fn webhook_urls_accept_only_public_http(url in prop_oneof![
        tricky_text(50),
        "(http|https|ftp|file)://[a-z0-9.:\\[\\]@]{0,30}/[a-z]{0,5}",
        "http://(127|10|169|192|172|100|0|224)\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?/",
        "http://\\[(::1|fe80::[0-9a-f]{1,4}|fd[0-9a-f]{2}::1|::ffff:(127|10)\\.0\\.0\\.1|2606:4700::1)\\]/",
    ]) {
        let webhook = WebhookConfig { url, secret: "0123456789abcdef".into() };
        if webhook::validate(&webhook, false).is_ok() {
            webhook_oracle(&webhook);
        }
    }
}

#[test]
fn the_oracles_agree_with_known_answers() {
    // Guards against an oracle that accepts everything: known inputs go the known way.
    let state = &state().0;
    let ok = |body: Value| {
        let request: CreateJobRequest = serde_json::from_value(body).expect("parses");
        validate_request(state, "c", "o", request).is_ok()
    };
    assert!(ok(
        json!({"type": "recording", "input_data": {"call_id": "x"}})
    ));
    assert!(!ok(
        json!({"type": "recording", "input_data": {"call_id": "x", "CALL_ID": "y"}})
    ));
    assert!(!ok(
        json!({"type": "recording", "runner": "calls-transcriber:latest"})
    ));
    assert!(ok(json!({"type": "recording", "runner": "rec-extra:2"})));
    assert!(!ok(
        json!({"type": "transcribing", "runner": "rec-extra:2"})
    ));
    assert!(ok(json!({"type": "transcribing", "runner": "extra:1"})));
    let mut counters = BTreeMap::new();
    counters.insert("seconds_recorded".to_string(), 1.0);
    let update = JobStatusUpdate {
        status: calls_protocol::jobs::JobStatusKind::Progress,
        message: None,
        error: None,
        counters,
        histograms: BTreeMap::new(),
    };
    assert!(validate_status_update(&update).is_ok());
    assert!(!client_id_ok(""));
    assert!(is_valid_reference("calls-recorder:latest"));
    let _ = JobType::ALL;
}

// ---- issue 21 -------------------------------------------------------------------------------

/// Job bodies whose `input_data` is near and over `jobs.max_input_bytes` (16 KB).
fn big_input_body() -> impl Strategy<Value = Value> {
    let sizes = proptest::collection::vec(0usize..12_000, 0..4);
    sizes.prop_map(|sizes| {
        let input: serde_json::Map<String, Value> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("notes_{i}"), json!("é".repeat(*n / 2))))
            .collect();
        json!({"type": "recording", "input_data": input})
    })
}

/// `GET /jobs` query strings: the three parameters with near-valid values, and junk.
fn list_query() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        3 => (0i64..1000).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => tricky_text(8),
    ];
    let pair = prop_oneof![
        2 => value.clone().prop_map(|v| format!("limit={v}")),
        2 => value.prop_map(|v| format!("cursor={v}")),
        1 => proptest::sample::select(vec!["queued", "running", "bogus", ""]).prop_map(|v| format!("state={v}")),
        1 => tricky_text(12),
    ];
    proptest::collection::vec(pair, 0..4).prop_map(|pairs| pairs.join("&"))
}

fn ipv4() -> impl Strategy<Value = std::net::Ipv4Addr> {
    prop_oneof![
        1 => any::<u32>().prop_map(std::net::Ipv4Addr::from),
        1 => proptest::sample::select(vec![
            [127u8, 0, 0, 1], [10, 0, 0, 1], [172, 16, 0, 1], [192, 168, 1, 1],
            [169, 254, 169, 254], [100, 64, 0, 1], [0, 0, 0, 0],
        ]).prop_map(std::net::Ipv4Addr::from),
    ]
}

/// One step against an artifact quota: start an upload (declared size or none) or finish one.
#[derive(Debug, Clone)]
enum UploadStep {
    Start { name: u8, declared: Option<u64> },
    Finish(usize),
}

fn upload_steps() -> impl Strategy<Value = Vec<UploadStep>> {
    let step = prop_oneof![
        3 => (0u8..12, proptest::option::of(0u64..700))
            .prop_map(|(name, declared)| UploadStep::Start { name, declared }),
        1 => (0usize..8).prop_map(UploadStep::Finish),
    ];
    proptest::collection::vec(step, 0..40)
}

proptest! {
    #[test]
    fn input_data_over_the_byte_limit_is_refused(body in big_input_body()) {
        let bytes = serde_json::to_vec(&body).expect("serializable");
        let request: CreateJobRequest = parse_json(&bytes).expect("a valid shape");
        let size = serde_json::to_vec(&request.input_data).expect("serializable").len();
        let result = validate_request(&state().0, "fuzz", "owner", request);
        if size > state().0.config.jobs.max_input_bytes {
            prop_assert!(
                matches!(result, Err(calls_offloader::Error::PayloadTooLarge(_))),
                "{} bytes: {:?}", size, result.map(|r| r.id)
            );
        }
    }

    #[test]
    fn list_queries_accept_only_bounded_pages(query in list_query()) {
        use calls_offloader::api::jobs::{parse_list_query, MAX_PAGE_SIZE};
        if let Ok(parsed) = parse_list_query(Some(&query)) {
            prop_assert!((1..=MAX_PAGE_SIZE).contains(&parsed.limit), "{query:?}");
            prop_assert!(parsed.after >= 0, "{query:?}");
        }
    }

    #[test]
    fn failure_keys_never_merge_two_pairs(
        a in tricky_text(12), b in tricky_text(12),
        x in proptest::option::of(ipv4()), y in proptest::option::of(ipv4()),
    ) {
        use calls_offloader::auth::keys::failure_key;
        let (x, y) = (x.map(std::net::IpAddr::V4), y.map(std::net::IpAddr::V4));
        prop_assert_eq!(failure_key(&a, x) == failure_key(&b, y), a == b && x == y);
    }

    #[test]
    fn addresses_tunnelling_ipv4_are_never_public(v4 in ipv4(), tail in any::<u64>(), low in any::<u16>()) {
        use std::net::{IpAddr, Ipv6Addr};
        let [a, b, c, d] = v4.octets();
        let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        let t = |i: u32| (tail >> (16 * i)) as u16;
        // Local-use NAT64 and Teredo: refused whatever they carry.
        for ip in [
            Ipv6Addr::new(0x64, 0xff9b, 1, t(0), t(1), t(2), hi, lo),
            Ipv6Addr::new(0x2001, 0, t(0), t(1), t(2), t(3), !hi, !lo),
            Ipv6Addr::new(0x2002, hi, lo, t(0), t(1), t(2), t(3), low),
        ] {
            prop_assert!(!webhook::is_public_address(IpAddr::V6(ip)), "{ip}");
        }
        // The well-known NAT64 prefix: judged by the IPv4 address it carries.
        let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo);
        prop_assert_eq!(
            webhook::is_public_address(IpAddr::V6(nat64)),
            webhook::is_public_address(IpAddr::V4(v4)),
            "{}", nat64
        );
    }

    #[test]
    fn artifact_reservations_never_overcommit(steps in upload_steps()) {
        use calls_offloader::quota::{ArtifactLimits, UploadQuota};
        let limits = ArtifactLimits { max_count: 4, max_total_bytes: 1500, max_one_bytes: 600 };
        let quota = std::sync::Arc::new(UploadQuota::default());
        let mut open = Vec::new();
        for step in steps {
            match step {
                UploadStep::Start { name, declared } => {
                    if let Ok(reservation) =
                        quota.reserve("job", &format!("a{name}"), || Ok(Vec::new()), declared, limits)
                    {
                        prop_assert!(reservation.limit <= limits.max_one_bytes);
                        if let Some(declared) = declared {
                            prop_assert_eq!(reservation.limit, declared);
                        }
                        open.push(reservation);
                    }
                }
                UploadStep::Finish(i) => {
                    if i < open.len() {
                        open.remove(i);
                    }
                }
            }
            prop_assert!(open.len() <= limits.max_count);
            prop_assert!(open.iter().map(|r| r.limit).sum::<u64>() <= limits.max_total_bytes);
        }
    }

    #[test]
    fn admission_fills_free_slots_and_respects_run_shares(
        active in proptest::collection::vec(0u8..4, 0..6),
        queued in proptest::collection::vec(0u8..4, 0..10),
        max in 1usize..6,
        share in 1usize..4,
    ) {
        use calls_offloader::scheduler::{admit, Waiting};
        let owners: Vec<String> = active.iter().map(|o| format!("c{o}")).collect();
        let owner_refs: Vec<&str> = owners.iter().map(String::as_str).collect();
        let waiting: Vec<Waiting> = queued
            .iter()
            .enumerate()
            .map(|(i, o)| Waiting { job_id: format!("j{i}"), owner: format!("c{o}") })
            .collect();
        let started = admit(&owner_refs, max, share, &waiting);
        let free = max.saturating_sub(owners.len());
        // Work-conserving: every free slot is used while anything waits.
        prop_assert_eq!(started.len(), free.min(waiting.len()));
        // Replay: a job of a client at its share starts only when no job of a client under
        // its share was waiting at that moment.
        let mut held: BTreeMap<String, usize> = BTreeMap::new();
        for owner in &owners {
            *held.entry(owner.clone()).or_default() += 1;
        }
        let mut left = waiting.clone();
        for id in &started {
            let pos = left.iter().position(|w| &w.job_id == id).expect("started a queued job");
            let job = left.remove(pos);
            let mine = held.get(&job.owner).copied().unwrap_or(0);
            if mine >= share {
                prop_assert!(
                    left.iter().all(|w| held.get(&w.owner).copied().unwrap_or(0) >= share),
                    "{} started over its share while another client waited under its own", id
                );
            }
            *held.entry(job.owner).or_default() += 1;
        }
    }
}
