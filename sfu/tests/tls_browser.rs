//! Calls from another machine, as a browser meets them (issue 17): headless Chromium opens the
//! demo page at `https://calls.test:PORT` (the name mapped to this machine, the test CA's server
//! key pinned) and its fake microphone — a spoken sentence — is heard by a participant; the same
//! page over plain `http://calls.test` gets no microphone and says so in a visible notice, with
//! the controls showing that it only listens. Through a real coturn on loopback, the page with
//! `relay=1` and a relay-only participant hear each other, coturn logs their allocations, and a
//! wrong or expired credential is refused. Skipped with a message without `chromium` or
//! `turnserver` (failing instead under CI).
mod common;
#[path = "tls/mod.rs"]
mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use calls_browser_test::{chromium_or_skip, demo, Chromium, LaunchOptions, Microphone, Page};
use calls_participant::{audio, JoinOptions, Participant, Role, TrackKind};
use calls_sfu::config::{Secret, TurnConfig};
use common::*;
use tls::*;

/// One Chromium at a time: the tests share two busy cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The spoken sentence with a second of silence first, as a WAV for Chromium's fake microphone.
fn microphone_file(dir: &Path, name: &str, sentence: &str) -> (Vec<i16>, PathBuf) {
    let words = speech(dir, name, sentence);
    let path = dir.join(format!("{name}-mic.wav"));
    audio::write_wav(&path, &with_lead_in(&words, Duration::from_secs(1))).unwrap();
    (words, path)
}

/// Chromium whose microphone plays `mic` (over and over when `looped`), with calls.test mapped to
/// this machine and, with `certs`, the test server key pinned.
async fn launch(
    binary: &Path,
    mic: &Path,
    looped: bool,
    certs: Option<&Certs>,
) -> (Chromium, Page) {
    let mut extra_args = vec!["--host-resolver-rules=MAP calls.test 127.0.0.1".to_string()];
    if let Some(certs) = certs {
        extra_args.push(format!(
            "--ignore-certificate-errors-spki-list={}",
            certs.spki()
        ));
    }
    let options = LaunchOptions {
        microphone: Microphone::Wav {
            path: mic.to_owned(),
            looped,
        },
        extra_args,
        ..LaunchOptions::default()
    };
    let chromium = Chromium::launch_with(binary, &options)
        .await
        .expect("chromium starts");
    let page = chromium.new_page().await.expect("a tab opens");
    (chromium, page)
}

/// Opens `url` (a join link with `join=1`) and returns the page's session id once media is up.
async fn open_and_join(page: &Page, url: &str) -> anyhow::Result<String> {
    page.navigate(url).await?;
    let session = page
        .wait_for(
            "the page's media connection",
            "state.pc && state.pc.connectionState === 'connected' && state.sessionId",
            Duration::from_secs(30),
        )
        .await?;
    Ok(session.as_str().unwrap_or_default().to_owned())
}

