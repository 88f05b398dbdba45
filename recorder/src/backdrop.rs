//! The picture shown while nobody shares a screen: one tile per participant with their name, in the order they
//! joined, and a coloured border around the tile of whoever is speaking, so a recording without a share still
//! tells who said what. Beyond [`MAX_TILES`] people the last tile says "and N more" (and lights up when one of
//! them speaks).
//!
//! The picture must cost next to nothing per frame, so it is only redrawn on change, in two layers: the tiles
//! with their names are drawn (text through FFmpeg's `drawtext`, see `text.rs`) when the participant list
//! changes; a change of speakers only paints borders onto a copy of that picture. [`Backdrop::poll_frame`]
//! yields a new picture only after such a change, for the compositor to show from its next frame.
//!
//! Names are cleaned (control characters removed, trimmed, at most 40 characters) and shortened with "…" to
//! what fits their tile; whatever still spills past a tile's text area is cut off, so a long name never runs
//! into a neighbour. Without a usable font the tiles and highlights still show, without names: names are a
//! nicety, never a reason to fail a recording.

mod layout;
mod text;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

pub use layout::{grid, Grid, Rect, MAX_TILES};
pub use text::default_font;

use crate::error::{Error, Result};
use crate::frame::{I420Frame, Yuv};

/// Longest name kept, in characters, before fitting it to a tile.
pub const MAX_NAME_CHARS: usize = 40;

/// A tile's fill, a step lighter than the background (about RGB 52, 58, 74).
pub const TILE: Yuv = Yuv::new(66, 136, 124);

/// The speaking highlight (about RGB 46, 204, 113): a green that stands out from the slate in luma and chroma.
pub const HIGHLIGHT: Yuv = Yuv::new(142, 111, 65);

/// One person on the backdrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Their session, the key their voice arrives under.
    pub session_id: String,
    /// Display name.
    pub name: String,
}

impl Person {
    /// A person from their session id and display name.
    pub fn new(session_id: impl Into<String>, name: impl Into<String>) -> Person {
        Person {
            session_id: session_id.into(),
            name: name.into(),
        }
    }
}

/// The backdrop's state: who is there (in join order), who speaks, and the pictures drawn from that.
pub struct Backdrop {
    background: I420Frame,
    font: Option<PathBuf>,
    people: Vec<Person>,
    speaking: BTreeSet<String>,
    grid: Grid,
    /// Tiles with their names, no highlight.
    named: I420Frame,
    /// Which tiles the last picture highlights.
    highlighted: Vec<bool>,
    changed: bool,
}

impl Backdrop {
    /// An empty backdrop (the plain `colour`) of `width × height`, drawing names with `font` if there is one.
    pub fn new(width: u32, height: u32, colour: Yuv, font: Option<PathBuf>) -> Backdrop {
        let background = I420Frame::filled(width, height, colour);
        Backdrop {
            named: background.clone(),
            background,
            font,
            people: Vec::new(),
            speaking: BTreeSet::new(),
            grid: grid(0, width, height),
            highlighted: Vec::new(),
            changed: false,
        }
    }

    /// The people shown, in tile order.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// The tiles of the current picture.
    pub fn tiles(&self) -> &[Rect] {
        &self.grid.tiles
    }

    /// The people in the call now (any order). Those already shown keep their tiles; newcomers are added after
    /// them. Redraws names only when the list changed; an error (no font, drawtext failed) still leaves tiles
    /// and highlights in place, without names, and is returned for the shell to log.
    pub fn handle_participants(&mut self, people: &[Person]) -> Result<()> {
        let ordered = keep_join_order(&self.people, people);
        if ordered == self.people {
            return Ok(());
        }
        self.people = ordered;
        self.grid = grid(
            tile_count(self.people.len()),
            self.background.width(),
            self.background.height(),
        );
        let drawn = self.draw_names();
        self.highlighted = self.highlights();
        self.changed = true;
        drawn
    }

    /// The sessions speaking now (from the speaking detector).
    pub fn handle_speaking(&mut self, speaking: &BTreeSet<String>) {
        self.speaking.clone_from(speaking);
        let highlighted = self.highlights();
        if highlighted != self.highlighted {
            self.highlighted = highlighted;
            self.changed = true;
        }
    }

