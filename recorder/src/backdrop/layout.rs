//! Where the backdrop's tiles go: a centred grid of equal 16:9 tiles, as a call app shows people whose camera is
//! off, sized for the frame (720p and 1080p alike) and for how many tiles there are.
//!
//! Pure arithmetic, no pixels. All edges are even, because I420 chroma is shared by 2×2 blocks and an odd edge
//! would smear a tile's colour into its neighbour.

/// Tiles shown at most; with more people the last tile says "and N more".
pub const MAX_TILES: usize = 12;

/// A rectangle in the output frame (pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Rect {
    /// The rectangle shrunk by `by` on every side (empty rather than negative).
    pub fn inset(&self, by: u32) -> Rect {
        Rect {
            x: self.x + by.min(self.width / 2),
            y: self.y + by.min(self.height / 2),
            width: self.width.saturating_sub(2 * by),
            height: self.height.saturating_sub(2 * by),
        }
    }

    /// Whether the pixel `(x, y)` lies inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && y >= self.y && x < self.x + self.width && y < self.y + self.height
    }
}

/// The tiles for one picture and the sizes drawn in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    /// Row-major, left to right and top to bottom; an incomplete last row is centred.
    pub tiles: Vec<Rect>,
    /// Name text height in pixels.
    pub font_size: u32,
    /// Thickness of the speaking highlight, drawn inside the tile's edge (even).
    pub border: u32,
    /// Gap between a tile's edge and its text, wider than the border so the highlight never covers a name.
    pub padding: u32,
}

