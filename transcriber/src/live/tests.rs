//! Unit tests of the captioning core: windowing, scheduling under overload, stabilisation, drop counting.
//! Audio is synthetic (the core never looks at sample values); the VAD flag says what is speech.

use super::stabilise::{PartialText, Stabiliser};
use super::*;

const FRAME_MS: u64 = 20;

fn frame() -> Vec<f32> {
    vec![0.1; samples_of(FRAME_MS)]
}

/// Feeds `session`'s audio from `from_ms` to `to_ms` in 20 ms frames, ticking the clock with the audio.
fn feed(c: &mut Captioner, session: &str, from_ms: u64, to_ms: u64, speech: bool) {
    let mut t = from_ms;
    while t < to_ms {
        c.handle_audio(session, t, &frame(), speech);
        t += FRAME_MS;
        c.handle_tick(t);
    }
}

fn windows(c: &mut Captioner, now_ms: u64) -> Vec<Window> {
    std::iter::from_fn(|| c.poll_window(now_ms)).collect()
}

/// The one window `poll_window` yields at `now_ms`, which must be of `kind`.
fn only_window(c: &mut Captioner, now_ms: u64, kind: WindowKind) -> Window {
    let mut found = windows(c, now_ms);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, kind, "{found:?}");
    found.remove(0)
}

fn partial(stable: &str, tail: &str) -> PartialText {
    PartialText {
        stable: stable.into(),
        tail: tail.into(),
    }
}

/// The pause window among `handed`.
fn pause_of(handed: &[Window]) -> &Window {
    handed
        .iter()
        .find(|window| window.kind == WindowKind::Pause)
        .expect("a pause window")
}

fn captions(c: &mut Captioner) -> Vec<LiveCaption> {
    std::iter::from_fn(|| c.poll_caption()).collect()
}

fn one_worker() -> LiveSettings {
    LiveSettings {
        workers: 1,
        ..LiveSettings::default()
    }
}

#[test]
fn speech_gets_partials_while_it_lasts_then_one_final_under_the_same_id() {
    let mut c = Captioner::new(LiveSettings::default());
    c.handle_speaker("s1", "Alice");
    feed(&mut c, "s1", 0, 1000, false);
    assert!(windows(&mut c, 1000).is_empty(), "silence makes no window");

    // Speech from 1.0 s to 3.0 s; a worker answers each window 200 ms after it got it.
    let mut partial_times = Vec::new();
    let mut t = 1000;
    let mut pending: Vec<(u64, Window)> = Vec::new();
    while t < 3000 {
        feed(&mut c, "s1", t, t + FRAME_MS, true);
        t += FRAME_MS;
        for window in windows(&mut c, t) {
            pending.push((t + 200, window));
        }
        pending.retain(|(due, window)| {
            if *due <= t {
                c.handle_result(window.id, "hello there everyone", t);
                false
            } else {
                true
            }
        });
        for caption in captions(&mut c) {
            assert!(!caption.is_final);
            partial_times.push(t);
        }
    }
    // The first partial comes after 0.5 s of speech + 0.2 s of work; then every 0.8 s at most.
    assert_eq!(partial_times.first(), Some(&1700), "{partial_times:?}");
    assert!(
        partial_times.windows(2).all(|w| w[1] - w[0] <= 1000),
        "{partial_times:?}"
    );

    // 0.5 s of silence ends the utterance: one final window, the whole utterance.
    feed(&mut c, "s1", 3000, 3600, false);
    let final_window = only_window(&mut c, 3600, WindowKind::Final);
    assert_eq!(
        final_window.start_ms, 800,
        "starts with 200 ms before the onset"
    );
    let audio_ms = ms_of(final_window.samples.len());
    assert_eq!(audio_ms, 2000 + 200 + 150, "pre-roll, speech and tail");
    c.handle_result(final_window.id, " Hello there, everyone. ", 3900);
    let all = captions(&mut c);
    let last = all.last().expect("a final caption");
    assert!(last.is_final);
    assert_eq!(last.text.stable, "Hello there, everyone.");
    assert_eq!(
        (last.name.as_str(), last.start_ms, last.end_ms),
        ("Alice", 1000, 3000)
    );
    assert_eq!(last.id, "s1-1");
    assert_eq!(c.stats().caption_latency_seconds.count(), 1);
    assert!((c.stats().caption_latency_seconds.sum - 0.9).abs() < 1e-9);
    assert_eq!(c.stats().window_dropped, 0);
}

