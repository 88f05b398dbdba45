//! Reading a recording the way a user's tools would: `ffprobe` for its streams and duration,
//! `ffmpeg` for its sound (48 kHz mono 16-bit) and for pictures sampled at a fixed rate (I420).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use serde_json::Value;

/// One stream as ffprobe describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// `h264`, `aac`...
    pub codec: String,
    /// Zero for audio.
    pub width: u32,
    pub height: u32,
    /// `r_frame_rate` as a number (0 for audio).
    pub frame_rate: f64,
}

/// What ffprobe says about a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub streams: Vec<Stream>,
    /// The container's duration in seconds.
    pub duration: f64,
}

/// Runs ffprobe on `path`.
pub fn probe(path: &Path) -> anyhow::Result<Probe> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .context("cannot run ffprobe (apt-get install ffmpeg)")?;
    if !output.status.success() {
        bail!(
            "ffprobe rejected {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let json: Value = serde_json::from_slice(&output.stdout).context("ffprobe's json")?;
    let number = |v: &Value| v.as_u64().unwrap_or(0) as u32;
    let rate = |v: &Value| {
        let text = v.as_str().unwrap_or("0/1");
        let (num, den) = text.split_once('/').unwrap_or((text, "1"));
        let (num, den): (f64, f64) = (num.parse().unwrap_or(0.0), den.parse().unwrap_or(1.0));
        if den == 0.0 {
            0.0
        } else {
            num / den
        }
    };
    let streams = json["streams"]
        .as_array()
        .context("ffprobe listed no streams")?
        .iter()
        .map(|s| Stream {
            codec: s["codec_name"].as_str().unwrap_or_default().to_owned(),
            width: number(&s["width"]),
            height: number(&s["height"]),
            frame_rate: if s["codec_type"] == "video" {
                rate(&s["r_frame_rate"])
            } else {
                0.0
            },
        })
        .collect();
    let duration = json["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .context("ffprobe gave no duration")?;
    Ok(Probe { streams, duration })
}

fn ffmpeg_stdout(path: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(args)
        .output()
        .context("cannot run ffmpeg (apt-get install ffmpeg)")?;
    if !output.status.success() {
        bail!(
            "ffmpeg could not decode {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// The file's sound as 48 kHz mono signed 16-bit samples.
pub fn decode_audio(path: &Path) -> anyhow::Result<Vec<i16>> {
    let bytes = ffmpeg_stdout(path, &["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])?;
    Ok(bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// Pictures at `per_second` frames per second (frame `k` shows time `k / per_second`), scaled to
/// `width × height`, as tightly packed I420 buffers.
pub fn sample_frames(
    path: &Path,
    per_second: u32,
    width: u32,
    height: u32,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let filter = format!("fps={per_second},scale={width}:{height}");
    let bytes = ffmpeg_stdout(
        path,
        &[
            "-an", "-vf", &filter, "-f", "rawvideo", "-pix_fmt", "yuv420p", "-",
        ],
    )?;
    let size = (width * height + 2 * width.div_ceil(2) * height.div_ceil(2)) as usize;
    Ok(bytes.chunks_exact(size).map(<[u8]>::to_vec).collect())
}

/// Peak signal-to-noise ratio in dB of the first `pixels` bytes (the luma plane of an I420 picture) of
/// `picture` against `reference`: 10·log10(255² / mean squared error). Infinite for identical planes.
pub fn luma_psnr(picture: &[u8], reference: &[u8], pixels: usize) -> f64 {
    let pixels = pixels.min(picture.len()).min(reference.len());
    if pixels == 0 {
        return 0.0;
    }
    let squared: u64 = picture[..pixels]
        .iter()
        .zip(&reference[..pixels])
        .map(|(&a, &b)| u64::from(a.abs_diff(b)).pow(2))
        .sum();
    let mse = squared as f64 / pixels as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}
