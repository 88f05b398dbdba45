//! MP4 writer: H.264 (libx264, yuv420p) and AAC (FFmpeg's native encoder, mono 48 kHz) with faststart.
//!
//! Both streams run on one media clock owned by the caller: a video frame for tick `n` has pts `n` in a `1/fps`
//! time base and audio sample `s` has pts `s` in a `1/48000` time base, so picture and sound cannot drift apart.
//! The frame rate is variable: the caller writes a frame only for ticks whose picture changed (and at least one
//! per keyframe interval); each frame lasts until the next one. Keyframes are placed by media time (one at least
//! every [`Profile::keyframe_interval`] ticks), not by frame count, so seeking works the same on a still screen.
//! [`Mp4Writer::finish`] drains both encoders and writes the trailer (moving the index to the front), which is
//! what makes the file playable; a writer dropped without `finish` leaves an unplayable file.

use std::path::{Path, PathBuf};

use ffmpeg_next::{
    codec, encoder, format, frame, ChannelLayout, Codec, Dictionary, Packet, Rational,
};

use crate::compositor::copy_into_ffmpeg;
use crate::error::{Error, Result};
use crate::frame::I420Frame;
use crate::profile::{Profile, AUDIO_SAMPLE_RATE};

/// What a finished recording contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeSummary {
    /// The file written.
    pub path: PathBuf,
    /// Video frames encoded.
    pub video_frames: u64,
    /// Audio samples encoded (48 kHz).
    pub audio_samples: u64,
    /// Size of the finished file in bytes.
    pub bytes: u64,
}

/// An open MP4 file with one H.264 and one AAC stream. Not `Send`-bound by design: drive it from one thread.
pub struct Mp4Writer {
    path: PathBuf,
    output: format::context::Output,
    video: encoder::Video,
    /// The frame each picture is copied into for the encoder (see `write_video`).
    video_input: frame::Video,
    audio: encoder::Audio,
    video_stream: usize,
    audio_stream: usize,
    video_time_base: Rational,
    audio_time_base: Rational,
    width: u32,
    height: u32,
    audio_frame_size: usize,
    /// Samples waiting for a full encoder frame.
    audio_pending: Vec<f32>,
    video_frames: u64,
    /// Tick of the last video frame written, and of the last keyframe.
    last_video_tick: Option<u64>,
    last_keyframe_tick: Option<u64>,
    keyframe_interval: u64,
    audio_samples_sent: u64,
    audio_samples_received: u64,
}

/// libx264 prints pages of statistics at info level; warnings and errors still reach stderr (unless the
/// caller chose a quieter level already).
fn quiet_info_logs() {
    use ffmpeg_next::log::Level;
    if ffmpeg_next::log::get_level().is_ok_and(|level| {
        matches!(
            level,
            Level::Info | Level::Verbose | Level::Debug | Level::Trace
        )
    }) {
        ffmpeg_next::log::set_level(Level::Warning);
    }
}

