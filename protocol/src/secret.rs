//! [`Secret`]: the one type every secret of the stack travels in (the offloader's admin secret,
//! webhook secrets, secret job inputs, the SFU's API key, token secret and TURN secret, a job's
//! tokens). Its `Debug` and `Display` print `[redacted]`, so a secret cannot reach a log line or an
//! error message by being formatted; the value comes out only through [`Secret::expose`], at the one
//! place that uses it (an HMAC key, an `Authorization` header, an environment variable).
//!
//! On the wire and in files it is a plain string: serde reads and writes the value, so config files,
//! environment variables and request bodies look as they did before the type existed. Serializing is
//! therefore for the few places a secret must travel (a client sending its webhook secret, the store
//! keeping it); answers to clients never contain one (see the offloader's `view.rs`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What `Debug` and `Display` print instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// A string that never shows up in `Debug` or `Display` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value's bytes (an HMAC key).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// True for the empty string (a setting left empty: the feature is off).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Length in characters, for minimum-length rules.
    pub fn char_count(&self) -> usize {
        self.0.chars().count()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value_and_serde_reads_a_plain_string() {
        let secret: Secret = serde_json::from_str("\"hunter2-hunter2\"").expect("a string");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(
            format!("{:?}", Some(secret.clone())),
            "Some([redacted])",
            "inside other types too"
        );
        assert_eq!(secret.expose(), "hunter2-hunter2");
        assert_eq!(
            serde_json::to_string(&secret).expect("serializes"),
            "\"hunter2-hunter2\""
        );
        assert!(
            serde_json::from_str::<Secret>("42").is_err(),
            "only strings"
        );
    }
}
