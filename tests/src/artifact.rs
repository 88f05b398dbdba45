//! Deterministic artifact content: the test job uploads it and the tests recompute it, so a download
//! can be checked byte for byte without shipping the expected file around.

/// Fills `len` bytes from a xorshift64* stream seeded with `seed` (a zero seed is remapped, since
/// xorshift would stay at zero forever).
pub fn artifact_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut generator = ArtifactStream::new(seed);
    while out.len() < len {
        let word = generator.next_word().to_le_bytes();
        let take = (len - out.len()).min(word.len());
        out.extend_from_slice(&word[..take]);
    }
    out
}

/// The same stream in chunks, for uploads that should not hold the whole artifact in memory.
#[derive(Debug, Clone)]
pub struct ArtifactStream {
    state: u64,
}

impl ArtifactStream {
    pub fn new(seed: u64) -> Self {
        Self {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    fn next_word(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next `len` bytes (`len` must be a multiple of 8 except for the last chunk, which keeps
    /// chunked and whole generation identical).
    pub fn next_chunk(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let word = self.next_word().to_le_bytes();
            let take = (len - out.len()).min(word.len());
            out.extend_from_slice(&word[..take]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_generation_matches_whole_generation() {
        let whole = artifact_bytes(7, 100_003);
        let mut stream = ArtifactStream::new(7);
        let mut chunked = Vec::new();
        while chunked.len() < whole.len() {
            let len = (whole.len() - chunked.len()).min(8 * 1024);
            chunked.extend(stream.next_chunk(len));
        }
        assert_eq!(whole, chunked);
    }

    #[test]
    fn seeds_give_different_content() {
        assert_ne!(artifact_bytes(1, 64), artifact_bytes(2, 64));
        assert_eq!(artifact_bytes(0, 64).len(), 64);
        assert!(artifact_bytes(0, 64).iter().any(|b| *b != 0));
    }
}
