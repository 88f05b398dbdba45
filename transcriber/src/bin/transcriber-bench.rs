//! transcriber-bench: speed, accuracy and memory of calls-transcriber side by side with faster-whisper on
//! the same CTranslate2 weights, in one run (docs/benchmarks.md).
//!
//! ```text
//! cargo run --release -p calls-transcriber --bin transcriber-bench -- \
//!     [--models tiny.en,base] [--threads 1,2] [--beams 1,5] [--python /work/.venv-fw/bin/python] [--vad-report]
//!     [--rounds N] [--fw-compute int8,float32] [--fw-words 0,1] [--compare LABEL=BINARY,...]
//! ```
//! The audio: every sentence of `evaluation::SENTENCES` spoken by espeak-ng, voices rotating, with 0.7 s
//! pauses (≥ 30 s). Each configuration runs in its own process so its peak RSS is its own. RTF = time to
//! transcribe (model already loaded) ÷ audio duration. faster-whisper runs with its Silero VAD filter on,
//! as calls-transcriber runs with its own (`--fw-words 1`: also with its word timestamps, which
//! calls-transcriber always makes). `--rounds N` runs every configuration N times, interleaved (ours and
//! faster-whisper alternate, so a busy machine loads both alike), and reports the medians and each round's
//! CPU figure. `--compare` adds other builds of this benchmark (say, main's) to the same rounds.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use calls_transcriber::engine::{DecodeSettings, LoadOptions};
use calls_transcriber::evaluation::{noise, synthesize, word_error_rate, SENTENCES, VOICES};
use calls_transcriber::load::load_engine;
use calls_transcriber::models;
use calls_transcriber::pipeline::{AudioPiece, Speaker, TranscribeOptions, Transcriber};
use calls_transcriber::transcript::SpeakerTranscript;

