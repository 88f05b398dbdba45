//! Screen-share video: the moving test pattern (and its checker), a VP8 encoder (libvpx through
//! ffmpeg-next) producing frames to publish, and a VP8 decoder turning received RTP into tightly
//! packed I420 [`VideoFrame`]s.
//!
//! The pattern is a white vertical bar on black that moves right by [`BAR_STEP`] pixels per
//! frame, wrapping around; the colour planes are neutral. [`bar_position`] finds the bar in a
//! decoded frame, so a test can check both that the picture is the pattern and that it moves.

use bytes::Bytes;
use ffmpeg_next::{codec, decoder, encoder, format, frame, Dictionary, Packet, Rational};
use rtc::rtp;

use crate::jitter::{Output, Reorder};
use crate::{Error, Result};

/// Packets the decoder waits past a hole before declaring the missing one lost.
pub const REORDER_DEPTH: usize = 5;

/// Width of the pattern bar in pixels.
pub const BAR_WIDTH: u32 = 32;
/// Pixels the bar moves per frame.
pub const BAR_STEP: u32 = 8;
const BAR_LUMA: u8 = 235;
const BACKGROUND_LUMA: u8 = 16;

/// One decoded picture, I420, planes tightly packed (Y: w×h, U and V: ⌈w/2⌉×⌈h/2⌉ each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Y, then U, then V.
    pub data: Vec<u8>,
}

impl VideoFrame {
    /// The luma plane.
    pub fn luma(&self) -> &[u8] {
        let len = (self.width as usize * self.height as usize).min(self.data.len());
        &self.data[..len]
    }
}

fn chroma_size(width: u32, height: u32) -> usize {
    (width.div_ceil(2) * height.div_ceil(2)) as usize
}

/// The test pattern's frame number `index`.
pub fn pattern_frame(width: u32, height: u32, index: u64) -> VideoFrame {
    let travel = u64::from(width.max(1));
    let bar_x = ((index * u64::from(BAR_STEP)) % travel) as u32;
    let mut data = vec![BACKGROUND_LUMA; (width * height) as usize];
    for row in 0..height {
        for x in bar_x..(bar_x + BAR_WIDTH).min(width) {
            data[(row * width + x) as usize] = BAR_LUMA;
        }
    }
    data.resize(data.len() + 2 * chroma_size(width, height), 128);
    VideoFrame {
        width,
        height,
        data,
    }
}

/// Left edge of the pattern bar in a frame, or `None` when the frame does not show the pattern
/// (a bright band of about [`BAR_WIDTH`] columns on a dark picture).
pub fn bar_position(frame: &VideoFrame) -> Option<u32> {
    let (width, height) = (frame.width as usize, frame.height as usize);
    if width == 0 || height == 0 || frame.data.len() < width * height {
        return None;
    }
    let luma = frame.luma();
    let bright: Vec<bool> = (0..width)
        .map(|x| {
            let sum: u64 = (0..height).map(|y| u64::from(luma[y * width + x])).sum();
            sum / height as u64 > 128
        })
        .collect();
    let first = bright.iter().position(|b| *b)?;
    let count = bright.iter().filter(|b| **b).count();
    let contiguous = bright[first..first + count].iter().all(|b| *b);
    let expected = BAR_WIDTH.min(frame.width - first as u32) as usize;
    (contiguous && count.abs_diff(expected) <= 4).then_some(first as u32)
}

/// Whether a frame shows the test pattern.
pub fn pattern_matches(frame: &VideoFrame) -> bool {
    bar_position(frame).is_some()
}

fn init_ffmpeg() -> Result<()> {
    ffmpeg_next::init().map_err(Error::from)
}

/// A realtime VP8 encoder.
pub struct Vp8Encoder {
    encoder: encoder::Video,
    width: u32,
    height: u32,
    next_pts: i64,
}

impl Vp8Encoder {
    /// Opens libvpx for `width`×`height` at `fps`, a keyframe at least every `fps` frames.
    pub fn new(width: u32, height: u32, fps: u32, bitrate: usize) -> Result<Self> {
        Self::with_gop(width, height, fps, fps, bitrate)
    }

