//! The transcript of a call and its four artifact formats. Pure code: speakers' segments in, text out.
//!
//! [`merge`] interleaves every speaker's segments by call time; [`Transcript`] renders `transcript.vtt`
//! (WebVTT with `<v Name>` voice spans), `.srt`, `.txt` (one paragraph per run of one speaker) and `.json`
//! (everything, including whisper's confidence figures). Two participants with the same display name are
//! kept apart by session: the second one seen is labelled `Name (2)` in the human-readable formats.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

/// A participant as the call knew them. Two people with one name stay apart by session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Speaker {
    /// Display name.
    pub name: String,
    /// The SFU session id of the participant.
    pub session: String,
}

/// One piece of recognised speech, on the call's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Milliseconds from the start of the call.
    pub start_ms: u64,
    /// Milliseconds from the start of the call; `end_ms >= start_ms`.
    pub end_ms: u64,
    /// The recognised text, trimmed.
    pub text: String,
    /// Mean probability of the segment's text tokens (0..1), whisper's own figure.
    pub avg_token_prob: f32,
    /// Whisper's probability that the window held no speech (0..1).
    pub no_speech_prob: f32,
    /// The segment's words with their own times (whisper's token timestamps), in order.
    pub words: Vec<Word>,
}

/// One word of a segment, on the call's timeline: where a player highlights it.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// Milliseconds from the start of the call.
    pub start_ms: u64,
    /// Milliseconds from the start of the call; `end_ms >= start_ms`.
    pub end_ms: u64,
    /// The word with its punctuation, without surrounding spaces.
    pub text: String,
    /// Mean probability of its tokens (0..1).
    pub probability: f32,
}

/// Everything the transcriber produced for one speaker.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerTranscript {
    /// Who spoke.
    pub speaker: Speaker,
    /// The language whisper used: the one asked for, or the one it detected (ISO 639-1, e.g. `en`).
    pub language: Option<String>,
    /// The speaker's segments in time order.
    pub segments: Vec<Segment>,
    /// Audio of this speaker that went into the pipeline (speech and silence), in milliseconds.
    pub audio_ms: u64,
    /// Audio the VAD judged to be speech and sent to whisper, in milliseconds.
    pub speech_ms: u64,
    /// Wall-clock time spent on VAD and whisper for this speaker.
    pub processing: Duration,
}

/// A segment with the speaker it belongs to, as it appears in the merged transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerSegment {
    /// Index into [`Transcript::speakers`].
    pub speaker: usize,
    /// The segment itself.
    pub segment: Segment,
}

/// One speaker of the merged transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptSpeaker {
    /// Name and session as they were in the call.
    pub speaker: Speaker,
    /// The label used in VTT, SRT and TXT: the name, with ` (2)`, ` (3)`... for a repeated name.
    pub label: String,
    /// Language used for this speaker.
    pub language: Option<String>,
    /// Audio and speech of this speaker, in milliseconds.
    pub audio_ms: u64,
    /// See [`SpeakerTranscript::speech_ms`].
    pub speech_ms: u64,
}

/// Counters of a transcription, reported to the offloader and written into the JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// All speakers' audio, in seconds.
    pub audio_s: f64,
    /// All speakers' speech (what whisper saw), in seconds.
    pub speech_s: f64,
    /// Number of segments in the transcript.
    pub segments: usize,
    /// Wall-clock seconds of VAD + whisper.
    pub processing_s: f64,
    /// Real-time factor: processing time divided by speech time (0 when there was no speech). An hour of
    /// speech takes `rtf` hours to transcribe.
    pub real_time_factor: f64,
}

/// The whole call's transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The call that was transcribed.
    pub call_id: String,
    /// The model's name (e.g. `base`, `tiny.en-q8_0`).
    pub model: String,
    /// Length of the call in milliseconds.
    pub duration_ms: u64,
    /// Speakers in order of first appearance in the input.
    pub speakers: Vec<TranscriptSpeaker>,
    /// All segments, ordered by start time (ties: by speaker order, then end time).
    pub segments: Vec<SpeakerSegment>,
    /// Counters.
    pub summary: Summary,
}

