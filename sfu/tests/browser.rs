//! The demo page in a real browser: headless Chromium, driven over the DevTools protocol, opens
//! the page served by an in-process SFU, joins with a join token and publishes its fake
//! microphone (a beeping tone). A participant-library client in the same call must hear the
//! beeps attributed to the browser's display name and on their 500 ms clock, the page must list
//! that client and play its espeak-ng speech, the page's mute button must reach the client as a
//! mute event, and a caption published by a bot must show up in the page. A second test shares
//! the page's fake screen alone for a few seconds, so that its first keyframe goes to nobody;
//! a client that joins later can decode the share only if the SFU relays its keyframe request
//! to the browser. Both are skipped, with a message, when no `chromium` binary is installed (and
//! fail instead under CI). The DevTools client is the shared `calls-browser-test` crate.
mod common;

#[path = "browser/tone.rs"]
mod tone;

use std::time::Duration;

use calls_browser_test::{chromium_or_skip, demo, js_string, Chromium, Page};
use calls_participant::{Caption, Event, JoinOptions, Participant, Role, TrackKind};
use common::*;
use serde_json::Value;

const CALL: &str = "call-browser";
const SHARE_CALL: &str = "call-browser-share";
const BROWSER_NAME: &str = "Carol in Chromium";
/// How far consecutive beeps may stray from 500 ms apart, in seconds: onsets are found on a
/// 10 ms grid, so a spacing is off by up to 10 ms from that alone. A 120 ms stretch of invented
/// audio always fails; a single extra or missing 20 ms frame usually does.
const BEEP_TOLERANCE: f64 = 0.015;

/// One Chromium at a time: the tests share two busy cores, and the beep clock suffers otherwise.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails the test with `error` and what the page and Chromium logged.
async fn fail_with_logs(error: anyhow::Error, page: &Page, chromium: &Chromium) -> ! {
    panic!("{error:#}\n{}", demo::report(page, chromium).await);
}

/// A user opens the page, pastes a token for `name` in `call` and presses Join; returns the
/// page's session id once its media connection is up.
async fn join_page(
    sfu: &calls_sfu::RunningSfu,
    page: &Page,
    call: &str,
    name: &str,
) -> anyhow::Result<String> {
    let token = token(call, name, Role::Participant);
    Ok(demo::join(page, &sfu.http_url(), &token).await?.session_id)
}

/// Audio the page receives from `owner`: the inbound-rtp stats of the track its `<audio>`
/// element for that owner plays, or null while there is none.
fn inbound_audio_of(owner: &str) -> String {
    format!(
        r##"(async () => {{
            const element = [...document.querySelectorAll("#voices audio")]
                .find((audio) => audio.dataset.owner === {owner});
            if (!element || !element.srcObject) return null;
            const track = element.srcObject.getAudioTracks()[0];
            const stats = await state.pc.getStats();
            let found = null;
            stats.forEach((report) => {{
                if (report.type === "inbound-rtp" && report.kind === "audio"
                    && report.trackIdentifier === track.id) {{
                    found = {{
                        packets: report.packetsReceived || 0,
                        bytes: report.bytesReceived || 0,
                        energy: report.totalAudioEnergy || 0,
                    }};
                }}
            }});
            return found;
        }})()"##,
        owner = js_string(owner)
    )
}

fn field(value: &Value, name: &str) -> f64 {
    value[name].as_f64().unwrap_or(0.0)
}

