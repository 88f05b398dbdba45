//! Video compositor: screen-share frames in, a steady stream of output frames (configured size and fps) out.
//!
//! The share is scaled to fit the output with its aspect kept and black bars around it (letterbox). Between
//! input frames the last one is held; a share that stops (or never started) shows a plain dark background.
//! Pacing: the output frame for tick `k` (media time `k / fps`) shows the latest input event whose timestamp is
//! at or before that time, so a recording's picture lines up with its sound on the one media clock.
//!
//! Scaling uses FFmpeg's swscale through a cached context that is rebuilt only when the share's size changes.
//! A share frame identical to the one on screen (a still slide keeps arriving at the sender's rate) is not
//! scaled again, and every output frame says whether its picture changed since the previous tick, so the
//! encoder can skip repeats: holding a still screen costs almost nothing.
//!
//! **Invariant:** ticks are emitted in order without gaps; every tick produces exactly one output frame.

use std::collections::VecDeque;
use std::time::Duration;

use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame;
use ffmpeg_next::software::scaling;

use crate::error::{Error, Result};
use crate::frame::{I420Frame, Yuv};
use crate::profile::Profile;

/// Compositor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompositorConfig {
    /// Output width (even).
    pub width: u32,
    /// Output height (even).
    pub height: u32,
    /// Output frames per second.
    pub fps: u32,
    /// Colour of the whole frame while nobody shares.
    pub background: Yuv,
    /// Frames waiting for their tick; beyond this the oldest are dropped (the caller stopped polling).
    pub max_pending: usize,
}

impl CompositorConfig {
    /// Output size and rate from a profile, with the default background.
    pub fn from_profile(profile: &Profile) -> CompositorConfig {
        CompositorConfig {
            width: profile.width,
            height: profile.height,
            fps: profile.fps,
            background: Yuv::BACKGROUND,
            // About a second of a 30 fps share: far more than the jitter window needs.
            max_pending: 32,
        }
    }
}

/// Where the scaled share goes inside the output frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Left edge (even).
    pub x: u32,
    /// Top edge (even).
    pub y: u32,
    /// Scaled width (even, at least 2).
    pub width: u32,
    /// Scaled height (even, at least 2).
    pub height: u32,
}

/// Fits a `source` size into `output` keeping the aspect ratio, centred, on even coordinates (I420 chroma is
/// shared by 2×2 blocks, so odd edges would smear colour into the bars).
pub fn fit(source: (u32, u32), output: (u32, u32)) -> Placement {
    let (sw, sh) = (u64::from(source.0.max(1)), u64::from(source.1.max(1)));
    // An output below 2×2 cannot hold I420 chroma; treat it as 2×2 rather than fail.
    let (ow, oh) = (
        u64::from(output.0.max(2) & !1),
        u64::from(output.1.max(2) & !1),
    );
    let even = |v: u64, max: u64| (v & !1).clamp(2, max);
    let (width, height) = if sw * oh >= sh * ow {
        (ow, even((sh * ow + sw / 2) / sw, oh))
    } else {
        (even((sw * oh + sh / 2) / sh, ow), oh)
    };
    // Both fit inside the output, which is at most 8192 on a side.
    let x = ((ow - width) / 2) & !1;
    let y = ((oh - height) / 2) & !1;
    Placement {
        x: x as u32,
        y: y as u32,
        width: width as u32,
        height: height as u32,
    }
}

/// Counters for progress reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompositorStats {
    /// Share frames handed in.
    pub frames_received: u64,
    /// Share frames that were scaled into the output.
    pub frames_composed: u64,
    /// Frames replaced by a newer one before any tick showed them (input faster than output fps).
    pub frames_skipped: u64,
    /// Frames older than the one already on screen.
    pub frames_stale: u64,
    /// Frames dropped because too many were waiting.
    pub frames_overflow: u64,
    /// Frames swscale could not convert.
    pub scale_failures: u64,
    /// Frames identical to the share frame already on screen (not scaled again).
    pub frames_unchanged: u64,
    /// Output frames produced.
    pub ticks: u64,
}

