use super::*;

fn raw(start_ms: u64, end_ms: u64, text: &str) -> RawSegment {
    RawSegment {
        start_ms,
        end_ms,
        text: text.to_string(),
        avg_token_prob: 0.9,
        no_speech_prob: 0.05,
        tokens: Vec::new(),
    }
}

fn token(start_ms: u64, end_ms: u64, text: &str) -> RawToken {
    RawToken {
        start_ms,
        end_ms,
        text: text.to_string(),
        probability: 0.8,
    }
}

/// The single segment a decoded segment maps to.
fn one(segments: Vec<Segment>) -> Segment {
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.into_iter().next().unwrap()
}

fn piece(start_ms: u64, seconds: usize) -> AudioPiece {
    AudioPiece {
        start_ms,
        samples: vec![0.0; seconds * 16_000],
    }
}

#[test]
fn regions_are_packed_with_gaps_and_mapped_back_to_call_time() {
    // Piece starts 60 s into the call; speech at 1..3 s and 10..12 s of it.
    let pieces = vec![piece(60_000, 20)];
    let regions = vec![16_000..48_000, 160_000..192_000];
    let chunks = plan_chunks(0, &regions);
    assert_eq!(chunks.len(), 1);
    let chunk = &chunks[0];
    // 2 s + 1 s gap + 2 s.
    assert_eq!(chunk.len(), 16_000 * 5);
    assert_eq!(chunk.speech_ms(), 4_000);
    // A segment in the first region: 0.5..1.5 s of the chunk = 61.5..62.5 s of the call.
    let s = one(chunk.to_call_time(&raw(500, 1_500, " Hello. "), &pieces));
    assert_eq!(
        (s.start_ms, s.end_ms, s.text.as_str()),
        (61_500, 62_500, "Hello.")
    );
    // A segment starting in the gap starts with the second region (70 s) and ends inside it.
    let s = one(chunk.to_call_time(&raw(2_500, 4_000, "Second."), &pieces));
    assert_eq!((s.start_ms, s.end_ms), (70_000, 71_000));
    // A segment without token times spanning both regions keeps both ends.
    let s = one(chunk.to_call_time(&raw(1_000, 5_000, "Both."), &pieces));
    assert_eq!((s.start_ms, s.end_ms), (62_000, 72_000));
    // An end in the gap belongs to the first region.
    let s = one(chunk.to_call_time(&raw(1_000, 2_500, "First."), &pieces));
    assert_eq!((s.start_ms, s.end_ms), (62_000, 63_000));
}

#[test]
fn a_segment_running_across_two_regions_is_cut_between_them_by_token_times() {
    let pieces = vec![piece(60_000, 20)];
    let chunk = &plan_chunks(0, &[16_000..48_000, 160_000..192_000])[0];
    let segment = RawSegment {
        tokens: vec![
            token(500, 800, "The"),
            token(1_200, 1_800, " end."),
            token(3_500, 3_800, " Next"),
            token(4_000, 4_500, " one."),
        ],
        ..raw(0, 5_000, "The end. Next one.")
    };
    let segments = chunk.to_call_time(&segment, &pieces);
    let got: Vec<_> = segments
        .iter()
        .map(|s| (s.start_ms, s.end_ms, s.text.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![(61_500, 62_800, "The end."), (70_500, 71_500, "Next one.")]
    );
    assert!((segments[0].avg_token_prob - 0.8).abs() < 1e-6);
}

#[test]
fn chunks_never_exceed_the_whisper_window_unless_one_region_does() {
    let second = 16_000;
    let regions: Vec<_> = (0..10)
        .map(|i| (i * 20 * second)..(i * 20 * second + 10 * second))
        .collect();
    let chunks = plan_chunks(3, &regions);
    // 10 s regions + 1 s gaps: two fit into 28 s, a third does not.
    assert_eq!(chunks.len(), 5);
    assert!(chunks
        .iter()
        .all(|c| c.len() <= ms_to_samples(CHUNK_MAX_MS)));
    assert!(chunks.iter().all(|c| c.parts.iter().all(|p| p.piece == 3)));
    let long = plan_chunks(0, &[0..40 * second, 41 * second..42 * second]);
    assert_eq!(long.len(), 2);
    assert_eq!(long[0].len(), 40 * second);
    assert!(plan_chunks(0, &[]).is_empty());
}

#[test]
fn assembled_chunks_copy_speech_and_put_silence_between() {
    let pieces = vec![AudioPiece {
        start_ms: 0,
        samples: (0..32_000).map(|i| i as f32).collect(),
    }];
    let chunk = &plan_chunks(0, &[100..110, 200..205])[0];
    let samples = chunk.assemble(&pieces);
    assert_eq!(samples.len(), 10 + 16_000 + 5);
    assert_eq!(samples[0], 100.0);
    assert_eq!(samples[9], 109.0);
    assert!(samples[10..16_010].iter().all(|s| *s == 0.0));
    assert_eq!(samples[16_010], 200.0);
}

#[test]
fn non_speech_and_doubtful_segments_are_dropped() {
    assert!(is_speech(&raw(0, 1, "Hello there.")));
    assert!(!is_speech(&raw(0, 1, "  ")));
    assert!(!is_speech(&raw(0, 1, "[BLANK_AUDIO]")));
    assert!(!is_speech(&raw(0, 1, "(music playing)")));
    assert!(!is_speech(&raw(0, 1, "...")));
    let doubtful = RawSegment {
        no_speech_prob: 0.8,
        avg_token_prob: 0.2,
        ..raw(0, 1, "Thank you.")
    };
    assert!(!is_speech(&doubtful));
    let confident = RawSegment {
        no_speech_prob: 0.8,
        avg_token_prob: 0.9,
        ..raw(0, 1, "Thank you.")
    };
    assert!(is_speech(&confident));
}