/// Lays out `count` tiles (at most [`MAX_TILES`] are placed) in a `width × height` frame.
pub fn grid(count: usize, width: u32, height: u32) -> Grid {
    let count = count.min(MAX_TILES);
    let even = |v: u32| v & !1;
    let (width, height) = (even(width.max(2)), even(height.max(2)));
    let margin = even(height / 20);
    let gap = even(height / 60).max(2);
    let (room_w, room_h) = (
        width.saturating_sub(2 * margin),
        height.saturating_sub(2 * margin),
    );
    // Largest 16:9 tile wins; one person gets a tile of half the frame height, not a wall of grey.
    let largest = even(height / 2).max(2);
    let mut best = (1, 2, 2);
    let mut best_area = 0;
    for columns in 1..=count.max(1) {
        let rows = count.max(1).div_ceil(columns);
        let (cols, rws) = (columns as u32, rows as u32);
        let cell_w = room_w.saturating_sub((cols - 1) * gap) / cols;
        let cell_h = room_h.saturating_sub((rws - 1) * gap) / rws;
        let tile_h = even((cell_w * 9 / 16).min(cell_h).min(largest)).max(2);
        let tile_w = even(tile_h * 16 / 9).min(even(cell_w)).max(2);
        let area = u64::from(tile_w) * u64::from(tile_h);
        if area > best_area {
            best_area = area;
            best = (columns, tile_w, tile_h);
        }
    }
    let (columns, tile_w, tile_h) = best;
    let rows = count.div_ceil(columns);
    let grid_h = rows as u32 * tile_h + (rows as u32).saturating_sub(1) * gap;
    let top = even(height.saturating_sub(grid_h) / 2);
    let mut tiles = Vec::with_capacity(count);
    for row in 0..rows {
        let in_row = (count - row * columns).min(columns) as u32;
        let row_w = in_row * tile_w + in_row.saturating_sub(1) * gap;
        let left = even(width.saturating_sub(row_w) / 2);
        for column in 0..in_row {
            tiles.push(Rect {
                x: left + column * (tile_w + gap),
                y: top + row as u32 * (tile_h + gap),
                width: tile_w,
                height: tile_h,
            });
        }
    }
    let border = even(tile_h / 40).max(4);
    Grid {
        tiles,
        font_size: (tile_h / 7).clamp(10, (height / 16).max(10)),
        border,
        padding: 2 * border,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The profiles' sizes (low and medium 720p, high 1080p) and a few others an override may ask for.
    const SIZES: [(u32, u32); 5] = [
        (1280, 720),
        (1920, 1080),
        (640, 360),
        (1024, 768),
        (720, 1280),
    ];

    #[test]
    fn tiles_fit_the_frame_without_overlapping_for_every_count_and_size() {
        for (width, height) in SIZES {
            for count in 1..=MAX_TILES {
                let grid = grid(count, width, height);
                let at = format!("{count} tiles in {width}x{height}");
                assert_eq!(grid.tiles.len(), count, "{at}");
                for (i, tile) in grid.tiles.iter().enumerate() {
                    assert!(
                        tile.x + tile.width <= width && tile.y + tile.height <= height,
                        "{at}: {tile:?}"
                    );
                    assert!(
                        tile.x % 2 == 0
                            && tile.y % 2 == 0
                            && tile.width % 2 == 0
                            && tile.height % 2 == 0,
                        "{at}"
                    );
                    assert_eq!(
                        (tile.width, tile.height),
                        (grid.tiles[0].width, grid.tiles[0].height),
                        "{at}"
                    );
                    // Roughly 16:9, unless a narrow frame squeezed the width.
                    assert!(tile.width <= tile.height * 16 / 9 + 2, "{at}: {tile:?}");
                    for other in &grid.tiles[i + 1..] {
                        let apart = tile.x + tile.width <= other.x
                            || other.x + other.width <= tile.x
                            || tile.y + tile.height <= other.y
                            || other.y + other.height <= tile.y;
                        assert!(apart, "{at}: {tile:?} overlaps {other:?}");
                    }
                }
                // Text fits inside a tile with its padding, and the border stays inside the padding.
                let inner = grid.tiles[0].inset(grid.padding);
                assert!(grid.font_size < inner.height, "{at}: {grid:?}");
                assert!(grid.border < grid.padding, "{at}");
            }
        }
    }

    #[test]
    fn tiles_use_the_frame_well() {
        // One person: a centred tile of half the height. Two: side by side. Twelve in 720p: 4 × 3.
        let one = grid(1, 1280, 720);
        assert_eq!(
            one.tiles,
            [Rect {
                x: 320,
                y: 180,
                width: 640,
                height: 360
            }]
        );
        let two = grid(2, 1280, 720);
        assert_eq!(two.tiles[0].y, two.tiles[1].y);
        assert!(two.tiles[0].x + two.tiles[0].width < two.tiles[1].x);
        let twelve = grid(12, 1280, 720);
        let rows: std::collections::BTreeSet<u32> = twelve.tiles.iter().map(|t| t.y).collect();
        assert_eq!(rows.len(), 3);
        let covered: u64 = twelve
            .tiles
            .iter()
            .map(|t| u64::from(t.width * t.height))
            .sum();
        assert!(
            covered * 2 > 1280 * 720,
            "twelve tiles cover over half the frame"
        );
        // 1080p is the same picture, scaled.
        let big = grid(12, 1920, 1080);
        assert_eq!(big.tiles.len(), 12);
        assert!(big.font_size > twelve.font_size && big.border >= twelve.border);
    }

    #[test]
    fn a_short_last_row_is_centred() {
        let five = grid(5, 1280, 720);
        let last_row: Vec<&Rect> = five
            .tiles
            .iter()
            .filter(|t| t.y == five.tiles[4].y)
            .collect();
        let first_row: Vec<&Rect> = five
            .tiles
            .iter()
            .filter(|t| t.y == five.tiles[0].y)
            .collect();
        assert!(last_row.len() < first_row.len());
        let centre =
            |row: &[&Rect]| (row[0].x + row[row.len() - 1].x + row[row.len() - 1].width) / 2;
        assert!(centre(&last_row).abs_diff(640) <= 2 && centre(&first_row).abs_diff(640) <= 2);
    }

    #[test]
    fn more_tiles_than_the_cap_are_not_placed_and_odd_sizes_do_not_panic() {
        assert_eq!(grid(40, 1280, 720).tiles.len(), MAX_TILES);
        assert!(grid(0, 1280, 720).tiles.is_empty());
        for (width, height) in [(2, 2), (3, 5), (64, 36), (8192, 2)] {
            let grid = grid(7, width, height);
            assert_eq!(grid.tiles.len(), 7);
        }
    }
}
