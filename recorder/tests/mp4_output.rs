//! End-to-end checks of the media core against real FFmpeg: encode synthetic calls to MP4 and inspect the
//! files with `ffprobe` and `ffmpeg` the way a user would (streams, size, rate, duration, sound, picture).

use std::path::Path;
use std::time::Duration;

use calls_recorder::backdrop::Person;
use calls_recorder::mixer::{samples_from_duration, MixerConfig};
use calls_recorder::test_signal::{bar_pattern, tone, BAR_COLOURS};
use calls_recorder::{I420Frame, Profile, ProfileName, Recording, Yuv};
use serde_json::Value;

mod common;
use common::{decode_audio, ffmpeg, ffprobe, ffprobe_json, frame_at};

const RATE: usize = 48_000;
const PACKET: Duration = Duration::from_millis(20);

/// The scripted call: who speaks when, and when the screen is shared.
struct Script {
    alice: (Duration, Duration, f64),
    bob: (Duration, Duration, f64),
    share: (Duration, Duration),
    end: Duration,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn script() -> Script {
    Script {
        alice: (secs(1.0), secs(3.0), 440.0),
        bob: (secs(5.0), secs(7.0), 1000.0),
        share: (secs(3.0), secs(6.0)),
        end: secs(10.0),
    }
}

/// Plays the script into a recording the way the job shell would: 20 ms voice packets, a 15 fps share of a
/// 4:3 screen, a tick every 20 ms; one packet in ten arrives 40 ms late (within the jitter window).
fn record(path: &Path, profile: &Profile, script: &Script) -> calls_recorder::Progress {
    let mut recording =
        Recording::with_mixer(path, profile, MixerConfig::default()).expect("recording starts");
    let share_interval = secs(1.0 / 15.0);
    let mut next_share = script.share.0;
    let mut share_index = 0;
    let mut late: Vec<(&str, Duration, Vec<i16>)> = Vec::new();
    let mut now = Duration::ZERO;
    let mut packet_index = 0u64;
    while now < script.end {
        for (name, (start, stop, frequency)) in [("alice", script.alice), ("bob", script.bob)] {
            if now >= start && now < stop {
                let pcm = tone(frequency, 0.4, samples_from_duration(now), RATE / 50);
                if packet_index % 10 == 3 {
                    late.push((name, now, pcm));
                } else {
                    recording
                        .handle_audio(name, now, &pcm)
                        .expect("two speakers fit");
                }
            }
        }
        // Late packets arrive two packets after they were due.
        let (due, waiting): (Vec<_>, Vec<_>) = late
            .drain(..)
            .partition(|(_, at, _)| *at + 2 * PACKET <= now);
        late = waiting;
        for (name, at, pcm) in due {
            recording
                .handle_audio(name, at, &pcm)
                .expect("two speakers fit");
        }
        while next_share < script.share.1 && next_share <= now {
            recording.handle_video("carol", next_share, bar_pattern(1024, 768, share_index));
            share_index += 1;
            next_share += share_interval;
        }
        if now == script.share.1 {
            recording.handle_share_stopped("carol", now);
        }
        recording.tick(now).expect("encoding works");
        now += PACKET;
        packet_index += 1;
    }
    let progress = recording.progress();
    let summary = recording.finish(script.end).expect("the file is finalised");
    assert!(summary.bytes > 10_000, "{summary:?}");
    progress
}

/// RMS level and zero-crossing frequency of the decoded audio between two times.
fn window(samples: &[i16], from: f64, to: f64) -> (f64, f64) {
    let slice = &samples[(from * RATE as f64) as usize..(to * RATE as f64) as usize];
    let energy: f64 = slice.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / slice.len() as f64).sqrt();
    let crossings = slice
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    (rms, crossings as f64 / 2.0 / (to - from))
}

fn close(actual: Yuv, expected: Yuv, tolerance: u8) -> bool {
    actual.y.abs_diff(expected.y) <= tolerance
        && actual.u.abs_diff(expected.u) <= tolerance
        && actual.v.abs_diff(expected.v) <= tolerance
}

