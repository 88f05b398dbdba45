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
/// The longest hole concealed, in samples.
const MAX_CONCEALED_SAMPLES: usize = FRAME_SAMPLES * MAX_CONCEALED_FRAMES as usize;
/// Timestamp jumps up to this many samples (10 s) are filled with silence; a larger jump is a
/// restarted clock, not time that passed.
const MAX_FILLED_SAMPLES: u32 = SAMPLE_RATE * 10;
/// The longest Opus packet: 120 ms.
const MAX_PACKET_SAMPLES: usize = FRAME_SAMPLES * 6;
/// Opus conceals in steps of 2.5 ms.
const PLC_STEP_SAMPLES: usize = 120;

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
///
/// The output is one contiguous 48 kHz timeline that follows the sender's RTP timestamps: every
/// sample out stands for one sample of the sender's clock. Packets with an empty payload (such
/// as Chromium's padding-only bandwidth probes) count in the sequence but carry no audio, so they
/// add nothing. A real loss is concealed (Opus PLC) for exactly the duration the timestamps say
/// is missing; a longer hole, or a timestamp jump without any loss (a sender that stopped
/// sending), is filled with silence.
pub struct VoiceDecoder {
    decoder: opus::Decoder,
    reorder: Reorder<rtp::Packet>,
    /// RTP clock ticks (48 kHz) per output sample: 1 at 48 kHz, 3 at 16 kHz.
    ticks_per_sample: usize,
    /// RTP timestamp of the last packet that carried audio, and how many RTP ticks it decoded to.
    last: Option<(u32, usize)>,
    /// Packets reported lost since the last packet that carried audio.
    lost: u32,
}

impl VoiceDecoder {
    /// A decoder to 48 kHz that waits for up to 3 packets past a hole.
    pub fn new() -> Result<Self> {
        Self::with_sample_rate(SAMPLE_RATE)
    }

    /// A decoder to `rate` Hz (8, 12, 16, 24 or 48 kHz): libopus decodes at these rates natively,
    /// so a lower rate needs no resampler (the transcriber decodes at 16 kHz for whisper).
    pub fn with_sample_rate(rate: u32) -> Result<Self> {
        if ![8_000, 12_000, 16_000, 24_000, 48_000].contains(&rate) {
            return Err(Error::Media(format!(
                "opus cannot decode at {rate} Hz (8, 12, 16, 24 or 48 kHz)"
            )));
        }
        Ok(Self {
            decoder: opus::Decoder::new(rate, opus::Channels::Mono)?,
            reorder: Reorder::new(3),
            ticks_per_sample: (SAMPLE_RATE / rate) as usize,
            last: None,
            lost: 0,
        })
    }

    /// Feeds one packet; returns the PCM that became ready (possibly none, possibly several
    /// frames including concealment or silence for lost packets).
    pub fn push(&mut self, packet: rtp::Packet) -> Vec<i16> {
        self.reorder.push(packet.header.sequence_number, packet);
        let mut pcm = Vec::new();
        while let Some(output) = self.reorder.pop() {
            match output {
                Output::Gap(count) => self.lost = self.lost.saturating_add(u32::from(count)),
                // Padding only (a bandwidth probe): it fills its sequence number, nothing more.
                Output::Packet(packet) if packet.payload.is_empty() => {}
                Output::Packet(packet) => {
                    self.fill_before(packet.header.timestamp, &mut pcm);
                    let samples = self.decode(&packet.payload, &mut pcm);
                    self.last = Some((packet.header.timestamp, samples * self.ticks_per_sample));
                }
            }
        }
        pcm
    }