#[test]
fn silence_noise_and_blips_make_no_window_and_no_caption() {
    let mut c = Captioner::new(LiveSettings::default());
    feed(&mut c, "s1", 0, 20_000, false);
    // A 100 ms blip flagged as speech (a cough, a click) is too short to transcribe.
    feed(&mut c, "s1", 20_000, 20_100, true);
    feed(&mut c, "s1", 20_100, 21_000, false);
    assert!(windows(&mut c, 21_000).is_empty());
    assert!(captions(&mut c).is_empty());
    assert_eq!(c.stats().blips, 1);
    assert_eq!(c.stats().windows, 0);
}

#[test]
fn overlapping_speakers_are_captioned_separately() {
    let mut c = Captioner::new(LiveSettings::default());
    c.handle_speaker("a", "Alice");
    c.handle_speaker("b", "Bob");
    let mut t = 0;
    while t < 2000 {
        c.handle_audio("a", t, &frame(), true);
        c.handle_audio("b", t, &frame(), t >= 500);
        t += FRAME_MS;
        c.handle_tick(t);
    }
    c.handle_audio("a", t, &frame(), false);
    c.handle_audio("b", t, &frame(), false);
    feed(&mut c, "a", t + FRAME_MS, t + 700, false);
    feed(&mut c, "b", t + FRAME_MS, t + 700, false);
    let finals: Vec<Window> = windows(&mut c, t + 700)
        .into_iter()
        .filter(|w| w.kind == WindowKind::Final)
        .collect();
    assert_eq!(finals.len(), 2, "{finals:?}");
    for w in &finals {
        let text = if w.session == "a" {
            "alice speaks"
        } else {
            "bob speaks"
        };
        c.handle_result(w.id, text, t + 900);
    }
    let got: Vec<(String, String, u64)> = captions(&mut c)
        .into_iter()
        .filter(|c| c.is_final)
        .map(|c| (c.name, c.text.stable, c.start_ms))
        .collect();
    assert!(
        got.contains(&("Alice".into(), "alice speaks".into(), 0)),
        "{got:?}"
    );
    assert!(
        got.contains(&("Bob".into(), "bob speaks".into(), 500)),
        "{got:?}"
    );
}

#[test]
fn finals_go_before_partials_and_only_one_partial_per_utterance_is_out() {
    let mut c = Captioner::new(LiveSettings {
        workers: 2,
        ..LiveSettings::default()
    });
    feed(&mut c, "a", 0, 1000, true);
    let first = windows(&mut c, 1000);
    assert_eq!(first.len(), 1, "one partial for the one speaker: {first:?}");
    assert_eq!(first[0].kind, WindowKind::Partial);
    feed(&mut c, "a", 1000, 3000, true);
    assert!(
        windows(&mut c, 3000).is_empty(),
        "no second partial while the first is with a worker"
    );
    // Bob speaks (both workers busy now) and stops: his partial, older than his final, gives way to it.
    feed(&mut c, "b", 0, 1000, true);
    let bob_partial = windows(&mut c, 3000);
    assert_eq!(bob_partial.len(), 1);
    feed(&mut c, "b", 1000, 1600, false);
    assert_eq!(
        std::iter::from_fn(|| c.poll_cancelled()).collect::<Vec<_>>(),
        vec![bob_partial[0].id]
    );
    // Alice's partial comes back and makes her next partial due, but Bob's final goes first.
    c.handle_result(first[0].id, "so", 3000);
    let next = windows(&mut c, 3000);
    let order: Vec<(WindowKind, &str)> = next
        .iter()
        .map(|window| (window.kind, window.session.as_str()))
        .collect();
    assert_eq!(
        order,
        [(WindowKind::Final, "b"), (WindowKind::Partial, "a")]
    );
    assert_eq!(c.stats().transcriber_buf_full, 0, "no final waited");
}