    /// Opens libvpx for `width`×`height` at `fps`, a keyframe at least every `gop` frames
    /// (besides the ones [`Vp8Encoder::encode`] is asked for).
    pub fn with_gop(width: u32, height: u32, fps: u32, gop: u32, bitrate: usize) -> Result<Self> {
        init_ffmpeg()?;
        let codec = encoder::find_by_name("libvpx")
            .ok_or_else(|| Error::Media("libvpx VP8 encoder is not available".into()))?;
        let mut video = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()?;
        video.set_width(width);
        video.set_height(height);
        video.set_format(format::Pixel::YUV420P);
        video.set_time_base(Rational(1, fps as i32));
        video.set_frame_rate(Some(Rational(fps as i32, 1)));
        video.set_bit_rate(bitrate);
        video.set_gop(gop.max(1));
        let mut options = Dictionary::new();
        options.set("deadline", "realtime");
        options.set("cpu-used", "8");
        options.set("lag-in-frames", "0");
        options.set("error-resilient", "1");
        let encoder = video.open_with(options)?;
        Ok(Self {
            encoder,
            width,
            height,
            next_pts: 0,
        })
    }

    /// Encodes one frame; returns the VP8 frames produced (usually one).
    pub fn encode(&mut self, picture: &VideoFrame, keyframe: bool) -> Result<Vec<Bytes>> {
        if picture.width != self.width || picture.height != self.height {
            return Err(Error::Media("frame size differs from the encoder's".into()));
        }
        let expected =
            (self.width * self.height) as usize + 2 * chroma_size(self.width, self.height);
        if picture.data.len() < expected {
            return Err(Error::Media(format!(
                "frame holds {} bytes, I420 {}x{} needs {expected}",
                picture.data.len(),
                self.width,
                self.height
            )));
        }
        let mut input = frame::Video::new(format::Pixel::YUV420P, self.width, self.height);
        let planes = [
            (self.width as usize, self.height as usize),
            (
                self.width.div_ceil(2) as usize,
                self.height.div_ceil(2) as usize,
            ),
            (
                self.width.div_ceil(2) as usize,
                self.height.div_ceil(2) as usize,
            ),
        ];
        let mut offset = 0;
        for (plane, (w, h)) in planes.iter().enumerate() {
            let stride = input.stride(plane);
            let target = input.data_mut(plane);
            for row in 0..*h {
                target[row * stride..row * stride + w]
                    .copy_from_slice(&picture.data[offset + row * w..offset + (row + 1) * w]);
            }
            offset += w * h;
        }
        input.set_pts(Some(self.next_pts));
        if keyframe {
            input.set_kind(ffmpeg_next::picture::Type::I);
        }
        self.next_pts += 1;
        self.encoder.send_frame(&input)?;
        let mut out = Vec::new();
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            if let Some(data) = packet.data() {
                out.push(Bytes::copy_from_slice(data));
            }
        }
        Ok(out)
    }
}

/// Reassembles VP8 frames from RTP and decodes them.
pub struct Vp8Decoder {
    decoder: decoder::Video,
    reorder: Reorder<rtp::Packet>,
    frame: Vec<u8>,
    last_sequence: Option<u16>,
    broken: bool,
}

/// What feeding one packet produced.
#[derive(Debug, Default)]
pub struct DecodeOutput {
    /// Decoded pictures.
    pub frames: Vec<VideoFrame>,
    /// A packet was lost or a frame failed to decode: ask the sender for a keyframe.
    pub wants_keyframe: bool,
}

impl Vp8Decoder {
    /// Opens the VP8 decoder.
    pub fn new() -> Result<Self> {
        init_ffmpeg()?;
        let codec = decoder::find(codec::Id::VP8)
            .ok_or_else(|| Error::Media("VP8 decoder is not available".into()))?;
        let decoder = codec::context::Context::new_with_codec(codec)
            .decoder()
            .video()?;
        Ok(Self {
            decoder,
            reorder: Reorder::new(REORDER_DEPTH),
            frame: Vec::new(),
            last_sequence: None,
            broken: false,
        })
    }

    /// Feeds one RTP packet as received; packets are put back in sequence order first, and a
    /// packet missing after [`REORDER_DEPTH`] later ones counts as lost.
    pub fn push(&mut self, packet: &rtp::Packet) -> DecodeOutput {
        self.reorder
            .push(packet.header.sequence_number, packet.clone());
        let mut output = DecodeOutput::default();
        while let Some(next) = self.reorder.pop() {
            match next {
                Output::Packet(packet) => {
                    let step = self.push_in_order(&packet);
                    output.frames.extend(step.frames);
                    output.wants_keyframe |= step.wants_keyframe;
                }
                // The sequence check in `push_in_order` sees the hole and asks for a keyframe.
                Output::Gap(_) => {}
            }
        }
        output
    }