/// One output frame.
#[derive(Debug)]
pub struct ComposedFrame<'a> {
    /// Tick number, which is also the frame's presentation index at the output fps.
    pub index: u64,
    /// The picture.
    pub frame: &'a I420Frame,
    /// Whether it shows a screen share (false: background).
    pub sharing: bool,
    /// Whether the picture differs from the previous tick's (always true for the first tick).
    pub changed: bool,
}

enum ShareEvent {
    Frame(I420Frame),
    Stopped,
}

/// A swscale context and its frames, kept while the share keeps its size.
struct CachedScaler {
    source: (u32, u32),
    target: (u32, u32),
    context: scaling::Context,
    input: frame::Video,
    output: frame::Video,
}

/// The compositor state machine. Not `Send` (swscale contexts are not): create it on the thread that drives it.
pub struct Compositor {
    config: CompositorConfig,
    pending: VecDeque<(Duration, ShareEvent)>,
    /// Timestamp of the event on screen, to recognise stale frames.
    shown_at: Option<Duration>,
    sharing: bool,
    /// What shows while nobody shares (plain colour, or names drawn by `backdrop`).
    background: I420Frame,
    output: I420Frame,
    /// The picture changed since the last produced frame.
    changed: bool,
    /// The share frame on screen, as received, to recognise an unchanged one.
    shown_share: Option<I420Frame>,
    scaler: Option<CachedScaler>,
    next_tick: u64,
    stats: CompositorStats,
}

