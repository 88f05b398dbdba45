//! Issue 21 (the second live security probe), the SFU's findings, each against a real SFU with
//! real sockets, WebSockets and WebRTC peers:
//!
//! - finding 1: an offer of 700 audio sections (≈ 250 KB, inside the message limit) used to be
//!   answered, as did offers at any rate; now it is refused with `bad_sdp`, offers beyond
//!   `limits.offer_burst` + `limits.offers_per_minute` with `rate_limited`, and the session goes on;
//! - finding 2: a client that pipelines requests and never reads held its connection (and its
//!   slot) for good; now it is reset after `limits.http_write_timeout_secs`. One address filling
//!   every connection slot kept everyone else waiting; now it holds at most
//!   `limits.max_http_connections_per_address`;
//! - finding 7: a bot's captions named any speaker under any name, at any size and rate;
//! - finding 8: remote ICE candidates made the SFU send STUN to any address (loopback included)
//!   and to any number of them;
//! - finding 12: `/ws` accepted any `Origin`, the page had no CSP or frame protection, and a
//!   link's `sfu=` could send the page (token and microphone) to another server unasked.
//!
//! Real clients keep working next to each case (voice between two participant-library clients).

mod common;

use std::time::Duration;

use calls_participant::{Caption, Event, JoinOptions, Participant, Role, TrackKind};
use calls_protocol::signalling::{ErrorCode, ServerMessage};
use common::*;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A minimal but valid offer of `sections` receive-only Opus sections, bundled.
fn offer_sdp(sections: usize, version: u64) -> String {
    let mids: Vec<String> = (0..sections).map(|mid| mid.to_string()).collect();
    let fingerprint = (0..32)
        .map(|byte| format!("{:02X}", byte * 7 % 256))
        .collect::<Vec<_>>()
        .join(":");
    let mut sdp = format!(
        "v=0\r\no=- 4611731400430051336 {version} IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE {}\r\na=msid-semantic: WMS\r\n",
        mids.join(" ")
    );
    for mid in mids {
        sdp.push_str(&format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:hRdn\r\n\
             a=ice-pwd:0123456789abcdefghijklmn\r\na=fingerprint:sha-256 {fingerprint}\r\n\
             a=setup:actpass\r\na=mid:{mid}\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
        ));
    }
    sdp
}

fn offer_message(sdp: &str) -> String {
    serde_json::json!({"type": "offer", "sdp": sdp}).to_string()
}

/// The next `answer` or `error` the server sends (other messages are skipped).
async fn next_reply(socket: &mut Socket) -> ServerMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a reply in time")
            .expect("the socket stays open")
            .expect("a good frame");
        if let Message::Text(text) = frame {
            let message = ServerMessage::from_json(&text).expect("a server message");
            if matches!(
                message,
                ServerMessage::Answer { .. } | ServerMessage::Error { .. }
            ) {
                return message;
            }
        }
    }
}

/// A raw client in `call` that has joined and had a one-section offer answered.
async fn negotiated_raw_client(sfu: &calls_sfu::RunningSfu, call: &str, name: &str) -> Socket {
    let mut socket = connect(sfu).await;
    send(
        &mut socket,
        join_message(&token(call, name, Role::Participant), None),
    )
    .await;
    send(&mut socket, offer_message(&offer_sdp(1, 1))).await;
    let reply = next_reply(&mut socket).await;
    assert!(
        matches!(reply, ServerMessage::Answer { .. }),
        "first offer: {reply:?}"
    );
    socket
}

/// CPU seconds this process (the in-process SFU and the test) has used.
fn process_cpu_seconds() -> f64 {
    calls_participant::cpu::cpu_seconds("self").unwrap_or(0.0)
}

