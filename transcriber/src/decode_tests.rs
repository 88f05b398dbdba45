use super::*;
use calls_participant::audio::{VoiceEncoder, FRAME_SAMPLES};

/// `frames` 20 ms Opus packets of a 440 Hz tone at 48 kHz.
fn tone_packets(frames: usize) -> Vec<Vec<u8>> {
    let mut encoder = VoiceEncoder::new().unwrap();
    (0..frames)
        .map(|frame| {
            let pcm: Vec<i16> = (0..FRAME_SAMPLES)
                .map(|i| {
                    let t = (frame * FRAME_SAMPLES + i) as f64 / 48_000.0;
                    (f64::sin(2.0 * std::f64::consts::PI * 440.0 * t) * 12_000.0) as i16
                })
                .collect();
            encoder.encode(&pcm).unwrap()
        })
        .collect()
}

/// Packets of one track: sequence and timestamp from `first`, placed every 20 ms from `start_ms`.
fn placed(track: u16, payloads: &[Vec<u8>], first: u16, start_ms: u64) -> Vec<CapturedPacket> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| CapturedPacket {
            track,
            at_us: (start_ms + 20 * i as u64) * 1000,
            sequence: first.wrapping_add(i as u16),
            timestamp: 77_000u32.wrapping_add(u32::from(first.wrapping_add(i as u16)) * 960),
            payload: payload.clone(),
        })
        .collect()
}

fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32).sqrt()
}

/// The tone's frequency from zero crossings at 16 kHz.
fn frequency(samples: &[f32]) -> f32 {
    let crossings = samples
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    crossings as f32 * 16_000.0 / samples.len() as f32
}

#[test]
fn a_track_decodes_to_16_khz_at_its_call_time() {
    let pieces = decode_packets(placed(0, &tone_packets(50), 100, 2_000)).unwrap();
    assert_eq!(pieces.len(), 1);
    let piece = &pieces[0];
    assert!(piece.start_ms.abs_diff(2_000) <= 20, "{}", piece.start_ms);
    assert!(
        piece.samples.len().abs_diff(50 * 320) <= 320,
        "{}",
        piece.samples.len()
    );
    let body = &piece.samples[1_600..];
    assert!(rms(body) > 0.2, "the tone is there: rms {}", rms(body));
    assert!(
        (frequency(body) - 440.0).abs() < 10.0,
        "{} Hz",
        frequency(body)
    );
}

#[test]
fn reordered_and_lost_packets_keep_the_length_and_the_timeline() {
    let mut packets = placed(0, &tone_packets(50), 65_530, 1_000);
    packets.swap(5, 6);
    packets.remove(20);
    let pieces = decode_packets(packets).unwrap();
    assert_eq!(pieces.len(), 1, "one loss is concealed, not a new piece");
    assert!(pieces[0].start_ms.abs_diff(1_000) <= 20);
    assert!(
        pieces[0].samples.len().abs_diff(50 * 320) <= 320,
        "the concealed packet still takes its 20 ms: {}",
        pieces[0].samples.len()
    );
}

#[test]
fn a_mute_starts_a_new_piece_at_the_right_time() {
    // The sender kept its timestamps running through the pause (the sfu dropped the muted packets), and
    // capture placed the packets after the unmute at their arrival.
    let payloads = tone_packets(100);
    let mut packets = placed(0, &payloads[..50], 0, 1_000);
    let mut after = placed(0, &payloads[50..], 200, 6_000);
    packets.append(&mut after);
    let pieces = decode_packets(packets).unwrap();
    let starts: Vec<u64> = pieces.iter().map(|p| p.start_ms).collect();
    assert_eq!(pieces.len(), 2, "{starts:?}");
    assert!(
        starts[0].abs_diff(1_000) <= 20 && starts[1].abs_diff(6_000) <= 20,
        "{starts:?}"
    );
}

#[test]
fn a_short_pause_is_filled_with_silence() {
    // The sender stopped for half a second (its timestamps did not move); capture re-anchored it.
    let payloads = tone_packets(40);
    let mut packets = placed(0, &payloads[..20], 0, 1_000);
    packets.extend(placed(0, &payloads[20..], 20, 1_900));
    let pieces = decode_packets(packets).unwrap();
    assert_eq!(pieces.len(), 1);
    let samples = &pieces[0].samples;
    let resumed = ((1_900 - pieces[0].start_ms) * 16) as usize;
    assert!(
        rms(&samples[7_000..resumed - 200]) < 0.01,
        "silence in the pause"
    );
    assert!(
        rms(&samples[resumed + 1_000..resumed + 3_000]) > 0.2,
        "tone after it"
    );
}

#[test]
fn a_reconnect_is_a_new_track_and_a_new_piece() {
    let payloads = tone_packets(60);
    let mut packets = placed(0, &payloads[..30], 500, 1_000);
    // The new track restarts sequence numbers and timestamps.
    packets.extend(placed(1, &payloads[30..], 9, 9_000));
    let pieces = decode_packets(packets).unwrap();
    assert_eq!(pieces.len(), 2);
    assert!(
        pieces[1].start_ms.abs_diff(9_000) <= 20,
        "{}",
        pieces[1].start_ms
    );
    assert!(pieces[1].samples.len().abs_diff(30 * 320) <= 320);
}

#[test]
fn the_builder_appends_fills_and_splits() {
    let mut builder = PieceBuilder::default();
    builder.handle_run(1_000, &[1_000; 320]);
    builder.handle_run(1_030, &[1_000; 320]);
    builder.handle_run(1_500, &[1_000; 320]);
    builder.handle_run(4_000, &[1_000; 160]);
    let pieces = builder.finish();
    assert_eq!(pieces.len(), 2);
    assert_eq!(pieces[0].start_ms, 1_000);
    assert_eq!(
        pieces[0].samples.len(),
        500 * 16 + 320,
        "filled up to 1.5 s"
    );
    assert_eq!(
        pieces[0].samples[600],
        1_000.0 / 32_768.0,
        "the second run follows the first"
    );
    assert_eq!(pieces[0].samples[1_000], 0.0);
    assert_eq!((pieces[1].start_ms, pieces[1].samples.len()), (4_000, 160));
}

#[test]
fn a_file_decodes_like_its_packets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("speaker-0.cap");
    let packets = placed(0, &tone_packets(25), 0, 3_000);
    let mut bytes = crate::capture_file::MAGIC.to_vec();
    for packet in &packets {
        crate::capture_file::write_packet(&mut bytes, packet).unwrap();
    }
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(
        decode_file(&path).unwrap(),
        decode_packets(packets).unwrap()
    );
    assert!(decode_file(&dir.path().join("missing.cap")).is_err());
}
