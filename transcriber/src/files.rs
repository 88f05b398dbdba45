//! `calls-transcriber transcribe FILE…`: existing audio (a `.wav`, the recorder's `.mp4`, an `.m4a`,
//! anything FFmpeg reads) through the same pipeline as a call into the same `transcript.{vtt,srt,txt,json}`.
//! Each file is one speaker (its name: the file's stem, or `--speaker`), all on one timeline starting at
//! each file's first sample; this is how an operator re-transcribes a recording and how anyone checks the
//! engine on their own audio.
//!
//! [`read_audio`] decodes a file's best audio stream with FFmpeg (libavformat + libavcodec) and resamples
//! it to 16 kHz mono with libswresample; [`transcribe_files`] runs the models once over every file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ffmpeg_next as ffmpeg;

use crate::engine::SAMPLE_RATE;
use crate::error::{Error, Result};
use crate::job::ARTIFACTS;
use crate::models;
use crate::pipeline::{AudioPiece, Speaker, TranscribeOptions, Transcriber};
use crate::transcript::{merge, Transcript};

/// `calls-transcriber transcribe ...`
#[derive(Debug, Clone, clap::Args)]
pub struct TranscribeArgs {
    /// Audio or video files (`.wav`, `.mp4`, `.m4a`, anything FFmpeg reads); each one is one speaker.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Whisper model (default: the job's default); without a file of its own, its quantised version.
    #[arg(long, default_value = models::DEFAULT_MODEL)]
    pub model: String,
    /// `auto` (detected per file on multilingual models) or a language code such as `en`.
    #[arg(long, default_value = "auto")]
    pub language: String,
    /// Whisper threads (default: the CPUs this process may use, from its cgroup's `cpu.max`).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Where `transcript.{vtt,srt,txt,json}` are written (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// The speaker's name for each file, in order (default: each file's stem). Give one per file.
    #[arg(long = "speaker")]
    pub speakers: Vec<String>,
    /// Beam search with this many beams (default: greedy).
    #[arg(long)]
    pub beam_size: Option<u32>,
    /// Text that primes whisper (names, jargon).
    #[arg(long)]
    pub initial_prompt: Option<String>,
    /// Model directory (default: $CALLS_TRANSCRIBER_MODELS or ~/.cache/calls-transcriber/models).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
}

/// Runs the command: prints one line per file on stderr and the artifacts written on stdout.
pub fn run(args: TranscribeArgs) -> Result<()> {
    let transcript = transcribe_files(&args, &mut |line| eprintln!("{line}"))?;
    for name in ARTIFACTS {
        println!("{}", args.out.join(name).display());
    }
    eprintln!(
        "{} segments, {:.1} s of speech in {:.1} s of audio, transcribed in {:.1} s (RTF {:.3})",
        transcript.summary.segments,
        transcript.summary.speech_s,
        transcript.summary.audio_s,
        transcript.summary.processing_s,
        transcript.summary.real_time_factor
    );
    Ok(())
}