/// Opens libx264 for `profile` at `fps` (time base `1/fps`): yuv420p, the profile's size, bitrate and
/// preset, keyframes by media time.
fn open_video(profile: &Profile, fps: i32, global_header: bool) -> Result<(Codec, encoder::Video)> {
    let x264 = encoder::find_by_name("libx264").ok_or(Error::EncoderMissing("libx264"))?;
    let mut video = codec::context::Context::new_with_codec(x264)
        .encoder()
        .video()
        .map_err(Error::ffmpeg("preparing libx264"))?;
    video.set_width(profile.width);
    video.set_height(profile.height);
    video.set_format(format::Pixel::YUV420P);
    video.set_time_base(Rational(1, fps));
    video.set_frame_rate(Some(Rational(fps, 1)));
    video.set_bit_rate(profile.video_bitrate_kbps as usize * 1000);
    video.set_gop(profile.keyframe_interval());
    if global_header {
        video.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut x264_options = Dictionary::new();
    x264_options.set("preset", profile.preset.as_str());
    // x264 would size its thread pool (and its frame buffers) from the host's cores; a job container usually
    // gets a slice of a big host, so follow the CPUs this process may use (cgroup-aware), capped at 4.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    x264_options.set("threads", &threads.to_string());
    // Keyframes at least every two seconds, even on a still screen, so seeking and cut files work: placed by
    // media time in `write_video`, the frame-count limit here is only a backstop. No B-frames: with a
    // variable frame rate their reordering would shift decode times by the gaps between frames, and the
    // MP4's video track would end early by as much (its length follows decode times).
    x264_options.set(
        "x264-params",
        &format!(
            "keyint={0}:min-keyint={0}:scenecut=0:bframes=0",
            profile.keyframe_interval()
        ),
    );
    let video = video
        .open_with(x264_options)
        .map_err(Error::ffmpeg("opening libx264"))?;
    Ok((x264, video))
}

/// Opens FFmpeg's AAC encoder for `profile`: mono, 48 kHz, planar f32.
fn open_audio(
    profile: &Profile,
    time_base: Rational,
    global_header: bool,
) -> Result<(Codec, encoder::Audio)> {
    let aac = encoder::find_by_name("aac").ok_or(Error::EncoderMissing("aac"))?;
    let mut audio = codec::context::Context::new_with_codec(aac)
        .encoder()
        .audio()
        .map_err(Error::ffmpeg("preparing aac"))?;
    audio.set_rate(AUDIO_SAMPLE_RATE as i32);
    audio.set_channel_layout(ChannelLayout::MONO);
    audio.set_channels(1);
    audio.set_format(format::Sample::F32(format::sample::Type::Planar));
    audio.set_bit_rate(profile.audio_bitrate_kbps as usize * 1000);
    audio.set_time_base(time_base);
    if global_header {
        audio.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    // The "fast" coder costs a third of the default "twoloop" (0.5 against 1.7 CPU-s per minute of speech
    // here) and keeps the waveform closer to the voice (32 against 23 dB SNR on espeak speech at 64 kbit/s);
    // the default spends its time on perceptual noise substitution a voice recording does not need.
    let mut aac_options = Dictionary::new();
    aac_options.set("aac_coder", "fast");
    let audio = audio
        .open_with(aac_options)
        .map_err(Error::ffmpeg("opening aac"))?;
    Ok((aac, audio))
}

impl Mp4Writer {
    /// Creates (or truncates) `path` and writes the MP4 header for `profile`.
    pub fn create(path: &Path, profile: &Profile) -> Result<Mp4Writer> {
        profile.validate()?;
        ffmpeg_next::init().map_err(Error::ffmpeg("initialising"))?;
        quiet_info_logs();
        let mut output =
            format::output_as(&path, "mp4").map_err(Error::ffmpeg("creating the mp4 file"))?;
        let global_header = output
            .format()
            .flags()
            .contains(format::Flags::GLOBAL_HEADER);
        let fps = i32::try_from(profile.fps).map_err(|_| Error::setting("FPS", "too large"))?;
        let video_time_base = Rational(1, fps);
        let audio_time_base = Rational(1, AUDIO_SAMPLE_RATE as i32);
        let (x264, video) = open_video(profile, fps, global_header)?;
        let (aac, audio) = open_audio(profile, audio_time_base, global_header)?;
        let audio_frame_size = match audio.frame_size() {
            0 => 1024,
            size => size as usize,
        };

        let video_stream = {
            let mut stream = output
                .add_stream(x264)
                .map_err(Error::ffmpeg("adding the video stream"))?;
            stream.set_parameters(&video);
            stream.set_time_base(video_time_base);
            stream.set_avg_frame_rate(Rational(fps, 1));
            stream.set_rate(Rational(fps, 1));
            stream.index()
        };
        let audio_stream = {
            let mut stream = output
                .add_stream(aac)
                .map_err(Error::ffmpeg("adding the audio stream"))?;
            stream.set_parameters(&audio);
            stream.set_time_base(audio_time_base);
            stream.index()
        };
        let mut mux_options = Dictionary::new();
        mux_options.set("movflags", "+faststart");
        output
            .write_header_with(mux_options)
            .map_err(Error::ffmpeg("writing the mp4 header"))?;

        Ok(Mp4Writer {
            path: path.to_path_buf(),
            output,
            video,
            video_input: frame::Video::new(format::Pixel::YUV420P, profile.width, profile.height),
            audio,
            video_stream,
            audio_stream,
            video_time_base,
            audio_time_base,
            width: profile.width,
            height: profile.height,
            audio_frame_size,
            audio_pending: Vec::with_capacity(audio_frame_size * 2),
            video_frames: 0,
            last_video_tick: None,
            last_keyframe_tick: None,
            keyframe_interval: u64::from(profile.keyframe_interval()),
            audio_samples_sent: 0,
            audio_samples_received: 0,
        })
    }

    /// Video frames written so far.
    pub fn video_frames(&self) -> u64 {
        self.video_frames
    }

    /// The tick of the last video frame written.
    pub fn last_video_tick(&self) -> Option<u64> {
        self.last_video_tick
    }

    /// Audio samples written so far.
    pub fn audio_samples(&self) -> u64 {
        self.audio_samples_received
    }

    /// Encodes the picture of tick `tick` (pts = the tick; it shows until the next frame written). Ticks must
    /// increase; the frame must have the profile's size. It is a keyframe when the last one is a keyframe
    /// interval or more ago.
    pub fn write_video(&mut self, picture: &I420Frame, tick: u64) -> Result<()> {
        if self.last_video_tick.is_some_and(|last| tick <= last) {
            return Err(Error::EncoderState("video ticks must increase"));
        }
        if (picture.width(), picture.height()) != (self.width, self.height) {
            return Err(Error::InvalidFrame(format!(
                "encoder expects {}x{}, got {}x{}",
                self.width,
                self.height,
                picture.width(),
                picture.height()
            )));
        }
        // One input frame, reused: libx264 copies the picture into its own buffers before `send_frame`
        // returns (libavcodec encodes a frame-at-a-time encoder's input inside the call and drops its reference),
        // so nothing still points at it. A fresh 1–3 MB frame each time cost more in page faults than the copy.
        let video_frame = &mut self.video_input;
        copy_into_ffmpeg(picture, video_frame);
        video_frame.set_kind(ffmpeg_next::picture::Type::None);
        video_frame.set_pts(Some(i64::try_from(tick).unwrap_or(i64::MAX)));
        if self
            .last_keyframe_tick
            .is_none_or(|key| tick >= key + self.keyframe_interval)
        {
            // libx264 turns a forced I picture into an IDR frame (closed GOP).
            video_frame.set_kind(ffmpeg_next::picture::Type::I);
            self.last_keyframe_tick = Some(tick);
        }
        self.video
            .send_frame(video_frame)
            .map_err(Error::ffmpeg("encoding video"))?;
        self.video_frames += 1;
        self.last_video_tick = Some(tick);
        self.drain_video()
    }

    /// Encodes the next mixed samples (48 kHz mono), continuing the audio timeline.
    pub fn write_audio(&mut self, samples: &[i16]) -> Result<()> {
        self.audio_pending
            .extend(samples.iter().map(|&s| f32::from(s) / 32768.0));
        self.audio_samples_received += samples.len() as u64;
        while self.audio_pending.len() >= self.audio_frame_size {
            self.send_audio_frame(self.audio_frame_size)?;
        }
        Ok(())
    }

    /// Flushes both encoders and writes the trailer. The file is complete and playable only after this.
    pub fn finish(mut self) -> Result<EncodeSummary> {
        if !self.audio_pending.is_empty() {
            // The AAC encoder accepts a shorter last frame.
            self.send_audio_frame(self.audio_pending.len())?;
        }
        self.video
            .send_eof()
            .map_err(Error::ffmpeg("flushing video"))?;
        self.drain_video()?;
        self.audio
            .send_eof()
            .map_err(Error::ffmpeg("flushing audio"))?;
        self.drain_audio()?;
        self.output
            .write_trailer()
            .map_err(Error::ffmpeg("writing the mp4 trailer"))?;
        let bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(EncodeSummary {
            path: self.path.clone(),
            video_frames: self.video_frames,
            audio_samples: self.audio_samples_received,
            bytes,
        })
    }

    fn send_audio_frame(&mut self, len: usize) -> Result<()> {
        let mut audio_frame = frame::Audio::new(
            format::Sample::F32(format::sample::Type::Planar),
            len,
            ChannelLayout::MONO,
        );
        audio_frame.set_rate(AUDIO_SAMPLE_RATE);
        audio_frame.plane_mut::<f32>(0)[..len].copy_from_slice(&self.audio_pending[..len]);
        self.audio_pending.drain(..len);
        audio_frame.set_pts(Some(
            i64::try_from(self.audio_samples_sent).unwrap_or(i64::MAX),
        ));
        self.audio
            .send_frame(&audio_frame)
            .map_err(Error::ffmpeg("encoding audio"))?;
        self.audio_samples_sent += len as u64;
        self.drain_audio()
    }

    fn drain_video(&mut self) -> Result<()> {
        // A video packet the encoder left without a duration lasts one tick.
        let stream = (self.video_stream, self.video_time_base, Some(1));
        drain(
            &mut self.video,
            &mut self.output,
            stream,
            ["encoding video", "writing video"],
        )
    }

    fn drain_audio(&mut self) -> Result<()> {
        let stream = (self.audio_stream, self.audio_time_base, None);
        drain(
            &mut self.audio,
            &mut self.output,
            stream,
            ["encoding audio", "writing audio"],
        )
    }
}

/// Writes every packet `encoder` has ready into `output` as stream `index`, its times rescaled from the
/// encoder's `time_base` to the stream's; a packet without a duration gets `default_duration`, if any.
/// `encoding` and `writing` name the two steps in errors.
fn drain(
    encoder: &mut encoder::Encoder,
    output: &mut format::context::Output,
    (index, time_base, default_duration): (usize, Rational, Option<i64>),
    [encoding, writing]: [&'static str; 2],
) -> Result<()> {
    let stream_time_base = output
        .stream(index)
        .map(|stream| stream.time_base())
        .ok_or(Error::EncoderState("stream vanished from the output"))?;
    let mut packet = Packet::empty();
    while receive(encoder.receive_packet(&mut packet), encoding)? {
        if let (0, Some(duration)) = (packet.duration(), default_duration) {
            packet.set_duration(duration);
        }
        packet.set_stream(index);
        packet.rescale_ts(time_base, stream_time_base);
        packet
            .write_interleaved(output)
            .map_err(Error::ffmpeg(writing))?;
    }
    Ok(())
}

/// Turns `receive_packet`'s result into "got a packet" / "nothing more for now" / a real error.
fn receive(
    result: std::result::Result<(), ffmpeg_next::Error>,
    context: &'static str,
) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(ffmpeg_next::Error::Eof) => Ok(false),
        Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::util::error::EAGAIN => {
            Ok(false)
        }
        Err(source) => Err(Error::Ffmpeg { context, source }),
    }
}
