//! Voice: WAV loading, 20 ms Opus encoding, decoding received RTP back to 48 kHz mono PCM (with
//! reordering, packet-loss concealment and silence across long gaps) and a similarity measure
//! for tests (normalised cross-correlation after alignment).

use std::path::Path;

use rtc::rtp;

use crate::jitter::{Output, Reorder};
use crate::{Error, Result};

/// Sample rate of all PCM in this crate.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per 20 ms frame.
pub const FRAME_SAMPLES: usize = 960;
/// Gaps longer than this many frames are filled with silence rather than concealment.
const MAX_CONCEALED_FRAMES: u16 = 3;

/// Reads a 16-bit WAV at 48 kHz (mono, or stereo downmixed) into mono samples.
pub fn read_wav(path: &Path) -> Result<Vec<i16>> {
    let mut reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE || spec.bits_per_sample != 16 {
        return Err(Error::Media(format!(
            "{} must be 16-bit 48 kHz (got {} bit, {} Hz); convert it with sox",
            path.display(),
            spec.bits_per_sample,
            spec.sample_rate
        )));
    }
    let samples: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>()?;
    let channels = usize::from(spec.channels.max(1));
    Ok(samples
        .chunks(channels)
        .map(|frame| (frame.iter().map(|s| i32::from(*s)).sum::<i32>() / channels as i32) as i16)
        .collect())
}

/// Writes mono 48 kHz 16-bit PCM to a WAV file.
pub fn write_wav(path: &Path, samples: &[i16]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for sample in samples {
        writer.write_sample(*sample)?;
    }
    writer.finalize()?;
    Ok(())
}

/// Encodes 20 ms frames of mono PCM to Opus.
pub struct VoiceEncoder {
    encoder: opus::Encoder,
    buffer: Vec<u8>,
}

impl VoiceEncoder {
    /// A VoIP encoder at 64 kbit/s.
    pub fn new() -> Result<Self> {
        let mut encoder =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        encoder.set_bitrate(opus::Bitrate::Bits(64_000))?;
        Ok(Self {
            encoder,
            buffer: vec![0; 4000],
        })
    }

    /// Encodes one frame; shorter input is padded with silence.
    pub fn encode(&mut self, frame: &[i16]) -> Result<Vec<u8>> {
        let mut padded = [0i16; FRAME_SAMPLES];
        let len = frame.len().min(FRAME_SAMPLES);
        padded[..len].copy_from_slice(&frame[..len]);
        let written = self.encoder.encode(&padded, &mut self.buffer)?;
        Ok(self.buffer[..written].to_vec())
    }
}

/// Decodes one received voice track to PCM.
pub struct VoiceDecoder {
    decoder: opus::Decoder,
    reorder: Reorder<rtp::Packet>,
    last_timestamp: Option<u32>,
}

impl VoiceDecoder {
    /// A decoder that waits for up to 3 packets past a hole.
    pub fn new() -> Result<Self> {
        Ok(Self {
            decoder: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
            reorder: Reorder::new(3),
            last_timestamp: None,
        })
    }

    /// Feeds one packet; returns the PCM that became ready (possibly none, possibly several
    /// frames including concealment or silence for lost packets).
    pub fn push(&mut self, packet: rtp::Packet) -> Vec<i16> {
        self.reorder.push(packet.header.sequence_number, packet);
        let mut pcm = Vec::new();
        while let Some(output) = self.reorder.pop() {
            match output {
                Output::Packet(packet) => {
                    // Packets that were never sent (a muted sender) leave a timestamp jump but no
                    // sequence gap on some paths; fill it with silence.
                    if let Some(last) = self.last_timestamp {
                        let step = packet.header.timestamp.wrapping_sub(last) as usize;
                        if step > FRAME_SAMPLES * (usize::from(MAX_CONCEALED_FRAMES) + 1)
                            && step < SAMPLE_RATE as usize * 10
                        {
                            pcm.resize(pcm.len() + step - FRAME_SAMPLES, 0);
                        }
                    }
                    self.last_timestamp = Some(packet.header.timestamp);
                    let mut frame = vec![0i16; FRAME_SAMPLES * 6];
                    match self.decoder.decode(&packet.payload, &mut frame, false) {
                        Ok(samples) => pcm.extend_from_slice(&frame[..samples]),
                        Err(_) => pcm.resize(pcm.len() + FRAME_SAMPLES, 0),
                    }
                }
                Output::Gap(count) if count <= MAX_CONCEALED_FRAMES => {
                    for _ in 0..count {
                        let mut frame = vec![0i16; FRAME_SAMPLES];
                        let samples = self.decoder.decode(&[], &mut frame, false).unwrap_or(0);
                        pcm.extend_from_slice(&frame[..samples]);
                        self.advance_timestamp();
                    }
                }
                // Long gaps are filled with silence from the next packet's timestamp.
                Output::Gap(_) => {}
            }
        }
        pcm
    }