/// Finding 1: 700 sections in one offer are refused before the WebRTC stack sees them, offers
/// beyond the rate are refused, and the session still answers a normal re-offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offers_with_hundreds_of_sections_and_offer_floods_are_refused() {
    let sfu = start_sfu().await;
    let mut socket = negotiated_raw_client(&sfu, "call-sdp", "Mallory").await;

    let huge = offer_sdp(700, 2);
    assert!(
        huge.len() > 200_000 && huge.len() < 250_000,
        "{} bytes",
        huge.len()
    );
    let cpu_before = process_cpu_seconds();
    let started = std::time::Instant::now();
    for version in 2..7 {
        send(&mut socket, offer_message(&offer_sdp(700, version))).await;
        match next_reply(&mut socket).await {
            ServerMessage::Error { code, message } => {
                assert_eq!(code, ErrorCode::BadSdp, "{message}");
                assert!(message.contains("media sections"), "{message}");
            }
            ServerMessage::Answer { sdp } => panic!(
                "a 700-section offer was answered ({} sections)",
                calls_sfu::sdp_guard::media_sections(&sdp)
            ),
            other => panic!("unexpected reply {other:?}"),
        }
    }
    println!(
        "5 offers of 700 sections ({} KB each): refused in {:.2} s wall, {:.2} CPU-s",
        huge.len() / 1000,
        started.elapsed().as_secs_f64(),
        process_cpu_seconds() - cpu_before
    );

    // The session is fine: a re-offer with one new section is answered.
    send(&mut socket, offer_message(&offer_sdp(2, 7))).await;
    let reply = next_reply(&mut socket).await;
    assert!(matches!(reply, ServerMessage::Answer { .. }), "{reply:?}");

    // 20 offers back to back: the burst (10, of which 7 are used above) and not much more.
    let mut answered = 0;
    let mut rate_limited = 0;
    for version in 8..28 {
        send(&mut socket, offer_message(&offer_sdp(2, version))).await;
        match next_reply(&mut socket).await {
            ServerMessage::Answer { .. } => answered += 1,
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            } => rate_limited += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    println!("20 quick offers: {answered} answered, {rate_limited} refused as too fast");
    assert!(answered <= 5, "{answered} answered");
    assert!(rate_limited >= 15, "{rate_limited} refused");
    let metrics = sfu.metrics().render();
    assert!(
        metrics.contains("sfu_rtc_errors_total{type=\"sdp_refused\"} 5"),
        "{metrics}"
    );
    sfu.shutdown().await;
}

/// UDP sockets on `ip`, and a task per socket that reports whether it received a STUN message
/// within `listen`.
async fn stun_listeners(
    ip: &str,
    count: usize,
    listen: Duration,
) -> (Vec<u16>, Vec<tokio::task::JoinHandle<bool>>) {
    let mut ports = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..count {
        let socket = tokio::net::UdpSocket::bind(format!("{ip}:0"))
            .await
            .expect("udp binds");
        ports.push(socket.local_addr().unwrap().port());
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let deadline = tokio::time::Instant::now() + listen;
            while let Ok(Ok((n, _))) =
                tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
            {
                // A STUN message: type's top bits 0, magic cookie 0x2112A442.
                if n >= 20 && buf[0] & 0xc0 == 0 && buf[4..8] == [0x21, 0x12, 0xa4, 0x42] {
                    return true;
                }
            }
            false
        }));
    }
    (ports, tasks)
}

/// Sends one trickled host candidate per port on `ip`; returns how many listeners got STUN.
async fn trickle_and_count(socket: &mut Socket, ip: &str, count: usize) -> usize {
    let (ports, listeners) = stun_listeners(ip, count, Duration::from_secs(6)).await;
    for (index, port) in ports.iter().enumerate() {
        let candidate = serde_json::json!({
            "type": "ice_candidate",
            "candidate": {
                "candidate": format!("candidate:{index} 1 udp 2130706431 {ip} {port} typ host"),
                "sdp_mid": "0",
                "sdp_mline_index": 0,
            }
        });
        send(socket, candidate.to_string()).await;
    }
    let mut reached = 0;
    for listener in listeners {
        if listener.await.expect("listener task") {
            reached += 1;
        }
    }
    reached
}

