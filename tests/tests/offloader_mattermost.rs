//! Mattermost's own offloader client against the real offloader binary (issue 18). Every request
//! is made byte for byte as `public/client.go` of mattermost/calls-offloader v0.9.x makes it, and
//! every answer is judged as that client judges it (`calls_e2e::mattermost`):
//!
//! - `its_client_tests_hold`: each server-facing assertion of its `service/client_test.go`
//!   (register, unregister, login, version, automatic registration). Where that file compares
//!   the text of an error made by its own server, we check that the call fails the same way
//!   (`request failed: <our message>`, or `ErrUnauthorized`); the wording is ours.
//! - `the_plugin_flow_runs_a_recording_job`: what the Calls plugin does, end to end: the admin
//!   registers a client, the client logs in, initialises its runners, creates a recording job on
//!   a runner named like Mattermost's (`<registry>/calls-recorder:v0.8.5`, here the test job
//!   tagged so), polls it until it stopped, reads its logs, and unregisters.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use calls_e2e::docker;
use calls_e2e::mattermost::{MattermostClient, Outcome};
use calls_e2e::offloader::{
    serial, test_job_image, unique, Offloader, OffloaderSettings, ADMIN_SECRET,
};
use serde_json::json;

/// A key like the plugin's (`random.NewSecureString(32)`: 32 random bytes in base64).
fn plugin_key() -> String {
    format!("mm-{}-key-0123456789abcdefghijklmnopqrstuv", unique())
}

fn settings(self_registration: bool, foreign: &str) -> OffloaderSettings {
    let mut settings = OffloaderSettings {
        // The plugin asks for its max recording duration (default 60 minutes).
        max_duration: "2h".into(),
        ..OffloaderSettings::default()
    };
    settings.extra_env = vec![
        (
            "OFFLOADER_API_SELF_REGISTRATION".into(),
            self_registration.to_string(),
        ),
        ("OFFLOADER_RUNNERS_RECORDING_FOREIGN_RUNNERS".into(), foreign.into()),
        // The defaults: what Mattermost's recorder reads.
        (
            "OFFLOADER_RUNNERS_RECORDING_FOREIGN_INPUT_KEYS".into(),
            "site_url,call_id,post_id,thread_id,recording_id,auth_token,width,height,video_rate,audio_rate,frame_rate,video_preset,output_format".into(),
        ),
    ];
    settings
}

#[tokio::test]
async fn its_client_tests_hold() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader =
        Offloader::start("mm-tests", settings(false, "mattermost/calls-recorder:v*")).await?;
    let url = offloader.base_url();
    let admin = MattermostClient::new(&url, "", ADMIN_SECRET);

    // TestClientRegister
    let outcome = admin.register("", &plugin_key())?;
    assert!(outcome.is_request_failed(), "empty clientID: {outcome:?}");
    let outcome = admin.register("clientA", "")?;
    assert!(outcome.is_request_failed(), "empty authKey: {outcome:?}");
    let key_a = plugin_key();
    admin.register("clientA", &key_a)?.ok("valid")?;
    let outcome = admin.register("clientA", &plugin_key())?;
    assert!(
        outcome.is_request_failed(),
        "existing clientID: {outcome:?}"
    );
    let wrong_admin = MattermostClient::new(&url, "", &format!("{ADMIN_SECRET}_"));
    assert!(wrong_admin.register("", "")?.is_unauthorized());
    let anonymous = MattermostClient::new(&url, "", "");
    let key_b = plugin_key();
    assert!(
        anonymous.register("clientB", &key_b)?.is_unauthorized(),
        "self-registration is off"
    );

    // TestClientUnregister
    let outcome = admin.unregister("")?;
    assert!(outcome.is_request_failed(), "empty client id: {outcome:?}");
    let outcome = admin.unregister("clientB")?;
    assert!(outcome.is_request_failed(), "not found: {outcome:?}");
    assert!(wrong_admin.unregister("clientA")?.is_unauthorized());

    // TestClientLogin
    let mut login = MattermostClient::new(&url, "", ADMIN_SECRET);
    login.login("clientA", &key_a)?.ok("login")?;
    assert!(login.auth_token.len() >= 43, "{:?}", login.auth_token);
    let outcome = login.login("clientC", "authKey")?;
    assert!(!matches!(outcome, Outcome::Ok(_)), "not found: {outcome:?}");
    let outcome = login.login("clientA", &format!("{key_a}bad"))?;
    assert!(
        !matches!(outcome, Outcome::Ok(_)),
        "auth failed: {outcome:?}"
    );

    admin.unregister("clientA")?.ok("success")?;
    let outcome = admin.unregister("clientA")?;
    assert!(outcome.is_request_failed(), "gone: {outcome:?}");

    // TestClientGetVersionInfo, and the plugin's check of it (min_offloader_version v0.9.0).
    let info = admin.get_version_info()?.ok("version")?;
    let version = info.build_version.trim_start_matches('v');
    let numbers: Vec<u64> = version
        .split('.')
        .map(|n| n.parse().expect("buildVersion is semver"))
        .collect();
    assert!(
        numbers.len() == 3 && (numbers[0], numbers[1]) >= (0, 9),
        "{info:?}"
    );
    assert!(
        info.go_version.is_empty() && info.build_date.len() < 64,
        "{info:?}"
    );

    // TestClientAutoRegister, first half: unknown credentials and no self-registration.
    let auto_key = plugin_key();
    let auto = MattermostClient::new(&url, "clientAuto", &auto_key);
    assert!(auto.init(None)?.is_unauthorized());

    // With self-registration: TestClientRegister "self registering" and TestClientAutoRegister.
    let open = Offloader::start("mm-self", settings(true, "mattermost/calls-recorder:v*")).await?;
    let open_url = open.base_url();
    let anonymous = MattermostClient::new(&open_url, "", "");
    anonymous
        .register("clientB", &key_b)?
        .ok("self registering")?;
    let mut auto = MattermostClient::new(&open_url, "clientAuto", &auto_key);
    auto.init(Some(&["mattermost/calls-recorder:v0.6.0"]))?
        .ok("automatic registration")?;
    auto.login("clientAuto", &auto_key)?
        .ok("login after auto registration")?;
    let outcome = MattermostClient::new(&open_url, "clientAuto", &key_b).init(None)?;
    assert!(
        outcome.is_unauthorized(),
        "a registered id keeps its key: {outcome:?}"
    );
    Ok(())
}