/// Records what `listener` hears from `owner` for the sentence and its lead-in.
async fn hear(listener: &mut Participant, owner: &str, words: &[i16]) -> Vec<i16> {
    let track = wait_track(listener, owner, TrackKind::Voice).await;
    let length = Duration::from_secs_f64(words.len() as f64 / 48_000.0);
    track
        .record_voice(length + Duration::from_secs(3), Duration::from_secs(3))
        .await
        .expect("voice records")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_on_another_name_is_heard_over_https_and_told_why_not_over_http() {
    let Some(binary) = chromium_or_skip("a_browser_on_another_name_is_heard_over_https") else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (words, mic) = microphone_file(
        dir.path(),
        "erin",
        "Hello from a laptop on another machine, can you hear me over HTTPS?",
    );

    // HTTPS: heard.
    let certs = Certs::new(&["calls.test", "127.0.0.1"]);
    let sfu = start_tls_sfu(&certs, |_| {}).await;
    let mut bob = join_tls(&sfu, &certs, "https-page", "Bob").await;
    let (chromium, page) = launch(&binary, &mic, false, Some(&certs)).await;
    let url = format!(
        "https://calls.test:{}/?token={}&join=1",
        sfu.http_addr.port(),
        token("https-page", "Erin", Role::Participant)
    );
    let session = match open_and_join(&page, &url).await {
        Ok(session) => session,
        Err(error) => panic!("{error:#}\n{}", demo::report(&page, &chromium).await),
    };
    let notice = page.evaluate("callsDemo.mediaNotice()").await.unwrap();
    assert_eq!(notice, "", "no notice on https");
    let heard = hear(&mut bob, &session, &words).await;
    let score = envelope_correlation(&words, &heard);
    println!("the https page as heard by Bob: envelope correlation {score:.3}");
    assert!(score >= 0.8, "envelope correlation {score}");
    drop(page);
    drop(chromium);
    bob.leave().await.unwrap();
    sfu.shutdown().await;

    // Plain HTTP on a name that is not localhost: no microphone, and the page says so.
    let sfu = start_sfu().await;
    let (chromium, page) = launch(&binary, &mic, false, None).await;
    let url = format!(
        "http://calls.test:{}/?token={}&join=1",
        sfu.http_addr.port(),
        token("http-page", "Erin", Role::Participant)
    );
    if let Err(error) = open_and_join(&page, &url).await {
        panic!("{error:#}\n{}", demo::report(&page, &chromium).await);
    }
    let notice = page.evaluate("callsDemo.mediaNotice()").await.unwrap();
    let notice = notice.as_str().unwrap_or_default().to_owned();
    println!("notice on http://calls.test: {notice}");
    assert!(
        notice.contains("no microphone") && notice.contains("https://calls.test"),
        "{notice}"
    );
    let visible = page
        .evaluate("!document.getElementById('media-notice').hidden")
        .await
        .unwrap();
    assert_eq!(visible, true);
    let controls = page
        .evaluate(
            "[document.getElementById('mute').disabled, document.getElementById('mute').textContent, \
              document.getElementById('screen').disabled, document.getElementById('status').textContent]",
        )
        .await
        .unwrap();
    println!("controls: {controls}");
    assert_eq!(controls[0], true, "{controls}");
    assert!(
        controls[1].as_str().unwrap().contains("Listening only"),
        "{controls}"
    );
    assert_eq!(controls[2], true, "{controls}");
    assert!(
        controls[3].as_str().unwrap().contains("listening only"),
        "{controls}"
    );
    drop(page);
    drop(chromium);
    sfu.shutdown().await;
}

/// `tool` on PATH; without it, `None` after saying the test is skipped, or a panic under CI.
fn tool_or_skip(tool: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").unwrap_or_default();
        assert!(
            ci.is_empty() || ci == "0" || ci.eq_ignore_ascii_case("false"),
            "{test}: no `{tool}` on PATH under CI (scripts/install-deps.sh installs it)"
        );
        eprintln!("SKIPPED {test}: no `{tool}` on PATH (apt-get install coturn nginx)");
    }
    found
}