#[test]
fn partial_slots_missed_under_overload_are_counted_and_late_finals_dropped() {
    let mut c = Captioner::new(LiveSettings {
        final_max_wait_ms: 3000,
        ..one_worker()
    });
    // A hung worker holds the only slot (a long final of someone else).
    feed(&mut c, "x", 0, 1000, true);
    feed(&mut c, "x", 1000, 1600, false);
    let stuck = only_window(&mut c, 1600, WindowKind::Final);

    // Alice talks 4 s meanwhile: her partial slots pass with no worker free.
    feed(&mut c, "a", 1600, 5600, true);
    assert!(windows(&mut c, 5600).is_empty());
    // The worker frees up at 5.6 s: her partial is 3.5 s overdue, 4 slots of 0.8 s missed.
    c.handle_result(stuck.id, "x", 5600);
    let partial = only_window(&mut c, 5600, WindowKind::Partial);
    assert_eq!(c.stats().partials_dropped, 4);
    c.handle_result(partial.id, "one two three", 5700);
    feed(&mut c, "a", 5600, 5700, true);

    // Her utterance ends while the worker is stuck again, on Bob's pause window (which, unlike a partial,
    // does not give way); her final waits too long.
    feed(&mut c, "b", 5700, 6100, true);
    feed(&mut c, "b", 6100, 6300, false);
    only_window(&mut c, 6300, WindowKind::Pause);
    feed(&mut c, "a", 5700, 6400, false);
    assert!(windows(&mut c, 6400).is_empty());
    assert_eq!(
        c.stats().transcriber_buf_full,
        1,
        "her final found the worker busy"
    );
    c.handle_tick(9000);
    assert_eq!(c.stats().window_dropped, 0, "waited 2.8 s: still queued");
    c.handle_tick(9500);
    assert_eq!(c.stats().window_dropped, 1);
    let closed = captions(&mut c);
    let last = closed.last().expect("the dropped final closes the caption");
    assert!(last.is_final);
    assert_eq!(
        last.text.stable, "one two three",
        "the last partial text stays"
    );
    assert_eq!(last.session, "a");
}

#[test]
fn a_partial_result_after_its_final_is_never_shown() {
    let mut c = Captioner::new(LiveSettings::default());
    feed(&mut c, "a", 0, 600, true);
    let partial = windows(&mut c, 600);
    assert_eq!(partial.len(), 1);
    feed(&mut c, "a", 600, 1200, false);
    let last = windows(&mut c, 1200);
    assert_eq!(last[0].kind, WindowKind::Final);
    c.handle_result(last[0].id, "the final words", 1300);
    c.handle_result(partial[0].id, "the fi", 1400);
    let shown = captions(&mut c);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].is_final);
    assert_eq!(c.stats().partials_dropped, 1);
}

#[test]
fn a_muted_speaker_s_utterance_ends_when_their_audio_stops() {
    let mut c = Captioner::new(LiveSettings::default());
    feed(&mut c, "a", 0, 1000, true);
    // No more frames (muted). Still in the grace period at 1.5 s; ended by 1.8 s.
    c.handle_tick(1500);
    assert!(windows(&mut c, 1500)
        .iter()
        .all(|w| w.kind == WindowKind::Partial));
    c.handle_tick(1800);
    let finals: Vec<_> = windows(&mut c, 1800)
        .into_iter()
        .filter(|w| w.kind == WindowKind::Final)
        .collect();
    assert_eq!(finals.len(), 1);
}

/// Hands out every due window to an instant worker that hears nothing, and returns the finals.
fn drain_finals(c: &mut Captioner, now_ms: u64) -> Vec<Window> {
    let mut finals = Vec::new();
    while let Some(window) = c.poll_window(now_ms) {
        c.handle_result(window.id, "", now_ms);
        if window.kind == WindowKind::Final {
            finals.push(window);
        }
    }
    finals
}

