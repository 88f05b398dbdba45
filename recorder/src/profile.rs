//! Quality profiles (low, medium, high: the sizes, rates and bitrates of Mattermost's recorder) and validated
//! overrides.
//!
//! A [`Profile`] is the one place that says what the output file looks like: size, frame rate, bitrates and the
//! x264 preset. Overrides arrive as strings from the job's input data, so parsing and range checks live here and
//! produce errors that name the setting and the accepted range.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use calls_protocol::job_env::recording;

use crate::error::{Error, Result};

/// Sample rate of everything audio in the recorder (Opus decodes at 48 kHz; AAC encodes at 48 kHz).
pub const AUDIO_SAMPLE_RATE: u32 = 48_000;

/// The named quality profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProfileName {
    /// 1280×720, 1000 kbps, 15 fps, x264 `ultrafast`.
    Low,
    /// 1280×720, 1500 kbps, 20 fps, x264 `superfast`.
    #[default]
    Medium,
    /// 1920×1080, 2500 kbps, 20 fps, x264 `superfast`.
    High,
}

impl ProfileName {
    /// All profiles, cheapest first.
    pub const ALL: [ProfileName; 3] = [ProfileName::Low, ProfileName::Medium, ProfileName::High];

    /// The lowercase name used in job input data.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::Low => "low",
            ProfileName::Medium => "medium",
            ProfileName::High => "high",
        }
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProfileName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(ProfileName::Low),
            "medium" | "" => Ok(ProfileName::Medium),
            "high" => Ok(ProfileName::High),
            other => Err(Error::setting(
                "PROFILE",
                format!("unknown profile {other:?}; expected low, medium or high"),
            )),
        }
    }
}

/// The x264 speed/quality preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X264Preset {
    /// Cheapest; used by the low profile.
    Ultrafast,
    /// Used by the medium and high profiles. Mattermost's recorder uses `veryfast` there; `superfast` costs
    /// about 30 % less CPU per frame at the same bitrate and stays above 40 dB luma PSNR on moving and
    /// scrolling-text test screens (docs/benchmarks.md, "Recorder in a live call").
    Superfast,
}

impl X264Preset {
    /// The name libx264 expects in its `preset` option.
    pub fn as_str(self) -> &'static str {
        match self {
            X264Preset::Ultrafast => "ultrafast",
            X264Preset::Superfast => "superfast",
        }
    }
}

/// Everything the encoder needs to know about the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile this started from (overrides may have changed the numbers).
    pub name: ProfileName,
    /// Output width in pixels (even).
    pub width: u32,
    /// Output height in pixels (even).
    pub height: u32,
    /// Output frames per second.
    pub fps: u32,
    /// H.264 target bitrate in kbit/s.
    pub video_bitrate_kbps: u32,
    /// AAC bitrate in kbit/s.
    pub audio_bitrate_kbps: u32,
    /// x264 preset.
    pub preset: X264Preset,
}

impl Profile {
    /// The settings of a named profile.
    pub fn named(name: ProfileName) -> Profile {
        let (width, height, fps, video_bitrate_kbps, preset) = match name {
            ProfileName::Low => (1280, 720, 15, 1000, X264Preset::Ultrafast),
            ProfileName::Medium => (1280, 720, 20, 1500, X264Preset::Superfast),
            ProfileName::High => (1920, 1080, 20, 2500, X264Preset::Superfast),
        };
        Profile {
            name,
            width,
            height,
            fps,
            video_bitrate_kbps,
            audio_bitrate_kbps: 64,
            preset,
        }
    }

    /// Resolves a profile name (empty or absent: medium) and applies the overrides.
    pub fn resolve(name: Option<&str>, overrides: &ProfileOverrides) -> Result<Profile> {
        let name = match name {
            Some(name) => name.parse()?,
            None => ProfileName::default(),
        };
        Ok(Profile::named(name).with_overrides(overrides))
    }

    /// Applies already-validated overrides.
    pub fn with_overrides(mut self, overrides: &ProfileOverrides) -> Profile {
        self.width = overrides.width.unwrap_or(self.width);
        self.height = overrides.height.unwrap_or(self.height);
        self.fps = overrides.fps.unwrap_or(self.fps);
        self.video_bitrate_kbps = overrides
            .video_bitrate_kbps
            .unwrap_or(self.video_bitrate_kbps);
        self.audio_bitrate_kbps = overrides
            .audio_bitrate_kbps
            .unwrap_or(self.audio_bitrate_kbps);
        self
    }

