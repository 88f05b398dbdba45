//! The backdrop in a real recording: three people, nobody shares, two of them speak in turn (real tones through
//! the recording's audio path, 20 ms packets, a tick every 20 ms). Frames decoded from the MP4 with the ffmpeg
//! CLI show each person's tile, and the speaker's tile outlined exactly while they speak.

use std::time::Duration;

use calls_recorder::backdrop::{grid, Person, Rect, HIGHLIGHT, TILE};
use calls_recorder::mixer::samples_from_duration;
use calls_recorder::test_signal::tone;
use calls_recorder::{I420Frame, Profile, ProfileName, Recording, Yuv};

mod common;
use common::frame_at;

const PACKET: Duration = Duration::from_millis(20);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn close(actual: Yuv, expected: Yuv, tolerance: u8) -> bool {
    actual.y.abs_diff(expected.y) <= tolerance
        && actual.u.abs_diff(expected.u) <= tolerance
        && actual.v.abs_diff(expected.v) <= tolerance
}

/// The colour in the middle of a tile's left border (averaged over a few pixels: the file is H.264).
fn left_border(frame: &I420Frame, tile: Rect, border: u32) -> Yuv {
    let x = tile.x + border / 2;
    let rows = tile.y + tile.height / 3..tile.y + 2 * tile.height / 3;
    let count = rows.len() as u32;
    let (mut y, mut u, mut v) = (0, 0, 0);
    for row in rows {
        let p = frame.pixel(x, row).expect("inside the frame");
        (y, u, v) = (y + u32::from(p.y), u + u32::from(p.u), v + u32::from(p.v));
    }
    // Averages of u8 values fit in u8.
    Yuv {
        y: (y / count) as u8,
        u: (u / count) as u8,
        v: (v / count) as u8,
    }
}

#[test]
fn the_speakers_tile_is_outlined_while_they_speak() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("backdrop.mp4");
    let profile = Profile::named(ProfileName::Medium);
    let (width, height) = (profile.width, profile.height);
    let mut recording = Recording::create(&path, &profile).expect("recording starts");
    recording
        .handle_participants(&[
            Person::new("s-alice", "Alice"),
            Person::new("s-bob", "Bob"),
            Person::new("s-carol", "Carol"),
        ])
        .expect("a font is installed (fonts-dejavu-core)");
    // Alice speaks 1..3 s, Bob 4..6 s, Carol only coughs at 6.5 s (150 ms).
    let script = [
        ("s-alice", secs(1.0), secs(3.0)),
        ("s-bob", secs(4.0), secs(6.0)),
        ("s-carol", secs(6.5), secs(6.65)),
    ];
    let end = secs(9.0);
    let mut now = Duration::ZERO;
    while now < end {
        for (speaker, from, to) in script {
            if now >= from && now < to {
                let pcm = tone(300.0, 0.3, samples_from_duration(now), 960);
                recording
                    .handle_audio(speaker, now, &pcm)
                    .expect("three speakers fit");
            }
        }
        recording.tick(now).expect("encoding works");
        now += PACKET;
    }
    recording.finish(end).expect("finalised");

    let layout = grid(3, width, height);
    let lit = |t: f64| -> Vec<bool> {
        let frame = frame_at(&path, t, width, height);
        layout
            .tiles
            .iter()
            .map(|&tile| {
                let colour = left_border(&frame, tile, layout.border);
                if close(colour, HIGHLIGHT, 16) {
                    true
                } else {
                    assert!(close(colour, TILE, 16), "at {t} s a border is {colour:?}");
                    false
                }
            })
            .collect()
    };
    assert_eq!(lit(0.5), [false, false, false], "nobody speaks yet");
    assert_eq!(lit(2.0), [true, false, false], "Alice speaks");
    assert_eq!(lit(5.0), [false, true, false], "Bob speaks");
    assert_eq!(lit(7.0), [false, false, false], "a cough does not count");
    assert_eq!(lit(8.5), [false, false, false], "quiet again");
    // Highlight onset within a few frames of 300 ms after Alice started, not before.
    assert_eq!(lit(1.1), [false, false, false]);
    assert_eq!(lit(1.6), [true, false, false]);

    // Each tile shows its name: light text in the middle of every tile.
    let frame = frame_at(&path, 8.5, width, height);
    for tile in &layout.tiles {
        let inner = tile.inset(layout.padding);
        let text = (inner.y..inner.y + inner.height)
            .flat_map(|y| (inner.x..inner.x + inner.width).map(move |x| (x, y)))
            .filter(|&(x, y)| frame.pixel(x, y).is_some_and(|p| p.y > 170))
            .count();
        assert!(text > 50, "a name in {tile:?}: {text} text pixels");
    }
    assert!(close(
        frame.pixel(4, 4).expect("inside"),
        Yuv::BACKGROUND,
        4
    ));
}
