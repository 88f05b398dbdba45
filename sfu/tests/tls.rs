//! The SFU over TLS, as people on other machines use it: the page, `/ws` (WSS), the HTTP API and
//! `/metrics` served with a certificate of a local CA; participants that trust that CA join and
//! hear each other, one that does not is refused; the certificate files are replaced while a call
//! runs, and new connections get the new certificate while the call goes on; bad files stop the
//! start with an error naming them. Helpers shared with `tls_browser.rs` live in `tls/mod.rs`.
mod common;
#[path = "tls/mod.rs"]
mod tls;

use std::time::Duration;

use calls_participant::{audio, Event, JoinOptions, Participant, Role, TrackKind};
use common::*;
use tls::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everything_over_tls_and_a_renewed_certificate_without_restart() {
    let certs = Certs::new(&["calls.test", "127.0.0.1"]);
    let sfu = start_tls_sfu(&certs, |_| {}).await;
    assert!(sfu.http_url().starts_with("https://"), "{}", sfu.http_url());

    // The page, the health check, the metrics: over HTTPS, checked against the local CA.
    let http = https_client(&certs.ca.cert);
    let page = http.get(sfu.http_url()).send().await.unwrap();
    assert!(page.status().is_success());
    assert!(page.text().await.unwrap().contains("<html"));
    let health = get(&http, &format!("{}/healthz", sfu.http_url())).await;
    assert!(health.status().is_success());
    let metrics = get_text(&http, &format!("{}/metrics", sfu.http_url())).await;
    assert!(metrics.contains("sfu_"));
    // Plain HTTP to the TLS port gets no page.
    let plain = reqwest::get(format!("http://{}/healthz", sfu.http_addr)).await;
    assert!(plain.map_or(true, |r| !r.status().is_success()));

    // A client that does not trust the CA is refused, and says why.
    let refused = Participant::join(
        &sfu.ws_url(),
        &token("tls", "Mallory", Role::Participant),
        JoinOptions::default(),
    )
    .await
    .err()
    .expect("a client without the CA is refused");
    assert!(refused.to_string().contains("certificate"), "{refused}");

    let dir = tempfile::tempdir().unwrap();
    let words = speech(
        dir.path(),
        "alice",
        "The certificate is renewed while we talk, and the call goes on without a break.",
    );
    let alice = join_tls(&sfu, &certs, "tls", "Alice").await;
    let mut bob = join_tls(&sfu, &certs, "tls", "Bob").await;
    let before = peer_certificate(sfu.http_addr, &certs.ca.cert)
        .await
        .unwrap();
    assert_eq!(before, certs.leaf_der());

    // A track shows up with its first packets.
    let sending = alice.send_voice(with_lead_in(&words, Duration::from_millis(500)));
    let from_alice = wait_track(&mut bob, alice.session_id(), TrackKind::Voice).await;
    let speech_len = Duration::from_secs_f64(words.len() as f64 / 48_000.0);
    let listening = tokio::spawn(async move {
        from_alice
            .record_voice(speech_len + Duration::from_secs(2), Duration::from_secs(3))
            .await
    });

    // Renewed in the middle of Alice's sentence (an ACME client replacing the two files).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let renewed = certs.renew();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let after = peer_certificate(sfu.http_addr, &certs.ca.cert)
        .await
        .unwrap();
    assert_eq!(
        after, renewed,
        "a new connection gets the renewed certificate"
    );
    assert_ne!(after, before);
    assert_eq!(sfu.tls_reloads(), 1);
    // A newcomer joins with the new certificate.
    let carol = join_tls(&sfu, &certs, "tls", "Carol").await;

    sending.await.unwrap().unwrap();
    let heard = listening.await.unwrap().unwrap();
    let score = audio::similarity(&words, &heard);
    println!("bob heard alice across the renewal: similarity {score:.3}");
    assert!(score >= 0.8, "similarity {score}");
    // Nobody was disconnected by the renewal.
    while let Some(event) = bob.next_event_within(Duration::from_millis(100)).await {
        assert!(
            !matches!(event, Event::Disconnected | Event::ParticipantLeft { .. }),
            "{event:?}"
        );
    }
    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    carol.leave().await.unwrap();
    sfu.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_files_stop_the_start_naming_the_file() {
    let certs = Certs::new(&["127.0.0.1"]);
    let start_with = |cert: std::path::PathBuf, key: std::path::PathBuf| async move {
        let mut config = calls_sfu::Config::for_local_test(SECRET);
        config.http_tls = Some(calls_sfu::config::TlsFiles {
            cert_file: cert,
            key_file: key,
        });
        calls_sfu::start(config).await.err().map(|e| e.to_string())
    };
    let missing = certs.dir.path().join("missing.pem");
    let error = start_with(missing, certs.files.key.clone()).await.unwrap();
    assert!(
        error.contains("missing.pem") && error.contains("certificate"),
        "{error}"
    );
    let garbage = certs.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    let error = start_with(certs.files.cert.clone(), garbage).await.unwrap();
    assert!(
        error.contains("garbage.pem") && error.contains("key"),
        "{error}"
    );

    // Only one of the two settings: the config says which is missing.
    let error = calls_sfu::Config::from_file_and_env(
        None,
        [
            ("SFU_AUTH_DEV_MODE".to_string(), "true".to_string()),
            (
                "SFU_HTTP_TLS_CERT_FILE".to_string(),
                "/x/cert.pem".to_string(),
            ),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("http.tls_key_file"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_participant_cli_joins_an_https_sfu_with_ca_cert() {
    let certs = Certs::new(&["127.0.0.1"]);
    let sfu = start_tls_sfu(&certs, |_| {}).await;
    let ca_file = certs.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &certs.ca.cert).unwrap();
    let args = |name: &str, ca_cert: Option<std::path::PathBuf>| calls_participant::cli::Args {
        sfu: sfu.http_url(),
        call: "cli-tls".to_owned(),
        token: token("cli-tls", name, Role::Participant),
        name: name.to_owned(),
        send_audio: None,
        send_screen: false,
        record_dir: None,
        duration: Some(Duration::from_secs(3)),
        ca_cert,
        relay_only: false,
        connect_timeout: Duration::from_secs(10),
    };
    let bob = join_tls(&sfu, &certs, "cli-tls", "Bob").await;
    let summary = calls_participant::cli::run(args("Dana", Some(ca_file)), std::future::pending())
        .await
        .expect("the cli joins with --ca-cert");
    assert!(
        summary.participants_seen.values().any(|name| name == "Bob"),
        "{:?}",
        summary.participants_seen
    );
    let error = calls_participant::cli::run(args("Eve", None), std::future::pending())
        .await
        .expect_err("without --ca-cert the local CA is not trusted");
    assert!(format!("{error:#}").contains("certificate"), "{error:#}");
    bob.leave().await.unwrap();
    sfu.shutdown().await;
}