    fn advance_timestamp(&mut self) {
        if let Some(last) = self.last_timestamp.as_mut() {
            *last = last.wrapping_add(FRAME_SAMPLES as u32);
        }
    }
}

fn downsample(samples: &[i16], factor: usize) -> Vec<f32> {
    samples
        .chunks(factor)
        .map(|chunk| chunk.iter().map(|s| f32::from(*s)).sum::<f32>() / chunk.len() as f32)
        .collect()
}

fn envelope(samples: &[f32], window: usize) -> Vec<f32> {
    samples
        .chunks(window)
        .map(|chunk| chunk.iter().map(|s| s.abs()).sum::<f32>() / chunk.len() as f32)
        .collect()
}

/// Correlation at `lag` normalised by the energies of the whole signals, so that a tiny overlap
/// cannot score high (used for the coarse search).
fn global_ncc_at(a: &[f32], b: &[f32], lag: isize, energy: f64) -> f64 {
    let mut dot = 0f64;
    for (i, x) in a.iter().enumerate() {
        let j = i as isize + lag;
        if j >= 0 && (j as usize) < b.len() {
            dot += f64::from(*x) * f64::from(b[j as usize]);
        }
    }
    dot / energy
}

fn ncc_at(a: &[f32], b: &[f32], lag: isize) -> f32 {
    // Compare a[i] with b[i + lag] over the overlap.
    let (mut dot, mut energy_a, mut energy_b) = (0f64, 0f64, 0f64);
    for (i, x) in a.iter().enumerate() {
        let j = i as isize + lag;
        if j < 0 || j as usize >= b.len() {
            continue;
        }
        let y = b[j as usize];
        dot += f64::from(*x) * f64::from(y);
        energy_a += f64::from(*x) * f64::from(*x);
        energy_b += f64::from(y) * f64::from(y);
    }
    if energy_a == 0.0 || energy_b == 0.0 {
        return 0.0;
    }
    (dot / (energy_a.sqrt() * energy_b.sqrt())) as f32
}

/// Normalised cross-correlation of `sent` with the best-aligned part of `received` (both 48 kHz
/// mono), computed at 8 kHz: a coarse alignment on 10 ms energy envelopes, then a fine search.
/// 1.0 means identical up to gain and delay.
pub fn similarity(sent: &[i16], received: &[i16]) -> f32 {
    let a = downsample(sent, 6);
    let b = downsample(received, 6);
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (env_a, env_b) = (envelope(&a, 80), envelope(&b, 80));
    let energy = |v: &[f32]| v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>();
    let norm = (energy(&env_a) * energy(&env_b))
        .sqrt()
        .max(f64::MIN_POSITIVE);
    let max_lag = env_b.len() as isize;
    let coarse = (-(env_a.len() as isize)..max_lag)
        .max_by(|x, y| {
            global_ncc_at(&env_a, &env_b, *x, norm)
                .partial_cmp(&global_ncc_at(&env_a, &env_b, *y, norm))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .unwrap_or(0)
        * 80;
    (coarse - 120..=coarse + 120)
        .map(|lag| ncc_at(&a, &b, lag))
        .fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chirp(len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                let envelope = (t * 3.0).sin().abs();
                (envelope * 8000.0 * (t * (300.0 + 400.0 * t) * std::f32::consts::TAU).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn similarity_finds_delayed_copies_and_rejects_other_signals() {
        let sent = chirp(SAMPLE_RATE as usize);
        let mut delayed = vec![0i16; 7_000];
        delayed.extend(sent.iter().map(|s| s / 2));
        delayed.extend(vec![0i16; 3_000]);
        assert!(similarity(&sent, &delayed) > 0.95);
        let noise: Vec<i16> = (0..SAMPLE_RATE as usize)
            .map(|i| ((i * 7919 % 2003) as i16 - 1000) * 4)
            .collect();
        assert!(similarity(&sent, &noise) < 0.5);
    }

    #[test]
    fn opus_round_trip_with_a_lost_packet() {
        let sent = chirp(SAMPLE_RATE as usize / 2);
        let mut encoder = VoiceEncoder::new().unwrap();
        let mut decoder = VoiceDecoder::new().unwrap();
        let mut received = Vec::new();
        for (index, frame) in sent.chunks(FRAME_SAMPLES).enumerate() {
            let mut packet = rtp::Packet::default();
            packet.header.sequence_number = index as u16;
            packet.header.timestamp = (index * FRAME_SAMPLES) as u32;
            packet.payload = encoder.encode(frame).unwrap().into();
            if index != 7 {
                received.extend(decoder.push(packet));
            }
        }
        // 25 frames sent, one lost and concealed; the last two may wait in the reorder buffer.
        assert!(received.len() >= 22 * FRAME_SAMPLES, "{}", received.len());
        assert!(similarity(&sent, &received) > 0.8);
    }
}
