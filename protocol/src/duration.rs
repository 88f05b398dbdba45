//! The one way durations are written in every program's settings: a number with a unit, as in
//! `"500ms"`, `"30s"`, `"5m"`, `"2h"`, `"30d"` (humantime's grammar, which the offloader's config and
//! the command-line tools used first; units may be combined, `"1h 30m"`). Settings whose name ends
//! in `_secs`/`_SEC` were whole seconds before the format was shared and still accept a bare whole
//! number as seconds ([`parse_seconds_or_duration`], [`SecondsOrDuration`]).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Examples shown in every error about a duration.
pub const EXAMPLES: &str = "examples: \"30s\", \"5m\", \"2h\", \"30d\"";

/// Parses a duration with units (`"30s"`, `"5m"`, `"1h 30m"`); the error says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| format!("{error} ({EXAMPLES})"))
}

/// A bare whole number as seconds (`"90"`), else a duration with units (`"90s"`, `"2m"`).
pub fn parse_seconds_or_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => parse_duration(text)
            .map_err(|_| format!("{text:?} is neither whole seconds nor a duration ({EXAMPLES})")),
    }
}

/// A `_secs` setting in a config file: a TOML integer (seconds) or a duration string. Shown as
/// a duration (`"1m 30s"`), ordered by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecondsOrDuration(pub Duration);

impl std::fmt::Display for SecondsOrDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl std::str::FromStr for SecondsOrDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<SecondsOrDuration, String> {
        parse_seconds_or_duration(text).map(SecondsOrDuration)
    }
}

impl<'de> Deserialize<'de> for SecondsOrDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SecondsOrDuration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Seconds(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Seconds(seconds) => Ok(SecondsOrDuration(Duration::from_secs(seconds))),
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_everywhere_and_bare_seconds_where_the_name_says_secs() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 5m "), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("soon").unwrap_err().contains("\"30s\""));
        assert!(parse_duration("30").is_err(), "a unit is required");
        assert_eq!(parse_seconds_or_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_seconds_or_duration("2m"),
            Ok(Duration::from_secs(120))
        );
        assert!(parse_seconds_or_duration("-1").is_err());
        let written: Vec<SecondsOrDuration> =
            serde_json::from_str("[10, \"10s\", \"1m\"]").expect("both forms");
        assert_eq!(
            written,
            [10, 10, 60].map(|s| SecondsOrDuration(Duration::from_secs(s)))
        );
        assert!(serde_json::from_str::<SecondsOrDuration>("\"ten\"").is_err());
        assert_eq!(written[2].to_string(), "1m");
    }
}