/// A pause this long or longer between two segments of the same speaker starts a new TXT paragraph, with
/// its own time: a speaker who pauses (or mutes) and speaks again later gets a line where they spoke again.
/// Shorter pauses are the breaths and sentence breaks of one turn.
pub const TXT_PARAGRAPH_PAUSE_MS: u64 = 2_000;

/// Interleaves every speaker's segments by start time into one transcript.
pub fn merge(
    call_id: &str,
    model_name: &str,
    call_duration_ms: u64,
    speakers: Vec<SpeakerTranscript>,
) -> Transcript {
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut out_speakers = Vec::with_capacity(speakers.len());
    let mut segments = Vec::new();
    let mut audio_ms = 0;
    let mut speech_ms = 0;
    let mut processing = Duration::ZERO;
    for (index, speaker_transcript) in speakers.into_iter().enumerate() {
        let count = seen_names
            .entry(speaker_transcript.speaker.name.clone())
            .or_insert(0);
        *count += 1;
        let label = if *count == 1 {
            speaker_transcript.speaker.name.clone()
        } else {
            format!("{} ({count})", speaker_transcript.speaker.name)
        };
        audio_ms += speaker_transcript.audio_ms;
        speech_ms += speaker_transcript.speech_ms;
        processing += speaker_transcript.processing;
        segments.extend(
            speaker_transcript
                .segments
                .into_iter()
                .map(|segment| SpeakerSegment {
                    speaker: index,
                    segment,
                }),
        );
        out_speakers.push(TranscriptSpeaker {
            speaker: speaker_transcript.speaker,
            label,
            language: speaker_transcript.language,
            audio_ms: speaker_transcript.audio_ms,
            speech_ms: speaker_transcript.speech_ms,
        });
    }
    segments.sort_by_key(|s| (s.segment.start_ms, s.speaker, s.segment.end_ms));
    let speech_s = speech_ms as f64 / 1000.0;
    let processing_s = processing.as_secs_f64();
    let summary = Summary {
        audio_s: audio_ms as f64 / 1000.0,
        speech_s,
        segments: segments.len(),
        processing_s,
        real_time_factor: if speech_s > 0.0 {
            processing_s / speech_s
        } else {
            0.0
        },
    };
    Transcript {
        call_id: call_id.to_string(),
        model: model_name.to_string(),
        duration_ms: call_duration_ms,
        speakers: out_speakers,
        segments,
        summary,
    }
}

impl Transcript {
    /// True when nobody said anything the model could recognise.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// `transcript.vtt`: WebVTT, one cue per segment, the speaker as a voice span (`<v Name>text`).
    pub fn to_vtt(&self) -> String {
        let mut out = String::from("WEBVTT\n");
        for cue in self.cues('.') {
            // Writing into a String cannot fail.
            let _ = write!(
                out,
                "\n{}\n{} --> {}\n<v {}>{}\n",
                cue.number,
                cue.start,
                cue.end,
                vtt_escape(cue.label),
                vtt_escape(cue.text)
            );
        }
        out
    }

    /// `transcript.srt`: SubRip, one numbered cue per segment, `Name: text`.
    pub fn to_srt(&self) -> String {
        let mut out = String::new();
        for cue in self.cues(',') {
            if cue.number > 1 {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "{}\n{} --> {}\n{}: {}",
                cue.number,
                cue.start,
                cue.end,
                cue.label,
                single_line(cue.text)
            );
        }
        out
    }

