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
fn close_regions_form_one_utterance_and_distant_ones_another() {
    // Piece starts 60 s into the call; speech at 1..3 s, 3.5..4 s and 10..12 s of it.
    let pieces = vec![piece(60_000, 20)];
    let regions = vec![16_000..48_000, 56_000..64_000, 160_000..192_000];
    let chunks = plan_chunks(0, &regions, &[]);
    assert_eq!(chunks.len(), 2);
    // The first two are 0.5 s apart: one chunk with the real audio between them.
    assert_eq!(chunks[0].len(), 48_000);
    assert_eq!(chunks[0].speech_ms(), 3_000);
    assert_eq!(chunks[1].speech_ms(), 2_000);
    // Times map linearly: 0.5..1.5 s of the first chunk = 61.5..62.5 s of the call.
    let s = one(chunks[0].to_call_time(&raw(500, 1_500, " Hello. "), &pieces));
    assert_eq!(
        (s.start_ms, s.end_ms, s.text.as_str()),
        (61_500, 62_500, "Hello.")
    );
    let s = one(chunks[1].to_call_time(&raw(0, 1_000, "Second."), &pieces));
    assert_eq!((s.start_ms, s.end_ms), (70_000, 71_000));
    // Whisper's times past the end of the chunk are clamped to it.
    let s = one(chunks[1].to_call_time(&raw(1_500, 9_000, "Late."), &pieces));
    assert_eq!((s.start_ms, s.end_ms), (71_500, 72_000));
}

#[test]
fn chunks_never_exceed_the_whisper_window_unless_one_region_does() {
    let second = 16_000;
    // 10 s regions 0.5 s apart: joined while they fit into 28 s.
    let regions: Vec<_> = (0..6)
        .map(|i| (i * 21 * second / 2)..(i * 21 * second / 2 + 10 * second))
        .collect();
    let chunks = plan_chunks(3, &regions, &[]);
    assert_eq!(chunks.len(), 3);
    assert!(chunks
        .iter()
        .all(|c| c.len() <= ms_to_samples(CHUNK_MAX_MS)));
    assert!(chunks.iter().all(|c| c.parts.iter().all(|p| p.piece == 3)));
    let long = plan_chunks(0, &[0..40 * second, 40 * second + 100..42 * second], &[]);
    assert_eq!(long.len(), 2);
    assert_eq!(long[0].len(), 40 * second);
    assert!(plan_chunks(0, &[], &[]).is_empty());
}

#[test]
fn assembled_chunks_copy_the_audio() {
    let pieces = vec![AudioPiece {
        start_ms: 0,
        samples: (0..32_000).map(|i| i as f32).collect(),
    }];
    let chunk = &plan_chunks(0, &[100..110, 200..205], &[])[0];
    let samples = chunk.assemble(&pieces);
    assert_eq!(samples.len(), 105);
    assert_eq!(samples[0], 100.0);
    assert_eq!(samples[104], 204.0);
}