const FASTER_WHISPER_SCRIPT: &str = include_str!("../../bench/faster_whisper_bench.py");

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every model file the run needs, checked before any audio is made: a missing one is named with the
/// command that fetches it.
fn check_models(dir: &Path, names: &str) -> anyhow::Result<()> {
    models::vad_model_path(dir).with_context(|| {
        format!(
            "the VAD model {} is missing; fetch it with `calls-transcriber models fetch silero-vad`",
            dir.join(models::VAD_MODEL_FILE).display()
        )
    })?;
    for name in names.split(',') {
        if models::resolve_model_path(dir, name).is_err() {
            let (base, quantize) = match name.rsplit_once("-q") {
                Some((base, kind)) => (base, format!(" --quantize q{kind}")),
                None => (name, String::new()),
            };
            bail!(
                "model {name:?} is missing: no {} in {} (present: {}); fetch it with \
                 `calls-transcriber models fetch {base}{quantize}`",
                models::model_file_name(name),
                dir.display(),
                models::available_models(dir).join(", ")
            );
        }
    }
    Ok(())
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--one") {
        return one(&args[1..]);
    }
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let model_names =
        option("--models").unwrap_or_else(|| format!("tiny.en,{}", models::DEFAULT_MODEL));
    let threads = option("--threads").unwrap_or_else(|| "1,2".to_string());
    let beams = option("--beams").unwrap_or_else(|| "1,5".to_string());
    let beams: Vec<&str> = beams.split(',').collect();
    let python = option("--python").unwrap_or_else(|| "/work/.venv-fw/bin/python".to_string());
    let rounds: usize = option("--rounds").map_or(Ok(1), |r| r.parse())?;
    let fw_compute = option("--fw-compute").unwrap_or_else(|| "int8,float32".to_string());
    let fw_words = option("--fw-words").unwrap_or_else(|| "0".to_string());
    let dir = models::default_dir();
    check_models(&dir, &model_names)?;

    let work = tempfile::tempdir()?;
    let mut audio = Vec::new();
    let mut reference = Vec::new();
    for (index, sentence) in SENTENCES.iter().enumerate() {
        audio.extend(synthesize(
            sentence,
            VOICES[index % VOICES.len()],
            work.path(),
        )?);
        audio.extend(std::iter::repeat_n(0.0f32, 16_000 * 7 / 10));
        reference.push(*sentence);
    }
    let reference = reference.join(" ");
    let audio_s = audio.len() as f64 / 16_000.0;
    let audio_path = work.path().join("bench.f32");
    std::fs::write(
        &audio_path,
        audio
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "audio: {audio_s:.1} s, {} sentences, {} voices; cpu: {cpu}; load average: {}",
        SENTENCES.len(),
        VOICES.len(),
        load_average()
    );
    let me = std::env::current_exe()?;
    let script = work.path().join("faster_whisper_bench.py");
    std::fs::write(&script, FASTER_WHISPER_SCRIPT)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // `--compare LABEL=BINARY,...`: other builds of this bench (e.g. main's) measured in the same rounds.
    let mut engines: Vec<(String, std::path::PathBuf)> =
        vec![("calls-transcriber".to_owned(), me.clone())];
    for entry in option("--compare").iter().flat_map(|c| c.split(',')) {
        let (label, binary) = entry
            .split_once('=')
            .with_context(|| format!("--compare {entry:?}: expected LABEL=BINARY"))?;
        engines.push((format!("calls-transcriber ({label})"), binary.into()));
    }
    let have_python = Path::new(&python).exists();
    if !have_python {
        println!("(no faster-whisper: {python} is missing; see docs/benchmarks.md)");
    }

    // Every configuration, in the order they run within a round: for each model and thread count ours,
    // then faster-whisper on the same CTranslate2 weights, so the two see the same load.
    let mut runs: Vec<Run> = Vec::new();
    let mut compared = std::collections::HashSet::new();
    for name in model_names.split(',') {
        let plain = name.strip_prefix(models::CT2_PREFIX).unwrap_or(name);
        let base_name = plain.split("-q").next().unwrap_or(plain);
        // The file a job would use for this name (checked above): its weights are what the row reports.
        let file = models::model_name_of(&models::resolve_model_path(&dir, name)?);
        for threads in threads.split(',') {
            for beam in beams.iter().copied() {
                for (label, binary) in &engines {
                    let mut command = Command::new(binary);
                    command
                        .args(["--one", name, threads, beam])
                        .arg(&audio_path);
                    runs.push(Run::new(
                        label,
                        name,
                        weights_of(&file),
                        beam,
                        threads,
                        command,
                    ));
                }
            }
            if !have_python || !compared.insert((base_name.to_owned(), threads.to_owned())) {
                continue;
            }
            let ct2 = match runtime.block_on(models::fetch::extract_ct2(base_name, &dir)) {
                Ok(ct2) => ct2,
                Err(error) => {
                    println!("(no faster-whisper row for {base_name}: {error})");
                    continue;
                }
            };
            for compute in fw_compute.split(',') {
                for words in fw_words.split(',') {
                    for beam in beams.iter().copied() {
                        let mut command = Command::new(&python);
                        command
                            .arg(&script)
                            .arg(&ct2)
                            .args([compute, beam, threads])
                            .arg(&audio_path)
                            .arg(words);
                        let weights = if words == "1" {
                            format!("{compute} + word timestamps")
                        } else {
                            compute.to_owned()
                        };
                        runs.push(Run::new(
                            "faster-whisper",
                            base_name,
                            &weights,
                            beam,
                            threads,
                            command,
                        ));
                    }
                }
            }
        }
    }
    for round in 1..=rounds {
        for run in &mut runs {
            run.execute(&reference)?;
        }
        eprintln!("round {round} of {rounds} done");
    }
    println!("load average after: {}", load_average());
    println!();
    println!(
        "| engine | model | weights | beam | threads | RTF | × real time | CPU s per audio s | CPU s per audio s, each round | WER | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for run in &runs {
        println!("{}", run.row(audio_s));
    }
    if args.iter().any(|a| a == "--vad-report") {
        vad_report(&dir, work.path())?;
    }
    Ok(())
}

fn weights_of(name: &str) -> &'static str {
    if name.starts_with(models::CT2_PREFIX) {
        "int8 (CTranslate2)"
    } else if name.ends_with("-q8_0") {
        "q8_0"
    } else if name.ends_with("-q5_0") {
        "q5_0"
    } else if name.ends_with("-q4_0") {
        "q4_0"
    } else {
        "f16"
    }
}

