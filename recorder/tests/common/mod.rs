//! Helpers shared by the recorder's integration tests: read a finished MP4 back with the ffmpeg CLI,
//! as a person checking the file would.

use std::path::Path;
use std::process::Command;

use calls_recorder::I420Frame;

/// The file's audio as 48 kHz mono 16-bit samples.
pub fn decode_audio(path: &Path) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg is installed");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The decoded picture at `at` seconds, which must be `width`×`height`.
pub fn frame_at(path: &Path, at: f64, width: u32, height: u32) -> I420Frame {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
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
        ])
        .output()
        .expect("ffmpeg is installed");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    I420Frame::new(width, height, out.stdout).expect("one raw frame of the configured size")
}
