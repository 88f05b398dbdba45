//! The variable frame rate, checked on the finished file with ffprobe and ffmpeg: a picture that does not change
//! is not encoded again, yet keyframes keep coming every 2 s of media time, the video track lasts to the end, and
//! what a player shows at any time is the right picture.

use std::path::Path;
use std::time::Duration;

use calls_recorder::test_signal::{bar_pattern, BAR_COLOURS};
use calls_recorder::{Profile, ProfileName, Recording, Yuv};

mod common;
use common::{decode_audio, ffprobe, frame_at};

/// Frames and keyframes in the video stream, the time of its last frame, and the file's duration, as ffprobe
/// counts them.
fn video_frames(path: &Path) -> (usize, usize, f64, f64) {
    let out = ffprobe(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_frames",
            "-show_entries",
            "frame=key_frame,pts_time",
            "-of",
            "csv=p=0",
        ],
    );
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    // One `key_frame,pts_time` line per frame.
    let frames: Vec<&String> = lines.iter().filter(|line| line.contains(',')).collect();
    let keys = frames.iter().filter(|l| l.starts_with('1')).count();
    let last = frames
        .last()
        .and_then(|l| l.split(',').nth(1))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0);
    let format = ffprobe(
        path,
        &["-show_entries", "format=duration", "-of", "csv=p=0"],
    );
    let duration = format.trim().parse().unwrap_or(0.0);
    (frames.len(), keys, last, duration)
}

#[test]
fn a_still_share_is_encoded_once_per_keyframe_interval_and_lasts_to_the_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("still.mp4");
    let profile = Profile::named(ProfileName::Medium);
    let mut recording = Recording::create(&path, &profile).expect("recording starts");
    let slide = bar_pattern(1920, 1080, 7);
    let end = Duration::from_secs(10);
    let mut now = Duration::ZERO;
    // A still slide arriving at about 15 fps for 10 s, as a sender keeps sending it.
    while now < end {
        if now.as_millis() % 60 == 0 {
            recording.handle_video("dana", now, slide.clone());
        }
        recording.tick(now).expect("encoding works");
        now += Duration::from_millis(20);
    }
    let progress = recording.progress();
    recording.finish(end).expect("finalised");
    assert!(
        progress.share_frames_unchanged > 100,
        "repeats recognised: {progress:?}"
    );
    let (frames, keyframes, last, duration) = video_frames(&path);
    // The slide at 0, a keyframe every 2 s (40 ticks), and the last tick.
    assert!((5..=9).contains(&frames), "{frames} frames");
    assert!(
        keyframes >= 5 && keyframes <= frames,
        "{keyframes} keyframes"
    );
    assert!((last - 9.95).abs() < 0.01, "last frame at {last} s");
    assert!((duration - 10.0).abs() < 0.1, "duration {duration}");
    let audio_seconds = decode_audio(&path).len() as f64 / 48_000.0;
    assert!(
        (audio_seconds - 10.0).abs() < 0.1,
        "audio lasts {audio_seconds} s"
    );
    // What a player shows late in the still stretch is the slide.
    let pixel = frame_at(&path, 9.0, 1280, 720)
        .pixel(60, 100)
        .expect("inside");
    let (r, g, b) = BAR_COLOURS[0];
    let bar = Yuv::from_rgb(r, g, b);
    assert!(
        pixel.y.abs_diff(bar.y) <= 12
            && pixel.u.abs_diff(bar.u) <= 12
            && pixel.v.abs_diff(bar.v) <= 12,
        "the slide at 9 s: {pixel:?}"
    );
}