    /// The new picture after a change of people or speakers; `None` while nothing changed.
    pub fn poll_frame(&mut self) -> Option<I420Frame> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        Some(self.frame())
    }

    /// The current picture.
    pub fn frame(&self) -> I420Frame {
        let mut picture = self.named.clone();
        let border = self.grid.border;
        for (tile, _) in self
            .grid
            .tiles
            .iter()
            .zip(&self.highlighted)
            .filter(|(_, lit)| **lit)
        {
            let Rect {
                x,
                y,
                width,
                height,
            } = *tile;
            picture.fill_rect(x, y, width, border, HIGHLIGHT);
            picture.fill_rect(x, y + height - border, width, border, HIGHLIGHT);
            picture.fill_rect(x, y, border, height, HIGHLIGHT);
            picture.fill_rect(x + width - border, y, border, height, HIGHLIGHT);
        }
        picture
    }

    /// The text of each tile: a name, or "and N more" on the last tile when not everyone fits.
    pub fn labels(&self) -> Vec<String> {
        let tiles = self.grid.tiles.len();
        let shown = shown_people(self.people.len());
        let inner = self
            .grid
            .tiles
            .first()
            .map_or(0, |tile| tile.inset(self.grid.padding).width);
        // DejaVu Sans averages about 0.6 em per character; the clip catches wider names.
        let fits = (inner as usize * 10 / (self.grid.font_size as usize * 6).max(1)).max(1);
        let mut labels: Vec<String> = self.people[..shown]
            .iter()
            .map(|person| fit(&clean_name(&person.name), fits))
            .collect();
        if tiles > shown {
            labels.push(fit(
                &format!("and {} more", self.people.len() - shown),
                fits,
            ));
        }
        labels
    }

    fn highlights(&self) -> Vec<bool> {
        let shown = shown_people(self.people.len());
        let mut lit: Vec<bool> = self.people[..shown]
            .iter()
            .map(|person| self.speaking.contains(&person.session_id))
            .collect();
        if self.people.len() > shown {
            lit.push(
                self.people[shown..]
                    .iter()
                    .any(|person| self.speaking.contains(&person.session_id)),
            );
        }
        lit
    }

    /// Paints the tiles and their names into `named`; on error the tiles stay, without names.
    fn draw_names(&mut self) -> Result<()> {
        let mut tiles = self.background.clone();
        for tile in &self.grid.tiles {
            tiles.fill_rect(tile.x, tile.y, tile.width, tile.height, TILE);
        }
        self.named = tiles.clone();
        if self.people.is_empty() {
            return Ok(());
        }
        let Some(font) = &self.font else {
            return Err(Error::EncoderMissing("a font for participant names"));
        };
        let areas: Vec<Rect> = self
            .grid
            .tiles
            .iter()
            .map(|tile| tile.inset(self.grid.padding))
            .collect();
        let labels: Vec<(Rect, String)> = areas.iter().copied().zip(self.labels()).collect();
        let written = text::draw_labels(&tiles, &labels, self.grid.font_size, font)?;
        for area in &areas {
            copy_rect(&written, &mut self.named, *area);
        }
        Ok(())
    }
}

/// How many tiles `people` people take: one each up to [`MAX_TILES`], else one less plus "and N more".
pub fn tile_count(people: usize) -> usize {
    people.min(MAX_TILES)
}

/// How many people get a tile of their own.
fn shown_people(people: usize) -> usize {
    if people > MAX_TILES {
        MAX_TILES - 1
    } else {
        people
    }
}

/// `incoming` ordered so that people already in `current` keep their place (with their latest name) and
/// newcomers follow in the order given.
pub fn keep_join_order(current: &[Person], incoming: &[Person]) -> Vec<Person> {
    let by_session: HashMap<&str, &Person> = incoming
        .iter()
        .map(|person| (person.session_id.as_str(), person))
        .collect();
    let mut ordered: Vec<Person> = current
        .iter()
        .filter_map(|person| by_session.get(person.session_id.as_str()))
        .map(|&person| person.clone())
        .collect();
    let known: BTreeSet<String> = ordered.iter().map(|p| p.session_id.clone()).collect();
    let mut added = BTreeSet::new();
    for person in incoming {
        if !known.contains(&person.session_id) && added.insert(person.session_id.clone()) {
            ordered.push(person.clone());
        }
    }
    ordered
}

/// A display name with control characters removed, trimmed, at most [`MAX_NAME_CHARS`] characters.
pub fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    cleaned.trim().to_owned()
}

/// `text` shortened to `chars` characters, ending in "…" when it was cut.
fn fit(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let kept: String = text.chars().take(chars.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

/// Copies the pixels of `area` (even edges) from `from` into `to` (same size).
fn copy_rect(from: &I420Frame, to: &mut I420Frame, area: Rect) {
    let sizes = from.plane_sizes();
    let source = from.planes();
    let target = to.planes_mut();
    for (plane, (source, target)) in source.into_iter().zip(target).enumerate() {
        let (stride, rows) = sizes[plane];
        let scale = if plane == 0 { 1 } else { 2 };
        let x = (area.x / scale) as usize;
        let width = (area.width / scale) as usize;
        let y = (area.y / scale) as usize;
        let height = (area.height / scale) as usize;
        for row in y..(y + height).min(rows) {
            let start = row * stride + x.min(stride);
            let end = row * stride + (x + width).min(stride);
            target[start..end].copy_from_slice(&source[start..end]);
        }
    }
}

#[cfg(test)]
mod tests;