/// Finding 8, the cap: 80 candidates, each a real UDP socket; the SFU checks at most
/// `limits.ice_candidates_per_session` (50) of them. (The tests' SFU runs ICE on loopback only,
/// so loopback candidates are allowed here, as the participants of every other test need.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_candidates_per_session_are_capped() {
    let sfu = start_sfu().await;
    let mut socket = negotiated_raw_client(&sfu, "call-candidates", "Mallory").await;
    let reached = trickle_and_count(&mut socket, "127.0.0.1", 80).await;
    println!("80 trickled candidates: {reached} got STUN from the SFU");
    assert!(
        reached > 0,
        "loopback candidates are allowed on a loopback SFU"
    );
    assert!(reached <= 50, "{reached} candidates were checked");
    let metrics = sfu.metrics().render();
    assert!(
        metrics.contains("sfu_rtc_errors_total{type=\"ice_candidate_limit\"} 30"),
        "{metrics}"
    );
    sfu.shutdown().await;
}

/// Finding 8, the addresses: an SFU whose ICE runs on every interface (the shipped default)
/// sends no STUN to loopback candidates, while two participant-library clients on loopback still
/// connect (through peer-reflexive candidates) and hear each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loopback_candidates_get_no_stun_from_an_sfu_on_every_interface() {
    let mut config = calls_sfu::Config::for_local_test(SECRET);
    config.ice.host_addresses = Vec::new();
    config.ice.allow_loopback_candidates = false;
    let sfu = calls_sfu::start(config).await.expect("sfu starts");
    let mut socket = negotiated_raw_client(&sfu, "call-loopback", "Mallory").await;
    let reached = trickle_and_count(&mut socket, "127.0.0.1", 20).await;
    println!("20 loopback candidates: {reached} got STUN from the SFU");
    assert_eq!(reached, 0, "the SFU sent STUN to loopback candidates");

    let alice = join(&sfu, "call-loopback", "Alice").await;
    let mut bob = join(&sfu, "call-loopback", "Bob").await;
    let talking = alice.send_voice(vec![3000i16; 48_000 * 3]);
    let voice = wait_track(&mut bob, alice.session_id(), TrackKind::Voice).await;
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(5), voice.next_packet())
            .await
            .expect("voice flows")
            .expect("a packet");
    }
    talking.abort();
    sfu.shutdown().await;
}

/// The code of the next error the SFU sends `bot`.
async fn next_error(bot: &mut Participant) -> ErrorCode {
    match wait_event(bot, "an error for the bot", |e| {
        matches!(e, Event::Error { .. })
    })
    .await
    {
        Event::Error { code, .. } => code,
        _ => unreachable!(),
    }
}

