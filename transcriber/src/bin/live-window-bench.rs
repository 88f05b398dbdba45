//! live-window-bench: what one live-caption window costs and how well it is heard, per model file. Every
//! sentence of `evaluation::SENTENCES` (voices rotating) is decoded as a live final window would be: the
//! live decode settings, one thread, 0.2 s of silence before the speech and 0.15 s after. Prints each
//! model's WER over all sentences and the median CPU time of a window (all of this process' threads, from
//! the scheduler, so other processes on the machine do not count). The figures in docs/transcriber.md come from it.
//!
//! ```text
//! cargo run --release -p calls-transcriber --bin live-window-bench -- tiny.en tiny.en-q8_0 tiny.en-q4_0
//! ```

use anyhow::Context;
use calls_transcriber::engine::{DecodeSettings, LoadOptions};
use calls_transcriber::evaluation::{synthesize, word_errors, SENTENCES, VOICES};
use calls_transcriber::load::load_engine;
use calls_transcriber::models;

/// CPU time all threads of this process have used, in milliseconds, from the scheduler (so other processes
/// on the machine do not count; CTranslate2 decodes on a worker thread of its own). 0 where `/proc` does not
/// say.
fn process_cpu_ms() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let nanoseconds: f64 = tasks
        .filter_map(|task| task.ok())
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<f64>().ok())
        .sum();
    nanoseconds / 1e6
}

fn main() -> anyhow::Result<()> {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let names = if names.is_empty() {
        vec!["tiny.en".to_string()]
    } else {
        names
    };
    let work = tempfile::tempdir()?;
    let mut windows = Vec::new();
    for (index, sentence) in SENTENCES.iter().enumerate() {
        let mut audio = vec![0.0f32; 3_200];
        audio.extend(synthesize(
            sentence,
            VOICES[index % VOICES.len()],
            work.path(),
        )?);
        audio.extend(vec![0.0f32; 2_400]);
        windows.push((*sentence, audio));
    }
    let settings = DecodeSettings::live_window(1);
    println!("| model file | sentences | WER | CPU per window p50 ms | CPU-s per audio-s |");
    println!("|---|---|---|---|---|");
    for name in &names {
        let path = models::model_path(&models::default_dir(), name)
            .with_context(|| format!("model {name}"))?;
        let mut engine = load_engine(&path, LoadOptions::default(), 1)?;
        let (mut errors, mut words, mut audio_s) = (0, 0, 0.0);
        let mut costs = Vec::new();
        for (sentence, audio) in &windows {
            let before = process_cpu_ms();
            let decoded = engine.decode(audio, &settings)?;
            costs.push(process_cpu_ms() - before);
            audio_s += audio.len() as f64 / 16_000.0;
            let text: Vec<&str> = decoded.segments.iter().map(|s| s.text.as_str()).collect();
            let (e, n) = word_errors(sentence, &text.join(" "));
            errors += e;
            words += n;
        }
        let total_ms: f64 = costs.iter().sum();
        costs.sort_by(f64::total_cmp);
        println!(
            "| {name} | {} | {:.1} % ({errors}/{words}) | {:.0} | {:.3} |",
            windows.len(),
            100.0 * errors as f64 / words.max(1) as f64,
            costs[costs.len() / 2],
            total_ms / 1000.0 / audio_s,
        );
    }
    Ok(())
}
