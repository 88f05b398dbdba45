//! calls-transcriber: joins a call as a bot, keeps every speaker's voice, and after the call transcribes
//! each speaker with whisper into `transcript.{vtt,srt,txt,json}`.
//!
//! The speech part: [`models`] (fetch, convert and find whisper/VAD models), `vad` (Silero VAD),
//! [`engine`] (whisper on a buffer: whisper.cpp, or [`ct2`], CTranslate2), [`pipeline`] (one speaker: VAD → chunks → whisper → call time) and
//! [`transcript`] (merge speakers, render the artifacts). [`live`] is the pure core of live captions
//! (windows per speaker, a bounded worker schedule, stabilised partials and finals). [`files`] is the
//! `transcribe` command: audio files through the same pipeline.

pub mod capture;
mod capture_file;
pub mod config;
pub mod cpus;
pub mod ct2;
mod decode;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod files;
pub mod job;
pub mod live;
pub mod live_job;
pub mod load;
pub mod models;
pub mod pipeline;
pub mod transcript;
mod vad;

pub use error::{Error, Result};
