//! Unit tests for the compositor: placement, pacing, holding, share start/stop and resolution changes.

use super::*;

const RED: Yuv = Yuv::new(81, 90, 240);
const GREEN: Yuv = Yuv::new(145, 54, 34);

fn config() -> CompositorConfig {
    CompositorConfig {
        width: 64,
        height: 36,
        fps: 10,
        background: Yuv::BACKGROUND,
        max_pending: 8,
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Polls exactly one tick at its own time and returns (sharing, centre colour).
fn tick(compositor: &mut Compositor) -> (bool, Yuv) {
    let at = compositor.tick_time(compositor.next_tick());
    let out = compositor.poll_frame(at).expect("the tick is due");
    (
        out.sharing,
        out.frame.pixel(32, 18).expect("centre is inside"),
    )
}

#[test]
fn fit_keeps_aspect_and_centres_on_even_pixels() {
    assert_eq!(
        fit((1920, 1080), (1280, 720)),
        Placement {
            x: 0,
            y: 0,
            width: 1280,
            height: 720
        }
    );
    assert_eq!(
        fit((1024, 768), (1280, 720)),
        Placement {
            x: 160,
            y: 0,
            width: 960,
            height: 720
        }
    );
    assert_eq!(
        fit((720, 1280), (1280, 720)),
        Placement {
            x: 438,
            y: 0,
            width: 404,
            height: 720
        }
    );
    assert_eq!(
        fit((3000, 1000), (1280, 720)),
        Placement {
            x: 0,
            y: 146,
            width: 1280,
            height: 426
        }
    );
    let tiny = fit((1, 1), (1280, 720));
    assert!(tiny.width >= 2 && tiny.height >= 2);
    assert_eq!(
        fit((640, 480), (0, 1)),
        Placement {
            x: 0,
            y: 0,
            width: 2,
            height: 2
        }
    );
}

#[test]
fn nobody_sharing_gives_the_background_at_every_tick() {
    let mut compositor = Compositor::new(config());
    for expected in 0..5 {
        let now = compositor.tick_time(expected);
        let out = compositor.poll_frame(now).unwrap();
        assert_eq!(out.index, expected);
        assert!(!out.sharing);
        assert_eq!(out.frame.width(), 64);
        assert!(
            out.frame.pixel(0, 0) == Some(Yuv::BACKGROUND)
                && out.frame.pixel(63, 35) == Some(Yuv::BACKGROUND)
        );
    }
    assert!(
        compositor.poll_frame(ms(449)).is_none(),
        "tick 5 is at 500 ms"
    );
    assert_eq!(compositor.stats().ticks, 5);
}

#[test]
fn a_share_is_letterboxed_with_black_bars() {
    let mut compositor = Compositor::new(config());
    // 4:3 into 16:9: bars left and right.
    compositor.handle_frame(ms(0), I420Frame::filled(48, 36, RED));
    let out = compositor.poll_frame(ms(0)).unwrap();
    assert!(out.sharing);
    assert_eq!(out.frame.pixel(32, 18), Some(RED));
    assert_eq!(out.frame.pixel(0, 18), Some(Yuv::BLACK));
    assert_eq!(out.frame.pixel(63, 18), Some(Yuv::BLACK));
    assert_eq!(out.frame.pixel(8, 18), Some(RED), "share spans x 8..56");
}

#[test]
fn a_share_is_scaled_down_to_fit() {
    let mut compositor = Compositor::new(config());
    let mut share = I420Frame::filled(1280, 720, RED);
    // The right half green: after scaling the split sits at the output's centre.
    share.fill_rect(640, 0, 640, 720, GREEN);
    compositor.handle_frame(ms(0), share);
    let out = compositor.poll_frame(ms(0)).unwrap();
    let left = out.frame.pixel(10, 18).unwrap();
    let right = out.frame.pixel(54, 18).unwrap();
    assert!(
        left.y.abs_diff(RED.y) <= 2 && left.v.abs_diff(RED.v) <= 2,
        "{left:?}"
    );
    assert!(
        right.y.abs_diff(GREEN.y) <= 2 && right.u.abs_diff(GREEN.u) <= 2,
        "{right:?}"
    );
    assert_eq!(compositor.stats().frames_composed, 1);
}

#[test]
fn each_tick_shows_the_latest_frame_at_or_before_its_time() {
    let mut compositor = Compositor::new(config());
    compositor.handle_frame(ms(50), I420Frame::filled(64, 36, RED));
    compositor.handle_frame(ms(100), I420Frame::filled(64, 36, GREEN));
    assert_eq!(
        tick(&mut compositor),
        (false, Yuv::BACKGROUND),
        "tick 0 at 0 ms is before any frame"
    );
    assert_eq!(
        tick(&mut compositor),
        (true, GREEN),
        "tick 1 at 100 ms shows the 100 ms frame"
    );
    assert_eq!(
        compositor.stats().frames_skipped,
        1,
        "the 50 ms frame was never due on its own"
    );
}

#[test]
fn the_last_frame_is_held_across_gaps() {
    let mut compositor = Compositor::new(config());
    compositor.handle_frame(ms(0), I420Frame::filled(64, 36, RED));
    for _ in 0..20 {
        assert_eq!(tick(&mut compositor), (true, RED));
    }
    assert_eq!(
        compositor.stats().frames_composed,
        1,
        "a held frame is not scaled again"
    );
}

#[test]
fn share_stop_returns_to_the_background_at_its_time() {
    let mut compositor = Compositor::new(config());
    compositor.handle_frame(ms(0), I420Frame::filled(64, 36, RED));
    compositor.handle_share_stopped(ms(150));
    assert_eq!(tick(&mut compositor), (true, RED));
    assert_eq!(tick(&mut compositor), (true, RED));
    assert_eq!(tick(&mut compositor), (false, Yuv::BACKGROUND));
    // A new share starts again.
    compositor.handle_frame(ms(300), I420Frame::filled(64, 36, GREEN));
    assert_eq!(tick(&mut compositor), (true, GREEN));
}

#[test]
fn a_stop_placed_before_a_pending_frame_of_the_share_still_ends_it() {
    // Under load a frame's RTP placement can fall after the stop's arrival time: the stop then takes
    // effect with that frame, and the share does not stay frozen on it (ticks every 100 ms).
    let mut compositor = Compositor::new(config());
    compositor.handle_frame(ms(0), I420Frame::filled(64, 36, RED));
    compositor.handle_frame(ms(120), I420Frame::filled(64, 36, GREEN));
    compositor.handle_share_stopped(ms(60));
    assert_eq!(tick(&mut compositor), (true, RED));
    assert_eq!(tick(&mut compositor), (true, RED));
    assert_eq!(tick(&mut compositor), (false, Yuv::BACKGROUND));
    assert_eq!(tick(&mut compositor), (false, Yuv::BACKGROUND));
}

#[test]
fn resolution_changes_are_followed() {
    let mut compositor = Compositor::new(config());
    compositor.handle_frame(ms(0), I420Frame::filled(48, 36, RED));
    assert_eq!(
        compositor.poll_frame(ms(0)).unwrap().frame.pixel(4, 18),
        Some(Yuv::BLACK)
    );
    // Now a wide share: no side bars, bars top and bottom instead.
    compositor.handle_frame(ms(100), I420Frame::filled(333, 101, GREEN));
    let out = compositor.poll_frame(ms(100)).unwrap();
    let side = out.frame.pixel(2, 18).unwrap();
    assert!(side.y.abs_diff(GREEN.y) <= 2, "{side:?}");
    assert_eq!(out.frame.pixel(32, 0), Some(Yuv::BLACK));
}

#[test]
fn stale_frames_are_dropped_and_counted() {
    let mut compositor = Compositor::new(config());
    compositor.handle_frame(ms(100), I420Frame::filled(64, 36, GREEN));
    tick(&mut compositor);
    tick(&mut compositor);
    compositor.handle_frame(ms(50), I420Frame::filled(64, 36, RED));
    assert_eq!(tick(&mut compositor), (true, GREEN));
    assert_eq!(compositor.stats().frames_stale, 1);
}

#[test]
fn a_backlog_beyond_the_limit_drops_the_oldest() {
    let mut compositor = Compositor::new(config());
    for index in 0..12 {
        compositor.handle_frame(ms(index * 10), I420Frame::filled(64, 36, RED));
    }
    assert_eq!(compositor.stats().frames_overflow, 4);
    assert_eq!(compositor.pending.len(), 8);
}

#[test]
fn odd_sized_shares_compose() {
    let mut compositor = Compositor::new(config());
    compositor.handle_frame(ms(0), I420Frame::filled(101, 57, RED));
    let (sharing, centre) = tick(&mut compositor);
    assert!(sharing && centre.y.abs_diff(RED.y) <= 2);
}

#[test]
fn a_new_background_shows_when_nobody_shares() {
    let mut compositor = Compositor::new(config());
    compositor
        .set_background(I420Frame::filled(64, 36, GREEN))
        .unwrap();
    assert_eq!(tick(&mut compositor), (false, GREEN));
    compositor.handle_frame(ms(100), I420Frame::filled(64, 36, RED));
    assert_eq!(tick(&mut compositor), (true, RED));
    compositor
        .set_background(I420Frame::filled(64, 36, Yuv::BLACK))
        .unwrap();
    assert_eq!(
        tick(&mut compositor),
        (true, RED),
        "the share stays on screen"
    );
    compositor.handle_share_stopped(ms(300));
    assert_eq!(tick(&mut compositor), (false, Yuv::BLACK));
    let err = compositor
        .set_background(I420Frame::filled(8, 8, RED))
        .unwrap_err();
    assert!(err.to_string().contains("output is 64x36"), "{err}");
}

#[test]
fn ffmpeg_frames_round_trip_and_other_formats_are_refused() {
    let mut share = I420Frame::filled(101, 57, RED);
    share.fill_rect(50, 0, 51, 57, GREEN);
    let mut ffmpeg_frame = frame::Video::new(Pixel::YUV420P, 101, 57);
    copy_into_ffmpeg(&share, &mut ffmpeg_frame);
    assert_eq!(copy_from_ffmpeg(&ffmpeg_frame).unwrap(), share);
    let rgb = frame::Video::new(Pixel::RGB24, 4, 4);
    let err = copy_from_ffmpeg(&rgb).unwrap_err().to_string();
    assert!(err.contains("expected yuv420p"), "{err}");
}

/// Polls exactly one tick at its own time and returns whether its picture changed.
fn changed(compositor: &mut Compositor) -> bool {
    let at = compositor.tick_time(compositor.next_tick());
    compositor.poll_frame(at).expect("the tick is due").changed
}

#[test]
fn each_tick_says_whether_its_picture_changed() {
    let mut compositor = Compositor::new(config());
    assert!(changed(&mut compositor), "the first tick is new");
    assert!(!changed(&mut compositor), "the background held");
    let red = I420Frame::filled(64, 36, RED);
    compositor.handle_frame(ms(200), red.clone());
    assert!(changed(&mut compositor), "the share started");
    // A still slide keeps arriving: the same picture is neither scaled nor reported as new.
    compositor.handle_frame(ms(300), red.clone());
    compositor.handle_frame(ms(400), red);
    assert!(!changed(&mut compositor));
    assert!(!changed(&mut compositor));
    assert_eq!(compositor.stats().frames_unchanged, 2);
    assert_eq!(compositor.stats().frames_composed, 1);
    compositor.handle_frame(ms(500), I420Frame::filled(64, 36, GREEN));
    assert!(changed(&mut compositor), "a different picture");
    compositor.handle_share_stopped(ms(600));
    assert!(changed(&mut compositor), "back to the background");
    assert!(!changed(&mut compositor));
    // The same background again is no change; a new one (names) is.
    compositor
        .set_background(I420Frame::filled(64, 36, Yuv::BACKGROUND))
        .expect("right size");
    assert!(!changed(&mut compositor));
    compositor
        .set_background(I420Frame::filled(64, 36, GREEN))
        .expect("right size");
    assert!(changed(&mut compositor));
}

#[test]
fn a_share_that_restarts_with_the_same_picture_is_shown_again() {
    let mut compositor = Compositor::new(config());
    let red = I420Frame::filled(64, 36, RED);
    compositor.handle_frame(ms(0), red.clone());
    assert_eq!(tick(&mut compositor), (true, RED));
    compositor.handle_share_stopped(ms(100));
    assert!(!tick(&mut compositor).0);
    compositor.handle_frame(ms(200), red);
    let at = compositor.tick_time(compositor.next_tick());
    let out = compositor.poll_frame(at).expect("due");
    assert!(out.sharing && out.changed);
    assert_eq!(out.frame.pixel(32, 18), Some(RED));
}