#[test]
fn a_segment_running_across_two_parts_is_cut_between_them_by_token_times() {
    let pieces = vec![piece(60_000, 20)];
    let chunk = Chunk {
        parts: vec![
            Part {
                piece: 0,
                source: 16_000..48_000,
                chunk_offset: 0,
            },
            Part {
                piece: 0,
                source: 160_000..192_000,
                chunk_offset: 48_000,
            },
        ],
    };
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

#[test]
fn tokens_become_words_with_their_own_call_times() {
    let tokens = vec![
        token(100, 300, " The"),
        token(300, 500, " data"),
        token(500, 700, "base"),
        token(800, 900, " up"),
        token(900, 1_100, "grade"),
        token(1_100, 1_120, "."),
        token(1_200, 1_250, " -"),
        token(1_300, 1_500, " Done"),
    ];
    let words = words_of(&tokens);
    let summary: Vec<(u64, u64, &str)> = words
        .iter()
        .map(|w| (w.start_ms, w.end_ms, w.text.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (100, 300, "The"),
            (300, 700, "database"),
            (800, 1_250, "upgrade. -"),
            (1_300, 1_500, "Done"),
        ]
    );
    assert!((words[1].probability - 0.8).abs() < 1e-6);

    // On the call timeline: a piece 60 s into the call, speech from 1 s of it.
    let pieces = vec![piece(60_000, 10)];
    let speech = 16_000..96_000;
    let chunks = plan_chunks(0, std::slice::from_ref(&speech), &[]);
    let mut segment = raw(100, 1_500, " The database upgrade. - Done");
    segment.tokens = tokens;
    let s = one(chunks[0].to_call_time(&segment, &pieces));
    let starts: Vec<u64> = s.words.iter().map(|w| w.start_ms).collect();
    assert_eq!(starts, vec![61_100, 61_300, 61_800, 62_300]);
    assert_eq!(s.words.last().unwrap().end_ms, 62_500);
}

/// The source ranges of a plan's chunks, in order.
fn spans(chunks: &[Chunk]) -> Vec<(usize, Range<usize>)> {
    chunks
        .iter()
        .flat_map(|c| c.parts.iter().map(|p| (p.piece, p.source.clone())))
        .collect()
}

#[test]
fn two_engines_get_equal_shares_of_a_long_speaker_in_as_many_chunks() {
    // 12 sentences of 4.3 s, 0.7 s apart: one engine decodes 5 + 5 + 2 sentences (24.3, 24.3, 9.3 s).
    let at = |ms: usize| ms * 16;
    let regions: Vec<Range<usize>> = (0..12)
        .map(|i| at(i * 5_000)..at(i * 5_000 + 4_300))
        .collect();
    let speech = vec![regions.clone()];
    let one = plan_speaker(&speech, 1);
    assert_eq!(one, plan_chunks(0, &regions, &[]));
    let lengths =
        |chunks: &[Chunk]| -> Vec<u64> { chunks.iter().map(|c| samples_to_ms(c.len())).collect() };
    assert_eq!(lengths(&one), vec![24_300, 24_300, 9_300]);
    // Two engines: still three chunks (no added encoder pass), four sentences each, covering the same
    // speech in the same order.
    let two = plan_speaker(&speech, 2);
    assert_eq!(lengths(&two), vec![19_300, 19_300, 19_300]);
    let covered = spans(&two);
    assert!(
        covered.windows(2).all(|w| w[0].1.end < w[1].1.start),
        "{covered:?}"
    );
    assert_eq!(covered[0].1.start, regions[0].start);
    assert_eq!(covered[2].1.end, regions[11].end);
    // Speech that fits one chunk, or that already has many chunks, is planned as for one engine.
    let short = vec![regions[..4].to_vec()];
    assert_eq!(plan_speaker(&short, 2), plan_chunks(0, &regions[..4], &[]));
    let apart: Vec<Range<usize>> = (0..10)
        .map(|i| at(i * 8_000)..at(i * 8_000 + 3_000))
        .collect();
    let many = vec![apart.clone(), apart.clone()];
    let planned = plan_speaker(&many, 2);
    assert_eq!(planned.len(), 20);
    assert_eq!(spans(&planned[10..]), spans(&plan_chunks(1, &apart, &[])));
}

#[test]
fn the_vad_spans_cover_a_piece_with_overlaps() {
    let second = 16_000;
    // One VAD: one span up to 300 s, else equal spans.
    assert_eq!(spans_of(70 * second, 1), vec![0..70 * second]);
    assert_eq!(
        spans_of(600 * second, 1),
        vec![0..300 * second, 299 * second..600 * second]
    );
    // Two VADs: two halves, the second reaching 1 s back; a short piece stays whole.
    assert_eq!(
        spans_of(70 * second, 2),
        vec![0..35 * second, 34 * second..70 * second]
    );
    assert_eq!(spans_of(12 * second, 2), vec![0..12 * second]);
    assert!(spans_of(0, 2).is_empty());
}

#[test]
fn engines_encode_ahead_while_few_chunks_wait_and_decode_the_longest_ready() {
    // Three chunks, 12, 20 and 16 s long, on two engines.
    let at = |ms: usize| ms * 16;
    let regions = vec![
        at(0)..at(12_000),
        at(14_000)..at(34_000),
        at(36_000)..at(52_000),
    ];
    let chunks = plan_chunks(0, &regions, &[]);
    assert_eq!(chunks.len(), 3);
    let mut tasks = Tasks::new(&chunks, 2);
    let prepare = |task: Task| match task {
        Task::Prepare(index) => index,
        _ => panic!("expected an encoder pass"),
    };
    let decode = |task: Task| match task {
        Task::Decode(index, _, _) => index,
        _ => panic!("expected a decode"),
    };
    // Both engines start encoding, longest first.
    assert_eq!(prepare(tasks.next()), 1);
    assert_eq!(prepare(tasks.next()), 2);
    assert!(tasks.prepared(1, vec![], Ok(None)).is_none());
    assert!(tasks.prepared(2, vec![], Ok(None)).is_none());
    // Two wait encoded: the first free engine decodes the longest; the next encodes the third.
    assert_eq!(decode(tasks.next()), 1);
    assert_eq!(prepare(tasks.next()), 0);
    // With nothing left to encode and one chunk waiting, engines decode, then stop.
    assert_eq!(decode(tasks.next()), 2);
    assert!(matches!(tasks.next(), Task::Stop));
    assert!(tasks.prepared(0, vec![], Ok(None)).is_none());
    assert_eq!(decode(tasks.next()), 0);
    assert!(matches!(tasks.next(), Task::Stop));

    // A failed encoder pass is reported once and stops every engine.
    let mut tasks = Tasks::new(&chunks, 2);
    let first = prepare(tasks.next());
    let failed = tasks.prepared(first, vec![], Err(crate::error::Error::Cancelled));
    assert!(matches!(failed, Some(crate::error::Error::Cancelled)));
    assert!(matches!(tasks.next(), Task::Stop));
}
