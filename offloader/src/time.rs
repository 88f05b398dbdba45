//! The offloader's one clock reading: the store and the API keep times as Unix milliseconds.

/// Milliseconds since the Unix epoch (the store's and the API's time unit).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