    fn push_in_order(&mut self, packet: &rtp::Packet) -> DecodeOutput {
        let mut output = DecodeOutput::default();
        let sequence = packet.header.sequence_number;
        if let Some(last) = self.last_sequence {
            if sequence != last.wrapping_add(1) {
                self.broken = true;
                output.wants_keyframe = true;
            }
        }
        self.last_sequence = Some(sequence);
        if packet.payload.is_empty() {
            // A padding-only probe (browsers send them to estimate bandwidth): it takes a
            // sequence number, so it was counted above, but it carries no part of a frame.
            return output;
        }
        let Some((starts_frame, data)) = vp8_payload(&packet.payload) else {
            self.broken = true;
            output.wants_keyframe = true;
            return output;
        };
        if starts_frame {
            if !self.frame.is_empty() {
                // The previous frame never saw its marker packet.
                self.broken = true;
            }
            self.frame.clear();
            if self.broken {
                // Start over only on a frame boundary; the decoder copes with a missing
                // reference by showing artefacts until the next keyframe.
                self.broken = false;
            }
        }
        self.frame.extend_from_slice(data);
        if packet.header.marker && !self.frame.is_empty() {
            let frame = std::mem::take(&mut self.frame);
            if !self.broken {
                match self.decode(&frame) {
                    Ok(frames) => output.frames = frames,
                    Err(_) => output.wants_keyframe = true,
                }
            }
        }
        output
    }

    fn decode(&mut self, data: &[u8]) -> Result<Vec<VideoFrame>> {
        let packet = Packet::copy(data);
        self.decoder.send_packet(&packet)?;
        let mut frames = Vec::new();
        let mut decoded = frame::Video::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            frames.push(to_i420(&decoded));
        }
        Ok(frames)
    }
}

/// Splits an RTP payload into its VP8 payload descriptor (RFC 7741 §4.2) and the VP8 data.
/// Returns whether the packet starts a frame (S bit with partition 0) and the data, or `None`
/// for a malformed descriptor.
pub fn vp8_payload(payload: &[u8]) -> Option<(bool, &[u8])> {
    let first = *payload.first()?;
    let extended = first & 0x80 != 0;
    let starts_frame = first & 0x10 != 0 && first & 0x07 == 0;
    let mut index = 1;
    if extended {
        let flags = *payload.get(index)?;
        index += 1;
        if flags & 0x80 != 0 {
            // Picture id: 7 or 15 bits, the M bit says which.
            let picture_id = *payload.get(index)?;
            index += if picture_id & 0x80 != 0 { 2 } else { 1 };
        }
        if flags & 0x40 != 0 {
            index += 1; // TL0PICIDX
        }
        if flags & 0x30 != 0 {
            index += 1; // TID/Y/KEYIDX
        }
    }
    let data = payload.get(index..)?;
    (!data.is_empty()).then_some((starts_frame, data))
}