/// `mm-compat-<unique>/calls-recorder:v0.8.5`: the test job under a Mattermost-like runner name,
/// untagged again on drop.
struct RunnerTag(String);

impl Drop for RunnerTag {
    fn drop(&mut self) {
        let _ = docker::docker(&["rmi", &self.0]);
    }
}

#[tokio::test]
async fn the_plugin_flow_runs_a_recording_job() -> anyhow::Result<()> {
    let _serial = serial().await;
    // The operator allows the registry's recorders; the test job image (built by
    // Offloader::start) is tagged with such a name once it exists.
    let registry = format!("mm-compat-{}", unique());
    let offloader = Offloader::start(
        "mm-flow",
        settings(false, &format!("{registry}/calls-recorder:v*")),
    )
    .await?;
    let runner_tag = RunnerTag(format!("{registry}/calls-recorder:v0.8.5"));
    docker::docker(&["tag", &test_job_image(), &runner_tag.0])?;
    let runner = runner_tag.0.clone();
    let url = offloader.base_url();

    // The plugin checks the version, then (as admin, or by self-registration) registers.
    let admin = MattermostClient::new(&url, "", ADMIN_SECRET);
    admin.get_version_info()?.ok("version")?;
    let client_id = format!("mmplugin{}", unique());
    let key = plugin_key();
    offloader.track_client(&client_id);
    admin.register(&client_id, &key)?.ok("register")?;
    let mut client = MattermostClient::new(&url, &client_id, &key);
    client.login(&client_id, &key)?.ok("login")?;
    assert!(!client.auth_token.is_empty());
    client.init(Some(&[runner.as_str()]))?.ok("init")?;

    // A recording job as RunJob builds it: the recorder's config as input_data.
    let ids = |c: &str| c.repeat(26);
    let input_data: BTreeMap<String, serde_json::Value> = [
        ("site_url", json!("http://mattermost.example:8065")),
        ("call_id", json!(ids("c"))),
        ("post_id", json!(ids("p"))),
        ("recording_id", json!(ids("r"))),
        ("auth_token", json!("plugin-bot-auth-token-0123456789")),
        ("width", json!(1280)),
        ("height", json!(720)),
        ("video_rate", json!(1500)),
        ("audio_rate", json!(64)),
        ("frame_rate", json!(20)),
        ("video_preset", json!("veryfast")),
        ("output_format", json!("mp4")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let job = client
        .create_job("recording", 3600, &runner, &input_data)?
        .ok("create job")?;
    assert_eq!(job.job_type, "recording");
    assert_eq!(job.runner, runner);
    assert_eq!(job.max_duration_sec, 3600);
    assert!(job.start_at > 1_600_000_000_000, "{job:?}");
    assert_eq!(job.stop_at, 0, "just queued: {job:?}");
    let shown = job.input_data.clone().unwrap_or_default();
    assert_eq!(shown.get("width"), Some(&json!(1280)));
    assert!(
        !shown.contains_key("auth_token"),
        "secrets never come back: {shown:?}"
    );

    // Another client of the same offloader does not see it.
    let other_id = format!("mmother{}", unique());
    let other_key = plugin_key();
    offloader.track_client(&other_id);
    admin
        .register(&other_id, &other_key)?
        .ok("register other")?;
    let outcome = MattermostClient::new(&url, &other_id, &other_key).get_job(&job.id)?;
    assert!(
        outcome.is_request_failed(),
        "404 across clients: {outcome:?}"
    );

    // Poll until it stopped (the test job reports and exits 0).
    let deadline = Instant::now() + Duration::from_secs(90);
    let stopped = loop {
        let view = client.get_job(&job.id)?.ok("get job")?;
        if view.stop_at != 0 {
            break view;
        }
        assert!(Instant::now() < deadline, "never stopped: {view:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(stopped.stop_at >= stopped.start_at, "{stopped:?}");
    let logs = client.get_job_logs(&job.id)?.ok("logs")?;
    let logs = String::from_utf8_lossy(&logs);
    assert!(logs.contains("calls-test-job: finished work"), "{logs}");
    // input_data reached the container as upper-cased environment variables.
    assert!(logs.contains("secret AUTH_TOKEN received"), "{logs}");
    assert!(!logs.contains("plugin-bot-auth-token"), "{logs}");

    // The plugin's client unregisters itself; its credentials stop working.
    client.unregister(&client_id)?.ok("unregister")?;
    assert!(client.get_job(&job.id)?.is_unauthorized());
    drop(runner_tag);
    Ok(())
}

/// `go`, or `None` (with a message) when it is missing outside CI; in CI a missing `go` fails.
fn go_tool() -> anyhow::Result<Option<&'static str>> {
    let found = std::process::Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Ok(Some("go"));
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        anyhow::bail!("`go` is missing (scripts/install-deps.sh installs golang-go)");
    }
    eprintln!("skipped: `go` is missing (install golang-go, or run scripts/install-deps.sh)");
    Ok(None)
}

/// A Go client of our own (tests/go/mmclient, standard library only) that behaves like
/// Mattermost's on the wire runs the plugin's ten calls against two offloaders (self-registration
/// off and on); none may fail.
#[tokio::test]
async fn a_go_client_makes_the_plugins_ten_calls() -> anyhow::Result<()> {
    let Some(go) = go_tool()? else {
        return Ok(());
    };
    let _serial = serial().await;
    let build_dir = tempfile::tempdir()?;
    let program = build_dir.path().join("mmclient");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("go/mmclient");
    let built = std::process::Command::new(go)
        .args(["build", "-o"])
        .arg(&program)
        .arg(".")
        .current_dir(&source)
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .output()?;
    anyhow::ensure!(
        built.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let registry = format!("mm-go-{}", unique());
    let pattern = format!("{registry}/calls-recorder:v*");
    let closed = Offloader::start("mm-go", settings(false, &pattern)).await?;
    let open = Offloader::start("mm-go-self", settings(true, &pattern)).await?;
    let runner_tag = RunnerTag(format!("{registry}/calls-recorder:v0.8.5"));
    docker::docker(&["tag", &test_job_image(), &runner_tag.0])?;
    let id = format!("mmgo{}", unique());
    closed.track_client(&id);
    open.track_client(&format!("{id}-self"));
    let run = tokio::process::Command::new(&program)
        .args(["-url", &closed.base_url(), "-self-url", &open.base_url()])
        .args(["-admin", ADMIN_SECRET, "-runner", &runner_tag.0, "-id", &id])
        .output()
        .await?;
    let output = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success() && output.contains("0 of 10 calls failed"),
        "{output}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for call in [
        "GetVersionInfo",
        "Register (admin)",
        "Register (self)",
        "Login",
        "Init",
        "CreateJob",
        "GetJob",
        "GetJobLogs",
        "Unregister (self)",
        "Unregister (admin)",
    ] {
        assert!(output.contains(&format!("ok {call}\n")), "{call}: {output}");
    }
    Ok(())
}
