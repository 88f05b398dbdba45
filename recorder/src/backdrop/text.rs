//! Names onto the backdrop's tiles with FFmpeg's `drawtext` filter (libfreetype).
//!
//! Names go through temporary text files rather than the filter arguments, so no name can inject filter
//! options, and `expansion=none` stops `%{…}` sequences from being interpreted. Only paths made of plain
//! characters reach the filter string. This runs when the participant list changes, never per frame.

use std::io::Write;
use std::path::{Path, PathBuf};

use ffmpeg_next::{filter, format, frame};

use super::layout::Rect;
use crate::compositor::{copy_from_ffmpeg, copy_into_ffmpeg};
use crate::error::{Error, Result};
use crate::frame::I420Frame;

/// Fonts tried in order: Debian's `fonts-dejavu-core` first, then the other fonts Debian's fontconfig may pull in.
const FONT_CANDIDATES: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/ttf-bitstream-vera/Vera.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Light grey text, readable on the tiles and on the highlight.
const TEXT_COLOUR: &str = "0xE8EAF0";

/// The first installed font from the candidates, if any.
pub fn default_font() -> Option<PathBuf> {
    FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// `picture` with each label centred in its box, `font_size` pixels high. Text may spill past its box; the
/// caller keeps only what lies inside.
pub fn draw_labels(
    picture: &I420Frame,
    labels: &[(Rect, String)],
    font_size: u32,
    font: &Path,
) -> Result<I420Frame> {
    let font = safe_filter_path(font)?;
    let mut files = Vec::with_capacity(labels.len());
    let mut filters = Vec::with_capacity(labels.len());
    for (area, text) in labels.iter().filter(|(_, text)| !text.is_empty()) {
        let file = TempText::write(text)?;
        let text_path = safe_filter_path(&file.path)?;
        files.push(file);
        filters.push(format!(
            "drawtext=fontfile={font}:textfile={text_path}:expansion=none:fontsize={font_size}:\
             fontcolor={TEXT_COLOUR}:x={x}+({w}-text_w)/2:y={y}+({h}-text_h)/2",
            x = area.x,
            y = area.y,
            w = area.width,
            h = area.height,
        ));
    }
    if filters.is_empty() {
        return Ok(picture.clone());
    }
    run_filter(picture, &filters.join(","))
}

/// Runs one frame through a filter chain of the same size and format.
fn run_filter(picture: &I420Frame, chain: &str) -> Result<I420Frame> {
    let (width, height) = (picture.width(), picture.height());
    let mut graph = filter::Graph::new();
    let buffer = filter::find("buffer").ok_or(Error::EncoderMissing("buffer filter"))?;
    let sink = filter::find("buffersink").ok_or(Error::EncoderMissing("buffersink filter"))?;
    graph
        .add(
            &buffer,
            "in",
            &format!("video_size={width}x{height}:pix_fmt=yuv420p:time_base=1/1:pixel_aspect=1/1"),
        )
        .map_err(Error::ffmpeg("creating the name overlay input"))?;
    graph
        .add(&sink, "out", "")
        .map_err(Error::ffmpeg("creating the name overlay output"))?
        .set_pixel_format(format::Pixel::YUV420P);
    graph
        .output("in", 0)
        .and_then(|parser| parser.input("out", 0))
        .and_then(|parser| parser.parse(chain))
        .map_err(Error::ffmpeg("setting up drawtext"))?;
    graph
        .validate()
        .map_err(Error::ffmpeg("configuring drawtext"))?;

    let mut input = frame::Video::new(format::Pixel::YUV420P, width, height);
    copy_into_ffmpeg(picture, &mut input);
    input.set_pts(Some(0));
    graph
        .get("in")
        .ok_or(Error::EncoderMissing("buffer filter instance"))?
        .source()
        .add(&input)
        .map_err(Error::ffmpeg("feeding the name overlay"))?;
    let mut output = frame::Video::empty();
    graph
        .get("out")
        .ok_or(Error::EncoderMissing("buffersink filter instance"))?
        .sink()
        .frame(&mut output)
        .map_err(Error::ffmpeg("drawing names"))?;
    copy_from_ffmpeg(&output)
}

/// Filter arguments treat `:`, `,`, `;`, `[`, `]`, `'` and `\` specially; accept only plain path characters.
fn safe_filter_path(path: &Path) -> Result<String> {
    let text = path.to_string_lossy().into_owned();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+'))
    {
        Ok(text)
    } else {
        Err(Error::InvalidFrame(format!(
            "path {text:?} has characters drawtext cannot take"
        )))
    }
}

/// A temporary file holding one label, removed on drop.
struct TempText {
    path: PathBuf,
}

impl TempText {
    fn write(text: &str) -> Result<TempText> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "calls-recorder-names-{}-{unique}.txt",
            std::process::id()
        ));
        // Made before writing, so a failed write still removes the file.
        let temp = TempText { path };
        let mut file = std::fs::File::create(&temp.path).map_err(|e| Error::Io {
            context: "writing the participant names",
            source: e,
        })?;
        file.write_all(text.as_bytes()).map_err(|e| Error::Io {
            context: "writing the participant names",
            source: e,
        })?;
        Ok(temp)
    }
}

impl Drop for TempText {
    fn drop(&mut self) {
        // Best effort: a leftover file in the temp dir is harmless.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_filter_path(Path::new("/tmp/a:b")).is_err());
        assert!(safe_filter_path(Path::new("/tmp/it's")).is_err());
        assert!(safe_filter_path(Path::new("/usr/share/fonts/DejaVuSans.ttf")).is_ok());
    }
}
