//! The demo page's live captions as a person reads them: each caption line (the speaker's name, the
//! stable words, the lighter tentative tail, final or not) and the latest words under each
//! participant's name; and a [`Timeline`] of every state each line took, read from the DOM at a
//! steady pace, for tests that check what was shown when.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use tokio::time::Instant;

use crate::Page;

/// Every caption line of the page and the latest words under each participant's name.
const READ_CAPTIONS: &str = r##"({
  lines: [...document.querySelectorAll("#captions .caption")].map((line) => ({
    id: line.dataset.captionId,
    session: line.dataset.session,
    who: line.querySelector("b") ? line.querySelector("b").textContent : "",
    text: line.querySelector(".stable") ? line.querySelector(".stable").textContent : "",
    tail: line.querySelector(".tail") ? line.querySelector(".tail").textContent : "",
    final: line.dataset.final === "1",
    partial: line.classList.contains("partial"),
  })),
  under_names: [...document.querySelectorAll("#participants li[data-session]")].map((item) => ({
    session: item.dataset.session,
    said: item.querySelector(".live-caption") ? item.querySelector(".live-caption").textContent : null,
  })),
})"##;

/// One caption line as the page shows it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Line {
    /// The caption id the line is keyed by.
    pub id: String,
    /// The speaker's session.
    pub session: String,
    /// The speaker's name as shown, `"Name: "`.
    pub who: String,
    /// The stable words.
    pub text: String,
    /// The tentative words of a partial (shown lighter), with a leading space.
    pub tail: String,
    /// Marked final (no later caption under its id changes it).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Shown as a partial.
    pub partial: bool,
}

/// A participant in the page's list and the latest words shown under their name.
#[derive(Debug, Clone, Deserialize)]
pub struct UnderName {
    pub session: String,
    pub said: Option<String>,
}

/// The captions shown at one moment.
#[derive(Debug, Clone, Deserialize)]
pub struct Captions {
    pub lines: Vec<Line>,
    pub under_names: Vec<UnderName>,
}

/// Reads the captions `page` shows now.
pub async fn read(page: &Page) -> Result<Captions> {
    let value = page.evaluate(READ_CAPTIONS).await?;
    serde_json::from_value(value.clone()).with_context(|| format!("the page's captions: {value}"))
}

/// What a page showed over time: every state of every line, when first seen.
#[derive(Debug)]
pub struct Timeline {
    /// Times are shown in seconds after this instant.
    pub t0: Instant,
    /// Caption id → the line's states, in the order seen (a state is kept when it differs from the last).
    pub lines: BTreeMap<String, Vec<(Instant, Line)>>,
    /// The last reading of the participant list.
    pub under_names: Vec<UnderName>,
}

impl Timeline {
    /// An empty timeline whose times are shown relative to `t0`.
    pub fn new(t0: Instant) -> Timeline {
        Timeline {
            t0,
            lines: BTreeMap::new(),
            under_names: Vec::new(),
        }
    }

    /// Adds what the page showed `at`.
    pub fn record(&mut self, at: Instant, captions: Captions) {
        for line in captions.lines {
            let states = self.lines.entry(line.id.clone()).or_default();
            if states.last().is_none_or(|(_, last)| *last != line) {
                states.push((at, line));
            }
        }
        self.under_names = captions.under_names;
    }

    /// Whether every line shown is final.
    pub fn all_final(&self) -> bool {
        self.lines
            .values()
            .all(|states| states.last().is_some_and(|(_, line)| line.is_final))
    }

    /// Whether a line of `session` was shown.
    pub fn has_line_of(&self, session: &str) -> bool {
        self.lines.values().any(|states| {
            states
                .first()
                .is_some_and(|(_, line)| line.session == session)
        })
    }

    /// `states`, one per row: seconds after `t0`, the caption id, partial or final, the line as shown.
    pub fn show(&self, states: &[&(Instant, Line)]) -> String {
        states
            .iter()
            .map(|(seen, line)| {
                format!(
                    "{:6.2} s {} {}{}{:?} + {:?}",
                    seconds_between(self.t0, *seen),
                    line.id,
                    if line.is_final {
                        "final   "
                    } else {
                        "partial "
                    },
                    line.who,
                    line.text,
                    line.tail
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every state of the line `id` on rows of their own (each after a newline).
    pub fn show_line(&self, id: &str) -> String {
        let states: Vec<&(Instant, Line)> = self.lines.get(id).into_iter().flatten().collect();
        format!("\n{}", self.show(&states))
    }

    /// Every state of every line, lines in the order they appeared.
    pub fn show_all(&self) -> String {
        let mut states: Vec<&(Instant, Line)> = self.lines.values().flatten().collect();
        states.sort_by_key(|(seen, line)| (self.lines[&line.id][0].0, *seen));
        self.show(&states)
    }
}

/// Reads `page`'s captions into `timeline` every `every` until `done(timeline, now)`.
pub async fn watch(
    page: &Page,
    timeline: &mut Timeline,
    every: Duration,
    done: impl Fn(&Timeline, Instant) -> bool,
) -> Result<()> {
    loop {
        let now = Instant::now();
        if done(timeline, now) {
            return Ok(());
        }
        timeline.record(now, read(page).await?);
        tokio::time::sleep_until(now + every).await;
    }
}

/// Seconds from `from` to `to`, negative when `to` is earlier.
pub fn seconds_between(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(after) => after.as_secs_f64(),
        None => -from.duration_since(to).as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, text: &str, is_final: bool) -> Line {
        Line {
            id: id.into(),
            session: "s1".into(),
            who: "Ann: ".into(),
            text: text.into(),
            tail: String::new(),
            is_final,
            partial: !is_final,
        }
    }

    fn captions(lines: Vec<Line>) -> Captions {
        Captions {
            lines,
            under_names: Vec::new(),
        }
    }

    #[test]
    fn a_timeline_keeps_each_change_once_in_order() {
        let t0 = Instant::now();
        let mut timeline = Timeline::new(t0);
        timeline.record(t0, captions(vec![line("a", "hello", false)]));
        timeline.record(
            t0 + Duration::from_millis(250),
            captions(vec![line("a", "hello", false)]),
        );
        assert!(!timeline.all_final());
        timeline.record(
            t0 + Duration::from_millis(500),
            captions(vec![line("a", "hello there", true)]),
        );
        assert_eq!(timeline.lines["a"].len(), 2);
        assert!(timeline.all_final() && timeline.has_line_of("s1") && !timeline.has_line_of("s2"));
        assert_eq!(
            timeline.show_line("a"),
            "\n  0.00 s a partial Ann: \"hello\" + \"\"\n  0.50 s a final   Ann: \"hello there\" + \"\""
        );
        assert_eq!(seconds_between(t0 + Duration::from_secs(1), t0), -1.0);
    }
}
