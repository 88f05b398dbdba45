//! Unit tests for the speaking detector: hysteresis, pauses, coughs, silence, several speakers, mute and leave.

use super::*;

use crate::test_signal::tone;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn detector() -> SpeakingDetector {
    SpeakingDetector::new(SpeakingConfig::default())
}

/// Feeds 20 ms packets of a 0.2-amplitude tone (speech level) from `from` to `to` (ms).
fn voice(detector: &mut SpeakingDetector, speaker: &str, from: u64, to: u64) {
    packets(detector, speaker, from, to, 0.2);
}

fn packets(detector: &mut SpeakingDetector, speaker: &str, from: u64, to: u64, amplitude: f64) {
    let mut at = from;
    while at < to {
        let start = at * 48;
        detector.handle_audio(speaker, ms(at), &tone(220.0, amplitude, start, 960));
        at += 20;
    }
}

/// Polls every 20 ms from `from` to `to` (ms) and returns the times at which the reported set changed.
fn changes(detector: &mut SpeakingDetector, from: u64, to: u64) -> Vec<(u64, Vec<String>)> {
    (from..=to)
        .step_by(20)
        .filter_map(|t| {
            detector
                .poll_speaking(ms(t))
                .map(|set| (t, set.into_iter().collect()))
        })
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn rms_of_a_sine_is_its_amplitude_over_root_two() {
    assert_eq!(rms(&[]), 0.0);
    assert_eq!(rms(&[0; 960]), 0.0);
    let level = rms(&tone(440.0, 0.5, 0, 4800));
    assert!(
        (level - 32767.0 * 0.5 / 2f32.sqrt()).abs() < 20.0,
        "{level}"
    );
}

#[test]
fn speech_is_highlighted_after_the_onset_and_released_after_the_hold() {
    let mut d = detector();
    voice(&mut d, "alice", 1000, 3000);
    // Loud from 1.0 s: highlighted once 300 ms of voice have been heard, quiet 800 ms after the last window.
    assert_eq!(
        changes(&mut d, 0, 5000),
        [(1300, names(&["alice"])), (3800, names(&[]))]
    );
}

#[test]
fn audio_ahead_of_the_picture_does_not_count_early() {
    let mut d = detector();
    // The whole utterance arrives before the picture reaches it (the jitter window in the real recording).
    voice(&mut d, "alice", 1000, 2000);
    assert_eq!(d.poll_speaking(ms(1000)), None);
    assert_eq!(d.poll_speaking(ms(1280)), None);
    assert!(d.poll_speaking(ms(1300)).is_some());
    assert!(d.is_speaking("alice"));
}

#[test]
fn pauses_between_words_do_not_flap() {
    let mut d = detector();
    // Words of 300..500 ms with pauses of 150..600 ms: one highlight for the whole sentence.
    for (from, to) in [(1000, 1400), (1550, 2000), (2400, 2700), (3300, 3800)] {
        voice(&mut d, "alice", from, to);
    }
    assert_eq!(
        changes(&mut d, 0, 6000),
        [(1300, names(&["alice"])), (4600, names(&[]))]
    );
}

#[test]
fn a_cough_does_not_highlight() {
    let mut d = detector();
    voice(&mut d, "bob", 1000, 1200);
    voice(&mut d, "bob", 3000, 3240);
    assert_eq!(changes(&mut d, 0, 5000), []);
}

#[test]
fn short_dips_inside_an_onset_still_count_but_long_gaps_restart_it() {
    let mut d = detector();
    // 200 ms, a 100 ms dip, 200 ms: one stretch, highlighted once 300 ms of it (dip included) were heard.
    voice(&mut d, "alice", 1000, 1200);
    voice(&mut d, "alice", 1300, 1500);
    // 200 ms, a 400 ms gap, 200 ms: two blips, never 300 ms of voice.
    voice(&mut d, "bob", 3000, 3200);
    voice(&mut d, "bob", 3600, 3800);
    assert_eq!(
        changes(&mut d, 0, 5000),
        [(1320, names(&["alice"])), (2300, names(&[]))]
    );
}

#[test]
fn silence_and_background_noise_never_highlight() {
    let mut d = detector();
    packets(&mut d, "alice", 0, 3000, 0.0);
    // About -50 dBFS: room noise left after a client's noise suppression.
    packets(&mut d, "bob", 0, 3000, 0.0045);
    assert_eq!(changes(&mut d, 0, 4000), []);
}

#[test]
fn several_speakers_overlap_and_release_independently() {
    let mut d = detector();
    voice(&mut d, "alice", 1000, 4000);
    voice(&mut d, "bob", 2000, 3000);
    assert_eq!(
        changes(&mut d, 0, 6000),
        [
            (1300, names(&["alice"])),
            (2300, names(&["alice", "bob"])),
            (3800, names(&["alice"])),
            (4800, names(&[])),
        ]
    );
}

#[test]
fn a_voice_that_stops_sending_goes_quiet_by_time() {
    let mut d = detector();
    voice(&mut d, "alice", 0, 1000);
    assert!(d.poll_speaking(ms(1000)).is_some());
    // No packets at all (DTX) and one late poll: quiet as soon as the hold has passed.
    assert_eq!(d.poll_speaking(ms(1700)), None);
    assert_eq!(d.poll_speaking(ms(10_000)), Some(BTreeSet::new()));
}

#[test]
fn a_new_utterance_after_an_unpolled_silence_needs_its_own_onset() {
    let mut d = detector();
    voice(&mut d, "alice", 0, 1000);
    // Silence of 2 s, then a cough; polled only once at the end.
    voice(&mut d, "alice", 3000, 3200);
    assert_eq!(
        d.poll_speaking(ms(500)),
        Some(names(&["alice"]).into_iter().collect())
    );
    assert_eq!(d.poll_speaking(ms(3300)), Some(BTreeSet::new()));
}

#[test]
fn muting_ends_the_highlight_and_ignores_comfort_noise() {
    let mut d = detector();
    voice(&mut d, "alice", 0, 2000);
    assert!(d.poll_speaking(ms(500)).is_some());
    d.handle_muted("alice", true);
    voice(&mut d, "alice", 2000, 4000);
    assert_eq!(d.poll_speaking(ms(520)), Some(BTreeSet::new()));
    assert_eq!(changes(&mut d, 540, 5000), []);
    d.handle_muted("alice", false);
    voice(&mut d, "alice", 5000, 6000);
    assert_eq!(changes(&mut d, 5000, 5400), [(5300, names(&["alice"]))]);
}

#[test]
fn a_speaker_who_leaves_is_forgotten() {
    let mut d = detector();
    voice(&mut d, "alice", 0, 2000);
    voice(&mut d, "bob", 0, 2000);
    assert_eq!(
        d.poll_speaking(ms(500)),
        Some(names(&["alice", "bob"]).into_iter().collect())
    );
    d.handle_left("bob");
    assert_eq!(
        d.poll_speaking(ms(520)),
        Some(names(&["alice"]).into_iter().collect())
    );
}

#[test]
fn the_queue_stays_bounded_when_nobody_polls() {
    let mut d = SpeakingDetector::new(SpeakingConfig {
        max_pending: 10,
        ..SpeakingConfig::default()
    });
    voice(&mut d, "alice", 0, 60_000);
    assert!(d.pending.len() <= 10);
    // What was applied early is not lost: the voice counts as speaking.
    assert!(d.poll_speaking(ms(59_000)).is_some());
}
