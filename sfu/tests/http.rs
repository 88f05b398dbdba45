//! The HTTP API of a running SFU: version, health, metrics, and the API-key protected calls
//! endpoints, queried over a real socket while a call is live.

mod common;

use std::time::Duration;

use calls_participant::TrackKind;
use common::*;

const API_KEY: &str = "test-api-key-0123456789";

/// `GET url`, with the API key as a bearer token when `key` is given.
async fn get(http: &reqwest::Client, url: String, key: Option<&str>) -> reqwest::Response {
    let request = http.get(url);
    let request = match key {
        Some(key) => request.bearer_auth(key),
        None => request,
    };
    request.send().await.expect("the SFU answers")
}

/// [`get`]'s answer as JSON.
async fn get_json(http: &reqwest::Client, url: String, key: Option<&str>) -> serde_json::Value {
    get(http, url, key)
        .await
        .json()
        .await
        .expect("a JSON answer")
}

fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn version_health_metrics_and_calls_answer() {
    let sfu = start_sfu().await;
    let http = reqwest::Client::new();
    let base = sfu.http_url();

    let version = get_json(&http, format!("{base}/version"), None).await;
    assert!(version["buildVersion"].is_string(), "{version}");
    assert!(version["buildHash"].is_string());
    assert!(version["buildDate"].is_string());
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert!(health.status().is_success());

    let alice = join(&sfu, "call-http", "Alice").await;
    let mut bob = join(&sfu, "call-http", "Bob").await;
    let talking = alice.send_voice(vec![3000i16; 48_000 * 3]);
    let voice = wait_track(&mut bob, alice.session_id(), TrackKind::Voice).await;
    for _ in 0..20 {
        voice.next_packet().await.expect("voice flows");
    }

    // A packet counts as sent once its write returned, which may be just after Bob read it: wait
    // (briefly) for the counter to catch up with what Bob received.
    let out_audio = "sfu_rtc_rtp_packets_total{direction=\"out\",type=\"audio\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = get_text(&http, &format!("{base}/metrics")).await;
        if counter(&metrics, out_audio) >= 20.0 || tokio::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        counter(&metrics, "sfu_rtc_sessions_total"),
        2.0,
        "{metrics}"
    );
    assert!(
        counter(
            &metrics,
            "sfu_rtc_rtp_packets_total{direction=\"in\",type=\"audio\"}"
        ) >= 20.0
    );
    assert!(
        counter(
            &metrics,
            "sfu_rtc_rtp_packets_total{direction=\"out\",type=\"audio\"}"
        ) >= 20.0
    );
    assert!(
        counter(
            &metrics,
            "sfu_rtc_rtp_bytes_total{direction=\"out\",type=\"audio\"}"
        ) > 0.0
    );
    assert!(counter(&metrics, "sfu_ws_connections_total") >= 2.0);
    assert!(metrics.contains("process_cpu_seconds_total"));

    let unauthorized = get(&http, format!("{base}/calls"), None).await;
    assert_eq!(unauthorized.status(), reqwest::StatusCode::UNAUTHORIZED);
    let wrong = get(
        &http,
        format!("{base}/calls"),
        Some("wrong-key-wrong-key-1234"),
    )
    .await;
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    let calls = get_json(&http, format!("{base}/calls"), Some(API_KEY)).await;
    assert_eq!(calls[0]["call_id"], "call-http", "{calls}");
    assert_eq!(calls[0]["participants"], 2);
    let sessions = get_json(
        &http,
        format!("{base}/calls/call-http/sessions"),
        Some(API_KEY),
    )
    .await;
    let names: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"Alice") && names.contains(&"Bob"));
    let missing = get(&http, format!("{base}/calls/nope/sessions"), Some(API_KEY)).await;
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);

    // job_stop through the API reaches the session.
    let mut bot = calls_participant::Participant::join(
        &sfu.ws_url(),
        &token("call-http", "Recorder", calls_participant::Role::Bot),
        calls_participant::JoinOptions::default(),
    )
    .await
    .unwrap();
    let url = format!(
        "{base}/calls/call-http/sessions/{}/job_stop",
        bot.session_id()
    );
    let refused = http.post(&url).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let stopped = http
        .post(&url)
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({ "reason": "max duration" }))
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), reqwest::StatusCode::NO_CONTENT);
    let stop = wait_event(&mut bot, "job stop", |e| {
        matches!(e, calls_participant::Event::JobStop { .. })
    })
    .await;
    assert!(
        matches!(stop, calls_participant::Event::JobStop { reason } if reason == "max duration")
    );
    let unknown = http
        .post(format!(
            "{base}/calls/other/sessions/{}/job_stop",
            bot.session_id()
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);
    bot.leave().await.unwrap();

    talking.abort();
    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    sfu.shutdown().await;
}

/// Issue 11, finding 6: a partial request header held a connection open indefinitely, and
/// connections were not capped. With the cap at its minimum (16) and the shipped read timeout
/// (10 s): 16 clients that never finish their headers fill the server; a 17th, complete request
/// waits in the backlog until the timeout closes them, and is then served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_headers_time_out_and_connections_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut config = calls_sfu::Config::for_local_test(SECRET);
    config.limits.max_http_connections = 16;
    let timeout = config.limits.http_read_timeout;
    assert_eq!(timeout, Duration::from_secs(10), "the shipped default");
    let sfu = calls_sfu::start(config).await.expect("sfu starts");

    let started = tokio::time::Instant::now();
    let slow = slow_header_connections(sfu.http_addr, 16).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let waiting = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(sfu.http_addr)
            .await
            .expect("the kernel accepts into the backlog");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: sfu\r\nConnection: close\r\n\r\n")
            .await
            .expect("request is sent");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .await
            .expect("answer is read");
        (answer, started.elapsed())
    });

    for mut stream in slow {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(timeout + Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the server closes a connection whose header never ends");
        assert!(
            matches!(closed, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).contains("408"),
            "unexpected answer to a partial header: {:?}",
            String::from_utf8_lossy(&buf)
        );
    }
    let (answer, after) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waiting request is served")
        .expect("task");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        after >= timeout - Duration::from_secs(1),
        "the 17th connection was served after {after:?}, before the cap freed a slot"
    );
}

/// Issue 11, finding 7 (label injection): the SFU's metrics carry no client-chosen label values.
/// Requests with made-up methods and paths must not add a single series to `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn made_up_methods_and_paths_add_no_metric_series() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sfu = start_sfu().await;
    let series = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' ').map(|(name, _)| name.to_owned()))
            .filter(|name| !name.starts_with("process_"))
            .collect()
    };
    let metrics_url = format!("{}/metrics", sfu.http_url());
    let before = series(
        &reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    for method in ["INJECTED", "GET\u{7f}", "X-LABEL-1", "PROPFIND"] {
        let mut stream = tokio::net::TcpStream::connect(sfu.http_addr).await.unwrap();
        let request = format!("{method} /metrics{{injected=\"1\"}} HTTP/1.1\r\nHost: sfu\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    }
    let after_text = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!after_text.contains("INJECTED") && !after_text.contains("injected"));
    assert_eq!(series(&after_text), before, "new series appeared");
}