    /// Checks every number against the ranges the overrides accept (for profiles built in code).
    pub fn validate(&self) -> Result<()> {
        check_dimension("WIDTH", self.width, &WIDTH_RANGE)?;
        check_dimension("HEIGHT", self.height, &HEIGHT_RANGE)?;
        check_range("FPS", self.fps, &FPS_RANGE, "")?;
        check_range(
            "VIDEO_BITRATE",
            self.video_bitrate_kbps,
            &VIDEO_KBPS_RANGE,
            " kbit/s",
        )?;
        check_range(
            "AUDIO_BITRATE",
            self.audio_bitrate_kbps,
            &AUDIO_KBPS_RANGE,
            " kbit/s",
        )?;
        Ok(())
    }

    /// Frames between keyframes: about two seconds, so a player can seek and a cut file loses little.
    pub fn keyframe_interval(&self) -> u32 {
        self.fps * 2
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::named(ProfileName::default())
    }
}

/// Optional per-job changes to a profile, each already range-checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileOverrides {
    /// Output width (even, 320..=3840).
    pub width: Option<u32>,
    /// Output height (even, 240..=2160).
    pub height: Option<u32>,
    /// Frames per second (1..=60).
    pub fps: Option<u32>,
    /// Video bitrate in kbit/s (100..=20000).
    pub video_bitrate_kbps: Option<u32>,
    /// Audio bitrate in kbit/s (32..=320).
    pub audio_bitrate_kbps: Option<u32>,
}

impl ProfileOverrides {
    /// Reads `WIDTH`, `HEIGHT`, `FPS`, `VIDEO_BITRATE` and `AUDIO_BITRATE` through `lookup` (the environment or
    /// a job's input data). Missing or empty values keep the profile's value. Bitrates are kbit/s, written as
    /// `1500`, `1500k` or `1.5M`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<ProfileOverrides> {
        let get = |key: &str| lookup(key).filter(|value| !value.trim().is_empty());
        Ok(ProfileOverrides {
            width: get(recording::WIDTH)
                .map(|v| parse_dimension(recording::WIDTH, &v, &WIDTH_RANGE))
                .transpose()?,
            height: get(recording::HEIGHT)
                .map(|v| parse_dimension(recording::HEIGHT, &v, &HEIGHT_RANGE))
                .transpose()?,
            fps: get(recording::FPS).map(|v| parse_fps(&v)).transpose()?,
            video_bitrate_kbps: get(recording::VIDEO_BITRATE)
                .map(|v| parse_bitrate_kbps(recording::VIDEO_BITRATE, &v, &VIDEO_KBPS_RANGE))
                .transpose()?,
            audio_bitrate_kbps: get(recording::AUDIO_BITRATE)
                .map(|v| parse_bitrate_kbps(recording::AUDIO_BITRATE, &v, &AUDIO_KBPS_RANGE))
                .transpose()?,
        })
    }
}

const WIDTH_RANGE: RangeInclusive<u32> = 320..=3840;
const HEIGHT_RANGE: RangeInclusive<u32> = 240..=2160;
const FPS_RANGE: RangeInclusive<u32> = 1..=60;
const VIDEO_KBPS_RANGE: RangeInclusive<u32> = 100..=20_000;
const AUDIO_KBPS_RANGE: RangeInclusive<u32> = 32..=320;

fn parse_whole(name: &'static str, value: &str) -> Result<u32> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| Error::setting(name, format!("{value:?} is not a whole number")))
}

