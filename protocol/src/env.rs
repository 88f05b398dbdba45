//! Settings from the environment as every program of the stack reads them: `(name, value)` pairs,
//! as `std::env::vars()` yields them. The services' config tests, and the end-to-end tests that
//! start a service with extra variables, write theirs as literals and turn them into pairs here.

/// Owned `(name, value)` pairs from literal ones.
pub fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}