#[test]
fn long_speech_is_cut_at_its_latest_pause_and_goes_on_as_a_new_caption() {
    let mut c = Captioner::new(one_worker());
    feed(&mut c, "a", 0, 7000, true);
    feed(&mut c, "a", 7000, 7200, false); // a short pause, not the end of the utterance
    feed(&mut c, "a", 7200, 10_500, true);
    let finals = drain_finals(&mut c, 10_500);
    assert_eq!(
        finals.len(),
        1,
        "{:?}",
        finals.iter().map(|w| w.start_ms).collect::<Vec<_>>()
    );
    // Cut inside the pause (7.0–7.2 s), not at 10 s in the middle of a word.
    let cut_ms = ms_of(finals[0].samples.len());
    assert!((7000..=7200).contains(&cut_ms), "cut at {cut_ms} ms");
    // The rest goes on as utterance 2 (its own caption id) and ends on silence.
    feed(&mut c, "a", 10_500, 11_200, false);
    let rest = drain_finals(&mut c, 11_200);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].start_ms, cut_ms);
    assert_eq!(ms_of(rest[0].samples.len()), 10_500 - cut_ms + 150);
}

#[test]
fn a_short_gap_in_speech_keeps_the_timeline_and_a_long_one_ends_the_utterance() {
    let mut c = Captioner::new(one_worker());
    feed(&mut c, "a", 0, 1000, true);
    feed(&mut c, "a", 1200, 2000, true); // 200 ms of lost packets
    feed(&mut c, "a", 3000, 3500, true); // 1 s gap: a new utterance
    let finals = drain_finals(&mut c, 3500);
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(finals[0].start_ms, 0);
    // 2 s of timeline (the gap kept as silence); no tail, since nothing came after 2.0 s.
    assert_eq!(ms_of(finals[0].samples.len()), 2000);
}

#[test]
fn new_audio_per_window_is_measured() {
    let mut c = Captioner::new(LiveSettings::default());
    feed(&mut c, "a", 0, 500, true);
    let w = windows(&mut c, 500);
    c.handle_result(w[0].id, "hi", 600);
    feed(&mut c, "a", 500, 1300, true);
    let w = windows(&mut c, 1300);
    c.handle_result(w[0].id, "hi there", 1400);
    let hist = &c.stats().new_audio_len_ms;
    assert_eq!(hist.count(), 2);
    // 500 ms (+ no pre-roll: speech from the start), then 800 ms.
    assert_eq!(hist.sum, 1300.0);
    assert_eq!(hist.counts[1], 1, "500 ms in the ≤ 500 bucket");
    assert_eq!(hist.counts[2], 1, "800 ms in the ≤ 1000 bucket");
}

#[test]
fn stable_words_need_two_agreeing_hypotheses_and_are_never_taken_back() {
    let mut s = Stabiliser::default();
    let shown = s.handle_hypothesis("the quick");
    assert_eq!(shown, partial("", "the quick"));
    let shown = s.handle_hypothesis("the quick brown");
    assert_eq!(shown.stable, "the quick");
    assert_eq!(shown.tail, "brown");
    // The model rewrites a stable word: the partial keeps the stable words and shows no tail.
    let shown = s.handle_hypothesis("a quick brown fox");
    assert_eq!(shown, partial("the quick", ""));
    // Back in agreement: punctuation and case do not count as a change; stable spelling stays.
    let shown = s.handle_hypothesis("The quick brown fox jumps");
    assert_eq!(shown.stable, "the quick");
    let shown = s.handle_hypothesis("the quick, brown fox jumps over");
    assert_eq!(shown.stable, "the quick brown fox jumps");
    assert_eq!(shown.tail, "over");
    assert_eq!(shown.text(), "the quick brown fox jumps over");
}

/// Alice speaks from 1.0 s to 3.0 s after a second of silence; windows are polled with every frame and
/// none is answered (two workers: her first partial holds one).
fn alice_speaks_then_pauses(c: &mut Captioner) -> Vec<Window> {
    c.handle_speaker("a", "Alice");
    feed(c, "a", 0, 1000, false);
    let mut handed = Vec::new();
    let mut t = 1000;
    while t < 3200 {
        feed(c, "a", t, t + FRAME_MS, t < 3000);
        t += FRAME_MS;
        handed.extend(windows(c, t));
    }
    handed
}

