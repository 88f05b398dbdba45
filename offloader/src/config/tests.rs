//! Config tests: defaults, env overrides, clear errors, and the docs table staying complete.
use super::*;
use calls_protocol::env::pairs as env;

#[test]
fn defaults_are_safe_and_not_under_tmp() {
    let config = Config::load("", env(&[])).expect("defaults validate");
    assert_eq!(config.api.listen_address.port(), 4545);
    assert_eq!(config.jobs.max_concurrent, 2);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/calls-offloader"));
    assert_eq!(
        config.jobs.failed_job_retention,
        Duration::from_secs(30 * 86400)
    );
    assert!(config.api.admin_secret.is_none());
    assert!(!config.api.self_registration);
}

#[test]
fn env_overrides_win_over_the_file() {
    let file = "[jobs]\nmax_concurrent = 3\n[runners.recording]\nimage = \"a:1\"\n";
    let config = Config::load(
        file,
        env(&[
            ("OFFLOADER_JOBS_MAX_CONCURRENT", "5"),
            ("OFFLOADER_JOBS_IMAGE_ALLOWLIST", "x:1, y:2"),
            ("OFFLOADER_API_SELF_REGISTRATION", "true"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .expect("valid");
    assert_eq!(config.jobs.max_concurrent, 5);
    assert_eq!(config.runner(JobType::Recording).image, "a:1");
    assert_eq!(config.jobs.image_allowlist, vec!["x:1", "y:2"]);
    assert!(config.api.self_registration);
    assert!(config.image_allowed("y:2") && config.image_allowed("a:1"));
    assert!(config.image_allowed_for(JobType::Recording, "a:1"));
    assert!(
        !config.image_allowed_for(JobType::Transcribing, "a:1"),
        "another type's default image is not allowed"
    );
    assert!(config.image_allowed_for(JobType::Transcribing, "y:2"));
    assert!(!config.image_allowed("evil:latest"));
}

#[test]
fn bad_settings_give_clear_errors() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "[jobs]\nmax_concurrnt = 3\n",
            &[],
            "unknown field `max_concurrnt`",
        ),
        (
            "",
            &[("OFFLOADER_JOBS_MAX_CONCURENT", "3")],
            "unknown environment override",
        ),
        (
            "",
            &[("OFFLOADER_JOBS_MAX_CONCURRENT", "two")],
            "is not an integer",
        ),
        ("", &[("OFFLOADER_JOBS_MAX_CONCURRENT", "0")], "at least 1"),
        (
            "",
            &[("OFFLOADER_JOBS_FAILED_JOB_RETENTION", "soon")],
            "jobs.failed_job_retention",
        ),
        (
            "",
            &[("OFFLOADER_STORE_DATA_DIR", "relative/dir")],
            "absolute path",
        ),
        (
            "",
            &[("OFFLOADER_API_ADMIN_SECRET", "short")],
            "at least 32",
        ),
        (
            "",
            &[("OFFLOADER_DOCKER_DATA_MOUNT", "nfs")],
            "\"volume\" or \"tmpfs\"",
        ),
        (
            "",
            &[("OFFLOADER_DOCKER_MODE", "kubernetes")],
            "\"engine\" or \"swarm\"",
        ),
        (
            "",
            &[("OFFLOADER_DOCKER_SWARM_CONSTRAINTS", "node.role")],
            "docker.swarm_constraints",
        ),
        ("[api\n", &[], "config file"),
    ];
    for (file, pairs, needle) in cases {
        let err = Config::load(file, env(pairs))
            .expect_err(needle)
            .to_string();
        assert!(err.contains(needle), "{err:?} should contain {needle:?}");
    }
}

#[test]
fn the_docker_mode_defaults_to_engine_and_swarm_takes_constraints() {
    let config = Config::load("", Vec::new()).expect("defaults");
    assert_eq!(config.docker.mode, DockerMode::Engine);
    let config = Config::load(
        "[docker]\nmode = \"swarm\"\nswarm_start_timeout = \"2m\"\n",
        env(&[(
            "OFFLOADER_DOCKER_SWARM_CONSTRAINTS",
            "node.labels.calls-jobs==true, node.role!=manager",
        )]),
    )
    .expect("valid");
    assert_eq!(config.docker.mode, DockerMode::Swarm);
    assert_eq!(
        config.docker.swarm_constraints,
        vec!["node.labels.calls-jobs==true", "node.role!=manager"]
    );
    assert_eq!(config.docker.swarm_start_timeout, Duration::from_secs(120));
}

#[test]
fn every_key_is_documented_with_its_env_name() {
    let doc = include_str!("../../../docs/offloader.md");
    for (key, _, default, _) in KEYS {
        assert!(doc.contains(key), "docs/offloader.md lacks {key}");
        assert!(
            doc.contains(&env_name(key)),
            "docs/offloader.md lacks {}",
            env_name(key)
        );
        // The row shows the default KEYS gives, the one validation uses.
        let row = format!("| `{key}` | `{}` | `{default}` |", env_name(key));
        assert!(doc.contains(&row), "docs/offloader.md lacks the row {row}");
    }
}

#[test]
fn defaults_are_toml_values_that_validate() {
    for (key, kind, default, _) in KEYS {
        let row: toml::Table =
            toml::from_str(&format!("v = {default}")).unwrap_or_else(|e| panic!("{key}: {e}"));
        let matches = matches!(
            (kind, &row["v"]),
            (Kind::Str, toml::Value::String(_))
                | (Kind::Int, toml::Value::Integer(_))
                | (Kind::Float, toml::Value::Float(_))
                | (Kind::Bool, toml::Value::Boolean(_))
                | (Kind::List, toml::Value::Array(_))
        );
        assert!(matches, "{key}: default {default} is not a {kind:?}");
    }
    // Each section's validation reads the KEYS default when neither file nor environment sets a
    // key: the documented defaults are the ones in force.
    let config = Config::load("", env(&[])).expect("defaults validate");
    assert_eq!(config.api.token_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(config.jobs.max_queue_length, 50);
    assert_eq!(config.docker.log_max_size, "10m");
    assert_eq!(config.runner(JobType::Transcribing).memory_mb, 4096);
    assert_eq!(
        config.runner(JobType::Recording).foreign_input_keys.len(),
        13
    );
    assert_eq!(config.webhooks.initial_backoff, Duration::from_secs(1));
}

#[test]
fn the_documented_example_file_is_valid() {
    let doc = include_str!("../../../docs/offloader.md");
    let start = doc
        .find("```toml\n")
        .expect("docs/offloader.md has a TOML example")
        + 8;
    let end = start
        + doc[start..]
            .find("```")
            .expect("the example block is closed");
    let config = Config::load(&doc[start..end], Vec::new()).expect("the example validates");
    assert_eq!(config.jobs.max_concurrent, 4);
    assert_eq!(
        config.jobs.failed_job_retention,
        Duration::from_secs(7 * 86400)
    );
}

#[test]
fn patterns_match_with_stars_only() {
    assert!(matches_pattern(
        "mattermost/calls-recorder:v*",
        "mattermost/calls-recorder:v0.8.5"
    ));
    assert!(matches_pattern("a*b*c", "a-x-b-y-c"));
    assert!(matches_pattern("exact:1", "exact:1"));
    assert!(!matches_pattern("exact:1", "exact:12"));
    assert!(!matches_pattern(
        "mattermost/calls-recorder:v*",
        "evil/mattermost/calls-recorder:v1"
    ));
    assert!(!matches_pattern("a*bc", "abxc"));
    assert!(
        !matches_pattern("ab*ba", "aba"),
        "the two ends may not overlap"
    );
}

#[test]
fn foreign_runners_get_the_operator_keys_and_ours_get_the_protocol_keys() {
    let config = Config::load(
        "",
        env(&[(
            "OFFLOADER_RUNNERS_RECORDING_FOREIGN_RUNNERS",
            "mattermost/calls-recorder:v*",
        )]),
    )
    .expect("valid");
    let mm = "mattermost/calls-recorder:v0.8.5";
    assert!(config.image_allowed_for(JobType::Recording, mm));
    assert!(config.image_allowed(mm));
    assert!(!config.image_allowed_for(JobType::Transcribing, mm));
    // Mattermost's recorder: its keys (the default list), not ours, and never a proxy.
    assert!(config.input_key_allowed(JobType::Recording, mm, "site_url"));
    assert!(config.input_key_allowed(JobType::Recording, mm, "AUTH_TOKEN"));
    assert!(!config.input_key_allowed(JobType::Recording, mm, "profile"));
    assert!(!config.input_key_allowed(JobType::Recording, mm, "http_proxy"));
    // Our recorder: the protocol's list.
    let ours = "calls-recorder:latest";
    assert!(config.input_key_allowed(JobType::Recording, ours, "profile"));
    assert!(!config.input_key_allowed(JobType::Recording, ours, "site_url"));
    assert!(!config.input_key_allowed(JobType::Recording, ours, "PROFLE"));

    let config = Config::load(
        "[runners.transcribing]\nforeign_runners = [\"x/t:*\"]\nforeign_input_keys = [\"only_this\"]\n",
        env(&[]),
    )
    .expect("valid");
    assert!(config.input_key_allowed(JobType::Transcribing, "x/t:1", "ONLY_THIS"));
    assert!(!config.input_key_allowed(JobType::Transcribing, "x/t:1", "site_url"));

    for (file, needle) in [
        (
            "[runners.recording]\nforeign_runners = [\"*\"]\n",
            "would allow any image",
        ),
        (
            "[runners.recording]\nforeign_input_keys = [\"job_token\"]\n",
            "foreign_input_keys entry \"job_token\"",
        ),
        (
            "[runners.recording]\nforeign_input_keys = [\"a-b\"]\n",
            "is not an environment name",
        ),
    ] {
        let error = Config::load(file, env(&[])).expect_err(file).to_string();
        assert!(error.contains(needle), "{file}: {error}");
    }
}
