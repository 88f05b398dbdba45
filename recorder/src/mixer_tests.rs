//! Unit tests for the mixer: placement, gaps, jitter, loss, limiting and speaker lifecycle.

use super::*;

const RATE: f32 = AUDIO_SAMPLE_RATE as f32;

fn tone(frequency: f32, amplitude: f32, start: u64, len: usize) -> Vec<i16> {
    (0..len)
        .map(|i| {
            let t = (start + i as u64) as f32 / RATE;
            (amplitude * 32767.0 * (2.0 * std::f32::consts::PI * frequency * t).sin()) as i16
        })
        .collect()
}

fn no_jitter() -> Mixer {
    Mixer::new(MixerConfig {
        jitter_window_samples: 0,
        ..MixerConfig::default()
    })
}

/// Feeds `total` samples of `pcm` to `speaker` in 20 ms packets starting at `start`.
fn feed_packets(mixer: &mut Mixer, speaker: &str, start: u64, pcm: &[i16]) {
    for (index, packet) in pcm.chunks(960).enumerate() {
        mixer
            .handle_audio(speaker, start + (index * 960) as u64, packet)
            .unwrap();
    }
}

fn drain(mixer: &mut Mixer, now: u64) -> Vec<MixedFrame> {
    std::iter::from_fn(|| mixer.poll_frame(now)).collect()
}

#[test]
fn time_conversions_round_trip() {
    assert_eq!(samples_from_duration(Duration::from_millis(20)), 960);
    assert_eq!(samples_from_duration(Duration::from_secs(3)), 144_000);
    assert_eq!(duration_from_samples(48_000), Duration::from_secs(1));
}

#[test]
fn a_single_quiet_voice_passes_through_unchanged() {
    let mut mixer = no_jitter();
    let pcm = tone(440.0, 0.5, 0, FRAME_SAMPLES * 4);
    feed_packets(&mut mixer, "alice", 0, &pcm);
    let frames = drain(&mut mixer, (FRAME_SAMPLES * 4) as u64);
    assert_eq!(frames.len(), 4);
    let out: Vec<i16> = frames.iter().flat_map(|f| f.samples.clone()).collect();
    assert_eq!(out, pcm);
    assert_eq!(mixer.stats().frames_limited, 0);
}

#[test]
fn frames_are_contiguous_and_silent_where_nobody_speaks() {
    let mut mixer = no_jitter();
    // Speech only in the third frame.
    let start = 2 * FRAME_SAMPLES as u64;
    mixer
        .handle_audio("alice", start, &tone(300.0, 0.3, start, FRAME_SAMPLES))
        .unwrap();
    let frames = drain(&mut mixer, 5 * FRAME_SAMPLES as u64);
    let starts: Vec<u64> = frames.iter().map(|f| f.start_sample).collect();
    assert_eq!(starts, [0, 1024, 2048, 3072, 4096]);
    let silent: Vec<bool> = frames.iter().map(MixedFrame::is_silent).collect();
    assert_eq!(silent, [true, true, false, true, true]);
    assert!(frames[0].samples.iter().all(|&s| s == 0));
    assert!(frames[3].samples.iter().all(|&s| s == 0));
    assert!(frames.iter().all(|f| f.samples.len() == FRAME_SAMPLES));
}

#[test]
fn output_waits_for_the_jitter_window() {
    let mut mixer = Mixer::new(MixerConfig::default());
    let jitter = MixerConfig::default().jitter_window_samples;
    assert!(mixer
        .poll_frame(jitter + FRAME_SAMPLES as u64 - 1)
        .is_none());
    assert!(mixer.poll_frame(jitter + FRAME_SAMPLES as u64).is_some());
}

#[test]
fn reordered_packets_within_the_window_land_in_place() {
    let mut mixer = Mixer::new(MixerConfig::default());
    let pcm = tone(500.0, 0.4, 0, 960 * 4);
    let packets: Vec<&[i16]> = pcm.chunks(960).collect();
    for index in [1usize, 0, 3, 2] {
        mixer
            .handle_audio("bob", (index * 960) as u64, packets[index])
            .unwrap();
    }
    let jitter = MixerConfig::default().jitter_window_samples;
    let frames = drain(&mut mixer, jitter + 960 * 4);
    let out: Vec<i16> = frames.iter().flat_map(|f| f.samples.clone()).collect();
    assert_eq!(&out[..960 * 3], &pcm[..960 * 3]);
    assert_eq!(mixer.stats().samples_late, 0);
}

#[test]
fn packets_after_their_frame_was_emitted_are_dropped_and_counted() {
    let mut mixer = no_jitter();
    assert_eq!(drain(&mut mixer, 2048).len(), 2);
    // Half of this chunk is before the output position.
    mixer.handle_audio("carol", 1024, &[1000; 2048]).unwrap();
    assert_eq!(mixer.stats().samples_late, 1024);
    let frame = mixer.poll_frame(3072).unwrap();
    assert!(frame.samples.iter().all(|&s| s == 1000));
}

#[test]
fn timestamps_far_in_the_future_are_dropped_not_buffered() {
    let mut mixer = no_jitter();
    mixer
        .handle_audio("dave", 48_000 * 60, &[500; 960])
        .unwrap();
    assert_eq!(mixer.stats().samples_too_early, 960);
    assert!(drain(&mut mixer, 48_000).iter().all(MixedFrame::is_silent));
}