/// Transcribes every file as one speaker and writes the four artifacts into `args.out`. Everything is
/// checked before the model loads: the speaker names, the options, the files' audio.
pub fn transcribe_files(args: &TranscribeArgs, log: &mut dyn FnMut(String)) -> Result<Transcript> {
    if !args.speakers.is_empty() && args.speakers.len() != args.files.len() {
        return Err(Error::InvalidOption {
            name: "speaker",
            reason: format!(
                "{} names for {} files: give one --speaker per file, in order",
                args.speakers.len(),
                args.files.len()
            ),
        });
    }
    let dir = args.models_dir.clone().unwrap_or_else(models::default_dir);
    let mut options = TranscribeOptions::for_model(&dir, &args.model)?;
    options.language = Some(args.language.clone());
    options.beam_size = args.beam_size;
    options.threads = args.threads.unwrap_or_else(crate::cpus::available);
    options.initial_prompt = args.initial_prompt.clone();

    let mut inputs = Vec::with_capacity(args.files.len());
    for (index, path) in args.files.iter().enumerate() {
        let samples = read_audio(path)?;
        let name = args.speakers.get(index).cloned().unwrap_or_else(|| {
            path.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("speaker {}", index + 1))
        });
        let speaker = Speaker {
            name,
            session: format!("file-{}", index + 1),
        };
        inputs.push((speaker, samples));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;

    let started = Instant::now();
    let mut transcriber = Transcriber::new(&options)?;
    log(format!(
        "model {} ({}), {} threads, loaded in {:.1} s",
        models::model_name_of(&options.model),
        options.model.display(),
        options.threads,
        started.elapsed().as_secs_f64()
    ));
    let mut duration_ms = 0;
    let mut transcripts = Vec::with_capacity(inputs.len());
    for (path, (speaker, samples)) in args.files.iter().zip(inputs) {
        let audio_ms = samples.len() as u64 * 1000 / u64::from(SAMPLE_RATE);
        duration_ms = duration_ms.max(audio_ms);
        let piece = AudioPiece {
            start_ms: 0,
            samples,
        };
        let transcript = transcriber.transcribe_speaker(&speaker, [piece], &mut |_| {})?;
        log(format!(
            "{}: {} as {:?}: {:.1} s of audio, {:.1} s of speech, {} segments, {:.1} s",
            path.display(),
            transcript.language.as_deref().unwrap_or("?"),
            speaker.name,
            audio_ms as f64 / 1000.0,
            transcript.speech_ms as f64 / 1000.0,
            transcript.segments.len(),
            transcript.processing.as_secs_f64()
        ));
        transcripts.push(transcript);
    }
    let source: Vec<String> = args
        .files
        .iter()
        .map(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let transcript = merge(
        &source.join(", "),
        &models::model_name_of(&options.model),
        duration_ms,
        transcripts,
    );
    for (name, text) in ARTIFACTS.iter().zip([
        transcript.to_vtt(),
        transcript.to_srt(),
        transcript.to_txt(),
        transcript.to_json(),
    ]) {
        let path = args.out.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    Ok(transcript)
}

/// A file's best audio stream as 16 kHz mono samples in -1..1 (channels mixed down, any rate resampled).
pub fn read_audio(path: &Path) -> Result<Vec<f32>> {
    let failed = |reason: String| Error::Audio {
        path: path.to_owned(),
        reason,
    };
    if !path.is_file() {
        return Err(failed("no such file".to_owned()));
    }
    ffmpeg::init().map_err(|e| failed(format!("initialising FFmpeg: {e}")))?;
    let mut input = ffmpeg::format::input(&path)
        .map_err(|e| failed(format!("not a media file FFmpeg reads ({e})")))?;
    let stream = input
        .streams()
        .best(ffmpeg::media::Type::Audio)
        .ok_or_else(|| failed("it has no audio stream".to_owned()))?;
    let index = stream.index();
    let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| failed(format!("reading its audio parameters: {e}")))?;
    let mut decoder = context
        .decoder()
        .audio()
        .map_err(|e| failed(format!("no decoder for its audio: {e}")))?;
    let mut mono = Mono16k::default();
    for (stream, packet) in input.packets() {
        if stream.index() != index {
            continue;
        }
        decoder
            .send_packet(&packet)
            .map_err(|e| failed(format!("decoding: {e}")))?;
        mono.receive(&mut decoder).map_err(&failed)?;
    }
    decoder
        .send_eof()
        .map_err(|e| failed(format!("decoding: {e}")))?;
    mono.receive(&mut decoder).map_err(&failed)?;
    mono.finish().map_err(&failed)
}

/// Decoded frames → 16 kHz mono f32: the resampler (made for the first frame's format) converts to 16 kHz
/// interleaved f32 in the input's channels, which are then averaged (libswresample's own downmix adds
/// the channels at -3 dB each, louder than any one of them).
#[derive(Default)]
struct Mono16k {
    resampler: Option<ffmpeg::software::resampling::Context>,
    channels: usize,
    samples: Vec<f32>,
}

impl Mono16k {
    const FORMAT: ffmpeg::format::Sample =
        ffmpeg::format::Sample::F32(ffmpeg::format::sample::Type::Packed);

    fn receive(&mut self, decoder: &mut ffmpeg::decoder::Audio) -> Result<(), String> {
        let mut frame = ffmpeg::frame::Audio::empty();
        while decoder.receive_frame(&mut frame).is_ok() {
            if frame.channel_layout().is_empty() {
                // WAV files often leave the layout unset; the channel count is what matters.
                frame.set_channel_layout(ffmpeg::ChannelLayout::default(i32::from(
                    frame.channels(),
                )));
            }
            if self.resampler.is_none() {
                let resampler = ffmpeg::software::resampling::Context::get(
                    frame.format(),
                    frame.channel_layout(),
                    frame.rate(),
                    Self::FORMAT,
                    frame.channel_layout(),
                    SAMPLE_RATE,
                )
                .map_err(|e| format!("cannot resample its audio ({} Hz): {e}", frame.rate()))?;
                self.channels = usize::from(frame.channels()).max(1);
                self.resampler = Some(resampler);
            }
            let Some(resampler) = self.resampler.as_mut() else {
                continue;
            };
            // Room for the frame at 16 kHz plus what the resampler holds back.
            let room = frame.samples() * SAMPLE_RATE as usize / frame.rate().max(1) as usize + 256;
            let mut out =
                ffmpeg::frame::Audio::new(Self::FORMAT, room, resampler.output().channel_layout);
            resampler
                .run(&frame, &mut out)
                .map_err(|e| format!("resampling: {e}"))?;
            Self::push(&mut self.samples, self.channels, &out);
        }
        Ok(())
    }

    /// Appends an interleaved 16 kHz frame of `channels`, the channels averaged.
    fn push(samples: &mut Vec<f32>, channels: usize, frame: &ffmpeg::frame::Audio) {
        let interleaved: &[f32] = frame.plane::<f32>(0);
        samples.extend(
            interleaved
                .chunks_exact(channels)
                .map(|sample| sample.iter().sum::<f32>() / channels as f32),
        );
    }

    fn finish(mut self) -> Result<Vec<f32>, String> {
        if let Some(resampler) = self.resampler.as_mut() {
            // The resampler's tail: a few ms of filter delay.
            for _ in 0..16 {
                let layout = resampler.output().channel_layout;
                let mut out = ffmpeg::frame::Audio::new(Self::FORMAT, 4_096, layout);
                resampler
                    .flush(&mut out)
                    .map_err(|e| format!("resampling: {e}"))?;
                if out.samples() == 0 {
                    break;
                }
                Self::push(&mut self.samples, self.channels, &out);
            }
        }
        Ok(self.samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_foreign_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.wav");
        let error = read_audio(&missing).unwrap_err().to_string();
        assert!(
            error.contains("missing.wav") && error.contains("no such file"),
            "{error}"
        );
        let text = dir.path().join("notes.wav");
        std::fs::write(&text, "not audio at all").unwrap();
        let error = read_audio(&text).unwrap_err().to_string();
        assert!(
            error.starts_with("audio file ") && error.contains("notes.wav"),
            "{error}"
        );
    }

    #[test]
    fn a_wav_of_any_rate_and_channels_becomes_16_khz_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        // 1 s of a 440 Hz tone at half scale on both channels.
        for n in 0..48_000 {
            let value =
                (f32::sin(n as f32 * 440.0 * std::f32::consts::TAU / 48_000.0) * 16_384.0) as i16;
            writer.write_sample(value).unwrap();
            writer.write_sample(value).unwrap();
        }
        writer.finalize().unwrap();
        let samples = read_audio(&path).unwrap();
        assert!(
            (15_900..=16_100).contains(&samples.len()),
            "{}",
            samples.len()
        );
        let peak = samples[1_000..15_000]
            .iter()
            .fold(0.0f32, |m, s| m.max(s.abs()));
        assert!((0.45..0.55).contains(&peak), "peak {peak}");
    }
}
