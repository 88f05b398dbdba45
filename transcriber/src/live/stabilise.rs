//! Stabilisation of partial captions (local agreement of consecutive hypotheses).
//!
//! Whisper re-decodes a growing window, so each hypothesis may reword the end of the previous one. Showing
//! every hypothesis as it comes makes text already on screen flicker. A word becomes *stable* once two
//! consecutive hypotheses agree on it and on everything before it (LocalAgreement-2); stable words are never
//! taken back by a later partial. The words after them are the *tail*: shown, but marked as tentative.
//!
//! **Invariant:** the stable prefix a [`Stabiliser`] reports only grows; only the final caption (a fresh
//! decode of the whole utterance) may differ from it.

/// The text of one partial caption: the stable words, then the tentative tail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartialText {
    /// Words two consecutive hypotheses agreed on (never retracted before the final).
    pub stable: String,
    /// The latest hypothesis' words after the stable ones (may still change).
    pub tail: String,
}

impl PartialText {
    /// A final's text: every word stable, no tail.
    pub fn settled(text: String) -> Self {
        PartialText {
            stable: text,
            tail: String::new(),
        }
    }

    /// Stable words and tail joined by one space: what a listener reads.
    pub fn text(&self) -> String {
        match (self.stable.is_empty(), self.tail.is_empty()) {
            (true, _) => self.tail.clone(),
            (false, true) => self.stable.clone(),
            (false, false) => format!("{} {}", self.stable, self.tail),
        }
    }
}

/// Local agreement over the hypotheses of one utterance.
#[derive(Debug, Default)]
pub struct Stabiliser {
    /// Words agreed on so far.
    stable: Vec<String>,
    /// The previous hypothesis, as words.
    previous: Vec<String>,
}

impl Stabiliser {
    /// Takes the next hypothesis for the whole utterance so far and returns what to show.
    pub fn handle_hypothesis(&mut self, text: &str) -> PartialText {
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        // The new agreement is the common prefix of this and the previous hypothesis; it can only extend the
        // stable words when it starts with them (otherwise the model changed its mind about stable words,
        // which a partial never shows: the final will).
        let agreed = common_prefix(&self.previous, &words);
        if agreed > self.stable.len() && starts_with(&words, &self.stable) {
            // Stable words keep the spelling first shown; only new agreed words are added.
            let new = words[self.stable.len()..agreed].iter().cloned();
            self.stable.extend(new);
        }
        let tail: &[String] = if starts_with(&words, &self.stable) {
            &words[self.stable.len()..]
        } else {
            // The hypothesis disagrees with stable words: keep showing them and no tentative tail, since
            // the tail would be attached to words the model no longer says.
            &[]
        };
        let shown = PartialText {
            stable: self.stable.join(" "),
            tail: tail.join(" "),
        };
        self.previous = words;
        shown
    }
}

/// The hypothesis with whisper's loops taken out: on a window cut in the middle of speech whisper often
/// repeats the last phrase until it runs out of tokens ("let's take a short. let's take a short. let's
/// take a"). A run of one phrase repeated back to back keeps its first copy, and a trailing unfinished copy
/// is dropped. A run counts as a loop when a phrase of three words or more comes twice in a row, or a
/// shorter one three times: people say "very very" or "no, no", not the same sentence twice in a breath.
pub fn without_repeats(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut kept: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    'scan: while i < words.len() {
        for n in 1..=12.min((words.len() - i) / 2) {
            let phrase = &words[i..i + n];
            let mut copies = 1;
            while i + (copies + 1) * n <= words.len()
                && same_words(phrase, &words[i + copies * n..i + (copies + 1) * n])
            {
                copies += 1;
            }
            if copies >= 3 || (copies >= 2 && n >= 3) {
                kept.extend_from_slice(phrase);
                i += copies * n;
                // An unfinished copy at the very end is the same loop, cut by the token limit.
                let rest = &words[i..];
                if !rest.is_empty() && rest.len() < n && same_words(rest, &phrase[..rest.len()]) {
                    i = words.len();
                }
                continue 'scan;
            }
        }
        kept.push(words[i]);
        i += 1;
    }
    kept.join(" ")
}

fn same_words(a: &[&str], b: &[&str]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_word(x, y))
}

/// Words compared loosely: case and surrounding punctuation do not make two words differ.
fn same_word(a: &str, b: &str) -> bool {
    let trim = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    trim(a) == trim(b)
}

fn common_prefix(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| same_word(x, y)).count()
}

fn starts_with(words: &[String], prefix: &[String]) -> bool {
    words.len() >= prefix.len() && common_prefix(words, prefix) == prefix.len()
}