#[test]
fn a_pause_hands_out_the_final_s_audio_at_once_and_its_text_is_the_final() {
    let mut c = Captioner::new(LiveSettings::default());
    let handed = alice_speaks_then_pauses(&mut c);
    // Partials went out and came back at once; the pause window went out when the tail was in.
    let pause: Vec<&Window> = handed
        .iter()
        .filter(|window| window.kind == WindowKind::Pause)
        .collect();
    assert_eq!(pause.len(), 1, "{handed:?}");
    assert_eq!(
        ms_of(pause[0].samples.len()),
        200 + 2000 + 150,
        "pre-roll, speech and tail: what a final window holds"
    );
    for window in handed.iter().filter(|w| w.kind == WindowKind::Partial) {
        // Answered late: partial results never outrank the newer pause window's text.
        c.handle_result(window.id, "hello", 3200);
    }
    c.handle_result(pause[0].id, "Hello there, everyone.", 3300);
    let partials = captions(&mut c);
    assert!(partials.iter().all(|caption| !caption.is_final));
    // The silence goes on: the utterance ends at 3.5 s and its final is out with no second decode.
    feed(&mut c, "a", 3200, 3600, false);
    assert!(windows(&mut c, 3600).is_empty(), "no final window needed");
    let finals = captions(&mut c);
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert!(finals[0].is_final);
    assert_eq!(finals[0].text.stable, "Hello there, everyone.");
    assert_eq!((finals[0].id.as_str(), finals[0].end_ms), ("a-1", 3000));
    assert!(
        (c.stats().caption_latency_seconds.sum - 0.5).abs() < 0.03,
        "the final was ready as soon as the silence ended the utterance: {:?}",
        c.stats().caption_latency_seconds
    );
    assert!(c.is_idle());
}

#[test]
fn a_pause_decode_still_running_when_the_utterance_ends_becomes_the_final() {
    let mut c = Captioner::new(LiveSettings::default());
    let handed = alice_speaks_then_pauses(&mut c);
    let pause = pause_of(&handed);
    feed(&mut c, "a", 3200, 3600, false);
    assert!(
        windows(&mut c, 3600)
            .iter()
            .all(|window| window.kind != WindowKind::Final),
        "the running decode is the final's"
    );
    c.handle_result(pause.id, "hello there everyone", 3800);
    let finals: Vec<LiveCaption> = captions(&mut c)
        .into_iter()
        .filter(|caption| caption.is_final)
        .collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].text.stable, "hello there everyone");
    assert!((c.stats().caption_latency_seconds.sum - 0.8).abs() < 0.03);
}

#[test]
fn speech_after_a_pause_makes_its_text_a_partial_and_the_final_covers_everything() {
    let mut c = Captioner::new(LiveSettings::default());
    let handed = alice_speaks_then_pauses(&mut c);
    for window in handed.iter().filter(|w| w.kind == WindowKind::Partial) {
        c.handle_result(window.id, "hello there", 3150);
    }
    let pause = pause_of(&handed);
    c.handle_result(pause.id, "hello there everyone", 3250);
    // She goes on before the silence ended the utterance.
    feed(&mut c, "a", 3200, 4000, true);
    let shown = captions(&mut c);
    assert!(shown.iter().all(|caption| !caption.is_final));
    assert_eq!(
        shown.last().map(|caption| caption.text.text()),
        Some("hello there everyone".to_string()),
        "the pause's text was shown as a partial"
    );
    // Then a real end: the new pause window covers all of her speech and becomes the final.
    let mut t = 4000;
    let mut pause_windows = Vec::new();
    while t < 4600 {
        feed(&mut c, "a", t, t + FRAME_MS, false);
        t += FRAME_MS;
        for window in windows(&mut c, t) {
            match window.kind {
                WindowKind::Pause => pause_windows.push(window),
                _ => c.handle_result(window.id, "hello there everyone and", t),
            }
        }
    }
    assert_eq!(pause_windows.len(), 1);
    assert_eq!(ms_of(pause_windows[0].samples.len()), 200 + 3000 + 150);
    c.handle_result(
        pause_windows[0].id,
        "hello there everyone and welcome",
        4700,
    );
    let last = captions(&mut c).pop().expect("a final");
    assert!(last.is_final);
    assert_eq!(last.text.stable, "hello there everyone and welcome");
    assert_eq!(last.end_ms, 4000);
}