    /// Covers the time between the last audio packet's end and `timestamp`: concealment for a
    /// short real loss, silence otherwise.
    fn fill_before(&mut self, timestamp: u32, pcm: &mut Vec<i16>) {
        let lost = std::mem::take(&mut self.lost);
        let Some((last_timestamp, last_ticks)) = self.last else {
            return;
        };
        // Signed: a timestamp slightly behind the last one means overlap, not a huge jump.
        // Everything here counts RTP ticks (48 kHz) until it becomes output samples.
        let step = i64::from(timestamp.wrapping_sub(last_timestamp) as i32);
        let missing = step - last_ticks as i64;
        if missing > 0 && missing < i64::from(MAX_FILLED_SAMPLES) {
            let missing = missing as usize;
            if lost > 0 && missing <= MAX_CONCEALED_SAMPLES {
                self.conceal(missing / self.ticks_per_sample, pcm);
            } else {
                pcm.resize(pcm.len() + missing / self.ticks_per_sample, 0);
                if lost > 0 {
                    // The decoder's state still holds the sound from before the hole; carried
                    // over the silence it would ring into the next packet. (Resetting only
                    // fails for a destroyed decoder, and then decoding fails too.)
                    let _ = self.decoder.reset_state();
                }
            }
        } else if missing >= i64::from(MAX_FILLED_SAMPLES)
            && lost > 0
            && lost <= u32::from(MAX_CONCEALED_FRAMES)
        {
            // The timestamps restarted (a new source behind the same track): they say nothing
            // about the loss, so conceal one packet's duration per lost packet.
            self.conceal(lost as usize * last_ticks / self.ticks_per_sample, pcm);
        }
    }

    /// Appends exactly `samples` output samples of Opus packet-loss concealment.
    fn conceal(&mut self, samples: usize, pcm: &mut Vec<i16>) {
        let mut frame = [0i16; FRAME_SAMPLES];
        let frame_samples = FRAME_SAMPLES / self.ticks_per_sample;
        let step = PLC_STEP_SAMPLES / self.ticks_per_sample;
        let mut left = samples;
        while left > 0 {
            // Opus conceals in whole 2.5 ms steps; a remainder shorter than that is silence.
            let chunk = left.min(frame_samples) / step * step;
            if chunk == 0 {
                pcm.resize(pcm.len() + left, 0);
                return;
            }
            let produced = self
                .decoder
                .decode(&[], &mut frame[..chunk], false)
                .unwrap_or(0)
                .min(chunk);
            pcm.extend_from_slice(&frame[..produced]);
            pcm.resize(pcm.len() + chunk - produced, 0);
            left -= chunk;
        }
    }