#[test]
fn a_scripted_call_becomes_a_playable_mp4_with_the_right_sound_and_picture() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("recording.mp4");
    let profile = Profile::named(ProfileName::Medium);
    let script = script();
    let progress = record(&path, &profile, &script);
    assert_eq!(progress.video_frames_dropped, 0);
    assert_eq!(
        progress.audio_samples_dropped, 0,
        "late packets stayed within the jitter window"
    );
    assert!(progress.share_frames_received >= 44);

    let probe = ffprobe_json(&path);
    let streams = probe["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 2, "{probe}");
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("an audio stream");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["pix_fmt"], "yuv420p");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(1280), Some(720))
    );
    // Variable frame rate on the profile's 1/20 s grid: the moving share fills consecutive ticks.
    assert_eq!(video["r_frame_rate"], "20/1");
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["sample_rate"], "48000");
    assert_eq!(audio["channels"], 1);
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!((duration - 10.0).abs() < 1.0, "duration {duration}");
    let stream_duration = |s: &Value| {
        s["duration"]
            .as_str()
            .and_then(|d| d.parse::<f64>().ok())
            .expect("stream duration")
    };
    let drift = (stream_duration(video) - stream_duration(audio)).abs();
    assert!(drift < 0.1, "audio and video lengths differ by {drift} s");
    assert_eq!(
        probe["format"]["format_name"]
            .as_str()
            .map(|f| f.contains("mp4")),
        Some(true)
    );

    // Sound: each tone in its window at its own pitch, silence elsewhere.
    let samples = decode_audio(&path);
    assert!(
        (samples.len() as f64 / RATE as f64 - 10.0).abs() < 0.1,
        "{} samples",
        samples.len()
    );
    let (alice_rms, alice_pitch) = window(&samples, 1.2, 2.8);
    let (bob_rms, bob_pitch) = window(&samples, 5.2, 6.8);
    assert!(
        alice_rms > 5000.0 && bob_rms > 5000.0,
        "tones present: {alice_rms} {bob_rms}"
    );
    assert!(
        (alice_pitch - 440.0).abs() < 20.0,
        "alice at {alice_pitch} Hz"
    );
    assert!((bob_pitch - 1000.0).abs() < 40.0, "bob at {bob_pitch} Hz");
    for (from, to) in [(0.0, 0.9), (3.2, 4.8), (7.2, 9.9)] {
        let (rms, _) = window(&samples, from, to);
        assert!(rms < 50.0, "silence expected in {from}..{to}, rms {rms}");
    }

    // Picture: the pattern while sharing (letterboxed 4:3 → bars at x < 160 and x ≥ 1120), background otherwise.
    let background = Yuv::BACKGROUND;
    for at in [1.0, 2.5, 7.0, 9.5] {
        let frame = frame_at(&path, at, 1280, 720);
        for (x, y) in [(10, 10), (640, 360), (1270, 710), (200, 100)] {
            let pixel = frame.pixel(x, y).expect("inside");
            assert!(
                close(pixel, background, 4),
                "background at {at}s ({x},{y}): {pixel:?}"
            );
        }
    }
    let first = frame_at(&path, 3.5, 1280, 720);
    let later = frame_at(&path, 5.5, 1280, 720);
    for frame in [&first, &later] {
        assert!(
            close(frame.pixel(40, 300).expect("inside"), Yuv::BLACK, 4),
            "left bar black"
        );
        assert!(
            close(frame.pixel(1240, 300).expect("inside"), Yuv::BLACK, 4),
            "right bar black"
        );
        for (index, (r, g, b)) in BAR_COLOURS.iter().enumerate() {
            // Source bars are 256 px of 1024 → 240 px of 960 from x = 160.
            let x = 160 + 120 + 240 * index as u32;
            let pixel = frame.pixel(x, 150).expect("inside");
            assert!(
                close(pixel, Yuv::from_rgb(*r, *g, *b), 12),
                "bar {index} at {x}: {pixel:?}"
            );
        }
    }
    assert_ne!(
        first.planes()[0][720 * 1280 / 2..],
        later.planes()[0][720 * 1280 / 2..],
        "the block moved"
    );
}

#[test]
fn keyframes_come_every_two_seconds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keyframes.mp4");
    let profile = Profile::named(ProfileName::Low);
    let mut recording = Recording::create(&path, &profile).expect("recording starts");
    recording.tick(secs(6.0)).expect("encoding works");
    recording.finish(secs(6.0)).expect("finalised");
    let out = ffprobe(
        &path,
        &[
            "-select_streams",
            "v",
            "-skip_frame",
            "nokey",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ],
    );
    let times: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split(',').next()?.trim().parse().ok())
        .collect();
    assert_eq!(times.len(), 3, "{times:?} from {out}");
    for (index, time) in times.iter().enumerate() {
        assert!((time - 2.0 * index as f64).abs() < 0.01, "{times:?}");
    }
}

