//! Decode after the call: one speaker's capture file → 16 kHz mono [`AudioPiece`]s on the call timeline.
//!
//! libopus decodes at 16 kHz itself (`VoiceDecoder::with_sample_rate`), so there is no resampler here. Per
//! track, packets go through the participant library's decoder (reordering, loss concealment from RTP
//! timestamps); each decoded run is placed where capture put its packet. [`PieceBuilder`] is the pure
//! placement: audio that continues where the previous run ended is appended, a short hole is filled with
//! silence so later speech keeps its call time, and a hole longer than [`MAX_FILLED_GAP_MS`] (a mute, a
//! leave, a reconnect) starts a new piece.

use std::collections::BTreeMap;
use std::path::Path;

use calls_participant::audio::VoiceDecoder;
use rtc::rtp;

use crate::capture_file::{CaptureReader, CapturedPacket};
use crate::pipeline::AudioPiece;

/// The decode rate (whisper's).
pub const SAMPLE_RATE: u32 = 16_000;
const SAMPLES_PER_MS: u64 = (SAMPLE_RATE / 1000) as u64;
/// A hole up to this long inside a speaker's audio is filled with silence; a longer one starts a new piece.
pub const MAX_FILLED_GAP_MS: u64 = 1_000;
/// Audio that starts within this of where the previous run ended continues it (jitter, reordering).
pub const CONTINUOUS_WITHIN_MS: u64 = 80;

/// Builds a speaker's pieces from decoded runs placed on the call timeline. Pure.
#[derive(Debug, Default)]
pub struct PieceBuilder {
    pieces: Vec<AudioPiece>,
    current: Option<AudioPiece>,
}

impl PieceBuilder {
    /// Adds a run of samples that starts at call time `start_ms`.
    pub fn handle_run(&mut self, start_ms: u64, samples: &[i16]) {
        if samples.is_empty() {
            return;
        }
        let floats = samples.iter().map(|&s| f32::from(s) / 32_768.0);
        if let Some(piece) = self.current.as_mut() {
            let end_ms = piece.start_ms + piece.samples.len() as u64 / SAMPLES_PER_MS;
            let gap_ms = start_ms.saturating_sub(end_ms);
            if gap_ms <= CONTINUOUS_WITHIN_MS {
                piece.samples.extend(floats);
                return;
            }
            if gap_ms <= MAX_FILLED_GAP_MS {
                let end_sample = (start_ms - piece.start_ms) * SAMPLES_PER_MS;
                piece.samples.resize(end_sample as usize, 0.0);
                piece.samples.extend(floats);
                return;
            }
            self.pieces.extend(self.current.take());
        }
        self.current = Some(AudioPiece {
            start_ms,
            samples: floats.collect(),
        });
    }

    /// The pieces, in call-time order.
    pub fn finish(mut self) -> Vec<AudioPiece> {
        self.pieces.extend(self.current.take());
        self.pieces.sort_by_key(|piece| piece.start_ms);
        self.pieces
    }
}

/// Decoding state of one track.
struct TrackDecoder {
    decoder: VoiceDecoder,
}

/// Decodes captured packets (in capture order) into pieces.
pub fn decode_packets(
    packets: impl IntoIterator<Item = CapturedPacket>,
) -> Result<Vec<AudioPiece>, calls_participant::Error> {
    let mut builder = PieceBuilder::default();
    let mut tracks: BTreeMap<u16, TrackDecoder> = BTreeMap::new();
    for packet in packets {
        let track = match tracks.entry(packet.track) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(TrackDecoder {
                decoder: VoiceDecoder::with_sample_rate(SAMPLE_RATE)?,
            }),
        };
        let packet_samples = opus::packet::get_nb_samples(&packet.payload, SAMPLE_RATE)
            .map(|n| n as u64)
            .unwrap_or(20 * SAMPLES_PER_MS);
        let at_ms = packet.at_us / 1000;
        let pcm = track.decoder.push(to_rtp(&packet));
        // The decoder's output ends with this packet's audio (or a few packets earlier while it waits for a
        // late one, well within CONTINUOUS_WITHIN_MS); what comes before it is concealment or silence the
        // decoder filled from the RTP timestamps. Capture's placement is the truth for where the packet
        // belongs, so the packet goes at its place, concealment right before it, and filled silence is
        // dropped (the builder fills or splits by placement instead).
        let split = pcm.len().saturating_sub(packet_samples as usize);
        let (head, tail) = pcm.split_at(split);
        // Filled silence leads the head; packets the decoder held back for reordering follow it.
        let first_sound = head.iter().position(|&s| s != 0).unwrap_or(head.len());
        let head = &head[first_sound..];
        if !head.is_empty() {
            let head_ms = head.len() as u64 / SAMPLES_PER_MS;
            builder.handle_run(at_ms.saturating_sub(head_ms), head);
        }
        builder.handle_run(at_ms, tail);
    }
    Ok(builder.finish())
}

/// Decodes the capture file at `path`.
pub fn decode_file(path: &Path) -> Result<Vec<AudioPiece>, DecodeError> {
    let reader = CaptureReader::open(path).map_err(DecodeError::Io)?;
    let mut failure = None;
    let packets = reader.map_while(|record| match record {
        Ok(packet) => Some(packet),
        Err(error) => {
            failure = Some(error);
            None
        }
    });
    let pieces = decode_packets(packets).map_err(DecodeError::Opus)?;
    match failure {
        Some(error) => Err(DecodeError::Io(error)),
        None => Ok(pieces),
    }
}

/// Why a capture file could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Reading the file failed.
    #[error("reading the capture: {0}")]
    Io(std::io::Error),
    /// The Opus decoder could not be created.
    #[error("opus decoder: {0}")]
    Opus(calls_participant::Error),
}

fn to_rtp(packet: &CapturedPacket) -> rtp::Packet {
    let mut rtp = rtp::Packet::default();
    rtp.header.sequence_number = packet.sequence;
    rtp.header.timestamp = packet.timestamp;
    rtp.payload = packet.payload.clone().into();
    rtp
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