    /// Decodes one packet onto `pcm`; returns how many samples it stands for (a packet the
    /// decoder rejects becomes silence of its declared duration, or one frame).
    fn decode(&mut self, payload: &[u8], pcm: &mut Vec<i16>) -> usize {
        let mut frame = [0i16; MAX_PACKET_SAMPLES];
        match self.decoder.decode(payload, &mut frame, false) {
            Ok(samples) => {
                let samples = samples.min(MAX_PACKET_SAMPLES);
                pcm.extend_from_slice(&frame[..samples]);
                samples
            }
            Err(_) => {
                let rate = SAMPLE_RATE / self.ticks_per_sample as u32;
                let samples = opus::packet::get_nb_samples(payload, rate)
                    .ok()
                    .filter(|n| (1..=MAX_PACKET_SAMPLES).contains(n))
                    .unwrap_or(FRAME_SAMPLES / self.ticks_per_sample);
                pcm.resize(pcm.len() + samples, 0);
                samples
            }
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

    /// One RTP packet of a voice stream.
    fn packet(sequence: u16, timestamp: u32, payload: Vec<u8>) -> rtp::Packet {
        let mut packet = rtp::Packet::default();
        packet.header.sequence_number = sequence;
        packet.header.timestamp = timestamp;
        packet.payload = payload.into();
        packet
    }

    /// `pcm` encoded as 20 ms packets: (frame index, Opus payload).
    fn encode_all(pcm: &[i16]) -> Vec<Vec<u8>> {
        let mut encoder = VoiceEncoder::new().unwrap();
        pcm.chunks(FRAME_SAMPLES)
            .map(|frame| encoder.encode(frame).unwrap())
            .collect()
    }

    fn decode_all(packets: impl IntoIterator<Item = rtp::Packet>) -> Vec<i16> {
        let mut decoder = VoiceDecoder::new().unwrap();
        packets.into_iter().flat_map(|p| decoder.push(p)).collect()
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn padding_only_packets_add_no_audio() {
        let frames = encode_all(&chirp(SAMPLE_RATE as usize / 2));
        let timestamp = |index: usize| 1_000 + (index * FRAME_SAMPLES) as u32;
        let clean = decode_all(
            frames
                .iter()
                .enumerate()
                .map(|(i, f)| packet(i as u16, timestamp(i), f.clone())),
        );
        // As Chromium sends them: after every third frame, two padding-only probes that take the
        // next sequence numbers and repeat the previous packet's timestamp.
        let mut probed = Vec::new();
        let mut sequence = 65_530u16;
        for (index, frame) in frames.iter().enumerate() {
            probed.push(packet(sequence, timestamp(index), frame.clone()));
            sequence = sequence.wrapping_add(1);
            if index % 3 == 0 {
                for _ in 0..2 {
                    probed.push(packet(sequence, timestamp(index), Vec::new()));
                    sequence = sequence.wrapping_add(1);
                }
            }
        }
        let received = decode_all(probed);
        assert_eq!(received.len(), frames.len() * FRAME_SAMPLES);
        assert_eq!(received, clean, "probes changed the decoded audio");
    }

    #[test]
    fn one_lost_packet_is_concealed_for_exactly_one_frame() {
        let sent = chirp(SAMPLE_RATE as usize / 2);
        let frames = encode_all(&sent);
        let packets = |skip: &[usize]| {
            frames
                .iter()
                .enumerate()
                .filter(|(i, _)| !skip.contains(i))
                .map(|(i, f)| packet(i as u16, (i * FRAME_SAMPLES) as u32, f.clone()))
                .collect::<Vec<_>>()
        };
        let clean = decode_all(packets(&[]));
        let received = decode_all(packets(&[7]));
        // 25 frames sent, 24 decoded and one concealed: the reorder buffer gave up on the hole
        // three packets later and nothing waits in it after that.
        assert_eq!(received.len(), frames.len() * FRAME_SAMPLES);
        assert_eq!(received[..7 * FRAME_SAMPLES], clean[..7 * FRAME_SAMPLES]);
        assert!(
            rms(&received[7 * FRAME_SAMPLES..8 * FRAME_SAMPLES]) > 100.0,
            "the lost frame is concealed, not silent"
        );
        assert!(similarity(&sent, &received) > 0.8);

        // A lost padding-only probe leaves a sequence hole but no time to cover.
        let mut decoder = VoiceDecoder::new().unwrap();
        let mut received = Vec::new();
        for (index, frame) in frames.iter().enumerate() {
            let sequence = if index < 10 { index } else { index + 1 } as u16;
            received.extend(decoder.push(packet(
                sequence,
                (index * FRAME_SAMPLES) as u32,
                frame.clone(),
            )));
        }
        assert_eq!(received, clean);
    }

    #[test]
    fn output_follows_the_rtp_timestamps() {
        // 3 s: silence with a loud tone from 2.0 s to 2.2 s and from 2.6 s to 2.8 s.
        let mut sent = vec![0i16; 3 * SAMPLE_RATE as usize];
        for (start, end) in [(96_000, 105_600), (124_800, 134_400)] {
            for (i, sample) in sent[start..end].iter_mut().enumerate() {
                *sample =
                    (8000.0 * (i as f32 * 440.0 / 48_000.0 * std::f32::consts::TAU).sin()) as i16;
            }
        }
        let frames = encode_all(&sent);
        let first_timestamp = 4_294_000_000u32; // wraps during the stream
        let mut stream = Vec::new();
        let mut sequence = 100u16;
        for (index, frame) in frames.iter().enumerate() {
            // Frames 20..70 are never sent (a sender that paused: no sequence gap); 80 is
            // lost; 110..120 are lost (too long to conceal); after frame 130, a probe.
            let timestamp = first_timestamp.wrapping_add((index * FRAME_SAMPLES) as u32);
            if (20..70).contains(&index) {
                continue;
            }
            if index != 80 && !(110..120).contains(&index) {
                stream.push(packet(sequence, timestamp, frame.clone()));
            }
            sequence = sequence.wrapping_add(1);
            if index == 130 {
                stream.push(packet(sequence, timestamp, Vec::new()));
                sequence = sequence.wrapping_add(1);
            }
        }
        // Reordered in flight, within the buffer's depth.
        stream.swap(60, 61);
        let received = decode_all(stream);
        // Every sample the sender's clock covered, from the first frame's start to the last's end.
        assert_eq!(received.len(), frames.len() * FRAME_SAMPLES);
        // The tones sit where they were sent (the codec delays by under 10 ms).
        let window = |from: usize, to: usize| rms(&received[from + 480..to]);
        assert!(
            window(96_000, 105_600) > 2000.0,
            "{}",
            window(96_000, 105_600)
        );
        assert!(window(124_800, 134_400) > 2000.0);
        assert!(
            window(105_600, 124_800) < 1.0,
            "the long loss is silence, without ringing"
        );
        assert!(window(19_200, 67_200) < 1.0, "the pause is silence");
    }
}