    /// The segments as subtitle cues, numbered from 1, their times written with `separator` before the
    /// milliseconds (`.` in WebVTT, `,` in SubRip).
    fn cues(&self, separator: char) -> impl Iterator<Item = Cue<'_>> {
        self.segments
            .iter()
            .enumerate()
            .map(move |(index, item)| Cue {
                number: index + 1,
                start: clock(item.segment.start_ms, separator),
                end: clock(item.segment.end_ms, separator),
                label: &self.speakers[item.speaker].label,
                text: &item.segment.text,
            })
    }

    /// `transcript.txt`: `Name (hh:mm:ss): text`, one line per run of one speaker; a run ends when someone
    /// else speaks or after a pause of [`TXT_PARAGRAPH_PAUSE_MS`].
    pub fn to_txt(&self) -> String {
        let mut out = String::new();
        let mut current: Option<(usize, u64)> = None; // (speaker, end of the last segment)
        for item in &self.segments {
            let text = single_line(&item.segment.text);
            match current {
                Some((speaker, last_end))
                    if speaker == item.speaker
                        && item.segment.start_ms < last_end + TXT_PARAGRAPH_PAUSE_MS =>
                {
                    out.push(' ');
                    out.push_str(&text);
                }
                _ => {
                    if current.is_some() {
                        out.push('\n');
                    }
                    let _ = write!(
                        out,
                        "{} ({}): {}",
                        self.speakers[item.speaker].label,
                        hms(item.segment.start_ms),
                        text
                    );
                }
            }
            let end = current
                .filter(|(speaker, _)| *speaker == item.speaker)
                .map_or(item.segment.end_ms, |(_, end)| end.max(item.segment.end_ms));
            current = Some((item.speaker, end));
        }
        if current.is_some() {
            out.push('\n');
        }
        out
    }

    /// `transcript.json`: call id, model, duration, speakers with their language, every segment with its
    /// speaker's name and session, call-time bounds, text, whisper's confidence figures and its words (each
    /// with call-time bounds and a probability), and the counters.
    pub fn to_json(&self) -> String {
        let speakers: Vec<_> = self
            .speakers
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.speaker.name,
                    "session": s.speaker.session,
                    "label": s.label,
                    "language": s.language,
                    "audio_ms": s.audio_ms,
                    "speech_ms": s.speech_ms,
                })
            })
            .collect();
        let segments: Vec<_> = self
            .segments
            .iter()
            .map(|item| {
                let speaker = &self.speakers[item.speaker];
                serde_json::json!({
                    "speaker": speaker.speaker.name,
                    "session": speaker.speaker.session,
                    "start_ms": item.segment.start_ms,
                    "end_ms": item.segment.end_ms,
                    "text": item.segment.text,
                    "avg_token_prob": round3(item.segment.avg_token_prob),
                    "no_speech_prob": round3(item.segment.no_speech_prob),
                    "words": item.segment.words.iter().map(|word| serde_json::json!({
                        "start_ms": word.start_ms,
                        "end_ms": word.end_ms,
                        "text": word.text,
                        "probability": round3(word.probability),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let value = serde_json::json!({
            "call_id": self.call_id,
            "model": self.model,
            "duration_ms": self.duration_ms,
            "speakers": speakers,
            "segments": segments,
            "summary": {
                "audio_s": self.summary.audio_s,
                "speech_s": self.summary.speech_s,
                "segments": self.summary.segments,
                "processing_s": self.summary.processing_s,
                "real_time_factor": self.summary.real_time_factor,
            },
        });
        // Serialising a `Value` built from strings and numbers cannot fail; non-finite floats become null.
        let mut text =
            serde_json::to_string_pretty(&value).expect("a json Value always serialises");
        text.push('\n');
        text
    }
}

fn round3(value: f32) -> f64 {
    (f64::from(value) * 1000.0).round() / 1000.0
}

/// One subtitle cue: a segment with its number and its times written out.
struct Cue<'a> {
    number: usize,
    start: String,
    end: String,
    label: &'a str,
    text: &'a str,
}

/// `hh:mm:ss.mmm` (VTT, `.`) or `hh:mm:ss,mmm` (SRT, `,`).
fn clock(ms: u64, separator: char) -> String {
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// `hh:mm:ss`.
fn hms(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60
    )
}

/// Text as one line: a cue or paragraph never contains a blank line (which would end a VTT/SRT cue).
fn single_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// WebVTT cue text: `&`, `<` and `>` are markup and must be escaped; a line break would end the cue.
fn vtt_escape(text: &str) -> String {
    single_line(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
#[path = "transcript_tests.rs"]
mod tests;