#[test]
fn a_very_short_recording_still_plays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("short.mp4");
    let recording =
        Recording::create(&path, &Profile::named(ProfileName::Low)).expect("recording starts");
    recording.finish(secs(0.3)).expect("finalised");
    let probe = ffprobe_json(&path);
    assert_eq!(
        probe["streams"].as_array().map(Vec::len),
        Some(2),
        "{probe}"
    );
    let samples = decode_audio(&path);
    assert!(samples.iter().all(|&s| s == 0), "silence");
}

#[test]
fn high_profile_writes_1080p() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("high.mp4");
    let profile = Profile::named(ProfileName::High);
    let mut recording = Recording::create(&path, &profile).expect("recording starts");
    recording.handle_video("dana", secs(0.0), bar_pattern(1920, 1080, 0));
    recording.tick(secs(1.0)).expect("encoding works");
    recording.finish(secs(1.0)).expect("finalised");
    let probe = ffprobe_json(&path);
    let video = &probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .find(|s| s["codec_type"] == "video")
        .cloned()
        .expect("video");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(1920), Some(1080))
    );
    let frame = frame_at(&path, 0.5, 1920, 1080);
    let (r, g, b) = BAR_COLOURS[0];
    assert!(close(
        frame.pixel(100, 100).expect("inside"),
        Yuv::from_rgb(r, g, b),
        12
    ));
}

#[test]
fn an_unwritable_path_is_a_clear_error() {
    let error = Recording::create(
        Path::new("/nonexistent-dir/recording.mp4"),
        &Profile::default(),
    )
    .err()
    .expect("cannot create a file in a missing directory")
    .to_string();
    assert!(error.contains("creating the mp4 file"), "{error}");
}

#[test]
fn progress_counts_what_was_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("progress.mp4");
    let mut recording =
        Recording::create(&path, &Profile::named(ProfileName::Low)).expect("recording starts");
    recording.handle_video("erin", secs(0.5), bar_pattern(640, 360, 0));
    recording
        .handle_audio("frank", secs(0.5), &tone(440.0, 0.3, 0, 960))
        .expect("fits");
    recording.tick(secs(2.0)).expect("encoding works");
    // Both arrive after their time was already encoded.
    recording
        .handle_audio("frank", secs(0.6), &tone(440.0, 0.3, 0, 960))
        .expect("fits");
    recording.handle_video("erin", secs(0.2), bar_pattern(640, 360, 1));
    let progress = recording.progress();
    assert_eq!(progress.audio_samples_dropped, 960);
    assert_eq!(progress.video_frames_dropped, 1);
    assert!(progress.sharing);
    assert!(progress.audio_frames_with_voice >= 1);
    let latency = recording.latency().as_secs_f64();
    assert!(
        (progress.seconds_recorded() - (2.0 - latency)).abs() < 0.1,
        "{progress:?}"
    );
    recording.finish(secs(2.0)).expect("finalised");
}

/// Video frame times (seconds) at which the picture's mean luma crosses `threshold`, from a tiny grey decode.
fn bright_frame_times(path: &Path, fps: f64, threshold: f64) -> Vec<f64> {
    let pictures = ffmpeg(
        path,
        &[
            "-vf",
            "scale=32:18",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
    );
    let means: Vec<f64> = pictures
        .chunks_exact(32 * 18)
        .map(|frame| frame.iter().map(|&p| f64::from(p)).sum::<f64>() / frame.len() as f64)
        .collect();
    means
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair[0] < threshold && pair[1] >= threshold)
        .map(|(index, _)| (index + 1) as f64 / fps)
        .collect()
}

/// Times (seconds) at which the audio goes from silence to a loud tone.
fn tone_onsets(samples: &[i16]) -> Vec<f64> {
    let mut onsets = Vec::new();
    let mut quiet_since = 0usize;
    for (index, sample) in samples.iter().enumerate() {
        if sample.unsigned_abs() > 2000 {
            if index - quiet_since > RATE / 2 {
                onsets.push(index as f64 / RATE as f64);
            }
            quiet_since = index;
        }
    }
    onsets
}