fn check_range(
    name: &'static str,
    value: u32,
    range: &RangeInclusive<u32>,
    unit: &str,
) -> Result<u32> {
    if !range.contains(&value) {
        return Err(Error::setting(
            name,
            format!(
                "{value} is outside {}..={}{unit}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(value)
}

fn check_dimension(name: &'static str, pixels: u32, range: &RangeInclusive<u32>) -> Result<u32> {
    check_range(name, pixels, range, " pixels")?;
    if pixels % 2 != 0 {
        return Err(Error::setting(
            name,
            format!("{pixels} is odd; yuv420p needs an even size"),
        ));
    }
    Ok(pixels)
}

fn parse_dimension(name: &'static str, value: &str, range: &RangeInclusive<u32>) -> Result<u32> {
    check_dimension(name, parse_whole(name, value)?, range)
}

fn parse_fps(value: &str) -> Result<u32> {
    check_range("FPS", parse_whole("FPS", value)?, &FPS_RANGE, "")
}

/// Parses `1500`, `1500k` (kbit/s) or `1.5M` (Mbit/s) into kbit/s and checks it against `min..=max` kbit/s.
fn parse_bitrate_kbps(name: &'static str, value: &str, range: &RangeInclusive<u32>) -> Result<u32> {
    let (min, max) = (*range.start(), *range.end());
    let trimmed = value.trim();
    let (number, scale) = if let Some(n) = trimmed.strip_suffix(['M', 'm']) {
        (n, 1000.0)
    } else if let Some(n) = trimmed.strip_suffix(['k', 'K']) {
        (n, 1.0)
    } else {
        (trimmed, 1.0)
    };
    let parsed: f64 = number.trim().parse().map_err(|_| {
        Error::setting(
            name,
            format!("{value:?} is not a bitrate; write kbit/s like 1500, 1500k or 1.5M"),
        )
    })?;
    let kbps = parsed * scale;
    if !kbps.is_finite() || kbps < f64::from(min) || kbps > f64::from(max) {
        return Err(Error::setting(
            name,
            format!("{value:?} is outside {min}..={max} kbit/s"),
        ));
    }
    // In range and finite, so the rounded value fits in a u32.
    Ok(kbps.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use calls_job::settings::fixed_lookup as lookup;

    #[test]
    fn named_profiles_match_mattermost() {
        let low = Profile::named(ProfileName::Low);
        assert_eq!(
            (low.width, low.height, low.fps, low.video_bitrate_kbps),
            (1280, 720, 15, 1000)
        );
        assert_eq!(low.preset, X264Preset::Ultrafast);
        let medium = Profile::default();
        assert_eq!(medium.name, ProfileName::Medium);
        assert_eq!(
            (
                medium.width,
                medium.height,
                medium.fps,
                medium.video_bitrate_kbps
            ),
            (1280, 720, 20, 1500)
        );
        let high = Profile::named(ProfileName::High);
        assert_eq!(
            (high.width, high.height, high.fps, high.video_bitrate_kbps),
            (1920, 1080, 20, 2500)
        );
        assert_eq!(high.preset.as_str(), "superfast");
        assert!(ProfileName::ALL
            .iter()
            .all(|p| Profile::named(*p).audio_bitrate_kbps == 64));
        assert_eq!(medium.keyframe_interval(), 40);
    }

    #[test]
    fn profile_names_parse_case_insensitively() {
        assert_eq!("HIGH".parse::<ProfileName>().unwrap(), ProfileName::High);
        assert_eq!(" low ".parse::<ProfileName>().unwrap(), ProfileName::Low);
        assert_eq!("".parse::<ProfileName>().unwrap(), ProfileName::Medium);
        let err = "ultra".parse::<ProfileName>().unwrap_err().to_string();
        assert!(err.contains("PROFILE") && err.contains("ultra"), "{err}");
    }

    #[test]
    fn overrides_apply_on_top_of_the_profile() {
        let overrides = ProfileOverrides::from_lookup(lookup(&[
            ("WIDTH", "640"),
            ("HEIGHT", "360"),
            ("FPS", "10"),
            ("VIDEO_BITRATE", "1.2M"),
            ("AUDIO_BITRATE", "96k"),
        ]))
        .unwrap();
        let profile = Profile::resolve(Some("low"), &overrides).unwrap();
        assert_eq!((profile.width, profile.height, profile.fps), (640, 360, 10));
        assert_eq!(
            (profile.video_bitrate_kbps, profile.audio_bitrate_kbps),
            (1200, 96)
        );
        assert_eq!(profile.preset, X264Preset::Ultrafast);
    }

    #[test]
    fn empty_overrides_keep_the_profile() {
        let overrides = ProfileOverrides::from_lookup(lookup(&[("WIDTH", " ")])).unwrap();
        assert_eq!(
            Profile::resolve(None, &overrides).unwrap(),
            Profile::default()
        );
    }

    #[test]
    fn profiles_built_in_code_are_validated_too() {
        assert!(ProfileName::ALL
            .iter()
            .all(|name| Profile::named(*name).validate().is_ok()));
        let odd = Profile {
            width: 1279,
            ..Profile::default()
        };
        assert!(odd.validate().unwrap_err().to_string().contains("WIDTH"));
        let still = Profile {
            fps: 0,
            ..Profile::default()
        };
        assert!(still.validate().unwrap_err().to_string().contains("FPS"));
    }

    #[test]
    fn bad_overrides_name_the_setting_and_the_range() {
        let cases = [
            ("WIDTH", "641", "odd"),
            ("WIDTH", "100", "320..=3840"),
            ("HEIGHT", "abc", "not a whole number"),
            ("FPS", "0", "1..=60"),
            ("FPS", "120", "1..=60"),
            ("VIDEO_BITRATE", "fast", "not a bitrate"),
            ("VIDEO_BITRATE", "50M", "100..=20000"),
            ("AUDIO_BITRATE", "8", "32..=320"),
        ];
        for (key, value, expected) in cases {
            let err = ProfileOverrides::from_lookup(lookup(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) && err.contains(expected),
                "{key}={value}: {err}"
            );
        }
    }
}