fn to_i420(decoded: &frame::Video) -> VideoFrame {
    let (width, height) = (decoded.width(), decoded.height());
    let sizes = [
        (width as usize, height as usize),
        (width.div_ceil(2) as usize, height.div_ceil(2) as usize),
        (width.div_ceil(2) as usize, height.div_ceil(2) as usize),
    ];
    let mut data = Vec::with_capacity(sizes.iter().map(|(w, h)| w * h).sum());
    for (plane, (w, h)) in sizes.iter().enumerate() {
        let stride = decoded.stride(plane);
        let source = decoded.data(plane);
        for row in 0..*h {
            data.extend_from_slice(&source[row * stride..row * stride + w]);
        }
    }
    VideoFrame {
        width,
        height,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_descriptors_are_parsed() {
        assert_eq!(vp8_payload(&[0x10, 0xaa]), Some((true, &[0xaa][..])));
        assert_eq!(
            vp8_payload(&[0x00, 0xaa, 0xbb]),
            Some((false, &[0xaa, 0xbb][..]))
        );
        // X, I with a 15-bit picture id, L, T/K.
        assert_eq!(
            vp8_payload(&[0x90, 0xf0, 0x81, 0x02, 0x03, 0x04, 0xaa]),
            Some((true, &[0xaa][..]))
        );
        assert_eq!(vp8_payload(&[0x90, 0x80]), None);
        assert_eq!(vp8_payload(&[]), None);
    }

    #[test]
    fn pattern_is_recognised_and_moves() {
        let first = pattern_frame(160, 120, 0);
        let later = pattern_frame(160, 120, 3);
        assert_eq!(bar_position(&first), Some(0));
        assert_eq!(bar_position(&later), Some(3 * BAR_STEP));
        let blank = VideoFrame {
            width: 160,
            height: 120,
            data: vec![16; 160 * 120 * 3 / 2],
        };
        assert!(!pattern_matches(&blank));
    }

    fn packetize(
        encoder: &mut Vp8Encoder,
        frames: u64,
        first_sequence: u16,
        mtu: usize,
    ) -> Vec<rtp::Packet> {
        let mut payloader = rtc::rtp::codec::vp8::Vp8Payloader::default();
        let mut sequence = first_sequence;
        let mut packets = Vec::new();
        for index in 0..frames {
            for data in encoder
                .encode(&pattern_frame(160, 120, index), index == 0)
                .unwrap()
            {
                let payloads =
                    rtc::rtp::packetizer::Payloader::payload(&mut payloader, mtu, &data).unwrap();
                let count = payloads.len();
                for (i, payload) in payloads.into_iter().enumerate() {
                    let mut packet = rtp::Packet::default();
                    packet.header.sequence_number = sequence;
                    packet.header.marker = i + 1 == count;
                    packet.payload = payload;
                    sequence = sequence.wrapping_add(1);
                    packets.push(packet);
                }
            }
        }
        packets
    }

    #[test]
    fn reordered_packets_still_decode_and_losses_ask_for_a_keyframe() {
        let mut encoder = Vp8Encoder::new(160, 120, 15, 300_000).unwrap();
        let mut packets = packetize(&mut encoder, 6, 65530, 60);
        assert!(packets.len() > 8, "want several packets per frame");
        packets.swap(1, 2);
        packets.swap(5, 7);
        let mut decoder = Vp8Decoder::new().unwrap();
        let mut frames = Vec::new();
        let mut keyframe_wanted = false;
        for packet in &packets {
            let output = decoder.push(packet);
            frames.extend(output.frames);
            keyframe_wanted |= output.wants_keyframe;
        }
        assert!(!keyframe_wanted, "reordering is not loss");
        assert!(frames.len() >= 5, "{} frames", frames.len());
        assert!(frames.iter().all(pattern_matches));

        let mut lossy = Vp8Decoder::new().unwrap();
        let mut wanted = false;
        for (index, packet) in packetize(&mut encoder, 12, 100, 60).iter().enumerate() {
            if index != 3 {
                wanted |= lossy.push(packet).wants_keyframe;
            }
        }
        assert!(wanted, "a lost packet asks for a keyframe");
    }

    #[test]
    fn padding_probes_between_frames_are_not_losses() {
        let mut encoder = Vp8Encoder::new(160, 120, 15, 300_000).unwrap();
        let media = packetize(&mut encoder, 6, 65534, 60);
        // After every frame's last packet, two padding-only probes take the next sequence
        // numbers, as browsers send them; the media packets after them are renumbered.
        let mut stream = Vec::new();
        let mut sequence = 65534u16;
        for packet in media {
            let marker = packet.header.marker;
            let mut packet = packet;
            packet.header.sequence_number = sequence;
            sequence = sequence.wrapping_add(1);
            stream.push(packet);
            if marker {
                for _ in 0..2 {
                    let mut probe = rtp::Packet::default();
                    probe.header.sequence_number = sequence;
                    sequence = sequence.wrapping_add(1);
                    stream.push(probe);
                }
            }
        }
        let mut decoder = Vp8Decoder::new().unwrap();
        let mut frames = Vec::new();
        let mut keyframe_wanted = false;
        for packet in &stream {
            let output = decoder.push(packet);
            frames.extend(output.frames);
            keyframe_wanted |= output.wants_keyframe;
        }
        assert!(!keyframe_wanted, "a padding probe is not a loss");
        assert_eq!(frames.len(), 6);
        assert!(frames.iter().all(pattern_matches));
    }

    #[test]
    fn vp8_round_trip_keeps_the_pattern() {
        let mut encoder = Vp8Encoder::new(160, 120, 15, 300_000).unwrap();
        let mut decoder = Vp8Decoder::new().unwrap();
        let decoded: Vec<VideoFrame> = packetize(&mut encoder, 10, 0, 1000)
            .iter()
            .flat_map(|packet| decoder.push(packet).frames)
            .collect();
        assert!(decoded.len() >= 8, "decoded {} frames", decoded.len());
        let last = decoded.last().unwrap();
        assert_eq!((last.width, last.height), (160, 120));
        let position = bar_position(last).expect("pattern visible");
        assert!(position.abs_diff(9 * BAR_STEP) <= 4, "bar at {position}");
    }
}
