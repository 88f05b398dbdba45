//! A CTranslate2 Whisper model's `vocabulary.txt` (one token a line, the line number is the id): the
//! special tokens a prompt is made of, and the text of generated tokens. Whisper's tokens are GPT-2's
//! byte-level BPE: every byte is written as one printable character, which [`Vocabulary::text`] undoes.
//! [`Merges`] (from `tokenizer.json`) turns text into tokens, for the initial prompt.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

/// The vocabulary and the ids of the special tokens.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    tokens: Vec<String>,
    ids: HashMap<String, usize>,
    /// `<|endoftext|>`: every id from here on is special.
    pub eot: usize,
    /// `<|startoftranscript|>`.
    pub sot: usize,
    /// `<|transcribe|>`.
    pub transcribe: usize,
    /// `<|notimestamps|>`.
    pub no_timestamps: usize,
    /// `<|startofprev|>`, before the text of an earlier window or the initial prompt.
    pub start_of_prev: usize,
    /// `<|0.00|>`: timestamp `id - timestamp_begin` is that many 20 ms steps into the window.
    pub timestamp_begin: usize,
}

/// GPT-2's map from bytes to the characters tokens are written in (the inverse of [`char_to_byte`]).
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    for (c, byte) in char_to_byte() {
        table[byte as usize] = c;
    }
    table
}

/// GPT-2's map from a token's characters back to bytes: printable Latin-1 bytes stand for themselves,
/// the other 68 bytes were moved to U+0100 and up, in order.
fn char_to_byte() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut moved = 0u32;
    for byte in 0..=255u8 {
        let c = if printable(byte) {
            char::from(byte)
        } else {
            moved += 1;
            // 256 + (0..68) are all valid scalar values.
            char::from_u32(255 + moved).unwrap_or('\u{fffd}')
        };
        map.insert(c, byte);
    }
    map
}

impl Vocabulary {
    /// Reads `vocabulary.txt` in the model directory `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("vocabulary.txt");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Self::parse(&text).map_err(|reason| Error::invalid_model(&path, reason))
    }

    /// Parses the text of `vocabulary.txt`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let tokens: Vec<String> = text.lines().map(str::to_string).collect();
        let ids: HashMap<String, usize> = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id))
            .collect();
        let id = |token: &str| {
            ids.get(token)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {token}"))
        };
        Ok(Vocabulary {
            eot: id("<|endoftext|>")?,
            sot: id("<|startoftranscript|>")?,
            transcribe: id("<|transcribe|>")?,
            no_timestamps: id("<|notimestamps|>")?,
            start_of_prev: id("<|startofprev|>")?,
            timestamp_begin: id("<|0.00|>")?,
            tokens,
            ids,
        })
    }

    /// The id of `<|CODE|>` (a language), if the model has it.
    pub fn language(&self, code: &str) -> Option<usize> {
        self.ids.get(&format!("<|{code}|>")).copied()
    }

    /// The language code of a language token id (`<|de|>` → `de`).
    pub fn language_code(&self, id: usize) -> Option<&str> {
        let token = self.tokens.get(id)?;
        let code = token.strip_prefix("<|")?.strip_suffix("|>")?;
        (id > self.sot && id < self.transcribe).then_some(code)
    }

    /// The id of a token written as it is in the vocabulary (`Ġhello`).
    pub fn id(&self, token: &str) -> Option<usize> {
        self.ids.get(token).copied()
    }

    /// True for the timestamp tokens `<|0.00|>` … `<|30.00|>`.
    pub fn is_timestamp(&self, id: usize) -> bool {
        id >= self.timestamp_begin
    }

    /// The text of text tokens `ids` (special tokens are skipped), as UTF-8; a character split between
    /// tokens is whole only when both are passed together.
    pub fn text(&self, ids: &[usize]) -> String {
        thread_local! {
            static BYTES: HashMap<char, u8> = char_to_byte();
        }
        let mut bytes = Vec::new();
        BYTES.with(|map| {
            for &id in ids.iter().filter(|&&id| id < self.eot) {
                if let Some(token) = self.tokens.get(id) {
                    bytes.extend(token.chars().filter_map(|c| map.get(&c).copied()));
                }
            }
        });
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The BPE merges of `tokenizer.json`, by rank: how text becomes tokens.
#[derive(Debug, Clone, Default)]
pub struct Merges {
    ranks: HashMap<(String, String), usize>,
}

impl Merges {
    /// Reads the merges from `tokenizer.json` in the model directory `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::invalid_model(&path, format!("not JSON: {e}")))?;
        let merges = json["model"]["merges"]
            .as_array()
            .ok_or_else(|| Error::invalid_model(&path, "no model.merges"))?;
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            // Either "a b" or ["a", "b"] (newer tokenizers).
            let pair = match merge {
                serde_json::Value::String(text) => text
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string())),
                serde_json::Value::Array(parts) => match parts.as_slice() {
                    [a, b] => Some((
                        a.as_str().unwrap_or_default().to_string(),
                        b.as_str().unwrap_or_default().to_string(),
                    )),
                    _ => None,
                },
                _ => None,
            };
            if let Some(pair) = pair {
                ranks.entry(pair).or_insert(rank);
            }
        }
        Ok(Merges { ranks })
    }

    /// The BPE tokens of one pre-tokenised word (already in GPT-2's byte characters).
    fn word(&self, word: &str) -> Vec<String> {
        let mut parts: Vec<String> = word.chars().map(String::from).collect();
        loop {
            let best = parts
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    self.ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|rank| (*rank, i))
                })
                .min();
            let Some((_, i)) = best else {
                return parts;
            };
            let next = parts.remove(i + 1);
            parts[i].push_str(&next);
        }
    }

    /// The token ids of `text` in `vocabulary`: GPT-2's pre-tokenisation (words with their leading space,
    /// runs of digits, of punctuation, of spaces, English contractions), bytes as characters, BPE.
    pub fn encode(&self, vocabulary: &Vocabulary, text: &str) -> Vec<usize> {
        let table = byte_to_char();
        let mut ids = Vec::new();
        for piece in pre_tokenize(text) {
            let word: String = piece.bytes().map(|b| table[b as usize]).collect();
            ids.extend(
                self.word(&word)
                    .iter()
                    .filter_map(|token| vocabulary.id(token)),
            );
        }
        ids
    }
}

