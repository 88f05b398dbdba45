//! The media thread end to end: inputs through the channel, a finished MP4 out, errors and backpressure visible.

use std::path::Path;
use std::time::Duration;

use calls_recorder::mixer::{samples_from_duration, MixerConfig};
use calls_recorder::test_signal::{bar_pattern, tone};
use calls_recorder::{MediaInput, MediaWorker, Profile, ProfileName};

mod common;
use common::ffprobe;

fn stream_kinds(path: &Path) -> Vec<String> {
    ffprobe(
        path,
        &["-show_entries", "stream=codec_name", "-of", "csv=p=0"],
    )
    .lines()
    .map(|l| l.trim_matches(',').to_owned())
    .collect()
}

#[test]
fn inputs_sent_to_the_worker_end_up_in_a_playable_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("recording.mp4");
    let worker = MediaWorker::spawn(
        path.clone(),
        Profile::named(ProfileName::Low),
        MixerConfig::default(),
        256,
    )
    .expect("worker starts");
    let mut now = Duration::ZERO;
    let mut accepted = 0;
    let mut total = 0;
    while now < Duration::from_secs(3) {
        let pcm = tone(440.0, 0.3, samples_from_duration(now), 960);
        let mut inputs = vec![
            MediaInput::Audio {
                speaker: "alice".into(),
                at: now,
                pcm,
            },
            MediaInput::Tick { now },
        ];
        if now.as_millis() % 100 == 0 {
            inputs.push(MediaInput::Video {
                sharer: "bob".into(),
                at: now,
                frame: bar_pattern(640, 360, total),
            });
        }
        for input in inputs {
            total += 1;
            accepted += u64::from(worker.send(input));
        }
        // Roughly real time, so the worker keeps up with a 256-entry queue.
        std::thread::sleep(Duration::from_millis(2));
        now += Duration::from_millis(20);
    }
    let progress = worker.progress();
    assert_eq!(
        progress.inputs_dropped,
        total - accepted,
        "every refused send is counted"
    );
    let summary = worker
        .finish(Duration::from_secs(3))
        .expect("file finalised");
    // 30 distinct share frames in 45 ticks: the repeated ticks are not encoded again (variable frame rate).
    assert!(
        summary.video_frames > 20 && summary.video_frames < 45,
        "{summary:?}"
    );
    assert_eq!(summary.audio_samples, 3 * 48_000);
    assert_eq!(stream_kinds(&path), ["h264", "aac"]);
}

#[test]
fn a_bad_output_path_fails_at_spawn() {
    let error = MediaWorker::spawn(
        "/nonexistent-dir/recording.mp4".into(),
        Profile::default(),
        MixerConfig::default(),
        8,
    )
    .err()
    .expect("cannot write there")
    .to_string();
    assert!(error.contains("creating the mp4 file"), "{error}");
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flood.mp4");
    let worker = MediaWorker::spawn(
        path,
        Profile::named(ProfileName::Low),
        MixerConfig::default(),
        1,
    )
    .expect("worker starts");
    let mut refused = 0;
    for index in 0..200u64 {
        let frame = bar_pattern(1920, 1080, index);
        let at = Duration::from_millis(index * 10);
        if !worker.send(MediaInput::Video {
            sharer: "bob".into(),
            at,
            frame,
        }) {
            refused += 1;
        }
        if !worker.send(MediaInput::Tick { now: at }) {
            refused += 1;
        }
    }
    assert_eq!(worker.progress().inputs_dropped, refused);
    worker
        .finish(Duration::from_secs(2))
        .expect("file finalised");
}