impl Compositor {
    /// A compositor showing the background until a share arrives. Sizes are rounded down to even values of at
    /// least 2 and the rate to at least 1 fps, so any configuration yields valid I420 output.
    pub fn new(mut config: CompositorConfig) -> Compositor {
        config.width = config.width.max(2) & !1;
        config.height = config.height.max(2) & !1;
        config.fps = config.fps.max(1);
        let background = I420Frame::filled(config.width, config.height, config.background);
        Compositor {
            output: background.clone(),
            background,
            config,
            pending: VecDeque::new(),
            shown_at: None,
            sharing: false,
            changed: true,
            shown_share: None,
            scaler: None,
            next_tick: 0,
            stats: CompositorStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CompositorStats {
        self.stats
    }

    /// The tick `poll_frame` will produce next.
    pub fn next_tick(&self) -> u64 {
        self.next_tick
    }

    /// Media time of a tick: `tick / fps`.
    pub fn tick_time(&self, tick: u64) -> Duration {
        let nanos = u128::from(tick) * 1_000_000_000 / u128::from(self.config.fps);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Output size `(width, height)` after rounding.
    pub fn size(&self) -> (u32, u32) {
        (self.config.width, self.config.height)
    }

    /// Replaces the picture shown while nobody shares (e.g. with participants' names); shown from the next tick
    /// if nobody shares now. It must have the output size.
    pub fn set_background(&mut self, background: I420Frame) -> Result<()> {
        if (background.width(), background.height()) != self.size() {
            return Err(Error::InvalidFrame(format!(
                "background is {}x{}, output is {}x{}",
                background.width(),
                background.height(),
                self.config.width,
                self.config.height
            )));
        }
        if !self.sharing && background != self.background {
            self.output = background.clone();
            self.changed = true;
        }
        self.background = background;
        Ok(())
    }

    /// Whether the last produced frame showed a share.
    pub fn is_sharing(&self) -> bool {
        self.sharing
    }

    /// A share frame captured at media time `at`.
    pub fn handle_frame(&mut self, at: Duration, frame: I420Frame) {
        self.stats.frames_received += 1;
        if self.shown_at.is_some_and(|shown| at < shown) {
            self.stats.frames_stale += 1;
            return;
        }
        if self.pending.len() >= self.config.max_pending {
            if let Some(index) = self
                .pending
                .iter()
                .position(|(_, event)| matches!(event, ShareEvent::Frame(_)))
            {
                self.pending.remove(index);
                self.stats.frames_overflow += 1;
            }
        }
        self.insert(at, ShareEvent::Frame(frame));
    }

    /// The share ended at media time `at`; from the first tick at or after it (and after the share's
    /// frames already received) the background shows.
    ///
    /// Frames are placed by their RTP timestamps and the stop by its arrival, so under load a frame sent
    /// before the stop can be placed after it. Such a frame is still shown, and the stop follows it:
    /// a stop placed before a pending frame would otherwise be undone by it and leave the share's last
    /// frame on screen for the rest of the recording.
    pub fn handle_share_stopped(&mut self, at: Duration) {
        if self.pending.len() >= self.config.max_pending {
            // Only a flood of stops can get here; the oldest event matters least.
            self.pending.pop_front();
            self.stats.frames_overflow += 1;
        }
        let last_frame = self
            .pending
            .iter()
            .filter(|(_, event)| matches!(event, ShareEvent::Frame(_)))
            .map(|(queued, _)| *queued)
            .max();
        self.insert(
            last_frame.map_or(at, |frame| frame.max(at)),
            ShareEvent::Stopped,
        );
    }

    /// The frame for the next tick, if the media clock `now` has reached that tick's time.
    pub fn poll_frame(&mut self, now: Duration) -> Option<ComposedFrame<'_>> {
        let tick = self.next_tick;
        let tick_time = self.tick_time(tick);
        if tick_time > now {
            return None;
        }
        let mut change = None;
        while self.pending.front().is_some_and(|(at, _)| *at <= tick_time) {
            let (at, event) = self.pending.pop_front().expect("front was just checked");
            if let Some(ShareEvent::Frame(_)) = change.replace(event) {
                self.stats.frames_skipped += 1;
            }
            self.shown_at = Some(at);
        }
        match change {
            Some(ShareEvent::Frame(share)) => self.compose(share),
            Some(ShareEvent::Stopped) => {
                if self.sharing {
                    self.changed = true;
                }
                self.sharing = false;
                self.shown_share = None;
                self.output = self.background.clone();
            }
            None => {}
        }
        self.next_tick += 1;
        self.stats.ticks += 1;
        Some(ComposedFrame {
            index: tick,
            frame: &self.output,
            sharing: self.sharing,
            changed: std::mem::take(&mut self.changed),
        })
    }

    fn insert(&mut self, at: Duration, event: ShareEvent) {
        // Events almost always arrive in order; the search only matters for reordered ones.
        let index = self.pending.partition_point(|(queued, _)| *queued <= at);
        self.pending.insert(index, (at, event));
    }

    fn compose(&mut self, share: I420Frame) {
        if self.sharing && self.shown_share.as_ref() == Some(&share) {
            // Comparing costs a fraction of scaling (and of encoding the repeat, which is skipped too).
            self.stats.frames_unchanged += 1;
            return;
        }
        let (width, height) = (self.config.width, self.config.height);
        let place = fit((share.width(), share.height()), (width, height));
        let scaled = (place.width, place.height) != (share.width(), share.height());
        if scaled && self.scale(&share, (place.width, place.height)).is_err() {
            // Keep showing the previous picture; the counter surfaces the problem in progress reports.
            self.stats.scale_failures += 1;
            return;
        }
        // The output frame is drawn over in place: a fresh 1–3 MB buffer per frame costs more in page faults
        // than the drawing itself. Bars are painted only where the share does not cover the canvas.
        if (place.width, place.height) != (width, height) {
            self.output.fill_rect(0, 0, width, height, Yuv::BLACK);
        }
        match self.scaler.as_ref() {
            Some(scaler) if scaled => {
                let picture = &scaler.output;
                for plane in 0..3 {
                    let (w, h) = (picture.plane_width(plane), picture.plane_height(plane));
                    blit(
                        &mut self.output,
                        plane,
                        place,
                        picture.data(plane),
                        picture.stride(plane),
                        w as usize,
                        h as usize,
                    );
                }
            }
            _ => {
                for (plane, (source, (w, h))) in
                    share.planes().iter().zip(share.plane_sizes()).enumerate()
                {
                    blit(&mut self.output, plane, place, source, w, w, h);
                }
            }
        }
        self.sharing = true;
        self.changed = true;
        self.shown_share = Some(share);
        self.stats.frames_composed += 1;
    }

    fn scale(&mut self, share: &I420Frame, target: (u32, u32)) -> Result<&frame::Video> {
        let source = (share.width(), share.height());
        let cached = self
            .scaler
            .as_ref()
            .is_some_and(|s| s.source == source && s.target == target);
        if !cached {
            let context = scaling::Context::get(
                Pixel::YUV420P,
                source.0,
                source.1,
                Pixel::YUV420P,
                target.0,
                target.1,
                scaling::Flags::BILINEAR,
            )
            .map_err(Error::ffmpeg("creating the share scaler"))?;
            self.scaler = Some(CachedScaler {
                source,
                target,
                context,
                input: frame::Video::new(Pixel::YUV420P, source.0, source.1),
                output: frame::Video::new(Pixel::YUV420P, target.0, target.1),
            });
        }
        let scaler = self
            .scaler
            .as_mut()
            .expect("the scaler was cached just above");
        copy_into_ffmpeg(share, &mut scaler.input);
        scaler
            .context
            .run(&scaler.input, &mut scaler.output)
            .map_err(Error::ffmpeg("scaling the share"))?;
        Ok(&scaler.output)
    }
}

/// Copies one plane (`w × h` bytes, `stride` bytes per source row) into `output` at the placement's offset.
fn blit(
    output: &mut I420Frame,
    plane: usize,
    place: Placement,
    source: &[u8],
    stride: usize,
    w: usize,
    h: usize,
) {
    let sizes = output.plane_sizes();
    let (dst_stride, dst_rows) = sizes[plane];
    let (x, y) = if plane == 0 {
        (place.x as usize, place.y as usize)
    } else {
        (place.x as usize / 2, place.y as usize / 2)
    };
    let w = w.min(dst_stride.saturating_sub(x));
    let h = h.min(dst_rows.saturating_sub(y));
    let destination = &mut output.planes_mut()[plane];
    for row in 0..h {
        let from = &source[row * stride..row * stride + w];
        let start = (y + row) * dst_stride + x;
        destination[start..start + w].copy_from_slice(from);
    }
}

/// Copies a yuv420p FFmpeg frame (a decoder's output, rows possibly padded) into a packed frame.
pub fn copy_from_ffmpeg(source: &frame::Video) -> Result<I420Frame> {
    if source.format() != Pixel::YUV420P {
        return Err(Error::InvalidFrame(format!(
            "expected yuv420p, got {:?}",
            source.format()
        )));
    }
    let mut packed = I420Frame::filled(source.width(), source.height(), Yuv::BLACK);
    let sizes = packed.plane_sizes();
    for (plane, (w, h)) in sizes.into_iter().enumerate() {
        let stride = source.stride(plane);
        let data = source.data(plane);
        let target = &mut packed.planes_mut()[plane];
        for row in 0..h {
            target[row * w..(row + 1) * w].copy_from_slice(&data[row * stride..row * stride + w]);
        }
    }
    Ok(packed)
}

/// Copies a packed I420 frame into an FFmpeg frame of the same size and format (whose rows may be padded).
pub fn copy_into_ffmpeg(source: &I420Frame, destination: &mut frame::Video) {
    for (plane, (data, (w, h))) in source.planes().iter().zip(source.plane_sizes()).enumerate() {
        let stride = destination.stride(plane);
        let target = destination.data_mut(plane);
        for row in 0..h {
            target[row * stride..row * stride + w].copy_from_slice(&data[row * w..(row + 1) * w]);
        }
    }
}

#[cfg(test)]
#[path = "compositor_tests.rs"]
mod tests;
