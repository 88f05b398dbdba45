//! Helpers shared by the recorder's integration tests: read a finished MP4 back with the ffmpeg CLI,
//! as a person checking the file would.

// Each test binary uses its own part of these.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use calls_recorder::I420Frame;

/// Runs `program` (`ffmpeg`, `ffprobe`) with `args` and returns what it prints; panics with its error
/// output when it fails.
fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is installed: {e}"));
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `ffmpeg -v error -i path args…`: what it writes to stdout.
pub fn ffmpeg(path: &Path, args: &[&str]) -> Vec<u8> {
    let path = path.to_str().expect("test paths are UTF-8");
    let all: Vec<&str> = ["-v", "error", "-i", path]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    run("ffmpeg", &all)
}

/// `ffprobe -v error args… path`: what it prints.
pub fn ffprobe(path: &Path, args: &[&str]) -> String {
    let path = path.to_str().expect("test paths are UTF-8");
    let all: Vec<&str> = ["-v", "error"]
        .into_iter()
        .chain(args.iter().copied())
        .chain([path])
        .collect();
    String::from_utf8_lossy(&run("ffprobe", &all)).into_owned()
}

/// ffprobe's description of the file's streams and format, as JSON.
pub fn ffprobe_json(path: &Path) -> serde_json::Value {
    let json = ffprobe(path, &["-show_streams", "-show_format", "-of", "json"]);
    serde_json::from_str(&json).expect("ffprobe prints json")
}

/// The file's audio as 48 kHz mono 16-bit samples.
pub fn decode_audio(path: &Path) -> Vec<i16> {
    ffmpeg(path, &["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The decoded picture at `at` seconds, which must be `width`×`height`.
pub fn frame_at(path: &Path, at: f64, width: u32, height: u32) -> I420Frame {
    let picture = ffmpeg(
        path,
        &[
            // The file has a variable frame rate: a frame shows until the next one. On a fine constant grid,
            // the frame at `at` is the one on screen then (without it, the first frame *after* `at`).
            "-vf",
            "fps=100",
            "-ss",
            &format!("{at:.3}"),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ],
    );
    I420Frame::new(width, height, picture).expect("one raw frame of the configured size")
}
