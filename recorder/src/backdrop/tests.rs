//! Unit tests for the backdrop: join order, names, the overflow tile, redraw only on change, and real
//! pictures drawn with FFmpeg's drawtext (tiles, names inside them, the speaker's border).

use super::*;

fn people(list: &[(&str, &str)]) -> Vec<Person> {
    list.iter()
        .map(|(id, name)| Person::new(*id, *name))
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn font() -> PathBuf {
    // The check needs a font; CI and the image install fonts-dejavu-core.
    default_font().expect("no DejaVu font installed; install fonts-dejavu-core")
}

#[test]
fn people_keep_their_place_and_newcomers_follow_in_join_order() {
    let first = keep_join_order(&[], &people(&[("s2", "Zoe"), ("s1", "Adam")]));
    assert_eq!(first, people(&[("s2", "Zoe"), ("s1", "Adam")]));
    // Zoe leaves, Bea joins, Adam renames: Adam stays first, Bea after him.
    let next = keep_join_order(&first, &people(&[("s3", "Bea"), ("s1", "Adam B")]));
    assert_eq!(next, people(&[("s1", "Adam B"), ("s3", "Bea")]));
    // A duplicate session in the input is shown once.
    let twice = keep_join_order(&[], &people(&[("s1", "A"), ("s1", "A")]));
    assert_eq!(twice.len(), 1);
}

#[test]
fn names_are_cleaned_and_fitted_to_their_tile() {
    assert_eq!(clean_name("  Alice "), "Alice");
    assert_eq!(clean_name("Bo\u{7}b\n"), "Bob");
    assert_eq!(clean_name(&"x".repeat(100)).chars().count(), MAX_NAME_CHARS);
    assert_eq!(fit("Alexandra", 20), "Alexandra");
    assert_eq!(fit("Alexandra Smith", 8), "Alexand…");
    assert_eq!(fit("Ann Smith", 5), "Ann…");
}

#[test]
fn beyond_the_cap_the_last_tile_counts_the_others_and_lights_up_for_them() {
    let mut backdrop = Backdrop::new(1280, 720, Yuv::BACKGROUND, None);
    let crowd: Vec<Person> = (0..15)
        .map(|i| Person::new(format!("s{i}"), format!("User {i}")))
        .collect();
    // No font: the tiles still show, the error is for the log.
    assert!(backdrop.handle_participants(&crowd).is_err());
    assert_eq!(backdrop.tiles().len(), MAX_TILES);
    let labels = backdrop.labels();
    assert_eq!(labels.len(), MAX_TILES);
    assert_eq!(labels[0], "User 0");
    assert_eq!(labels[MAX_TILES - 1], "and 4 more");
    assert!(backdrop.poll_frame().is_some());

    backdrop.handle_speaking(&set(&["s13"]));
    let picture = backdrop
        .poll_frame()
        .expect("a hidden speaker lights the last tile");
    let last = backdrop.tiles()[MAX_TILES - 1];
    assert_eq!(picture.pixel(last.x + 1, last.y + 1), Some(HIGHLIGHT));
    let first = backdrop.tiles()[0];
    assert_eq!(picture.pixel(first.x + 1, first.y + 1), Some(TILE));
}

#[test]
fn the_picture_is_redrawn_only_when_people_or_speakers_change() {
    let mut backdrop = Backdrop::new(640, 360, Yuv::BACKGROUND, None);
    assert_eq!(
        backdrop.poll_frame(),
        None,
        "starts as the compositor's plain background"
    );
    let two = people(&[("a", "Alice"), ("b", "Bob")]);
    let _ = backdrop.handle_participants(&two);
    assert!(backdrop.poll_frame().is_some());
    let _ = backdrop.handle_participants(&people(&[("b", "Bob"), ("a", "Alice")]));
    assert_eq!(backdrop.poll_frame(), None, "same people in another order");
    backdrop.handle_speaking(&set(&["a"]));
    assert!(backdrop.poll_frame().is_some());
    backdrop.handle_speaking(&set(&["a", "someone-without-a-tile"]));
    assert_eq!(backdrop.poll_frame(), None, "no tile changed");
    backdrop.handle_speaking(&set(&[]));
    assert!(backdrop.poll_frame().is_some());
    let _ = backdrop.handle_participants(&[]);
    assert_eq!(
        backdrop.poll_frame(),
        Some(I420Frame::filled(640, 360, Yuv::BACKGROUND)),
        "nobody left: the plain background"
    );
}

/// Pixels inside `area` brighter than any tile or border colour: text.
fn text_pixels(picture: &I420Frame, area: Rect) -> usize {
    (area.y..area.y + area.height)
        .flat_map(|y| (area.x..area.x + area.width).map(move |x| (x, y)))
        .filter(|&(x, y)| picture.pixel(x, y).is_some_and(|p| p.y > 170))
        .count()
}

#[test]
fn three_names_in_tiles_with_the_speaker_outlined_in_every_profile_size() {
    for (width, height) in [(1280, 720), (1920, 1080)] {
        let mut backdrop = Backdrop::new(width, height, Yuv::BACKGROUND, Some(font()));
        backdrop
            .handle_participants(&people(&[
                ("a", "Alice O'Brien: 100%{pts}"),
                ("b", "Bob"),
                ("c", "Carol"),
            ]))
            .expect("names are drawn");
        backdrop.handle_speaking(&set(&["b"]));
        let picture = backdrop.poll_frame().expect("a new picture");
        let tiles = backdrop.tiles().to_vec();
        assert_eq!(tiles.len(), 3);
        let border = backdrop.grid.border;
        for (index, tile) in tiles.iter().enumerate() {
            let edge = [
                (tile.x + border / 2, tile.y + tile.height / 2),
                (tile.x + tile.width / 2, tile.y + border / 2),
                (tile.x + tile.width - 1, tile.y + tile.height - 1),
            ];
            let expected = if index == 1 { HIGHLIGHT } else { TILE };
            for (x, y) in edge {
                assert_eq!(
                    picture.pixel(x, y),
                    Some(expected),
                    "tile {index} edge at {x},{y}"
                );
            }
            let text = text_pixels(&picture, tile.inset(backdrop.grid.padding));
            assert!(
                text > 50,
                "tile {index} in {width}x{height} shows a name: {text} text pixels"
            );
            // Text sits in the middle band of the tile, not at its top.
            let top_band = Rect {
                height: tile.height / 4,
                ..*tile
            };
            assert_eq!(text_pixels(&picture, top_band), 0, "tile {index}");
        }
        // Around the tiles: the plain background.
        assert_eq!(picture.pixel(0, 0), Some(Yuv::BACKGROUND));
        assert_eq!(picture.pixel(width - 1, height - 1), Some(Yuv::BACKGROUND));
        // `%{pts}` was not expanded: the long first name was shortened, not replaced by a number.
        assert!(
            backdrop.labels()[0].starts_with("Alice O'Brien"),
            "{:?}",
            backdrop.labels()
        );
    }
}

#[test]
fn a_very_long_name_stays_inside_its_tile() {
    let mut backdrop = Backdrop::new(1280, 720, Yuv::BACKGROUND, Some(font()));
    let wide = "W".repeat(40);
    backdrop
        .handle_participants(
            &(0..12)
                .map(|i| Person::new(format!("s{i}"), wide.as_str()))
                .collect::<Vec<_>>(),
        )
        .expect("names are drawn");
    let picture = backdrop.frame();
    let tiles = backdrop.tiles();
    let inside = |x: u32, y: u32| tiles.iter().any(|t| t.contains(x, y));
    for y in 0..720 {
        for x in 0..1280 {
            if !inside(x, y) {
                assert_eq!(picture.pixel(x, y), Some(Yuv::BACKGROUND), "at {x},{y}");
            }
        }
    }
    assert!(backdrop.labels()[0].ends_with('…'));
    assert!(text_pixels(&picture, tiles[0]) > 50);
}

#[test]
fn colours_are_the_rgb_they_claim() {
    assert_eq!(Yuv::from_rgb(52, 58, 74), TILE);
    assert_eq!(Yuv::from_rgb(46, 204, 113), HIGHLIGHT);
}