/// One configuration of the table and what each round measured.
struct Run {
    engine: String,
    model: String,
    weights: String,
    beam: String,
    threads: String,
    command: Command,
    /// (wall seconds, CPU seconds, WER, peak RSS MB) per round.
    results: Vec<(f64, f64, f64, f64)>,
    failure: Option<String>,
}

impl Run {
    fn new(
        engine: &str,
        model: &str,
        weights: &str,
        beam: &str,
        threads: &str,
        command: Command,
    ) -> Self {
        Run {
            engine: engine.to_owned(),
            model: model.to_owned(),
            weights: weights.to_owned(),
            beam: beam.to_owned(),
            threads: threads.to_owned(),
            command,
            results: Vec::new(),
            failure: None,
        }
    }

    fn execute(&mut self, reference: &str) -> anyhow::Result<()> {
        let output = self.command.output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().rev().find(|l| l.starts_with('{'));
        let Some(value) = line.and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            self.failure = Some(stderr.lines().last().unwrap_or("no output").to_owned());
            return Ok(());
        };
        let text = value["text"].as_str().unwrap_or("");
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!(
                "{} {} {} beam {} threads {}: {text}",
                self.engine, self.model, self.weights, self.beam, self.threads
            );
        }
        self.results.push((
            value["seconds"].as_f64().unwrap_or(f64::NAN),
            value["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
            word_error_rate(reference, text),
            value["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        ));
        Ok(())
    }

    /// The table row: medians over the rounds, the worst WER, the largest RSS.
    fn row(&self, audio_s: f64) -> String {
        let head = format!(
            "| {} | {} | {} | {} | {} |",
            self.engine, self.model, self.weights, self.beam, self.threads
        );
        if let Some(failure) = &self.failure {
            return format!("{head} failed: {failure} | | | | | |");
        }
        let median = |values: Vec<f64>| {
            let mut values = values;
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let seconds = median(self.results.iter().map(|r| r.0).collect());
        let cpu = median(self.results.iter().map(|r| r.1).collect());
        let each: Vec<String> = self
            .results
            .iter()
            .map(|r| format!("{:.3}", r.1 / audio_s))
            .collect();
        let wer = self.results.iter().map(|r| r.2).fold(0.0, f64::max);
        let rss = self.results.iter().map(|r| r.3).fold(0.0, f64::max);
        format!(
            "{head} {:.3} | {:.1} | {:.3} | {} | {:.1}% | {:.0} |",
            seconds / audio_s,
            audio_s / seconds,
            cpu / audio_s,
            each.join(" "),
            wer * 100.0,
            rss
        )
    }
}

/// Child process: one calls-transcriber configuration.
fn one(args: &[String]) -> anyhow::Result<()> {
    let [name, threads, beam, audio_path] = args else {
        bail!("usage: --one MODEL THREADS BEAM AUDIO");
    };
    let bytes = std::fs::read(audio_path).with_context(|| audio_path.clone())?;
    let samples: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut options = TranscribeOptions::for_model(&models::default_dir(), name)?;
    options.threads = threads.parse()?;
    options.beam_size = Some(beam.parse()?);
    options.language = Some("en".to_string());
    // Experiments without a rebuild: BENCH_FLASH_ATTN=1 loads the model with whisper.cpp's flash
    // attention (no DTW word times then), BENCH_NO_WORDS=1 without DTW.
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    let load = LoadOptions {
        word_timestamps: !flag("BENCH_NO_WORDS"),
        flash_attn: flag("BENCH_FLASH_ATTN"),
    };
    let mut transcriber = Transcriber::new_with(&options, load)?;
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let result = transcribe_one_piece(&mut transcriber, "bench", samples)?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    let text: Vec<&str> = result.segments.iter().map(|s| s.text.as_str()).collect();
    println!(
        "{}",
        serde_json::json!({
            "text": text.join(" "),
            "seconds": seconds,
            "cpu_seconds": cpu,
            "peak_rss_mb": peak_rss_mb(),
        })
    );
    Ok(())
}

/// `samples` as the only piece of one speaker called `name`, through the whole pipeline.
fn transcribe_one_piece(
    transcriber: &mut Transcriber,
    name: &str,
    samples: Vec<f32>,
) -> calls_transcriber::Result<SpeakerTranscript> {
    let speaker = Speaker {
        name: name.into(),
        session: name.into(),
    };
    let piece = AudioPiece {
        start_ms: 0,
        samples,
    };
    transcriber.transcribe_speaker(&speaker, vec![piece], &mut |_| {})
}

/// CPU time (user + system, all threads) this process used so far, from `/proc/self/stat` (clock ticks of
/// 1/100 s, Linux's `USER_HZ` on x86-64). On a shared machine CPU time is what the work cost; wall time also
/// counts the waits for a core.
fn cpu_seconds() -> f64 {
    calls_participant::cpu::cpu_seconds("self").unwrap_or(f64::NAN)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The VAD's effect: words produced on speech (WER) and on silence, noise and hum, with the VAD and with
/// whisper alone on the same audio.
fn vad_report(dir: &Path, work: &Path) -> anyhow::Result<()> {
    let model = models::DEFAULT_MODEL;
    let options = TranscribeOptions::for_model(dir, model)?;
    let mut transcriber = Transcriber::new(&options)?;
    // The engine the pipeline uses for this model (CTranslate2 for a `ct2-` model), alone.
    let mut engine = load_engine(&options.model, LoadOptions::default(), 2)?;
    let settings = DecodeSettings {
        threads: 2,
        ..DecodeSettings::default()
    };
    let mut speech = Vec::new();
    let mut reference = Vec::new();
    for (index, sentence) in SENTENCES.iter().take(6).enumerate() {
        speech.extend(synthesize(sentence, VOICES[index % VOICES.len()], work)?);
        speech.extend(std::iter::repeat_n(0.0f32, 16_000 * 3));
        reference.push(*sentence);
    }
    let reference = reference.join(" ");
    let inputs: Vec<(&str, Vec<f32>)> = vec![
        ("speech with 3 s pauses", speech),
        ("digital silence 30 s", vec![0.0; 16_000 * 30]),
        (
            "brown noise 30 s (sox, vol 0.3)",
            noise("brownnoise", 30.0, 0.3, work)?,
        ),
        (
            "pink noise 30 s (sox, vol 0.1)",
            noise("pinknoise", 30.0, 0.1, work)?,
        ),
        (
            "50 Hz hum + harmonics 30 s",
            noise("hum50", 30.0, 0.3, work)?,
        ),
        (
            "60 Hz hum + harmonics 30 s",
            noise("hum60", 30.0, 0.3, work)?,
        ),
    ];
    println!();
    println!("VAD report, model {model}, 2 threads:");
    println!();
    println!("| input | with Silero VAD: words (WER) | whisper alone: words (WER) | whisper alone: text |");
    println!("|---|---|---|---|");
    for (label, samples) in inputs {
        let with_vad = transcribe_one_piece(&mut transcriber, "vad", samples.clone())?;
        let with_text: Vec<&str> = with_vad.segments.iter().map(|s| s.text.as_str()).collect();
        let with_text = with_text.join(" ");
        let alone = engine.decode(&samples, &settings)?;
        let alone_text: Vec<String> = alone.segments.iter().map(|s| s.text.clone()).collect();
        let alone_text = alone_text.join(" ");
        let is_speech = label.starts_with("speech");
        let describe = |text: &str| {
            let words = calls_transcriber::evaluation::words(text).len();
            if is_speech {
                format!(
                    "{words} ({:.1}%)",
                    word_error_rate(&reference, text) * 100.0
                )
            } else {
                words.to_string()
            }
        };
        println!(
            "| {label} | {} | {} | {} |",
            describe(&with_text),
            describe(&alone_text),
            if is_speech {
                "…".to_string()
            } else {
                format!("{alone_text:?}")
            }
        );
    }
    Ok(())
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them (empty where it cannot be read).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