#[test]
fn duplicate_packets_are_not_added_twice() {
    let mut mixer = no_jitter();
    mixer.handle_audio("erin", 0, &[1000; 1024]).unwrap();
    mixer.handle_audio("erin", 0, &[1000; 1024]).unwrap();
    let frame = mixer.poll_frame(1024).unwrap();
    assert!(frame.samples.iter().all(|&s| s == 1000));
    assert_eq!(mixer.stats().samples_duplicate, 1024);
}

#[test]
fn two_voices_are_summed() {
    let mut mixer = no_jitter();
    let a = tone(440.0, 0.2, 0, FRAME_SAMPLES);
    let b = tone(660.0, 0.2, 0, FRAME_SAMPLES);
    mixer.handle_audio("a", 0, &a).unwrap();
    mixer.handle_audio("b", 0, &b).unwrap();
    let frame = mixer.poll_frame(1024).unwrap();
    assert_eq!(frame.voices, 2);
    for ((out, x), y) in frame.samples.iter().zip(&a).zip(&b) {
        assert_eq!(i32::from(*out), i32::from(*x) + i32::from(*y));
    }
}

#[test]
fn loud_voices_are_limited_without_wrapping() {
    let mut mixer = no_jitter();
    // Three in-phase full-scale square waves: a plain i16 sum would wrap to negative values.
    let square: Vec<i16> = (0..FRAME_SAMPLES)
        .map(|i| if (i / 32) % 2 == 0 { 32767 } else { -32768 })
        .collect();
    for speaker in ["a", "b", "c"] {
        mixer.handle_audio(speaker, 0, &square).unwrap();
    }
    let frame = mixer.poll_frame(1024).unwrap();
    for (out, input) in frame.samples.iter().zip(&square) {
        assert_eq!(out.signum(), input.signum(), "no sign flip");
        assert!(out.unsigned_abs() > 30_000, "stays loud: {out}");
    }
    assert_eq!(mixer.stats().frames_limited, 1);
}

#[test]
fn limiter_is_monotonic_and_bounded() {
    let mut previous = i16::MIN;
    for sum in (-200_000..=200_000).step_by(97) {
        let (out, _) = soft_limit(sum);
        assert!(out >= previous, "monotonic at {sum}");
        previous = out;
    }
    assert_eq!(soft_limit(12_000), (12_000, false));
    assert!(soft_limit(i32::MAX).0 > 32_000);
    assert!(
        (-32_767..-32_000).contains(&soft_limit(i32::MIN).0),
        "never reaches -32768"
    );
}

#[test]
fn a_leaving_speaker_is_drained_then_released() {
    let mut mixer = no_jitter();
    mixer.handle_speaker_joined("frank").unwrap();
    mixer.handle_audio("frank", 0, &[700; 2048]).unwrap();
    mixer.handle_speaker_left("frank");
    assert_eq!(mixer.speaker_count(), 1, "still has buffered audio");
    let frames = drain(&mut mixer, 2048);
    assert!(frames.iter().all(|f| f.voices == 1));
    assert_eq!(mixer.speaker_count(), 0);
    // Rejoining works like a new speaker.
    mixer.handle_audio("frank", 2048, &[700; 1024]).unwrap();
    assert_eq!(mixer.poll_frame(3072).unwrap().voices, 1);
}

#[test]
fn muted_speakers_are_ignored_until_unmuted() {
    let mut mixer = no_jitter();
    mixer.handle_speaker_joined("gina").unwrap();
    mixer.handle_speaker_muted("gina", true);
    mixer.handle_audio("gina", 0, &[900; 1024]).unwrap();
    assert!(mixer.poll_frame(1024).unwrap().is_silent());
    mixer.handle_speaker_muted("gina", false);
    mixer.handle_audio("gina", 1024, &[900; 1024]).unwrap();
    assert!(!mixer.poll_frame(2048).unwrap().is_silent());
    assert_eq!(mixer.stats().samples_muted, 1024);
}

#[test]
fn speaker_limit_is_a_clear_error() {
    let mut mixer = Mixer::new(MixerConfig {
        max_speakers: 2,
        ..MixerConfig::default()
    });
    mixer.handle_audio("a", 0, &[1]).unwrap();
    mixer.handle_audio("b", 0, &[1]).unwrap();
    let err = mixer.handle_audio("c", 0, &[1]).unwrap_err();
    assert!(err.to_string().contains("at most 2"), "{err}");
}

#[test]
fn packet_loss_becomes_silence_in_the_gap_only() {
    let mut mixer = no_jitter();
    let pcm = tone(440.0, 0.3, 0, 960 * 5);
    for (index, packet) in pcm.chunks(960).enumerate() {
        if index != 2 {
            mixer
                .handle_audio("h", (index * 960) as u64, packet)
                .unwrap();
        }
    }
    let out: Vec<i16> = drain(&mut mixer, 960 * 5)
        .iter()
        .flat_map(|f| f.samples.clone())
        .collect();
    assert_eq!(&out[..1920], &pcm[..1920]);
    assert!(out[1920..2880].iter().all(|&s| s == 0));
    assert_eq!(&out[2880..4096], &pcm[2880..4096]);
}