/// A port nobody listens on now (UDP and TCP).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A coturn on loopback, killed on drop; its log goes to a file.
struct Coturn {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Coturn {
    fn start(binary: &Path, dir: &Path, secret: &str) -> Coturn {
        let port = free_port();
        let relay = free_port();
        let log = dir.join("turnserver.log");
        let child = Command::new(binary)
            .args([
                "-n",
                "-v",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
            ])
            .arg(format!("--listening-port={port}"))
            .args(["--use-auth-secret", "--realm=calls", "--fingerprint"])
            .arg(format!("--static-auth-secret={secret}"))
            // The SFU is on loopback too; coturn refuses loopback peers unless told.
            .args([
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
            ])
            .args(["--log-file=stdout", "--simple-log"])
            .arg(format!("--userdb={}", dir.join("turndb").display()))
            .arg(format!("--min-port={relay}"))
            .arg(format!("--max-port={}", relay.saturating_add(40)))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        Coturn { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if self.log().contains("UDP listener opened on: 127.0.0.1") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// Tries an allocation with `turnutils_uclient`; true when coturn refused it.
    fn refuses(&self, uclient: &Path, user: &str, password: &str) -> bool {
        let output = Command::new("timeout")
            .arg("5")
            .arg(uclient)
            .args(["-n", "1", "-m", "1", "-l", "100", "-e", "127.0.0.1"])
            .args(["-u", user, "-w", password, "-p"])
            .arg(self.port.to_string())
            .arg("127.0.0.1")
            .output()
            .expect("turnutils_uclient runs");
        let text = String::from_utf8_lossy(&output.stdout);
        !output.status.success() && text.contains("Cannot complete Allocation")
    }
}

/// The type of the local candidate of the page's selected candidate pair (`relay`, `host`...).
const SELECTED_LOCAL_CANDIDATE: &str = r#"(async () => {
    const stats = await state.pc.getStats();
    let pair = null;
    stats.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
    if (!pair) stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    return local ? local.candidateType : null;
})()"#;

/// Packets and energy of the audio the page receives.
const PAGE_INBOUND_AUDIO: &str = r#"(async () => {
    const stats = await state.pc.getStats();
    let found = { packets: 0, energy: 0 };
    stats.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") {
            found.packets += s.packetsReceived || 0;
            found.energy += s.totalAudioEnergy || 0;
        }
    });
    return found;
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_only_browser_and_participant_hear_each_other_through_coturn() {
    let test = "relay_only_browser_and_participant_hear_each_other_through_coturn";
    let Some(turnserver) = tool_or_skip("turnserver", test) else {
        return;
    };
    let Some(uclient) = tool_or_skip("turnutils_uclient", test) else {
        return;
    };
    let Some(binary) = chromium_or_skip(test) else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "turn-test-secret-0123456789abcdef";
    let coturn = Coturn::start(&turnserver, dir.path(), secret);
    coturn.wait_ready().await;

    let certs = Certs::new(&["calls.test", "127.0.0.1"]);
    let turn_url = format!("turn:127.0.0.1:{}?transport=udp", coturn.port);
    let sfu = start_tls_sfu(&certs, |config| {
        config.ice.turn = Some(TurnConfig {
            urls: vec![turn_url.clone()],
            static_auth_secret: Secret::new(secret),
            credential_ttl: Duration::from_secs(600),
        });
    })
    .await;
    let (erin_words, mic) = microphone_file(
        dir.path(),
        "erin",
        "I can only reach you through the relay server.",
    );
    let bob_words = speech(
        dir.path(),
        "bob",
        "And I hear you through the relay as well.",
    );

    let mut bob = Participant::join(
        &sfu.ws_url(),
        &token("turn", "Bob", Role::Participant),
        JoinOptions {
            relay_only: true,
            ..trusting(&certs.ca.cert)
        },
    )
    .await
    .expect("bob joins");
    bob.wait_connected(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("bob's relayed media: {e}\ncoturn log:\n{}", coturn.log()));

    // Looped: relayed media may take a moment longer to connect than the one-second lead-in.
    let (chromium, page) = launch(&binary, &mic, true, Some(&certs)).await;
    let url = format!(
        "https://calls.test:{}/?token={}&join=1&relay=1",
        sfu.http_addr.port(),
        token("turn", "Erin", Role::Participant)
    );
    let session = match open_and_join(&page, &url).await {
        Ok(session) => session,
        Err(error) => panic!(
            "{error:#}\n{}\ncoturn log:\n{}",
            demo::report(&page, &chromium).await,
            coturn.log()
        ),
    };
    let ice = page
        .evaluate("JSON.stringify(state.iceServers.map((s) => s.urls))")
        .await
        .unwrap();
    assert!(ice.as_str().unwrap().contains(&turn_url), "{ice}");
    let candidate = page.evaluate(SELECTED_LOCAL_CANDIDATE).await.unwrap();
    assert_eq!(
        candidate, "relay",
        "the page's media goes through the relay"
    );

    // One after the other: the page's echo canceller mutes its microphone while Bob's voice plays.
    let heard = hear(&mut bob, &session, &erin_words).await;
    let sending = bob.send_voice(with_lead_in(&bob_words, Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let score = envelope_correlation(&erin_words, &heard);
    println!("the relayed page as heard by relayed Bob: envelope correlation {score:.3}");
    assert!(score >= 0.8, "envelope correlation {score}");
    let inbound = page.evaluate(PAGE_INBOUND_AUDIO).await.unwrap();
    println!("the page received from Bob: {inbound}");
    assert!(
        inbound["packets"].as_f64().unwrap_or(0.0) >= 100.0,
        "{inbound}"
    );
    assert!(
        inbound["energy"].as_f64().unwrap_or(0.0) > 1e-4,
        "{inbound}"
    );
    sending.await.unwrap().unwrap();

    let log = coturn.log();
    let allocations = log.matches("ALLOCATE processed, success").count();
    println!("coturn allocations: {allocations}");
    assert!(
        allocations >= 2,
        "coturn log shows {allocations} allocations:\n{log}"
    );

    // Credentials coturn must refuse: a wrong password, and a right one that has expired.
    let now = SystemTime::now();
    let (user, _) =
        calls_sfu::turn::credential(secret.as_bytes(), "probe", now, Duration::from_secs(600));
    assert!(
        coturn.refuses(&uclient, &user, "d3JvbmcgcGFzc3dvcmQ="),
        "a wrong password is accepted"
    );
    let (old_user, old_password) = calls_sfu::turn::credential(
        secret.as_bytes(),
        "expired",
        now - Duration::from_secs(3_600),
        Duration::from_secs(600),
    );
    assert!(
        coturn.refuses(&uclient, &old_user, &old_password),
        "an expired credential is accepted"
    );
    let log = coturn.log();
    assert!(
        log.contains(&format!(
            "user <{user}>: incoming packet message processed, error 401"
        )),
        "{log}"
    );

    drop(page);
    drop(chromium);
    bob.leave().await.unwrap();
    sfu.shutdown().await;
}