async fn page_participants(page: &Page) -> anyhow::Result<Vec<String>> {
    let names = page
        .evaluate("[...document.querySelectorAll('#participants li')].map((li) => li.textContent)")
        .await?;
    Ok(serde_json::from_value(names)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_page_talks_with_a_participant() {
    let Some(binary) = chromium_or_skip("demo_page_talks_with_a_participant") else {
        return;
    };
    let _one_browser = ONE_BROWSER.lock().await;
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let bob_words = speech(
        dir.path(),
        "bob",
        "Hello from the participant library, can the browser hear me?",
    );

    let sfu = start_sfu().await;
    let mut bob = join(&sfu, CALL, "Bob").await;
    let captions = Participant::join(
        &sfu.ws_url(),
        &token(CALL, "Captions", Role::Bot),
        JoinOptions::default(),
    )
    .await
    .expect("the caption bot joins");

    let chromium = Chromium::launch(&binary).await.expect("chromium starts");
    let page = chromium.new_page().await.expect("a tab opens");
    let outcome = run_scenario(&sfu, &page, &mut bob, &captions, &bob_words).await;
    if let Err(error) = outcome {
        fail_with_logs(error, &page, &chromium).await;
    }
    drop(page);
    drop(chromium);
    bob.leave().await.unwrap();
    captions.leave().await.unwrap();
    sfu.shutdown().await;
    println!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}

async fn run_scenario(
    sfu: &calls_sfu::RunningSfu,
    page: &Page,
    bob: &mut Participant,
    captions: &Participant,
    bob_words: &[i16],
) -> anyhow::Result<()> {
    let browser_session = join_page(sfu, page, CALL, BROWSER_NAME).await?;

    // (1) The participant receives the browser's microphone, attributed to its display name.
    let from_browser = wait_track(bob, &browser_session, TrackKind::Voice).await;
    anyhow::ensure!(
        from_browser.owner_name.as_deref() == Some(BROWSER_NAME),
        "the browser's voice is attributed to {:?}",
        from_browser.owner_name
    );

    // (2) Meanwhile Bob speaks; the page must list him and play his voice.
    // Beeps go missing or shift while Bob's voice plays in the page (its echo canceller at
    // work), so the beeps are checked before and after his sentence. The seven seconds before
    // it hold the padding-only probes Chromium sends about five seconds into the call.
    let lead_in = Duration::from_secs(7);
    let sending = bob.send_voice(with_lead_in(bob_words, lead_in));
    let speech = Duration::from_secs_f64(bob_words.len() as f64 / 48_000.0);
    let listen = lead_in + speech + Duration::from_secs(3);
    let bob_session = bob.session_id().to_string();
    let (heard, page_audio) = tokio::join!(
        from_browser.record_voice(listen, Duration::from_secs(2)),
        async {
            let first = page
                .wait_for(
                    "Bob's audio in the page",
                    &inbound_audio_of(&bob_session),
                    Duration::from_secs(10),
                )
                .await?;
            // Two seconds into Bob's sentence (his lead-in is silence).
            tokio::time::sleep(lead_in + Duration::from_secs(2)).await;
            let later = page.evaluate(&inbound_audio_of(&bob_session)).await?;
            anyhow::Ok((first, later))
        }
    );
    let heard = heard?;
    let (first, later) = page_audio?;
    sending.await??;

    let beeps = tone::analyse(&heard);
    println!("browser microphone as heard by Bob: {beeps:?}");
    // Chromium's fake microphone beeps at 400 Hz every 500 ms, and the decoded audio must keep
    // that clock: outside Bob's sentence (give or take the echo canceller's reaction) every two
    // consecutive beeps heard are 500 ms apart. Audio invented for packets that carried none
    // (Chromium's padding-only probes) or concealment longer than what was lost would move them.
    anyhow::ensure!(
        beeps.seconds >= listen.as_secs_f64() - 1.0,
        "only {:.1} s of the browser's audio arrived",
        beeps.seconds
    );
    anyhow::ensure!(
        beeps.peak_rms >= 0.05 && beeps.peak_rms >= 100.0 * beeps.floor_rms,
        "no beep stands out of the browser's audio: {beeps:?}"
    );
    anyhow::ensure!(
        (300.0..=500.0).contains(&beeps.tone_hz) && beeps.tone_share >= 0.3,
        "the loudest part is not the 400 Hz beep: {beeps:?}"
    );
    let talking = (lead_in.as_secs_f64() - 0.25)..(lead_in + speech).as_secs_f64() + 1.0;
    let spacings: Vec<f64> = beeps
        .onsets
        .windows(2)
        .filter(|pair| pair[1] < talking.start || pair[0] >= talking.end)
        .map(|pair| pair[1] - pair[0])
        .collect();
    println!("beep spacings outside Bob's sentence ({talking:?} s): {spacings:?}");
    anyhow::ensure!(
        spacings.len() >= 4,
        "too few beeps outside Bob's sentence ({talking:?} s) to check their spacing: {beeps:?}"
    );
    anyhow::ensure!(
        spacings
            .iter()
            .all(|spacing| (spacing - 0.5).abs() <= BEEP_TOLERANCE),
        "beeps not 500 ms ± {BEEP_TOLERANCE} s apart: spacings {spacings:?}, {beeps:?}"
    );

    println!("Bob's audio in the page: first {first}, during his sentence {later}");
    let names = page_participants(page).await?;
    anyhow::ensure!(names.iter().any(|n| n == "Bob"), "page lists {names:?}");
    anyhow::ensure!(
        names.iter().any(|n| n == "Captions [bot]"),
        "page lists {names:?}"
    );
    anyhow::ensure!(
        field(&later, "packets") >= field(&first, "packets") + 100.0,
        "Bob's packets stopped reaching the page: {first} then {later}"
    );
    anyhow::ensure!(
        field(&later, "bytes") > field(&first, "bytes"),
        "{first} then {later}"
    );
    anyhow::ensure!(
        field(&later, "energy") > 1e-4,
        "the page hears no energy from Bob: {later}"
    );

    // (3) The page's mute button reaches Bob as a mute event, and the page shows it.
    page.evaluate("document.getElementById('mute').click(); true")
        .await?;
    let muted = wait_event(bob, "the browser's mute event", |event| {
        matches!(event, Event::MuteState { session_id, muted: true } if *session_id == browser_session)
    })
    .await;
    println!("after the mute click Bob got {muted:?}");
    // What was queued before the mute took effect is skipped; then Bob must hear no more beeps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < drain_until {
        let next = tokio::time::timeout(Duration::from_millis(60), from_browser.next_packet());
        if !matches!(next.await, Ok(Some(_))) {
            break;
        }
    }
    let after_mute = from_browser
        .record_voice(Duration::from_secs(2), Duration::from_secs(2))
        .await?;
    let after_mute = tone::analyse(&after_mute);
    println!("after the mute Bob hears {after_mute:?}");
    anyhow::ensure!(
        after_mute.peak_rms < 0.01,
        "Bob still hears the muted browser: {after_mute:?}"
    );
    page.wait_for(
        "the page to show itself muted",
        "document.querySelector('#participants li').classList.contains('muted') \
         && document.getElementById('mute').textContent === 'Unmute'",
        Duration::from_secs(5),
    )
    .await?;

    // (4) Live captions published by a bot are shown in the page, attributed to the speaker: a partial
    // (stable words + tentative tail), replaced in place by its final; a partial that comes after the final
    // (a late worker) does not touch the final text.
    let text = "can the browser hear me";
    let caption = |text: &str, tail: &str, is_final: bool| Caption {
        id: Some("bob-1".into()),
        tail: tail.into(),
        text: text.into(),
        speaker_session: bob.session_id().into(),
        speaker_name: Some("Bob".into()),
        start_ms: 500,
        end_ms: 3_200,
        is_final,
    };
    captions
        .publish_caption(caption("can the", "browser", false))
        .await?;
    page.wait_for(
        "the partial caption in the page",
        "(() => { const l = document.querySelector('#captions .caption');            return l && l.classList.contains('partial') && l.textContent === 'Bob: can the browser'              && l.querySelector('.tail').textContent === ' browser'; })()",
        Duration::from_secs(10),
    )
    .await?;
    captions.publish_caption(caption(text, "", true)).await?;
    captions
        .publish_caption(caption("can the", "bowser here", false))
        .await?;
    // A marker caption of someone else, published after the late partial: once it shows, the late
    // partial has been handled too.
    captions
        .publish_caption(Caption {
            id: Some("marker".into()),
            ..caption("marker", "", true)
        })
        .await?;
    page.wait_for(
        "the final caption replacing the partial",
        &format!(
            "(() => {{ const lines = [...document.querySelectorAll('#captions .caption')];                return lines.length === 2 && lines[0].textContent === {} && !lines[0].classList.contains('partial')                  && lines[1].textContent === 'Bob: marker'; }})()",
            js_string(&format!("Bob: {text}"))
        ),
        Duration::from_secs(10),
    )
    .await?;
    // The speaker's latest words show under their name; the toggle hides every caption.
    page.wait_for(
        "the caption under the speaker's name",
        "[...document.querySelectorAll('#participants .live-caption')].some((l) => l.textContent === 'marker')",
        Duration::from_secs(5),
    )
    .await?;
    page.evaluate("document.getElementById('show-captions').click()")
        .await?;
    page.wait_for(
        "the captions hidden by the toggle",
        "getComputedStyle(document.getElementById('captions')).display === 'none'",
        Duration::from_secs(5),
    )
    .await?;
    Ok(())
}

/// What the page's RTCPeerConnection reports sending on its video (screen) track.
const OUTBOUND_VIDEO: &str = r#"(async () => {
    let found = null;
    (await state.pc.getStats()).forEach((report) => {
        if (report.type === "outbound-rtp" && report.kind === "video") {
            found = {
                framesEncoded: report.framesEncoded || 0,
                keyFramesEncoded: report.keyFramesEncoded || 0,
                pliCount: report.pliCount || 0,
                frameWidth: report.frameWidth || 0,
                frameHeight: report.frameHeight || 0,
            };
        }
    });
    return found;
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_receiver_decodes_the_pages_screen_share() {
    let Some(binary) = chromium_or_skip("late_receiver_decodes_the_pages_screen_share") else {
        return;
    };
    let _one_browser = ONE_BROWSER.lock().await;
    let started = std::time::Instant::now();
    let sfu = start_sfu().await;
    let chromium = Chromium::launch(&binary).await.expect("chromium starts");
    let page = chromium.new_page().await.expect("a tab opens");
    if let Err(error) = share_scenario(&sfu, &page).await {
        fail_with_logs(error, &page, &chromium).await;
    }
    drop(page);
    drop(chromium);
    sfu.shutdown().await;
    println!(
        "browser share test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn share_scenario(sfu: &calls_sfu::RunningSfu, page: &Page) -> anyhow::Result<()> {
    let browser_session = join_page(sfu, page, SHARE_CALL, BROWSER_NAME).await?;
    // The user presses "Share screen"; Chromium picks its fake screen without asking.
    page.evaluate("document.getElementById('screen').click(); true")
        .await?;
    page.wait_for(
        "the page to share its screen",
        "state.screenSender !== null \
         && document.getElementById('screen').textContent === 'Stop sharing'",
        Duration::from_secs(10),
    )
    .await?;
    // Alone in the call, so the share's first keyframe reaches nobody.
    tokio::time::sleep(Duration::from_millis(3_500)).await;

    let mut dave = join(sfu, SHARE_CALL, "Dave").await;
    let screen = wait_track(&mut dave, &browser_session, TrackKind::Screen).await;
    anyhow::ensure!(
        screen.owner_name.as_deref() == Some(BROWSER_NAME),
        "the browser's screen is attributed to {:?}",
        screen.owner_name
    );
    let frames = screen
        .record_frames(Duration::from_secs(5), Duration::from_secs(3))
        .await?;
    let sent = page.evaluate(OUTBOUND_VIDEO).await?;
    let sizes: std::collections::BTreeSet<(u32, u32)> =
        frames.iter().map(|f| (f.width, f.height)).collect();
    println!(
        "Dave decoded {} frames of the browser's screen, sizes {sizes:?}; the page sent {sent}",
        frames.len()
    );
    anyhow::ensure!(
        field(&sent, "pliCount") >= 1.0,
        "no keyframe request reached the browser: {sent}"
    );
    anyhow::ensure!(
        frames.len() >= 20,
        "Dave decoded only {} frames of the browser's share (the page sent {sent})",
        frames.len()
    );
    anyhow::ensure!(
        sizes
            .iter()
            .all(|&(w, h)| (160..=4096).contains(&w) && (120..=4096).contains(&h)),
        "decoded frame sizes {sizes:?}"
    );
    let last = frames.last().expect("at least 20 frames were checked");
    anyhow::ensure!(
        f64::from(last.width) == field(&sent, "frameWidth")
            && f64::from(last.height) == field(&sent, "frameHeight"),
        "the last frame is {}x{}, the page encodes {sent}",
        last.width,
        last.height
    );
    dave.leave().await?;
    Ok(())
}