/// Finding 7: the speaker must be in the bot's call, the name shown is the roster's, a caption
/// is at most `limits.max_caption_bytes`, and a bot publishes at most
/// `limits.captions_per_second` (bursts of twice that).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bot_captions_name_a_member_with_the_roster_name_within_size_and_rate() {
    let sfu = start_sfu().await;
    let call = "call-captions";
    let alice = join(&sfu, call, "Alice").await;
    let mut bob = join(&sfu, call, "Bob").await;
    let eve = join(&sfu, "another-call", "Eve").await;
    let mut bot = Participant::join(
        &sfu.ws_url(),
        &token(call, "Captions", Role::Bot),
        JoinOptions::default(),
    )
    .await
    .expect("the bot joins");
    let caption = |speaker: &str, id: &str, text: &str| Caption {
        id: Some(id.into()),
        tail: String::new(),
        text: text.into(),
        speaker_session: speaker.into(),
        speaker_name: Some("The CEO".into()),
        start_ms: 0,
        end_ms: 500,
        is_final: true,
    };

    bot.publish_caption(caption(alice.session_id(), "c1", "hello from alice"))
        .await
        .unwrap();
    let shown = wait_event(&mut bob, "the caption", |e| matches!(e, Event::Caption(_))).await;
    let Event::Caption(shown) = shown else {
        unreachable!()
    };
    assert_eq!(shown.text, "hello from alice");
    assert_eq!(
        shown.speaker_name.as_deref(),
        Some("Alice"),
        "the bot chose the name"
    );

    bot.publish_caption(caption(eve.session_id(), "c2", "eve is elsewhere"))
        .await
        .unwrap();
    assert_eq!(next_error(&mut bot).await, ErrorCode::Forbidden);
    bot.publish_caption(caption("nobody", "c3", "no such speaker"))
        .await
        .unwrap();
    assert_eq!(next_error(&mut bot).await, ErrorCode::Forbidden);
    bot.publish_caption(caption(alice.session_id(), "c4", &"a".repeat(250_000)))
        .await
        .unwrap();
    assert_eq!(next_error(&mut bot).await, ErrorCode::BadMessage);

    // 60 captions at once: the burst (40) and what the rate refills meanwhile.
    for index in 0..60 {
        bot.publish_caption(caption(
            alice.session_id(),
            &format!("burst-{index}"),
            "burst",
        ))
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    bot.publish_caption(caption(alice.session_id(), "last", "the last one"))
        .await
        .unwrap();
    let mut received = Vec::new();
    loop {
        match bob.next_event_within(Duration::from_secs(10)).await {
            Some(Event::Caption(caption)) => {
                if caption.text == "the last one" {
                    break;
                }
                received.push(caption);
            }
            Some(_) => continue,
            None => panic!("the last caption never arrived"),
        }
    }
    let mut refused = 0;
    while let Some(event) = bot.next_event_within(Duration::from_millis(200)).await {
        if matches!(
            event,
            Event::Error {
                code: ErrorCode::RateLimited,
                ..
            }
        ) {
            refused += 1;
        }
    }
    println!(
        "60 captions at once: {} relayed, {refused} refused as too fast",
        received.len()
    );
    assert!(
        received.iter().all(|c| c.text == "burst"),
        "a refused caption was relayed"
    );
    assert!(received.len() <= 50, "{} relayed", received.len());
    assert!(refused >= 10, "{refused} refused");
    sfu.shutdown().await;
}

/// Reads what the server sends until it closes the connection, for at most `limit`; `true` when it
/// closed (EOF or reset) within the limit.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Finding 2: 300 pipelined page requests on a 4 KB receive window, never read. The connection
/// is reset within the write timeout (10 s) plus a little, instead of holding its slot for good;
/// and an idle keep-alive connection is closed by the read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_reads_is_cut_and_idle_connections_close() {
    let sfu = start_sfu().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(sfu.http_addr).await.expect("connects");
    let requests = "GET / HTTP/1.1\r\nHost: sfu\r\n\r\n".repeat(300);
    stream.write_all(requests.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();

    let mut idle = tokio::net::TcpStream::connect(sfu.http_addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: sfu\r\n\r\n")
        .await
        .unwrap();

    let cut = "sfu_rtc_errors_total{type=\"http_write_timeout\"} 1";
    loop {
        if sfu.metrics().render().contains(cut) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(16),
            "the non-reading client still holds its connection after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = started.elapsed();
    println!("the non-reading client was cut after {after:?}");
    assert!(after >= Duration::from_secs(9), "cut too early: {after:?}");
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)).await,
        "the socket of the cut client is still open"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(4)).await,
        "an idle keep-alive connection outlived the read timeout"
    );
    sfu.shutdown().await;
}