#[test]
fn a_failed_pause_decode_leaves_the_final_its_own_window() {
    let mut c = Captioner::new(LiveSettings::default());
    let handed = alice_speaks_then_pauses(&mut c);
    let pause = pause_of(&handed);
    c.handle_failure(pause.id);
    assert!(
        windows(&mut c, 3200)
            .iter()
            .all(|window| window.kind != WindowKind::Pause),
        "a failed pause is not tried again"
    );
    feed(&mut c, "a", 3200, 3600, false);
    let final_window = only_window(&mut c, 3600, WindowKind::Final);
    assert_eq!(ms_of(final_window.samples.len()), 200 + 2000 + 150);
}

#[test]
fn a_final_takes_the_worker_of_the_partial_started_last() {
    let mut c = Captioner::new(LiveSettings::default());
    // Alice's and then Bob's partials hold both workers.
    feed(&mut c, "a", 0, 600, true);
    let alice = windows(&mut c, 600);
    feed(&mut c, "b", 0, 700, true);
    let bob = windows(&mut c, 700);
    assert_eq!((alice.len(), bob.len()), (1, 1));
    // Carol said a few words before and stops: her final does not wait for either partial.
    feed(&mut c, "c", 0, 400, true);
    feed(&mut c, "c", 400, 900, false);
    let next = windows(&mut c, 900);
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(
        (next[0].kind, next[0].session.as_str()),
        (WindowKind::Final, "c")
    );
    assert_eq!(
        std::iter::from_fn(|| c.poll_cancelled()).collect::<Vec<_>>(),
        vec![bob[0].id],
        "the partial started last gives way"
    );
    assert_eq!(c.stats().partials_dropped, 1);
    // The cancelled worker's answer is ignored; Bob's partials go on once a worker is free.
    c.handle_failure(bob[0].id);
    c.handle_result(next[0].id, "yes", 950);
    assert!(captions(&mut c).iter().any(|caption| caption.is_final));
    feed(&mut c, "a", 600, 700, true);
    let mut t = 700;
    while t < 1600 {
        feed(&mut c, "a", t, t + FRAME_MS, true);
        feed(&mut c, "b", t, t + FRAME_MS, true);
        t += FRAME_MS;
    }
    let again = windows(&mut c, 1600);
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].kind, again[0].session.as_str()),
        (WindowKind::Partial, "b")
    );
    // Finals and pause windows are never cancelled: with both workers on them, a partial just waits.
    assert!(std::iter::from_fn(|| c.poll_cancelled()).next().is_none());
}

#[test]
fn a_pause_window_cancels_the_partial_of_its_own_utterance() {
    let mut c = Captioner::new(LiveSettings::default());
    feed(&mut c, "a", 0, 1000, true);
    let partial = windows(&mut c, 1000);
    assert_eq!(partial[0].kind, WindowKind::Partial);
    feed(&mut c, "a", 1000, 1200, false);
    only_window(&mut c, 1200, WindowKind::Pause);
    assert_eq!(c.poll_cancelled(), Some(partial[0].id));
    // Its answer, if one still comes, changes nothing.
    c.handle_result(partial[0].id, "stale words", 1250);
    assert!(captions(&mut c).is_empty());
}

#[test]
fn whisper_s_loops_are_taken_out_of_hypotheses() {
    use super::stabilise::without_repeats;
    for (heard, meant) in [
        (
            "let's take a short, let's take a short, let's take a short, let's take a",
            "let's take a short,",
        ),
        ("I think I think I think I think I think I", "I think"),
        (
            "Can you share your screen? Click that report. Click that report. Click that report.",
            "Can you share your screen? Click that report.",
        ),
        ("please, please, please, please,", "please,"),
        ("lord lord, lord lord, lord lord lord lord lord", "lord"),
        // What people do say stays.
        ("no, no, that is fine", "no, no, that is fine"),
        ("it was very very good", "it was very very good"),
        (
            "Good morning everyone, let's start with the status update.",
            "Good morning everyone, let's start with the status update.",
        ),
        ("", ""),
    ] {
        assert_eq!(without_repeats(heard), meant, "{heard:?}");
    }
}

#[test]
fn a_looping_hypothesis_is_shown_once() {
    let mut c = Captioner::new(LiveSettings::default());
    feed(&mut c, "a", 0, 1000, true);
    let partial = windows(&mut c, 1000);
    c.handle_result(
        partial[0].id,
        "we should. we should. we should. we should.",
        1100,
    );
    let shown = captions(&mut c);
    assert_eq!(shown[0].text.text(), "we should.");
}
