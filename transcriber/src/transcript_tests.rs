use std::time::Duration;

use super::*;

fn speaker(name: &str, session: &str) -> Speaker {
    Speaker {
        name: name.to_string(),
        session: session.to_string(),
    }
}

fn segment(start_ms: u64, end_ms: u64, text: &str) -> Segment {
    Segment {
        start_ms,
        end_ms,
        text: text.to_string(),
        avg_token_prob: 0.91234,
        no_speech_prob: 0.01,
        words: Vec::new(),
    }
}

/// What one speaker said, with no language detected and no audio or time accounted.
fn said(name: &str, session: &str, segments: Vec<Segment>) -> SpeakerTranscript {
    SpeakerTranscript {
        speaker: speaker(name, session),
        language: None,
        segments,
        audio_ms: 0,
        speech_ms: 0,
        processing: Duration::ZERO,
    }
}

fn two_speakers() -> Transcript {
    merge(
        "call-1",
        "base",
        75_000,
        vec![
            SpeakerTranscript {
                speaker: speaker("Alice", "s1"),
                language: Some("en".into()),
                segments: vec![
                    segment(1_000, 3_500, "Hello everyone."),
                    segment(4_000, 6_000, "Let's start."),
                    segment(62_000, 64_000, "Bye <all> & thanks."),
                ],
                audio_ms: 70_000,
                speech_ms: 8_000,
                processing: Duration::from_secs(2),
            },
            SpeakerTranscript {
                speaker: speaker("Bob", "s2"),
                language: Some("de".into()),
                segments: vec![segment(5_000, 7_000, "Hallo.")],
                audio_ms: 30_000,
                speech_ms: 2_000,
                processing: Duration::from_secs(1),
            },
        ],
    )
}

#[test]
fn merge_interleaves_speakers_by_start_time_and_counts() {
    let transcript = two_speakers();
    let order: Vec<_> = transcript
        .segments
        .iter()
        .map(|s| (s.speaker, s.segment.start_ms))
        .collect();
    assert_eq!(order, vec![(0, 1_000), (0, 4_000), (1, 5_000), (0, 62_000)]);
    assert_eq!(transcript.summary.segments, 4);
    assert_eq!(transcript.summary.audio_s, 100.0);
    assert_eq!(transcript.summary.speech_s, 10.0);
    assert!((transcript.summary.real_time_factor - 0.3).abs() < 1e-9);
}

#[test]
fn vtt_has_a_header_and_voice_spans_with_escaped_text() {
    let vtt = two_speakers().to_vtt();
    assert!(
        vtt.starts_with("WEBVTT\n\n1\n00:00:01.000 --> 00:00:03.500\n<v Alice>Hello everyone.\n")
    );
    assert!(vtt.contains("\n3\n00:00:05.000 --> 00:00:07.000\n<v Bob>Hallo.\n"));
    assert!(vtt.contains("<v Alice>Bye &lt;all&gt; &amp; thanks.\n"));
}

#[test]
fn srt_numbers_cues_with_comma_milliseconds() {
    let srt = two_speakers().to_srt();
    assert!(srt.starts_with("1\n00:00:01,000 --> 00:00:03,500\nAlice: Hello everyone.\n\n2\n"));
    assert!(srt.ends_with("4\n00:01:02,000 --> 00:01:04,000\nAlice: Bye <all> & thanks.\n"));
}

#[test]
fn txt_merges_consecutive_segments_of_one_speaker() {
    let txt = two_speakers().to_txt();
    assert_eq!(
        txt,
        "Alice (00:00:01): Hello everyone. Let's start.\n\
         Bob (00:00:05): Hallo.\n\
         Alice (00:01:02): Bye <all> & thanks.\n"
    );
}

#[test]
fn txt_starts_a_new_paragraph_after_a_long_pause() {
    let transcript = merge(
        "c",
        "m",
        100_000,
        vec![said(
            "Alice",
            "s1",
            vec![
                segment(0, 1_000, "One."),
                segment(2_500, 4_000, "Two."),
                segment(6_000, 7_000, "Three."),
            ],
        )],
    );
    assert_eq!(
        transcript.to_txt(),
        "Alice (00:00:00): One. Two.\nAlice (00:00:06): Three.\n"
    );
    assert_eq!(transcript.summary.real_time_factor, 0.0);
}

#[test]
fn two_people_with_one_name_stay_apart() {
    let transcript = merge(
        "c",
        "m",
        10_000,
        vec![
            said("Sam", "a", vec![segment(0, 1_000, "I am the first.")]),
            said("Sam", "b", vec![segment(1_500, 2_000, "I am the second.")]),
        ],
    );
    assert_eq!(
        transcript.to_txt(),
        "Sam (00:00:00): I am the first.\nSam (2) (00:00:01): I am the second.\n"
    );
    let json: serde_json::Value = serde_json::from_str(&transcript.to_json()).unwrap();
    assert_eq!(json["segments"][1]["speaker"], "Sam");
    assert_eq!(json["segments"][1]["session"], "b");
}

#[test]
fn json_carries_ids_languages_times_and_confidence() {
    let json: serde_json::Value = serde_json::from_str(&two_speakers().to_json()).unwrap();
    assert_eq!(json["call_id"], "call-1");
    assert_eq!(json["model"], "base");
    assert_eq!(json["duration_ms"], 75_000);
    assert_eq!(json["speakers"][1]["language"], "de");
    assert_eq!(json["speakers"][1]["session"], "s2");
    let first = &json["segments"][0];
    assert_eq!(first["speaker"], "Alice");
    assert_eq!(first["session"], "s1");
    assert_eq!(first["start_ms"], 1_000);
    assert_eq!(first["end_ms"], 3_500);
    assert_eq!(first["text"], "Hello everyone.");
    assert_eq!(first["avg_token_prob"], 0.912);
    assert_eq!(first["no_speech_prob"], 0.01);
    assert_eq!(json["summary"]["segments"], 4);
}

#[test]
fn an_empty_transcript_is_valid_in_every_format() {
    let transcript = merge("c", "m", 20_000, Vec::new());
    assert!(transcript.is_empty());
    assert_eq!(transcript.to_vtt(), "WEBVTT\n");
    assert_eq!(transcript.to_srt(), "");
    assert_eq!(transcript.to_txt(), "");
    let json: serde_json::Value = serde_json::from_str(&transcript.to_json()).unwrap();
    assert_eq!(json["segments"].as_array().unwrap().len(), 0);
}