/// Finding 2: one address opens as many connections as the whole server may serve (300 here);
/// it gets `limits.max_http_connections_per_address` (256) of them, the rest are closed at once,
/// and a client from another address is served at once instead of waiting for a free slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_take_every_connection_slot() {
    let mut config = calls_sfu::Config::for_local_test(SECRET);
    config.limits.max_http_connections = 300;
    let sfu = calls_sfu::start(config).await.expect("sfu starts");
    let mut hogs = slow_header_connections(sfu.http_addr, 300).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut closed = 0;
    for stream in &mut hogs {
        if closed_within(stream, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    println!("300 connections from one address: {closed} closed at once");
    assert!(closed >= 44, "{closed} closed");

    let started = tokio::time::Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(sfu.http_addr).await.expect("connects");
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sfu\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(3), other.read_to_string(&mut answer))
        .await
        .expect("another address is served at once")
        .expect("answer is read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    println!("another address served after {:?}", started.elapsed());
    sfu.shutdown().await;
}

/// The status code of a `/ws` handshake with these extra header lines.
async fn handshake_status(sfu: &calls_sfu::RunningSfu, headers: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(sfu.http_addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n",
        sfu.http_addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// Finding 12: `/ws` refuses browsers on other origins, and the page carries a CSP (its one inline
/// script by hash) and frame protection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_origins_are_refused_and_the_page_cannot_be_framed() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let sfu = start_sfu().await;
    let own = format!("Origin: http://{}\r\n", sfu.http_addr);
    assert_eq!(
        handshake_status(&sfu, "").await,
        101,
        "no Origin: not a browser"
    );
    assert_eq!(
        handshake_status(&sfu, &own).await,
        101,
        "the page's own origin"
    );
    assert_eq!(
        handshake_status(&sfu, "Origin: https://evil.example\r\n").await,
        403
    );
    assert_eq!(handshake_status(&sfu, "Origin: null\r\n").await, 403);
    assert_eq!(
        handshake_status(
            &sfu,
            "Origin: https://calls.example.com\r\nX-Forwarded-Host: calls.example.com\r\n"
        )
        .await,
        101,
        "behind a reverse proxy"
    );

    let page = reqwest::get(format!("{}/", sfu.http_url())).await.unwrap();
    let headers = page.headers().clone();
    let body = page.text().await.unwrap();
    let policy = headers
        .get("content-security-policy")
        .expect("a content security policy")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(
        !policy.contains("unsafe-inline'; img") || !policy.contains("script-src 'unsafe-inline")
    );
    let script = body
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(script, _)| script)
        .expect("the inline script");
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script));
    assert!(
        policy.contains(&format!("script-src 'sha256-{hash}'")),
        "{policy}"
    );
    assert_eq!(headers.get("x-frame-options").unwrap(), "DENY");
    let metrics = sfu.metrics().render();
    assert!(
        metrics.contains("sfu_rtc_errors_total{type=\"ws_origin_refused\"} 2"),
        "{metrics}"
    );
    sfu.shutdown().await;
}

/// Finding 12, the page: a join link whose `sfu=` names another server does not join by itself;
/// the page says which server it is. The same link without `sfu=` joins (under the page's CSP).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_to_a_foreign_signalling_server_waits_for_the_person() {
    use calls_browser_test::{chromium_or_skip, Chromium};
    let Some(binary) =
        chromium_or_skip("a_link_to_a_foreign_signalling_server_waits_for_the_person")
    else {
        return;
    };
    let sfu = start_sfu().await;
    let chromium = Chromium::launch(&binary).await.expect("chromium starts");
    let page = chromium.new_page().await.expect("a tab opens");
    let call = "call-foreign-link";
    let link = format!(
        "{}/#token={}&join=1&sfu=ws://127.0.0.2:{}/ws",
        sfu.http_url(),
        token(call, "Linked", Role::Participant),
        sfu.http_addr.port()
    );
    page.navigate(&link).await.expect("the link loads");
    let notice = page
        .wait_for(
            "the foreign server notice",
            "!document.getElementById('foreign-sfu').hidden && document.getElementById('foreign-sfu').textContent",
            Duration::from_secs(5),
        )
        .await
        .expect("a notice");
    assert!(
        notice.as_str().unwrap_or("").contains("127.0.0.2"),
        "{notice}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let socket = page.evaluate("state.ws === null").await.unwrap();
    assert_eq!(socket, serde_json::Value::Bool(true), "the page connected");
    assert_eq!(sfu.session_count(), 0);

    let own = format!(
        "{}/?token={}&join=1",
        sfu.http_url(),
        token(call, "Trusting", Role::Participant)
    );
    page.navigate(&own).await.expect("the link loads");
    page.wait_for(
        "the page's media connection",
        "state.pc && state.pc.connectionState === 'connected' && state.sessionId",
        Duration::from_secs(20),
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", page.console()));
    assert!(
        !page.console().contains("Content Security Policy"),
        "{}",
        page.console()
    );
    sfu.shutdown().await;
}
