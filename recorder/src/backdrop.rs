//! The picture shown while nobody shares a screen: a dark background with the participants' names, centred.
//!
//! Text is drawn by FFmpeg's `drawtext` filter (libfreetype) once per change of the participant list, not per
//! frame. Names go through a temporary text file rather than the filter arguments, so no name can inject filter
//! options, and `expansion=none` stops `%{…}` sequences from being interpreted. Without a usable font the
//! caller keeps the plain background: names are a nicety, never a reason to fail a recording.

use std::io::Write;
use std::path::{Path, PathBuf};

use ffmpeg_next::{filter, format, frame};

use crate::compositor::{copy_from_ffmpeg, copy_into_ffmpeg};
use crate::error::{Error, Result};
use crate::frame::{I420Frame, Yuv};

/// Names shown at most; more are summarised as "and N more".
pub const MAX_NAMES: usize = 12;

/// Fonts tried in order: Debian's `fonts-dejavu-core` first, then the other fonts Debian's fontconfig may pull in.
const FONT_CANDIDATES: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/ttf-bitstream-vera/Vera.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// The first installed font from the candidates, if any.
pub fn default_font() -> Option<PathBuf> {
    FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// The text block: one name per line, trimmed, control characters removed, capped at [`MAX_NAMES`].
pub fn names_text(names: &[String]) -> String {
    let cleaned: Vec<String> = names
        .iter()
        .map(|name| {
            name.chars()
                .filter(|c| !c.is_control())
                .take(40)
                .collect::<String>()
        })
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    let mut lines: Vec<String> = cleaned.iter().take(MAX_NAMES).cloned().collect();
    if cleaned.len() > MAX_NAMES {
        lines.push(format!("and {} more", cleaned.len() - MAX_NAMES));
    }
    lines.join("\n")
}

/// Renders `colour` at `width × height` with `names` centred in light grey, using `font`.
pub fn render(
    width: u32,
    height: u32,
    colour: Yuv,
    names: &[String],
    font: &Path,
) -> Result<I420Frame> {
    let background = I420Frame::filled(width, height, colour);
    let text = names_text(names);
    if text.is_empty() {
        return Ok(background);
    }
    let font = safe_filter_path(font)?;
    let text_file = TempText::write(&text)?;
    let text_path = safe_filter_path(&text_file.path)?;
    let font_size = (height / 24).max(8);
    let drawtext = format!(
        "drawtext=fontfile={font}:textfile={text_path}:expansion=none:fontsize={font_size}:fontcolor=0xD8DCE4:\
         line_spacing={spacing}:x=(w-text_w)/2:y=(h-text_h)/2",
        spacing = font_size / 2
    );

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
        .and_then(|parser| parser.parse(&drawtext))
        .map_err(Error::ffmpeg("setting up drawtext"))?;
    graph
        .validate()
        .map_err(Error::ffmpeg("configuring drawtext"))?;

    let mut input = frame::Video::new(format::Pixel::YUV420P, width, height);
    copy_into_ffmpeg(&background, &mut input);
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

/// A temporary file holding the names, removed on drop.
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
        let mut file = std::fs::File::create(&path).map_err(|e| Error::Io {
            context: "writing the participant names",
            source: e,
        })?;
        file.write_all(text.as_bytes()).map_err(|e| Error::Io {
            context: "writing the participant names",
            source: e,
        })?;
        Ok(TempText { path })
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

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_cleaned_and_capped() {
        assert_eq!(
            names_text(&names(&["  Alice ", "", "Bo\u{7}b"])),
            "Alice\nBob"
        );
        let many: Vec<String> = (0..15).map(|i| format!("user{i}")).collect();
        let text = names_text(&many);
        assert_eq!(text.lines().count(), MAX_NAMES + 1);
        assert!(text.ends_with("and 3 more"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_filter_path(Path::new("/tmp/a:b")).is_err());
        assert!(safe_filter_path(Path::new("/tmp/it's")).is_err());
        assert!(safe_filter_path(Path::new("/usr/share/fonts/DejaVuSans.ttf")).is_ok());
    }

    #[test]
    fn names_are_drawn_in_the_middle_and_edges_stay_plain() {
        let Some(font) = default_font() else {
            // The check needs a font; CI installs fonts-dejavu-core.
            panic!("no DejaVu font installed; install fonts-dejavu-core");
        };
        let frame = render(
            640,
            360,
            Yuv::BACKGROUND,
            &names(&["Alice O'Brien: 100%{pts}", "Bob"]),
            &font,
        )
        .unwrap();
        assert_eq!(frame.pixel(0, 0), Some(Yuv::BACKGROUND));
        assert_eq!(frame.pixel(639, 359), Some(Yuv::BACKGROUND));
        let [luma, _, _] = frame.planes();
        let bright = luma.iter().filter(|&&y| y > 150).count();
        assert!(bright > 200, "text pixels drawn: {bright}");
        let middle_rows = &luma[140 * 640..220 * 640];
        assert!(
            middle_rows.iter().any(|&y| y > 150),
            "text sits in the middle"
        );
    }

    #[test]
    fn no_names_gives_the_plain_background() {
        let frame = render(64, 36, Yuv::BACKGROUND, &[], Path::new("/nonexistent.ttf")).unwrap();
        assert_eq!(frame, I420Frame::filled(64, 36, Yuv::BACKGROUND));
    }
}