#[test]
fn audio_and_video_stay_in_sync_over_a_minute() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sync.mp4");
    let profile = Profile::named(ProfileName::Low);
    let mut recording = Recording::create(&path, &profile).expect("recording starts");
    // A white flash and a beep at the same media time, near the start and near the end.
    let events = [secs(5.0), secs(55.0)];
    let flash = I420Frame::filled(640, 360, Yuv::from_rgb(255, 255, 255));
    let mut now = Duration::ZERO;
    let end = secs(60.0);
    while now < end {
        for start in events {
            if now >= start && now < start + secs(1.0) {
                let pcm = tone(700.0, 0.5, samples_from_duration(now), RATE / 50);
                recording.handle_audio("beeper", now, &pcm).expect("fits");
            }
            if now == start {
                // As in a call: `screen_on` arrives before the new share's first frame.
                recording.handle_share_started("flasher");
                recording.handle_video("flasher", now, flash.clone());
            }
            if now == start + secs(1.0) {
                recording.handle_share_stopped("flasher", now);
            }
        }
        recording.tick(now).expect("encoding works");
        now += PACKET;
    }
    recording.finish(end).expect("finalised");

    let flashes = bright_frame_times(&path, f64::from(profile.fps), 128.0);
    let beeps = tone_onsets(&decode_audio(&path));
    eprintln!("flashes at {flashes:?} s, beeps at {beeps:?} s");
    assert_eq!(flashes.len(), 2, "{flashes:?}");
    assert_eq!(beeps.len(), 2, "{beeps:?}");
    for ((flash, beep), expected) in flashes.iter().zip(&beeps).zip([5.0, 55.0]) {
        assert!(
            (flash - expected).abs() < 0.07,
            "flash at {flash}, expected {expected}"
        );
        assert!(
            (beep - expected).abs() < 0.05,
            "beep at {beep}, expected {expected}"
        );
        assert!(
            (flash - beep).abs() < 0.1,
            "out of sync: flash {flash}, beep {beep}"
        );
    }
}

#[test]
fn participant_names_show_while_nobody_shares() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("names.mp4");
    let mut recording =
        Recording::create(&path, &Profile::named(ProfileName::Low)).expect("recording starts");
    recording
        .handle_participants(&[Person::new("alice", "Alice"), Person::new("bob", "Bob")])
        .expect("a font is installed (fonts-dejavu-core)");
    recording.handle_video("bob", secs(1.0), bar_pattern(1280, 720, 0));
    recording.handle_share_stopped("bob", secs(2.0));
    recording.tick(secs(3.0)).expect("encoding works");
    recording.finish(secs(3.0)).expect("finalised");
    let text_pixels = |frame: &I420Frame| {
        // The middle band, where the names are; background and bars are dark, text is light grey.
        frame.planes()[0][300 * 1280..420 * 1280]
            .iter()
            .filter(|&&y| y > 150)
            .count()
    };
    let before = frame_at(&path, 0.5, 1280, 720);
    let during = frame_at(&path, 1.5, 1280, 720);
    let after = frame_at(&path, 2.7, 1280, 720);
    assert!(text_pixels(&before) > 300, "names drawn before the share");
    assert!(text_pixels(&after) > 300, "names drawn again after it");
    assert!(close(
        before.pixel(20, 20).expect("inside"),
        Yuv::BACKGROUND,
        4
    ));
    let (r, g, b) = BAR_COLOURS[0];
    assert!(
        close(
            during.pixel(100, 100).expect("inside"),
            Yuv::from_rgb(r, g, b),
            12
        ),
        "the share replaces the names"
    );
}

#[test]
fn frames_still_in_flight_after_a_stop_do_not_freeze_the_share() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("late.mp4");
    let profile = Profile::named(ProfileName::Low);
    let mut recording = Recording::create(&path, &profile).expect("recording starts");
    let mut now = Duration::ZERO;
    while now <= secs(6.0) {
        if now == secs(1.0) {
            recording.handle_video("bob", now, bar_pattern(1280, 720, 0));
        }
        if now == secs(2.0) {
            recording.handle_share_stopped("bob", now);
        }
        if now == secs(2.1) {
            // Decoded after the `screen_off` event, stamped after the stop.
            recording.handle_video("bob", now, bar_pattern(1280, 720, 1));
        }
        if now == secs(4.0) {
            recording.handle_share_started("bob");
            recording.handle_video("bob", now, bar_pattern(1280, 720, 2));
        }
        recording.tick(now).expect("encoding works");
        now += PACKET;
    }
    recording.finish(now).expect("finalised");
    let (r, g, b) = BAR_COLOURS[0];
    let bar = Yuv::from_rgb(r, g, b);
    let at = |t: f64| {
        frame_at(&path, t, 1280, 720)
            .pixel(100, 100)
            .expect("inside")
    };
    assert!(close(at(1.5), bar, 12), "shared at 1.5 s: {:?}", at(1.5));
    assert!(
        close(at(3.0), Yuv::BACKGROUND, 4),
        "background after the stop, not a frozen share: {:?}",
        at(3.0)
    );
    assert!(close(at(5.0), bar, 12), "a new share shows: {:?}", at(5.0));
}