/// GPT-2's pre-tokenisation (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`)
/// without a regex engine: the pieces of `text`, in order, which together are `text`.
fn pre_tokenize(text: &str) -> Vec<&str> {
    #[derive(PartialEq)]
    enum Class {
        Letter,
        Number,
        Other,
        Space,
    }
    let class = |c: char| {
        if c.is_alphabetic() {
            Class::Letter
        } else if c.is_numeric() {
            Class::Number
        } else if c.is_whitespace() {
            Class::Space
        } else {
            Class::Other
        }
    };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map_or(text.len(), |(offset, _)| *offset);
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        if c == '\'' {
            let rest = &text[at(i) + 1..];
            if let Some(suffix) = ["re", "ve", "ll", "s", "t", "m", "d"]
                .iter()
                .find(|s| rest.starts_with(*s))
            {
                let end = i + 1 + suffix.len();
                pieces.push(&text[at(i)..at(end)]);
                i = end;
                continue;
            }
        }
        // A single space belongs to the word, number or punctuation after it.
        let body = if c == ' '
            && chars
                .get(i + 1)
                .is_some_and(|(_, n)| class(*n) != Class::Space)
        {
            i + 1
        } else {
            i
        };
        let kind = class(chars[body].1);
        let mut end = body + 1;
        while end < chars.len() && class(chars[end].1) == kind {
            end += 1;
        }
        // A run of spaces before a word leaves its last space to that word.
        if kind == Class::Space && end < chars.len() && end - i > 1 && chars[end - 1].1 == ' ' {
            end -= 1;
        }
        pieces.push(&text[at(i)..at(end)]);
        i = end;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        let specials = [
            "<|endoftext|>",
            "<|startoftranscript|>",
            "<|en|>",
            "<|de|>",
            "<|transcribe|>",
            "<|startofprev|>",
            "<|notimestamps|>",
            "<|0.00|>",
            "<|0.02|>",
        ];
        let text = ["Hello", "Ġworld", ".", "Ġc", "Ã©", "Ċ"]
            .iter()
            .chain(specials.iter())
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        Vocabulary::parse(&text).unwrap()
    }

    #[test]
    fn byte_level_tokens_decode_to_utf8_text_without_special_tokens() {
        let v = vocabulary();
        assert_eq!(v.eot, 6);
        assert_eq!(v.timestamp_begin, 13);
        // "Ġ" is the space, "Ã©" the two bytes of "é", "Ċ" a newline.
        assert_eq!(v.text(&[0, 1, 2, v.eot]), "Hello world.");
        assert_eq!(v.text(&[3, 4, 5]), " cé\n");
        assert_eq!(
            v.text(&[v.timestamp_begin, 0, v.timestamp_begin + 1]),
            "Hello"
        );
    }

    #[test]
    fn text_splits_like_gpt2_before_bpe() {
        assert_eq!(
            pre_tokenize(" Alice's 42 apples,  ok?\n"),
            vec![" Alice", "'s", " 42", " apples", ",", " ", " ok", "?", "\n"]
        );
        assert_eq!(pre_tokenize("we'll"), vec!["we", "'ll"]);
    }

    #[test]
    fn bpe_merges_by_rank_into_vocabulary_tokens() {
        let v = vocabulary();
        let merges = Merges {
            ranks: [
                (("H", "e"), 0),
                (("l", "l"), 1),
                (("He", "ll"), 2),
                (("Hell", "o"), 3),
                (("Ġ", "w"), 4),
            ]
            .into_iter()
            .map(|((a, b), rank)| ((a.to_string(), b.to_string()), rank))
            .collect(),
        };
        assert_eq!(merges.word("Hello"), vec!["Hello"]);
        assert_eq!(merges.word("Ġworld"), vec!["Ġw", "o", "r", "l", "d"]);
        // "Hello" is token 0 and "." token 2; pieces with no token of their own are left out.
        assert_eq!(merges.encode(&v, "Hello."), vec![0, 2]);
    }

    #[test]
    fn languages_are_the_tokens_between_start_and_transcribe() {
        let v = vocabulary();
        assert_eq!(v.language("de"), Some(9));
        assert_eq!(v.language_code(9), Some("de"));
        assert_eq!(v.language_code(v.transcribe), None);
        assert_eq!(v.language("xx"), None);
    }
}
